"""The etcd routing control when members fail: one member or the leader killed, the quorum lost, answers
lost on the way back. These tests stop members, so they run on a cluster of their own (``cluster``),
which every test finds whole again (``ensure_all_up``).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator

import httpx
import pytest

from etcdkit import EtcdCluster, running_cluster
from regionflow.control import ControlOutcomeUnknown, ControlState, open_control
from regionflow.control.etcd import DEFAULT_TIMEOUT, EtcdRoutingControl
from regionflow.errors import ControlUnavailable
from regionflow.polling import poll_until

SLACK = 1.5  # scheduling noise on a loaded 2-core machine, on top of the adapter's documented bound


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """This module's own 3-member cluster (its tests kill members)."""
    with running_cluster(tmp_path_factory.mktemp("etcd-faults")) as c:
        yield c


@pytest.fixture
def whole(cluster: EtcdCluster) -> EtcdCluster:
    """The cluster with all three members up and a leader, whatever the previous test stopped."""
    cluster.ensure_all_up()
    return cluster


@pytest.fixture
def control(whole: EtcdCluster) -> Iterator[EtcdRoutingControl]:
    """An initialized control (us-east-1, epoch 1) under a fresh key of the whole cluster."""
    c = open_control(whole.url())
    assert isinstance(c, EtcdRoutingControl)
    c.initialize("us-east-1")
    try:
        yield c
    finally:
        c.close()


def _timed(call):  # noqa: ANN001, ANN202 (any callable)
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def _wait_readable(control: EtcdRoutingControl) -> ControlState:
    """The record, once the cluster serves linearizable reads again."""
    def read() -> ControlState | None:
        try:
            return control.get()
        except ControlUnavailable:
            return None
    return poll_until(read, timeout=60, interval=0.1, what="the control to be readable again")


# ---------------------------------------------------------------------------------------------- one member


def test_follower_killed_reads_and_writes_go_on(whole: EtcdCluster, control: EtcdRoutingControl) -> None:
    leader = whole.wait_leader()
    follower = next(m for m in whole.members if m is not leader)
    whole.kill(follower.name)
    state, took = _timed(lambda: control.set_active("us-west-2", 1, by="test"))
    assert (state.active_region, state.epoch) == ("us-west-2", 2)
    assert took < 1.0  # no election: the dead member refuses connections and the next one answers
    assert control.get() == state
    assert [s.epoch for s in control.history()] == [2, 1]


def test_leader_killed_set_active_waits_out_the_election(whole: EtcdCluster, control: EtcdRoutingControl) -> None:
    leader = whole.wait_leader()
    whole.kill(leader.name)
    state, took = _timed(lambda: control.set_active("us-west-2", 1, by="test"))
    assert (state.active_region, state.epoch) == ("us-west-2", 2)
    assert took < DEFAULT_TIMEOUT + SLACK
    print(f"set_active with the leader just killed took {took:.2f}s")  # reported with -s
    assert whole.leader() not in (None, leader)
    assert control.get() == state
    # Retried txns (same change id) applied once: one history entry per epoch.
    assert [s.epoch for s in control.history()] == [2, 1]


def test_leader_killed_get_waits_out_the_election(whole: EtcdCluster, control: EtcdRoutingControl) -> None:
    before = control.get()
    whole.kill(whole.wait_leader().name)
    state, took = _timed(control.get)
    assert state == before and took < DEFAULT_TIMEOUT + SLACK


# ---------------------------------------------------------------------------------------------- quorum lost


@pytest.mark.parametrize("survivor", ["leader", "follower"])
def test_quorum_lost_refuses_within_bound_and_changes_nothing(whole: EtcdCluster, control: EtcdRoutingControl,
                                                              survivor: str) -> None:
    control.set_active("us-west-2", 1, by="setup")
    before, history = control.get(), control.history()
    leader = whole.wait_leader()
    keep = leader if survivor == "leader" else next(m for m in whole.members if m is not leader)
    killed = [m for m in whole.members if m is not keep]
    for m in killed:
        whole.kill(m.name)

    # A surviving leader still thinks it leads for up to an election timeout: the dangerous moment for a
    # write (see test_etcd_commits_a_proposal_it_answered_as_failed), so try at once.
    with pytest.raises(ControlUnavailable) as info:
        control.set_active("us-east-1", 2, by="must not land")
    assert type(info.value) is ControlUnavailable, info.value  # not "outcome unknown": nothing was sent
    for call in (control.get, control.history):
        started = time.monotonic()
        with pytest.raises(ControlUnavailable) as info:
            call()
        took = time.monotonic() - started
        assert took < DEFAULT_TIMEOUT + SLACK, took
    msg = str(info.value)
    assert "\n" not in msg and f"key {control.key}" in msg and "failed after" in msg
    for m in killed:
        assert f"{m.address.removeprefix('http://')}: cannot connect" in msg, msg
    assert f"{keep.address.removeprefix('http://')}: " in msg

    # One member back is a quorum again. Had the txn reached the old leader's log, this is when it would
    # commit (the old leader has the longer log and wins the election).
    whole.start(killed[0].name)
    assert _wait_readable(control) == before
    assert control.history() == history
    whole.start(killed[1].name)
    assert control.get() == before
    new = control.set_active("us-east-1", 2, by="after")
    assert (new.active_region, new.epoch) == ("us-east-1", 3)


