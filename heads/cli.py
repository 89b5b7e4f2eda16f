"""`heads`: one command-line tool for every stage (prepare, train, finetune, evaluate, export, animate, edit, verify,
bench, space).

Each subcommand is a typed dataclass config (parsed with tyro, help text from the field comments) and one library
function. Both are named by import path so that `heads --help` and torch-free commands never import torch.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import sys
from dataclasses import dataclass

from base.errors import UserError

USAGE_ERROR = 2  # exit status for anything the user can fix from the message (as argparse uses for bad options)


@dataclass(frozen=True)
class Command:
    config: str  # "module:ConfigClass", importable without torch
    run: str  # "module:function", called with the parsed config
    summary: str


COMMANDS: dict[str, Command] = {
    "prepare": Command(
        "faces.config:PrepareConfig", "faces.prepare:run",
        "Videos (VoxCeleb layout or any folder) -> face crops, landmarks, manifest and train/test split.",
    ),
    # `--shard K/N` splits `prepare` over machines; this joins their folders (named like an option, read as a command).
    "prepare --merge": Command(
        "faces.config:MergeConfig", "faces.prepare:merge",
        "Join the folders of `prepare --shard K/N` runs into one dataset (refuses shards made differently).",
    ),
    "prepare --to-shards": Command(
        "faces.config:ShardsConfig", "faces.shards:to_shards",
        "A prepared folder -> WebDataset tar shards (one sample per clip) and an index, for --data.source shards.",
    ),
    "bench prepare": Command(
        "faces.config:PrepareBenchConfig", "faces.bench_prepare:bench_prepare",
        "Frames/s of prepare on real clips: detect every frame vs detect-and-track, 1 and 2 workers, as JSON.",
    ),
    "train": Command("training.config:TrainConfig", "training.train:train", "Meta-learn E, G and D on episodes."),
    "train-mouth": Command(
        "training.config:MouthTrainConfig", "training.mouth_refiner:train",
        "Train the mouth refiner: a small network correcting the warp's mouth on a mouth crop (1 - SSIM + L1).",
    ),
    "bench loader": Command(
        "training.config:LoaderBenchConfig", "training.bench_loader:bench_loader",
        "Episodes/s and images/s of the training loader per worker, prepared folder vs its shards, as JSON.",
    ),
    "bench train": Command(
        "training.config:TrainBenchConfig", "training.bench:bench_train",
        "Training speed (it/s, images/s, peak memory) of the compact and paper models, as JSON.",
    ),
    "finetune": Command(
        "training.fewshot_config:FinetuneConfig", "training.finetune:finetune",
        "Personalize a model to 1-32 photos, video frames or a painting: an avatar folder (FF or fine-tuned).",
    ),
    "evaluate": Command(
        "training.fewshot_config:EvaluateConfig", "training.evaluate:evaluate",
        "The paper's self-reenactment protocol on prepared test clips: still, warp, FF, FT; Table 1 as MD/CSV.",
    ),
    "evaluate-cross": Command(
        "training.fewshot_config:CrossEvaluateConfig", "training.evaluate_cross:evaluate_cross",
        "Cross-identity: test clips drive other people's photos and paintings (warp, FF); identity and motion.",
    ),
    "bench finetune": Command(
        "training.fewshot_config:FinetuneBenchConfig", "training.bench_finetune:bench_finetune",
        "Seconds to fine-tune (T = 1, 8, 32) and feed-forward latency of the compact and paper models, as JSON.",
    ),
    "export": Command(
        "export_onnx.config:ExportConfig", "export_onnx.release:export",
        "A model folder (and an avatar) -> ONNX graphs for the torch-free engine, with int8/fp16 variants.",
    ),
    "bench infer": Command(
        "export_onnx.config:InferBenchConfig", "export_onnx.bench:bench_infer",
        "Generator ms/frame and GFLOP/s: PyTorch vs onnxruntime fp32/int8, 128 and 256 px, batch 1 and 8, as JSON.",
    ),
    "animate": Command(
        "demo.animate_config:AnimateConfig", "demo.animate:animate",
        "Animate 1-32 photos, a painting or a saved avatar with a driving video -> mp4 (what the web app does).",
    ),
    "edit": Command(
        "demo.animate_config:EditConfig", "demo.animate:edit",
        "Edit one photo's expression: a driving frame's (an image, a clip's first frame) and/or the controls -> PNG.",
    ),
    "bench animate": Command(
        "export_onnx.config:AnimateBenchConfig", "export_onnx.bench_animate:bench_animate",
        "End-to-end frames/s of animate (decode, landmarks, adaptation, render, encode) per renderer, as JSON.",
    ),
    "bench live": Command(
        "export_onnx.bench_live:LiveBenchConfig", "export_onnx.bench_live:bench_live",
        "Live mode's frames/s shown and latency, a clip of the media replayed as a camera in real time, as JSON.",
    ),
    "bench live-browser": Command(
        "heads.bench_live_browser:LiveBrowserBenchConfig", "heads.bench_live_browser:bench_live_browser",
        "The Live tab in headless Chromium with a fake webcam: frames/s shown and camera-to-screen latency, as JSON.",
    ),
    "bench warp": Command(
        "faces.bench_warp:WarpBenchConfig", "faces.bench_warp:bench_warp",
        "Milliseconds per frame of the piecewise-affine warp (maps and remap, 128 and 256 px), as JSON.",
    ),
    "bench soak": Command(
        "heads.soak:SoakConfig", "heads.soak:soak",
        "Concurrent gradio_client clients against the launched app: failures, latency, server memory, as JSON.",
    ),
    "verify": Command(
        "heads.verify:VerifyConfig", "heads.verify:verify",
        "Is an mp4 or PNG marked: its invisible watermark (share of frames, payload) and C2PA credentials.",
    ),
    "bench watermark": Command(
        "faces.bench_watermark:WatermarkBenchConfig", "faces.bench_watermark:bench_watermark",
        "Watermark found after CRF-28 re-encode and halving, false marks on real clips, ms/frame, SSIM, as JSON.",
    ),
    "space": Command(
        "heads.space:SpaceConfig", "heads.space:space",
        "Write the folder a Hugging Face Space runs: app.py, front matter, pinned requirements, LFS, weights.",
    ),
    "convert-weights": Command(
        "training.perceptual.convert_config:ConvertConfig", "training.perceptual.convert:convert_weights",
        "Convert downloaded VGG19 / VGG-Face weights for the content loss (docs/perceptual.md).",
    ),
}


def _load(path: str):
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: heads COMMAND [--help] [--dry-run] [--preset NAME] [OPTIONS]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {cmd.summary}" for name, cmd in COMMANDS.items()]
    lines += [
        "",
        "--dry-run prints the final config as JSON and exits; --preset picks a named starting config",
        "(see `heads COMMAND --help`), which further options override.",
    ]
    return "\n".join(lines)


def _split(argv: list[str]) -> tuple[str, list[str]]:
    """Longest command name that prefixes argv, e.g. `bench train` before `bench`."""
    for n in (2, 1):
        name = " ".join(argv[:n])
        if len(argv) >= n and name in COMMANDS:
            return name, argv[n:]
    raise UserError(f"unknown command {' '.join(argv[:2])!r}\n\n{_usage()}")


def _pop_option(args: list[str], flag: str, takes_value: bool) -> tuple[str | bool | None, list[str]]:
    for i, arg in enumerate(args):
        if arg == flag:
            if not takes_value:
                return True, args[:i] + args[i + 1 :]
            if i + 1 >= len(args):
                raise UserError(f"{flag} needs a value")
            return args[i + 1], args[:i] + args[i + 2 :]
        if takes_value and arg.startswith(flag + "="):
            return arg.split("=", 1)[1], args[:i] + args[i + 1 :]
    return (None if takes_value else False), args


def parse(argv: list[str]) -> tuple[Command, object, bool]:
    """Turn argv into (command, config, dry_run); bad input raises UserError, whose message `main` prints."""
    import tyro

    name, rest = _split(argv)
    command = COMMANDS[name]
    config_cls = _load(command.config)
    preset, rest = _pop_option(rest, "--preset", takes_value=True)
    dry_run, rest = _pop_option(rest, "--dry-run", takes_value=False)
    default = None
    if preset is not None:
        presets = getattr(config_cls, "presets", None)
        if presets is None:
            raise UserError("this command has no presets")
        choices = presets()
        if preset not in choices:
            raise UserError(f"unknown preset {preset!r}; choose one of {', '.join(choices)}")
        default = choices[preset]
    # A config's own checks raise ConfigError (a UserError), which `main` prints as one line.
    config = tyro.cli(config_cls, args=rest, default=default, prog=f"heads {name}", description=command.summary)
    return command, config, bool(dry_run)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return
    try:
        command, config, dry_run = parse(argv)
        if dry_run:
            print(json.dumps(dataclasses.asdict(config), indent=2, default=str))
            return
        _load(command.run)(config)
    except (UserError, FileNotFoundError) as error:
        name = next((" ".join(argv[:n]) for n in (2, 1) if " ".join(argv[:n]) in COMMANDS), None)
        print(f"heads{f' {name}' if name else ''}: error: {error}", file=sys.stderr)
        raise SystemExit(USAGE_ERROR) from None


if __name__ == "__main__":
    main()
