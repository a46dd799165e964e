"""The disaster-recovery drill: a fresh two-region stack, a load, a regional failure mid-way, failover,
failback, and a check that no file was lost or processed twice.

Steps (each bounded in time, loopback only):

1. `init` a stack in a temporary directory, `up`, load the reference table, and process the sample file
   once with the single-region engine (`process_file`): the output every upload must reproduce byte for byte.
2. Upload `files` copies of the sample (distinct keys) through the access point in the background. An upload
   that fails while regions switch is retried; a file counts as submitted once its upload succeeded.
3. About half-way through the uploads, inject the scenario into the primary region (us-east-1):

   - ``kill``: SIGKILL the region's process group (gateway, orchestrator, workers, replicators).
   - ``storage-outage``: the fault ``storage_unreachable`` for longer than the failover takes; the region's
     process stays up (its gateway answers, its state store and feed work, its objects cannot be read or
     written), as in a storage-service outage.
   - ``replication-pause``: replication us-east-1 -> us-west-2 is paused (objects and state) so a backlog
     builds up while the load goes on, then the region is killed. This is the scenario where the standby
     is behind when disaster strikes: it exercises the RPO (uploads the standby has not seen at the switch)
     and the "missing objects start by themselves when they arrive" path. (Pausing without a failure is not
     a drill: the failover plan rightly refuses to switch while the replication it must wait for is paused.)
4. Fail over to us-west-2 with the configured plan; the rest of the load goes through the access point to it.
5. Bring us-east-1 back (restart it / clear the fault / restart it and resume replication), fail back,
   wait until every job has finished and both regions agree.
6. Collect jobs, chunks, rejects, outputs and the shared outbox from both regions (drill/observe.py) and
   check the invariants (drill/invariants.py, pure functions of the collected data).

The report (drill/report.py: JSON, and Markdown) gives RTO and RPO, lost files, duplicated outputs and
notifications, reprocessed chunks and each invariant. The stack is torn down in every case; its directory
is removed when the drill passed and kept (and named in the report) when it did not.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from regionflow.config import Config, backends_in_use, init_project, load_config
from regionflow.drill import observe
from regionflow.drill.invariants import check_invariants, extra_chunk_executions, records_agree
from regionflow.drill.loadtest import Upload, follow_jobs, load_reference, upload_files
from regionflow.drill.observe import DrillError, StackView, sha256
from regionflow.drill.report import Outcome, build_report, write_report
from regionflow.errors import RegionflowError
from regionflow.polling import PollTimeout, poll_until
from regionflow.region.stack import kill_region, start_stack, stop_stack
from regionflow.switch.records import TERMINAL_EXECUTION_STATUSES

__all__ = ["SCENARIOS", "DrillError", "SwitchFailed", "run_drill"]

SCENARIOS = ("kill", "storage-outage", "replication-pause")
STORAGE_OUTAGE_SECONDS = 600.0  # covers the failover and the rest of the load; cleared explicitly after
PAUSE_BUILDUP_SECONDS = 2.0  # replication-pause: how long the backlog builds before the region dies
STALL_SECONDS = 30.0  # after failback, no job finishing for this long means the rest are stuck

Narrate = Callable[[str], None]


class SwitchFailed(DrillError):
    """A failover or failback execution ended FAILED; the record says which step and why."""

    def __init__(self, record: dict[str, Any], what: str):
        failed = next((s for s in record.get("steps", []) if s["status"] == "FAILED"), None)
        super().__init__(f"{what} execution {record.get('execution_id')} {record.get('status')}: "
                         f"{(failed or {}).get('error') or record.get('error')}")
        self.record = record
        self.what = what


class _Drill:
    """One drill run: its stack, its load, its timeline and what each step recorded (in .steps)."""

    def __init__(self, root: Path, files: int, scenario: str, rows: int, concurrency: int, interval: float,
                 deadline: float, narrate: Narrate | None, servers: bool = False):
        self.root = root
        self.servers = servers
        self.backends: dict[str, Any] = {}
        self.files = files
        self.scenario = scenario
        self.rows = rows
        self.concurrency = concurrency
        self.interval = interval
        self.deadline = deadline
        self._narrate = narrate
        self.t0 = time.monotonic()
        self.timeline: list[dict[str, Any]] = []
        self._view: StackView | None = None
        self.config_path: Path | None = None
        self.primary = self.standby = ""
        self.expected: dict[str, Any] | None = None
        self.stop = threading.Event()
        self.uploads: list[Upload] = []
        self.submitted: list[Upload] = []
        self._sub_changed = threading.Condition(threading.Lock())
        self.loader: threading.Thread | None = None
        self.loader_error: BaseException | None = None
        self.sampler: threading.Thread | None = None
        self.samples: list[tuple[float, dict[str, Any]]] = []
        self.steps: dict[str, Any] = {}
        self.failures: list[str] = []  # steps that failed but did not stop the drill
        self.fault_at: float | None = None
        self.stack_started = False

    @property
    def view(self) -> StackView:
        if self._view is None:
            raise DrillError("the drill's stack is not set up")
        return self._view

    @property
    def config(self) -> Config:
        return self.view.config

    # -- narration and time --------------------------------------------------------------------------
    def say(self, event: str) -> None:
        t = time.monotonic() - self.t0
        self.timeline.append({"t": round(t, 3), "at": time.time(), "event": event})
        if self._narrate is not None:
            self._narrate(f"[{t:6.1f}s] {event}")

    def remaining(self, cap: float) -> float:
        """cap seconds, or what is left of the drill's time if less; DrillError when none is left."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise DrillError("the drill ran out of time")
        return min(cap, left)

    def eventually(self, predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
        """poll_until within the drill's time; DrillError on timeout."""
        try:
            return poll_until(predicate, timeout=self.remaining(timeout), interval=interval, what=what)
        except PollTimeout:
            raise DrillError(f"timed out after {timeout:g}s waiting for {what}") from None

    # -- steps -----------------------------------------------------------------------------------------
    def setup(self) -> None:
        from regionflow.workloads.batch.local import process_file
        from regionflow.workloads.batch.sample import generate

        self.config_path = init_project(self.root, servers=self.servers)
        self._view = StackView(load_config(self.config_path))
        config = self.config
        self.backends = backends_in_use(config)
        self.primary = config.primary
        self.standby = next(r.name for r in config.regions if r.name != self.primary)
        sample = generate(self.rows, self.root / "data", invalid_ratio=0.05, seed=11)
        self.sample = sample
        self.say(f"fresh stack in {self.root}; sample file of {self.rows} rows ({sample.invalid} invalid)")
        pipeline = config.load_pipeline()
        single = process_file(sample.orders, sample.financial, self.root / "single-region.csv", pipeline=pipeline,
                              rejects_path=self.root / "single-region-rejects.csv", workers=1)
        if single.job.status != "COMPLETED":
            raise DrillError(f"the single-region run of the sample failed: {single.job.reason}")
        expected: dict[str, Any] = {"output_sha256": sha256((self.root / "single-region.csv").read_bytes()),
                    "rows_in": single.job.rows_in, "rows_ok": single.job.rows_ok,
                    "rows_rejected": single.job.rows_rejected}
        self.expected = expected
        self.say(f"single-region reference run: {single.job.rows_ok} ok, {single.job.rows_rejected} rejected, "
                 f"output sha256 {expected['output_sha256'][:12]}")
        self.stack_started = True
        start_stack(self.config_path, config, timeout=self.remaining(90))
        self.say(f"stack up: {self.primary} (active), {self.standby}, access point {config.access_point_url}")
        enrichment = pipeline.enrichment
        if enrichment is not None:
            load_reference(config.access_point_url, self.view.secrets.api_token, sample.financial,
                           enrichment.table, enrichment.reference_key, verify=self.view.verify)
            head = self.view.ask(self.primary, lambda api: api.feed_stats(0), admin=True)["head"]
            self.eventually(lambda: self._caught_up(head), 60, "the reference table to replicate")
            self.say(f"reference table {enrichment.table!r} loaded and replicated to {self.standby}")

    def _caught_up(self, seq: int) -> bool:
        """Whether the standby has applied the primary's feed (objects and state) through seq."""
        d = self.view.direction(self.standby, self.primary)
        return bool(d and all(v >= seq for v in d["checkpoint"].values()))

    def start_load(self) -> None:
        data = self.sample.orders.read_bytes()
        keys = [f"input/drill-{i:04d}.csv" for i in range(self.files)]
        url, token = self.config.access_point_url, self.view.secrets.api_token

        def submitted(up: Upload) -> None:
            with self._sub_changed:
                self.submitted.append(up)
                self._sub_changed.notify_all()

        def load() -> None:
            try:
                self.uploads = upload_files(url, token, data, keys, concurrency=self.concurrency,
                                            interval=self.interval, deadline=self.deadline, on_submitted=submitted,
                                            stop=self.stop, verify=self.view.verify)
            except BaseException as exc:  # reported by finish_load
                self.loader_error = exc
            finally:
                with self._sub_changed:
                    self._sub_changed.notify_all()

        def sample_replication() -> None:
            # the standby's view of the primary, kept for the RPO estimate when the primary cannot tell
            while not self.stop.wait(0.25):
                d = self.view.direction(self.standby, self.primary)
                if d is not None and d.get("reachable"):
                    self.samples.append((time.time(), d))

        self.sampler = threading.Thread(target=sample_replication, name="drill-sampler", daemon=True)
        self.sampler.start()
        self.loader = threading.Thread(target=load, name="drill-load", daemon=True)
        self.loader.start()
        self.say(f"load started: {self.files} files, {self.concurrency} uploaders, one every {self.interval:g}s")

    def _loading(self) -> bool:
        return self.loader is not None and self.loader.is_alive()

    def wait_submitted(self, count: int) -> int:
        """Wait until count uploads succeeded (or the load ended); how many did."""
        limit = time.monotonic() + self.remaining(300)
        with self._sub_changed:
            while len(self.submitted) < count and self._loading():
                if time.monotonic() > limit:
                    raise DrillError(f"only {len(self.submitted)} of {count} uploads succeeded in time")
                self._sub_changed.wait(0.2)
            return len(self.submitted)

    def _kill(self, region: str) -> None:
        try:
            killed = kill_region(self.config, region, timeout=self.remaining(15))
            if len(killed) > 1:
                self.say(f"SIGKILL {', '.join(killed[1:])} (the region's servers) with it")
        except RegionflowError as exc:
            raise DrillError(f"killing {region}: {exc}") from None

    def _replication(self, action: str) -> None:
        # the pause flag lives in the standby: its replicator stops applying the primary's feed
        doing = {"pause": "pausing", "resume": "resuming"}[action]
        self.view.ask(self.standby, lambda api: api.replication_action(self.primary, action, "all"), admin=True,
                      doing=f"{doing} replication {self.primary} -> {self.standby}")

    def inject(self) -> None:
        half = max(1, self.files // 2)
        n = self.wait_submitted(half)
        if self.scenario == "replication-pause":
            self._replication("pause")
            self.say(f"paused replication {self.primary} -> {self.standby} (objects and state) after {n} of "
                     f"{self.files} files")
            # let a backlog build: a few seconds, or until three quarters of the files are in
            until = time.monotonic() + PAUSE_BUILDUP_SECONDS
            with self._sub_changed:
                while (time.monotonic() < until and len(self.submitted) < max(n + 1, (3 * self.files) // 4)
                       and self._loading()):
                    self._sub_changed.wait(0.1)
            d = self.view.direction(self.standby, self.primary) or {}
            self.say(f"backlog {self.primary} -> {self.standby}: {d.get('backlog')} changes, lag "
                     f"{d.get('lag_seconds')} s")
            n = len(self.submitted)
            self.fault_at = time.time()
            self._kill(self.primary)
            self.say(f"SIGKILL {self.primary} (process group) with replication still paused, after {n} files")
        elif self.scenario == "kill":
            self.fault_at = time.time()
            self._kill(self.primary)
            self.say(f"SIGKILL {self.primary} (process group) after {n} of {self.files} files were submitted")
        else:
            fault = self.view.ask(self.primary, lambda api: api.inject_fault("storage_unreachable",
                                                                             STORAGE_OUTAGE_SECONDS),
                                  admin=True, doing=f"injecting storage_unreachable into {self.primary}")
            self.fault_at = time.time()
            self.say(f"storage of {self.primary} unreachable (fault {fault['id']}) after {n} of {self.files} "
                     "files were submitted")

    def switch(self, target: str, what: str) -> dict[str, Any]:
        """Run the configured plan's workflow for target, in target (what `failover`/`failback` do)."""
        self.say(f"{what}: running plan for {target}")
        started = time.monotonic()
        plan_path = str(Path(self.config.plan_path).resolve())
        record: dict[str, Any] = self.view.ask(
            target, lambda api: api.run_plan(plan_path, target, practice=False, started_by=f"drill-{self.scenario}"),
            admin=True, doing=f"{what} to {target} refused")
        execution_id = record["execution_id"]

        def finished() -> dict[str, Any] | None:
            nonlocal record
            if record["status"] in TERMINAL_EXECUTION_STATUSES:
                return record
            # the target is busy switching: a question it does not answer is asked again
            latest = self.view.try_ask(target, lambda api: api.execution(execution_id), admin=True)
            if latest is not None:
                record = latest
            return record if record["status"] in TERMINAL_EXECUTION_STATUSES else None

        try:
            poll_until(finished, timeout=self.remaining(600), interval=0.1, what=f"{what} {execution_id}")
        except PollTimeout:
            raise DrillError(f"{what} execution {execution_id} still {record['status']}") from None
        record["command_seconds"] = round(time.monotonic() - started, 3)
        steps = ", ".join(f"{s['kind']} {s['status'].lower()}" for s in record.get("steps", []))
        self.say(f"{what} {record['status']} in {record['command_seconds']:.2f}s, RTO {record.get('rto_seconds')}s "
                 f"({steps})")
        if record["status"] != "SUCCEEDED":
            raise SwitchFailed(record, what)
        return record

    def measure_rpo_files(self, failover: dict[str, Any]) -> dict[str, Any]:
        """Which files submitted before the switch the standby could not process after it."""
        jobs = self.view.jobs(self.standby) or []
        return observe.rpo_files(failover, self.submitted, (j["job_id"] for j in jobs), self.standby)

    def bring_back(self) -> None:
        if self.scenario == "storage-outage":
            self.view.ask(self.primary, lambda api: api.clear_faults(), admin=True,
                          doing=f"clearing the faults of {self.primary}")
            self.say(f"storage of {self.primary} is back (fault cleared)")
            return
        assert self.config_path is not None  # set by setup
        start_stack(self.config_path, self.config, timeout=self.remaining(90))
        self.say(f"{self.primary} restarted (`up --detach` starts the missing process)")

    def resume_replication(self) -> None:
        if self.scenario != "replication-pause":
            return
        self._replication("resume")
        self.say(f"replication {self.primary} -> {self.standby} resumed")

    def finish_load(self) -> None:
        assert self.loader is not None  # started by start_load
        self.loader.join(self.remaining(600))
        if self.loader.is_alive():
            raise DrillError("the load did not finish in time")
        if self.loader_error is not None:
            raise DrillError(f"the load failed: {self.loader_error!r}")
        failed = [u for u in self.uploads if not u.submitted]
        retried = sum(1 for u in self.uploads if u.attempts > 1)
        self.say(f"load finished: {len(self.uploads) - len(failed)} of {self.files} files submitted"
                 f"{f', {retried} after retries' if retried else ''}"
                 f"{f', {len(failed)} never accepted' if failed else ''}")

    def _converged(self) -> bool:
        """Both regions know the same jobs, agree on them, and replication has drained both ways."""
        views = {}
        for name in (self.primary, self.standby):
            jobs = self.view.jobs(name)
            if jobs is None:
                return False
            views[name] = {j["job_id"]: j for j in jobs}
        if not records_agree(views):
            return False
        for target, source in ((self.primary, self.standby), (self.standby, self.primary)):
            d = self.view.direction(target, source)
            if not d or not d["reachable"] or any(d["backlog"].values()):
                return False
        return True

    def wait_done(self) -> None:
        ids = [u.job_id for u in self.uploads if u.job_id]
        finished = follow_jobs(self.config.access_point_url, self.view.secrets.api_token, ids,
                               deadline=time.monotonic() + self.remaining(60 + 2 * self.files),
                               stall=STALL_SECONDS, verify=self.view.verify)
        pending = sorted(set(ids) - finished.keys())
        failed = sorted(j for j, v in finished.items() if v["status"] == "FAILED")
        self.say(f"{len(finished)} of {len(ids)} jobs finished ({len(failed)} failed"
                 f"{', ' + str(len(pending)) + ' unfinished: ' + ', '.join(pending[:3]) if pending else ''})"
                 f"{f'; none finished in the last {STALL_SECONDS:g}s' if pending else ''}")
        try:
            self.eventually(self._converged, 30 if pending else 60, "both regions to converge", interval=0.5)
            self.say("both regions agree on every job; replication drained both ways")
        except DrillError as exc:  # the invariants will say what differs
            self.say(str(exc))

    def teardown(self) -> None:
        self.stop.set()
        for t in (self.loader, self.sampler):
            if t is not None:
                t.join(timeout=35)
        if self._view is not None and self.stack_started:
            with contextlib.suppress(Exception):
                stop_stack(self.config)

    # -- the whole drill -------------------------------------------------------------------------------
    def run(self) -> None:
        r = self.steps
        self.setup()
        r.update({"primary": self.primary, "standby": self.standby})
        self.start_load()
        self.inject()
        try:
            failover = self.switch(self.standby, "failover")
        except SwitchFailed as exc:
            # Carry on without the switch: bring the region back, let the load finish, and check what became
            # of the files, so the report shows the consequences and not just the failed step.
            failover = exc.record
            self.failures.append(str(exc))
            self.say(f"{exc}; carrying on without the switch")
        r["failover"] = failover
        switched = failover.get("status") == "SUCCEEDED"
        if switched:
            rpo = r["rpo"] = self.measure_rpo_files(failover)
            self.say(f"at the switch {self.standby} lacked {rpo['files']} of {rpo['submitted_before_switch']} "
                     f"submitted files ({rpo['unknown_to_standby']} unknown to it, {rpo['missing_objects']} "
                     "missing objects)")
            self.finish_load()
        self.bring_back()
        self.eventually(lambda: self.view.deep_healthy(self.primary), 60, f"{self.primary} to be healthy")
        if switched:
            r["rpo"].update(observe.rpo_seconds(self.view, self.primary, failover, self.samples, self.fault_at))
            self.say(f"RPO: {r['rpo']['files']} file(s), {r['rpo']['seconds']} s of replication not applied at "
                     "the switch")
        self.resume_replication()
        if not switched:
            self.finish_load()
        try:
            r["failback"] = self.switch(self.primary, "failback")
        except SwitchFailed as exc:
            r["failback"] = exc.record
            self.failures.append(str(exc))
            self.say(f"{exc}; carrying on")
        self.wait_done()
        data = observe.collect(self.view, (self.primary, self.standby), self.uploads, self.expected or {},
                               self.primary)
        r["checked"] = check_invariants(data)
        r["chunk_executions_beyond_one"] = extra_chunk_executions(
            observe.logged_chunk_starts(self.config), data["regions"][data["authoritative"]]["chunks"])


def run_drill(files: int = 20, scenario: str = "kill", report_dir: Path | str | None = None, rows: int = 2000,
              progress: Narrate | None = None, *, concurrency: int = 4, interval: float = 0.1,
              timeout: float = 900.0, keep: bool = False, servers: bool = False) -> dict[str, Any]:
    """Run one DR drill (see the module docstring) and return its report; write it as JSON and Markdown into
    report_dir when given. servers: the stack is `init --servers` (each region on its own SeaweedFS and
    PostgreSQL, the control on etcd), and killing a region kills its servers too. The report's `passed` is
    False when any invariant failed or a step could not be carried out (`error` then says which)."""
    if scenario not in SCENARIOS:
        raise RegionflowError(f"unknown scenario {scenario!r} (known: {', '.join(SCENARIOS)})")
    if files < 2:
        raise RegionflowError("a drill needs at least 2 files (the failure comes half-way through the load)")
    if rows < 1:
        raise RegionflowError("rows must be at least 1")
    started = time.time()
    root = Path(tempfile.mkdtemp(prefix=f"regionflow-drill-{scenario}-"))
    if servers:
        root.chmod(0o711)  # the PostgreSQL clusters run as the postgres user, who must reach their data
    drill = _Drill(root, files, scenario, rows, concurrency, interval, time.monotonic() + timeout, progress,
                   servers)
    error: str | None = None
    try:
        drill.run()
    except SwitchFailed as exc:
        drill.steps[exc.what] = exc.record
        error = str(exc)
    except Exception as exc:  # any step that could not be carried out ends up in the report, not a traceback
        error = f"{type(exc).__name__}: {exc}"
    finally:
        drill.teardown()
    if error:
        drill.say(f"drill stopped: {error}")
    elif drill.failures:
        error = "; ".join(drill.failures)
    report = build_report(Outcome(scenario, files, rows, started, uploads=drill.uploads, steps=drill.steps,
                                  timeline=drill.timeline, expected=drill.expected, error=error,
                                  backends=drill.backends))
    kept = keep or not report["passed"]
    write_report(report, report_dir, root if kept else None)
    if not kept:
        shutil.rmtree(root, ignore_errors=True)
    elif progress is not None:
        progress(f"kept the drill's stack directory for inspection: {root}")
    return report
