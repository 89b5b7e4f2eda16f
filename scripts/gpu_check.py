"""The GPU check (issue 21, item 4), run by scripts/gpu_check.sh: what a cluster user's first hour would find.

On a GPU machine it trains the `paper` preset under torchrun (NCCL, one process per GPU) in bf16 and with
torch.compile, first on the synthetic source and then on a few prepared clips, reports it/s, images/s and peak memory,
exports the trained networks to ONNX, and times the generator with torch on the GPU (and with onnxruntime's CUDA
provider where the machine has one). `--tiny` runs the same steps with the tiny model on the CPU (gloo, no compile),
which is how the test suite checks the script itself.

Everything lands in OUT/gpu_check.json; a failed step is recorded with its error and the later steps still run,
so one run shows everything that is wrong. The machines this is written for run their own python3 (another torch
than the project's pin, no package registry), so the orchestration here needs only the standard library, and
the environment step lists the modules that are missing before anything needs them.

usage: python3 scripts/gpu_check.py OUT [--tiny] [--steps N] [--nproc N] [--prepared DIR]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file (and by torchrun), not installed: the checkout is the package root
    sys.path.insert(0, str(ROOT))
# Third-party modules the project imports on these paths, and what needs each.
MODULES = {
    "numpy": "everything", "cv2": "data, landmarks", "PIL": "training images", "tqdm": "training",
    "safetensors": "checkpoints", "tyro": "the heads CLI", "av": "video decoding", "onnx": "export",
    "onnxruntime": "export parity and timing", "onnxconverter_common": "fp16 export",
}
PREPARED_CLIPS, PREPARED_FRAMES = 8, 24  # the synthetic prepared set when no --prepared folder is given


# ---------------------------------------------------------------------------------------------------- steps


def environment() -> dict:
    import torch

    info = {
        "python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "nccl": torch.distributed.is_nccl_available(), "cxx": shutil.which(os.environ.get("CXX", "g++")),
        "bf16": bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported()) or not torch.cuda.is_available(),
        "missing": {},
    }
    for name, role in MODULES.items():
        try:
            module = importlib.import_module(name)
            info[name] = getattr(module, "__version__", "?")
        except Exception as e:  # any import failure (not only ImportError: a wheel for another numpy, say)
            info["missing"][name] = f"{role}: {type(e).__name__}: {e}"
    if "onnxruntime" not in info["missing"]:
        import onnxruntime

        info["onnxruntime_providers"] = onnxruntime.get_available_providers()
    return info


def train_config(spec: dict):
    """The TrainConfig of one training step of the check (also read by `--train-worker`)."""
    from dataclasses import replace

    from training.config import MODEL_PRESETS, DataConfig, ModelConfig, TrainConfig

    model = ModelConfig.tiny() if spec["tiny"] else MODEL_PRESETS["paper"]()
    base = TrainConfig(model=model)
    data = DataConfig(source="prepared", root=spec["root"], workers=spec["workers"], min_frames=base.k + 1) \
        if spec["root"] else DataConfig(workers=spec["workers"])
    return replace(
        base, k=2 if spec["tiny"] else base.k, batch=2 if spec["tiny"] else base.batch, data=data,
        # Random feature networks: the same compute as the trained ones, without their weights on the machine
        # (the tiny check leaves them out: they are most of its time on a CPU, and add nothing to the check).
        loss=replace(base.loss, random_perceptual=True, perceptual=() if spec["tiny"] else base.loss.perceptual,
                     l1=1.0 if spec["tiny"] else base.loss.l1),
        precision=spec["precision"], compile=spec["compile"],
        steps=spec["steps"], log_every=spec["log_every"], checkpoint_every=spec["steps"], image_every=0,
        progress=False, outdir=spec["outdir"], run_name=spec["name"], device=spec["device"],
    )


def train_worker(spec_path: Path) -> None:
    """One torchrun process: train, then (rank 0) turn the run's log into speeds."""
    import resource

    import torch

    from training.checkpoint import list_checkpoints
    from training.train import train

    spec = json.loads(spec_path.read_text())
    cfg = train_config(spec)
    start = time.time()
    run_dir = Path(train(cfg))
    if int(os.environ.get("RANK", "0")) != 0:
        return
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    # The first tick holds the warm-up (and compilation); the speed is measured over the ticks after it.
    (first, *_), last = rows, rows[-1]
    seconds = last["time"] - first["time"]
    its = (last["step"] - first["step"]) / seconds if seconds > 0 else None
    cuda = torch.cuda.is_available() and cfg.device != "cpu"
    peak = torch.cuda.max_memory_allocated() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result = {
        "config": {"model": "tiny" if spec["tiny"] else "paper", "k": cfg.k, "batch_per_process": cfg.batch,
                   "precision": cfg.precision, "compile": cfg.compile, "steps": cfg.steps, "processes": world,
                   "data": cfg.data.source, "backend": "nccl" if cuda else "gloo"},
        "warmup_seconds": first["time"] - start,
        "iterations_per_second": its,
        "images_per_second": its and its * cfg.batch * (cfg.k + 1) * world,
        "peak_memory_mb": peak / 2**20,
        "peak_memory_kind": "cuda max allocated, rank 0" if cuda else "process max RSS, rank 0",
        "losses": {k: v for k, v in last.items() if k not in ("step", "time")},
        "checkpoint": str(list_checkpoints(run_dir)[-1]),
    }
    Path(spec["result"]).write_text(json.dumps(result, indent=2))


