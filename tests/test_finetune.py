"""Few-shot personalization: feed-forward avatars, fine-tuning, the avatar folder, and `heads finetune`."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from base.errors import ConfigError
from faces.config import DetectorConfig
from faces.detect import load_detector
from faces.image_io import load_image
from heads.cli import main
from training.avatar import Avatar, model_id
from training.checkpoint import save_checkpoint
from training.config import LossConfig, ModelConfig
from training.data import SyntheticEpisodes, to_tensor, to_uint8
from training.fewshot_config import FinetuneConfig, FinetuneSettings, default_steps
from training.finetune import embed, load_networks, load_sources, personalize, render
from training.models import Networks

# The paper's fine-tuning (all of G, against D, no held-out photo) with pixel L1 as L_CNT and a quicker G: a tiny
# model learns visibly within a few dozen steps, in seconds.
FAST = FinetuneSettings(train="all", adversarial=True, holdout=0, batch=4, lr_g=1e-3,
                        loss=LossConfig(perceptual=(), l1=1.0))
# The tiny preset with self-attention at 16/32 px instead of 32/64: the same networks, a fraction of the time.
TINY = replace(ModelConfig.tiny(), attention_down=16, attention_up=32)
PHOTOS = ("MakeItTalk/examples/anne.jpg", "MakeItTalk/examples/angelina.jpg")


def person(video: int, shots: int, resolution: int = 64) -> dict[str, np.ndarray]:
    episode = SyntheticEpisodes(4, resolution, shots - 1, seed=3)[video]
    return {
        "frames": to_uint8(episode["frames"]),
        "landmark_images": to_uint8(episode["landmarks"]),
        "points": episode["points"].double().numpy(),
    }


@pytest.fixture(scope="module")
def networks() -> Networks:
    torch.manual_seed(0)
    return Networks.build(TINY, num_videos=4)


def state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_feed_forward_avatar_is_the_projected_mean_embedding(networks):
    p = person(0, 4)
    avatar = personalize(networks, p["frames"], p["landmark_images"])
    e = embed(networks, to_tensor(p["frames"]), to_tensor(p["landmark_images"]))
    singles = [embed(networks, to_tensor(p["frames"][i : i + 1]), to_tensor(p["landmark_images"][i : i + 1]))
               for i in range(4)]
    torch.testing.assert_close(e, torch.cat(singles).mean(0, keepdim=True))  # ê_NEW is the mean over the T
    torch.testing.assert_close(avatar.psi, networks.G.psi(e))
    assert avatar.psi.shape == (1, networks.G.psi_size) and avatar.generator is None and not avatar.finetuned
    assert avatar.info["T"] == 4 and avatar.info["steps"] == 0
    out = render(networks, avatar, p["landmark_images"])
    assert out.shape == p["frames"].shape and out.dtype == np.uint8


def test_finetuning_reconstructs_the_person_and_leaves_the_model_alone(networks):
    p, other = person(0, 4), person(1, 4)
    before = {name: state(m) for name, m in networks.modules().items()}
    ff = personalize(networks, p["frames"], p["landmark_images"])
    ft = personalize(networks, p["frames"], p["landmark_images"], settings=replace(FAST, steps=60))
    for name, m in networks.modules().items():  # the meta-learned model is shared by every avatar: untouched
        for key, value in m.state_dict().items():
            torch.testing.assert_close(value, before[name][key], msg=f"{name}.{key} changed")

    def error(avatar: Avatar, target: dict) -> float:
        return float(np.abs(render(networks, avatar, p["landmark_images"]).astype(float) - target["frames"]).mean())

    assert error(ft, p) < 0.5 * error(ff, p)  # reconstruction error on the T frames falls
    assert error(ft, p) < error(ft, other)  # and the output is this person, not a generic face
    assert ft.finetuned and ft.info["steps"] == 60 and set(ft.info["final_losses"]) >= {"cnt", "adv", "fm", "dsc"}
    assert not torch.equal(ft.psi, ff.psi)
    assert any(not torch.equal(v, networks.G.state_dict()[k]) for k, v in ft.generator.items())


def test_psi_only_fine_tuning_without_d_trains_psi_and_nothing_else(networks):
    """--tune.train psi --tune.no-adversarial: ψ′ moves and lowers the error on the T frames; G is the model's own
    (the avatar carries no generator), and no D takes part (a model without D.safetensors can fine-tune)."""
    p = person(0, 4)
    ff = personalize(networks, p["frames"], p["landmark_images"])
    settings = replace(FAST, steps=40, train="psi", adversarial=False, lr_g=1e-2)
    no_d = Networks(networks.cfg, networks.E, networks.G, None)
    ft = personalize(no_d, p["frames"], p["landmark_images"], settings=settings)
    assert ft.generator is None and not torch.equal(ft.psi, ff.psi)
    assert set(ft.info["final_losses"]) == {"cnt", "l1"}

    def error(avatar: Avatar) -> float:
        return float(np.abs(render(networks, avatar, p["landmark_images"]).astype(float) - p["frames"]).mean())

    assert error(ft) < error(ff)


@pytest.mark.parametrize("shots", [1, 4])
def test_held_out_photos_choose_the_step_and_keep_feed_forward_when_nothing_helps(networks, shots, monkeypatch):
    """With --tune.holdout, the held-out photos' error is measured every check_every steps (from step 0, the
    feed-forward avatar); the best state is kept and training stops after `patience` checks without a new best.
    When every step is worse than step 0 (here: a held-out error made to rise), the feed-forward avatar comes back,
    and the summary says so."""
    from training.finetune import MIN_GAIN, FineTuner, holdout_summary

    p = person(0, shots)
    settings = replace(FAST, steps=42, holdout=1, check_every=5, patience=2)
    ft = personalize(networks, p["frames"], p["landmark_images"], settings=settings, points=p["points"])
    held = ft.info["holdout"]
    assert held["mirrored"] == (shots == 1) and held["photos"] == 1
    steps = [step for step, _ in held["checks"]]
    regular = [step for step in steps if step % 5 == 0]
    assert steps[0] == 0 and regular == list(range(0, regular[-1] + 1, 5))
    errors = {step: error for step, error in held["checks"]}
    assert errors[held["best_step"]] == held["error_after"] <= min(errors.values()) * (1 + MIN_GAIN)
    ran_out = ft.info["steps_run"] == 42 and steps[-2:] == [40, 42]  # 42 is no multiple of 5: measured at the end
    assert ran_out or (ft.info["steps_run"] == steps[-1] and steps[-1] - held["best_step"] == 2 * 5)  # patience
    assert f"{ft.info['steps_run']} steps run" in holdout_summary(ft.info)

    rising = iter(np.arange(1.0, 2.0, 0.1))
    monkeypatch.setattr(FineTuner, "error", lambda self, *args: float(next(rising)))
    worse = personalize(networks, p["frames"], p["landmark_images"], settings=settings, points=p["points"])
    assert [step for step, _ in worse.info["holdout"]["checks"]] == [0, 5, 10]  # stopped after 2 stale checks
    assert worse.info["holdout"]["best_step"] == 0 and worse.generator is None
    torch.testing.assert_close(worse.psi, personalize(networks, p["frames"], p["landmark_images"]).psi)
    assert "feed-forward avatar is used" in holdout_summary(worse.info)


def test_psi_only_fine_tuning_leaves_g_frozen_and_reuses_its_encoder_features(networks, monkeypatch):
    """--tune.train psi: G stays the shared model's, in eval mode (no spectral-norm power iteration moves it), and
    the encoder's features, which do not depend on ψ′, are computed once and give the frames G computes whole. With
    one photo to train on, a step takes it once instead of drawing a batch of copies of it."""
    from training.finetune import FineTuner
    from training.phases import generator_input

    p = person(1, 3)
    before = state(networks.G)
    settings = replace(FAST, steps=6, train="psi")
    e = embed(networks, to_tensor(p["frames"]), to_tensor(p["landmark_images"]))
    tuner = FineTuner(networks, e, settings)
    assert not tuner.G.training and tuner.generator is None
    g_in = generator_input(to_tensor(p["landmark_images"]), None)
    encoded = tuner.encode(g_in)
    with torch.no_grad():
        torch.testing.assert_close(tuner.G.render(g_in, tuner.psi, encoded=encoded), tuner.G.render(g_in, tuner.psi))
    for step in range(3):
        tuner.step(to_tensor(p["frames"]), to_tensor(p["landmark_images"]), g_in, step, encoded=encoded)
    assert all(torch.equal(v, tuner.G.state_dict()[k]) for k, v in before.items() if not k.startswith("P."))
    with torch.no_grad():
        assert not torch.equal(tuner.psi, networks.G.psi(e))  # ψ′ alone moved
    assert all(torch.equal(v, networks.G.state_dict()[k]) for k, v in before.items())  # the shared G untouched

    seen: list[torch.Tensor] = []
    step = FineTuner.step
    monkeypatch.setattr(FineTuner, "step", lambda self, x, *a, **k: seen.append(x) or step(self, x, *a, **k))
    one = person(1, 1)
    avatar = personalize(networks, one["frames"], one["landmark_images"], settings=replace(settings, holdout=1),
                         points=one["points"])
    assert [len(x) for x in seen] == [1] * 6 and avatar.info["steps_run"] == 6 and avatar.generator is None
    # With one photo, G trains on its mirror image and small crops of it, one a step (the photo itself, re-made
    # from the mirror, is held out).
    from training.finetune import MIRROR_VIEWS, _split

    train, held = _split(one["frames"], one["landmark_images"], one["points"], 1)
    assert len(train.frames) == len(MIRROR_VIEWS) and train.per_step == 1 and held.frames is one["frames"]
    np.testing.assert_array_equal(train.frames[0], one["frames"][0, :, ::-1])
    views = to_tensor(train.frames)
    assert all(any(torch.equal(x[0], v) for v in views) for x in seen)
    assert avatar.info["holdout"]["mirrored"]


def test_a_crop_view_moves_the_landmarks_with_the_pixels():
    """The crops of a lone photo that fine-tuning trains on keep each landmark on the pixel it marked: a bright dot
    at a landmark lands where the view's landmark says."""
    from training.finetune import _view

    size = 64
    image = np.zeros((size, size, 3), np.uint8)
    points = np.array([[20.0, 30.0], [40.0, 24.0]])
    for x, y in points.astype(int):
        image[y - 1 : y + 2, x - 1 : x + 2] = 255
    for dx, dy, zoom in ((0.05, -0.03, 1.0), (0.0, 0.0, 1.1), (-0.04, 0.02, 1.06)):
        view, moved = _view(image, points, dx, dy, zoom)
        assert view.shape == image.shape and not np.array_equal(moved, points)
        for x, y in moved:
            assert view[int(round(y)), int(round(x))].min() > 128
    same, kept = _view(image, points, 0.0, 0.0, 1.0)
    assert same is image and kept is points


