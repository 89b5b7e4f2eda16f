"""`heads bench soak`: concurrent `gradio_client` clients send a mix of good and bad requests to the web app, and
the report says whether the server stays correct and its memory stays level.

A server that animates a few clips and then dies of a slow leak, or answers the hundredth bad upload with a
traceback, fails its visitors only after a demo has gone well; this is the check that runs long enough to see it.
The app is launched as its own process (`python app.py`, configured by environment variables as a Space is), so
its resident memory (/proc/PID/status) is the server's alone, not the clients'. Every bad input must come back as
the app's own one-sentence refusal, counted as refused correctly; anything else is a failure.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from base.bench_report import BenchReport
from base.errors import ConfigError, UserError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = "LivePortrait/assets/examples"
CUT = "only its first"  # the notice of a driving clip cut by the limits (demo.limits.cut_notice)
UNEXPECTED = "Something went wrong"  # the app's answer to an exception it did not foresee: a bug, never a refusal
IDLE_SETTLE = 2.0  # seconds between the last answer and an idle sample: the server finishes its bookkeeping
STARTUP_SECONDS = 300.0  # the app loads its detector and model before it listens; a loaded 2-core VM is slow


@dataclass(frozen=True)
class SoakConfig:
    """Run concurrent clients against the web app and report failures, latency and the server's memory as JSON."""

    out: Path = Path("runs/bench/soak.json")
    """Where the JSON report is written."""
    clients: int = 4
    """Concurrent gradio_client clients, one thread each."""
    jobs: int = 25
    """Requests each client sends, one after the other."""
    max_frames: int = 12
    """HEADS_MAX_FRAMES of the launched app: the mix's clips are longer (but one, cut here to half of it), so the
    limit is soaked too."""
    renderer: Literal["auto", "warp"] = "auto"
    """Renderer of the good requests (one kind of the mix always asks for the neural generator)."""
    url: str | None = None
    """A running app to soak instead of launching app.py; its memory is then read only when --pid is given."""
    pid: int | None = None
    """Process id of the app at --url, whose resident memory is sampled."""
    app: Path | None = None
    """The app to launch (default: the project's app.py)."""
    media: Path | None = None
    """The public media folder (default: $HEADS_MEDIA, else shared/media beside the checkout)."""
    memory_every: int = 10
    """Sample the server's memory after every this many finished jobs."""
    timeout: float = 600.0
    """Seconds one request may take, queueing included, before it counts as failed."""

    def __post_init__(self) -> None:
        if self.clients < 1 or self.jobs < 1 or self.max_frames < 2 or self.memory_every < 1 or self.timeout <= 0:
            raise ConfigError("bench soak needs clients, jobs, memory_every >= 1, max_frames >= 2, timeout > 0")
        if self.pid is not None and self.url is None:
            raise ConfigError("--pid names the process behind --url; without --url the app is launched here")


@dataclass(frozen=True)
class Kind:
    """One kind of request in the mix, and what the server must answer."""

    name: str
    photos: tuple[str, ...]  # under the media folder, or files this run writes: see `_inputs`
    driving: str
    refusal: str | None = None  # a bad input: a pattern the app's one-sentence refusal must match
    cut: bool = True  # a good input: whether the clip is longer than the limit (a notice, `max_frames` frames)
    options: tuple[tuple[str, object], ...] = ()  # further keywords of /animate


PHOTO, CLIP = f"{EXAMPLES}/driving/d19.jpg", f"{EXAMPLES}/driving/d18.mp4"
# Ordered so that the first six jobs (the test's tiny soak) hold good photos, bad uploads and a long clip.
MIX = (
    Kind("photo", (PHOTO,), CLIP),
    Kind("animal", (f"{EXAMPLES}/source/s30.jpg",), CLIP, refusal=r"No human face was found in s30\.jpg"),
    Kind("short clip", (f"{EXAMPLES}/driving/d9.jpg",), "short.mp4", cut=False),
    Kind("text as video", (PHOTO,), "clip.mp4", refusal=r"clip\.mp4 cannot be read as a video"),
    Kind("long clip", (f"{EXAMPLES}/source/s12.jpg",), f"{EXAMPLES}/driving/d6.mp4"),
    Kind("neural", (f"{EXAMPLES}/source/s42.jpg",), f"{EXAMPLES}/driving/d19.mp4", options=(("renderer", "neural"),)),
    Kind("text as photo", ("photo.jpg",), CLIP, refusal=r"photo\.jpg is not a readable image"),
    Kind("options", (f"{EXAMPLES}/driving/d30.jpg",), f"{EXAMPLES}/driving/d3.mp4",
         options=(("side_by_side", True), ("output", "face"), ("mode", "absolute"), ("smoothing", 0.0))),
    Kind("bad box", (PHOTO,), CLIP, refusal=r"four numbers", options=(("box", "1 2 3"),)),
    Kind("two photos", (PHOTO, "mirrored.jpg"), f"{EXAMPLES}/driving/d0.mp4"),
)


