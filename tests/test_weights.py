"""Weights resolution: embedded default, local folders, env var, and a clear error for hub ids offline; what names a
model to people (labels, the shipped config.json) names no folders of the machine."""

import hashlib
import json

import pytest

from base.errors import UserError
from base.paths import public
from demo.weights import DEFAULT_WEIGHTS, ENV_VAR, requested, resolve_weights, weights_label


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


def test_only_a_named_model_is_requested_and_labels_name_no_folders_above(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert requested() is None and weights_label() == "embedded"
    folder = tmp_path / "my-model"
    folder.mkdir()
    assert requested(folder) == str(folder) and weights_label(folder) == "my-model"
    assert weights_label("someone/some-model") == "someone/some-model"  # a Hub repo id is public already
    monkeypatch.setenv(ENV_VAR, str(folder))
    assert requested() == str(folder) and weights_label() == "my-model"


def test_the_embedded_weights_match_their_checksums_and_name_no_machine_paths():
    """SHA256SUMS (written with `sha256sum`, paths relative to weights/) covers what ships; config.json travels with
    the model, so it names folders by name alone (provenance, calibration source), and so do the graphs' metadata."""
    lines = (DEFAULT_WEIGHTS / "SHA256SUMS").read_text().splitlines()
    sums = dict(reversed(line.split("  ", 1)) for line in lines)
    assert "config.json" in sums
    for name, digest in sums.items():
        assert hashlib.sha256((DEFAULT_WEIGHTS / name).read_bytes()).hexdigest() == digest, name
    config = json.loads((DEFAULT_WEIGHTS / "config.json").read_text())
    assert public(config["provenance"]) == config["provenance"] and "/" not in config["calibration"]["source"]
    import onnx

    for graph in DEFAULT_WEIGHTS.glob("*.onnx"):  # the graphs' own metadata, which onnxruntime hands to anyone
        for prop in onnx.load(graph, load_external_data=False).metadata_props:
            assert public(prop.value) == prop.value, (graph.name, prop.key)


def test_public_text_keeps_names_and_drops_the_folders_above():
    assert public("heads export of /srv/app/weights/torch (model x)") == "heads export of torch (model x)"
    assert public("cannot read '/tmp/gradio/ab12/photo.jpg'.") == "cannot read 'photo.jpg'."
    assert public("see https://huggingface.co/a/b, 1/2 and a/b") == "see https://huggingface.co/a/b, 1/2 and a/b"
