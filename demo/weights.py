"""Where model weights come from: the embedded default in weights/, a local folder, or a Hugging Face repo.

A model asked for by name (--weights, or $HEADS_WEIGHTS) must load or fail with a clear error: only the embedded
default may be missing quietly (a clone without weights/ still animates, with the warp). Wherever the model is shown
to people (the app's status line, notes), it goes by `weights_label`, never by a path of the server.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from base.errors import UserError

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
ENV_VAR = "HEADS_WEIGHTS"
_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def requested(spec: str | os.PathLike | None = None) -> str | None:
    """The model asked for by name: `spec`, else $HEADS_WEIGHTS; None when neither was given (the embedded default)."""
    if spec not in (None, ""):
        return str(spec)
    return os.environ.get(ENV_VAR) or None


def weights_label(spec: str | os.PathLike | None = None) -> str:
    """How a model folder is named to people: "embedded", a Hub repo id, or a local folder's own name (never the
    folders above it, which tell a visitor of the app about the server's filesystem)."""
    named = requested(spec)
    if named is None:
        return "embedded"
    path = Path(named).expanduser()
    if not path.is_dir() and _REPO_ID.match(named):
        return named
    return path.resolve().name or named


def resolve_weights(spec: str | os.PathLike | None = None) -> Path:
    """A folder holding a model: `spec`, else $HEADS_WEIGHTS, else the embedded weights/.

    A spec that is not an existing folder but looks like `owner/name` is fetched from the Hugging Face Hub (cached
    by huggingface-hub, so it works offline once fetched).
    """
    spec = spec if spec not in (None, "") else os.environ.get(ENV_VAR) or DEFAULT_WEIGHTS
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UserError(f"{path} holds no model (config.json is missing); pass a folder made by `heads export`")
        return path
    if isinstance(spec, str) and _REPO_ID.match(spec):
        return _download(spec)
    raise UserError(f"weights not found: {spec} is neither a folder nor a Hugging Face repo id (owner/name)")


def _download(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError as error:
        raise UserError(f"fetching {repo_id} needs huggingface-hub: pip install huggingface-hub") from error
    try:
        return Path(snapshot_download(repo_id))
    except Exception as error:  # offline, unknown repo, gated repo: all end the same way for the user
        raise UserError(
            f"could not fetch weights {repo_id!r} from the Hugging Face Hub ({type(error).__name__}: {error}). "
            "Without a network connection, pass a local folder with --weights DIR or set HEADS_WEIGHTS."
        ) from error
