"""Every path of a region's gateway, in one place: the gateway's routers and the clients both use these."""

from __future__ import annotations

from urllib.parse import quote

HEALTH = "/health"
HEALTH_DEEP = "/health/deep"
METRICS = "/metrics"

OBJECTS = "/objects/{key:path}"
PRESIGNED = "/o/{key:path}"
JOBS = "/jobs"
JOB = "/jobs/{job_id}"
JOB_CHUNKS = "/jobs/{job_id}/chunks"
JOB_REJECTS = "/jobs/{job_id}/rejects"
OUTBOX = "/outbox"
REFERENCE = "/reference/{table}"

CONTROL = "/control"
CONTROL_ACTIVE = "/control/active"
REPLICATION = "/replication"
REPLICATION_ACTION = "/replication/{source}/{action}"

# Region-to-region routes: every path under INTERNAL_PREFIX takes only the replication (or admin) token,
# through the gateway's TokenCheck.require_replication (a test checks every route here refuses the API token).
INTERNAL_PREFIX = "/internal/"
FEED = "/internal/feed"
FEED_STATS = "/internal/feed/stats"
INTERNAL_OBJECT = "/internal/objects/{key:path}"
INTERNAL_REPLICA = "/internal/replica"
INTERNAL_APPLIED = "/internal/replication/{source}"
# The access point's notice that an S3 PUT it passed through stored an object in this region's store.
INTERNAL_ARRIVED = "/internal/arrived/{key:path}"

PLANS_RUN = "/plans/run"
EXECUTIONS = "/plans/executions"
EXECUTION = "/plans/executions/{execution_id}"
EXECUTION_APPROVE = "/plans/executions/{execution_id}/approve"
EVALUATION = "/plans/evaluation"
TRIGGERS = "/plans/triggers"

FAULTS = "/admin/faults"


def _key(key: str) -> str:
    return quote(key, safe="/")


def object_path(key: str) -> str:
    return f"/objects/{_key(key)}"


def internal_object_path(key: str) -> str:
    return f"/internal/objects/{_key(key)}"


def internal_arrived_path(key: str) -> str:
    return f"/internal/arrived/{_key(key)}"


def job_path(job_id: str) -> str:
    return f"/jobs/{quote(job_id, safe='')}"


def job_chunks_path(job_id: str) -> str:
    return f"{job_path(job_id)}/chunks"


def job_rejects_path(job_id: str) -> str:
    return f"{job_path(job_id)}/rejects"


def reference_path(table: str) -> str:
    return f"/reference/{quote(table, safe='')}"


def replication_action_path(source: str, action: str) -> str:
    return f"/replication/{quote(source, safe='')}/{quote(action, safe='')}"


def internal_applied_path(source: str) -> str:
    return f"/internal/replication/{quote(source, safe='')}"


def execution_path(execution_id: str) -> str:
    return f"/plans/executions/{quote(execution_id, safe='')}"


def execution_approve_path(execution_id: str) -> str:
    return f"{execution_path(execution_id)}/approve"

# The ledger workload (workloads/ledger/): its JSON API; its web UI is served under LEDGER_UI.
LEDGER_TRANSFERS = "/ledger/api/transfers"
LEDGER_TRANSFER = "/ledger/api/transfers/{transfer_id}"
LEDGER_ACCOUNTS = "/ledger/api/accounts"
LEDGER_AUDIT = "/ledger/api/audit"
LEDGER_STATUS = "/ledger/api/status"
LEDGER_MISSING = "/ledger/api/missing"
LEDGER_MISSING_REAPPLY = "/ledger/api/missing/reapply"
LEDGER_UI = "/ledger/"
