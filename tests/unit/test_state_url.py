"""State-store URLs: a password given beside the URL reaches the engine only, and never what is shown."""

from __future__ import annotations

from regionflow.state.sql import engine_url


def test_password_fills_a_url_without_one() -> None:
    url = engine_url("postgresql://regionflow@127.0.0.1:6543/regionflow", "s3cret")
    assert url.drivername == "postgresql+psycopg" and url.password == "s3cret"
    assert "s3cret" not in repr(url) and "s3cret" not in url.render_as_string(hide_password=True)


def test_a_password_in_the_url_wins_and_none_leaves_it_alone() -> None:
    assert engine_url("postgresql://u:inline@h/db", "other").password == "inline"
    assert engine_url("postgresql://u@h/db").password is None


def test_sqlite_ignores_a_password(tmp_path) -> None:
    url = engine_url(f"sqlite:///{tmp_path}/state.db", "s3cret")
    assert url.password is None and url.drivername == "sqlite+pysqlite"
