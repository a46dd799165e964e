"""Contract tests for the RoutingControl port; every adapter runs them (ADAPTERS, URL_FACTORIES).

"etcd" runs against the session's shared 3-member cluster (etcdkit.etcd_shared), under a fresh key per
test. "guarded-<kind>" runs the contract over the fault-injection wrapper (chaos.guards.GuardedControl)
around that kind of adapter, with no fault active: it must behave exactly like the control it wraps.
etcd failures (members killed, quorum lost) are in test_control_etcd.py.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from regionflow.chaos.faults import FaultRegistry
from regionflow.chaos.guards import GuardedControl
from regionflow.control import CachedControl, ControlNotInitialized, ControlState, RoutingControl, open_control
from regionflow.errors import ConfigError, ControlUnavailable, StaleEpoch

ADAPTERS = ["sqlite", "guarded-sqlite", "etcd", "guarded-etcd"]
GUARDED = "guarded-"


def _sqlite_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'control.db'}"


def _etcd_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    # Requested here, not by every test, so that sqlite-only runs start no etcd.
    return str(request.getfixturevalue("etcd_shared").url())


URL_FACTORIES: dict[str, Callable[[pytest.FixtureRequest, Path], str]] = {"sqlite": _sqlite_url, "etcd": _etcd_url}


@pytest.fixture(params=ADAPTERS)
def adapter(request: pytest.FixtureRequest) -> str:
    """Each adapter kind of ADAPTERS."""
    return str(request.param)


@pytest.fixture
def control_url(adapter: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty routing control of each adapter kind."""
    return URL_FACTORIES[adapter.removeprefix(GUARDED)](request, tmp_path)


@pytest.fixture
def control(adapter: str, control_url: str, tmp_path: Path) -> Iterator[RoutingControl]:
    c = open_control(control_url)
    if adapter.startswith(GUARDED):
        c = GuardedControl(c, FaultRegistry(tmp_path / "faults.json"))  # empty: no fault is ever injected
    try:
        yield c
    finally:
        c.close()


# ---------------------------------------------------------------------------------------------- contract


def test_adapter_satisfies_protocol(control: RoutingControl) -> None:
    assert isinstance(control, RoutingControl)


def test_get_before_initialize_says_so(control: RoutingControl) -> None:
    with pytest.raises(ControlNotInitialized, match="no record"):
        control.get()
    with pytest.raises(ControlUnavailable):  # callers that only know the port error still catch it
        control.set_active("us-west-2", 0)


def test_initialize_is_idempotent(control: RoutingControl) -> None:
    first = control.initialize("us-east-1")
    assert (first.active_region, first.epoch) == ("us-east-1", 1)
    again = control.initialize("us-west-2")
    assert again == first
    assert control.get() == first
    assert len(control.history()) == 1


def test_set_active_with_current_epoch_bumps_epoch(control: RoutingControl) -> None:
    control.initialize("us-east-1")
    before = time.time()
    new = control.set_active("us-west-2", 1, by="test")
    assert (new.active_region, new.epoch, new.updated_by) == ("us-west-2", 2, "test")
    assert new.updated_at >= before - 1
    assert control.get() == new


def test_same_region_again_still_bumps_epoch(control: RoutingControl) -> None:
    control.initialize("us-east-1")
    new = control.set_active("us-east-1", 1)
    assert (new.active_region, new.epoch) == ("us-east-1", 2)


def test_stale_epoch_refused_and_nothing_changes(control: RoutingControl) -> None:
    control.initialize("us-east-1")
    current = control.set_active("us-west-2", 1)
    history = control.history()
    for stale in (1, 0, 3, 99):
        with pytest.raises(StaleEpoch) as info:
            control.set_active("us-east-1", stale)
        msg = str(info.value)
        assert f"epoch {stale} is not current" in msg
        assert "current epoch is 2" in msg and "us-west-2" in msg and "retry" in msg
    assert control.get() == current
    assert control.history() == history


def test_epoch_only_grows(control: RoutingControl) -> None:
    state = control.initialize("us-east-1")
    epochs = [state.epoch]
    for region in ["us-west-2", "us-east-1", "us-east-1", "us-west-2"]:
        state = control.set_active(region, control.get().epoch)
        epochs.append(state.epoch)
        with pytest.raises(StaleEpoch):
            control.set_active(region, epochs[-2])
    assert epochs == sorted(set(epochs)) == list(range(1, 6))
    assert control.initialize("us-east-1").epoch == 5  # initialize never resets it


