"""`heads prepare --to-shards`: a prepared folder -> WebDataset tar shards plus a JSON index.

At VoxCeleb2's scale the prepared layout is some hundred million JPEG files, which file systems and object stores
serve slowly one by one. A shard is one tar file of ~100 clips read front to back, so a loader opens a few hundred
files instead. The shards follow WebDataset's conventions (members grouped by the key before the first dot of
their base name, one sample per key, the members of a sample adjacent), so `webdataset` and `tar` read them too:

    OUT/
      index.json               what `read_index` returns: format, the prepared folder's config.json and crop
                               resolution, the split sizes, and per shard its file name, split, bytes and
                               [clip, frames] of its samples in file order
      manifest.jsonl           the prepared folder's manifest (meta.json and split of every clip)
      train-000000.tar ...     the clips of one split, ~clips_per_shard each; then test-000000.tar ...
        <key>.json             the clip's manifest line (meta.json plus "split")
        <key>.npz              its landmarks.npz, byte for byte
        <key>.00000.jpg ...    its frames, byte for byte, in time order (row = the number in the name)

<key> is the clip's name with "%" and "." escaped as %25 and %2E (a dot would end WebDataset's key early); the
json member holds the name itself. Shards hold one split each, so a training loader never reads the test clips.
Within a split the clips are ordered by a hash of their name (as `--shard K/N` cuts the source), which mixes the
people of one VoxCeleb id folder over many shards: consecutive clips of one shard are mostly different people.
The bytes are reproducible (fixed member order, times and owners), so the same prepared folder gives the same
shards on every machine.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import time
from pathlib import Path

from base.errors import UserError
from faces.config import ShardsConfig

FORMAT = "heads-webdataset/1"
INDEX = "index.json"
MANIFEST = "manifest.jsonl"
SPLITS = ("train", "test")


def sample_key(clip: str) -> str:
    """The WebDataset key of a clip: its name with '%' and '.' escaped, since the key ends at the first dot."""
    return clip.replace("%", "%25").replace(".", "%2E")


def frame_member(key: str, row: int) -> str:
    """Tar member name of frame `row` of the sample `key` (the folder layout's file name after the key)."""
    return f"{key}.{row:05d}.jpg"


def shard_name(split: str, number: int) -> str:
    return f"{split}-{number:06d}.tar"


def _hash_order(clip: str) -> bytes:
    return hashlib.blake2b(clip.encode("utf-8"), digest_size=8).digest()


def read_index(folder: str | Path) -> dict:
    """The index of a shard folder, checked to be one this code wrote."""
    path = Path(folder) / INDEX
    if not path.is_file():
        raise UserError(f"{path} not found: convert a prepared folder with "
                        f"`heads prepare --to-shards PREPARED {folder}`")
    index = json.loads(path.read_text())
    if index.get("format") != FORMAT:
        raise UserError(f"{path} is in format {index.get('format')!r}; this version reads {FORMAT!r} (convert again)")
    return index


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0  # fixed times and owners: reproducible bytes
    tar.addfile(info, io.BytesIO(data))


def _write_shard(path: Path, prepared: Path, entries: list[dict]) -> int:
    """Write the clips' samples to `path` (through a temporary name, so a killed run leaves no half shard)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            clip = entry["clip"]
            folder = prepared / "clips" / clip
            key = sample_key(clip)
            _add(tar, f"{key}.json", (json.dumps(entry) + "\n").encode("utf-8"))
            _add(tar, f"{key}.npz", (folder / "landmarks.npz").read_bytes())
            for row in range(entry["frames"]):
                frame = folder / f"{row:05d}.jpg"
                if not frame.is_file():
                    raise UserError(f"{frame} is missing: the manifest lists {entry['frames']} frames for {clip}; "
                                    f"run `heads prepare` on {prepared} again to repair it")
                _add(tar, frame_member(key, row), frame.read_bytes())
    os.replace(tmp, path)
    return path.stat().st_size


def to_shards(config: ShardsConfig) -> dict:
    """Write the shards and index of `config.prepared` into `config.out` (see the module docstring); returns the
    index. An earlier conversion in OUT is replaced (its shards that the new index does not list are removed)."""
    prepared, out = Path(config.prepared), Path(config.out)
    manifest = prepared / MANIFEST
    if not manifest.is_file():
        raise UserError(f"{manifest} not found: {prepared} is not a folder written by `heads prepare`")
    entries = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    odd = sorted({e["split"] for e in entries} - set(SPLITS))
    if odd:
        raise UserError(f"{manifest} has clips in splits {odd}; only {SPLITS} are known")
    before = None
    if out.exists() and any(out.iterdir()):
        if not (out / INDEX).is_file():
            raise UserError(f"{out} is not empty and holds no {INDEX}: give a new folder for the shards")
        before = json.loads((out / INDEX).read_text())
    out.mkdir(parents=True, exist_ok=True)
    settings = json.loads((prepared / "config.json").read_text()) if (prepared / "config.json").is_file() else None

    from tqdm import tqdm

    bar = tqdm(total=len(entries), unit="clip", disable=not config.progress, dynamic_ncols=True)
    start = time.perf_counter()
    shards, splits = [], {}
    for split in SPLITS:
        clips = sorted((e for e in entries if e["split"] == split), key=lambda e: _hash_order(e["clip"]))
        groups = [clips[i : i + config.clips_per_shard] for i in range(0, len(clips), config.clips_per_shard)]
        for number, group in enumerate(groups):
            name = shard_name(split, number)
            size = _write_shard(out / name, prepared, group)
            shards.append({"name": name, "split": split, "bytes": size,
                           "clips": [[e["clip"], e["frames"]] for e in group]})
            bar.update(len(group))
        splits[split] = {"shards": len(groups), "clips": len(clips), "frames": sum(e["frames"] for e in clips)}
    bar.close()
    index = {
        "format": FORMAT,
        "prepared": str(prepared),
        "settings": settings,
        "resolution": entries[0]["resolution"] if entries else None,  # one per folder (`prepare` checks the crop)
        "clips_per_shard": config.clips_per_shard,
        "members": {"json": "manifest line", "npz": "landmarks.npz", "NNNNN.jpg": "frame NNNNN"},
        "splits": splits,
        "shards": shards,
    }
    (out / MANIFEST).write_text(manifest.read_text())
    tmp = out / f".{INDEX}.tmp"
    tmp.write_text(json.dumps(index, indent=1) + "\n")
    os.replace(tmp, out / INDEX)
    if before is not None:
        for stale in {s["name"] for s in before.get("shards", [])} - {s["name"] for s in shards}:
            (out / stale).unlink(missing_ok=True)
    seconds = time.perf_counter() - start
    if config.progress:
        total = sum(s["bytes"] for s in shards)
        counts = ", ".join(f"{split}: {size['shards']}" for split, size in splits.items())
        print(f"heads prepare --to-shards: {len(entries)} clips in {len(shards)} shards ({counts}), "
              f"{total / 2**20:.0f} MB in {seconds:.1f} s -> {out}")
    return index
