"""The web app: few-shot talking heads in the browser (Gradio). Runs unchanged on Hugging Face Spaces.

Only the UI lives here: every `gr.*` call, and the mapping of widgets onto an `AnimateConfig`, which the same
`demo.pipeline.Pipeline` behind `heads animate` runs. Limits come from HEADS_* environment variables
(docs/app.md); host and port from Gradio's own GRADIO_SERVER_NAME / GRADIO_SERVER_PORT.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import gradio as gr

from base.errors import UserError
from base.paths import public
from demo.animate_config import AnimateConfig, LimitsConfig
from demo.example_media import DRIVING, PORTRAIT, make_examples
from demo.pipeline import Pipeline, Progress
from training.fewshot_config import default_steps  # torch-free: the one default of the step count

try:  # Hugging Face ZeroGPU Spaces lend a GPU only inside functions decorated with spaces.GPU
    import spaces

    gpu = spaces.GPU(duration=int(os.environ.get("HEADS_GPU_SECONDS", "120")))
except ImportError:

    def gpu(fn):
        return fn


log = logging.getLogger("heads.app")
CONCURRENCY = int(os.environ.get("HEADS_CONCURRENCY", "1"))  # animations at once; the rest wait in the queue
QUEUE_SIZE = int(os.environ.get("HEADS_QUEUE_SIZE", "16"))
KEEP_SECONDS = 3600  # results older than this are deleted
OUTPUTS = Path(tempfile.gettempdir()) / "heads-app"
STAGES = {"faces": "Finding faces", "personalizing": "Personalizing", "fine-tuning": "Fine-tuning",
          "landmarks": "Tracking the driving face", "rendering": "Rendering"}
CSS = "#result video { max-height: 512px; } .notes { font-size: 0.95em; }"


def _report(progress: gr.Progress):
    """Pipeline progress -> the browser's progress bar, with frames done / total and the time left."""

    def callback(p: Progress) -> None:
        eta = f", about {p.eta:.0f} s left" if p.eta is not None else ""
        unit = {"fine-tuning": "steps", "faces": "photos"}.get(p.stage, "frames")
        text = f"{STAGES.get(p.stage, p.stage)}: {p.done}/{p.total or '?'} {unit}{eta}"
        progress((p.done, p.total), desc=text, unit=unit)

    return callback


def _prune() -> None:
    """Drop earlier requests' results once they are old: the disk of a Space is small."""
    now = time.time()
    for folder in OUTPUTS.glob("run-*"):
        if now - folder.stat().st_mtime > KEEP_SECONDS:
            for file in folder.iterdir():
                file.unlink(missing_ok=True)
            folder.rmdir()


def _box(text: str | None) -> tuple[float, float, float, float] | None:
    """The face box as one optional value, "x0 y0 x1 y1" (spaces or commas), as `heads animate --box` takes it:
    one field on the page and one keyword in the API rather than four numbers that must be given together."""
    parts = (text or "").replace(",", " ").split()
    if not parts:
        return None
    try:
        values = tuple(float(v) for v in parts)
    except ValueError:
        values = ()
    if len(values) != 4:
        raise gr.Error(f"The face box is four numbers in pixels of the photo, x0 y0 x1 y1 (left top right bottom), "
                       f"e.g. 120 80 380 400; got {text!r}.", print_exception=False)
    return values  # type: ignore[return-value]


def _steps(personalization: str, photos) -> dict:
    """The steps slider follows the Personalization radio: shown with the default for the photos given when
    fine-tuning, hidden at 0 (instant) otherwise."""
    if personalization != "fine-tune":
        return gr.update(visible=False, value=0)
    return gr.update(visible=True, value=default_steps(len(photos or ()) or 1))


