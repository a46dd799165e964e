#!/usr/bin/env bash
# make demo: two regions on this machine process the reference system's sample file.
set -euo pipefail
ref="${1:?usage: demo.sh REFERENCE_DATA_DIR}"
cd "$(dirname "$0")/.."
rf="$PWD/.venv/bin/regionflow"
out="$PWD/demo-out"
[ -f "$out/regionflow.toml" ] && (cd "$out" && "$rf" down >/dev/null 2>&1 || true)
rm -rf "$out" && mkdir -p "$out"
cd "$out"
trap '"$rf" down >/dev/null 2>&1 || true' EXIT

echo "== regionflow demo: two regions, one access point, the reference batch job =="
"$rf" init --dir . >/dev/null
"$rf" up --detach 2>/dev/null
"$rf" reference load "$ref/financial_data.csv" >/dev/null
job=$("$rf" submit "$ref/testfile.csv")
echo "submitted $ref/testfile.csv through the access point -> job $job"
"$rf" wait "$job" --timeout 120 >/dev/null
# the standby holds the replicated job within a bounded lag
for _ in $(seq 1 50); do
  st=$("$rf" job "$job" --region us-west-2 --json 2>/dev/null | python3 -c 'import json,sys;print(json.load(sys.stdin)["status"])' || true)
  [ "$st" = "COMPLETED" ] && break; sleep 0.2
done
"$rf" download "$job" -o output.csv >/dev/null
python3 - "$job" <<'PY'
import json, subprocess, sys
job = sys.argv[1]
def rf(*a):
    return json.loads(subprocess.run(["../.venv/bin/regionflow", *a, "--json"], check=True,
                                     capture_output=True, text=True).stdout)
east, west = rf("job", job, "--region", "us-east-1"), rf("job", job, "--region", "us-west-2")
print(f"job        {job}: {east['status']}, owned by {east['owner_region']} (epoch {east['owner_epoch']}), "
      f"completed by {east['completing_region']}")
print(f"rows       in {east['rows_in']}  ok {east['rows_ok']}  rejected {east['rows_rejected']}  "
      f"(in = ok + rejected: {east['rows_in'] == east['rows_ok'] + east['rows_rejected']})")
print(f"output     {east['output_key']} in both regions (standby sees {west['status']}); "
      f"downloaded to demo-out/output.csv")
print(f"link       {east['link'][:100]}...")
box = rf("outbox")["notifications"]
sent = {(n["job_id"], n["region"]) for n in box}
print(f"notified   {len(sent)} notification(s) for {len({n['job_id'] for n in box})} job(s); "
      f".eml in demo-out/.regionflow/outbox/")
st = rf("status")
for d in st["replication"]:
    print(f"replication {d['source']} -> {d['target']}: backlog {sum(d['backlog'].values())}, "
          f"lag {max(d['lag_seconds'].values()):.2f}s")
PY
