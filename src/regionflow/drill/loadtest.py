"""Load test: upload N copies of one sample file through the access point and follow every job to its end.

Uploads run on C threads, started `interval` seconds apart. An upload that fails (a region switching, a
region refusing writes) is retried with the same key until the deadline; before sending it again the
uploader asks the access point whether the object arrived after all (an answer can be lost), so a file is
uploaded once. Jobs are followed with one GET /jobs per poll round, whatever the number of files.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from regionflow.api import routes
from regionflow.api.client import ApiClient, ApiError
from regionflow.config import Config, load_secrets
from regionflow.config.tls import Verify
from regionflow.errors import RegionflowError
from regionflow.ids import job_id_for
from regionflow.polling import PollTimeout, poll_until
from regionflow.state.base import TERMINAL_STATUSES
from regionflow.workloads.batch.sample import generate

# (event, done, total): "uploaded" counts files whose upload succeeded, "completed" finished jobs.
LoadProgress = Callable[[str, int, int], None]

JOBS_LIMIT = 10000  # the most a region lists in one answer
_RETRYABLE_4XX = (408, 409, 425, 429)


@dataclass
class Upload:
    """One file's upload: when it started, when it succeeded, and what it took."""

    index: int
    key: str
    started: float | None = None  # wall clock of the first attempt
    submitted_at: float | None = None  # wall clock of the success (None: never submitted)
    job_id: str | None = None
    version_id: str | None = None
    region: str | None = None
    attempts: int = 0
    errors: list[str] = field(default_factory=list)
    found_after_error: bool = False  # an attempt's answer was lost but the object had arrived
    failed: str | None = None  # why it was given up
    replication: dict | None = None  # how the region acknowledged it (sync: which regions confirmed)

    @property
    def submitted(self) -> bool:
        return self.submitted_at is not None

    def as_dict(self) -> dict:
        return asdict(self)


def percentile(values: Sequence[float], p: float) -> float | None:
    """The nearest-rank p-th percentile (0 < p <= 100) of values; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def _client(base_url: str, token: str, timeout: float, verify: Verify) -> ApiClient:
    # connecting is bounded at 2 s: a region switching should cost a retry, not a long hang
    return ApiClient(base_url, token, target="access point", timeout=httpx.Timeout(timeout, connect=2.0),
                     verify=verify)


def _stored(api: ApiClient, key: str, etag: str) -> httpx.Headers | None:
    """The object's headers if key already holds these bytes (a lost answer), else None."""
    try:
        # the raw headers, not head_object's ObjectInfo: they also name the region that holds the object
        resp = api.request("HEAD", routes.object_path(key))
    except ApiError:
        return None
    return resp.headers if resp.headers.get("x-etag") == etag else None


def _upload_one(api: ApiClient, up: Upload, data: bytes, etag: str, deadline: float,
                stop: threading.Event) -> None:
    up.started = time.time()
    while True:
        up.attempts += 1
        error: str
        try:
            body = api.upload(up.key, data)
            up.job_id, up.version_id, up.region = body.get("job_id"), body.get("version_id"), body.get("region")
            up.replication = body.get("replication")
            up.submitted_at = time.time()
            return
        except ApiError as exc:
            error = str(exc)[:200]
            code = exc.status_code
            if code is not None and 400 <= code < 500 and code not in _RETRYABLE_4XX:
                up.errors.append(error)
                up.failed = error
                return
        up.errors.append(error)
        headers = _stored(api, up.key, etag)
        if headers is not None:
            up.version_id = headers.get("x-version-id")
            up.region = headers.get("x-regionflow-region")
            up.job_id = job_id_for(up.key, up.version_id) if up.version_id else None
            up.found_after_error = True
            up.submitted_at = time.time()
            return
        if stop.is_set() or time.monotonic() > deadline:
            up.failed = f"gave up after {up.attempts} attempt(s): {error}"
            return
        stop.wait(min(0.1 * 2 ** (up.attempts - 1), 1.0))


