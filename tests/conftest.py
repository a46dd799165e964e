"""Shared fixtures."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

# The machine's PostgreSQL (trust auth on loopback; `make services` starts it). CI must provide it.
PG_ADMIN_URL = os.environ.get("REGIONFLOW_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """URL of a fresh, empty PostgreSQL database, dropped after the test. Fails if PostgreSQL is down."""
    admin_url = make_url(PG_ADMIN_URL).set(drivername="postgresql+psycopg")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    name = f"rf_test_{uuid.uuid4().hex[:8]}"
    problem = None
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # any failure to reach or use the server fails the test
        problem = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if problem is not None:
        admin.dispose()
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is not usable (run `make services`): {problem}",
                    pytrace=False)
    try:
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE_DATA = os.path.join(os.path.dirname(REPO), "shared", "reference-data")
REGIONFLOW = os.path.join(os.path.dirname(sys.executable), "regionflow")  # the venv's console script


@pytest.fixture(scope="session")
def reference_data() -> str:
    """The reference system's sample data (../shared/reference-data beside the repository)."""
    if not os.path.isfile(os.path.join(REFERENCE_DATA, "testfile.csv")):
        pytest.fail(f"reference data not found at {REFERENCE_DATA}", pytrace=False)
    return REFERENCE_DATA


@pytest.fixture
def pg_url_factory() -> Iterator[Callable[[], str]]:
    """Make URLs of fresh, empty PostgreSQL databases (as many as a test needs), all dropped after it."""
    admin_url = make_url(PG_ADMIN_URL).set(drivername="postgresql+psycopg")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    made: list[str] = []

    def make() -> str:
        name = f"rf_test_{uuid.uuid4().hex[:8]}"
        try:
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        except Exception as exc:  # any failure to reach or use the server fails the test
            problem = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is not usable (run `make services`): {problem}",
                        pytrace=False)
        made.append(name)
        return make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)

    try:
        yield make
    finally:
        with admin.connect() as conn:
            for name in made:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
