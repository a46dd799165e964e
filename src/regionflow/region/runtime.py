"""One region process, wired: its stores (behind fault guards), routing control, replication, the batch
workload, fault control, the region switch, and the background loops that drive them.

The gateway (HTTP) calls into this; nothing here knows about HTTP. The region implements the switch's
SwitchContext (name, control, replication, peers, executions, metrics, services).
"""

from __future__ import annotations

import functools
import logging
import shutil
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from regionflow.api.client import ApiClient
from regionflow.chaos.faults import FaultRegistry
from regionflow.chaos.guards import guard_control, guard_objects, guard_state
from regionflow.config import Config, load_secrets
from regionflow.control import CachedControl, open_control
from regionflow.errors import RegionflowError
from regionflow.executor import open_executor
from regionflow.notify import OutboxNotifier, open_notifier
from regionflow.region.fault_control import FaultControl
from regionflow.region.ingest import Ingest
from regionflow.region.metrics import RegionMetrics
from regionflow.region.peers import HttpPeers
from regionflow.region.triggers import RegionSignals, TriggerLoop
from regionflow.replication.directions import ReplicationSet
from regionflow.replication.feeding import FeedingObjectStore
from regionflow.replication.source import HttpFeedSource
from regionflow.replication.upload_sync import UploadReplication
from regionflow.replication.watcher import StoreWatcher
from regionflow.state import open_state_store
from regionflow.storage import open_object_store
from regionflow.switch.runner import SwitchRunner
from regionflow.switch.triggers import CanaryResult, TriggerEngine
from regionflow.workloads.batch.orchestrator import INPUT_PREFIX, Orchestrator, held_bytes
from regionflow.workloads.batch.service import BatchService
from regionflow.workloads.registry import step_registry

log = logging.getLogger("regionflow.region")

SWEEP_INTERVAL = 2.0
T = TypeVar("T")


