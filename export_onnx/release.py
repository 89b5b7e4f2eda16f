"""`heads export`: a model folder, and optionally one avatar, to a folder of ONNX graphs for the torch-free engine.

The folder's config.json lists every graph with its parity against PyTorch (fp32) or its SSIM against fp32
(variants), and its speed on the exporting machine, so a deployment can pick a variant from numbers.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np
import torch

from base.errors import UserError
from contract.graphs import FORMAT_VERSION, graph_inputs, input_shape
from demo.engine import OnnxModel, SessionSettings
from export_onnx.config import ExportConfig
from export_onnx.export import OPSET, export_embedder, export_generator, export_mouth, export_personalized
from export_onnx.quantize import fidelity, to_fp16, to_int8
from export_onnx.samples import realistic
from export_onnx.timing import seconds_per_call
from export_onnx.verdict import stored
from faces.layout import PALETTE_VERSION
from training.avatar import Avatar, model_id
from training.checkpoint import read_config
from training.config import to_dict
from training.models import Networks
from training.mouth_refiner import load as load_mouth_refiner

FIDELITY_IMAGES = 8


def _load(cfg: ExportConfig) -> tuple[Networks, Avatar | None]:
    try:
        nets = Networks.from_pretrained(cfg.model, with_discriminator=False)
        avatar = Avatar.load(cfg.avatar) if cfg.avatar is not None else None
    except ValueError as error:
        raise UserError(str(error)) from None
    return nets, avatar


def _samples(nets: Networks, kind: str, count: int, seed: int, prepared: Path | None) -> dict[str, np.ndarray]:
    """Synthetic or prepared faces as the graph's inputs; a generic generator gets each face's own ê from E."""
    try:
        sample = realistic(nets.cfg, count, seed, prepared)
    except (OSError, ValueError) as error:
        if prepared is None:
            raise
        raise UserError(f"--calibration-data {prepared}: {error}") from None
    if kind == "generator":
        with torch.no_grad():
            sample["embedding"] = nets.E.eval()(*(torch.from_numpy(sample[k]) for k in ("frames", "landmarks"))).numpy()
    return {name: sample[name] for name in graph_inputs(kind, nets.cfg.guided)}


def _variants(
    cfg: ExportConfig, kind: str, fp32: Path, calibration: dict[str, np.ndarray], check: dict[str, np.ndarray]
) -> dict[str, dict]:
    """int8 and fp16 siblings of an fp32 generator graph, each with its SSIM against fp32 (on `check`) and its CPU
    speed; int8 is calibrated on `calibration`."""
    one = {name: v[:1] for name, v in check.items()}
    settings = SessionSettings(device="cpu")
    reference = OnnxModel(fp32, (kind,), settings)
    report = {"fp32": {"file": fp32.name, "cpu_ms_per_frame": 1e3 * seconds_per_call(lambda: reference(**one))}}
    for variant in cfg.variants:
        path = fp32.with_suffix(f".{variant}.onnx")
        to_int8(fp32, path, calibration) if variant == "int8" else to_fp16(fp32, path)
        model = OnnxModel(path, (kind,), settings)
        report[variant] = {
            "file": path.name,
            **fidelity(reference, model, check),
            "cpu_ms_per_frame": 1e3 * seconds_per_call(lambda m=model: m(**one)),
        }
    return report


def export(cfg: ExportConfig) -> dict:
    """Write the graphs and config.json into `cfg.out`; returns what config.json holds."""
    if not cfg.generic and cfg.avatar is None and cfg.mouth_refiner is None:
        raise UserError("nothing to export: pass --avatar DIR or --mouth-refiner DIR, or leave --generic on")
    nets, avatar = _load(cfg)
    mid = model_id(nets)
    try:
        tuned = avatar.generator_for(nets) if avatar is not None else None  # before any export: fail fast
    except ValueError as error:
        raise UserError(f"{cfg.avatar}: {error}") from None
    kinds = [kind for kind, wanted in (("generator", cfg.generic), ("personalized", avatar is not None)) if wanted]
    # calibration and check images per generator graph, drawn before any graph is written: a bad
    # --calibration-data folder fails here
    inputs = {
        kind: tuple(_samples(nets, kind, count, seed, cfg.calibration_data)
                    for count, seed in ((cfg.calibration, 100), (FIDELITY_IMAGES, 200)))
        for kind in kinds
    }
    # Folders by their own names only: config.json and the graphs' metadata travel with the model (to a Space, the
    # Hub, other people), where the exporting machine's paths would mean nothing and tell too much.
    provenance = f"heads export of {_name(cfg.model)} (model {mid}), torch {torch.__version__}, opset {OPSET}"
    out = cfg.out
    previous = _previous(out, mid)
    graphs = previous.get("graphs", {})
    if cfg.generic:
        meta = {"model_id": mid, "provenance": provenance}
        parity = export_embedder(nets.E, out / "embedder.onnx", meta, cfg.tolerance)
        graphs["embedder"] = {"fp32": {"file": "embedder.onnx", "parity_max_abs": parity}}
        parity = export_generator(nets.G, out / "generator.onnx", meta, cfg.tolerance)
        graphs["generator"] = _variants(cfg, "generator", out / "generator.onnx", *inputs["generator"])
        graphs["generator"]["fp32"]["parity_max_abs"] = parity
    if avatar is not None:
        info = avatar.info
        meta = {
            "model_id": mid, "T": info["T"], "steps": info["steps"],
            "provenance": f"{provenance}; avatar {_name(cfg.avatar)} (T={info['T']}, {info['steps']} steps)",
        }
        parity = export_personalized(tuned, avatar.psi, out / "personalized.onnx", meta, cfg.tolerance)
        graphs["personalized"] = _variants(cfg, "personalized", out / "personalized.onnx", *inputs["personalized"])
        graphs["personalized"]["fp32"]["parity_max_abs"] = parity
    mouth = previous.get("mouth_refiner") if "mouth" in graphs else None
    if cfg.mouth_refiner is not None:
        refiner = load_mouth_refiner(cfg.mouth_refiner)
        meta = {"model_id": mid, "provenance": f"{provenance}; mouth refiner {_name(cfg.mouth_refiner)}"}
        parity = export_mouth(refiner, out / "mouth.onnx", meta, cfg.tolerance)
        graph = OnnxModel(out / "mouth.onnx", ("mouth",), SessionSettings(device="cpu"))
        one = {name: np.zeros((1, *input_shape(name, graph.resolution, 0)), np.float32) for name in graph.input_names}
        graphs["mouth"] = {"fp32": {"file": "mouth.onnx", "parity_max_abs": parity,
                                    "cpu_ms_per_frame": 1e3 * seconds_per_call(lambda: graph(**one))}}
        trained = read_config(cfg.mouth_refiner)
        training = {k: v for k, v in trained.get("training", {}).items() if k not in ("data", "out", "progress")}
        if "data" in trained.get("training", {}):
            training["data"] = Path(trained["training"]["data"]).name  # by name: no machine's paths travel
        mouth = {"folder": _name(cfg.mouth_refiner), "model": trained["model"], "training": training}
    manifest = {
        "format": FORMAT_VERSION,
        "model_id": mid,
        "model": to_dict(nets.cfg),
        "palette": PALETTE_VERSION,
        "avatar": avatar.info if avatar is not None else previous.get("avatar") if "personalized" in graphs else None,
        "provenance": provenance,
        "machine": platform.processor() or platform.machine(),
        "calibration": {  # what int8 was calibrated and scored on
            "images": cfg.calibration,
            "source": _name(cfg.calibration_data) if cfg.calibration_data else "synthetic faces",
        } if kinds or "calibration" not in previous else previous["calibration"],
        "graphs": graphs,
        "mouth_refiner": mouth,
        "default": stored(cfg.evaluation, mid, out),
    }
    (out / "config.json").write_text(json.dumps(manifest, indent=2) + "\n")
    _print(out, graphs)
    return manifest


def _previous(out: Path, mid: str) -> dict:
    """What an earlier export of the same model left in `out`: its config.json with only the graphs whose files are
    still there ({} for none, or another model's). A run that writes some graphs (say --no-generic --mouth-refiner,
    adding the mouth refiner) keeps the others, and how their int8 was calibrated, rather than exporting them anew
    or forgetting them."""
    try:
        manifest = json.loads((out / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    if manifest.get("model_id") != mid:
        return {}
    graphs = {kind: variants for kind, variants in manifest.get("graphs", {}).items()
              if all((out / row["file"]).is_file() for row in variants.values())}
    return {**manifest, "graphs": graphs}


def _name(folder: Path) -> str:
    """A folder as config.json records it: its own name, without the folders above it on this machine."""
    return folder.resolve().name


def _print(out: Path, graphs: dict[str, dict]) -> None:
    print(f"{'graph':<14} {'variant':<8} {'file':<28} {'CPU ms/frame':>12}  fidelity")
    for kind, variants in graphs.items():
        for name, row in variants.items():
            ms = f"{row['cpu_ms_per_frame']:.1f}" if "cpu_ms_per_frame" in row else "-"
            quality = (
                f"max |onnx - torch| {row['parity_max_abs']:.2g}" if "parity_max_abs" in row
                else f"SSIM vs fp32 min {row['ssim_min']:.4f} mean {row['ssim_mean']:.4f}"
            )
            print(f"{kind:<14} {name:<8} {row['file']:<28} {ms:>12}  {quality}")
    print(f"wrote {out / 'config.json'}")
