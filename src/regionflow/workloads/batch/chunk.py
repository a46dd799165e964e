"""Processing one chunk: parse, check field counts, validate, enrich, and render the output rows.

Pure: bytes and a reference table in, output bytes and rejects out. The orchestrator stores both.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from regionflow.workloads.batch.enrich import ReferenceIndex
from regionflow.workloads.batch.pipeline import Pipeline
from regionflow.workloads.batch.records import split_records
from regionflow.workloads.batch.validate import RowValidator

FIELD_COUNT = "field count"
KEY_NOT_FOUND = "enrichment: key not found"
_ROW = "__rf_row"


@dataclass
class ChunkPlan:
    """What a worker needs to process chunks of one job (picklable, small)."""

    pipeline: dict[str, Any]
    columns: dict[str, int]  # field -> column index in the input header
    header_width: int

    def build(self) -> CompiledPlan:
        return CompiledPlan(self)


class CompiledPlan:
    def __init__(self, plan: ChunkPlan):
        self.pipeline = Pipeline.model_validate(plan.pipeline)
        self.columns = plan.columns
        self.width = plan.header_width
        self.fields = list(self.pipeline.fields)
        self.validator = RowValidator(self.pipeline.json_schema, self.fields)
        self.delimiter = self.pipeline.csv.delimiter
        self.quote = self.pipeline.csv.quote


@dataclass
class ChunkOutcome:
    output: bytes  # output rows as CSV, no header
    rows_in: int
    rows_ok: int
    rejects: list[tuple[int, str, str]] = field(default_factory=list)  # (row_no, raw, reason)


def _parse(records: list[str], plan: CompiledPlan) -> tuple[pl.DataFrame, list[int]]:
    """Field columns for every record (null where the count is wrong) and the per-record field count."""
    series = pl.Series("r", records, dtype=pl.String)
    if not any(plan.quote in r for r in records):
        parts = series.str.split(plan.delimiter)
        counts = parts.list.len().to_list()
        cols = {f: parts.list.get(i, null_on_oob=True) for f, i in plan.columns.items()}
        return pl.DataFrame(cols), counts
    # Each record is parsed as a little file so quoted CR/LF inside it are read as data.
    rows = [next(csv.reader(io.StringIO(r, newline=""), delimiter=plan.delimiter, quotechar=plan.quote), [])
            for r in records]
    counts = [len(r) for r in rows]
    cols = {f: pl.Series(f, [r[i] if i < len(r) else None for r in rows], dtype=pl.String)
            for f, i in plan.columns.items()}
    return pl.DataFrame(cols), counts


def process_chunk(data: bytes, plan: CompiledPlan, reference: ReferenceIndex | None,
                  first_row: int) -> ChunkOutcome:
    """Process one chunk whose first record is data row number first_row (1-based)."""
    records = [r.decode("utf-8") for r in split_records(data, ord(plan.quote))]
    n = len(records)
    if n == 0:
        return ChunkOutcome(b"", 0, 0)
    df, counts = _parse(records, plan)
    df = df.with_columns(pl.Series(_ROW, range(n), dtype=pl.Int64))
    rejects: list[tuple[int, str, str]] = []

    wrong = [i for i, c in enumerate(counts) if c != plan.width]
    for i in wrong:
        rejects.append((first_row + i, records[i], f"{FIELD_COUNT}: expected {plan.width} fields, got {counts[i]}"))
    if wrong:
        df = df.filter(~pl.col(_ROW).is_in(wrong))

    candidates = plan.validator.candidates(df)
    if candidates.any():
        failed = []
        for row in df.filter(candidates).iter_rows(named=True):
            idx = row.pop(_ROW)
            reason = plan.validator.reason(row)
            if reason is not None:
                failed.append(idx)
                rejects.append((first_row + idx, records[idx], reason))
        if failed:
            df = df.filter(~pl.col(_ROW).is_in(failed))

    enrichment = plan.pipeline.enrichment
    if enrichment is not None:
        if reference is None:
            raise RuntimeError(f"reference table {enrichment.table!r} is not loaded")
        found, positions = reference.lookup(df.get_column(enrichment.key))
        for idx in df.get_column(_ROW).filter(pl.Series(~found)).to_list():
            rejects.append((first_row + idx, records[idx], KEY_NOT_FOUND))
        df = df.filter(pl.Series(found)).hstack(reference.values[positions[found]])

    rejects.sort()
    out = df.select([pl.col(src).alias(header) for header, src in plan.pipeline.output.items()])
    # An empty field stays empty in the output (polars would write it as "").
    out = out.with_columns(pl.all().replace("", None))
    body = out.write_csv(include_header=False, separator=plan.delimiter, quote_char=plan.quote,
                         line_terminator="\n") if out.height else ""
    return ChunkOutcome(body.encode("utf-8"), n, out.height, rejects)
