"""Processing one chunk: parse, check field counts, validate, enrich, and render the output rows.

Pure: bytes and a reference table in, output bytes and rejects out. The orchestrator stores both.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from regionflow.workloads.batch.enrich import FOUND, Lookup
from regionflow.workloads.batch.pipeline import Pipeline
from regionflow.workloads.batch.records import split_records
from regionflow.workloads.batch.validate import RowValidator

FIELD_COUNT = "field count"
KEY_NOT_FOUND = "enrichment: key not found"
_ROW = "__rf_row"
_RECORD = "__rf_record"


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


def _records(data: bytes, plan: CompiledPlan) -> pl.Series:
    """Every non-blank record of the chunk, in order, as text without its CR/LF terminator."""
    if plan.quote.encode("utf-8") not in data:
        # No quotes, so no quoted newline: every line is a record, and polars cuts them all at once.
        lines = pl.Series(_RECORD, [data.decode("utf-8")], dtype=pl.String).str.split("\n").explode()
        lines = lines.str.strip_suffix("\r")
        return lines.filter(lines.str.len_bytes() > 0)
    return pl.Series(_RECORD, [r.decode("utf-8") for r in split_records(data, ord(plan.quote))], dtype=pl.String)


def _parse(records: pl.Series, plan: CompiledPlan) -> tuple[pl.DataFrame, pl.Series]:
    """Field columns for every record (null where the record is too short) and each record's field count.

    Records without a quote are split on the delimiter by polars; a record with a quote is parsed as a
    little file by the csv module, so quoted delimiters and CR/LF inside it are read as data.
    """
    parts = records.str.split(plan.delimiter)
    counts = parts.list.len()
    cols = {f: parts.list.get(i, null_on_oob=True).alias(f) for f, i in plan.columns.items()}
    quoted = records.str.contains(plan.quote, literal=True)
    if quoted.any():
        at = quoted.arg_true()
        rows = [next(csv.reader(io.StringIO(r, newline=""), delimiter=plan.delimiter, quotechar=plan.quote), [])
                for r in records.gather(at).to_list()]
        counts = counts.scatter(at, [len(r) for r in rows])
        for f, i in plan.columns.items():
            cols[f] = cols[f].scatter(at, [r[i] if i < len(r) else None for r in rows])
    return pl.DataFrame(list(cols.values())), counts


def process_chunk(data: bytes, plan: CompiledPlan, reference: Lookup | None,
                  first_row: int) -> ChunkOutcome:
    """Process one chunk (raw record bytes) whose first record is data row number first_row (1-based)."""
    records = _records(data, plan)
    n = len(records)
    if n == 0:
        return ChunkOutcome(b"", 0, 0)
    df, counts = _parse(records, plan)
    df = df.with_row_index(_ROW)
    rejects: list[tuple[int, str, str]] = []

    wrong = counts != plan.width
    if wrong.any():
        for i in wrong.arg_true().to_list():
            rejects.append((first_row + i, records[i],
                            f"{FIELD_COUNT}: expected {plan.width} fields, got {counts[i]}"))
        df = df.filter(~wrong)

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
        df = reference.join(df, enrichment.key)
        found = df.get_column(FOUND)
        if not found.all():
            for idx in df.get_column(_ROW).filter(~found).to_list():
                rejects.append((first_row + idx, records[idx], KEY_NOT_FOUND))
            df = df.filter(found)

    rejects.sort()
    out = df.select([pl.col(src).alias(header) for header, src in plan.pipeline.output.items()])
    # An empty field stays empty in the output (polars would write it as "").
    out = out.with_columns(pl.all().replace("", None))
    body = out.write_csv(include_header=False, separator=plan.delimiter, quote_char=plan.quote,
                         line_terminator="\n") if out.height else ""
    return ChunkOutcome(body.encode("utf-8"), n, out.height, rejects)