def train_step(out: Path, args, name: str, root: Path | None, timeout: float) -> dict:
    spec = {
        "tiny": args.tiny, "precision": "bf16", "compile": not args.tiny, "steps": args.steps,
        "log_every": max(1, args.steps // 10), "root": str(root) if root else None,
        "workers": 4 if root and not args.tiny else 0, "device": "cpu" if args.tiny else "auto",
        "outdir": str(out / "runs"), "name": name, "result": str(out / f"{name}.json"),
    }
    (out / f"{name}.spec.json").write_text(json.dumps(spec, indent=2))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}",
           str(Path(__file__).resolve()), "--train-worker", str(out / f"{name}.spec.json")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with open(out / f"{name}.log", "w") as log:
        done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=timeout, cwd=ROOT, env=env)
    if done.returncode != 0:
        tail = (out / f"{name}.log").read_text()[-2000:]
        raise RuntimeError(f"torchrun exited with {done.returncode}; the end of {name}.log:\n{tail}")
    return json.loads((out / f"{name}.json").read_text())


def write_prepared(folder: Path, resolution: int, clips: int = PREPARED_CLIPS, frames: int = PREPARED_FRAMES) -> Path:
    """A folder in `heads prepare`'s layout holding synthetic faces: JPEG frames, landmarks and a manifest, for
    the loader's real work (decoding, drawing landmark images) where no prepared clips came with the checkout."""
    import cv2
    import numpy as np

    from training.data import SyntheticEpisodes, to_uint8

    source = SyntheticEpisodes(clips, resolution, frames - 1)
    entries = []
    for video in range(clips):
        clip = f"synthetic__{video:03d}"
        (folder / "clips" / clip).mkdir(parents=True, exist_ok=True)
        episode = source[video]
        for row, image in enumerate(to_uint8(episode["frames"])):
            cv2.imwrite(str(folder / "clips" / clip / f"{row:05d}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        np.savez(folder / "clips" / clip / "landmarks.npz", points=episode["points"].numpy())
        entries.append({"clip": clip, "identity": clip, "frames": frames, "resolution": resolution, "split": "train"})
    (folder / "manifest.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
    return folder


def export_step(out: Path, checkpoint: str, gpu: bool) -> dict:
    from export_onnx.config import ExportConfig
    from export_onnx.release import export

    manifest = export(ExportConfig(model=Path(checkpoint), out=out / "export", variants=("fp16",) if gpu else ()))
    return {"folder": str(out / "export"), "graphs": manifest.get("graphs")}


def _timed(run, seconds: float, sync=lambda: None) -> float:
    """Milliseconds per call: one warm-up call, then calls for at least `seconds` (and at least 3)."""
    run()
    sync()
    calls, start = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - start < seconds:
        run()
        calls += 1
    sync()
    return (time.perf_counter() - start) / calls * 1e3


def generator_step(checkpoint: str, export_dir: Path | None, gpu: bool, seconds: float) -> dict:
    """ms per frame of G (landmark image and ê in, frame out) with torch, and with onnxruntime's CUDA provider."""
    import numpy as np
    import torch

    from training.models import Networks

    device = "cuda" if gpu else "cpu"
    nets = Networks.from_pretrained(checkpoint, device=device, with_discriminator=False)
    G, cfg = nets.G.eval(), nets.cfg
    sync = torch.cuda.synchronize if gpu else (lambda: None)
    results = {}
    for batch in (1, 8):
        y = torch.rand(batch, cfg.input_channels, cfg.resolution, cfg.resolution, device=device) * 2 - 1
        e = torch.rand(batch, cfg.embed_dim, device=device)
        for precision in ("fp32", "bf16"):
            def run(y=y, e=e, precision=precision):
                with torch.inference_mode(), torch.autocast(device, torch.bfloat16, enabled=precision == "bf16"):
                    G(y, e)

            results[f"torch-{precision}-batch{batch}"] = _timed(run, seconds, sync) / batch
    graph = export_dir / "generator.onnx" if export_dir else None
    try:
        import onnxruntime
    except ImportError:
        onnxruntime = None
    if graph is None or not graph.is_file():
        results["onnxruntime-cuda"] = "skipped: no exported generator.onnx"
    elif onnxruntime is None or "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        results["onnxruntime-cuda"] = "skipped: onnxruntime has no CUDAExecutionProvider here"
    else:
        session = onnxruntime.InferenceSession(str(graph), providers=["CUDAExecutionProvider"])
        feeds = {
            i.name: np.random.default_rng(0).uniform(-1, 1, [d if isinstance(d, int) else 1 for d in i.shape])
            .astype(np.float16 if "float16" in i.type else np.float32)
            for i in session.get_inputs()
        }
        results["onnxruntime-cuda-fp32-batch1"] = _timed(lambda: session.run(None, feeds), seconds)
    return {"milliseconds_per_frame": results, "resolution": cfg.resolution, "device": device}


# ---------------------------------------------------------------------------------------------------- the run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, nargs="?", help="folder for gpu_check.json and the runs")
    parser.add_argument("--tiny", action="store_true", help="the tiny model on the CPU: a check of the check")
    parser.add_argument("--steps", type=int, help="training steps per run (default 300; 4 with --tiny)")
    parser.add_argument("--nproc", type=int, help="processes for torchrun (default: one per GPU, 1 on a CPU)")
    parser.add_argument("--prepared", type=Path, help="a folder made by `heads prepare` to train on (default: "
                                                      "synthetic faces written in its layout)")
    parser.add_argument("--train-worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.train_worker:
        train_worker(args.train_worker)
        return 0
    if args.out is None:
        parser.error("OUT is required")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"mode": "tiny" if args.tiny else "full", "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    "steps": {}}
    begin = time.perf_counter()

    def step(name: str, fn, *fn_args):
        start = time.perf_counter()
        try:
            value = fn(*fn_args)
            report["steps"][name] = {"ok": True, "seconds": round(time.perf_counter() - start, 1), **value}
        except Exception as e:
            report["steps"][name] = {"ok": False, "seconds": round(time.perf_counter() - start, 1),
                                     "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-3000:]}
            value = None
        (out / "gpu_check.json").write_text(json.dumps(report, indent=2))  # partial results survive a timeout
        print(f"gpu_check: {name}: {'ok' if value is not None else 'FAILED'} "
              f"({report['steps'][name]['seconds']} s)", flush=True)
        return value

    env = step("environment", environment)
    gpu = bool(env and env["gpus"]) and not args.tiny
    args.nproc = args.nproc or (len(env["gpus"]) if gpu else 1)
    args.steps = args.steps or (4 if args.tiny else 300)
    timeout = 600 if args.tiny else 240
    synthetic = step("train_synthetic", train_step, out, args, "train_synthetic", None, timeout)
    resolution = 64 if args.tiny else 256
    prepared = args.prepared or step("write_prepared", lambda: {"folder": str(write_prepared(
        out / "prepared", resolution))}) and out / "prepared"
    on_clips = prepared and step("train_prepared", train_step, out, args, "train_prepared", prepared, timeout)
    checkpoint = (on_clips or synthetic or {}).get("checkpoint")
    exported = checkpoint and step("export", export_step, out, checkpoint, gpu)
    if checkpoint:
        step("generator", generator_step, checkpoint, out / "export" if exported else None, gpu,
             0.2 if args.tiny else 2.0)
    report["seconds"] = round(time.perf_counter() - begin, 1)
    report["ok"] = all(s["ok"] for s in report["steps"].values()) and "generator" in report["steps"]
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2))
    print(f"gpu_check: {'all steps passed' if report['ok'] else 'some steps FAILED'} in {report['seconds']} s; "
          f"see {out / 'gpu_check.json'}", flush=True)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