def test_history_newest_first_with_limit(control: RoutingControl) -> None:
    control.initialize("us-east-1")
    control.set_active("us-west-2", 1, by="failover")
    control.set_active("us-east-1", 2, by="failback")
    history = control.history()
    assert [(s.active_region, s.epoch, s.updated_by) for s in history] == [
        ("us-east-1", 3, "failback"), ("us-west-2", 2, "failover"), ("us-east-1", 1, "initialize")]
    assert history[0] == control.get()
    assert [s.epoch for s in control.history(limit=2)] == [3, 2]
    assert all(isinstance(s, ControlState) for s in history)


def test_state_survives_reopen(control_url: str) -> None:
    a = open_control(control_url)
    a.initialize("us-east-1")
    a.set_active("us-west-2", 1)
    a.close()
    b = open_control(control_url)
    try:
        assert (b.get().active_region, b.get().epoch) == ("us-west-2", 2)
    finally:
        b.close()


def _race(url: str, name: str, rounds: int, barrier, results) -> None:  # noqa: ANN001 (multiprocessing proxies)
    """Child process: in each round, try to take over with the epoch every racer expects."""
    control = open_control(url)
    won = []
    try:
        for expected in range(1, rounds + 1):
            barrier.wait(timeout=60)
            try:
                control.set_active(name, expected, by=name)
                won.append(expected)
            except StaleEpoch:
                pass
    finally:
        control.close()
        results.put((name, won))


def test_racing_processes_exactly_one_wins(control: RoutingControl, control_url: str) -> None:
    control.initialize("us-east-1")
    ctx = multiprocessing.get_context("spawn")
    racers, rounds = 4, 5
    barrier = ctx.Barrier(racers)
    results = ctx.Queue()
    procs = [ctx.Process(target=_race, args=(control_url, f"r{i}", rounds, barrier, results)) for i in range(racers)]
    for p in procs:
        p.start()
    try:
        outcome = dict(results.get(timeout=120) for _ in procs)
    finally:
        for p in procs:
            p.join(timeout=30)
    assert all(p.exitcode == 0 for p in procs)
    winners = {r: [name for name, won in outcome.items() if r in won] for r in range(1, rounds + 1)}
    assert all(len(w) == 1 for w in winners.values()), winners
    final = control.get()
    assert final.epoch == rounds + 1
    assert final.active_region == winners[rounds][0]
    assert [s.epoch for s in control.history()] == list(range(rounds + 1, 0, -1))


