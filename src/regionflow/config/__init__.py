"""Topology config (``regionflow.toml``), secrets (``.regionflow/secrets.toml``) and ``regionflow init``.

The package is split by concern: ``model`` (the pydantic topology model, load_config and the rules that
make relative paths and URLs absolute), ``secrets`` (API tokens and the link-signing key) and ``init``
(``regionflow init``). Import from ``regionflow.config`` itself: the names below are its public surface,
the same as when it was a single module.
"""

from __future__ import annotations

from regionflow.config.init import init_project
from regionflow.config.model import (
    CONFIG_FILE,
    DATA_DIR,
    DEFAULT_REGIONS,
    AccessPointConfig,
    CanaryConfig,
    Config,
    RegionConfig,
    ReplicationConfig,
    backends_in_use,
    load_config,
    resolve_path,
    resolve_url,
)
from regionflow.config.s3 import s3_access, s3_endpoints
from regionflow.config.secrets import Secrets, load_secrets, upgrade_secrets, write_secrets

__all__ = [
    "CONFIG_FILE",
    "DATA_DIR",
    "DEFAULT_REGIONS",
    "AccessPointConfig",
    "CanaryConfig",
    "Config",
    "RegionConfig",
    "ReplicationConfig",
    "Secrets",
    "backends_in_use",
    "init_project",
    "load_config",
    "load_secrets",
    "resolve_path",
    "resolve_url",
    "s3_access",
    "s3_endpoints",
    "upgrade_secrets",
    "write_secrets",
]
