"""Property tests: for random inputs and chunk sizes, nothing is lost or reordered.

The oracle is written independently with the csv module, jsonschema and a dict lookup.
"""

from __future__ import annotations

import csv
import io

import jsonschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchkit import reference_frame_from_csv, run_pure
from regionflow.workloads.batch.pipeline import default_pipeline
from regionflow.workloads.batch.split import ChunkCut, split_stream
from regionflow.workloads.batch.validate import RowValidator

PIPELINE = default_pipeline()
FIELDS = list(PIPELINE.fields)
KEYS = ["100000001", "100000002", "100000003"]
FIN = "uuid,unitsSold,unitPrice,unitCost,totalRevenue,totalCost,totalProfit\n" + "".join(
    f"{k},{i},{i}.5,1,2,3,4\n" for i, k in enumerate(KEYS)
)
REF = reference_frame_from_csv(FIN, PIPELINE)
HEADER = list(PIPELINE.fields.values())

text = st.text(alphabet=st.sampled_from(list('ab é,"\n\rXZ')), min_size=0, max_size=12)
uuid = st.one_of(st.sampled_from(KEYS + ["999999999", "1000000011", ""]), text)
good_row = st.tuples(uuid, *[text] * 7).map(list)
bad_row = st.lists(text, min_size=1, max_size=10)
rows = st.lists(st.one_of(good_row, good_row, bad_row), max_size=40)


def oracle(data: str):
    validator = jsonschema.Draft7Validator(PIPELINE.json_schema)
    fin = {r["uuid"]: r for r in csv.DictReader(io.StringIO(FIN))}
    reader = csv.reader(io.StringIO(data.lstrip("\ufeff"), newline=""))
    next(reader)
    ok, rejected, n = [], [], 0
    for record in reader:
        if not record:
            continue
        n += 1
        if len(record) != len(HEADER):
            rejected.append(n)
            continue
        inst = dict(zip(FIELDS, record, strict=True))
        if any(True for _ in validator.iter_errors(inst)) or inst["uuid"] not in fin:
            rejected.append(n)
            continue
        f = fin[inst["uuid"]]
        ok.append(record + [f[c] for c in PIPELINE.enrichment.fields])
    return n, ok, rejected


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=rows, chunk_rows=st.integers(1, 7), terminator=st.sampled_from(["\n", "\r\n"]),
       bom=st.booleans())
def test_rows_in_equals_ok_plus_rejected_and_order_is_kept(rows, chunk_rows, terminator, bom):
    buf = io.StringIO()
    # csv.writer leaves a bare CR unquoted unless it is part of the terminator; we (like RFC 4180) read a
    # bare CR as data, the csv module as a line break, so quote everything in that one case.
    bare_cr = terminator == "\n" and any("\r" in f for r in rows for f in r)
    writer = csv.writer(buf, lineterminator=terminator, quoting=csv.QUOTE_ALL if bare_cr else csv.QUOTE_MINIMAL)
    writer.writerow(HEADER)
    writer.writerows(rows)
    data = ("\ufeff" if bom else "") + buf.getvalue()
    run = run_pure(data.encode(), PIPELINE, chunk_rows, REF)
    n, expected_ok, expected_rejected = oracle(data)
    assert run.rows_in == n
    assert run.rows_in == run.rows_ok + len(run.rejects)
    assert [r[0] for r in run.rejects] == expected_rejected
    got = list(csv.reader(io.StringIO(run.output.decode(), newline="")))
    assert got == expected_ok


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=rows, chunk_bytes=st.integers(1, 200), terminator=st.sampled_from(["\n", "\r\n"]),
       blank_lines=st.booleans())
def test_chunks_cut_by_bytes_give_what_one_chunk_gives(rows, chunk_bytes, terminator, blank_lines):
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator=terminator, quoting=csv.QUOTE_ALL)
    writer.writerow(HEADER)
    for row in rows:
        writer.writerow(row)
        if blank_lines:
            buf.write(terminator)
    data = buf.getvalue().encode()
    whole = run_pure(data, PIPELINE, 10**6, REF)
    cut = run_pure(data, PIPELINE, ChunkCut(bytes=chunk_bytes), REF)
    assert (cut.rows_in, cut.rows_ok, cut.output, cut.rejects) == (whole.rows_in, whole.rows_ok, whole.output,
                                                                     whole.rejects)
    # every chunk but the last reaches the byte budget, and none is empty
    split = split_stream(io.BytesIO(data), PIPELINE, ChunkCut(bytes=chunk_bytes))
    assert all(c.rows > 0 for c in split.chunks)
    assert all(c.length >= chunk_bytes for c in split.chunks[:-1])
    assert [c.first_row for c in split.chunks] == [1 + sum(p.rows for p in split.chunks[:i])
                                                  for i in range(len(split.chunks))]


values = st.text(alphabet=st.sampled_from(list("aé Z9-")), max_size=12)


@settings(max_examples=200, deadline=None)
@given(schema_props=st.fixed_dictionaries({}, optional={
    "maxLength": st.integers(0, 6), "minLength": st.integers(0, 6), "pattern": st.sampled_from(["^a", "9$", "é"]),
    "enum": st.lists(values, min_size=1, max_size=3),
}), column=st.lists(values, min_size=1, max_size=20))
def test_columnar_checks_never_miss_a_jsonschema_failure(schema_props, column):
    import polars as pl

    schema = {"type": "object", "required": ["f"], "properties": {"f": {"type": "string", **schema_props}}}
    validator = RowValidator(schema, ["f"])
    assert validator.compiled
    candidates = validator.candidates(pl.DataFrame({"f": column})).to_list()
    plain = jsonschema.Draft7Validator(schema)
    for value, flagged in zip(column, candidates, strict=True):
        invalid = any(True for _ in plain.iter_errors({"f": value}))
        if invalid:
            assert flagged, value
        # the final verdict always comes from jsonschema
        assert (validator.reason({"f": value}) is not None) == invalid
