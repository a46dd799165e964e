"""The wire format shared by the gateway and its clients: the auth header and object metadata headers."""

from __future__ import annotations

import json
from collections.abc import Mapping

from regionflow.storage.base import ObjectInfo


def auth_header(token: str) -> dict[str, str]:
    """The Authorization header for a region API token (api or admin)."""
    return {"Authorization": f"Bearer {token}"}


def object_headers(info: ObjectInfo) -> dict[str, str]:
    """Response headers that carry an object's metadata unchanged (read back by info_from_headers)."""
    return {"x-etag": info.etag, "x-version-id": info.version_id, "etag": f'"{info.etag}"',
            "x-metadata": json.dumps(info.metadata), "x-last-modified": repr(info.last_modified),
            "content-length": str(info.size)}


def info_from_headers(key: str, headers: Mapping[str, str]) -> ObjectInfo:
    """The ObjectInfo that object_headers wrote."""
    return ObjectInfo(key=key, etag=headers["x-etag"], version_id=headers["x-version-id"],
                      size=int(headers.get("content-length", 0)), content_type=headers.get("content-type", ""),
                      metadata=json.loads(headers.get("x-metadata", "{}")),
                      last_modified=float(headers.get("x-last-modified", 0)))