def test_etcd_commits_a_proposal_it_answered_as_failed(whole: EtcdCluster, control: EtcdRoutingControl) -> None:
    """Why set_active reads (with the quorum) right before each txn: etcd itself applies late proposals.

    A bare txn sent to a leader whose followers just died gets no answer (etcd would say 503 "request
    timed out" after ~7 s), yet commits once a follower returns."""
    leader = whole.wait_leader()
    kv = httpx.post(f"{leader.address}/v3/kv/range", json={"key": _b64(control.key)}, timeout=5).json()["kvs"][0]
    for m in whole.members:
        if m is not leader:
            whole.kill(m.name)
    late = {"active_region": "late", "epoch": 2, "updated_at": time.time(), "updated_by": "raw", "change": "raw"}
    txn = {"compare": [{"key": _b64(control.key), "target": "MOD", "result": "EQUAL",
                        "mod_revision": kv["mod_revision"]}],
           "success": [{"request_put": {"key": _b64(control.key), "value": _b64(json.dumps(late))}}]}
    try:
        resp = httpx.post(f"{leader.address}/v3/kv/txn", json=txn, timeout=1.0)
        assert resp.status_code >= 500, resp.text  # it did not succeed now
    except httpx.TimeoutException:
        pass
    whole.start(next(m.name for m in whole.members if m is not leader))
    assert _wait_readable(control).active_region == "late"  # "failed", and yet applied


# ---------------------------------------------------------------------------------------------- lost answers


class _LoseFirstTxnAnswer(httpx.HTTPTransport):
    """Sends every request; the answer to the first txn is dropped (as by a timeout) after etcd applied it.
    With go_silent, nothing answers afterwards either (the quorum lost right after the txn)."""

    def __init__(self, *, go_silent: bool) -> None:
        super().__init__()
        self.go_silent = go_silent
        self.silent = False
        self.txns = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.silent:
            raise httpx.ConnectError("connection refused (test: no member answers)", request=request)
        response = super().handle_request(request)
        if request.url.path == "/v3/kv/txn":
            self.txns += 1
            if self.txns == 1:
                response.read()
                response.close()
                self.silent = self.go_silent
                raise httpx.ReadTimeout("answer lost (test)", request=request)
        return response


def test_lost_answer_to_own_txn_is_recognised_as_success(whole: EtcdCluster) -> None:
    url = whole.url()
    setup = open_control(url)
    assert isinstance(setup, EtcdRoutingControl)
    setup.initialize("us-east-1")
    transport = _LoseFirstTxnAnswer(go_silent=False)
    control = EtcdRoutingControl([m.address for m in whole.members], setup.key, transport=transport)
    try:
        state = control.set_active("us-west-2", 1, by="lost answer")
        assert (state.active_region, state.epoch) == ("us-west-2", 2)  # not StaleEpoch against its own write
        assert transport.txns == 1  # the read before any retry found our change id: no second txn
        assert setup.get() == state
        assert [s.epoch for s in setup.history()] == [2, 1]
    finally:
        control.close()
        setup.close()


def test_lost_answer_then_silence_is_outcome_unknown(whole: EtcdCluster) -> None:
    url = whole.url()
    setup = open_control(url)
    assert isinstance(setup, EtcdRoutingControl)
    setup.initialize("us-east-1")
    control = EtcdRoutingControl([m.address for m in whole.members], setup.key, timeout=1.0,
                                 transport=_LoseFirstTxnAnswer(go_silent=True))
    try:
        started = time.monotonic()
        with pytest.raises(ControlOutcomeUnknown, match="may still apply it") as info:
            control.set_active("us-west-2", 1, by="sent")
        assert time.monotonic() - started < 1.0 + SLACK
        assert isinstance(info.value, ControlUnavailable)  # callers that only know the port error catch it
        # And indeed it changed: this is the case a plain "unavailable, nothing changed" would hide.
        assert setup.get().updated_by == "sent"
    finally:
        control.close()
        setup.close()


# ---------------------------------------------------------------------------------------------- operators


def test_record_is_json_visible_with_etcdctl(whole: EtcdCluster, control: EtcdRoutingControl) -> None:
    control.set_active("us-west-2", 1, by="operator check")
    done = whole.etcdctl("get", control.key, "--print-value-only")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert (record["active_region"], record["epoch"], record["updated_by"]) == ("us-west-2", 2, "operator check")
    listed = whole.etcdctl("get", "--prefix", "--keys-only", f"{control.key}/history/")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == [f"{control.key}/history/{e:020d}" for e in (1, 2)]


def test_member_restarts_on_its_data_dir(whole: EtcdCluster, control: EtcdRoutingControl) -> None:
    """A restart (data dir present) ignores the initial-cluster flags and rejoins with its data."""
    state = control.set_active("us-west-2", 1)
    whole.stop_all()
    assert whole.running() == []
    whole.start()
    assert _wait_readable(control) == state


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
