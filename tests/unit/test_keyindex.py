"""The on-disk reference index (KeyIndex) against the in-memory one (ReferenceIndex): same rows found, same
output and rejects, whatever the keys (repeated, blank, missing, colliding hashes) and values hold."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchkit import run_pure
from regionflow.errors import RegionflowError
from regionflow.state import open_state_store
from regionflow.workloads.batch import keyindex, reference
from regionflow.workloads.batch.enrich import FOUND, KEY, ReferenceIndex
from regionflow.workloads.batch.keyindex import KeyIndex
from regionflow.workloads.batch.local import process_file
from regionflow.workloads.batch.pipeline import default_pipeline
from regionflow.workloads.batch.reference import (
    index_reference_file,
    index_reference_table,
    load_reference_table,
    open_index,
    read_reference_csv,
    reference_batches,
)
from regionflow.workloads.batch.sample import generate

PIPELINE = default_pipeline()
FIELDS = PIPELINE.enrichment.fields
FIN_HEADER = ["uuid", *FIELDS]
ORDER_HEADER = list(PIPELINE.fields.values())


def write_csv(path: Path, rows: list[list[str]], *, terminator: str = "\n", bom: bool = False) -> Path:
    buf = io.StringIO()
    csv.writer(buf, lineterminator=terminator).writerows(rows)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + buf.getvalue().encode())
    return path


def in_memory(path: Path, fields: list[str] = FIELDS) -> ReferenceIndex:
    frame, _, _ = read_reference_csv(path, "uuid")
    return ReferenceIndex.build(frame, "uuid", fields, keys_unique=True)


def on_disk(path: Path, base: Path, *, bits: int = 64, block: int = 1 << 20, fields: list[str] = FIELDS) -> KeyIndex:
    return KeyIndex.build(lambda: reference_batches(path, "uuid", block), "uuid", fields, base, hash_bits=bits)


def lookup(index, keys: list[str]) -> pl.DataFrame:  # noqa: ANN001
    df = pl.DataFrame({"k": pl.Series(keys, dtype=pl.String), "n": list(range(len(keys)))})
    return index.join(df, "k")


# Keys drawn from a small set so that repeats, blanks and misses are common; values with everything a CSV
# field can hold (and the index's first separator, NUL).
key = st.sampled_from(["", "1", "2", "10", "x", "é", "k,1", 'q"', "a\nb", " 1", "1 "])
value = st.text(alphabet=st.sampled_from(list('ab é,"\n\r9.\x00')), max_size=6)
table = st.lists(st.tuples(key, *[value] * len(FIELDS)).map(list), max_size=25)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(rows=table, wanted=st.lists(key, max_size=15), bits=st.sampled_from([1, 3, 64]),
       block=st.integers(3, 80), terminator=st.sampled_from(["\n", "\r\n"]), bom=st.booleans())
def test_on_disk_index_finds_what_the_in_memory_index_finds(tmp_path_factory, rows, wanted, bits, block,
                                                            terminator, bom):
    tmp = tmp_path_factory.mktemp("ref")
    path = write_csv(tmp / "fin.csv", [FIN_HEADER, *rows], terminator=terminator, bom=bom)
    expected = lookup(in_memory(path), wanted)
    index = on_disk(path, tmp / "idx", bits=bits, block=block)
    try:
        assert lookup(index, wanted).equals(expected)
        # the last row of a repeated key wins; a blank key is never found (rows as polars reads the file)
        whole = pl.read_csv(path, infer_schema=False, empty_string_is_null=False).rows()
        last = {r[0]: r[1:] for r in whole if r[0]}
        found = lookup(index, wanted).filter(pl.col(FOUND))
        assert {r[0]: r[2:2 + len(FIELDS)] for r in found.rows()} == {k: last[k] for k in wanted if k in last}
    finally:
        index.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(rows=table, orders=st.lists(st.tuples(key, st.sampled_from(["Chad", "x"]), st.sampled_from(["H", "Z"])),
                                   max_size=30), chunk_rows=st.integers(1, 9))
def test_chunks_enriched_from_either_index_give_the_same_output_and_rejects(tmp_path_factory, rows, orders,
                                                                            chunk_rows):
    tmp = tmp_path_factory.mktemp("ref")
    path = write_csv(tmp / "fin.csv", [FIN_HEADER, *rows])
    lines = [ORDER_HEADER] + [[k, c, "Snacks", "Online", p, "1/2/13", "Asia", "1/9/13"] for k, c, p in orders]
    data = write_csv(tmp / "orders.csv", lines).read_bytes()
    index = on_disk(path, tmp / "idx", bits=2, block=16)
    try:
        got = run_pure(data, PIPELINE, chunk_rows, index)
    finally:
        index.close()
    want = run_pure(data, PIPELINE, chunk_rows, in_memory(path))
    assert (got.rows_in, got.rows_ok, got.output, got.rejects) == (want.rows_in, want.rows_ok, want.output,
                                                                     want.rejects)


def test_last_row_wins_blank_keys_dropped_and_missing_keys_not_found(tmp_path):
    path = write_csv(tmp_path / "fin.csv", [FIN_HEADER, ["1", *"abcdef"], ["", *"zzzzzz"], ["2", *"ghijkl"],
                                            ["1", *"mnopqr"]])
    index = on_disk(path, tmp_path / "idx")
    out = lookup(index, ["1", "", "2", "3", "1"])
    assert out.get_column(FOUND).to_list() == [True, False, True, False, True]
    assert out.get_column("unitsSold").to_list() == ["m", None, "g", None, "m"]
    assert json.loads((tmp_path / "idx.keys" / "meta.json").read_text())["rows"] == 2


def test_every_key_is_found_when_every_hash_collides(tmp_path):
    rows = [[str(i), *[f"{i}.{j}" for j in range(len(FIELDS))]] for i in range(300)]
    path = write_csv(tmp_path / "fin.csv", [FIN_HEADER, *rows])
    index = on_disk(path, tmp_path / "idx", bits=1)
    wanted = [str(i) for i in range(0, 320, 7)]
    out = lookup(index, wanted)
    assert out.get_column(FOUND).to_list() == [int(k) < 300 for k in wanted]
    assert out.filter(pl.col(FOUND)).get_column("totalProfit").to_list() == [f"{k}.5" for k in wanted if int(k) < 300]


def test_a_value_holding_the_separator_is_kept_verbatim(tmp_path):
    path = write_csv(tmp_path / "fin.csv", [FIN_HEADER, ["1", "a\x00b", "\x01", "", "x,y", 'q"', "\n"]])
    index = on_disk(path, tmp_path / "idx")
    assert json.loads((tmp_path / "idx.keys" / "meta.json").read_text())["separator"] not in "\x00\x01"
    assert lookup(index, ["1"]).row(0)[2:8] == ("a\x00b", "\x01", "", "x,y", 'q"', "\n")


def test_pages_are_released_window_by_window_and_lookups_stay_right(tmp_path, monkeypatch):
    monkeypatch.setattr(keyindex, "RESIDENT_BYTES", 0)
    monkeypatch.setattr(keyindex, "WINDOW_BYTES", 4096)
    rows = [[str(i), *[f"{i:08d}-{j}" * 9 for j in range(len(FIELDS))]] for i in range(5000)]
    path = write_csv(tmp_path / "fin.csv", [FIN_HEADER, *rows])
    index = on_disk(path, tmp_path / "idx", block=50_000)
    assert index._release
    wanted = [str(i) for i in range(0, 5000, 3)] + ["nope"]
    assert lookup(index, wanted).equals(lookup(in_memory(path), wanted))


def test_a_saved_index_is_reused_only_by_the_polars_that_hashed_it(tmp_path):
    path = write_csv(tmp_path / "fin.csv", [FIN_HEADER, ["7", *"abcdef"]])
    on_disk(path, tmp_path / "idx").close()
    assert KeyIndex.exists(tmp_path / "idx")
    assert lookup(KeyIndex.load(tmp_path / "idx"), ["7"]).get_column("unitCost").to_list() == ["c"]
    meta_path = tmp_path / "idx.keys" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "polars": "0.0.1"}))
    assert not KeyIndex.exists(tmp_path / "idx")
    on_disk(path, tmp_path / "idx").close()  # a rebuild replaces it
    assert KeyIndex.exists(tmp_path / "idx")


def test_an_empty_table_finds_nothing(tmp_path):
    path = write_csv(tmp_path / "fin.csv", [FIN_HEADER, ["", *"abcdef"]])
    index = on_disk(path, tmp_path / "idx")
    assert lookup(index, ["", "1"]).get_column(FOUND).to_list() == [False, False]


@pytest.mark.parametrize("blank_lines", ["", "\n\r\n"])
@pytest.mark.parametrize("block", [1, 5, 64, 1 << 20])
def test_blocks_cut_at_record_ends_read_as_the_whole_file_does(tmp_path, block, blank_lines):
    rows = [FIN_HEADER, ["1", "a\nb", '"', "", "x", "y", "z"], ["2", "é", "c,d", "\r\n", "", "", ""],
            ["3", *"abcdef"]]
    path = write_csv(tmp_path / "fin.csv", rows, terminator="\r\n", bom=blank_lines == "")
    # blank lines before the header, none after the last record
    path.write_bytes(blank_lines.encode() + path.read_bytes().rstrip(b"\r\n"))
    whole = pl.read_csv(path, infer_schema=False, empty_string_is_null=False)
    assert pl.concat(list(reference_batches(path, "uuid", block))).equals(whole)


def test_streamed_reading_reports_what_the_whole_read_reports(tmp_path):
    path = write_csv(tmp_path / "fin.csv", [["id", "a"], ["1", "2"]])
    with pytest.raises(RegionflowError, match="key column 'uuid' not in header"):
        list(reference_batches(path, "uuid"))
    with pytest.raises(RegionflowError, match="no such file"):
        index_reference_file(tmp_path / "absent.csv", "uuid", FIELDS, tmp_path / "idx", compact_from=0)
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"uuid,a\n1,\xff\xfe\n")
    with pytest.raises(RegionflowError, match="not a readable UTF-8 CSV file"):
        index_reference_file(bad, "uuid", ["a"], tmp_path / "idx2", compact_from=0)


def test_the_kind_of_index_follows_the_reference_size(tmp_path):
    path = write_csv(tmp_path / "fin.csv", [FIN_HEADER, ["1", *"abcdef"]])
    size = path.stat().st_size
    index_reference_file(path, "uuid", FIELDS, tmp_path / "small", compact_from=size + 1)
    index_reference_file(path, "uuid", FIELDS, tmp_path / "big", compact_from=size)
    small, big = open_index(tmp_path / "small"), open_index(tmp_path / "big")
    assert isinstance(small, ReferenceIndex) and isinstance(big, KeyIndex)
    assert lookup(small, ["1", "2"]).equals(lookup(big, ["1", "2"]))


def test_a_state_store_table_is_indexed_either_way_with_the_same_lookups(tmp_path):
    rows = [FIN_HEADER] + [[str(i % 40), *[f"{i}.{j}" for j in range(len(FIELDS))]] for i in range(100)]
    path = write_csv(tmp_path / "fin.csv", rows)
    state = open_state_store(f"sqlite:///{tmp_path / 'state.db'}", "r1", feed=False)
    try:
        load_reference_table(state, "financial_data", path, "uuid")
        index_reference_table(state, "financial_data", "uuid", FIELDS, tmp_path / "mem", compact_from=1 << 40)
        index_reference_table(state, "financial_data", "uuid", FIELDS, tmp_path / "disk", compact_from=0)
    finally:
        state.close()
    mem, disk = open_index(tmp_path / "mem"), open_index(tmp_path / "disk")
    assert isinstance(mem, ReferenceIndex) and isinstance(disk, KeyIndex)
    wanted = [str(i) for i in range(45)]
    assert lookup(disk, wanted).equals(lookup(mem, wanted))
    assert lookup(disk, ["5"]).get_column("unitsSold").to_list() == ["85.0"]  # the last of 5, 45, 85


def test_process_gives_the_same_files_with_the_reference_indexed_on_disk(tmp_path, monkeypatch):
    data = generate(3000, tmp_path / "data", invalid_ratio=0.2, seed=3)
    results = {}
    for name, threshold in (("memory", 1 << 40), ("disk", 0)):
        monkeypatch.setattr(reference, "COMPACT_FROM_BYTES", threshold)
        out, rejects = tmp_path / f"{name}.csv", tmp_path / f"{name}-rejects.csv"
        run = process_file(data.orders, data.financial, out, pipeline=PIPELINE, rejects_path=rejects,
                           workers=2)
        results[name] = (run.job.rows_ok, run.job.rows_rejected, out.read_bytes(), rejects.read_bytes())
    assert results["disk"] == results["memory"]
    assert results["disk"][1] > 0 and b"enrichment: key not found" in results["disk"][3]


def test_the_key_column_is_the_only_required_name(tmp_path):
    path = write_csv(tmp_path / "fin.csv", [["uuid", "unitsSold"], ["1", "5"]])
    with pytest.raises(ValueError, match="lacks column"):
        on_disk(path, tmp_path / "idx")
    index = on_disk(path, tmp_path / "idx", fields=["unitsSold"])
    assert lookup(index, ["1"]).columns == ["k", "n", "unitsSold", FOUND]
    assert KEY not in lookup(index, ["1"]).columns
