"""Episodes streamed from the tar shards of `heads prepare --to-shards` (`faces/shards.py`), split by rank and worker.

The folder layout's loader (`PreparedEpisodes` drawn by `EpisodeSampler`) reads any clip at any time. A shard is
read front to back, so here the order follows the shards instead, and only the order differs:

- Pass e over the videos is the folder layout's pass e: the clip of video v gives the episode the folder layout
  gives it in that pass, dataset index i = v + V·(e·V + position of v in the sampler's permutation of pass e),
  through the same `EpisodeMaker`, so its frames, landmarks and augmentation are identical, byte for byte.
- In pass e the shards of the split are permuted (seeded by (seed, e)) and dealt out to the `world × workers`
  slots, slot = rank · workers + worker: slot s reads shards s, s + slots, ... of that order. So every clip is read
  by exactly one DataLoader worker of one process per pass, and no two workers open the same file.
- A worker reads its shards in turn and passes their clips through a shuffle buffer of `shuffle` clips (seeded by
  the pass and the slot), so that one batch is not always the same neighbours of one shard. Only the chosen K + 1
  JPEGs of a clip are kept (~0.2 MB) while it waits in the buffer; they are decoded when it leaves.
- The DataLoader takes a batch from each worker in turn, so a process's batches are its workers' streams
  interleaved: a pure function of (seed, rank, world, workers, batch). A run resumed at step s gives each worker
  the part of the one that delivered step s + w at the start, and skips the batches that part had delivered before
  s, computed from the index without reading them: the resume is exact when the number of processes and of
  workers is the one the run started with (a resumed run keeps its config.json, hence its workers).

Processes may be at different passes at one time (their slots hold different numbers of clips); that changes
nothing about which episodes a pass holds. A split needs at least `world × workers` shards that hold clips, or some
worker would have nothing to read: `check_workers` says so before the loader starts.
"""

from __future__ import annotations

import copy
import io
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import count
from pathlib import Path

import cv2
import numpy as np
import torch

from base.errors import UserError
from faces.shards import read_index, sample_key
from training.data import EpisodeSampler
from training.prepared import Augment, EpisodeMaker

SHARD_ORDER, BUFFER_ORDER = 1, 2  # seed words that keep the shard and buffer draws apart from the episodes' own


@dataclass(frozen=True)
class _Shard:
    name: str
    clips: tuple[tuple[str, int, int], ...]  # (sample key, video, frames) of the clips of this split it holds


@dataclass
class _Waiting:
    """A clip read from its shard, waiting in the shuffle buffer: what its episode needs, not yet decoded."""

    index: int  # dataset index of the episode (seeds the frame choice and augmentation)
    video: int
    where: str  # shard and key, for error messages
    rng: np.random.Generator | None = None
    rows: np.ndarray | None = None
    arrays: dict | None = None
    jpegs: dict | None = None  # row -> JPEG bytes, only the rows chosen (all until the landmarks are read)


def shuffle_order(size: int, buffer: int, rng: np.random.Generator) -> list[int]:
    """The order in which a shuffle buffer of `buffer` items emits `size` items read in order 0, 1, ...: each new
    item goes in, and once the buffer is full a random one comes out. Computed from the count alone, so a resumed
    worker can skip what it emitted before without reading it."""
    held: list[int] = []
    order: list[int] = []
    for position in range(size):
        held.append(position)
        if len(held) >= buffer:
            j = int(rng.integers(len(held)))
            held[j], held[-1] = held[-1], held[j]
            order.append(held.pop())
    while held:
        j = int(rng.integers(len(held)))
        held[j], held[-1] = held[-1], held[j]
        order.append(held.pop())
    return order


