"""The web app: few-shot talking heads in the browser (Gradio). Runs unchanged on Hugging Face Spaces.

Only the UI lives here: every `gr.*` call, and the mapping of widgets onto an `AnimateConfig`, which the same
`demo.pipeline.Pipeline` behind `heads animate` runs. Limits come from HEADS_* environment variables
(docs/app.md); host and port from Gradio's own GRADIO_SERVER_NAME / GRADIO_SERVER_PORT.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import gradio as gr

from base.errors import UserError
from base.paths import public
from demo.animate_config import AnimateConfig, EditConfig, LimitsConfig
from demo.example_media import DRIVING, PORTRAIT, make_examples
from demo.live import LiveConfig, LiveSession, page_image
from demo.memory import release_free_memory, share_arenas
from demo.pipeline import Pipeline, Progress
from faces.motion import MAX_TURN
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
# The Renderer setting's name for each renderer (`heads animate --renderer`), also in what `auto` is said to pick.
RENDERERS = {"neural": "Neural generator", "mouth": "Warp + learned mouth", "warp": "Classical warp"}
LIVE_SESSIONS = int(os.environ.get("HEADS_LIVE_SESSIONS", "1"))  # webcams driving a portrait at once: a core each
LIVE_SECONDS = int(os.environ.get("HEADS_LIVE_SECONDS", "120"))  # one live stream's length, so no one holds it
# The webcam size the Live tab asks for. The camera frame only carries the face's landmarks (the portrait is what is
# rendered), and every pixel of it is JPEG-encoded by the page, uploaded and decoded by the server: at 320x240 the
# camera-to-screen median fell from about 180 ms (640x480) to 83-105 ms, with the landmarks of a face half as large as
# a selfie's as steady and the mouth opening r 0.986 against 640x480's (docs/app.md measures it).
LIVE_CAMERA = {"video": {"width": {"ideal": 320}, "height": {"ideal": 240}}}
# The Live tab's result: the frame's data: URL in an <img>, nothing before the first one.
LIVE_TEMPLATE = '${value ? `<img src="${value}" alt="The portrait, live" style="width: 100%">` : ""}'
LIVE_EVERY = 0.03  # seconds between the browser's looks for a frame to send (the server renders the newest)
OUTPUTS = Path(tempfile.gettempdir()) / "heads-app"
STAGES = {"faces": "Finding faces", "personalizing": "Personalizing", "fine-tuning": "Fine-tuning",
          "source": "Tracking the source video's face", "landmarks": "Tracking the driving face",
          "rendering": "Rendering"}
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


@contextlib.contextmanager
def _told(what: str):
    """Errors of a request as the person sees them: a `UserError` (or a config's ValueError) is its own sentence, with
    uploads named by their file names alone; anything else is a bug, logged, and told as such, and the app keeps
    serving. The memory the request freed goes back to the system, or the server's memory climbs (docs/app.md)."""
    try:
        yield
    except gr.Error:
        raise
    except (UserError, ValueError) as error:  # messages may name uploads by their server paths: names only
        raise gr.Error(public(str(error)), print_exception=False) from None
    except Exception as error:  # anything else is a bug: log it, tell the person, keep serving
        log.exception("%s failed", what)
        raise gr.Error(f"Something went wrong on the server ({type(error).__name__}: {public(str(error))}). "
                       "Please try again, perhaps with other files.") from None
    finally:
        release_free_memory()


class Animator:
    """The Animate button's handler, holding what it runs on: made by `build`, never at import."""

    def __init__(self, pipeline: Pipeline, limits: LimitsConfig):
        self.pipeline, self.limits = pipeline, limits

    def __call__(self, driving, source=None, avatar=None, renderer="auto", finetune_steps=0, mode="relative",
                 eyes_strength=1.0, mouth_strength=1.0, pose_strength=1.0, eyes="follow", mouth="follow", yaw=0.0,
                 pitch=0.0, roll=0.0, smoothing=0.5, side_by_side=False, output="photo", watermark=True, box=None,
                 audio="source", progress=gr.Progress()):  # noqa: B008
        """Animate photos (`source`), a saved `avatar` or a video of the person (`source`: one video; `audio`: whose
        audio the result carries) with the motion of the `driving` video: the options of `heads animate`, by the
        same names (`box`: "x0 y0 x1 y1", or empty); returns (video, notes, avatar)."""
        # The parameter names are the API's keywords (gradio_client sees them): keep them those of AnimateConfig.
        if not driving:
            raise gr.Error("Add a driving video: upload a clip or record one with the webcam.")
        if not source and not avatar:
            raise gr.Error("Add one to 32 photos of the person (or a painting), a video of them, or an avatar file "
                           "saved earlier.")
        _prune()
        run = Path(tempfile.mkdtemp(prefix="run-", dir=OUTPUTS))
        with _told("animation"):
            config = AnimateConfig(
                driving=driving, source=tuple(source or ()), out=str(run / "animated.mp4"), avatar=avatar,
                save_avatar=str(run / "avatar.onnx") if renderer in ("auto", "neural") else None, box=_box(box),
                renderer=renderer, finetune_steps=int(finetune_steps or 0), mode=mode, eyes_strength=eyes_strength,
                mouth_strength=mouth_strength, pose_strength=pose_strength, eyes=eyes, mouth=mouth, yaw=yaw,
                pitch=pitch, roll=roll, smoothing=smoothing, side_by_side=side_by_side, output=output,
                watermark=watermark, audio=audio, limits=self.limits, progress=False,
            )
            result = self.pipeline.run(config, _report(progress))
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


class Editor:
    """The Edit button's handler (the "Edit a still" tab): one photo, an optional driving image or clip (its first
    frame), the controls; the edited photo as a PNG. The warp does it on the CPU, so no GPU is asked for."""

    def __init__(self, pipeline: Pipeline, limits: LimitsConfig):
        self.pipeline, self.limits = pipeline, limits

    def __call__(self, source, driving=None, eyes_strength=1.0, mouth_strength=1.0, eyes="follow", mouth="follow",
                 yaw=0.0, pitch=0.0, roll=0.0, watermark=True, box=None):
        """Edit the photo `source`: the options of `heads edit`, by the same names; returns the edited PNG."""
        # The parameter names are the API's keywords: keep them those of EditConfig.
        if not source:
            raise gr.Error("Add a photo of the person (or a painting) to edit.")
        _prune()
        run = Path(tempfile.mkdtemp(prefix="run-", dir=OUTPUTS))
        with _told("edit"):
            config = EditConfig(
                source=source, driving=driving or None, out=str(run / "edited.png"), box=_box(box),
                eyes_strength=eyes_strength, mouth_strength=mouth_strength, eyes=eyes, mouth=mouth, yaw=yaw,
                pitch=pitch, roll=roll, watermark=watermark, limits=self.limits,
            )
            edited = self.pipeline.edit(config)
        for notice in edited.notices:
            gr.Warning(public(notice))
        return str(edited.image)


def _best_measured(pipeline: Pipeline) -> tuple[str, str]:
    """What `auto` picks in a word (the renderer, or "by photo count"), and the sentence the Renderer setting shows
    under it: why, where one renderer is best for any number of photos, else which for how many ("mouth with 1-2
    photos, warp with 3-32 photos")."""
    if pipeline.model is None:
        return "warp", "Best measured: warp, because no neural model is installed."
    runs = pipeline.model.defaults()
    if len(runs) == 1:
        best, why = pipeline.model.default()
        return best, f"Best measured: {best}, because {why}."
    each = ", ".join(f"{RENDERERS[renderer].lower()} with {first}{'' if first == last else f'-{last}'} photo"
                     f"{'s' * (last > 1)}" for first, last, renderer in runs)
    return "by photo count", f"Best measured on the test split: {each} (the notes say why once the photos are given)."


class Live:
    """The Live tab's stream handler: each webcam frame the browser sends -> the portrait moved as the face in it
    moved since the stream's first frame (`demo.live`). Gradio runs one job per browser session and hands it the
    newest frame only, overwriting a frame that waits, so a slow server shows fewer frames rather than falling
    behind. The session lives in the page's `gr.State`, made again when the photos change."""

    def __init__(self, pipeline: Pipeline, limits: LimitsConfig):
        self.pipeline, self.limits = pipeline, limits

    def __call__(self, frame, source, watermark, state):
        if frame is None:
            return gr.skip(), gr.skip(), state
        if not source:
            raise gr.Error("Add a photo of the person (or a painting) first, then start the webcam.",
                           print_exception=False)
        key = (tuple(source), bool(watermark))
        if state is None or state[0] != key:
            with _told("live mode"):  # personalization: once per person (and cached by the pipeline)
                config = LiveConfig(source=key[0], watermark=key[1], limits=self.limits)
                persona, notices = self.pipeline.personalize(config.personalization())
                state = (key, LiveSession(persona, config, self.pipeline.detector), notices)
        _, session, notices = state
        shown = session.step(frame)
        face = "" if shown.found else " · **no face in view**: showing the last frame"
        notes = [f"{session.frames_per_second:.1f} frames/s · {1e3 * shown.total:.0f} ms a frame · "
                 f"{session.persona.description}{face}", *(public(n) for n in notices)]
        return page_image(shown.image), "\n\n".join(notes), state


def _controls(pose: bool) -> list:
    """The retargeting controls' widgets (`faces.motion.Controls`, with its defaults), in rows, in the order of the
    handlers' parameters: the strengths (and the head-motion strength where there is a driver's head motion to
    scale), the held eyes and lips, the head-turn offsets."""
    holds = [("Follow the driver", "follow"), ("Held open", "open"), ("Held closed", "closed")]
    with gr.Row():
        widgets = [gr.Slider(0, 2, value=1, step=0.05, label="Eyes strength", info="Blinks, brows and gaze"),
                   gr.Slider(0, 2, value=1, step=0.05, label="Mouth strength", info="Lips and jaw")]
        if pose:
            widgets.append(gr.Slider(0, 2, value=1, step=0.05, label="Head-motion strength"))
    with gr.Row():
        widgets += [gr.Radio(holds, value="follow", label="Eyes"), gr.Radio(holds, value="follow", label="Mouth")]
    with gr.Row():
        for name, info in (("Yaw", "turn; + towards the image's right"), ("Pitch", "nod; + up"),
                           ("Roll", "tilt; + clockwise")):
            widgets.append(gr.Slider(-MAX_TURN, MAX_TURN, value=0, step=1, label=f"{name} added (degrees)",
                                     info=info))
    return widgets


def build(pipeline: Pipeline | None = None, limits: LimitsConfig | None = None) -> gr.Blocks:
    """The page and its events. Loads the models (through the pipeline): `main` calls it, and tests may, with a
    pipeline of their own; importing this module builds nothing."""
    limits = limits or LimitsConfig.from_env()
    pipeline = pipeline or Pipeline(workdir=OUTPUTS / "work")
    with gr.Blocks(title="Few-shot talking heads", delete_cache=(KEEP_SECONDS, KEEP_SECONDS)) as app:
        gr.Markdown(
            "# Few-shot talking heads\n"
            "Animate a person from one to 32 photos (or a painting) with the head motion and expressions of a "
            "driving video — Zakharov et al., *Few-Shot Adversarial Learning of Realistic Neural Talking Head "
            "Models* (ICCV 2019). Every result is marked as synthetic in its file metadata; only animate people "
            f"who agreed to it.\n\n<small>{pipeline.status()}</small>"
        )
        with gr.Tab("Animate"):
            with gr.Row():
                with gr.Column():
                    # A video here is video-to-video (AnimateConfig.source_video): one upload, one `source` keyword.
                    photos = gr.File(label=f"Photos of one person (1–{limits.max_photos}) or a painting, or one "
                                     "video of them (video-to-video)", file_count="multiple",
                                     file_types=["image", "video"], elem_id="photos")
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
                    # auto: what the model's own evaluation found best for the number of photos given
                    # (demo.renderers.ModelFolder.default); the notes say why once photos are given.
                    best, why = _best_measured(pipeline)
                    renderer = gr.Radio(
                        [(f"Best measured ({best})", "auto"), (RENDERERS["neural"], "neural"),
                         *([(RENDERERS["mouth"], "mouth")] if pipeline.mouth is not None else []),
                         (f"{RENDERERS['warp']} (instant)", "warp")],
                        value="auto", label="Renderer", info=why,
                    )
                    personalization = gr.Radio(
                        [("Instant (feed-forward)", "instant"),
                         ("Fine-tune (up to a minute; a little closer to the person with several photos)",
                          "fine-tune")],
                        value="instant", label="Personalization", interactive=pipeline.can_finetune,
                        info=None if pipeline.can_finetune else "Fine-tuning needs torch and the PyTorch model.",
                    )
                    # The steps alone carry the choice to the handler (0: instant), as `heads animate --finetune-steps`
                    # does; the radio above is the page's way of setting them.
                    steps = gr.Slider(0, 400, value=0, step=10, label="Fine-tuning steps (at most)",
                                      info="0: instant; a held-out photo stops it sooner when it stops helping",
                                      visible=False)
                    mode = gr.Radio([("Relative (keeps the face shape)", "relative"), ("Absolute", "absolute")],
                                    value="relative", label="Motion transfer")
                controls = _controls(pose=True)
                with gr.Row():
                    smoothing = gr.Slider(0, 1, value=0.5, step=0.05, label="Temporal smoothing")
                with gr.Row():
                    side_by_side = gr.Checkbox(label="Side by side: driving | landmarks | result")
                    output = gr.Radio([("Whole photo", "photo"), ("Face crop", "face")], value="photo", label="Output")
                    watermark = gr.Checkbox(value=True, label="Visible 'synthetic' watermark")
                    audio = gr.Radio([("The source video's", "source"), ("The driving video's", "driver")],
                                     value="source", label="Audio (video-to-video)",
                                     info="With photos, the driving video's audio is used.")
            button = gr.Button("Animate", variant="primary", elem_id="animate")
            # Events that only move widgets stay off the API ("private"): programs get /animate and /edit.
            personalization.change(_steps, [personalization, photos], steps, api_visibility="private")
            photos.change(_steps, [personalization, photos], steps, api_visibility="private")
            gr.Examples([[[str(PORTRAIT)], str(DRIVING)]], inputs=[photos, driving],
                        label="Example (drawn by the project's own code)")
            button.click(
                gpu(Animator(pipeline, limits)),
                [driving, photos, avatar, renderer, steps, mode, *controls, smoothing, side_by_side, output, watermark,
                 box, audio],
                [video, notes, avatar_out],
                api_name="animate",
                concurrency_limit=CONCURRENCY,
            ).then(lambda file: gr.update(visible=file is not None), avatar_out, avatar_out, api_visibility="private")
        with gr.Tab("Edit a still"):
            gr.Markdown("One photo with the expression of one driving frame (an image, or a clip's first frame), "
                        "or with the controls alone: eyes and mouth held open or closed, the head turned.")
            with gr.Row():
                with gr.Column():
                    # image_mode None: the upload itself reaches the pipeline, which reads EXIF rotation and alpha
                    # as it does for the Animate tab's photos (Gradio's RGB conversion would blacken transparency).
                    still = gr.Image(label="Photo (or a painting)", type="filepath", image_mode=None,
                                     sources=["upload"], elem_id="still")
                    with gr.Accordion("No face found? (paintings, drawings)", open=False):
                        still_box = gr.Textbox(label="Face box (x0 y0 x1 y1)", placeholder="e.g. 120 80 380 400",
                                               elem_id="still-box")
                with gr.Column():
                    frame = gr.File(label="Driving frame: an image, or a clip (its first frame); optional",
                                    file_types=["image", "video"], elem_id="frame")
                with gr.Column():
                    # The label names the API's output: image.
                    edited = gr.Image(label="Image", type="filepath", format="png", interactive=False,
                                      elem_id="edited")
            with gr.Accordion("Controls", open=True):
                still_controls = _controls(pose=False)
                still_watermark = gr.Checkbox(value=True, label="Visible 'synthetic' watermark")
            gr.Button("Edit", variant="primary", elem_id="edit").click(
                Editor(pipeline, limits), [still, frame, *still_controls, still_watermark, still_box], edited,
                api_name="edit", concurrency_limit=CONCURRENCY,
            )
        with gr.Tab("Live"):
            gr.Markdown("The portrait follows your face in real time. Add a photo, then start the webcam: its first "
                        f"frame is taken to show the photo's expression (a new start, or a pause, starts over). "
                        f"Frames render as fast as the server can, dropping the ones it cannot; a stream lasts "
                        f"{LIVE_SECONDS} s.")
            with gr.Row():
                with gr.Column():
                    live_photos = gr.File(label="Photos of one person or a painting", file_count="multiple",
                                          file_types=["image"], elem_id="live-photos")
                    live_watermark = gr.Checkbox(value=True, label="Visible 'synthetic' watermark")
                with gr.Column():
                    camera = gr.Image(label="Webcam", sources=["webcam"], streaming=True, type="numpy",
                                      webcam_options=gr.WebcamOptions(constraints=LIVE_CAMERA),
                                      elem_id="live-camera")
                with gr.Column():
                    # The frame inside the event's message (`demo.live.page_image`), not a file the page fetches after.
                    live = gr.HTML(label="Live", show_label=True, container=True, elem_id="live-result",
                                   html_template=LIVE_TEMPLATE)
                    live_notes = gr.Markdown(elem_classes=["notes"], elem_id="live-notes")
            live_state = gr.State(None, time_to_live=KEEP_SECONDS)
            # UI-only, as the page's other widget events: programs have /animate and /edit.
            camera.stream(Live(pipeline, limits), [camera, live_photos, live_watermark, live_state],
                          [live, live_notes, live_state], stream_every=LIVE_EVERY, time_limit=LIVE_SECONDS,
                          concurrency_limit=LIVE_SESSIONS, show_progress="hidden", api_visibility="private")
    return app


def main() -> None:
    share_arenas()  # first, before the models load: frames freed go back to the system (docs/app.md)
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
