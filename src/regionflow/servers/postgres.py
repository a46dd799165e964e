"""PostgresServer: a region's own PostgreSQL cluster, created with initdb and run in the foreground.

The cluster listens on 127.0.0.1 only, over TCP only (no unix socket: its path would have to fit in
~107 bytes, and a socket directory the ``postgres`` user can write is one more thing to own), and lets
in only password (scram-sha-256) connections from loopback. The superuser is regionflow's own role
(``user``), so provision() can create the database without a second role.

PostgreSQL refuses to run as root, so when regionflow runs as root the cluster runs as the ``postgres``
OS user, which must own the data directory and be able to search every directory above it. A directory
that user cannot search (pytest's /tmp/pytest-of-root is 0700, so are many home directories) is not
changed behind the operator's back: prepare() names it and the fix in one line.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
from pathlib import Path

import psycopg
from psycopg import sql

from regionflow.servers.base import ManagedServer, ServerError, find_binary, run_as_kwargs

__all__ = ["PostgresServer", "postgres_bin_dirs"]

HINT = "apt-get install postgresql (`make services` installs it)"
OS_USER = "postgres"  # the Debian package's user; PostgreSQL will not run as root
INITDB_TIMEOUT = 120.0  # initdb takes ~1 s here; the bound is for a slow disk, not a guess at the time

# Modest settings for a 2-core laptop that runs two regions (each with its own cluster) at once.
# max_connections: a region process has one engine (SQLAlchemy's default pool: 5 + 10 overflow = 15);
# room is left for two workers' pools of the same size, the CLI and the drill, plus the 3 superuser slots.
SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "unix_socket_directories": "",
    "max_connections": "50",
    "shared_buffers": "32MB",
    "work_mem": "4MB",
    "maintenance_work_mem": "32MB",
    "max_wal_size": "256MB",
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "huge_pages": "off",
    "jit": "off",  # compiling queries costs more than it saves on the store's small statements
    "logging_collector": "off",  # log to stderr, which runner.py sends to the server's log file
    "log_line_prefix": "%m [%p] ",
}

PG_HBA = """\
# Written by regionflow: password (scram-sha-256) connections over loopback TCP only; no unix socket.
# TYPE  DATABASE  USER  ADDRESS       METHOD
host    all       all   127.0.0.1/32  scram-sha-256
host    all       all   ::1/128       scram-sha-256
"""


def postgres_bin_dirs() -> tuple[str, ...]:
    """Debian's per-version bin directories, highest major version first (/usr/lib/postgresql/N/bin)."""
    found = []
    for d in Path("/usr/lib/postgresql").glob("*/bin"):
        if d.parent.name.isdigit():
            found.append((int(d.parent.name), str(d)))
    return tuple(d for _, d in sorted(found, reverse=True))


