"""Test helpers: run split + chunk processing in memory, and an independent reference join."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import polars as pl

from regionflow.workloads.batch.chunk import ChunkPlan, process_chunk
from regionflow.workloads.batch.enrich import ReferenceIndex
from regionflow.workloads.batch.pipeline import Pipeline
from regionflow.workloads.batch.split import ChunkCut, split_stream


@dataclass
class PureRun:
    rows_in: int
    rows_ok: int
    output: bytes  # rows, no header
    rejects: list[tuple[int, str, str]]
    chunks: int


def reference_frame_from_csv(text: str, pipeline: Pipeline) -> ReferenceIndex | None:
    if pipeline.enrichment is None:
        return None
    df = pl.read_csv(io.StringIO(text), infer_schema=False, empty_string_is_null=False)
    return ReferenceIndex.build(df, pipeline.enrichment.reference_key, pipeline.enrichment.fields)


def run_pure(data: bytes, pipeline: Pipeline, chunk_rows: int | ChunkCut,
             reference: ReferenceIndex | None) -> PureRun:
    cut = chunk_rows if isinstance(chunk_rows, ChunkCut) else ChunkCut(rows=chunk_rows)
    result = split_stream(io.BytesIO(data), pipeline, cut)
    plan = ChunkPlan(pipeline.to_dict(), result.columns, len(result.header)).build()
    outputs, rejects, ok = [], [], 0
    chunks = result.chunks
    for c in chunks:
        outcome = process_chunk(data[c.offset:c.offset + c.length], plan, reference, c.first_row)
        assert outcome.rows_in == c.rows
        outputs.append(outcome.output)
        rejects.extend(outcome.rejects)
        ok += outcome.rows_ok
    return PureRun(result.rows_in, ok, b"".join(outputs), rejects, len(chunks))


def independent_join(orders_csv: str, financial_csv: str) -> list[list[str]]:
    """The reference output computed with the csv module only: inner join on uuid, input order."""
    fin = {}
    for row in csv.DictReader(io.StringIO(financial_csv)):
        fin[row["uuid"]] = row
    rows = []
    for row in csv.DictReader(io.StringIO(orders_csv)):
        f = fin.get(row["uuid"])
        if f is None:
            continue
        rows.append([row["uuid"], row["Country"], row["Item Type"], row["Sales Channel"], row["Order Priority"],
                     row["Order Date"], row["Region"], row["Ship Date"], f["unitsSold"], f["unitPrice"],
                     f["unitCost"], f["totalRevenue"], f["totalCost"], f["totalProfit"]])
    return rows
