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
