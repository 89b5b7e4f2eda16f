"""app.py as Spaces and tests import it: importing builds nothing, `build` makes the page on a given pipeline; and
as programs call it: the README's gradio_client example run against a launched app, one keyword endpoint."""

from __future__ import annotations

import importlib
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from demo import weights
from demo.animate_config import LimitsConfig
from demo.pipeline import Pipeline

ROOT = Path(__file__).resolve().parents[1]
# The keywords of /animate: `heads animate`'s options (AnimateConfig's fields), in the event's order; of /edit,
# `heads edit`'s (EditConfig's).
API_PARAMETERS = ["driving", "source", "avatar", "renderer", "finetune_steps", "mode", "eyes_strength",
                  "mouth_strength", "pose_strength", "eyes", "mouth", "yaw", "pitch", "roll", "smoothing",
                  "side_by_side", "output", "watermark", "box", "audio"]
EDIT_PARAMETERS = ["source", "driving", "eyes_strength", "mouth_strength", "eyes", "mouth", "yaw", "pitch", "roll",
                   "watermark", "box"]


def _fresh_app():
    sys.modules.pop("app", None)
    sys.path.insert(0, str(ROOT))
    try:
        return importlib.import_module("app")
    finally:
        sys.path.remove(str(ROOT))


def test_importing_the_app_builds_no_pipeline(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("app.py built a pipeline when imported")

    monkeypatch.setattr(Pipeline, "__init__", refuse)
    app = _fresh_app()
    assert callable(app.build) and callable(app.main)


@pytest.mark.slow
def test_build_uses_the_given_pipeline_and_limits(tmp_path):
    app = _fresh_app()
    pipeline = _warp_only(tmp_path)
    blocks = app.build(pipeline, LimitsConfig(max_photos=3))
    names = [fn.api_name for fn in blocks.fns.values()]
    assert "animate" in names and "edit" in names
    labels = [getattr(block, "label", None) or "" for block in blocks.blocks.values()]
    assert any("(1–3)" in label for label in labels)  # the photo limit on the page is the one passed in


def _warp_only(tmp_path) -> Pipeline:
    """A pipeline as on a clone without weights/: the embedded default missing, no model named, the warp renderer."""
    mp = pytest.MonkeyPatch()
    mp.setattr(weights, "DEFAULT_WEIGHTS", tmp_path / "no-weights")
    mp.delenv(weights.ENV_VAR, raising=False)
    try:
        return Pipeline(workdir=tmp_path / "work")
    finally:
        mp.undo()


def test_the_face_box_is_one_optional_value():
    app = _fresh_app()
    assert app._box("") is None and app._box(None) is None
    assert app._box("10 20, 110 140") == (10.0, 20.0, 110.0, 140.0)
    for bad in ("10 20 30", "a b c d"):
        with pytest.raises(app.gr.Error, match="four numbers"):
            app._box(bad)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _readme_example() -> str:
    """The README's Python block that calls the app through gradio_client."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    example = next(b for b in blocks if "gradio_client" in b)
    assert len(example.strip().splitlines()) <= 6  # five lines of calls, and the import
    return example


@pytest.mark.slow
def test_the_readme_api_example_against_a_launched_app(tmp_path, monkeypatch, capsys):
    """Two endpoints: /animate, with `heads animate`'s option names as keywords (only `driving` required) and named
    outputs; the README's example, run as written (only the port differs), gets a video, notes and an avatar file,
    none of which names a path of the server. And /edit, with `heads edit`'s (only `source` required): the example
    portrait with its mouth held open comes back as a PNG of its size."""
    import onnx
    from gradio_client import Client, handle_file
    from PIL import Image

    from demo.example_media import PORTRAIT
    from faces.video import probe

    monkeypatch.delenv(weights.ENV_VAR, raising=False)
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    app = _fresh_app()
    monkeypatch.setattr(app, "OUTPUTS", tmp_path / "outputs")
    (tmp_path / "outputs").mkdir()
    pipeline = Pipeline(device="cpu", workdir=tmp_path / "work")  # the embedded model: neural, with an avatar file
    blocks = app.build(pipeline, LimitsConfig(max_frames=25))  # one second of the example clip
    port = _free_port()
    blocks.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        api = Client(url, verbose=False).view_api(print_info=False, return_format="dict")
        assert list(api["named_endpoints"]) == ["/animate", "/edit"] and not api["unnamed_endpoints"]
        endpoint = api["named_endpoints"]["/animate"]
        assert [p["parameter_name"] for p in endpoint["parameters"]] == API_PARAMETERS
        assert [p["parameter_name"] for p in endpoint["parameters"] if not p["parameter_has_default"]] == ["driving"]
        assert [r["label"] for r in endpoint["returns"]] == ["Video", "Notes", "Avatar"]
        edit = api["named_endpoints"]["/edit"]
        assert [p["parameter_name"] for p in edit["parameters"]] == EDIT_PARAMETERS
        assert [p["parameter_name"] for p in edit["parameters"] if not p["parameter_has_default"]] == ["source"]
        assert [r["label"] for r in edit["returns"]] == ["Image"]
        edited = Client(url, verbose=False).predict(source=handle_file(str(PORTRAIT)), mouth="open", api_name="/edit")
        with Image.open(edited) as png, Image.open(PORTRAIT) as portrait:
            assert png.format == "PNG" and png.size == portrait.size

        monkeypatch.chdir(ROOT)
        names: dict = {}
        exec(_readme_example().replace("http://127.0.0.1:7860/", url), names)  # noqa: S102
        video, notes, avatar = names["video"], names["notes"], names["avatar"]
        assert probe(video).frames == 25 and probe(video).has_audio
        # The default renderer, auto, names what it picked and why (the model folder's verdict).
        assert "25 frames" in notes and "Renderer: " in notes and notes in capsys.readouterr().out
        texts = [notes, pipeline.status()]
        if "Renderer: neural" not in notes:  # what auto picks for a model whose evaluation did not favour it
            assert avatar is None  # the warp (its mouth refined or not) has no generator to save
        else:
            texts.append({p.key: p.value for p in onnx.load(avatar).metadata_props}["provenance"])
        for text in texts:
            assert str(ROOT) not in text and not re.search(r"(^|\s)/\w", text), text
    finally:
        blocks.close()


def test_a_named_model_that_is_missing_fails_loudly(tmp_path, monkeypatch):
    """--weights or $HEADS_WEIGHTS naming nothing is an error, never the warp in its place; only the embedded
    default may be missing quietly."""
    from base.errors import UserError

    with pytest.raises(UserError, match="weights not found"):
        Pipeline(weights=str(tmp_path / "nonexistent"))
    monkeypatch.setenv(weights.ENV_VAR, str(tmp_path / "nonexistent"))
    with pytest.raises(UserError, match="weights not found"):
        Pipeline()
    monkeypatch.delenv(weights.ENV_VAR)
    pipeline = _warp_only(tmp_path)
    assert pipeline.model is None and str(tmp_path) not in pipeline.status()


@pytest.mark.slow
def test_the_app_refuses_to_start_on_a_missing_named_model(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HEADS_WEIGHTS": str(tmp_path / "nonexistent"), "GRADIO_ANALYTICS_ENABLED": "False",
           "OMP_NUM_THREADS": "1", "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and lines[-1].startswith("app: error: weights not found"), done.stderr
    assert "Traceback" not in done.stderr
