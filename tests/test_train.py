"""The trainer: it learns, resumes exactly, stops cleanly on NaN, and runs data-parallel with gloo."""

import copy
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from base.errors import ConfigError
from heads.cli import main as heads_main
from training.checkpoint import list_checkpoints
from training.config import DataConfig, LossConfig, ModelConfig, TrainConfig
from training.phases import TrainingDiverged
from training.train import MetaLearner, train

ROOT = Path(__file__).resolve().parents[1]


def tiny(tmp_path, **kw) -> TrainConfig:
    base = dict(
        model=ModelConfig.tiny(), loss=LossConfig(perceptual=(), l1=1.0), data=DataConfig(synthetic_videos=2),
        k=2, batch=2, steps=4, outdir=str(tmp_path / "runs"), checkpoint_every=2, image_every=2, log_every=1,
        progress=False,
    )
    return TrainConfig(**{**base, **kw})


def read_log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def test_run_directory_layout(tmp_path):
    run_dir = train(tiny(tmp_path))
    assert run_dir.name == "00000-meta"
    assert json.loads((run_dir / "config.json").read_text())["model"]["resolution"] == 64
    assert [p.name for p in list_checkpoints(run_dir)] == ["step-0000002", "step-0000004"]
    assert (run_dir / "images" / "step-0000004.png").is_file()
    log = read_log(run_dir)
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert all(r["e_abs"] >= 0 and r["e_spread"] >= 0 for r in log)  # embedder health is logged every tick
    assert any((run_dir / "tensorboard").iterdir())


def test_resume_reproduces_the_next_steps(tmp_path):
    straight = train(tiny(tmp_path, steps=4, ema=0.9))
    interrupted = train(tiny(tmp_path, steps=2, ema=0.9))
    resumed = train(tiny(tmp_path, steps=4, resume=str(interrupted)))
    assert resumed == interrupted
    a, b = read_log(straight), read_log(resumed)
    for row_a, row_b in zip(a[2:], b[2:], strict=True):
        assert row_a["step"] == row_b["step"]
        for key in ("cnt", "adv", "fm", "mch", "dsc"):
            assert row_a[key] == pytest.approx(row_b[key], rel=1e-5, abs=1e-6), (key, row_a["step"])


def test_nan_stops_before_touching_the_weights(tmp_path):
    cfg = tiny(tmp_path)
    learner = MetaLearner(cfg, num_videos=2, device=torch.device("cpu"))
    from training.data import SyntheticEpisodes

    ds = SyntheticEpisodes(2, 64, 2)
    batch = {k: torch.stack([ds[n][k] for n in range(2)]) for k in ("frames", "landmarks", "video")}
    before = [p.clone() for p in learner.nets.G.parameters()]
    learner.content.forward = lambda fake, real, weights=None: torch.tensor(float("nan"))
    with pytest.raises(TrainingDiverged, match="cnt became non-finite at step 7"):
        learner.step(batch, step=7)
    assert all(torch.equal(a, b) for a, b in zip(before, learner.nets.G.parameters(), strict=True))


@pytest.mark.slow
def test_tiny_model_overfits_a_few_frames(tmp_path):
    cfg = tiny(tmp_path, steps=80, lr_g=2e-3, lr_d=2e-3, data=DataConfig(synthetic_videos=1), checkpoint_every=1000,
               image_every=0, log_every=10, loss=LossConfig(perceptual=(), l1=10.0, feature_matching=1.0))
    log = read_log(train(cfg))
    # The late loss as the median of the last four logged values, not the last one alone: an adversarial run's single
    # point is noisy (one thread on an AMD EPYC host, 2026-12-08: 0.104 at step 60, 0.145 at step 80, from 0.267).
    first, late = log[0]["l1"], float(np.median([entry["l1"] for entry in log[-4:]]))
    assert late < 0.5 * first, (first, [entry["l1"] for entry in log])


def test_cli_dry_run_prints_the_config(capsys):
    heads_main(["train", "--preset", "paper", "--k", "4", "--dry-run"])
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["model"]["resolution"] == 256 and cfg["model"]["embed_dim"] == 512 and cfg["k"] == 4