def test_finetuning_is_seeded(networks):
    """The default recipe with a (random) perceptual network in L_CNT, as fine-tuning runs by default; one of the
    two training photos (the third is held out) drawn per step, so that the seed has a choice to make."""
    p = person(2, 3)
    settings = FinetuneSettings(batch=1, loss=LossConfig(perceptual=("dlib",), random_perceptual=True))
    calls: list[tuple[int, int]] = []
    a = personalize(networks, p["frames"], p["landmark_images"], settings=replace(settings, steps=2),
                    on_step=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 2), (2, 2)]  # the app's fine-tuning progress bar counts real steps
    b = personalize(networks, p["frames"], p["landmark_images"], settings=replace(settings, steps=2))
    torch.testing.assert_close(a.psi, b.psi, rtol=0, atol=0)
    c = personalize(networks, p["frames"], p["landmark_images"], settings=replace(settings, steps=2, seed=1))
    assert not torch.equal(a.psi, c.psi)


def test_avatar_folder_round_trip(networks, tmp_path):
    p = person(0, 2)
    for steps in (0, 2):
        avatar = personalize(networks, p["frames"], p["landmark_images"], settings=replace(FAST, steps=steps))
        loaded = Avatar.load(avatar.save(tmp_path / f"avatar-{steps}"))
        info = json.loads((tmp_path / f"avatar-{steps}" / "avatar.json").read_text())
        assert info == loaded.info == avatar.info
        assert info["model_id"] == model_id(networks) and info["T"] == 2 and info["steps"] == steps
        assert info["source_hashes"] == [hashlib.sha256(f.tobytes()).hexdigest() for f in p["frames"]]
        assert info["settings"]["steps"] == steps and info["model"]["resolution"] == 64
        torch.testing.assert_close(loaded.psi, avatar.psi)
        assert (loaded.generator is None) == (steps == 0)
        np.testing.assert_array_equal(render(networks, loaded, p["landmark_images"]),
                                      render(networks, avatar, p["landmark_images"]))
    with pytest.raises(ValueError, match="made with model"):
        render(Networks.build(TINY), loaded, p["landmark_images"])
    with pytest.raises(FileNotFoundError):
        Avatar.load(tmp_path)


