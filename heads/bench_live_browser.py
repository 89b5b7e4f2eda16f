"""`heads bench live-browser`: the Live tab's frame rate and camera-to-screen latency as a visitor sees them, in a
real browser.

`heads bench live` times the server's own work; a visitor also pays for the browser capturing and encoding each
webcam frame, Gradio's round trip and the page drawing the result, all of which the issue's target (>= 15 frames/s
shown, <= 150 ms from camera frame to rendered frame) counts. So this benchmark launches app.py (as `bench soak`
does), opens the Live tab in headless Chromium whose fake webcam plays a prepared feed, and measures on the page.

The feed makes latency visible without touching the app: it alternates between two frames of a real clip, the
mouth closed and the mouth wide open, every `phase` seconds, and each frame carries a marker square in its corner
(black while closed, white while open) away from the face. Script in the page timestamps (`performance.now()`)
every camera frame the page's webcam preview presents (`requestVideoFrameCallback`) with its marker, and every
rendered frame the result image loads, with a small thumbnail of it. Afterwards each rendered frame is placed
between the two steady states (the median thumbnails of the outputs late in the closed and in the open phases): a
switch's latency runs from the first preview frame of the new phase to the first rendered frame past half way to
the new state. It starts from the preview, so the capture-to-preview time (about one camera frame) is not in it;
it includes what a viewer sees of the live mode's lip smoothing (One-Euro, 8 Hz for the lips). The frame rate is
the rendered frames the page loaded per second after a warm-up.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

from base.bench_report import BenchReport
from base.errors import ConfigError, UserError
from faces.detect import load_detector
from faces.motion import mouth_opening
from faces.video import VideoReader
from heads.soak import EXAMPLES, Server, media_folder

ROOT = Path(__file__).resolve().parents[1]
TARGET_FPS = 15.0  # issue 20: at least this many frames/s shown...
TARGET_LATENCY_MS = 150.0  # ...and at most this long from camera frame to rendered frame
MARKER = 48  # side (px in a 640x480 frame, in proportion in others) of the phase marker, top left of the middle 4:3
THUMB = 64  # side of the thumbnails the page keeps of each rendered frame
WARMUP = 2.0  # seconds of the stream not counted: the first frames personalise the photo and warm the caches
STEADY = 0.5  # the last this fraction of each phase gives the steady states' thumbnails
CAMERA_FPS = 25  # the Y4M feed's frame rate (Chromium's fake camera plays it at this rate)


@dataclass(frozen=True)
class LiveBrowserBenchConfig:
    """Frames/s shown and camera-to-screen latency of the Live tab in headless Chromium with a fake webcam."""

    out: Path = Path("runs/bench/live_browser.json")
    """Where the JSON report is written."""
    source: str | None = None
    """The portrait; default: the photo the Live tab's browser test uses (d30.jpg of the shared media)."""
    driving: str | None = None
    """The clip whose mouth-closed and mouth-open frames make the feed; default: d18.mp4 of the shared media."""
    seconds: float = 20.0
    """How long the stream is measured, after a warm-up of 2 s."""
    phase: float = 1.6
    """Seconds each state (mouth closed, mouth open) lasts in the feed."""
    weights: str | None = None
    """HEADS_WEIGHTS of the launched app (default: the app's own)."""
    app: Path | None = None
    """The app to launch (default: the project's app.py)."""
    media: Path | None = None
    """The public media folder (default: $HEADS_MEDIA, else shared/media beside the checkout)."""
    camera: tuple[int, int] = (1280, 720)
    """The fake webcam's frame (width, height): a laptop's HD camera; the clip's frames sit in its middle. The
    page asks the camera for the size the app sets, and Chromium scales to it as it would a real camera's."""
    split_cores: bool = False
    """Run the app on the last usable CPU and the browser on the others, as when the visitor's browser runs on
    their own machine; by default both share every CPU, as on one small machine."""

    def __post_init__(self) -> None:
        if self.seconds < 2 * self.phase or self.phase < 0.4:
            raise ConfigError("bench live-browser needs phase >= 0.4 s and seconds >= 2 phases")
        if self.split_cores and len(os.sched_getaffinity(0)) < 2:
            raise ConfigError("--split-cores needs at least 2 usable CPUs")
        width, height = self.camera
        if not (min(width, height) >= 64 and max(width, height) <= 4096 and width % 2 == height % 2 == 0):
            raise ConfigError("--camera is WIDTH HEIGHT, even, 64..4096")


