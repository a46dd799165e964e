"""A reference index for tables too big to hold: compact keys probed by hash, rows fetched by position.

On disk, under one directory:
- rows.bin: every reference row with a key as `key SEP field1 SEP ... fieldN SEP`, in table order (a row
  whose key appears again later stays in the file, unreferenced);
- hashes.bin: the 64-bit hash of every live key, sorted (little-endian uint64);
- slots.bin: for each hash, where its row is in rows.bin (offset << 24 | length);
- meta.json: the layout and what the hashes depend on (the polars version, the hash width, SEP).

Memory stays small because nothing is read whole: a build streams batches of rows and keeps 16 bytes per
row (hash and slot); a lookup hashes a chunk's distinct keys, binary-searches the sorted hashes and reads
only the rows it hits, through a memory map whose pages are handed back window by window (a chunk's keys
land all over the file, and resident pages of a mapped file count as the process's memory). Every row
read is checked against the wanted key's text, so a hash collision can only cost another probe, never a
wrong enrichment.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import polars as pl

from regionflow.workloads.batch.enrich import FOUND, KEY, join_present

FORMAT = 1
SUFFIX = ".keys"
# Field separators tried in turn: the first that no value of the table contains is used.
SEPARATORS = [chr(c) for c in range(0x00, 0x20) if chr(c) not in "\n\r"]
LENGTH_BITS = 24  # a row of up to 16 MiB; offsets up to 1 TiB
MAX_OFFSET = 1 << (64 - LENGTH_BITS)
# Pages of rows.bin are released after each window of a lookup once the file is bigger than this.
RESIDENT_BYTES = 64 << 20
WINDOW_BYTES = 32 << 20
SLICES = 8  # a lookup in a released index holds an eighth of the hashes and slots at a time
BUCKET_BITS = 6  # a build sorts the hashes in 64 buckets, one at a time


class Unsupported(Exception):
    """The table cannot be held in this layout (a row over 16 MiB, every separator used in a value)."""


class _SeparatorUsed(Exception):
    pass


def _hash(keys: pl.Series, bits: int) -> np.ndarray:
    """64-bit hashes of the keys (polars' hash, stable within one polars version), cut to bits bits."""
    hashed = keys.hash(seed=0).to_numpy()
    if bits < 64:
        hashed = hashed & np.uint64((1 << bits) - 1)
    return hashed


class KeyIndex:
    """A reference table indexed on disk for lookups by key (see the module docstring)."""

    def __init__(self, directory: Path, meta: dict, *, rows_only: bool = False):
        """Map the index in directory described by meta; rows_only: only rows.bin (while building)."""
        self.directory = directory
        self.fields: list[str] = meta["fields"]
        self._bits: int = meta["hash_bits"]
        self._sep: str = meta["separator"]
        self._maps: list[mmap.mmap] = []
        self._rows = self._map(directory / "rows.bin", np.uint8, meta["bytes"])
        stored = 0 if rows_only else meta["rows"]
        self._hashes = self._map(directory / "hashes.bin", np.dtype("<u8"), stored * 8)
        self._slots = self._map(directory / "slots.bin", np.dtype("<u8"), stored * 8)
        # The directory: the first position of each value of the hashes' top dir_bits bits (one more at
        # the end); steps: binary-search steps enough for the longest range it gives.
        self._directory = (np.zeros(2, np.int64) if rows_only
                           else np.fromfile(directory / "directory.bin", dtype="<i8"))
        self._shift = self._bits - meta.get("dir_bits", 0)
        self._steps = max(int(meta.get("longest", 1)), 1).bit_length()
        # Pages of a mapped file count in the process's resident memory once touched, and a chunk's keys
        # touch pages all over the files: a big index hands them back as it goes.
        self._release = meta["bytes"] > RESIDENT_BYTES and hasattr(mmap, "MADV_DONTNEED")
        # Where the hash range is cut into slices for lookups (none when nothing is released).
        slices = SLICES if self._release else 1
        self._slices = np.array([((1 << self._bits) * i) // slices for i in range(1, slices)], dtype=np.uint64)

    def _map(self, path: Path, dtype: np.dtype | type, size: int) -> np.ndarray:
        if not size:
            return np.zeros(0, dtype=dtype)
        with path.open("rb") as fh:
            mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        self._maps.append(mapped)
        return np.frombuffer(mapped, dtype=dtype)

    def close(self) -> None:
        """Unmap the files (the index is not to be used after)."""
        self._rows = self._hashes = self._slots = np.zeros(0, dtype=np.uint8)
        for mapped in self._maps:
            mapped.close()
        self._maps = []

    @staticmethod
    def directory_of(base: str | Path) -> Path:
        return Path(f"{base}{SUFFIX}")

    @classmethod
    def exists(cls, base: str | Path) -> bool:
        """Whether a usable index is saved at base (one built by another polars version hashes differently
        and does not count)."""
        meta = cls._meta(cls.directory_of(base))
        return meta is not None and meta.get("polars") == pl.__version__

    @staticmethod
    def _meta(directory: Path) -> dict | None:
        try:
            meta = json.loads((directory / "meta.json").read_text())
        except (OSError, ValueError):
            return None
        return meta if meta.get("format") == FORMAT else None

    @classmethod
    def load(cls, base: str | Path) -> KeyIndex:
        """Open the index saved at base (memory-mapped: nothing is read until looked up)."""
        directory = cls.directory_of(base)
        meta = cls._meta(directory)
        if meta is None:
            raise FileNotFoundError(f"no reference index at {directory}")
        return cls(directory, meta)

    @classmethod
    def build(cls, batches: Callable[[], Iterable[pl.DataFrame]], key: str, fields: list[str],
              base: str | Path, *, hash_bits: int = 64) -> KeyIndex:
        """Index the rows of batches() (text columns, in table order) on key, keeping the enrichment fields,
        and save it at base. Blank keys are dropped; of a repeated key the last row wins.

        batches is called again if a value holds the separator in use (the next one is then tried).
        hash_bits below 64 makes collisions likely (for tests). Raises Unsupported when the table cannot
        be held in this layout, and ValueError when a column is missing.
        """
        if not 1 <= hash_bits <= 64:
            raise ValueError("hash_bits must be between 1 and 64")
        final = cls.directory_of(base)
        final.parent.mkdir(parents=True, exist_ok=True)
        for sep in SEPARATORS:
            tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}-"))
            try:
                _write(tmp, batches(), key, fields, sep, hash_bits)
            except _SeparatorUsed:
                shutil.rmtree(tmp, ignore_errors=True)
                continue
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            if cls.exists(base):  # another build of the same table finished first: use that one
                shutil.rmtree(tmp, ignore_errors=True)
                return cls.load(base)
            if final.exists():
                # A stale index (another polars version, or a broken one): readers that have it open keep
                # their mapping.
                aside = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}-old-"))
                with contextlib.suppress(OSError):
                    os.replace(final, aside / "index")
                shutil.rmtree(aside, ignore_errors=True)
            try:
                os.replace(tmp, final)
            except OSError:
                shutil.rmtree(tmp, ignore_errors=True)  # another build put its index there in between
            return cls.load(base)
        raise Unsupported("every separator character occurs in the reference table's values")

    def join(self, df: pl.DataFrame, key: str) -> pl.DataFrame:
        """df with the enrichment fields added (null where the key is not found) and a boolean FOUND
        column, rows in df's order (as ReferenceIndex.join)."""
        return join_present(df, key, self.present(df.get_column(key)))

    def present(self, keys: pl.Series) -> pl.DataFrame:
        """The table's rows (KEY, the fields, FOUND) for those of keys that it holds, each once."""
        wanted = keys.drop_nulls().unique()
        hashes = _hash(wanted, self._bits) if len(wanted) else np.zeros(0, np.uint64)
        order = np.argsort(hashes)
        wanted, hashes = wanted.gather(order), hashes[order]
        # Candidates of a key are the rows with its hash, from first on; most keys have one at most. They
        # are found a slice of the hash range at a time, so that only that slice of the hashes and slots
        # is resident at once.
        first = np.zeros(len(hashes), dtype=np.intp)
        slots = np.zeros(len(hashes), dtype=np.uint64)
        hit = np.zeros(len(hashes), dtype=bool)
        cuts = np.searchsorted(hashes, self._slices).tolist()
        for lo, hi in zip([0, *cuts], [*cuts, len(hashes)], strict=True):
            if hi > lo:
                first[lo:hi] = self._first(hashes[lo:hi])
                hit[lo:hi] = self._matches(first[lo:hi], hashes[lo:hi])
                at = lo + np.flatnonzero(hit[lo:hi])
                slots[at] = self._slots[first[at]]
                self._drop_pages()
        pending = np.flatnonzero(hit)
        slots = slots[pending]
        found: list[pl.DataFrame] = []
        step = 0
        while pending.size:
            # (In the order of the rows in the file: that is how they are read.)
            order = np.argsort(slots)
            pending, slots = pending[order], slots[order]
            rows = self._fetch(slots)
            same = (rows.get_column(KEY) == wanted.gather(pending)).to_numpy()
            found.append(rows.filter(same))
            pending = pending[~same]
            step += 1
            pending = pending[self._matches(first[pending] + step, hashes[pending])]
            slots = self._slots[first[pending] + step]
        self._drop_pages()
        frame = pl.concat(found) if found else self._empty()
        return frame.with_columns(pl.lit(True).alias(FOUND))

    def _drop_pages(self) -> None:
        if self._release:
            # Clean pages of read-only file mappings: dropping them only costs a refault from the page
            # cache, also for another thread reading them at the same moment.
            for mapped in self._maps[1:]:
                mapped.madvise(mmap.MADV_DONTNEED)

    def _first(self, hashes: np.ndarray) -> np.ndarray:
        """For each hash, the position of the first stored hash not below it (a vectorised lower bound).

        The directory gives the range of stored hashes that share the top bits, a few rows on average;
        the binary search then stays inside it, instead of hopping across the whole array once per level.
        """
        if not len(self._hashes):
            return np.zeros(len(hashes), dtype=np.intp)
        top = (hashes >> np.uint64(self._shift)).astype(np.intp)
        lo = self._directory[top].astype(np.intp)
        hi = self._directory[top + 1].astype(np.intp)
        last = len(self._hashes) - 1
        for _ in range(self._steps):
            active = lo < hi
            mid = (lo + hi) >> 1
            below = active & (self._hashes[np.minimum(mid, last)] < hashes)
            lo = np.where(below, mid + 1, lo)
            hi = np.where(active & ~below, mid, hi)
        return lo

    def _matches(self, at: np.ndarray, hashes: np.ndarray) -> np.ndarray:
        total = len(self._hashes)
        if not total:
            return np.zeros(len(hashes), dtype=bool)
        return (at < total) & (self._hashes[np.minimum(at, total - 1)] == hashes)

    def _empty(self) -> pl.DataFrame:
        return pl.DataFrame({c: pl.Series(c, [], dtype=pl.String) for c in [KEY, *self.fields]})

    def _fetch(self, slots: np.ndarray) -> pl.DataFrame:
        """The rows at slots (KEY and the fields), slots in ascending order (that is, in file order)."""
        if not len(slots):
            return self._empty()
        slots = np.asarray(slots, dtype=np.uint64)
        starts = (slots >> np.uint64(LENGTH_BITS)).astype(np.int64)
        lengths = (slots & np.uint64((1 << LENGTH_BITS) - 1)).astype(np.int64)
        text = self._gather(starts, lengths).decode("utf-8")
        width = len(self.fields) + 1
        # Each row ends with SEP, so the split has one empty value more than the rows hold.
        values = pl.Series([text]).str.split(self._sep).explode().head(len(slots) * width)
        return pl.DataFrame([values.gather_every(width, offset=j).alias(name)
                             for j, name in enumerate([KEY, *self.fields])])

    def _gather(self, starts: np.ndarray, lengths: np.ndarray) -> bytes:
        """The bytes of the rows at starts (ascending), concatenated; window by window through the file."""
        out_ends = np.cumsum(lengths)
        out = np.empty(int(out_ends[-1]), dtype=np.uint8)
        windows = starts // WINDOW_BYTES
        cuts = [0, *(np.flatnonzero(np.diff(windows)) + 1).tolist(), len(starts)]
        for a, b in zip(cuts[:-1], cuts[1:], strict=False):
            lo, hi = int(out_ends[a] - lengths[a]), int(out_ends[b - 1])
            # Byte i of this window's output comes from rows.bin at i + (row start - row's output start).
            shift = np.repeat(starts[a:b] - (out_ends[a:b] - lengths[a:b]), lengths[a:b])
            out[lo:hi] = self._rows[shift + np.arange(lo, hi)]
            if self._release:
                page = int(starts[a]) // mmap.PAGESIZE * mmap.PAGESIZE
                self._maps[0].madvise(mmap.MADV_DONTNEED, page, int(starts[b - 1] + lengths[b - 1]) - page)
        return out.tobytes()


def _write(directory: Path, batches: Iterable[pl.DataFrame], key: str, fields: list[str], sep: str,
           bits: int) -> dict:
    """Write the index into directory (see the module docstring); its meta.

    Two passes, neither holding the table: the rows go to rows.bin and each row's (hash, slot) to one of
    64 scratch files by the hash's top bits; then each bucket in turn is sorted, rid of overwritten
    keys and appended to hashes.bin and slots.bin, which so end up sorted by hash as a whole.
    """
    shift = max(bits - BUCKET_BITS, 0)
    names = [KEY, *fields]
    offset = 0
    rows_seen = 0
    with contextlib.ExitStack() as stack:
        out = stack.enter_context((directory / "rows.bin").open("wb"))
        scratch = [stack.enter_context((directory / f"bucket-{b}.tmp").open("wb")) for b in range(1 << BUCKET_BITS)]
        for batch in batches:
            missing = [c for c in [key, *fields] if c not in batch.columns]
            if missing:
                raise ValueError(f"reference table lacks column(s) {missing}")
            rows = batch.select(pl.col(key).alias(KEY), *fields).filter(pl.col(KEY) != "")
            if not rows.height:
                continue
            if rows.select(pl.any_horizontal(pl.col(c).str.contains(sep, literal=True) for c in names).any()).item():
                raise _SeparatorUsed
            # A row is stored as `key SEP field SEP ... field SEP`: its length is its values' plus one per value.
            lengths = rows.select(pl.sum_horizontal(pl.col(c).str.len_bytes().fill_null(0) for c in names)
                                  + len(names)).to_series().to_numpy().astype(np.uint64)
            ends = np.cumsum(lengths) + np.uint64(offset)
            if int(lengths.max()) >= 1 << LENGTH_BITS or int(ends[-1]) >= MAX_OFFSET:
                raise Unsupported("a reference row over 16 MiB, or over 1 TiB of rows")
            rows.write_csv(out, include_header=False, separator=sep, line_terminator=sep, quote_style="never")
            offset = int(ends[-1])
            if out.tell() != offset:
                raise RuntimeError(f"reference index: rows.bin is {out.tell()} bytes, expected {offset}")
            hashes = _hash(rows.get_column(KEY), bits)
            rows_seen += rows.height
            pairs = np.column_stack((hashes, ((ends - lengths) << np.uint64(LENGTH_BITS)) | lengths))
            buckets = (hashes >> np.uint64(shift)).astype(np.int64)
            order = np.argsort(buckets, kind="stable")
            cuts = np.cumsum(np.bincount(buckets, minlength=len(scratch)))
            for b, (lo, hi) in enumerate(zip([0, *cuts[:-1].tolist()], cuts.tolist(), strict=True)):
                if hi > lo:
                    scratch[b].write(pairs[order[lo:hi]].tobytes())
    meta = {"format": FORMAT, "polars": pl.__version__, "hash_bits": bits, "separator": sep,
            "fields": list(fields), "bytes": offset}
    reader = KeyIndex(directory, meta, rows_only=True)
    rows_kept = 0
    # About sixteen rows per directory entry: half a byte of directory per row stored.
    dir_bits = min(bits, (rows_seen >> 4).bit_length())
    counts = np.zeros(1 << dir_bits, dtype=np.int64)
    try:
        with (directory / "hashes.bin").open("wb") as hashes_out, (directory / "slots.bin").open("wb") as slots_out:
            for b in range(1 << BUCKET_BITS):
                path = directory / f"bucket-{b}.tmp"
                pairs = np.fromfile(path, dtype=np.uint64).reshape(-1, 2)
                path.unlink()
                pairs = pairs[np.argsort(pairs[:, 0], kind="stable")]
                hashes, slots = _drop_overwritten(reader, pairs[:, 0], pairs[:, 1])
                counts += np.bincount((hashes >> np.uint64(bits - dir_bits)).astype(np.intp), minlength=len(counts))
                hashes_out.write(hashes.astype("<u8").tobytes())
                slots_out.write(slots.astype("<u8").tobytes())
                rows_kept += len(hashes)
    finally:
        reader.close()
    meta.update(rows=rows_kept, dir_bits=dir_bits, longest=int(counts.max()))
    np.concatenate([[0], np.cumsum(counts)]).astype("<i8").tofile(directory / "directory.bin")
    (directory / "meta.json").write_text(json.dumps(meta))
    return meta


def _drop_overwritten(reader: KeyIndex, hashes: np.ndarray, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep only the last row (in file order) of each repeated key, of rows sorted by hash. Only rows that
    share a hash with another are read back to compare their keys: none, or a handful, when keys are unique."""
    same = hashes[1:] == hashes[:-1]
    if not same.any():
        return hashes, slots
    shared = np.zeros(len(hashes), dtype=bool)
    shared[1:] |= same
    shared[:-1] |= same
    at = np.flatnonzero(shared)
    at = at[np.argsort(slots[at])]  # (rows are read in file order)
    keys = reader._fetch(slots[at]).get_column(KEY)
    # Rows are in rows.bin in table order, so the last row of a key is the one stored furthest in.
    rows = pl.DataFrame({"at": at, "key": keys, "start": slots[at] >> np.uint64(LENGTH_BITS)})
    kept = rows.group_by("key").agg(pl.col("at").sort_by("start").last()).get_column("at").to_numpy()
    keep = ~shared
    keep[kept] = True
    return hashes[keep], slots[keep]
