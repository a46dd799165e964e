"""Executors run chunk work in parallel: a local process pool by default (Dask comes later)."""

from regionflow.executor.base import Executor
from regionflow.executor.local import LocalExecutor

__all__ = ["Executor", "LocalExecutor"]