def write_y4m(path: Path, frames, fps: int = CAMERA_FPS) -> None:
    """RGB frames as the Y4M (4:2:0) that Chromium's `--use-file-for-fake-video-capture` plays, looping. Written
    beside and renamed over the old file, so a camera still holding the old one never sees it change under it."""
    part = path.with_suffix(".part")
    with part.open("wb") as out:
        for i, rgb in enumerate(frames):
            if i == 0:
                out.write(f"YUV4MPEG2 W{rgb.shape[1]} H{rgb.shape[0]} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
            yuv = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p").to_ndarray()
            out.write(b"FRAME\n" + yuv.tobytes())
    os.replace(part, path)


def _chromium_binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def browser_missing() -> str | None:
    """What to install for a real browser (chromium, chromedriver, selenium), or None when all are there."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        selenium = None
    if _chromium_binary() is None or shutil.which("chromedriver") is None or selenium is None:
        return ("chromium, chromedriver and selenium are needed for a real browser (apt install chromium "
                "chromium-driver; pip install selenium)")
    return None


def chromium(camera: Path, profile: Path):
    """Headless Chromium under chromedriver whose webcam plays `camera` (Y4M, `write_y4m`), allowed without a
    prompt; a clear error naming what to install when chromium, chromedriver or selenium is missing."""
    if (missing := browser_missing()) is not None:
        raise UserError(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = _chromium_binary()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--window-size=1400,1800",
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                 f"--use-file-for-fake-video-capture={camera}", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def _mouth_frames(clip: Path) -> tuple[np.ndarray, np.ndarray]:
    """The clip's frames with the mouth most closed and most open (`faces.motion.mouth_opening`, dlib, every third
    frame)."""
    detector = load_detector()
    scored = []
    with VideoReader(clip) as reader:
        for i, frame in enumerate(reader):
            if i % 3 == 0 and (faces := detector.detect(frame)):
                scored.append((float(mouth_opening(faces[0].points)), frame))
    if len(scored) < 2:
        raise UserError(f"{clip}: too few frames with a face to make the feed")
    scored.sort(key=lambda item: item[0])
    return scored[0][1], scored[-1][1]


def _webcam_frame(frame: np.ndarray, marker: int, size: tuple[int, int]) -> np.ndarray:
    """The clip's frame in the middle of a webcam-sized grey frame, with the phase marker in the top-left corner of
    the frame's middle 4:3 part (what a camera asked for 4:3 keeps of a wider frame)."""
    width, height = size
    factor = min(width / frame.shape[1], height / frame.shape[0])
    frame = cv2.resize(frame, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    out = np.full((height, width, 3), 128, np.uint8)
    y, x = (height - frame.shape[0]) // 2, (width - frame.shape[1]) // 2
    out[y:y + frame.shape[0], x:x + frame.shape[1]] = frame
    side, left = round(MARKER * height / 480), max(0, round((width - 4 * height / 3) / 2))
    out[:side, left:left + side] = marker
    return out


# Installed in the page before the webcam starts: timestamps of the preview's frames (with their marker) and of the
# result's loads (with a thumbnail). Both on the page's clock, performance.now() in ms.
PROBE = """
const probe = window.__probe = {camera: [], shown: []};
const small = document.createElement('canvas'); small.width = small.height = 4;
const thumb = document.createElement('canvas'); thumb.width = thumb.height = arguments[0];
const marker = arguments[1];
document.querySelector('#live-result').addEventListener('load', (event) => {
  const img = event.target;
  if (img.tagName !== 'IMG') return;
  const t = performance.now();
  const c = thumb.getContext('2d', {willReadFrequently: true});
  c.drawImage(img, 0, 0, thumb.width, thumb.height);
  const rgba = c.getImageData(0, 0, thumb.width, thumb.height).data;
  const grey = [];
  for (let i = 0; i < rgba.length; i += 4) grey.push((rgba[i] + rgba[i + 1] + rgba[i + 2]) / 3);
  probe.shown.push([t, grey]);
}, true);
function watch(video) {
  const look = (now) => {
    const c = small.getContext('2d', {willReadFrequently: true});
    // inside the marker at any size the camera gives, cropped to 4:3 or not
    const side = 0.8 * marker * video.videoHeight / 480;
    const left = Math.max(0, (video.videoWidth - 4 * video.videoHeight / 3) / 2);
    c.drawImage(video, left, 0, side, side, 0, 0, 4, 4);
    const rgba = c.getImageData(0, 0, 4, 4).data;
    let sum = 0;
    for (let i = 0; i < rgba.length; i += 4) sum += rgba[i + 1];
    probe.camera.push([now, sum / 16 > 128 ? 1 : 0]);
    video.requestVideoFrameCallback(look);
  };
  video.requestVideoFrameCallback(look);
}
const find = setInterval(() => {
  const video = document.querySelector('#live-camera video');
  if (video && video.readyState >= 2) { clearInterval(find); watch(video); }
}, 20);
"""


def _switches(camera: list) -> list[tuple[float, int]]:
    """(time, new state) at each change of the preview's marker."""
    return [(t, s) for (t, s), (_, before) in zip(camera[1:], camera[:-1], strict=True) if s != before]


def analyse(camera: list, shown: list) -> dict:
    """Frame rate and latencies from the page's records (see the module's docstring)."""
    if len(camera) < 10 or len(shown) < 10:
        raise UserError(f"the page recorded {len(camera)} camera frames and {len(shown)} rendered frames")
    switches = _switches(camera)
    times = np.array([t for t, _ in shown])
    thumbs = np.array([g for _, g in shown], np.float32)
    # The state each rendered frame settled in: the phase it loaded in, if in the phase's late part.
    steady: dict[int, list[int]] = {0: [], 1: []}
    for (start, state), (end, _) in zip(switches[:-1], switches[1:], strict=True):
        late = (times >= end - STEADY * (end - start)) & (times < end)
        steady[state] += np.flatnonzero(late).tolist()
    if not steady[0] or not steady[1]:
        raise UserError("too few phases were seen to tell the mouth's two states apart: a longer --seconds")
    closed, opened = (np.median(thumbs[steady[s]], axis=0) for s in (0, 1))
    axis = opened - closed
    contrast = float(np.abs(axis).mean())
    position = (thumbs - closed) @ axis / float(axis @ axis)  # 0 = the closed state, 1 = the open one
    latencies = []
    for t, state in switches:
        after = np.flatnonzero((times > t) & ((position > 0.5) if state else (position < 0.5)))
        later = [u for u, _ in switches if u > t]
        if after.size and (not later or times[after[0]] < later[0]):
            latencies.append(float(times[after[0]] - t))
    gaps = np.diff(times)
    ms = np.array(latencies)
    return {
        "camera_fps": round(1e3 * (len(camera) - 1) / (camera[-1][0] - camera[0][0]), 1),
        "frames_shown": len(shown),
        "frames_per_second": round(1e3 * (len(shown) - 1) / (times[-1] - times[0]), 2),
        "interval_ms": {f"p{q}": round(float(np.percentile(gaps, q)), 1) for q in (50, 90, 99)},
        "switches": len(switches),
        "switches_measured": len(latencies),
        "latency_ms": ({f"p{q}": round(float(np.percentile(ms, q)), 1) for q in (50, 90)}
                       | {"min": round(float(ms.min()), 1), "max": round(float(ms.max()), 1)}) if ms.size else None,
        "state_contrast": round(contrast, 2),
        # what the numbers come from, on the page's clock from the first record (ms): each rendered frame's place
        # between the two states, and the preview's switches
        "timeline": {"shown": [[round(float(t - times[0])), round(float(p), 2)] for t, p in zip(times, position,
                                                                                               strict=True)],
                     "switches": [[round(t - times[0]), s] for t, s in switches]},
    }


def _cpu_seconds(root: int) -> float:
    """CPU time (user + system, s) used so far by process `root` and its descendants still alive (/proc)."""
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
            times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    total, stack = 0.0, [root]
    while stack:
        pid = stack.pop()
        total += times.get(pid, 0.0)
        stack += children.get(pid, [])
    return total


def _versions() -> dict[str, str]:
    """Gradio's and the browser's: the round trip is theirs as much as the app's."""
    import subprocess
    from importlib.metadata import version

    binary = _chromium_binary()
    browser = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip() if binary else ""
    return {"gradio": version("gradio"), "selenium": version("selenium"), "browser": browser}


def _clicked(element) -> bool:
    """Click `element`; False while something covers it (the page's loading overlay on a busy machine)."""
    from selenium.common.exceptions import ElementClickInterceptedException

    try:
        element.click()
    except ElementClickInterceptedException:
        return False
    return True


def _wait(condition, seconds: float, what: str, server: Server):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.2)
    raise UserError(f"timed out waiting for {what}; the app's log ends:\n{server.tail()}")


