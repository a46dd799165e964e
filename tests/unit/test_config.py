"""regionflow.toml, secrets and `regionflow init`."""

from __future__ import annotations

import os
import re
import stat
import tomllib
from pathlib import Path

import pytest

from regionflow.config import (
    Config,
    init_project,
    load_config,
    load_secrets,
    resolve_path,
    resolve_url,
    upgrade_secrets,
    write_secrets,
)
from regionflow.errors import ConfigError

posix_only = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")

MINIMAL = """\
primary = "us-east-1"
control = "sqlite:///.regionflow/control.db"

[access_point]
port = 9002

[[regions]]
name = "us-east-1"
port = 9000
objects = "file://.regionflow/us-east-1/objects"
state = "sqlite:///.regionflow/us-east-1/state.db"

[[regions]]
name = "us-west-2"
port = 9001
objects = "file://.regionflow/us-west-2/objects"
state = "sqlite:///.regionflow/us-west-2/state.db"
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "regionflow.toml"
    p.write_text(text, encoding="utf-8")
    return p


def _error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text))
    msg = str(info.value)
    assert "\n" not in msg
    return msg


# ---------------------------------------------------------------------------------------------- init


def test_init_writes_loadable_config(tmp_path: Path) -> None:
    path = init_project(tmp_path)
    assert path == tmp_path / "regionflow.toml"
    text = path.read_text()
    assert text.lstrip().startswith("#")  # commented for people
    assert "/tmp" not in text and str(tmp_path) not in text  # relative: the project can move
    config = load_config(path)
    assert config.region_names == ["us-east-1", "us-west-2"]
    assert config.primary == "us-east-1"
    ports = [r.port for r in config.regions] + [config.access_point.port]
    assert len(set(ports)) == 3
    assert config.region_url("us-west-2") == f"http://127.0.0.1:{config.region('us-west-2').port}"
    assert config.access_point_url == f"http://127.0.0.1:{config.access_point.port}"
    data = tmp_path / ".regionflow"
    assert config.region("us-east-1").objects == f"file://{data / 'us-east-1' / 'objects'}"
    assert config.region("us-east-1").state == f"sqlite:///{data / 'us-east-1' / 'state.db'}"
    assert config.control == f"sqlite:///{data / 'control.db'}"
    assert config.data_dir == str(data)
    for sub in ("us-east-1/objects", "us-west-2/objects", "logs", "run"):
        assert (data / sub).is_dir()
    secrets = load_secrets(config)
    assert len(bytes.fromhex(secrets.signing_key)) == 32
    assert len({secrets.api_token, secrets.admin_token, secrets.replication_token}) == 3
    assert config.load_pipeline().name  # the built-in pipeline
    assert config.source == path


def test_init_with_base_port(tmp_path: Path) -> None:
    config = load_config(init_project(tmp_path, base_port=18100))
    assert [r.port for r in config.regions] == [18100, 18101]
    assert config.access_point.port == 18102
    with pytest.raises(ConfigError, match="out of range"):
        init_project(tmp_path / "other", base_port=65535)


@posix_only
def test_init_secrets_file_is_private(tmp_path: Path) -> None:
    config = load_config(init_project(tmp_path))
    assert stat.S_IMODE(Path(config.secrets_file).stat().st_mode) == 0o600


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    path = init_project(tmp_path, base_port=18200)
    secrets_before = (tmp_path / ".regionflow" / "secrets.toml").read_text()
    path.write_text(path.read_text() + "\n# my edit\n")
    with pytest.raises(ConfigError, match="already exists.*--force"):
        init_project(tmp_path)
    assert "# my edit" in path.read_text()
    init_project(tmp_path, force=True, base_port=18300)
    assert "# my edit" not in path.read_text()
    assert load_config(path).access_point.port == 18302
    assert (tmp_path / ".regionflow" / "secrets.toml").read_text() == secrets_before  # keys kept


# ---------------------------------------------------------------------------------------------- errors


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no regionflow.toml at .*regionflow init"):
        load_config(tmp_path / "regionflow.toml")
    with pytest.raises(ConfigError, match="no regionflow.toml at"):
        load_config(tmp_path)  # a directory means the regionflow.toml inside it


def test_bad_port_type_names_the_key(tmp_path: Path) -> None:
    msg = _error(tmp_path, MINIMAL.replace("port = 9001", 'port = "west"'))
    assert msg.startswith(str(tmp_path / "regionflow.toml") + ": ")
    assert "regions.1.port: Input should be a valid integer" in msg


def test_unknown_primary(tmp_path: Path) -> None:
    msg = _error(tmp_path, MINIMAL.replace('primary = "us-east-1"', 'primary = "eu-west-1"'))
    assert "primary: 'eu-west-1' is not one of the regions (us-east-1, us-west-2)" in msg


def test_duplicate_port(tmp_path: Path) -> None:
    msg = _error(tmp_path, MINIMAL.replace("port = 9001", "port = 9000"))
    assert "regions.1.port: port 9000 is already used by region us-east-1" in msg
    msg = _error(tmp_path, MINIMAL.replace("port = 9002", "port = 9001"))
    assert "access_point.port: port 9001 is already used by region us-west-2" in msg


def test_duplicate_region_name(tmp_path: Path) -> None:
    msg = _error(tmp_path, MINIMAL.replace('name = "us-west-2"', 'name = "us-east-1"'))
    assert "regions.1.name:" in msg and "defined twice" in msg


def test_one_region_only(tmp_path: Path) -> None:
    one = MINIMAL.split("[[regions]]")
    msg = _error(tmp_path, one[0] + "[[regions]]" + one[1])
    assert "regions: at least two regions are needed, found 1" in msg


@pytest.mark.parametrize(("old", "new", "key"), [
    ('name = "us-west-2"', 'name = "US_West"', "regions.1.name"),
    ("port = 9000", "port = 70000", "regions.0.port"),
    ('objects = "file://.regionflow/us-east-1/objects"', 'objects = "ftp://x"', "regions.0.objects"),
    ('control = "sqlite:///.regionflow/control.db"', 'control = "zk://x"', "control"),
    ("[access_point]", "[access_point]\nprot = 1", "access_point.prot"),
])
def test_other_errors_name_the_key(tmp_path: Path, old: str, new: str, key: str) -> None:
    assert f": {key}: " in _error(tmp_path, MINIMAL.replace(old, new, 1))


def test_invalid_toml(tmp_path: Path) -> None:
    assert "not valid TOML" in _error(tmp_path, "primary = \n")


def test_unknown_region_lists_known_names(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, MINIMAL))
    with pytest.raises(ConfigError, match=r"unknown region 'eu-west-1' \(known: us-east-1, us-west-2\)"):
        config.region("eu-west-1")


# ---------------------------------------------------------------------------------------------- paths


def test_relative_urls_resolve_against_config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "pipes").mkdir()
    pipeline = project / "pipes" / "p.toml"
    from regionflow.workloads.batch.pipeline import default_pipeline_text

    pipeline.write_text(default_pipeline_text())
    text = MINIMAL + '\n'.join(["", "[replication]", "interval = 0.5"]) + "\n"
    text = text.replace('control = "sqlite:///.regionflow/control.db"',
                        'control = "sqlite:///.regionflow/control.db?timeout=5"\n'
                        'pipeline = "pipes/p.toml"\nnotifier = "outbox://mail"\ndata_dir = "data"\n'
                        'secrets_file = "/etc/rf/secrets.toml"')
    text = text.replace('state = "sqlite:///.regionflow/us-west-2/state.db"',
                        'state = "postgresql://rf@db:5432/west"')
    text = text.replace('objects = "file://.regionflow/us-west-2/objects"', 'objects = "file:///srv/west"')
    (project / "regionflow.toml").write_text(text)
    monkeypatch.chdir(tmp_path)  # somewhere else: resolution must not depend on the working directory
    config = load_config("project/regionflow.toml")
    east = config.region("us-east-1")
    assert east.objects == f"file://{project}/.regionflow/us-east-1/objects"
    assert east.state == f"sqlite:///{project}/.regionflow/us-east-1/state.db"
    assert config.control == f"sqlite:///{project}/.regionflow/control.db?timeout=5"
    assert config.region("us-west-2").objects == "file:///srv/west"  # absolute: unchanged
    assert config.region("us-west-2").state == "postgresql://rf@db:5432/west"  # not a path: unchanged
    assert config.pipeline == str(pipeline)
    assert config.notifier == f"outbox://{project}/mail"
    assert config.data_dir == str(project / "data")
    assert config.secrets_file == "/etc/rf/secrets.toml"
    assert config.replication.interval == 0.5
    assert config.load_pipeline().name


def test_resolve_helpers(tmp_path: Path) -> None:
    assert resolve_url("sqlite:////abs/x.db", tmp_path) == "sqlite:////abs/x.db"
    assert resolve_url("sqlite:///x.db", tmp_path) == f"sqlite:///{tmp_path}/x.db"
    assert resolve_url("sqlite+pysqlite:///x.db", tmp_path) == f"sqlite+pysqlite:///{tmp_path}/x.db"
    assert resolve_url("file://a/b", tmp_path) == f"file://{tmp_path}/a/b"
    assert resolve_url("s3://bucket/a", tmp_path) == "s3://bucket/a"
    assert resolve_url("etcd://127.0.0.1:2379", tmp_path) == "etcd://127.0.0.1:2379"
    assert resolve_path("/abs", tmp_path) == "/abs"
    assert resolve_path("rel", tmp_path) == str(tmp_path / "rel")


def test_config_built_in_code_validates(tmp_path: Path) -> None:
    base = tomllib.loads(MINIMAL)
    config = Config.model_validate(base)
    assert config.replication.batch == 500 and config.pipeline is None and config.notifier is None
    assert config.source is None


# ---------------------------------------------------------------------------------------------- secrets


@posix_only
def test_secrets_readable_by_others_refused(tmp_path: Path) -> None:
    config = load_config(init_project(tmp_path, base_port=18400))
    secrets_file = Path(config.secrets_file)
    secrets_file.chmod(0o644)
    with pytest.raises(ConfigError, match=r"mode 0644 .*chmod 600"):
        load_secrets(config)
    secrets_file.chmod(0o640)
    with pytest.raises(ConfigError, match="mode 0640"):
        load_secrets(config)
    secrets_file.chmod(0o600)
    assert load_secrets(config).api_token


def test_missing_secrets(tmp_path: Path) -> None:
    config = load_config(init_project(tmp_path, base_port=18500))
    Path(config.secrets_file).unlink()
    with pytest.raises(ConfigError, match="no secrets file at .*regionflow init"):
        load_secrets(config)


@posix_only
def test_write_secrets_is_exclusive_and_private(tmp_path: Path) -> None:
    old = os.umask(0)  # even with a permissive umask the file is 0600 from the start
    try:
        path = tmp_path / "deep" / "secrets.toml"
        secrets = write_secrets(path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert tomllib.loads(path.read_text())["signing_key"] == secrets.signing_key
    assert secrets.signing_key not in repr(secrets)
    with pytest.raises(ConfigError, match="already exists"):
        write_secrets(path)


@posix_only
def test_invalid_secrets_name_the_key(tmp_path: Path) -> None:
    config = load_config(init_project(tmp_path, base_port=18600))
    p = Path(config.secrets_file)
    p.write_text('api_token = "a-long-enough-token-123"\nadmin_token = "another-long-token-456"\n'
                 f'replication_token = "a-third-long-token-789"\nsigning_key = "{"zz" * 32}"\n')
    with pytest.raises(ConfigError, match="signing_key: must be hexadecimal"):
        load_secrets(config)


# ---------------------------------------------------------------------------------------------------
# plans_dir: which plan files the regions may run
# ---------------------------------------------------------------------------------------------------


def test_plans_dir_defaults_to_plans_next_to_the_config_and_init_creates_it(tmp_path):
    config = load_config(init_project(tmp_path))
    assert config.plans_dir == str(tmp_path / "plans") and (tmp_path / "plans").is_dir()
    moved = tmp_path / "elsewhere.toml"
    moved.write_text('plans_dir = "ops/plans"\n' + (tmp_path / "regionflow.toml").read_text())
    assert load_config(moved).plans_dir == str(tmp_path / "ops" / "plans")


def test_allowed_plans_are_inside_plans_dir_the_configured_plan_or_built_in(tmp_path):
    from regionflow.config.plans import PlanNotAllowed, allowed_plan, builtin_plans_dir

    config = load_config(init_project(tmp_path))
    plans = tmp_path / "plans"
    (plans / "team").mkdir()
    (plans / "team" / "a.yaml").write_text("")
    outside = tmp_path / "outside.yaml"
    outside.write_text("")
    assert allowed_plan(config, plans / "team" / "a.yaml") == plans / "team" / "a.yaml"
    assert allowed_plan(config, config.plan_path) == builtin_plans_dir() / "batch.yaml"  # the default plan
    (plans / "out.yaml").symlink_to(outside)
    (plans / "up").symlink_to(tmp_path, target_is_directory=True)
    for path in (outside, plans / ".." / "outside.yaml", plans / "out.yaml", plans / "up" / "outside.yaml",
                 "/etc/passwd"):
        with pytest.raises(PlanNotAllowed, match=re.escape(f"plans run only from the plans directory {plans} ")):
            allowed_plan(config, path)
    with pytest.raises(PlanNotAllowed, match=r"out\.yaml \(resolves to .*outside\.yaml\)"):
        allowed_plan(config, plans / "out.yaml")
    # the configured plan is allowed wherever it is (and only that file of its directory)
    pinned = config.model_copy(update={"plan": str(outside)})
    assert allowed_plan(pinned, outside) == outside
    with pytest.raises(PlanNotAllowed):
        allowed_plan(pinned, tmp_path / "other.yaml")


@posix_only
def test_init_generates_a_private_replication_token(tmp_path: Path) -> None:
    config = load_config(init_project(tmp_path, base_port=18700))
    p = Path(config.secrets_file)
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    token = tomllib.loads(p.read_text())["replication_token"]
    assert len(token) >= 32 and load_secrets(config).replication_token == token
    assert token not in repr(load_secrets(config))


_OLD_SECRETS = ('# written before the replication token existed\napi_token = "a-long-enough-token-123"\n'
                'admin_token = "another-long-token-456"\nsigning_key = "' + "ab" * 32 + '"\n')


@posix_only
def test_a_secrets_file_without_the_replication_token_says_how_to_upgrade_and_upgrading_keeps_the_rest(
        tmp_path: Path) -> None:
    config = load_config(init_project(tmp_path, base_port=18800))
    p = Path(config.secrets_file)
    p.write_text(_OLD_SECRETS)
    with pytest.raises(ConfigError, match=r"no replication_token .*regionflow init --upgrade-secrets"):
        load_secrets(config)
    assert upgrade_secrets(p) == ["replication_token"]
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert p.read_text().startswith(_OLD_SECRETS)  # tokens, key and comments kept as they were
    upgraded = load_secrets(config)
    assert (upgraded.api_token, upgraded.admin_token) == ("a-long-enough-token-123", "another-long-token-456")
    assert upgraded.replication_token not in (upgraded.api_token, upgraded.admin_token)
    assert upgrade_secrets(p) == []  # idempotent
    assert load_secrets(config) == upgraded
    assert [q.name for q in p.parent.iterdir() if q.name.startswith(".secrets")] == []


@posix_only
def test_upgrading_refuses_a_secrets_file_others_can_read_and_writes_nothing(tmp_path: Path) -> None:
    p = tmp_path / "secrets.toml"
    p.write_text(_OLD_SECRETS)
    p.chmod(0o644)
    with pytest.raises(ConfigError, match="mode 0644"):
        upgrade_secrets(p)
    assert p.read_text() == _OLD_SECRETS


@posix_only
def test_tokens_must_differ(tmp_path: Path) -> None:
    config = load_config(init_project(tmp_path, base_port=18900))
    p = Path(config.secrets_file)
    p.write_text(_OLD_SECRETS + 'replication_token = "a-long-enough-token-123"\n')
    with pytest.raises(ConfigError, match="must all differ"):
        load_secrets(config)


# ------------------------------------------------------------------------------------- executor key


def _with_executor(value: str) -> str:
    """MINIMAL with `executor = value` in the first region's table."""
    return MINIMAL.replace('state = "sqlite:///.regionflow/us-east-1/state.db"\n',
                           f'state = "sqlite:///.regionflow/us-east-1/state.db"\nexecutor = {value}\n')


def test_a_region_defaults_to_its_process_pool_and_takes_a_dask_address(tmp_path: Path) -> None:
    path = tmp_path / "regionflow.toml"
    path.write_text(MINIMAL)
    assert [r.executor for r in load_config(path).regions] == ["processes", "processes"]
    path.write_text(_with_executor('" tcp://127.0.0.1:8786 "'))
    assert load_config(path).region("us-east-1").executor == "tcp://127.0.0.1:8786"


@pytest.mark.parametrize(("value", "says"), [
    ('"threads"', "executor 'threads' is for `regionflow process`"),
    ('"dask://local?workers=x"', "workers must be a whole number"),
    ('"yarn://rm:8032"', "expected processes, threads, tcp://HOST:PORT"),
])
def test_a_region_refuses_an_executor_it_cannot_run_on(tmp_path: Path, value: str, says: str) -> None:
    path = tmp_path / "regionflow.toml"
    path.write_text(_with_executor(value))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert "regions.0.executor" in msg and says in msg and "\n" not in msg
