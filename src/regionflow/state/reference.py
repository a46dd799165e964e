"""ReferenceMixin: reference tables, each loaded whole (its parts replaced) under a new revision."""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import delete, select, update

from regionflow.errors import RegionflowError
from regionflow.state.base import ReferenceInfo
from regionflow.state.core import StoreCore, change_entry, deletion_entry
from regionflow.state.schema import reference_parts, reference_tables
from regionflow.state.sql import bulk_insert_dicts, dumps, fetch_row, insert_if_absent


def _reference_info(row: Any) -> ReferenceInfo:
    m = row._mapping
    return ReferenceInfo(table=m["name"], key_column=m["key_column"], columns=json.loads(m["columns"]),
                         rows=m["rows"], parts=m["parts"], revision=m["revision"], loaded_at=m["loaded_at"])


class ReferenceMixin(StoreCore):
    """The reference-data part of the StateStore."""

    def load_reference(self, table: str, key_column: str, columns: list[str], parts: list[str],
                       rows: int) -> ReferenceInfo:
        """Replace reference table `table` with parts (CSV texts) under its next revision."""
        meta = {"key_column": key_column, "columns": dumps(list(columns)), "rows": rows, "parts": len(parts),
                "loaded_at": time.time()}
        bump = (
            update(reference_tables)
            .where(reference_tables.c.name == table)
            .values(revision=reference_tables.c.revision + 1, **meta)
        )
        with self._write() as conn:
            # The update (or the insert of revision 1) locks the table's row until commit, so concurrent
            # loads of one table serialise; an insert that loses a race becomes the update.
            first = {"name": table, "revision": 1, **meta}
            if (conn.execute(bump).rowcount == 0
                    and not insert_if_absent(conn, reference_tables, first)
                    and conn.execute(bump).rowcount == 0):
                raise RegionflowError(f"cannot load reference table {table!r}: it changed concurrently")
            old = set(conn.execute(
                select(reference_parts.c.part_no).where(reference_parts.c.table_name == table)).scalars())
            conn.execute(delete(reference_parts).where(reference_parts.c.table_name == table))
            part_rows = [{"table_name": table, "part_no": i, "csv": csv} for i, csv in enumerate(parts)]
            bulk_insert_dicts(conn, reference_parts, part_rows)
            info_row = fetch_row(conn, reference_tables, name=table)
            assert info_row is not None
            if self.keeps_feed:  # (the parts' images are as big as the table: not built for nothing)
                gone = sorted(n for n in old if n >= len(parts))
                feed = [deletion_entry(reference_parts, f"{table}/{n}", 0) for n in gone]
                feed.extend(change_entry(reference_parts, r, 0) for r in part_rows)
                feed.append(change_entry(reference_tables, info_row, 0))
                self._append_feed(conn, feed)
        return ReferenceInfo(table=table, key_column=key_column, columns=list(columns), rows=rows,
                             parts=len(parts), revision=info_row["revision"], loaded_at=info_row["loaded_at"])

    def reference_info(self, table: str) -> ReferenceInfo | None:
        """The reference table's description, or None when it was never loaded."""
        with self._read() as conn:
            row = conn.execute(select(reference_tables).where(reference_tables.c.name == table)).first()
        return _reference_info(row) if row is not None else None

    def reference_parts(self, table: str) -> list[str]:
        """The reference table's parts (CSV texts) in order."""
        stmt = (select(reference_parts.c.csv).where(reference_parts.c.table_name == table)
                .order_by(reference_parts.c.part_no))
        with self._read() as conn:
            return list(conn.execute(stmt).scalars())
