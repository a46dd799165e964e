"""Free loopback ports for a topology's listeners (`init`, `init --servers`, test fixtures)."""

from __future__ import annotations

import socket
from contextlib import ExitStack

__all__ = ["GRPC_OFFSET", "free_ports"]

# SeaweedFS listens for gRPC on each HTTP port + 10000, so such a port needs that one free too.
GRPC_OFFSET = 10000


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int, *, with_grpc: int = 0) -> list[int]:
    """count distinct ports free on 127.0.0.1 now (held open together so they differ); the first
    with_grpc of them also have port + GRPC_OFFSET free and distinct from all others."""
    with ExitStack() as stack:
        ports: list[int] = []
        taken: set[int] = set()
        attempts = 0
        while len(ports) < count:
            attempts += 1
            if attempts > 10 * count + 1000:
                raise RuntimeError(f"could not find {count} free loopback ports")
            s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            if port in taken:
                continue
            if len(ports) < with_grpc:
                grpc = port + GRPC_OFFSET
                if grpc > 65535 or grpc in taken or not _bindable(grpc):
                    continue
                taken.add(grpc)
            ports.append(port)
            taken.add(port)
        return ports
