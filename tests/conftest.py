"""Shared fixtures."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from etcdkit import etcd_shared  # noqa: F401 (a session fixture: the shared 3-member etcd cluster)
from pgkit import pg_cluster, pgserver_url, pgserver_url_factory  # noqa: F401  (fixtures for every suite)
from testenv import REFERENCE_DATA

# The real-SeaweedFS fixtures (seaweedfs, s3_bucket, s3_store) for the S3 adapter's tests.
pytest_plugins = ["seaweedkit"]

# The machine's PostgreSQL (trust auth on loopback; `make services` starts it). CI must provide it.
PG_ADMIN_URL = os.environ.get("REGIONFLOW_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


class _Databases:
    """Fresh, empty PostgreSQL databases on the machine's server, all dropped at close()."""

    def __init__(self) -> None:
        admin_url = make_url(PG_ADMIN_URL).set(drivername="postgresql+psycopg")
        self.admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
        self.made: list[str] = []

    def make(self) -> str:
        name = f"rf_test_{uuid.uuid4().hex[:8]}"
        try:
            with self.admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        except Exception as exc:  # any failure to reach or use the server fails the test
            problem = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is not usable (run `make services`): {problem}",
                        pytrace=False)
        self.made.append(name)
        return make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)

    def close(self) -> None:
        try:
            if self.made:
                with self.admin.connect() as conn:
                    for name in self.made:
                        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            self.admin.dispose()


@pytest.fixture
def pg_url_factory() -> Iterator[Callable[[], str]]:
    """Make URLs of fresh, empty PostgreSQL databases (as many as a test needs), all dropped after it."""
    databases = _Databases()
    try:
        yield databases.make
    finally:
        databases.close()


@pytest.fixture
def pg_url(pg_url_factory: Callable[[], str]) -> str:
    """URL of a fresh, empty PostgreSQL database, dropped after the test. Fails if PostgreSQL is down."""
    return pg_url_factory()




@pytest.fixture(scope="session")
def reference_data() -> str:
    """The reference system's sample data (../shared/reference-data beside the repository)."""
    if not os.path.isfile(os.path.join(REFERENCE_DATA, "testfile.csv")):
        pytest.fail(f"reference data not found at {REFERENCE_DATA}", pytrace=False)
    return REFERENCE_DATA