@dataclass
class Outcome:
    job: int
    client: int
    kind: str
    seconds: float
    status: Literal["ok", "refused", "failed"]
    detail: str = ""


def media_folder(media: Path | None) -> Path:
    """The public media folder: `media` if given, else $HEADS_MEDIA, else shared/media beside the checkout."""
    folder = media or Path(os.environ.get("HEADS_MEDIA", ROOT.parent / "shared" / "media"))
    if not (folder / EXAMPLES).is_dir():
        raise UserError(f"the public media were not found under {folder} (set --media or HEADS_MEDIA)")
    return folder


def _inputs(media: Path, work: Path, max_frames: int) -> dict[str, Path]:
    """Every file the mix names, by its name in `MIX`: the public media, and the bad and short files made here (in
    the run's own temporary folder, never in the checkout)."""
    from faces.video import VideoReader, VideoWriter, probe

    files = {name: media / name for kind in MIX for name in (*kind.photos, kind.driving) if "/" in name}
    (work / "clip.mp4").write_text("this is a text file, not a video\n")
    (work / "photo.jpg").write_text("this is a text file, not a photo\n")
    cv2.imwrite(str(work / "mirrored.jpg"), cv2.imread(str(media / PHOTO))[:, ::-1])  # a second photo of him
    short = work / "short.mp4"  # under the limit: no notice, every frame animated
    with VideoReader(media / CLIP) as reader, VideoWriter(short, probe(media / CLIP).fps) as writer:
        for _, frame in reader.sample(max_frames=max_frames // 2):
            writer.write(frame)
    files.update({name: work / name for name in ("clip.mp4", "photo.jpg", "mirrored.jpg", "short.mp4")})
    return files


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """app.py in its own process on a free local port, configured through the environment as on a Space; its
    temporary files (uploads, results) go to a folder of this run. `python` runs it (default: this interpreter; the
    Space test gives a fresh venv's); `extra_env` adds to its environment (e.g. HEADS_WEIGHTS)."""

    def __init__(self, app: Path, work: Path, max_frames: int, python: str | Path = sys.executable,
                 extra_env: dict[str, str] | None = None):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.temp = work / "server-tmp"
        self.temp.mkdir()
        env = {**os.environ, "HEADS_MAX_FRAMES": str(max_frames), "GRADIO_SERVER_NAME": "127.0.0.1",
               "GRADIO_SERVER_PORT": str(self.port), "GRADIO_ANALYTICS_ENABLED": "False", "TMPDIR": str(self.temp),
               "GRADIO_TEMP_DIR": str(self.temp / "gradio"), "PYTHONUNBUFFERED": "1", **(extra_env or {})}
        self.log = work / "server.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen([str(python), str(app)], cwd=app.parent, env=env, stdout=log,
                                            stderr=subprocess.STDOUT)
        self.pid = self.process.pid

    def wait(self, seconds: float = STARTUP_SECONDS) -> float:
        """Block until the app answers; the seconds it took. An app that exits or never answers is an error with
        the end of its log."""
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            if self.process.poll() is not None:
                raise UserError(f"the app exited with status {self.process.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(self.url + "config", timeout=5):
                    return time.perf_counter() - start
            except OSError:
                time.sleep(1.0)
        raise UserError(f"the app did not answer within {seconds:.0f} s:\n{self.tail()}")

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def logged_errors(self) -> int:
        """Tracebacks in the server's log: each an exception the app did not turn into a refusal."""
        return self.log.read_text(errors="replace").count("Traceback (most recent call last)")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def memory(pid: int | None, temp: Path | None = None) -> dict[str, float | int | None]:
    """The server's resident memory (MB, now and its peak), threads and open files from /proc, and the size of
    its temporary files (MB): the four things a leak grows."""
    sample: dict[str, float | int | None] = {"rss_mb": None, "peak_rss_mb": None, "threads": None, "fds": None}
    if pid is not None:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            sample["rss_mb"] = round(int(fields["VmRSS"].split()[0]) / 1024, 1)
            sample["peak_rss_mb"] = round(int(fields["VmHWM"].split()[0]) / 1024, 1)
            sample["threads"] = int(fields["Threads"])
            sample["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
        except (OSError, KeyError, ValueError):
            pass
    if temp is not None:
        size = 0
        for file in temp.rglob("*"):
            with contextlib.suppress(OSError):  # the server deletes its temporary files as it goes
                size += file.stat().st_size if file.is_file() else 0
        sample["temp_mb"] = round(size / 1e6, 1)
    return sample


class Soak:
    """The clients' threads and what they found: outcomes in order of finishing, memory samples every
    `memory_every` finished jobs."""

    def __init__(self, config: SoakConfig, url: str, files: dict[str, Path], downloads: Path, pid: int | None,
                 temp: Path | None):
        self.config, self.url, self.files, self.downloads = config, url, files, downloads
        self.pid, self.temp = pid, temp
        self.outcomes: list[Outcome] = []
        self.crashes: list[str] = []
        self.samples = [{"jobs": 0, "idle": True, **memory(pid, temp)}]
        self._lock = threading.Lock()
        # Halfway, after jobs 0 .. half-1, every client waits for the others, so that one sample finds the server
        # between requests, as the last one does: samples taken while jobs run differ by whatever those jobs hold
        # at that moment. Both follow whole rounds of the mix (100 jobs, rounds of 10), so the server's persona
        # cache holds the same kinds of people at both.
        self.half = config.clients * config.jobs // 2
        self._halfway = threading.Barrier(config.clients, action=self._idle_sample)

    def _idle_sample(self) -> None:
        time.sleep(IDLE_SETTLE)
        self.samples.append({"jobs": len(self.outcomes), "idle": True, **memory(self.pid, self.temp)})

    def run(self) -> float:
        """All clients to the end; the wall-clock seconds."""
        start = time.perf_counter()
        threads = [threading.Thread(target=self._client, args=(c,), name=f"soak-{c}")
                   for c in range(self.config.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self._idle_sample()
        return time.perf_counter() - start

    def _client(self, client: int) -> None:
        """One client's jobs; a crash of the soak's own code ends it, counted (its missing jobs fail the soak)."""
        try:
            self._jobs(client)
        except Exception as error:  # noqa: BLE001
            with self._lock:
                self.crashes.append(f"client {client}: {type(error).__name__}: {error}"[:500])
            self._halfway.abort()  # the others go on past the halfway sample

    def _jobs(self, client: int) -> None:
        from gradio_client import Client

        folder = self.downloads / f"client-{client}"
        try:
            api, broken = Client(self.url, verbose=False, download_files=str(folder)), ""
        except Exception as error:  # noqa: BLE001 - then each of this client's jobs fails with the reason
            api, broken = None, f"cannot connect: {type(error).__name__}: {error}"[:500]
        waited = False
        for j in range(self.config.jobs):
            job = j * self.config.clients + client  # clients interleave over the mix
            if job >= self.half and not waited:
                waited = self._halfway_wait()
            kind = MIX[job % len(MIX)]
            start = time.perf_counter()
            status, detail = self._one(api, kind) if api is not None else ("failed", broken)
            outcome = Outcome(job, client, kind.name, round(time.perf_counter() - start, 3), status, detail)
            with self._lock:
                self.outcomes.append(outcome)
                if len(self.outcomes) % self.config.memory_every == 0:
                    self.samples.append({"jobs": len(self.outcomes), "idle": False, **memory(self.pid, self.temp)})
            shutil.rmtree(folder, ignore_errors=True)  # the client's downloads: only the server's memory counts
        if not waited:  # all of this client's jobs came before the half
            self._halfway_wait()

    def _halfway_wait(self) -> bool:
        with contextlib.suppress(threading.BrokenBarrierError):
            self._halfway.wait()
        return True

    def _one(self, api, kind: Kind) -> tuple[Literal["ok", "refused", "failed"], str]:
        """Send one request and judge the answer: (status, what was wrong or what the refusal said)."""
        from gradio_client import handle_file

        options = {"renderer": self.config.renderer, **dict(kind.options)}
        try:
            job = api.submit(driving=handle_file(str(self.files[kind.driving])),
                             source=[handle_file(str(self.files[p])) for p in kind.photos], api_name="/animate",
                             **options)
            video, notes, avatar = job.result(timeout=self.config.timeout)
        except Exception as error:  # noqa: BLE001 - every way a request can fail is a finding
            message = str(error)
            if kind.refusal is None:
                return "failed", f"{type(error).__name__}: {message}"[:500]
            if UNEXPECTED in message or not re.search(kind.refusal, message):
                return "failed", f"not the expected refusal ({kind.refusal}): {type(error).__name__}: {message}"[:500]
            return "refused", message[:300]
        if kind.refusal is not None:
            return "failed", f"a bad input was animated instead of refused ({kind.refusal})"
        try:
            return self._check(kind, video, notes, avatar, options)
        except Exception as error:  # noqa: BLE001 - an answer of the wrong shape
            return "failed", f"unexpected answer ({type(error).__name__}: {error})"[:500]

    def _check(self, kind: Kind, video, notes: str, avatar, options: dict) -> tuple[Literal["ok", "failed"], str]:
        """A good request's answer: a video of the expected frames, notes that say so (and say whether the clip was
        cut), and an avatar file exactly when the neural generator ran."""
        from faces.video import VideoError, probe

        try:
            frames = probe(video).frames
        except (VideoError, OSError, TypeError) as error:
            return "failed", f"the video cannot be read: {error}"
        expected = self.config.max_frames if kind.cut else self.config.max_frames // 2
        problems = []
        if frames != expected:
            problems.append(f"{frames} frames, not {expected}")
        if f"{expected} frames" not in notes:
            problems.append("the notes do not give the frame count")
        if (CUT in notes) != kind.cut:
            problems.append("a cut clip without its notice" if kind.cut else "a cut notice for a clip within limits")
        neural = options["renderer"] == "neural" and "No neural model" not in notes  # else the warp, said so
        if (avatar is not None) != neural:
            problems.append(f"avatar file {'missing' if avatar is None else 'given for the warp'}")
        return ("failed", "; ".join(problems)) if problems else ("ok", "")


def percentiles(seconds: list[float]) -> dict[str, float | None]:
    if not seconds:
        return {"p50": None, "p90": None, "p99": None, "max": None}
    values = np.percentile(seconds, [50, 90, 99])
    return {"p50": round(float(values[0]), 2), "p90": round(float(values[1]), 2), "p99": round(float(values[2]), 2),
            "max": round(max(seconds), 2)}


def growth(samples: list[dict]) -> dict[str, float | int | None]:
    """Resident memory growth over the second half of the jobs, between the two samples taken with the server
    idle (halfway and at the end): the first half is the warm-up (models, detectors and caches load on first use),
    after which a level server grows by little more than noise. The target is at most 50 MB over 50 jobs."""
    idle = [s for s in samples if s.get("idle") and s["jobs"] > 0 and s.get("rss_mb") is not None]
    if len(idle) < 2:
        return {"over_jobs": None, "mb": None}
    return {"over_jobs": idle[-1]["jobs"] - idle[0]["jobs"], "mb": round(idle[-1]["rss_mb"] - idle[0]["rss_mb"], 1)}


def soak(config: SoakConfig) -> dict:
    """Launch the app (unless --url), run the clients, stop the app, write the report; returns it."""
    import gradio_client

    report = BenchReport("soak", config)
    media = media_folder(config.media)
    work = Path(tempfile.mkdtemp(prefix="heads-soak-"))
    server = None
    try:
        files = _inputs(media, work, config.max_frames)
        if config.url is None:
            server = Server((config.app or ROOT / "app.py").resolve(), work, config.max_frames)
            startup = server.wait()
            url, pid, temp = server.url, server.pid, server.temp
        else:
            startup, url, pid, temp = None, config.url, config.pid, None
        run = Soak(config, url, files, work / "downloads", pid, temp)
        seconds = run.run()
        errors = server.logged_errors() if server else None
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    outcomes = sorted(run.outcomes, key=lambda o: o.job)
    count = {s: sum(o.status == s for o in outcomes) for s in ("ok", "refused", "failed")}
    count["failed"] += config.clients * config.jobs - len(outcomes)  # jobs a crashed client never sent
    results = {
        "jobs": len(outcomes), "ok": count["ok"], "refused_correctly": count["refused"], "failures": count["failed"],
        "failed": [dataclasses.asdict(o) for o in outcomes if o.status == "failed"],
        "client_crashes": run.crashes,
        "server_tracebacks": errors,
        "startup_s": None if startup is None else round(startup, 1),
        "wall_s": round(seconds, 1),
        "jobs_per_minute": round(60 * len(outcomes) / seconds, 2),
        "latency_s": {"all": percentiles([o.seconds for o in outcomes]),
                      "ok": percentiles([o.seconds for o in outcomes if o.status == "ok"]),
                      "refused": percentiles([o.seconds for o in outcomes if o.status == "refused"])},
        "memory": run.samples,
        "rss_growth": growth(run.samples),
        "refusals": sorted({o.detail for o in outcomes if o.status == "refused"}),
    }
    rss = results["rss_growth"]["mb"]
    results["target_met"] = count["failed"] == 0 and (rss is None or rss <= 50)
    versions = {"gradio_client": gradio_client.__version__}
    with contextlib.suppress(PackageNotFoundError):  # a soak of a remote app needs only the client here
        versions["gradio"] = version("gradio")
    written = report.write(config.out, versions=versions, results=results)
    print(f"soak: {count['ok']} ok, {count['refused']} refused correctly, {count['failed']} failed; latency p50 "
          f"{results['latency_s']['all']['p50']} s; RSS {' '.join(str(s['rss_mb']) for s in run.samples)} MB")
    return written
