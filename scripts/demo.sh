#!/usr/bin/env bash
# make demo: process the reference system's sample file with the embedded engine and print the report.
set -euo pipefail
ref="${1:?usage: demo.sh REFERENCE_DATA_DIR}"
cd "$(dirname "$0")/.."
rf=.venv/bin/regionflow
out=demo-out
rm -rf "$out" && mkdir -p "$out"
echo "== regionflow demo: the reference batch job on the embedded backends =="
echo "input:     $ref/testfile.csv"
echo "reference: $ref/financial_data.csv"
$rf process "$ref/testfile.csv" --reference "$ref/financial_data.csv" --out "$out/output.csv" \
  --rejects "$out/rejects.csv" --state-dir "$out/state" --json > "$out/summary.json"
$rf process "$ref/testfile.csv" --reference "$ref/financial_data.csv" --out "$out/output.csv" \
  --state-dir "$out/state" >/dev/null  # a rerun resumes the finished job: nothing is processed twice
.venv/bin/python - "$out" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
s = json.loads((out / "summary.json").read_text())
print(f"job        {s['job_id']}  {s['status']}")
print(f"rows       in {s['rows_in']}  ok {s['rows_ok']}  rejected {s['rows_rejected']}  "
      f"(in = ok + rejected: {s['rows_in'] == s['rows_ok'] + s['rows_rejected']})")
print(f"chunks     {s['chunks']}  in {s['seconds']} s  ({s['rows_per_second']:.0f} rows/s)")
print(f"output     {out / 'output.csv'}")
print(f"rejects    {out / 'rejects.csv'}")
outbox = sorted((out / "state" / "outbox").glob("*.eml"))
print(f"notified   {len(outbox)} message(s) in {out / 'state' / 'outbox'}")
for line in outbox[0].read_text().splitlines() if outbox else []:
    if line.startswith(("Subject:", "To:")) or line.startswith("http"):
        print(f"           {line[:120]}")
PY
