"""Weights resolution: embedded default, local folders, env var, and a clear error for hub ids offline."""

import pytest

from base.errors import UserError
from demo.weights import ENV_VAR, resolve_weights


def test_local_folder_and_env_var(tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text("{}")
    assert resolve_weights(tmp_path) == tmp_path
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert resolve_weights() == tmp_path


def test_folder_without_model_is_refused(tmp_path):
    with pytest.raises(UserError, match="config.json is missing"):
        resolve_weights(tmp_path)


def test_unknown_spec_is_refused(tmp_path):
    with pytest.raises(UserError, match="neither a folder nor"):
        resolve_weights(str(tmp_path / "nope" / "deeper"))


def test_hub_id_offline_gives_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(UserError, match="--weights DIR"):
        resolve_weights("someone/some-talking-head-model")
