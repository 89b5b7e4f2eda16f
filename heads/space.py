"""`heads space OUT`: the folder a Hugging Face Space runs as it is, written from this checkout.

A Space is a git repository whose root holds `app.py`, a README whose front matter picks the SDK, and a
requirements.txt; the Hub refuses plain git files over 10 MB, so the model files go through LFS, which only
`.gitattributes` can ask for. Everything else the app needs must be in the folder itself: no `pip install -e .` runs
on a Space, so the project's packages are copied beside app.py, and the requirements are pinned to the versions
this environment runs (the ones its tests passed with), not to the open ranges of pyproject.toml.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from tyro.conf import Positional, arg

from base.errors import ConfigError, UserError

ROOT = Path(__file__).resolve().parents[1]
DISTRIBUTION = "few-shot-heads"
# The packages app.py reaches: the torch-free demo and what it stands on, and for fine-tuning (imported lazily, only
# where torch is installed) training and export_onnx. `heads` (the CLI) is not needed by the app.
PACKAGES = ("base", "contract", "faces", "demo", "training", "export_onnx")
# Beyond the base dependencies: saving avatars (onnx) and fine-tuning on the Space (torch, and onnxscript, which
# torch's ONNX exporter uses to write the fine-tuned generator). Gradio itself comes from the front matter's
# sdk_version: a second pin in requirements.txt could only disagree with it.
EXTRA = ("onnx", "torch", "onnxscript")
SKIPPED = ("gradio",)
LFS_BYTES = 10 * 1024 * 1024  # the Hub's limit for a plain git file
LFS_PATTERNS = ("*.onnx", "*.safetensors")
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


@dataclass(frozen=True)
class SpaceConfig:
    """Write the folder a Hugging Face Space needs: app.py, README front matter, pinned requirements.txt,
    .gitattributes for LFS, the project's packages and the weights."""

    out: Positional[Annotated[Path, arg(metavar="OUT")]]
    """New or empty folder to write the Space into (then `git init`, add the Space as remote, `git lfs install`,
    commit, push)."""
    weights: Path | None = None
    """Model folder made by `heads export` to ship; default: the embedded weights/ (with its torch/ model, so that
    fine-tuning works on the Space)."""
    hardware: Literal["cpu", "gpu"] = "cpu"
    """cpu: onnxruntime and the CPU build of torch (fine-tuning on CPU); gpu: onnxruntime-gpu (CUDA 12, cuDNN 9) and
    PyPI's CUDA build of torch."""
    title: str = "Few-shot talking heads"
    """The Space's title in its front matter."""

    def __post_init__(self) -> None:
        if not self.title.strip() or "\n" in self.title:
            raise ConfigError("title must be one non-empty line")