class Animator:
    """The Animate button's handler, holding what it runs on: made by `build`, never at import."""

    def __init__(self, pipeline: Pipeline, limits: LimitsConfig):
        self.pipeline, self.limits = pipeline, limits

    def __call__(self, driving, source=None, avatar=None, renderer="auto", finetune_steps=0, mode="relative",
                 expression=1.0, pose=1.0, smoothing=0.5, side_by_side=False, output="photo", watermark=True,
                 box=None, progress=gr.Progress()):  # noqa: B008
        """Animate photos (`source`) or a saved `avatar` with the motion of the `driving` video: the options of
        `heads animate`, by the same names (`box`: "x0 y0 x1 y1", or empty); returns (video, notes, avatar)."""
        # The parameter names are the API's keywords (gradio_client sees them): keep them those of AnimateConfig.
        if not driving:
            raise gr.Error("Add a driving video: upload a clip or record one with the webcam.")
        if not source and not avatar:
            raise gr.Error("Add one to 32 photos of the person (or a painting), or an avatar file saved earlier.")
        _prune()
        run = Path(tempfile.mkdtemp(prefix="run-", dir=OUTPUTS))
        try:
            config = AnimateConfig(
                driving=driving, source=tuple(source or ()), out=str(run / "animated.mp4"), avatar=avatar,
                save_avatar=str(run / "avatar.onnx") if renderer != "warp" else None, box=_box(box),
                renderer=renderer, finetune_steps=int(finetune_steps or 0), mode=mode, expression=expression,
                pose=pose, smoothing=smoothing, side_by_side=side_by_side, output=output, watermark=watermark,
                limits=self.limits, progress=False,
            )
            result = self.pipeline.run(config, _report(progress))
        except gr.Error:
            raise
        except (UserError, ValueError) as error:  # messages may name uploads by their server paths: names only
            raise gr.Error(public(str(error)), print_exception=False) from None
        except Exception as error:  # anything else is a bug: log it, tell the person, keep serving
            log.exception("animation failed")
            raise gr.Error(f"Something went wrong on the server ({type(error).__name__}: {public(str(error))}). "
                           "Please try again, perhaps with other files.") from None
        notices = [public(n) for n in result.notices]
        for notice in notices:
            gr.Warning(notice)
        notes = [f"**{result.frames} frames** at {result.fps:g} fps · {result.renderer} · "
                 f"{result.frames / max(result.seconds, 1e-9):.1f} frames/s"]
        if result.identity is not None:
            notes.append(f"**Identity:** {result.identity}")
        notes += [f"- {n}" for n in notices]
        if result.avatar is not None:
            notes.append("- The avatar file below is this person, ready to animate: upload it next time to skip "
                         "personalization.")
        # Plain values, not updates: an update would hand the API caller the server's path of the file, where a
        # value reaches it as a download. The avatar box's visibility follows in a UI-only event (`build`).
        return str(result.video), "\n\n".join(notes), str(result.avatar) if result.avatar else None


