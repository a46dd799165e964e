"""Executors run chunk work in parallel: a local process pool (a region), threads (`regionflow process`)."""

from regionflow.executor.base import Executor
from regionflow.executor.local import LocalExecutor
from regionflow.executor.threads import ThreadExecutor

__all__ = ["Executor", "LocalExecutor", "ThreadExecutor"]
