"""Free loopback ports for a topology's listeners (`init`, `init --servers`, test fixtures)."""

from __future__ import annotations

import random
import socket

__all__ = ["GRPC_OFFSET", "PORT_RANGE", "free_ports"]

# SeaweedFS listens for gRPC on each HTTP port + 10000, so such a port needs that one free too.
GRPC_OFFSET = 10000
# Drawn from below Linux's ephemeral range (32768-60999), the gRPC offset included, so that outgoing
# connections cannot take a port between `init` writing it and `up` binding it.
PORT_RANGE = (10000, 22700)
# SeaweedFS's own defaults (HTTP and gRPC), which an unconfigured weed elsewhere on the machine may hold.
_WEED_DEFAULTS = frozenset({6060, 8080, 8333, 8888, 9333, 18080, 18333, 18888, 19333, 23646, 33646})


def _bindable(port: int) -> bool:
    # No SO_REUSEADDR: a port still in TIME_WAIT counts as taken, which errs on the safe side.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int, *, with_grpc: int = 0, rng: random.Random | None = None,
               avoid: frozenset[int] | set[int] = frozenset()) -> list[int]:
    """count distinct ports free on 127.0.0.1 now (free, not reserved: start the servers soon after), none
    of them in avoid; the first with_grpc of them also have port + GRPC_OFFSET free and distinct from all
    the others. Draw every port of a topology in one call: separate calls may return the same port."""
    rng = rng or random.Random()
    ports: list[int] = []
    taken: set[int] = set(_WEED_DEFAULTS) | set(avoid)
    for i in range(count):
        for _ in range(500):
            port = rng.randrange(*PORT_RANGE)
            wanted = {port, port + GRPC_OFFSET} if i < with_grpc else {port}
            if wanted & taken or not all(_bindable(p) for p in wanted):
                continue
            ports.append(port)
            taken |= wanted
            break
        else:
            raise RuntimeError(f"no free port on 127.0.0.1 in {PORT_RANGE[0]}-{PORT_RANGE[1]}")
    return ports
