#!/usr/bin/env bash
# make demo: the narrated DR drill. A fresh two-region stack in a temporary directory, a load through the
# access point, us-east-1 killed (SIGKILL) half-way, failover to us-west-2, the rest of the load, us-east-1
# restarted, failback, and the invariants checked (no file lost, none processed twice, one notification per
# file, outputs byte-identical to a single-region run). Ends with the drill's Markdown report.
# DEMO_FILES / DEMO_ROWS change the size; the exit status is the drill's (1 when an invariant failed).
set -euo pipefail
cd "$(dirname "$0")/.."
rf="$PWD/.venv/bin/regionflow"
out="$PWD/demo-out/drill"
files="${DEMO_FILES:-12}"
rows="${DEMO_ROWS:-2000}"
rm -rf "$out" && mkdir -p "$out"

ref="$(cd .. && pwd)/shared/reference-data"
if [ -f "$ref/testfile.csv" ]; then
  echo "== the reference batch job on the embedded engine =="
  "$rf" process "$ref/testfile.csv" --reference "$ref/financial_data.csv" --out "$out/reference-output.csv" \
    --rejects "$out/reference-rejects.csv"
  echo
fi
echo "== regionflow DR drill: scenario kill, $files files of $rows rows =="
echo "   (narration below; the report follows; JSON and Markdown land in demo-out/drill/)"
echo
status=0
"$rf" drill --scenario kill --files "$files" --rows "$rows" --report "$out" --json >"$out/result.json" || status=$?
report=$(ls -t "$out"/drill-kill-*.md 2>/dev/null | head -n 1 || true)
echo
if [ -n "$report" ]; then
  cat "$report"
else
  echo "no report was written (exit status $status); see the messages above" >&2
fi
exit "$status"