def test_racing_threads_exactly_one_wins(control: RoutingControl, control_url: str) -> None:
    """Threads, each with its own connection, race every round with the same expected epoch."""
    control.initialize("us-east-1")
    racers, rounds = 6, 5
    barrier = threading.Barrier(racers)
    wins: dict[int, list[str]] = {r: [] for r in range(1, rounds + 1)}
    errors: list[BaseException] = []
    lock = threading.Lock()

    def race(name: str) -> None:
        c = open_control(control_url)
        try:
            for expected in range(1, rounds + 1):
                barrier.wait(timeout=60)
                try:
                    c.set_active(name, expected, by=name)
                    with lock:
                        wins[expected].append(name)
                except StaleEpoch:
                    pass
        except BaseException as exc:  # reported below: an exception in a thread would pass unseen
            errors.append(exc)
            barrier.abort()
        finally:
            c.close()

    threads = [threading.Thread(target=race, args=(f"t{i}",)) for i in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert all(len(w) == 1 for w in wins.values()), wins
    final = control.get()
    assert (final.epoch, final.active_region) == (rounds + 1, wins[rounds][0])
    history = control.history()
    assert [s.epoch for s in history] == list(range(rounds + 1, 0, -1))
    assert [s.active_region for s in history[:-1]] == [wins[r][0] for r in range(rounds, 0, -1)]


def test_shared_connection_across_threads(control: RoutingControl) -> None:
    """One adapter object used by many threads at once (a region's workers share one): same guarantees."""
    control.initialize("us-east-1")
    results: list[str] = []

    def bump() -> None:
        for _ in range(20):
            state = control.get()
            try:
                control.set_active("us-east-1", state.epoch)
                results.append("won")
            except StaleEpoch:
                results.append("stale")

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    epochs = [s.epoch for s in control.history(limit=1000)]
    assert control.get().epoch == 1 + results.count("won")
    assert epochs == list(range(control.get().epoch, 0, -1))  # every epoch once, none skipped or reused


# ---------------------------------------------------------------------------------------------- cache


class CountingControl:
    """Wraps a control and counts reads of the store."""

    def __init__(self, inner: RoutingControl) -> None:
        self.inner = inner
        self.reads = 0

    def get(self) -> ControlState:
        self.reads += 1
        return self.inner.get()

    def set_active(self, region: str, expected_epoch: int, *, by: str = "") -> ControlState:
        return self.inner.set_active(region, expected_epoch, by=by)

    def initialize(self, region: str) -> ControlState:
        return self.inner.initialize(region)

    def history(self, limit: int = 50) -> list[ControlState]:
        return self.inner.history(limit)

    def close(self) -> None:
        self.inner.close()


def test_cached_control_caches_within_ttl(control: RoutingControl, control_url: str) -> None:
    counting = CountingControl(control)
    cached = CachedControl(counting, ttl=0.5)
    cached.initialize("us-east-1")
    assert cached.get().epoch == 1
    other = open_control(control_url)  # another process's view of the same store
    try:
        other.set_active("us-west-2", 1)
    finally:
        other.close()
    assert cached.get().epoch == 1  # still the cached value
    assert counting.reads == 1
    assert cached.get(fresh=True).epoch == 2  # bypasses the cache
    assert counting.reads == 2
    time.sleep(0.6)
    assert cached.get().active_region == "us-west-2"
    assert counting.reads == 3


def test_cached_control_expires_after_ttl(control: RoutingControl, control_url: str) -> None:
    cached = CachedControl(control, ttl=0.2)
    cached.initialize("us-east-1")
    assert cached.get().epoch == 1
    other = open_control(control_url)
    try:
        other.set_active("us-west-2", 1)
    finally:
        other.close()
    time.sleep(0.3)
    assert cached.get().epoch == 2


def test_cached_control_set_active_invalidates(control: RoutingControl) -> None:
    counting = CountingControl(control)
    cached = CachedControl(counting, ttl=60)
    cached.initialize("us-east-1")
    assert cached.get().epoch == 1
    assert cached.set_active("us-west-2", 1).epoch == 2
    assert cached.get() == control.get()
    assert cached.get().active_region == "us-west-2"
    with pytest.raises(StaleEpoch):
        cached.set_active("us-east-1", 1)
    assert [s.epoch for s in cached.history()] == [2, 1]


# ---------------------------------------------------------------------------------------------- urls


def test_open_control_rejects_unsupported_urls(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unsupported scheme"):
        open_control("redis://localhost")
    with pytest.raises(ConfigError, match="shares"):
        open_control("sqlite://")


@pytest.mark.parametrize(("url", "why"), [
    ("etcd://", "names no host"),
    ("etcd:///prefix", "names no host"),
    ("etcd://h1:2379,,h2:2379", "empty host"),
    ("etcd://h1:notaport", "not host:port"),
    ("etcd://h1:70000", "out of range"),
    ("etcd://user:secret@h1:2379", "passwords are not supported"),
    ("etcd://h1:2379?timeout=3", "no query"),
    ("etcd://h1:2379/bad prefix", "key prefix"),
])
def test_open_control_rejects_bad_etcd_urls(url: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why) as info:
        open_control(url)
    assert url in str(info.value) and "etcd://host:port" in str(info.value)


def test_etcd_url_endpoints_and_key() -> None:
    from regionflow.control import parse_etcd_url

    assert parse_etcd_url("etcd://127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379") == (
        ["http://127.0.0.1:2379", "http://127.0.0.1:22379", "http://127.0.0.1:32379"], "/regionflow/control")
    assert parse_etcd_url("etcd://h1:1,h2/myprefix/") == (["http://h1:1", "http://h2:2379"], "/myprefix/control")
    assert parse_etcd_url("etcd://[::1]:2379/a/b") == (["http://[::1]:2379"], "/a/b/control")


def test_etcd_nothing_listening_is_control_unavailable_within_the_timeout() -> None:
    from regionflow.control.etcd import DEFAULT_TIMEOUT, EtcdRoutingControl
    from regionflow.servers.ports import free_ports

    ports = free_ports(2)
    endpoints = [f"127.0.0.1:{p}" for p in ports]
    default = open_control(f"etcd://{','.join(endpoints)}")
    assert isinstance(default, EtcdRoutingControl) and default.timeout == DEFAULT_TIMEOUT
    default.close()
    control = EtcdRoutingControl(endpoints, timeout=1.0)
    try:
        for call in (control.get, lambda: control.set_active("us-west-2", 1), control.history):
            started = time.monotonic()
            with pytest.raises(ControlUnavailable) as info:
                call()
            assert time.monotonic() - started < 1.0 + 0.5
            assert type(info.value) is ControlUnavailable  # nothing was sent, so nothing can land later
            msg = str(info.value)
            assert "\n" not in msg and "failed after" in msg
            assert all(f"{e}: cannot connect" in msg for e in endpoints), msg
    finally:
        control.close()


def test_unreachable_store_is_control_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(ControlUnavailable, match="unreachable"):
        open_control(f"sqlite:///{blocker / 'control.db'}")


def test_corrupt_store_is_control_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "control.db"
    path.write_bytes(b"this is not a sqlite database at all" * 100)
    with pytest.raises(ControlUnavailable, match="unreachable"):
        open_control(f"sqlite:///{path}")