class Region:
    def __init__(self, config: Config, name: str):
        self.config = config
        self.name = name
        rc = config.region(name)
        self.secrets = load_secrets(config)
        self.metrics = RegionMetrics(name, config.region_names)
        data_dir = Path(config.data_dir) / name
        self.faults = FaultRegistry(data_dir / "faults.json")
        # Uploads are received here before they are stored; what a crash left behind is garbage.
        self.upload_dir = data_dir / "uploads"
        shutil.rmtree(self.upload_dir, ignore_errors=True)
        self.faults.clear_faults()  # faults do not outlive the process they were injected into
        store_options = self.secrets.s3_credentials if rc.store_url.startswith("s3://") else {}
        self.plain_objects = guard_objects(open_object_store(rc.store_url, **store_options), self.faults)
        self.state = guard_state(open_state_store(rc.state, name, password=self.secrets.postgres_password),
                                 self.faults)
        self.objects = FeedingObjectStore(self.plain_objects, self.state)
        self.control = CachedControl(guard_control(open_control(config.control), self.faults), ttl=1.0)
        self.control.initialize(config.primary)
        self.executor = open_executor(rc.executor, rc.workers, preload=("regionflow.workloads.batch.worker",))
        self.concurrent_jobs = rc.concurrent_jobs
        self.batch = BatchService(name, self.objects, self.state, self.metrics.batch, self.owner)
        # One outbox for the whole stack, like one mail system: the job id dedupes across regions.
        notifier = (open_notifier(config.notifier) if config.notifier
                    else OutboxNotifier(Path(config.data_dir) / "outbox"))
        pipeline = config.load_pipeline()
        self.batch.attach(Orchestrator(
            objects=self.objects, store_url=rc.store_url, store_options=store_options, state=self.state,
            executor=self.executor,
            notifier=notifier, pipeline=pipeline, region=name, events=self.batch,
            signing_key=bytes.fromhex(self.secrets.signing_key), link_base=config.access_point_url,
            cache_dir=data_dir / "cache", fault_file=str(self.faults.path),
        ))
        others = [r.name for r in config.regions if r.name != name]
        verify = config.tls_verify()
        self.replication = ReplicationSet(
            name, [HttpFeedSource(o, config.region_url(o), self.secrets.replication_token, verify=verify)
                   for o in others],
            self.state, self.plain_objects, on_object=self.batch.replicated_object,
            interval=config.replication.interval, batch=config.replication.batch,
            ordered_delete=lambda key: key.startswith(INPUT_PREFIX),
            held_bytes=functools.partial(held_bytes, pipeline))
        self.uploads = UploadReplication(
            name, self.state,
            {o: ApiClient(config.region_url(o), self.secrets.replication_token, target=o,
                          timeout=config.replication.sync_timeout, verify=verify) for o in others},
            mode=config.replication.uploads, bound=config.replication.sync_timeout,
            registry=self.metrics.registry)
        self.ingest = Ingest(name, self.objects, self.state, self.uploads, self.batch)
        self.watcher = StoreWatcher(self.plain_objects, self.state, self.ingest.take_in)
        # Peers read only /health and the feed's stats: the replication token is enough.
        self.peers = HttpPeers({r: config.region_url(r) for r in config.region_names},
                               self.secrets.replication_token, verify=verify)
        self.fault_control = FaultControl(name, self.faults, self.replication, self._storage_signaller(rc))
        self.steps = step_registry()
        self.switch = SwitchRunner(self, self.steps)
        self.plan_evaluation: dict[str, Any] | None = None
        self.canary_last: CanaryResult | None = None
        signals = RegionSignals(name, self.peers, self.replication, self.metrics.registry,
                                refresh=self.refresh_gauges, own_canary=lambda: self.canary_last)
        self.triggers = TriggerLoop(TriggerEngine(name, self.switch), signals, self.control,
                                    plan_path=config.plan_path, steps=self.steps, region_names=config.region_names)
        self.started_at = time.time()
        self._services: dict[type, object] = {BatchService: self.batch}
        self.ledger = None
        if config.ledger is not None:
            from regionflow.workloads.ledger.metrics import LedgerMetrics
            from regionflow.workloads.ledger.ops import LedgerOps
            from regionflow.workloads.ledger.secret import secret_path
            from regionflow.workloads.ledger.service import LedgerService

            self.ledger_metrics = LedgerMetrics(self.metrics.registry)
            self.ledger = LedgerService(name, config.ledger.ports[name], secret_path(config.data_dir), self.owner,
                                        observe=self.ledger_metrics.observe)
            self._services[LedgerService] = self.ledger
            self._services[LedgerOps] = LedgerOps(config, self.secrets)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- ownership ---------------------------------------------------------------------------------
    def owner(self) -> tuple[str, int]:
        """(active region, epoch) from the routing control (cached about a second); updates the gauges."""
        c = self.control.get()
        self.metrics.epoch.set(c.epoch)
        for r in self.config.regions:
            self.metrics.active.labels(r.name).set(1 if r.name == c.active_region else 0)
        return c.active_region, c.epoch

    def is_active(self) -> bool:
        return self.owner()[0] == self.name

    # -- SwitchContext -------------------------------------------------------------------------------
    def save_execution(self, record: dict[str, Any]) -> None:
        self.state.save_execution(record)

    def count_execution(self, status: str) -> None:
        self.metrics.plan_executions.labels(status).inc()

    def service(self, kind: type[T]) -> T:
        found = self._services.get(kind)
        if not isinstance(found, kind):
            raise LookupError(f"{self.name} runs no {kind.__name__}")
        return found

    # -- background loops ----------------------------------------------------------------------------
    def start(self) -> None:
        self.executor.warm_up()
        loops: list[tuple[Callable[[], None], str]] = [
            *((lambda: self.batch.run_jobs(self._stop), f"jobs-{i}") for i in range(self.concurrent_jobs)),
            (self._sweep, "sweep"),
            (self._evaluate, "evaluate"), (lambda: self.fault_control.revert_expired(self._stop), "faults"),
            (lambda: self.uploads.recover_lagging(self._stop), "upload-sync"),
            (lambda: self.triggers.run(self._stop), "triggers")]
        if self.config.canary.interval > 0:
            loops.append((self._canary, "canary"))
            if self.ledger is not None:
                loops.append((self._ledger_canary, "ledger-canary"))
        if self.config.replication.watch_interval > 0:
            loops.append((lambda: self.watcher.run(self._stop, self.config.replication.watch_interval), "watch"))
        for target, name in loops:
            t = threading.Thread(target=target, name=f"{self.name}-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        self.replication.start()

    def _sweep(self) -> None:
        """Resume unfinished work this region owns and start jobs for inputs that have none."""
        while not self._stop.is_set():
            try:
                self.batch.sweep_once()
            except RegionflowError as exc:
                log.warning("sweep: %s", exc)
            except Exception:
                log.exception("sweep failed")
            self._stop.wait(SWEEP_INTERVAL)

    def _canary(self) -> None:
        from regionflow.region.canary import Canary

        canary = Canary(self.name, self.config.access_point_url, self.secrets.api_token,
                        header=",".join(self.config.load_pipeline().fields.values()) + "\n",
                        timeout=self.config.canary.timeout, metrics=self.metrics,
                        verify=self.config.tls_verify())
        while not self._stop.wait(self.config.canary.interval):
            ok = canary.once() is not None
            self.canary_last = CanaryResult(ok=ok, at=time.time())

    def _ledger_canary(self) -> None:
        from regionflow.workloads.ledger.canary import LedgerCanary

        canary = LedgerCanary(self.name, self.config.access_point_url, self.secrets.api_token,
                              self.secrets.admin_token, metrics=self.ledger_metrics, verify=self.config.tls_verify(),
                              timeout=self.config.canary.timeout)
        while not self._stop.wait(self.config.canary.interval):
            canary.once()

    def _evaluate(self) -> None:
        """Continuous plan evaluation: the failover plan could run right now (or says why not)."""
        from regionflow.region.plan_check import EVALUATION_INTERVAL, evaluate_plan

        self._stop.wait(5.0)
        while not self._stop.is_set():
            try:
                self.plan_evaluation = evaluate_plan(self.config, self.secrets, self.config.plan_path)
            except Exception:
                log.exception("plan evaluation failed")
            self._stop.wait(EVALUATION_INTERVAL)

    def _storage_signaller(self, rc: Any) -> Callable[[signal.Signals], object] | None:
        """How storage_unreachable stops this region's own SeaweedFS (None when `up` does not run one)."""
        if rc.seaweedfs is None:
            return None
        from regionflow.servers.runner import signal_server

        run = Path(self.config.data_dir) / "run"
        return lambda sig: signal_server(run, f"{self.name}-seaweedfs", sig)

    def stop(self) -> None:
        self.fault_control.thaw()
        self._stop.set()
        self.replication.stop()
        self.uploads.close()
        for t in self._threads:
            t.join(timeout=10)
        self.executor.close()
        if self.ledger is not None:
            self.ledger.close()
        self.state.close()

    # -- views -------------------------------------------------------------------------------------
    def refresh_gauges(self) -> None:
        """Set the gauges that are computed when read (replication, active region), as /metrics does."""
        self.replication_status()
        self.is_active()
        if self.ledger is not None:
            node = self.ledger.node_view()
            self.ledger_metrics.replay_lag.set(node.get("replay_lag_seconds") or 0.0)

    def replication_status(self) -> list[dict[str, Any]]:
        """Each direction's status (pause flags read now); refreshes the replication gauges."""
        out = []
        for st in self.replication.status():
            for kind in ("objects", "state"):
                self.metrics.backlog.labels(st.source, st.target, kind).set(st.backlog[kind])
                self.metrics.lag.labels(st.source, st.target, kind).set(st.lag_seconds[kind])
            out.append(st.as_dict())
        return out