def _one_line(text: str, *, last: bool = False) -> str:
    """The first (or last) non-blank line of a message: psycopg puts the reason first, initdb last."""
    lines = [" ".join(line.split()) for line in text.splitlines() if line.strip()]
    return (lines[-1] if last else lines[0]) if lines else "no output"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class PostgresServer(ManagedServer):
    """One region's PostgreSQL cluster on 127.0.0.1:port, superuser `user` with `password`."""

    kind = "postgres"
    stop_signal = signal.SIGINT  # a fast shutdown: SIGTERM would wait for every client to disconnect

    def __init__(self, name: str, region: str | None, data_dir: Path, *, port: int, password: str,
                 user: str = "regionflow", database: str = "regionflow") -> None:
        if not password or "\n" in password or "\r" in password:
            # initdb reads the password from the first line of a file
            raise ServerError(f"{name}: the PostgreSQL password must be one non-empty line")
        self.name = name
        self.region = region
        self.data_dir = Path(data_dir)
        self.port = port
        self.user = user
        self.database = database
        self._password = password  # never part of repr, url or describe()

    @property
    def url(self) -> str:
        """The state-store URL of the database, without the password (open_state_store takes it apart)."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    @property
    def address(self) -> str:
        """Same as url: what `status` shows and a region connects to."""
        return self.url

    def run_as(self) -> str | None:
        """"postgres" when we are root (PostgreSQL refuses root), else None: the cluster runs as us."""
        return OS_USER if os.geteuid() == 0 else None

    def _bin(self, program: str) -> str:
        return find_binary(program, extra_dirs=postgres_bin_dirs(), hint=HINT)

    def check_installed(self) -> None:
        """MissingBinary unless both postgres and initdb are installed."""
        self._bin("postgres")
        self._bin("initdb")

    def command(self) -> list[str]:
        """postgres in the foreground on our port, with the settings above (fsync on)."""
        argv = [self._bin("postgres"), "-D", str(self.data_dir), "-p", str(self.port)]
        for key, value in SETTINGS.items():
            argv += ["-c", f"{key}={value}"]
        return argv

    # -- prepare -------------------------------------------------------------------------------------

    def _owner(self) -> tuple[int, int, list[int]] | None:
        """(uid, gid, group ids) of the OS user the cluster runs as, None when it runs as us."""
        user = self.run_as()
        if user is None or not run_as_kwargs(user):  # run_as_kwargs: ServerError if the user is missing
            return None
        entry = pwd.getpwnam(user)
        return entry.pw_uid, entry.pw_gid, os.getgrouplist(user, entry.pw_gid)

    def _check_searchable(self, path: Path, owner: tuple[int, int, list[int]]) -> None:
        """ServerError naming the first directory above path that the cluster's user cannot search."""
        uid, _, gids = owner
        for directory in reversed(path.resolve().parents):
            st = directory.stat()
            bit = stat.S_IXUSR if st.st_uid == uid else stat.S_IXGRP if st.st_gid in gids else stat.S_IXOTH
            if not st.st_mode & bit:
                raise ServerError(f"{self.name}: the {OS_USER} user cannot reach {self.data_dir} because it "
                                  f"cannot search {directory}: chmod o+x {directory} (or put data_dir elsewhere)")

    def prepare(self) -> None:
        """initdb a new cluster (as the postgres user when root) unless data_dir already holds one.

        initdb runs in a sibling directory that is renamed into place at the end, so a crash half-way
        leaves no half-made cluster that a later prepare() would mistake for a real one."""
        owner = self._owner()
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        if owner is not None:
            self._check_searchable(self.data_dir, owner)
        if (self.data_dir / "PG_VERSION").exists():
            self._check_existing(owner)
            return
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise ServerError(f"{self.name}: {self.data_dir} is not empty but holds no PostgreSQL cluster "
                              "(no PG_VERSION); move it away to let regionflow create one")
        staging = self.data_dir.with_name(f".{self.data_dir.name}.initdb")
        shutil.rmtree(staging, ignore_errors=True)  # left by a prepare() that crashed
        for leftover in self.data_dir.parent.glob(f".{self.name}-pw-*"):  # a pwfile a crash kept
            leftover.unlink(missing_ok=True)
        staging.mkdir(mode=0o700)
        try:
            self._initdb(staging, owner)
            os.replace(staging, self.data_dir)  # replaces an empty data_dir too
            _fsync_dir(self.data_dir.parent)  # initdb synced the files; make the rename durable too
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _check_existing(self, owner: tuple[int, int, list[int]] | None) -> None:
        """An existing cluster must be of our major version and owned by the user it runs as."""
        version = (self.data_dir / "PG_VERSION").read_text().strip()
        binary = Path(self._bin("postgres"))
        if binary.parent.parent.parent == Path("/usr/lib/postgresql") and binary.parent.parent.name != version:
            raise ServerError(f"{self.name}: {self.data_dir} holds a PostgreSQL {version} cluster but the "
                              f"server found is {binary.parent.parent.name} ({binary}); upgrade it with pg_upgrade")
        uid = owner[0] if owner is not None else os.geteuid()
        st = self.data_dir.stat()
        if st.st_uid != uid:
            user = pwd.getpwuid(uid).pw_name
            raise ServerError(f"{self.name}: {self.data_dir} is not owned by {user}: chown -R {user}: {self.data_dir}")
        if st.st_mode & 0o077:
            self.data_dir.chmod(0o700)  # PostgreSQL refuses a data directory others can read

    def _initdb(self, target: Path, owner: tuple[int, int, list[int]] | None) -> None:
        if owner is not None:
            os.chown(target, owner[0], owner[1])
        # The password goes through a 0600 file readable only by initdb's user, never on a command line.
        fd, pwfile = tempfile.mkstemp(dir=target.parent, prefix=f".{self.name}-pw-")
        try:
            with os.fdopen(fd, "w") as f:
                if owner is not None:
                    os.fchown(f.fileno(), owner[0], owner[1])
                f.write(self._password + "\n")
            argv = [self._bin("initdb"), "-D", str(target), "-U", self.user, f"--pwfile={pwfile}",
                    "--auth-host=scram-sha-256", "--auth-local=peer", "-k", "-E", "UTF8", "--locale=C",
                    "--no-instructions"]
            try:
                done = subprocess.run(argv, capture_output=True, text=True, timeout=INITDB_TIMEOUT,
                                      cwd=target.parent, stdin=subprocess.DEVNULL,
                                      **run_as_kwargs(self.run_as()))
            except subprocess.TimeoutExpired:
                raise ServerError(f"{self.name}: initdb did not finish in {INITDB_TIMEOUT:g}s") from None
            except OSError as exc:
                raise ServerError(f"{self.name}: cannot run initdb: {exc}") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(pwfile)
        if done.returncode != 0:
            raise ServerError(f"{self.name}: initdb failed: {_one_line(done.stderr or done.stdout, last=True)}")
        hba = target / "pg_hba.conf"
        hba.write_text(PG_HBA)
        if owner is not None:
            os.chown(hba, owner[0], owner[1])

    # -- health and provisioning -----------------------------------------------------------------------

    def _connect(self, dbname: str, timeout: float) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(host="127.0.0.1", port=self.port, user=self.user, password=self._password,
                               dbname=dbname, connect_timeout=max(1, round(timeout)), autocommit=True)

    def probe(self, timeout: float = 1.0) -> str | None:
        """None when a password login over TCP runs `select 1`, else the driver's reason in one line."""
        try:
            with self._connect("postgres", timeout) as conn:
                conn.execute("select 1").fetchone()
        except (psycopg.Error, OSError) as exc:
            return _one_line(str(exc)) if str(exc).strip() else type(exc).__name__
        return None

    def provision(self) -> None:
        """Create the database, owned by user, unless it exists (a concurrent creator counts as done)."""
        try:
            with self._connect("postgres", 5.0) as conn:
                exists = conn.execute("select 1 from pg_database where datname = %s", (self.database,)).fetchone()
                if exists is None:
                    with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                        conn.execute(sql.SQL("create database {} owner {}").format(
                            sql.Identifier(self.database), sql.Identifier(self.user)))
        except psycopg.Error as exc:
            raise ServerError(f"{self.name}: cannot create database {self.database!r}: "
                              f"{_one_line(str(exc))}") from None