def test_warp_guided_model_personalizes_from_points(tmp_path):
    torch.manual_seed(0)
    guided = Networks.build(replace(TINY, guidance="warp"))
    p = person(0, 3)
    with pytest.raises(ValueError, match="landmarks"):
        personalize(guided, p["frames"], p["landmark_images"])
    for steps in (0, 2):
        avatar = personalize(guided, p["frames"], None, settings=replace(FAST, steps=steps), points=p["points"])
        assert avatar.sources["source_frames"].shape == (3, 64, 64, 3)
        loaded = Avatar.load(avatar.save(tmp_path / "guided"))
        out = render(guided, loaded, p["landmark_images"], p["points"])
        assert out.shape == (3, 64, 64, 3)


def test_load_networks_from_a_run_directory_prefers_ema(networks, tmp_path):
    fresh = Networks.build(TINY)
    ema = {"E_ema": fresh.E, "G_ema": fresh.G}
    save_checkpoint(tmp_path, 7, {**networks.modules(), **ema}, networks.metadata(), {"step": 7}, keep=2)
    (tmp_path / "config.json").write_text("{}")  # a run directory holds its TrainConfig beside the checkpoints
    loaded = load_networks(tmp_path)
    torch.testing.assert_close(loaded.G.state_dict(), ema["G_ema"].state_dict())
    torch.testing.assert_close(loaded.D.state_dict(), networks.D.state_dict())
    networks.save_pretrained(tmp_path / "release")
    torch.testing.assert_close(load_networks(tmp_path / "release").G.state_dict(), networks.G.state_dict())


