"""Reject kinds, file-level refusals and CSV dialect handling, on the pure split + chunk path."""

from __future__ import annotations

import pytest

from batchkit import reference_frame_from_csv, run_pure
from regionflow.errors import FileRefused
from regionflow.workloads.batch.pipeline import default_pipeline

HEADER = "uuid,Country,Item Type,Sales Channel,Order Priority,Order Date,Region,Ship Date\n"
FIN = (
    "uuid,unitsSold,unitPrice,unitCost,totalRevenue,totalCost,totalProfit\n"
    "100000001,10,1.5,1.0,15.0,10.0,5.0\n"
    "100000002,20,2.50,2,50,40,10\n"
    "100000003,30,3,2,90,60,30\n"
)


@pytest.fixture(scope="module")
def pipeline():
    return default_pipeline()


@pytest.fixture(scope="module")
def ref(pipeline):
    return reference_frame_from_csv(FIN, pipeline)


def row(uuid="100000001", country="Chad", item="Snacks", channel="Online", prio="H", od="1/2/13",
        region="Sub-Saharan Africa", sd="1/9/13") -> str:
    return ",".join([uuid, country, item, channel, prio, od, region, sd])


def test_valid_rows_are_enriched_verbatim(pipeline, ref):
    data = (HEADER + row() + "\n" + row(uuid="100000002") + "\n").encode()
    run = run_pure(data, pipeline, 1000, ref)
    assert run.rows_in == 2 and run.rows_ok == 2 and run.rejects == []
    lines = run.output.decode().splitlines()
    # text copied through exactly: "2.50" and "50" are not reformatted as floats
    assert lines[1] == row(uuid="100000002") + ",20,2.50,2,50,40,10"


@pytest.mark.parametrize(
    ("line", "reason_start"),
    [
        (row()[: row().rindex(",")], "field count: expected 8 fields, got 7"),
        (row() + ",extra", "field count: expected 8 fields, got 9"),
        (row(uuid="1000000011"), "schema: uuid: '1000000011' is too long"),
        (row(prio="URGENT"), "schema: orderPriority: 'URGENT' is too long"),
        (row(country="X" * 51), "schema: country:"),
        (row(uuid="999999999"), "enrichment: key not found"),
    ],
)
def test_each_reject_kind(pipeline, ref, line, reason_start):
    data = (HEADER + row() + "\n" + line + "\n" + row(uuid="100000003") + "\n").encode()
    run = run_pure(data, pipeline, 2, ref)
    assert run.rows_in == 3
    assert run.rows_ok == 2
    assert len(run.rejects) == 1
    row_no, raw, reason = run.rejects[0]
    assert row_no == 2
    assert raw == line
    assert reason.startswith(reason_start)
    out = run.output.decode().splitlines()
    assert [o.split(",")[0] for o in out] == ["100000001", "100000003"]  # a good row beside a bad one completes


def test_max_length_counts_characters_not_bytes(pipeline, ref):
    # 50 characters of 2 bytes each: valid under maxLength 50
    data = (HEADER + row(country="é" * 50) + "\n" + row(country="é" * 51) + "\n").encode()
    run = run_pure(data, pipeline, 1000, ref)
    assert run.rows_ok == 1 and len(run.rejects) == 1 and run.rejects[0][0] == 2


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "input is empty"),
        (b"\n\n\r\n", "no header"),
        (b"uuid,Country\n1,x\n", "required column(s) missing"),
        (HEADER.encode() + b"100000001,Ch\xe9d,a,b,c,d,e,f\n", "not valid UTF-8"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not CSV"),
    ],
)
def test_file_level_problems_refuse_the_file(pipeline, ref, data, message):
    with pytest.raises(FileRefused) as info:
        run_pure(data, pipeline, 1000, ref)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_header_matching_ignores_case_spaces_and_order(pipeline, ref):
    header = "ship date,REGION,order date,Order  Priority,sales channel,itemtype,country,UUID\n"
    line = "1/9/13,Asia,1/2/13,H,Online,Snacks,Chad,100000001\n"
    run = run_pure((header + line).encode(), pipeline, 1000, ref)
    assert run.rows_ok == 1
    assert run.output.decode().startswith(row(region="Asia") + ",10,1.5")


def test_bom_crlf_quotes_and_quoted_newlines(pipeline, ref):
    body = (
        "\ufeff" + HEADER.replace("\n", "\r\n")
        + row() + "\r\n"
        + '100000002,"Korea, South",Snacks,Online,H,1/2/13,"Asia\r\nPacific",1/9/13\r\n'
        + '100000003,"Say ""hi""",Snacks,Online,H,1/2/13,Asia,1/9/13\r\n'
        + "\r\n"  # a blank line is not a row
    )
    run = run_pure(body.encode(), pipeline, 1, ref)
    assert run.rows_in == 3 and run.rows_ok == 3 and run.rejects == []
    assert run.chunks == 3
    text = run.output.decode()
    assert '"Korea, South"' in text
    assert '"Asia\r\nPacific"' in text
    assert '"Say ""hi"""' in text


def test_unterminated_quote_is_rejected_not_lost(pipeline, ref):
    data = (HEADER + row() + "\n" + '100000002,"Chad,Snacks,Online,H,1/2/13,Asia,1/9/13\n' + row() + "\n").encode()
    run = run_pure(data, pipeline, 1000, ref)
    assert run.rows_in == run.rows_ok + len(run.rejects)
    assert run.rows_ok == 1 and run.rejects[0][2].startswith("field count")


def test_header_only_file_completes_with_no_rows(pipeline, ref):
    run = run_pure(HEADER.encode(), pipeline, 1000, ref)
    assert (run.rows_in, run.rows_ok, run.rejects, run.chunks) == (0, 0, [], 0)


def test_file_without_trailing_newline(pipeline, ref):
    run = run_pure((HEADER + row()).encode(), pipeline, 1000, ref)
    assert run.rows_ok == 1


def test_auto_chunk_size_keeps_every_worker_busy_within_bounds():
    from regionflow.workloads.batch.split import (
        CHUNKS_PER_WORKER,
        MAX_CHUNK_BYTES,
        MIN_CHUNK_BYTES,
        auto_chunk_bytes,
    )

    assert auto_chunk_bytes(10_000, 2) == MIN_CHUNK_BYTES  # a small file is one chunk
    assert auto_chunk_bytes(10 << 30, 2) == MAX_CHUNK_BYTES  # a huge one never needs a huge worker
    size = 60_000_000
    for workers in (1, 2, 4):
        chunks = -(-size // auto_chunk_bytes(size, workers))
        per = CHUNKS_PER_WORKER * workers
        assert per - 1 <= chunks <= per  # several chunks per worker, few in all
