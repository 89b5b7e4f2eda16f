"""What `heads prepare` reads: clips found under a source folder, who they show, and the train/test split.

Identity decides the split, so that no person is seen in both training and testing: a VoxCeleb `id*` folder when
there is one, else an identities file, else the file itself (one person per file).
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from faces.image_io import IMAGE_SUFFIXES
from faces.video import VIDEO_SUFFIXES

_VOXCELEB_ID = re.compile(r"^id\d+$")


@dataclass(frozen=True)
class Source:
    clip: str  # unique name of the clip, from its path relative to the source folder
    path: Path
    kind: Literal["video", "frames", "image"]  # frames: a folder of images that are the frames of one video
    identity: str
    relative: str  # path relative to the source folder, with forward slashes


def clip_name(relative: str) -> str:
    """A folder name from a relative path: `id10001/1zcIwhmdeo4/00001.mp4` -> `id10001__1zcIwhmdeo4__00001`."""
    stem = relative.rsplit(".", 1)[0] if "." in relative.rsplit("/", 1)[-1] else relative
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", stem.replace("/", "__")).strip("-.") or "clip"


def read_identities(path: Path) -> dict[str, str]:
    """file -> identity from a TSV or CSV file with columns `file` and `identity` (a header row is optional;
    without one the first two columns are taken). Lines starting with # are comments."""
    text = Path(path).read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        return {}
    delimiter = "\t" if "\t" in lines[0] else ","
    rows = list(csv.reader(lines, delimiter=delimiter))
    header = [c.strip().lower() for c in rows[0]]
    if "file" in header and "identity" in header:
        f, i = header.index("file"), header.index("identity")
        rows = rows[1:]
    else:
        f, i = 0, 1
    mapping = {}
    for number, row in enumerate(rows, 1):
        if len(row) <= max(f, i) or not row[f].strip() or not row[i].strip():
            raise ValueError(f"{path}: row {number} needs a file and an identity: {row}")
        mapping[row[f].strip().strip("/")] = row[i].strip()
    return mapping


def _voxceleb_identity(relative: str) -> str | None:
    return next((part for part in relative.split("/")[:-1] if _VOXCELEB_ID.match(part)), None)


def find_sources(src: Path, images: bool = False, identities: dict[str, str] | None = None) -> list[Source]:
    """Every clip under `src`, sorted by path: videos; folders of frames inside a VoxCeleb id folder; and, when
    `images` is set, other single images as one-frame clips."""
    src = Path(src)
    if not src.is_dir():
        raise FileNotFoundError(f"source folder {src} does not exist")
    identities = identities or {}
    found: list[tuple[str, Path, str]] = []
    frame_dirs: set[Path] = set()
    for path in sorted(p for p in src.rglob("*") if p.is_file() and not p.name.startswith(".")):
        relative = path.relative_to(src).as_posix()
        suffix = path.suffix.lower()
        if suffix in VIDEO_SUFFIXES:
            found.append((relative, path, "video"))
        elif suffix in IMAGE_SUFFIXES:
            if _voxceleb_identity(relative) is not None:
                if path.parent not in frame_dirs:
                    frame_dirs.add(path.parent)
                    found.append((path.parent.relative_to(src).as_posix(), path.parent, "frames"))
            elif images:
                found.append((relative, path, "image"))
    sources, names = [], set()
    for relative, path, kind in found:
        name = clip_name(relative)
        if name in names:  # a.mp4 and a.mov: keep both
            name = clip_name(relative.replace(".", "_"))
        names.add(name)
        identity = _voxceleb_identity(relative + "/") or identities.get(relative) or name
        sources.append(Source(name, path, kind, identity, relative))
    return sources


def split_of(identity: str, test_fraction: float) -> Literal["train", "test"]:
    """Deterministic identity-disjoint split: a hash of the name, so adding people never moves anyone."""
    h = int.from_bytes(hashlib.sha1(identity.encode("utf-8")).digest()[:8], "big") / 2.0**64
    return "test" if h < test_fraction else "train"


def shard_of(relative: str, count: int) -> int:
    """Which of `count` shards prepares the clip at `relative` (its path under the source folder, "/"-separated).

    A hash of the path (BLAKE2b, not Python's salted `hash`), so every machine of a job array computes the same
    answer without talking to the others, and a clip stays in its shard when others are added. A different hash
    from `split_of`'s, so that shards are not skewed towards either split.
    """
    return int.from_bytes(hashlib.blake2b(relative.encode("utf-8"), digest_size=8).digest(), "big") % count