def test_recipes_and_their_default_steps():
    """The light recipe is the default (at most 100 steps, 60 with one photo; its held-out photo stops it); `paper`
    names the paper's whole set of choices, which cannot be half-changed."""
    assert [default_steps(t, 4) for t in (1, 8, 32)] == [60, 100, 100]
    assert [default_steps(t, 4, "paper") for t in (1, 8, 32)] == [100, 100, 320]
    assert FinetuneSettings(steps=7).resolved_steps(32) == 7
    light, paper = FinetuneSettings(), FinetuneSettings(recipe="paper")
    assert (light.train, light.adversarial, light.holdout, light.lr_g) == ("psi", False, 1, 3e-3)
    assert (paper.train, paper.adversarial, paper.holdout, paper.lr_g) == ("all", True, 0, 5e-5)
    assert paper.resolved_steps(32) == 320 and replace(paper, steps=5).train == "all"
    with pytest.raises(ConfigError, match="recipe paper sets holdout"):
        FinetuneSettings(recipe="paper", holdout=2)


@pytest.mark.media
def test_painting_landmarks_and_box_give_the_detected_crop(media, tmp_path):
    painting = media / "LivePortrait/assets/examples/source/s0.jpg"
    face = load_detector(DetectorConfig()).detect(load_image(painting))[0]
    (tmp_path / "points.json").write_text(json.dumps({"points": face.points.tolist()}))
    detected = load_sources(FinetuneConfig("m", images=(str(painting),)), 64)
    given = load_sources(FinetuneConfig("m", images=(str(painting),), landmarks=str(tmp_path / "points.json")), 64)
    boxed = load_sources(FinetuneConfig("m", images=(str(painting),), box=face.box), 64)
    for other in (given, boxed):
        np.testing.assert_array_equal(other[0], detected[0])
        np.testing.assert_allclose(other[1], detected[1], atol=1e-3)
    assert detected[2] == [hashlib.sha256(painting.read_bytes()).hexdigest()]


