from __future__ import annotations

import stat

import pytest

from mlflowkit import envfile
from mlflowkit.errors import EnvFileError
from mlflowkit.topology import TOPOLOGIES

TOPOLOGY = TOPOLOGIES["postgres-s3"]


def test_ensure_creates_a_private_file_with_secrets(tmp_path):
    path = tmp_path / ".env"
    values = envfile.ensure(path, TOPOLOGY)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(values["POSTGRES_PASSWORD"]) >= 24
    assert values["MLFLOW_PORT"] == "5000"
    assert values["BIND_ADDRESS"] == "127.0.0.1"
    assert envfile.parse(path.read_text()) == values


def test_secrets_differ_between_stacks(tmp_path):
    a = envfile.ensure(tmp_path / "a.env", TOPOLOGY)
    b = envfile.ensure(tmp_path / "b.env", TOPOLOGY)
    for key in ("POSTGRES_PASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert a[key] != b[key]


def test_existing_values_are_kept_and_missing_ones_added(tmp_path):
    path = tmp_path / ".env"
    path.write_text("# mine\nMLFLOW_PORT=5999\nPOSTGRES_PASSWORD='kept'\n")
    path.chmod(0o644)
    values = envfile.ensure(path, TOPOLOGY)
    assert values["MLFLOW_PORT"] == "5999"
    assert values["POSTGRES_PASSWORD"] == "kept"
    assert "AWS_SECRET_ACCESS_KEY" in values
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert envfile.ensure(path, TOPOLOGY) == values  # idempotent


def test_malformed_line_is_refused_with_its_number_and_the_file_untouched(tmp_path):
    path = tmp_path / ".env"
    path.write_text("MLFLOW_PORT=5000\nthis is not an assignment\n")
    with pytest.raises(EnvFileError, match=r"\.env:2: not a KEY=VALUE line"):
        envfile.ensure(path, TOPOLOGY)
    assert path.read_text() == "MLFLOW_PORT=5000\nthis is not an assignment\n"


def test_load_of_a_missing_file_says_to_run_up(tmp_path):
    with pytest.raises(EnvFileError, match="mlflowkit up postgres-s3"):
        envfile.load(tmp_path / ".env", TOPOLOGY)


def test_parse_handles_export_quotes_and_comments():
    assert envfile.parse("export A=1\n# c\n\nB=\"two words\"\nC=\n") == {"A": "1", "B": "two words", "C": ""}


def test_values_are_read_as_compose_reads_them():
    text = ("MLFLOW_PORT=5999  # moved\nA='${MLFLOW_PORT} literal'\nB=\"${MLFLOW_PORT}/x\"\nC=${NOPE:-fallback}\n"
            "D=a#b\nE=\"two # words\" # comment\n")
    assert envfile.parse(text) == {"MLFLOW_PORT": "5999", "A": "${MLFLOW_PORT} literal", "B": "5999/x",
                                   "C": "fallback", "D": "a#b", "E": "two # words"}


def test_a_port_that_is_not_a_port_is_one_line_naming_the_variable_and_the_file(tmp_path):
    path = tmp_path / ".env"
    path.write_text("MLFLOW_PORT=50OO\n")
    with pytest.raises(EnvFileError) as info:
        envfile.load(path, TOPOLOGY)
    assert "MLFLOW_PORT='50OO' is not a TCP port" in str(info.value) and str(path) in str(info.value)
    with pytest.raises(EnvFileError):
        envfile.ensure(path, TOPOLOGY)
    assert path.read_text() == "MLFLOW_PORT=50OO\n"  # nothing written


def test_missing_keys_are_appended_and_the_users_lines_kept(tmp_path):
    path = tmp_path / ".env"
    path.write_text("# my notes\nMLFLOW_PORT=5999  # moved\n")
    values = envfile.ensure(path, TOPOLOGY)
    text = path.read_text()
    assert text.startswith("# my notes\nMLFLOW_PORT=5999  # moved\n")
    assert values["MLFLOW_PORT"] == "5999" and envfile.parse(text) == values


def test_values_with_spaces_round_trip(tmp_path):
    path = tmp_path / ".env"
    values = envfile.ensure(path, TOPOLOGY, auth=True)
    assert values["MLFLOW_AUTH_ARGS"] == "--app-name basic-auth"
    assert envfile.parse(path.read_text())["MLFLOW_AUTH_ARGS"] == "--app-name basic-auth"


def test_env_file_is_private_even_when_a_stale_temp_file_is_readable(tmp_path, monkeypatch):
    path = tmp_path / "postgres-s3" / ".env"
    path.parent.mkdir()
    for stale in (path.with_suffix(".tmp"), path.parent / ".env.tmp"):
        stale.write_text("old")
        stale.chmod(0o666)
    seen = []
    real_replace = envfile.os.replace

    def spy(src, dst):  # the mode of the new file before it takes the final name
        seen.append(stat.S_IMODE(envfile.os.stat(src).st_mode))
        real_replace(src, dst)

    monkeypatch.setattr(envfile.os, "replace", spy)
    envfile.ensure(path, TOPOLOGY)
    assert seen == [0o600]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
