"""read_header reads an input's header from the start of a stream that cannot seek (an S3 object's body)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from regionflow.workloads.batch.pipeline import default_pipeline
from regionflow.workloads.batch.split import read_header


class ForwardOnly(io.RawIOBase):
    """A stream that can only be read forward, like botocore's StreamingBody."""

    def __init__(self, data: bytes):
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, n: int = -1) -> bytes:
        return self._data.read(n)

    def seek(self, *_args: object) -> int:
        raise io.UnsupportedOperation("File or stream is not seekable.")


@pytest.mark.parametrize("rows", [0, 1, 5000])
def test_header_of_a_forward_only_stream(reference_data: str, rows: int) -> None:
    lines = Path(reference_data, "testfile.csv").read_bytes().splitlines(keepends=True)
    data = b"".join(lines[: rows + 1])
    header = lines[0].decode().strip()
    pipeline = default_pipeline()
    expected = read_header(io.BytesIO(data), pipeline)
    assert read_header(ForwardOnly(data), pipeline) == expected  # type: ignore[arg-type]
    assert expected[0] == header.split(",")
