"""Sizes as people write them in regionflow.toml."""

from __future__ import annotations

import re

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 10**3, "KB": 10**3, "KIB": 2**10, "M": 10**6, "MB": 10**6, "MIB": 2**20,
          "G": 10**9, "GB": 10**9, "GIB": 2**30, "T": 10**12, "TB": 10**12, "TIB": 2**40}


def parse_size(text: str) -> int:
    """Bytes in a size such as "5GiB", "512 MB" or "1048576"; ValueError for anything else."""
    m = _SIZE.match(text)
    unit = (m.group(2) or "").upper() if m else ""
    if not m or unit not in _UNITS:
        raise ValueError(f"{text!r} is not a size (e.g. 1048576, 512MiB, 5GiB)")
    return int(float(m.group(1)) * _UNITS[unit])
