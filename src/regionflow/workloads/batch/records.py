"""Finding CSV records in bytes: newlines outside quotes end a record (RFC 4180), vectorised with numpy."""

from __future__ import annotations

import numpy as np

NEWLINE = 10
CR = 13


def record_ends(buf: bytes, quote: int, in_quote: bool = False) -> tuple[np.ndarray, bool]:
    """Offsets of the newlines in buf that end a record, and whether buf ends inside a quoted field.

    A newline ends a record when an even number of quote characters precede it (counting from a
    state of in_quote at the start of buf). Doubled quotes ("") flip the parity twice, so they are
    handled too.
    """
    arr = np.frombuffer(buf, dtype=np.uint8)
    newlines = np.flatnonzero(arr == NEWLINE)
    if quote not in buf:
        return (newlines if not in_quote else newlines[:0]), in_quote
    quotes = np.flatnonzero(arr == quote)
    # quotes before each newline = insertion index of the newline among the quote offsets
    before = np.searchsorted(quotes, newlines) + int(in_quote)
    ends = newlines[(before & 1) == 0]
    return ends, bool((len(quotes) + int(in_quote)) & 1)


def record_spans(buf: bytes, ends: np.ndarray, start: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(starts, stops, term_ends) of the non-blank records that end at ends: stops exclude the CR/LF
    terminator, term_ends are just past it.

    buf[start:] must begin a record. A blank line (nothing, or only CR) is not a record.
    """
    starts = np.empty(len(ends), dtype=np.int64)
    if len(ends):
        starts[0] = start
        starts[1:] = ends[:-1] + 1
    stops = ends.astype(np.int64, copy=True)
    if len(ends):
        arr = np.frombuffer(buf, dtype=np.uint8)
        has_cr = (stops > starts) & (arr[np.maximum(stops - 1, 0)] == CR)
        stops -= has_cr
    keep = stops > starts
    return starts[keep], stops[keep], ends[keep].astype(np.int64) + 1


def split_records(text_bytes: bytes, quote: int) -> list[bytes]:
    """Every non-blank record of a complete buffer (the last record need not end with a newline)."""
    buf = text_bytes if text_bytes.endswith(b"\n") else text_bytes + b"\n"
    ends, in_quote = record_ends(buf, quote)
    if in_quote:
        # An unterminated quote: the rest of the buffer is one record, kept so it can be rejected.
        ends = np.append(ends, len(buf) - 1)
    starts, stops, _ = record_spans(buf, ends)
    return [buf[s:e] for s, e in zip(starts.tolist(), stops.tolist(), strict=True)]
