"""The web app end to end in a real browser: app.py served on a free local port, headless Chromium uploading a photo
and a clip, pressing Animate, and checking that the result video really plays; bad uploads must show an error and
leave the server working for the next request.

Needs chromium, chromedriver and selenium: a failure in CI (CI=true) when they are missing, a skip elsewhere.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")
FRAMES = 20  # the app's frame cap for these runs (HEADS_MAX_FRAMES): the result only has to play
TIMEOUT = 180  # seconds for one animation on a busy 2-core machine

pytestmark = [pytest.mark.slow, pytest.mark.media]


@pytest.fixture(scope="module")
def browser_binaries() -> tuple[str, str]:
    try:
        import selenium  # noqa: F401
    except ImportError:
        selenium = None
    if CHROMIUM is None or CHROMEDRIVER is None or selenium is None:
        message = ("chromium, chromedriver and selenium are needed for the browser test (apt install chromium "
                   "chromium-driver; pip install selenium)")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM, CHROMEDRIVER


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """A tiny random model exported for the app (its neural path and avatar download), with the PyTorch model in
    torch/ so that fine-tuning is offered too."""
    pytest.importorskip("torch")
    from export_onnx.config import ExportConfig
    from export_onnx.release import export
    from training.config import ModelConfig
    from training.models import Networks

    folder = tmp_path_factory.mktemp("weights")
    Networks.build(ModelConfig.tiny()).save_pretrained(folder / "torch")
    export(ExportConfig(model=folder / "torch", out=folder, variants=()))
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory, browser_binaries, weights):
    """app.py in a subprocess on 127.0.0.1; yields its URL, and its log on failure."""
    port = _free_port()
    log = tmp_path_factory.mktemp("app") / "app.log"
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "GRADIO_ANALYTICS_ENABLED": "False", "HEADS_MAX_FRAMES": str(FRAMES), "OMP_WAIT_POLICY": "PASSIVE",
           "HEADS_WEIGHTS": str(weights)}
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"app.py did not start:\n{log.read_text()}")
            time.sleep(0.5)
        yield url, log
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def browser(browser_binaries, tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = browser_binaries
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--window-size=1400,1800",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    yield driver
    driver.quit()


def _upload(driver, elem_id: str, path: Path) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, f"#{elem_id} input[type=file]").send_keys(str(path))


def _wait(condition, timeout: float, what: str, driver, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}\npage text:\n{driver.find_element('tag name', 'body').text}"
                         f"\n\napp log:\n{log.read_text()[-3000:]}")


def _submit(driver, url: str, log: Path, photo: Path, clip: Path, choice: str | None = None) -> None:
    """A fresh page, both uploads finished, a radio choice clicked (by its label), then the Animate button."""
    from selenium.webdriver.common.by import By

    driver.get(url)
    _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#animate"), 60, "the page", driver, log)
    if choice is not None:
        driver.find_element(By.XPATH, f"//label[contains(., '{choice}')]").click()
    _upload(driver, "photos", photo)
    _upload(driver, "driving", clip)
    _wait(lambda: photo.stem in driver.find_element(By.ID, "photos").text, 60, "the photo upload", driver, log)
    _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#driving video"), 60, "the clip upload", driver, log)
    driver.find_element(By.ID, "animate").click()


def _error_shown(driver, text: str) -> bool:
    return text in driver.find_element("tag name", "body").text


def _playing(driver, log: Path) -> dict:
    """Wait for the result video's metadata, and return its state; an error message ends the wait at once."""
    from selenium.webdriver.common.by import By

    def ready():
        toasts = [t.text for t in driver.find_elements(By.CSS_SELECTOR, ".toast-body") if "rror" in t.text]
        assert not toasts, f"the app reported an error: {toasts}\n\napp log:\n{log.read_text()[-3000:]}"
        state = driver.execute_script(PLAYBACK)
        return state if state and state["ready"] >= 1 else None

    return _wait(ready, TIMEOUT, "a playable result", driver, log)


PLAYBACK = """
const v = document.querySelector('#result video');
if (!v || !v.currentSrc) return null;
return {ready: v.readyState, duration: v.duration, width: v.videoWidth, height: v.videoHeight,
        error: v.error ? v.error.code : null};
"""


def test_app_animates_and_survives_bad_uploads(server, browser, media, tmp_path):
    url, log = server
    photo = media / "LivePortrait/assets/examples/driving/d19.jpg"
    clip = media / "LivePortrait/assets/examples/driving/d18.mp4"  # has audio
    animal = media / "LivePortrait/assets/examples/source/s30.jpg"  # a shiba inu
    fake = tmp_path / "not_a_video.mp4"
    fake.write_text("this is a text file with a video's name\n")

    _submit(browser, url, log, photo, fake)
    _wait(lambda: _error_shown(browser, "cannot be read as a video"), TIMEOUT, "the bad-video error", browser, log)
    browser.save_screenshot(str(tmp_path / "bad_video.png"))

    _submit(browser, url, log, animal, clip)
    _wait(lambda: _error_shown(browser, "No human face"), TIMEOUT, "the no-face error", browser, log)

    _submit(browser, url, log, photo, clip)  # the default renderer: the neural generator
    state = _playing(browser, log)
    assert state["error"] is None and state["duration"] > 0 and state["width"] > 0, state
    notes = browser.find_element("id", "notes").text
    assert "Identity" in notes and "neural, feed-forward" in notes
    assert ".onnx" in browser.find_element("id", "avatar-out").text  # the avatar download is offered
    browser.save_screenshot(str(tmp_path / "neural.png"))

    _submit(browser, url, log, photo, clip, choice="Classical warp")
    _wait(lambda: "warp of 1 photo" in browser.find_element("id", "notes").text, TIMEOUT, "the warp result",
          browser, log)
    state = _playing(browser, log)
    time.sleep(1)
    screenshot = tmp_path / "result.png"
    browser.save_screenshot(str(screenshot))
    print(f"screenshot: {screenshot}")
    assert state["error"] is None and state["duration"] > 0 and state["width"] == 256, state