def bench_live_browser(cfg: LiveBrowserBenchConfig) -> dict:
    from selenium.webdriver.common.by import By

    report = BenchReport("live-browser", cfg)
    media = media_folder(cfg.media)
    source = Path(cfg.source or media / EXAMPLES / "driving/d30.jpg")
    clip = Path(cfg.driving or media / EXAMPLES / "driving/d18.mp4")
    for path in (source, clip):
        if not path.is_file():
            raise UserError(f"{path} not found: pass --source and --driving, or set HEADS_MEDIA")
    closed, opened = _mouth_frames(clip)
    per_phase = round(cfg.phase * CAMERA_FPS)
    with tempfile.TemporaryDirectory(prefix="heads-live-browser-") as work:
        work = Path(work)
        camera = work / "feed.y4m"
        write_y4m(camera, [_webcam_frame(closed, 0, cfg.camera)] * per_phase
                  + [_webcam_frame(opened, 255, cfg.camera)] * per_phase)
        cpus = sorted(os.sched_getaffinity(0))
        if cfg.split_cores:  # the children inherit this process's CPUs when they start
            os.sched_setaffinity(0, cpus[-1:])
        server = Server(cfg.app or ROOT / "app.py", work, max_frames=32,
                        extra_env=None if cfg.weights is None else {"HEADS_WEIGHTS": str(cfg.weights)})
        driver = None
        try:
            started = server.wait()
            if cfg.split_cores:
                os.sched_setaffinity(0, cpus[:-1])
            driver = chromium(camera, work / "profile")
            driver.get(server.url)
            _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#animate"), 60, "the page", server)
            tab = driver.find_element(By.XPATH, "//button[@role='tab' and contains(., 'Live')]")
            _wait(lambda: _clicked(tab), 60, "the Live tab to take a click", server)
            _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#live-photos input[type=file]"), 60,
                  "the Live tab", server)[0].send_keys(str(source))
            _wait(lambda: source.stem in driver.find_element(By.ID, "live-photos").text, 60, "the upload", server)
            live = driver.find_element(By.ID, "live-camera")
            _wait(lambda: live.find_elements(By.CSS_SELECTOR, "[title='grant webcam access'] button"), 60,
                  "the webcam access button", server)[0].click()
            driver.execute_script(PROBE, THUMB, MARKER)
            _wait(lambda: live.find_elements(By.CSS_SELECTOR, "button[aria-label='capture photo']"), 60,
                  "the webcam's start button", server)[0].click()
            _wait(lambda: driver.execute_script("return window.__probe.shown.length"), 120, "the first frame",
                  server)
            time.sleep(WARMUP)
            begin = driver.execute_script("return performance.now()")
            browser_pid = driver.service.process.pid
            cpu = {"app": -_cpu_seconds(server.pid), "browser": -_cpu_seconds(browser_pid)}
            time.sleep(cfg.seconds)
            cpu = {"app": cpu["app"] + _cpu_seconds(server.pid),
                   "browser": cpu["browser"] + _cpu_seconds(browser_pid)}
            records = driver.execute_script("return window.__probe")
            notes = driver.find_element(By.ID, "live-notes").text
        finally:
            if driver is not None:
                driver.quit()
            server.stop()
            os.sched_setaffinity(0, cpus)
    camera_frames = [r for r in records["camera"] if r[0] >= begin]
    shown = [r for r in records["shown"] if r[0] >= begin]
    result = {"app_start_seconds": round(started, 1), "notes": notes,
              # CPUs busy on average while measured: what the app and the browser each took of the machine
              "cpus_busy": {name: round(seconds / cfg.seconds, 2) for name, seconds in cpu.items()},
              **analyse(camera_frames, shown)}
    latency = result["latency_ms"]
    result["meets_target"] = bool(latency and result["frames_per_second"] >= TARGET_FPS
                                  and latency["p90"] <= TARGET_LATENCY_MS)
    print(f"live in the browser: {result['frames_per_second']:.1f} frames/s shown (camera "
          f"{result['camera_fps']:g}), interval p50 {result['interval_ms']['p50']:.0f} ms; camera-to-screen "
          + (f"p50 {latency['p50']:.0f} ms, p90 {latency['p90']:.0f} ms over {result['switches_measured']} switches"
             if latency else "not measured (no switch was followed)")
          + f"; CPUs busy: app {result['cpus_busy']['app']:.2f}, browser {result['cpus_busy']['browser']:.2f}"
          + f"; the tab said: {notes.splitlines()[0] if notes else ''!r}")
    return report.write(cfg.out, versions=_versions(), source=str(source), driving=str(clip),
                        targets={"frames_per_second": TARGET_FPS, "latency_ms_p90": TARGET_LATENCY_MS},
                        results=[result])