class ShardEpisodes(torch.utils.data.IterableDataset):
    """Endless stream of episodes of K+1 frames from the shards of one split (see the module docstring).

    Same arguments and attributes as `PreparedEpisodes` (num_videos, resolution, k; video numbers are the clips'
    order by name, as there; `names` are the clips' names), plus `shuffle`, the clips of each worker's shuffle
    buffer. `at` places the stream of one process at a training step; a fresh object is at step 0 of process 0
    of 1.
    """

    def __init__(
        self,
        root: str | Path,
        k: int = 8,
        split: str | None = "train",
        resolution: int | None = None,
        augment: Augment | None = None,
        seed: int = 0,
        min_frames: int = 1,
        shuffle: int = 32,
    ):
        self.root = Path(root)
        index = read_index(self.root)
        shards = [s for s in index["shards"] if split is None or s["split"] == split]
        names = sorted({clip for s in shards for clip, frames in s["clips"] if frames >= min_frames})
        if not names:
            raise ValueError(f"{self.root}: no clip in split {split!r} with at least {min_frames} frames")
        video = {name: v for v, name in enumerate(names)}
        self.shards = [
            _Shard(s["name"], tuple((sample_key(c), video[c], f) for c, f in s["clips"] if f >= min_frames))
            for s in shards
        ]
        self.shards = [s for s in self.shards if s.clips]
        self.names = names  # clip names by video number
        self.num_videos, self.k, self.seed, self.augment = len(names), k, seed, augment
        self.maker = EpisodeMaker(k, int(index["resolution"]), resolution, augment, seed)
        self.resolution = self.maker.resolution
        if shuffle < 1:
            raise ValueError("shuffle must be at least 1 (1: no shuffle buffer)")
        self.shuffle = shuffle
        self.start_step, self.rank, self.world, self.batch = 0, 0, 1, 1

    def at(self, step: int, rank: int = 0, world: int = 1, batch: int = 1) -> ShardEpisodes:
        """This stream for process `rank` of `world`, from training step `step` on, with `batch` episodes a step."""
        placed = copy.copy(self)
        placed.start_step, placed.rank, placed.world, placed.batch = step, rank, world, batch
        return placed

    def check_workers(self, slots: int) -> None:
        """Refuse `slots` = processes × DataLoader workers readers when fewer shards hold clips of the split."""
        if len(self.shards) < slots:
            raise UserError(
                f"{self.root}: {len(self.shards)} shards hold clips for training, fewer than the {slots} readers "
                "(processes × max(1, --data.workers)) that split them; convert again with a smaller "
                "--clips-per-shard, or use fewer workers"
            )

    # -------------------------------------------------------------------------------------------- the plan

    def _episodes(self, epoch: int) -> np.ndarray:
        """Dataset index of each video's episode in pass `epoch`, as `EpisodeSampler` numbers it."""
        perm = EpisodeSampler(self.num_videos, 1, self.seed).permutation(epoch)
        index = np.empty(self.num_videos, np.int64)
        index[perm] = perm + self.num_videos * (epoch * self.num_videos + np.arange(self.num_videos))
        return index

    def _reading(self, epoch: int, slot: int, slots: int) -> list[tuple[int, int]]:
        """(shard, clip within its list) of the clips slot `slot` reads in pass `epoch`, in reading order."""
        order = np.random.default_rng((self.seed, epoch, SHARD_ORDER)).permutation(len(self.shards))
        return [(int(s), c) for s in order[slot::slots] for c in range(len(self.shards[s].clips))]

    def _emission(self, epoch: int, slot: int, slots: int, size: int) -> list[int]:
        rng = np.random.default_rng((self.seed, epoch, slot, slots, BUFFER_ORDER))
        return shuffle_order(size, self.shuffle, rng)

    # -------------------------------------------------------------------------------------------- reading

    def __iter__(self) -> Iterator[dict]:
        info = torch.utils.data.get_worker_info()
        return self.stream(info.id, info.num_workers) if info is not None else self.stream()

    def stream(self, worker: int = 0, workers: int = 1) -> Iterator[dict]:
        """The episodes of DataLoader worker `worker` of `workers` (what `iter` gives inside that worker)."""
        for epoch, reading, emission in self._passes(worker, workers):
            yield from self._pass(epoch, reading, emission)

    def plan(self, worker: int = 0, workers: int = 1) -> Iterator[int]:
        """The dataset indices of the episodes `stream` yields, in its order, from the index alone (no reading): the
        folder layout's `PreparedEpisodes[i]` is the same episode."""
        for epoch, reading, emission in self._passes(worker, workers):
            episodes = self._episodes(epoch)
            for position in emission:
                shard, clip = reading[position]
                yield int(episodes[self.shards[shard].clips[clip][1]])

    def _passes(self, worker: int, workers: int) -> Iterator[tuple[int, list[tuple[int, int]], list[int]]]:
        """(pass, reading order, emission order) of one worker, endlessly, from this stream's step on."""
        # A fresh DataLoader asks worker w for its batches w, w + workers, ...: placed at step s, worker w takes the
        # part of the worker that step s + w came from when the run started, less the batches it delivered before s.
        role = (worker + self.start_step) % workers
        slots, slot = self.world * workers, self.rank * workers + role
        self.check_workers(slots)
        skip = self.batch * len(range(role, self.start_step, workers))
        for epoch in count():
            reading = self._reading(epoch, slot, slots)
            if skip >= len(reading):
                skip -= len(reading)
                continue
            emission = self._emission(epoch, slot, slots, len(reading))[skip:]
            skip = 0
            yield epoch, reading, emission

    def _pass(self, epoch: int, reading: list[tuple[int, int]], emission: list[int]) -> Iterator[dict]:
        """The episodes at reading positions `emission`, in that order, reading the shards once front to back and
        holding a clip only from its reading to its turn (at most the buffer's size)."""
        episodes = self._episodes(epoch)
        wanted: dict[int, dict[str, tuple[int, int, int]]] = {}  # shard -> key -> (position, video, frames)
        for position in set(emission):
            shard, clip = reading[position]
            key, video, frames = self.shards[shard].clips[clip]
            wanted.setdefault(shard, {})[key] = (position, video, frames)
        shard_order = list(dict.fromkeys(shard for shard, _ in reading))
        held: dict[int, _Waiting] = {}
        turn = 0
        for shard in shard_order:
            if shard not in wanted:
                continue
            for position, waiting in self._read(shard, wanted[shard], episodes):
                held[position] = waiting
                while turn < len(emission) and emission[turn] in held:
                    yield self._finish(held.pop(emission[turn]))
                    turn += 1
        if turn != len(emission):
            raise OSError(f"{self.root}: the shards gave {turn} of the {len(emission)} clips their index lists")

    def _read(self, shard: int, wanted: dict[str, tuple[int, int, int]], episodes: np.ndarray):
        """(reading position, _Waiting) for each wanted sample of one shard, in file order; stops once all are in."""
        name = self.shards[shard].name
        path = self.root / name
        left = len(wanted)
        current: tuple[str, int, _Waiting] | None = None
        with tarfile.open(path, "r:") as tar:  # seekable: the frames not chosen are skipped, not read
            for member in tar:
                if not member.isfile():
                    continue
                base = member.name.rsplit("/", 1)[-1]
                key, _, field = base.partition(".")
                if current is not None and key != current[0]:
                    yield current[1], self._complete(current[2], current[0])
                    current = None
                    left -= 1
                    if left == 0:
                        return
                if key not in wanted:
                    continue
                if current is None:
                    position, video, frames = wanted[key]
                    current = (key, position, _Waiting(int(episodes[video]), video, f"{path}:{key}", jpegs={}))
                waiting = current[2]
                if field == "npz":
                    with np.load(io.BytesIO(_bytes(tar, member))) as data:
                        waiting.arrays = self.maker.landmarks(data)
                    size = len(waiting.arrays["points"])
                    if size != wanted[key][2]:
                        raise OSError(f"{waiting.where}: {size} frames, the index says {wanted[key][2]}")
                    waiting.rng, waiting.rows = self.maker.rows(waiting.index, size)
                    chosen = {int(r) for r in waiting.rows}
                    waiting.jpegs = {r: b for r, b in waiting.jpegs.items() if r in chosen}
                elif field.endswith(".jpg") and field[:-4].isdigit():
                    row = int(field[:-4])
                    if waiting.rows is None or row in waiting.rows:
                        waiting.jpegs[row] = _bytes(tar, member)
        if current is not None:
            yield current[1], self._complete(current[2], current[0])
            left -= 1
        if left:
            raise OSError(f"{path}: {left} of the samples its index lists are not in it")

    def _complete(self, waiting: _Waiting, key: str) -> _Waiting:
        if waiting.rows is None:
            raise OSError(f"{waiting.where}: no {key}.npz (landmarks) in the sample")
        missing = sorted({int(r) for r in waiting.rows} - set(waiting.jpegs))
        if missing:
            raise OSError(f"{waiting.where}: frames {missing} are not in the sample")
        return waiting

    def _finish(self, waiting: _Waiting) -> dict:
        """Decode the chosen frames and build the episode, as `PreparedEpisodes.__getitem__` does."""
        frames = np.stack([
            self.maker.frame(cv2.imdecode(np.frombuffer(waiting.jpegs[int(r)], np.uint8), cv2.IMREAD_COLOR),
                             f"{waiting.where} frame {int(r)}")
            for r in waiting.rows
        ])
        return self.maker.episode(waiting.rng, waiting.video, waiting.rows, frames, waiting.arrays)


def _bytes(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = tar.extractfile(member)
    if handle is None:
        raise OSError(f"{tar.name}: cannot read {member.name}")
    return handle.read()