def upload_files(base_url: str, token: str, data: bytes, keys: Iterable[str], *, concurrency: int = 4,
                 interval: float = 0.0, deadline: float | None = None, on_submitted: Callable[[Upload], None]
                 | None = None, stop: threading.Event | None = None, timeout: float = 30.0,
                 verify: Verify = True) -> list[Upload]:
    """Upload data under every key through base_url (the access point): C threads, the i-th upload starting
    no earlier than i * interval seconds after the first; failed uploads retried until deadline (monotonic).
    verify: how an https:// base_url's certificate is checked (Config.tls_verify())."""
    uploads = [Upload(i, k) for i, k in enumerate(keys)]
    etag = hashlib.sha256(data).hexdigest()
    stop = stop or threading.Event()
    deadline = deadline if deadline is not None else time.monotonic() + 600.0
    lock = threading.Lock()
    pending = iter(uploads)
    t0 = time.monotonic()
    problems: list[BaseException] = []

    def worker() -> None:
        try:
            with _client(base_url, token, timeout, verify) as api:
                while not stop.is_set():
                    with lock:
                        up = next(pending, None)
                    if up is None:
                        return
                    delay = t0 + up.index * interval - time.monotonic()
                    if delay > 0 and stop.wait(delay):
                        return
                    _upload_one(api, up, data, etag, deadline, stop)
                    if up.submitted and on_submitted is not None:
                        on_submitted(up)
        except BaseException as exc:  # surfaced to the caller below
            problems.append(exc)

    threads = [threading.Thread(target=worker, name=f"upload-{n}", daemon=True)
               for n in range(max(1, min(concurrency, len(uploads) or 1)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if problems:
        raise problems[0]
    for up in uploads:
        if not up.submitted and up.failed is None:
            up.failed = "not attempted (stopped)"
    return uploads


def follow_jobs(base_url: str, token: str, job_ids: Iterable[str], *, deadline: float, poll: float = 0.25,
                on_progress: Callable[[int, int], None] | None = None, stall: float | None = None,
                verify: Verify = True, prefix: str | None = None) -> dict[str, dict]:
    """Poll base_url's GET /jobs (one request per round, whatever the number of jobs) until every job is
    COMPLETED or FAILED or the deadline (monotonic) passes, or (with stall) no job has finished for stall
    seconds; returns the finished jobs' records by id (unfinished ones are absent). prefix: the jobs' input
    keys all start with it (the region lists only those, not its whole history)."""
    wanted = set(job_ids)
    done: dict[str, dict] = {}
    last_progress = time.monotonic()

    def round_done(api: ApiClient) -> bool:
        nonlocal last_progress
        try:
            rows = api.jobs(limit=JOBS_LIMIT, prefix=prefix)
        except (ApiError, ValueError, KeyError):
            rows = []  # a region switching: ask again next round
        now = time.time()
        for job in rows:
            if job["job_id"] in wanted and job["job_id"] not in done and job["status"] in TERMINAL_STATUSES:
                done[job["job_id"]] = {**job, "observed_at": now}
                last_progress = time.monotonic()
        if on_progress is not None:
            on_progress(len(done), len(wanted))
        stalled = stall is not None and time.monotonic() - last_progress > stall
        return not wanted - done.keys() or stalled

    if wanted:
        # at the deadline, return what finished: the caller reports the rest as unfinished
        with _client(base_url, token, 10.0, verify) as api, contextlib.suppress(PollTimeout):
            poll_until(lambda: round_done(api), timeout=max(0.0, deadline - time.monotonic()), interval=poll,
                       what="the jobs to finish")
    return done


def _reference_table(config: Config) -> tuple[str, str] | None:
    enrichment = config.load_pipeline().enrichment
    return (enrichment.table, enrichment.reference_key) if enrichment is not None else None


def load_reference(base_url: str, token: str, path: Path, table: str, key: str, *, verify: Verify = True) -> dict:
    """Load the reference (enrichment) table from path through base_url; the region's answer."""
    with ApiClient(base_url, token, target=base_url, timeout=60.0, verify=verify) as api:
        try:
            return api.load_reference(table, path, key)
        except ApiError as exc:
            if exc.unreachable:
                raise RegionflowError(str(exc)) from None
            raise RegionflowError(f"loading reference table {table!r}: {exc}") from None


def summarize(uploads: list[Upload], finished: dict[str, dict], rows: int) -> dict:
    """Throughput and latency of a finished load (pure: the uploads and the jobs' final records)."""
    latencies: list[float] = []
    completed = failed_jobs = 0
    ends: list[float] = []
    for up in uploads:
        job = finished.get(up.job_id or "")
        if job is None or up.started is None:
            continue
        end = float(job.get("updated_at") or job.get("observed_at") or 0.0)
        if job["status"] == "COMPLETED":
            completed += 1
            latencies.append(max(0.0, end - up.started))
            ends.append(end)
        else:
            failed_jobs += 1
    starts = [u.started for u in uploads if u.started is not None]
    seconds = (max(ends) - min(starts)) if ends and starts else 0.0
    submitted = sum(u.submitted for u in uploads)
    unfinished = sum(1 for u in uploads if u.submitted and (u.job_id or "") not in finished)
    upload_failures = sum(1 for u in uploads if not u.submitted)

    def r(v: float | None) -> float | None:
        return None if v is None else round(v, 3)

    return {
        "files": len(uploads),
        "rows_per_file": rows,
        "submitted": submitted,
        "completed": completed,
        "seconds": round(seconds, 3),
        "files_per_second": round(completed / seconds, 3) if seconds > 0 else 0.0,
        "rows_per_second": round(completed * rows / seconds, 1) if seconds > 0 else 0.0,
        "latency_seconds": {"p50": r(percentile(latencies, 50)), "p95": r(percentile(latencies, 95)),
                            "p99": r(percentile(latencies, 99)), "max": r(max(latencies) if latencies else None)},
        "failed": failed_jobs + unfinished + upload_failures,
        "failed_jobs": failed_jobs,
        "unfinished_jobs": unfinished,
        "upload_failures": upload_failures,
        "upload_retries": sum(max(0, u.attempts - 1) for u in uploads),
    }


def run_loadtest(config: Config, files: int, rows: int = 1000, interval: float = 0.0, concurrency: int = 4,
                 progress: LoadProgress | None = None, *, timeout: float = 600.0, invalid_ratio: float = 0.02,
                 seed: int = 7, reference: bool = True) -> dict:
    """Upload `files` copies of one generated sample file of `rows` rows through the access point and
    follow every job to COMPLETED/FAILED; returns throughput and per-file end-to-end latency (from the
    start of the upload to the job's completion) percentiles.

    With reference=True the sample's own reference table is loaded first (through the access point), so
    enrichment finds its keys; reference=False leaves the stack's table as it is.
    """
    if files < 1:
        raise RegionflowError("files must be at least 1")
    if concurrency < 1:
        raise RegionflowError("concurrency must be at least 1")
    token = load_secrets(config).api_token
    url = config.access_point_url
    verify = config.tls_verify()
    deadline = time.monotonic() + timeout
    with tempfile.TemporaryDirectory(prefix="regionflow-loadtest-") as tmp:
        sample = generate(rows, Path(tmp), invalid_ratio=invalid_ratio, seed=seed)
        table = _reference_table(config)
        if reference and table is not None:
            load_reference(url, token, sample.financial, *table, verify=verify)
        data = sample.orders.read_bytes()
    run_id = time.strftime("%Y%m%d%H%M%S") + "-" + secrets.token_hex(3)
    prefix = f"input/loadtest-{run_id}-"
    keys = [f"{prefix}{i:05d}.csv" for i in range(files)]
    submitted = 0
    count = threading.Lock()

    def uploaded(_up: Upload) -> None:
        nonlocal submitted
        with count:
            submitted += 1
            n = submitted
        if progress is not None:
            progress("uploaded", n, files)

    uploads = upload_files(url, token, data, keys, concurrency=concurrency, interval=interval, deadline=deadline,
                           on_submitted=uploaded, verify=verify)
    job_ids = [u.job_id for u in uploads if u.job_id]
    finished = follow_jobs(url, token, job_ids, deadline=deadline, verify=verify, prefix=prefix,
                           on_progress=(lambda d, t: progress("completed", d, t)) if progress else None)
    result = summarize(uploads, finished, rows)
    result.update({"run_id": run_id, "concurrency": concurrency, "interval": interval,
                   "access_point": url, "key_prefix": prefix})
    return result