@pytest.mark.slow
def test_data_parallel_with_two_gloo_processes(tmp_path):
    """Two processes on different episodes end every step with identical weights."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
           str(ROOT / "tests" / "ddp_worker.py"), str(tmp_path)]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert reports[0]["videos"] != reports[1]["videos"]  # each process saw its own episodes
    assert reports[0]["checksum"] == reports[1]["checksum"]
    assert (tmp_path / "runs" / "00000-meta" / "checkpoints" / "step-0000002").is_dir()


def test_fp16_overflow_on_one_process_skips_the_step_on_all(tmp_path):
    """An inf gradient on rank 1 only: both ranks skip that G step and halve the scale, and the weights stay
    identical, bit for bit; the steps before and after (and that step's D phase) go ahead on both."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
           str(ROOT / "tests" / "ddp_overflow_worker.py"), str(tmp_path)]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank0 == rank1  # same decisions, same scales, same weights
    assert [s["g_moved"] for s in rank0] == [True, False, True]
    assert [s["d_moved"] for s in rank0] == [True, True, True]
    assert [s["scale_g"] for s in rank0] == [16.0, 8.0, 8.0]
    assert all(s["finite"] for s in rank0)


def test_bf16_autocast_trains_on_cpu(tmp_path):
    run_dir = train(tiny(tmp_path, steps=2, precision="bf16", image_every=0))
    log = read_log(run_dir)
    assert [r["step"] for r in log] == [1, 2]
    assert all(math.isfinite(v) for r in log for k, v in r.items() if k != "step")


def _cpp_compiler() -> str | None:
    """What inductor builds its CPU kernels with ($CXX, else the first C++ compiler on PATH), if any."""
    import shutil

    return next((cc for cc in (os.environ.get("CXX"), "g++", "c++", "clang++") if cc and shutil.which(cc)), None)


@pytest.mark.skipif(_cpp_compiler() is None, reason="torch.compile's inductor backend needs a C++ compiler on CPU, "
                    "and none is on PATH (set CXX or install g++)")
def test_inductor_compiles_a_training_step():
    """torch.compile's default backend (inductor, C++ kernels on CPU) trains a tiny net like eager does.

    The toolchain half of `--compile`; the trainer half is the next test. Inductor on the real networks takes
    minutes on a CPU (every fused kernel is a C++ build), so they are compiled for real by scripts/gpu_check.sh.
    """
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.InstanceNorm2d(4, affine=True),
                              torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, 1))
    twin = copy.deepcopy(net)
    x = torch.randn(2, 3, 8, 8)
    losses = []
    for model in (torch.compile(net), twin):
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(2):
            loss = model(x).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)
    for a, b in zip(net.parameters(), twin.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.slow
def test_compile_flag_trains_and_checkpoints(tmp_path, monkeypatch):
    """`--compile`: meta-learning steps through torch.compile'd E, G and D (graph capture by dynamo, with D's
    requires_grad switching between the phases), and checkpoints under the plain networks' names.

    Dynamo's own `eager` backend runs the captured graphs, so that the test takes under a minute, not the many
    minutes of inductor's C++ builds for these networks (the test above checks that inductor works here)."""
    import functools

    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    run_dir = train(tiny(tmp_path, steps=1, compile=True, image_every=0, checkpoint_every=1))
    (row,) = read_log(run_dir)
    assert all(math.isfinite(v) for k, v in row.items() if k != "step")
    from training.models import Networks

    nets = Networks.from_pretrained(list_checkpoints(run_dir)[-1])  # no `_orig_mod.` in the names
    assert sum(p.numel() for p in nets.G.parameters()) > 0


def test_warp_guided_variant_trains(tmp_path):
    """The warp-guided G reads 7 channels: landmarks, the nearest reference warped onto them, and its mask."""
    cfg = tiny(tmp_path, steps=2, model=ModelConfig(64, 8, 64, 64, 1, 16, guidance="warp"))
    run_dir = train(cfg)
    from training.models import Networks

    nets = Networks.from_pretrained(list_checkpoints(run_dir)[-1])
    assert nets.cfg.guidance == "warp" and nets.G.cfg.input_channels == 7
    from PIL import Image

    grid = Image.open(run_dir / "images" / "step-0000002.png")
    assert grid.size == (4 * 64, 2 * 64)  # landmarks | warp | real | generated, one row per episode


def test_guide_dropout_blanks_a_share_of_the_guides():
    """Blanked guides read as a black warp with an empty mask (-1 everywhere); the others pass unchanged."""
    from training.phases import generator_input

    torch.manual_seed(0)
    y, guide = torch.zeros(400, 3, 4, 4), torch.rand(400, 4, 4, 4) * 0.5
    out = generator_input(y, guide, guide_dropout=0.25)
    blank = (out[:, 3:] == -1).flatten(1).all(1)
    assert 70 < int(blank.sum()) < 130
    assert torch.equal(out[~blank, 3:], guide[~blank]) and torch.equal(out[:, :3], y)
    assert torch.equal(generator_input(y, guide), torch.cat([y, guide], 1))
    with pytest.raises(ConfigError, match="guide_dropout"):
        TrainConfig(guide_dropout=1.0)