def build(pipeline: Pipeline | None = None, limits: LimitsConfig | None = None) -> gr.Blocks:
    """The page and its events. Loads the models (through the pipeline): `main` calls it, and tests may, with a
    pipeline of their own; importing this module builds nothing."""
    limits = limits or LimitsConfig.from_env()
    pipeline = pipeline or Pipeline(workdir=OUTPUTS / "work")
    neural = pipeline.model is not None
    with gr.Blocks(title="Few-shot talking heads", delete_cache=(KEEP_SECONDS, KEEP_SECONDS)) as app:
        gr.Markdown(
            "# Few-shot talking heads\n"
            "Animate a person from one to 32 photos (or a painting) with the head motion and expressions of a "
            "driving video — Zakharov et al., *Few-Shot Adversarial Learning of Realistic Neural Talking Head "
            "Models* (ICCV 2019). Every result is marked as synthetic in its file metadata; only animate people "
            f"who agreed to it.\n\n<small>{pipeline.status()}</small>"
        )
        with gr.Row():
            with gr.Column():
                photos = gr.File(label=f"Photos of one person (1–{limits.max_photos}) or a painting",
                                 file_count="multiple", file_types=["image"], elem_id="photos")
                with gr.Accordion("No face found? (paintings, drawings)", open=False):
                    box = gr.Textbox(label="Face box (x0 y0 x1 y1)", placeholder="e.g. 120 80 380 400",
                                     info="The face's box in pixels of the photo: left, top, right, bottom.",
                                     elem_id="box")
                avatar = gr.File(label="…or an avatar file (.onnx) saved earlier", file_types=[".onnx"],
                                 elem_id="avatar-in")
            with gr.Column():
                driving = gr.Video(label="Driving video (upload, or record with the webcam)",
                                   sources=["upload", "webcam"], elem_id="driving")
            with gr.Column():
                # The labels name the API's outputs (gradio_client lists them): video, notes, avatar.
                video = gr.Video(label="Video", interactive=False, autoplay=True, elem_id="result")
                notes = gr.Markdown(label="Notes", elem_classes=["notes"], elem_id="notes")
                avatar_out = gr.File(label="Avatar", interactive=False, visible=False, elem_id="avatar-out")
        with gr.Accordion("Settings", open=True):
            with gr.Row():
                # auto: what the model's own evaluation found best (demo.renderers.ModelFolder.default), said why.
                best, why = pipeline.model.default if neural else ("warp", "no neural model is installed")
                renderer = gr.Radio(
                    [(f"Best measured ({best})", "auto"), ("Neural generator", "neural"),
                     ("Classical warp (instant)", "warp")],
                    value="auto", label="Renderer", info=f"Best measured: {best}, because {why}.",
                )
                personalization = gr.Radio(
                    [("Instant (feed-forward)", "instant"), ("Fine-tune (slower, more faithful)", "fine-tune")],
                    value="instant", label="Personalization", interactive=pipeline.can_finetune,
                    info=None if pipeline.can_finetune else "Fine-tuning needs torch and the PyTorch model.",
                )
                # The steps alone carry the choice to the handler (0: instant), as `heads animate --finetune-steps`
                # does; the radio above is the page's way of setting them.
                steps = gr.Slider(0, 400, value=0, step=10, label="Fine-tuning steps", info="0: instant",
                                  visible=False)
                mode = gr.Radio([("Relative (keeps the face shape)", "relative"), ("Absolute", "absolute")],
                                value="relative", label="Motion transfer")
            with gr.Row():
                expression = gr.Slider(0, 2, value=1, step=0.05, label="Expression strength")
                pose = gr.Slider(0, 2, value=1, step=0.05, label="Head-motion strength")
                smoothing = gr.Slider(0, 1, value=0.5, step=0.05, label="Temporal smoothing")
            with gr.Row():
                side_by_side = gr.Checkbox(label="Side by side: driving | landmarks | result")
                output = gr.Radio([("Whole photo", "photo"), ("Face crop", "face")], value="photo", label="Output")
                watermark = gr.Checkbox(value=True, label="Visible 'synthetic' watermark")
        button = gr.Button("Animate", variant="primary", elem_id="animate")
        # Events that only move widgets stay off the API ("private"): programs get /animate alone.
        personalization.change(_steps, [personalization, photos], steps, api_visibility="private")
        photos.change(_steps, [personalization, photos], steps, api_visibility="private")
        gr.Examples([[[str(PORTRAIT)], str(DRIVING)]], inputs=[photos, driving],
                    label="Example (drawn by the project's own code)")
        button.click(
            gpu(Animator(pipeline, limits)),
            [driving, photos, avatar, renderer, steps, mode, expression, pose, smoothing, side_by_side, output,
             watermark, box],
            [video, notes, avatar_out],
            api_name="animate",
            concurrency_limit=CONCURRENCY,
        ).then(lambda file: gr.update(visible=file is not None), avatar_out, avatar_out, api_visibility="private")
    return app


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    OUTPUTS.mkdir(parents=True, exist_ok=True)
    if not (PORTRAIT.is_file() and DRIVING.is_file()):
        make_examples()
    limits = LimitsConfig.from_env()
    try:
        app = build(limits=limits)
    except UserError as error:  # e.g. HEADS_WEIGHTS names a model that is not there: say so, never serve without it
        print(f"app: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    app.queue(max_size=QUEUE_SIZE, default_concurrency_limit=CONCURRENCY)
    app.launch(theme=gr.themes.Soft(), css=CSS, max_file_size=f"{limits.max_upload_mb:g}mb",
               allowed_paths=[str(PORTRAIT.parent)])


if __name__ == "__main__":
    main()
