"""Text that leaves the machine (the app's page and API answers, files handed to others) must not tell where things
live on it: the folders above a file name say who runs the server and how it is laid out, and they mean nothing to
the reader anyway. `public` keeps every name and drops the folders above it. And `cache_dir`, the one folder where
derived files that can be rebuilt at any time are kept.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# An absolute path: a slash that does not continue a word, a URL (scheme://host/...) or another path, then anything
# up to a space, a quote, a bracket or a separator; or a Windows drive path.
_POSIX = re.compile(r"(?<![\w.:/~-])/[^\s'\"`()<>\[\]{},;:]+")
_WINDOWS = re.compile(r"\b[A-Za-z]:\\[^\s'\"`()<>\[\]{},;:]+")


def _name(match: re.Match[str]) -> str:
    text = match.group(0)
    trail = len(text) - len(text.rstrip("."))  # a sentence's full stop is not part of the path
    path = text[: len(text) - trail].rstrip("/\\")
    name = re.split(r"[/\\]", path)[-1] if path else ""
    return (name or "/") + "." * trail


def public(text: str) -> str:
    """`text` with every absolute path cut to its last component: "/srv/app/weights/torch" -> "torch"."""
    return _WINDOWS.sub(_name, _POSIX.sub(_name, text))


def cache_dir() -> Path:
    """Derived files that can be rebuilt at any time (dlib's HOG detector in binary form, the dlib ResNet's port):
    $HEADS_CACHE, else ~/.cache/heads."""
    return Path(os.environ.get("HEADS_CACHE", Path.home() / ".cache" / "heads"))
