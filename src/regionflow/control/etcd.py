"""EtcdRoutingControl: the routing control in an etcd 3.4+ cluster, over its v3 JSON gateway (plain httpx).

Keys (``key`` defaults to ``/regionflow/control``):
  ``key``                             the record, JSON {active_region, epoch, updated_at, updated_by, change}
  ``key/history/<epoch, 20 digits>``  every record the control has had (zero-padded, so keys sort by epoch)

``change`` is a random id per set_active/initialize call. It is how a call recognises its own write when
the answer to it was lost (a timeout, a dropped connection, a 5xx): the read before any retry finds the
caller's id in the record (or a retried txn fails its compare and the next read finds it).

Writes are single etcd txns: set_active compares the record's ``mod_revision`` with the one just read and
puts the new record and its history entry together; initialize compares ``create_revision == 0``. Reads
are linearizable (never ``serializable``: a member cut off from the quorum would answer a stale record).

Unavailability is bounded by ``timeout`` (default 4 s, about two elections): members are tried in turn,
each request limited to ``attempt_timeout`` (1 s) because etcd itself holds a request to a member without
a quorum for ~7 s before answering 503. A leader's death costs a write ~1-2 s (the election; measured
median 1.2 s, max 2.0 s over 10 SIGKILLs); losing the quorum makes every call raise ControlUnavailable
after ``timeout`` seconds (measured 4.0 s), naming each member and what it last said.

Late proposals. etcd can apply a write after telling the client it failed: a leader that has just lost
its followers still appends a proposal to its log, answers 503 "request timed out" after ~7 s, and when a
follower returns and the old leader wins the election the entry commits (every time tried on etcd 3.4.23;
tests/contract/test_control_etcd.py pins it down). No compare can stop that: nothing else commits in
between, so the txn finds the state it expected. So: (1) every txn is sent right after a linearizable
read, which needs the quorum, so a txn is never proposed while the cluster is known to lack one (the
quorum-lost case proposes nothing); (2) after an answer that leaves the outcome open, the call re-reads
and retries under the same ``change`` until it knows (its own id in the record: success; another record:
StaleEpoch); (3) if time runs out with the outcome still open (the quorum was lost in the milliseconds
between the read and the txn), it raises ControlOutcomeUnknown, which says the change may still take
effect; never a plain "nothing changed".

https:// endpoints and authentication are not supported (the members regionflow runs listen on loopback).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from regionflow.control.base import ControlNotInitialized, ControlOutcomeUnknown, ControlState, stale_epoch
from regionflow.errors import ConfigError, ControlUnavailable

__all__ = ["DEFAULT_KEY", "DEFAULT_TIMEOUT", "EtcdRoutingControl"]

DEFAULT_KEY = "/regionflow/control"
DEFAULT_TIMEOUT = 4.0
DEFAULT_ATTEMPT_TIMEOUT = 1.0
_RETRY_PAUSE = 0.05  # between rounds over the members, so a refused connection is not a busy loop
# A txn is not sent with less time left than this: one that times out client-side leaves its outcome open,
# so sending it on a sliver of budget would turn a slow answer into "outcome unknown".
_MIN_WRITE_BUDGET = 0.3


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _unb64(text: str) -> str:
    return base64.b64decode(text).decode()


def _prefix_end(prefix: str) -> str:
    """etcd's range_end for "every key starting with prefix" (prefix's last byte plus one)."""
    raw = bytearray(prefix.encode())
    raw[-1] += 1  # the prefixes used here end in "/", never in 0xff
    return base64.b64encode(bytes(raw)).decode()


def _one_line(text: str, limit: int = 160) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


class _Failed(Exception):
    """One request to one member failed; ``maybe_applied`` when the member may have proposed it anyway."""

    def __init__(self, reason: str, *, maybe_applied: bool, retry: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.maybe_applied = maybe_applied
        self.retry = retry


@dataclass(frozen=True)
class _Record:
    state: ControlState
    change: str
    mod_revision: int


class EtcdRoutingControl:
    """The RoutingControl on etcd (``etcd://h1:p1,h2:p2[/prefix]``); see the module docstring."""

    def __init__(self, endpoints: list[str], key: str = DEFAULT_KEY, timeout: float = DEFAULT_TIMEOUT, *,
                 attempt_timeout: float = DEFAULT_ATTEMPT_TIMEOUT, transport: httpx.BaseTransport | None = None
                 ) -> None:
        if not endpoints:
            raise ConfigError("etcd routing control needs at least one endpoint")
        self.endpoints = [self._endpoint(e) for e in endpoints]
        if not key.startswith("/") or key.endswith("/"):
            raise ConfigError(f"etcd routing control key {key!r} must start with '/' and not end with one")
        if timeout <= 0 or attempt_timeout <= 0:
            raise ValueError("timeout and attempt_timeout must be > 0")
        self.key = key
        self.history_prefix = f"{key}/history/"
        self.timeout = timeout
        self.attempt_timeout = attempt_timeout
        # transport: tests inject one that loses answers; trust_env=False: no proxy between us and etcd.
        self._http = httpx.Client(transport=transport, trust_env=False)

    @staticmethod
    def _endpoint(endpoint: str) -> str:
        e = endpoint.strip().rstrip("/")
        if e.startswith("https://"):
            raise ConfigError(f"etcd endpoint {endpoint!r}: https is not supported (use http:// on loopback)")
        if not e.startswith("http://"):
            e = f"http://{e}"
        if e == "http://":
            raise ConfigError(f"etcd endpoint {endpoint!r} names no host")
        return e

    def __repr__(self) -> str:
        return f"EtcdRoutingControl({self.endpoints!r}, key={self.key!r})"

    # ------------------------------------------------------------------ transport

    def _post(self, endpoint: str, path: str, body: dict[str, Any], deadline: float) -> dict[str, Any]:
        """One request to one member; _Failed unless it answered 200 with JSON."""
        budget = min(self.attempt_timeout, deadline - time.monotonic())
        if budget <= 0:
            raise _Failed("not tried (out of time)", maybe_applied=False)
        try:
            resp = self._http.post(f"{endpoint}{path}", json=body,
                                   timeout=httpx.Timeout(budget, connect=min(budget, 0.5)))
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            # The request never reached the member: nothing was proposed.
            raise _Failed(f"cannot connect ({_one_line(str(exc)) or type(exc).__name__})", maybe_applied=False) \
                from None
        except httpx.TimeoutException:
            raise _Failed(f"no answer within {budget:.1f}s", maybe_applied=True) from None
        except httpx.HTTPError as exc:  # e.g. the connection dropped after the request was sent
            raise _Failed(f"{type(exc).__name__}: {_one_line(str(exc))}", maybe_applied=True) from None
        try:
            data = resp.json()
        except ValueError:
            data = None
        if resp.status_code == 200 and isinstance(data, dict):
            return data
        message = (data.get("message") or data.get("error")) if isinstance(data, dict) else resp.text
        reason = f"HTTP {resp.status_code} {_one_line(message or '')}".strip()
        # 5xx: no leader, no quorum, request timed out — the proposal may sit in a leader's log.
        # 4xx: the member refused the request itself (not an etcd gateway?): retrying it will not help.
        server_side = resp.status_code >= 500
        raise _Failed(reason, maybe_applied=server_side, retry=server_side)

    def _unavailable(self, what: str, reasons: dict[str, str], started: float) -> ControlUnavailable:
        tried = "; ".join(f"{e.removeprefix('http://')}: {r}" for e, r in reasons.items()) or "no member tried"
        return ControlUnavailable(f"routing control in etcd (key {self.key}) is unavailable: {what} failed after "
                                  f"{time.monotonic() - started:.1f}s on every member ({tried})")

    def _call(self, path: str, body: dict[str, Any], deadline: float, reasons: dict[str, str], *,
              write: bool) -> dict[str, Any] | _Failed:
        """The first 200 answer from the members, tried in turn until deadline.

        A write stops at the first failure that may have been applied and returns it (the caller re-reads
        before sending the txn again). Returns a _Failed without maybe_applied when time ran out or no
        member can take the request."""
        while True:
            retry = False
            for endpoint in self.endpoints:
                if write and deadline - time.monotonic() < _MIN_WRITE_BUDGET:
                    return _Failed("out of time", maybe_applied=False)
                try:
                    return self._post(endpoint, path, body, deadline)
                except _Failed as failed:
                    if failed.reason != "not tried (out of time)":
                        reasons[endpoint] = failed.reason
                    if write and failed.maybe_applied:
                        return failed
                    retry = retry or failed.retry
            if not retry or time.monotonic() + _RETRY_PAUSE >= deadline:
                return _Failed("out of time", maybe_applied=False)
            time.sleep(_RETRY_PAUSE)

    # ------------------------------------------------------------------ records

    def _parse(self, kv: dict[str, Any]) -> _Record:
        try:
            doc = json.loads(_unb64(kv.get("value", "")))
            state = ControlState(active_region=str(doc["active_region"]), epoch=int(doc["epoch"]),
                                 updated_at=float(doc["updated_at"]), updated_by=str(doc.get("updated_by", "")))
            return _Record(state, str(doc.get("change", "")), int(kv.get("mod_revision", 0)))
        except (ValueError, KeyError, TypeError) as exc:
            key = _unb64(kv.get("key", "")) if kv.get("key") else self.key
            raise ControlUnavailable(f"routing control in etcd: {key} does not hold a control record "
                                     f"({type(exc).__name__}: {_one_line(str(exc))})") from None

    @staticmethod
    def _value(state: ControlState, change: str) -> str:
        return _b64(json.dumps({"active_region": state.active_region, "epoch": state.epoch,
                                "updated_at": state.updated_at, "updated_by": state.updated_by, "change": change},
                               sort_keys=True))

    def _history_key(self, epoch: int) -> str:
        return f"{self.history_prefix}{epoch:020d}"

    def _puts(self, state: ControlState, change: str) -> list[dict[str, Any]]:
        value = self._value(state, change)
        return [{"request_put": {"key": _b64(self.key), "value": value}},
                {"request_put": {"key": _b64(self._history_key(state.epoch)), "value": value}}]

    def _read(self, what: str, deadline: float, reasons: dict[str, str], started: float,
              change: str | None = None) -> _Record | None:
        """The record (linearizable), None when absent. With change set, time running out means a write of
        ours may still land: ControlOutcomeUnknown."""
        answer = self._call("/v3/kv/range", {"key": _b64(self.key)}, deadline, reasons, write=False)
        if isinstance(answer, _Failed):
            if change is not None:
                raise self._outcome_unknown(what, change, reasons, started)
            raise self._unavailable(what, reasons, started)
        kvs = answer.get("kvs") or []
        return self._parse(kvs[0]) if kvs else None

    def _outcome_unknown(self, what: str, change: str, reasons: dict[str, str], started: float) -> ControlUnavailable:
        base = self._unavailable(what, reasons, started)
        return ControlOutcomeUnknown(f"{base}; the change (id {change}) was sent but not confirmed, and etcd may "
                                     "still apply it when it has a quorum again: read the control before retrying")

    def _not_initialized(self) -> ControlNotInitialized:
        return ControlNotInitialized(f"routing control in etcd (key {self.key}) has no record yet (start a region, "
                                     "which initializes it with the configured primary)")

    # ------------------------------------------------------------------ the port

    def get(self) -> ControlState:
        """The record, by a linearizable read (see RoutingControl.get)."""
        started = time.monotonic()
        record = self._read("read", started + self.timeout, {}, started)
        if record is None:
            raise self._not_initialized()
        return record.state

    def set_active(self, region: str, expected_epoch: int, *, by: str = "") -> ControlState:
        """One txn: if the record's mod_revision is the one just read, put (region, epoch + 1) and its history
        entry (see RoutingControl.set_active and the module docstring for lost answers)."""
        if not isinstance(region, str) or not region:
            raise ValueError("set_active needs a region name")
        if isinstance(expected_epoch, bool) or not isinstance(expected_epoch, int):
            raise TypeError(f"expected_epoch must be an int, not {type(expected_epoch).__name__}")
        started = time.monotonic()
        deadline = started + self.timeout
        change = uuid.uuid4().hex
        reasons: dict[str, str] = {}
        sent = False  # a txn of ours may have been proposed: running out of time is then "outcome unknown"
        while True:
            record = self._read("set_active", deadline, reasons, started, change if sent else None)
            if record is None:
                raise self._not_initialized()
            if record.change == change:
                return record.state  # our txn was applied though its answer was lost
            if record.state.epoch != expected_epoch:
                raise stale_epoch(expected_epoch, record.state)
            new = ControlState(active_region=region, epoch=expected_epoch + 1, updated_at=time.time(), updated_by=by)
            txn = {"compare": [{"key": _b64(self.key), "target": "MOD", "result": "EQUAL",
                                "mod_revision": str(record.mod_revision)}],
                   "success": self._puts(new, change)}
            answer = self._call("/v3/kv/txn", txn, deadline, reasons, write=True)
            if isinstance(answer, dict):
                if answer.get("succeeded"):
                    return new
                continue  # the record changed since the read: re-read (it may be ours, or a new epoch)
            sent = sent or answer.maybe_applied
            if not answer.maybe_applied:
                if sent:
                    raise self._outcome_unknown("set_active", change, reasons, started)
                raise self._unavailable("set_active", reasons, started)
            time.sleep(_RETRY_PAUSE)

    def initialize(self, region: str) -> ControlState:
        """One txn on create_revision == 0 (see RoutingControl.initialize). If the record was removed by hand
        but its history survives, the epoch continues after the last one: it must never go back."""
        if not isinstance(region, str) or not region:
            raise ValueError("initialize needs a region name")
        started = time.monotonic()
        deadline = started + self.timeout
        change = uuid.uuid4().hex
        reasons: dict[str, str] = {}
        sent = False
        while True:
            record = self._read("initialize", deadline, reasons, started, change if sent else None)
            if record is not None:
                return record.state
            last = self._history("initialize", 1, deadline, reasons, started, change if sent else None)
            new = ControlState(active_region=region, epoch=(last[0].epoch if last else 0) + 1,
                               updated_at=time.time(), updated_by="initialize")
            txn = {"compare": [{"key": _b64(self.key), "target": "CREATE", "result": "EQUAL",
                                "create_revision": "0"}],
                   "success": self._puts(new, change)}
            answer = self._call("/v3/kv/txn", txn, deadline, reasons, write=True)
            if isinstance(answer, dict):
                if answer.get("succeeded"):
                    return new
                continue  # someone else created it: the re-read returns theirs
            sent = sent or answer.maybe_applied
            if not answer.maybe_applied:
                if sent:
                    raise self._outcome_unknown("initialize", change, reasons, started)
                raise self._unavailable("initialize", reasons, started)
            time.sleep(_RETRY_PAUSE)

    def _history(self, what: str, limit: int, deadline: float, reasons: dict[str, str], started: float,
                 change: str | None = None) -> list[ControlState]:
        body = {"key": _b64(self.history_prefix), "range_end": _prefix_end(self.history_prefix),
                "sort_order": "DESCEND", "sort_target": "KEY", "limit": str(limit)}
        answer = self._call("/v3/kv/range", body, deadline, reasons, write=False)
        if isinstance(answer, _Failed):
            if change is not None:
                raise self._outcome_unknown(what, change, reasons, started)
            raise self._unavailable(what, reasons, started)
        return [self._parse(kv).state for kv in answer.get("kvs") or []]

    def history(self, limit: int = 50) -> list[ControlState]:
        """The last limit records, newest first, by one linearizable range read over the history keys."""
        if limit <= 0:
            return []
        started = time.monotonic()
        return self._history("history", limit, started + self.timeout, {}, started)

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()