@pytest.mark.media
@pytest.mark.slow
def test_heads_finetune_on_photos_and_a_video(media, networks, tmp_path, capsys):
    networks.save_pretrained(tmp_path / "model")
    photos = [str(media / p) for p in PHOTOS[:1]] * 2
    main(["finetune", "--model", str(tmp_path / "model"), "--images", *photos, "--feed-forward",
          "--out", str(tmp_path / "ff"), "--no-progress"])
    main(["finetune", "--model", str(tmp_path / "model"), "--video", str(media / "LivePortrait/assets/examples/"
          "driving/d18.mp4"), "--shots", "3", "--tune.steps", "2", "--tune.loss.random-perceptual",
          "--out", str(tmp_path / "ft"), "--no-progress"])
    ff, ft = Avatar.load(tmp_path / "ff"), Avatar.load(tmp_path / "ft")
    assert ff.info["T"] == 2 and ff.info["steps"] == 0 and ff.generator is None
    assert ff.info["source_hashes"] == [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in photos]
    assert ft.info["T"] == 3 and ft.info["steps"] == 2 and ft.generator is None  # the light recipe: ψ′ alone
    assert ft.info["settings"]["recipe"] == "light" and ft.info["holdout"]["photos"] == 1
    printed = capsys.readouterr().out
    assert "2 steps run)" in printed or "feed-forward avatar is used" in printed
    main(["finetune", "--model", str(tmp_path / "model"), "--images", *photos, "--tune.recipe", "paper",
          "--tune.steps", "2", "--tune.loss.random-perceptual", "--out", str(tmp_path / "paper"), "--no-progress"])
    paper = Avatar.load(tmp_path / "paper")
    assert paper.generator is not None and paper.info["settings"]["adversarial"] and "holdout" not in paper.info
    with pytest.raises(SystemExit) as exit_:
        main(["finetune", "--model", str(tmp_path / "model"), "--images",
              str(media / "LivePortrait/assets/examples/source/s22.jpg"), "--out", str(tmp_path / "x")])
    assert exit_.value.code == 2 and "No human face was found" in capsys.readouterr().err


def test_bench_finetune_times_a_trained_model_end_to_end(tmp_path):
    """`heads bench finetune --model`: the recipe run whole per T (every step, early stop off), on a warp-guided
    model as the embedded one is."""
    from training.bench_finetune import bench_finetune
    from training.fewshot_config import FinetuneBenchConfig

    torch.manual_seed(0)
    Networks.build(replace(TINY, guidance="warp")).save_pretrained(tmp_path / "model")
    cfg = FinetuneBenchConfig(model=str(tmp_path / "model"), shots=(1, 3), tune=FinetuneSettings(steps=4,
                              check_every=2, loss=LossConfig(perceptual=(), l1=1.0)), out=str(tmp_path / "b.json"))
    rows = bench_finetune(cfg)["results"]
    assert [(r["T"], r["steps"], r["recipe"]) for r in rows] == [(1, 4, "light"), (3, 4, "light")]
    assert all(r["finetune_seconds"] > 0 and r["feed_forward_seconds"] > 0 for r in rows)
    assert json.loads((tmp_path / "b.json").read_text())["results"] == rows
