"""TLS settings in regionflow.toml: per-listener tls_cert/tls_key, the clients' tls_ca, and what each
refuses with one clear line."""

from __future__ import annotations

import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from regionflow.api.client import ApiClient, ApiError
from regionflow.config import load_config
from regionflow.errors import ConfigError
from tlskit import Certs, make_certs

TOPOLOGY = """\
primary = "us-east-1"
control = "sqlite:///.regionflow/control.db"
{top}
[access_point]
port = 9002
{ap}
[[regions]]
name = "us-east-1"
port = 9000
objects = "file://.regionflow/us-east-1/objects"
state = "sqlite:///.regionflow/us-east-1/state.db"
{east}
[[regions]]
name = "us-west-2"
port = 9001
objects = "file://.regionflow/us-west-2/objects"
state = "sqlite:///.regionflow/us-west-2/state.db"
"""


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def _load(tmp_path: Path, top: str = "", ap: str = "", east: str = ""):
    p = tmp_path / "regionflow.toml"
    p.write_text(TOPOLOGY.format(top=top, ap=ap, east=east), encoding="utf-8")
    return load_config(p)


def _refused(tmp_path: Path, **parts: str) -> str:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, **parts)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_without_tls_settings_every_url_is_plain_http_and_clients_use_the_default_trust(tmp_path: Path) -> None:
    config = _load(tmp_path)
    assert config.region_url("us-east-1") == "http://127.0.0.1:9000"
    assert config.access_point_url == "http://127.0.0.1:9002"
    assert config.tls_verify() is True
    assert config.region("us-east-1").server_tls() == (None, None)


def test_tls_files_resolve_against_the_config_dir_and_turn_urls_into_https(tmp_path: Path, certs: Certs) -> None:
    local = tmp_path / "certs"
    local.mkdir()
    for src in (certs.ca, certs.cert, certs.key):
        (local / src.name).write_bytes(src.read_bytes())
    tls = 'tls_cert = "certs/server.pem"\ntls_key = "certs/server.key"\n'
    config = _load(tmp_path, top='tls_ca = "certs/ca.pem"', ap=tls, east=tls)
    assert config.tls_ca == str(local / "ca.pem")
    east = config.region("us-east-1")
    assert (east.tls_cert, east.tls_key) == (str(local / "server.pem"), str(local / "server.key"))
    assert config.region_url("us-east-1") == "https://127.0.0.1:9000"
    assert config.access_point_url == "https://127.0.0.1:9002"
    assert config.region_url("us-west-2") == "http://127.0.0.1:9001"  # TLS is per listener
    assert east.server_tls() == (str(local / "server.pem"), str(local / "server.key"))
    assert config.access_point.server_tls() == east.server_tls()
    verify = config.tls_verify()
    assert isinstance(verify, ssl.SSLContext) and verify.verify_mode == ssl.CERT_REQUIRED


@pytest.mark.parametrize(("given", "absent"), [("tls_cert", "tls_key"), ("tls_key", "tls_cert")])
def test_cert_and_key_go_together(tmp_path: Path, given: str, absent: str) -> None:
    msg = _refused(tmp_path, east=f'{given} = "x.pem"')
    assert f"regions.0: {given} is set without {absent}: set both (TLS) or neither" in msg
    msg = _refused(tmp_path, ap=f'{given} = "x.pem"')
    assert f"access_point: {given} is set without {absent}" in msg


def test_a_missing_or_unusable_ca_file_is_refused_at_load(tmp_path: Path) -> None:
    msg = _refused(tmp_path, top='tls_ca = "nowhere/ca.pem"')
    assert msg.endswith(f"tls_ca: {tmp_path / 'nowhere' / 'ca.pem'}: no such file")
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    assert "tls_ca: " in _refused(tmp_path, top='tls_ca = "junk.pem"')
    assert "not a PEM file of CA certificates" in _refused(tmp_path, top='tls_ca = "junk.pem"')


def test_listener_files_are_checked_by_the_process_that_serves_them(tmp_path: Path, certs: Certs) -> None:
    # Loading succeeds: on another machine this region's key is not there, and need not be.
    config = _load(tmp_path, east='tls_cert = "absent.pem"\ntls_key = "absent.key"')
    with pytest.raises(ConfigError, match=r"regions\.us-east-1\.tls_cert: .*absent\.pem: no such file"):
        config.region("us-east-1").server_tls()
    config = _load(tmp_path, ap=f'tls_cert = "{certs.cert}"\ntls_key = "{certs.other_ca}"')
    with pytest.raises(ConfigError, match=r"access_point: cannot use tls_cert .* expected a PEM certificate"):
        config.access_point.server_tls()


def test_a_certificate_the_client_cannot_verify_is_named_with_what_to_set() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        failure = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
        failure.verify_message = "self-signed certificate in certificate chain"
        raise httpx.ConnectError(str(failure), request=request) from failure

    api = ApiClient("https://region", "tok", target="us-east-1", transport=httpx.MockTransport(handler))
    with pytest.raises(ApiError) as caught:
        api.health()
    msg = str(caught.value)
    assert caught.value.unreachable
    assert msg == ("us-east-1 (https://region): TLS certificate verification failed: self-signed certificate in "
                   "certificate chain; set tls_ca in regionflow.toml to the CA file that signed the server's "
                   "certificate")


def _serve(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=60)


def test_a_listener_whose_certificate_cannot_be_served_exits_with_one_line_before_starting(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from regionflow.cli import app
    from regionflow.config import init_project

    path = init_project(tmp_path)
    text = path.read_text()
    text = text.replace("[access_point]\n",
                        '[access_point]\ntls_cert = "certs/absent.pem"\ntls_key = "certs/absent.key"\n')
    path.write_text(text)
    served = _serve("regionflow.region.access_point", "--config", str(path))
    assert served.returncode == 2 and "Traceback" not in served.stderr
    assert served.stderr.startswith("error: ") and "access_point.tls_cert: " in served.stderr
    path.write_text(text.replace('name = "us-east-1"\n', 'name = "us-east-1"\ntls_cert = "absent.pem"\n'
                                                         'tls_key = "absent.key"\n'))
    served = _serve("regionflow.region.server", "--config", str(path), "--region", "us-east-1")
    assert served.returncode == 2 and "Traceback" not in served.stderr
    assert "regions.us-east-1.tls_cert: " in served.stderr and "no such file" in served.stderr
    result = CliRunner().invoke(app, ["up", "--detach", "--config", str(path)])
    assert result.exit_code == 1 and "tls_cert" in result.stderr and "Traceback" not in result.output
    assert not list((tmp_path / ".regionflow" / "run").glob("*.pid"))  # nothing was started
