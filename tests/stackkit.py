"""Integration-test helper: a real two-region stack in a temporary directory, driven through the CLI."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from regionflow.config import load_config, load_secrets
from regionflow.polling import PollTimeout, poll_until
from testenv import REGIONFLOW

EAST, WEST = "us-east-1", "us-west-2"


class Stack:
    def __init__(self, root: Path):
        self.root = root

    def rf(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        result = subprocess.run([REGIONFLOW, *args], cwd=self.root, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"regionflow {' '.join(args)} exited {result.returncode}: {result.stderr}")
        return result

    def rf_json(self, *args: str, timeout: float = 120):
        return json.loads(self.rf(*args, "--json", timeout=timeout).stdout)

    def start(self, extra_config: str = "", settings: dict[str, str] | None = None,
              init_args: tuple[str, ...] = (), edit: Callable[[str], str] | None = None) -> Stack:
        """init (with init_args), then set settings (key -> TOML value, for keys `init` writes, each once),
        append extra_config (new tables) and rewrite the text with edit, then up."""
        self.rf("init", "--dir", ".", *init_args)
        path = self.root / "regionflow.toml"
        text = path.read_text()
        for key, value in (settings or {}).items():
            text, found = re.subn(rf"^{re.escape(key)} = .*$", f"{key} = {value}", text, flags=re.MULTILINE)
            assert found == 1, f"regionflow.toml has {found} lines setting {key}"
        text += "\n" + extra_config + "\n" if extra_config else ""
        path.write_text(edit(text) if edit is not None else text)
        self.config = load_config(self.root / "regionflow.toml")
        self.secrets = load_secrets(self.config)
        self.rf("up", "--detach", timeout=90)
        return self

    def stop(self) -> None:
        for name in (EAST, WEST, "access-point"):
            self.signal(name, signal.SIGCONT, missing_ok=True)
        self.rf("down", check=False, timeout=60)

    def pid(self, name: str) -> int:
        return int((self.root / ".regionflow" / "run" / f"{name}.pid").read_text())

    def signal(self, name: str, sig: int, missing_ok: bool = False) -> None:
        try:
            os.killpg(self.pid(name), sig)
        except (FileNotFoundError, ProcessLookupError):
            if not missing_ok:
                raise

    def url(self, region: str | None = None) -> str:
        return self.config.region_url(region) if region else self.config.access_point_url

    def http(self, region: str | None = None, token: str | None = "api", timeout: float = 10) -> httpx.Client:
        """A client of region (the access point when None) with the "api", "admin" or "replication" token,
        any other string as the token itself, or none."""
        named = {"api": self.secrets.api_token, "admin": self.secrets.admin_token,
                 "replication": self.secrets.replication_token}
        headers = {"Authorization": f"Bearer {named.get(token, token)}"} if token else {}
        return httpx.Client(base_url=self.url(region), headers=headers, timeout=timeout,
                            verify=self.config.tls_verify())

    def job(self, job_id: str, region: str | None = None) -> dict | None:
        with self.http(region) as h:
            r = h.get(f"/jobs/{job_id}")
        return r.json() if r.status_code == 200 else None

    def eventually(self, predicate, timeout: float = 20.0, interval: float = 0.1, what: str = "condition"):
        try:
            return poll_until(predicate, timeout=timeout, interval=interval, what=what)
        except PollTimeout as exc:
            raise AssertionError(str(exc)) from None

    def settled(self, region: str, timeout: float = 30.0) -> None:
        """Wait until region has seen the routing control's current epoch and has no job in hand (a
        region that lost the control stops at its next step; after this it writes nothing more)."""
        epoch = self.rf_json("control", "show")["epoch"]

        def quiet() -> bool:
            with self.http(region) as h:
                seen = h.get("/health").json()
            return (seen.get("epoch_seen") or 0) >= epoch and not seen["busy"]

        self.eventually(quiet, timeout=timeout, what=f"{region} to see epoch {epoch} and go quiet")

    def replicated_both_ways(self, timeout: float = 30.0) -> None:
        """Wait until every replication direction finished a pass that started after this call and found
        nothing left to apply."""
        since = time.time()

        def drained() -> bool:
            for region in (EAST, WEST):
                for d in self.replication(region).values():
                    if d["updated_at"] <= since or any(d["backlog"].values()):
                        return False
            return True

        self.eventually(drained, timeout=timeout, what="replication to drain both ways")

    def replication(self, region: str) -> dict[str, dict]:
        with self.http(region) as h:
            return {d["source"]: d for d in h.get("/replication").json()["directions"]}


@contextmanager
def running_stack(root: Path, extra_config: str = "", settings: dict[str, str] | None = None,
                  init_args: tuple[str, ...] = (), edit: Callable[[str], str] | None = None) -> Iterator[Stack]:
    """A stack started in root (created if needed; `regionflow init` given init_args, then settings,
    extra_config and edit as Stack.start) and always stopped, whatever the test did."""
    root.mkdir(parents=True, exist_ok=True)
    s = Stack(root)
    try:
        yield s.start(extra_config, settings, init_args, edit)
    finally:
        s.stop()