def _pin(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        raise UserError(f"{name} is not installed here, so its version cannot be pinned: install the project with "
                        "the app and train extras (pip install -e '.[app,train]') and run heads space again") from None


def requirements(hardware: str) -> list[str]:
    """requirements.txt's lines: the project's base dependencies and EXTRA, each at the version installed here."""
    try:
        declared = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        raise UserError(f"{DISTRIBUTION} is not installed: pip install -e . first, so its dependencies are known") \
            from None
    names = [re.split(r"[\s<>=!~;\[]", spec, maxsplit=1)[0] for spec in declared if ";" not in spec]
    names += [name for name in EXTRA if name not in names]
    lines = []
    for name in names:
        if name in SKIPPED:
            continue
        version = _pin(name)
        public = version.split("+")[0]
        if name == "onnxruntime" and hardware == "gpu":
            lines.append(f"onnxruntime-gpu=={public}")  # released in step with onnxruntime
        elif name == "torch":
            lines.append(f"torch=={public}+cpu" if hardware == "cpu" else f"torch=={public}")
        else:
            lines.append(f"{name}=={version}")
    header = ["# Pinned by `heads space` to the versions it was run with; gradio comes from README.md's sdk_version."]
    if hardware == "cpu":  # the CPU build of torch: a fifth of the CUDA build's download, and all a CPU Space can use
        header.append(f"--extra-index-url {TORCH_CPU_INDEX}")
    else:
        header.append("# GPU Space: onnxruntime-gpu needs the CUDA 12 and cuDNN 9 libraries (docs/app.md).")
    return header + lines


def _front_matter(config: SpaceConfig) -> str:
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    fields = {
        "title": json.dumps(config.title, ensure_ascii=False),
        "emoji": "🗣️",
        "colorFrom": "indigo",
        "colorTo": "blue",
        "sdk": "gradio",
        "sdk_version": _pin("gradio"),
        "python_version": json.dumps(python),
        "app_file": "app.py",
        "pinned": "false",
        "license": "apache-2.0",
    }
    if config.hardware == "gpu":
        fields["suggested_hardware"] = "t4-small"
    return "---\n" + "".join(f"{key}: {value}\n" for key, value in fields.items()) + "---\n"


def _readme(config: SpaceConfig) -> str:
    other = "gpu" if config.hardware == "cpu" else "cpu"
    runtime = "onnxruntime-gpu" if other == "gpu" else "onnxruntime"
    return _front_matter(config) + f"""
# {config.title}

Animate a person from one to 32 photos (or a painting) with the head motion and expressions of a driving video:
Zakharov et al., *Few-Shot Adversarial Learning of Realistic Neural Talking Head Models* (ICCV 2019). Every result
is marked as synthetic; only animate people who agreed to it.

Written by `heads space --hardware {config.hardware}` from the few-shot-heads project.
`heads space --hardware {other}` writes the {other.upper()} variant (requirements.txt with {runtime}).
The app's limits come from HEADS_* variables of the Space (the project's docs/app.md).

From a program:

```python
from gradio_client import Client, handle_file

client = Client("OWNER/SPACE")
video, notes, avatar = client.predict(driving=handle_file("talk.mp4"), source=[handle_file("me.jpg")],
                                      api_name="/animate")
```
"""


def _copy_tree(source: Path, target: Path) -> None:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"))


def gitattributes(folder: Path) -> str:
    """LFS for every model file by pattern, and for any other file over the Hub's 10 MB limit by its path."""
    lines = [f"{pattern} filter=lfs diff=lfs merge=lfs -text" for pattern in LFS_PATTERNS]
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if path.stat().st_size > LFS_BYTES and not any(path.match(pattern) for pattern in LFS_PATTERNS):
            lines.append(f"{relative.replace(' ', '[[:space:]]')} filter=lfs diff=lfs merge=lfs -text")
    return "\n".join(lines) + "\n"


def write_space(config: SpaceConfig) -> Path:
    """Write the Space's folder; returns it."""
    out = config.out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} is not an empty folder: pass a new or empty one (nothing there is overwritten)")
    weights = config.weights or ROOT / "weights"
    if not (weights / "config.json").is_file():
        raise UserError(f"{weights} holds no model (config.json is missing): pass a folder made by `heads export`")
    lines = requirements(config.hardware)  # before anything is written: a missing pin fails with an empty folder
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / "app.py", out / "app.py")
    for package in PACKAGES:
        _copy_tree(ROOT / package, out / package)
    _copy_tree(weights, out / "weights")  # where demo.weights looks by default, beside the packages
    (out / "requirements.txt").write_text("\n".join(lines) + "\n")
    (out / "README.md").write_text(_readme(config))
    (out / ".gitattributes").write_text(gitattributes(out))
    return out


def space(config: SpaceConfig) -> Path:
    """`heads space`: write the folder and say what to do with it."""
    out = write_space(config)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
    print(f"wrote {out} ({size:.0f} MB, {config.hardware} Space): git init, git lfs install, add the Space as a "
          "remote, commit and push")
    return out
