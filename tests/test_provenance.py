"""Provenance that survives: the invisible watermark (round trip, re-encode, halving, no false marks on real clips),
C2PA content credentials signed with a throwaway key made here, and `heads verify`'s verdicts and exit statuses."""

from __future__ import annotations

import datetime as dt
from itertools import islice
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from demo.compose import save_still, tag_synthetic
from faces.bench_watermark import ssim
from faces.provenance import CERT_ENV, KEY_ENV, UNSIGNED_NOTICE, read_credentials, sign, verify
from faces.sources import find_sources
from faces.video import VideoWriter, read_frames
from faces.watermark import PAYLOAD, WATERMARK, Watermark, WatermarkConfig
from heads.cli import main

CLIP = "DPE/data/s.mp4"  # a man in a suit, talking: 256 px


def _frames(media: Path, count: int = 12, side: int = 512) -> list[np.ndarray]:
    """Real frames at an output's size (the app writes 512-720 px)."""
    return [cv2.resize(f, (side, side), interpolation=cv2.INTER_CUBIC)
            for f in islice(read_frames(media / CLIP), count)]


def _write(path: Path, frames: list[np.ndarray], crf: int = 18, mark: Watermark | None = None) -> list[np.ndarray]:
    with VideoWriter(path, 25, crf=crf, preset="medium", watermark=mark) as writer:
        for frame in frames:
            writer.write(frame)
    return list(read_frames(path))


def _share(frames: list[np.ndarray]) -> float:
    return float(np.mean([WATERMARK.read(f) == PAYLOAD for f in frames]))


def test_a_marked_image_reads_back_and_an_unmarked_one_does_not():
    """Noise and gradients, no media needed: the payload comes back from the marked image (also at half size and from
    a grey copy); the image without the mark, and the mark of another payload, do not give PAYLOAD."""
    rng = np.random.default_rng(1)
    ramp = np.linspace(0, 200, 400, dtype=np.float32)[None, :, None]
    image = np.clip(ramp + rng.normal(0, 12, (300, 400, 3)), 0, 255).astype(np.uint8)
    marked = WATERMARK.embed(image)
    assert np.abs(marked.astype(int) - image).max() <= WATERMARK.config.strength
    assert WATERMARK.read(marked) == PAYLOAD
    assert WATERMARK.read(cv2.resize(marked, (200, 150), interpolation=cv2.INTER_AREA)) == PAYLOAD
    assert WATERMARK.read(cv2.cvtColor(marked, cv2.COLOR_RGB2GRAY)) == PAYLOAD
    assert WATERMARK.read(image) is None
    other = Watermark(WatermarkConfig(payload=0x1234ABCD))
    assert WATERMARK.read(other.embed(image)) == 0x1234ABCD == other.read(other.embed(image))


@pytest.mark.media
@pytest.mark.slow
def test_the_mark_survives_a_crf28_reencode_and_halving(media, tmp_path):
    """Real frames written as the app writes them, then re-encoded at CRF 28 or halved: the payload is found in at
    least 95 % of the frames (the issue's target), and the mark costs little SSIM."""
    plain = _frames(media)
    written = _write(tmp_path / "marked.mp4", plain, mark=WATERMARK)
    assert min(ssim(*(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in (p, WATERMARK.embed(p)))) for p in plain) > 0.96
    assert _share(written) == 1.0
    assert _share(_write(tmp_path / "crf28.mp4", written, crf=28)) >= 0.95
    assert _share([cv2.resize(f, (256, 256), interpolation=cv2.INTER_AREA) for f in written]) >= 0.95


@pytest.mark.media
def test_real_clips_carry_no_mark(media):
    """The first frames of a dozen real videos, unmarked: not one payload checks out (`heads bench watermark` reads
    every frame of every video)."""
    videos = [s.path for s in find_sources(media) if s.kind == "video"]
    frames = [f for v in videos[:: max(1, len(videos) // 12)][:12] for f in read_frames(v, max_frames=20)]
    assert len(frames) >= 200
    assert not any(WATERMARK.read(f) is not None for f in frames)


# ------------------------------------------------------------------------------------------------ C2PA credentials


@pytest.fixture(scope="module")
def test_key(tmp_path_factory) -> tuple[Path, Path]:
    """A throwaway certificate chain (a root, and a leaf that may sign documents) and the leaf's key, as PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.timezone.utc)
    name = lambda cn: x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),  # noqa: E731
                                 x509.NameAttribute(NameOID.ORGANIZATION_NAME, "few-shot-heads tests")])
    root_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def cert(subject, public, ca: bool):
        builder = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name("test root"))
                   .public_key(public).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=2))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(not ca, False, False, False, False, ca, ca, False, False),
                                  critical=True))
        if not ca:
            builder = (builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
                       .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()),
                                      False))
        return builder.sign(root_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    folder = tmp_path_factory.mktemp("c2pa")
    chain, pem = folder / "chain.pem", folder / "key.pem"
    chain.write_bytes(cert("test signer", key.public_key(), False) + cert("test root", root_key.public_key(), True))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    return chain, pem


@pytest.fixture
def signing(test_key, monkeypatch):
    monkeypatch.setenv(CERT_ENV, str(test_key[0]))
    monkeypatch.setenv(KEY_ENV, str(test_key[1]))


def _image() -> np.ndarray:
    rng = np.random.default_rng(2)
    return cv2.GaussianBlur(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8), (0, 0), 3)


def _verify(path: Path, capsys) -> tuple[int, str]:
    try:
        main(["verify", str(path)])
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().out


def test_a_still_is_marked_and_signed_and_verify_says_so(signing, tmp_path, capsys):
    path, notice = save_still(tmp_path / "edited.png", _image())
    assert notice is None
    credentials = read_credentials(path)
    # Valid (bound to these bytes, signature checks) but not trusted: no trust list knows a throwaway root.
    assert credentials.state == "valid" and credentials.ai_generated
    assert credentials.failures == ("signingCredential.untrusted",)
    assert "test signer" in credentials.signer and credentials.generator.startswith("few-shot-heads")
    code, out = _verify(path, capsys)
    assert code == 0 and "found in 1 of 1 frames" in out and "'FSH1'" in out and "content credentials: valid" in out


def test_a_changed_file_fails_its_credentials_and_a_copy_keeps_only_the_mark(signing, tmp_path, capsys):
    """Pixels changed after signing: verify exits 3. Re-saved (what any editor or upload does): the credentials are
    gone, the watermark is still there (exit 0)."""
    path, _ = save_still(tmp_path / "edited.png", _image())
    with Image.open(path) as png:
        changed = np.asarray(png.convert("RGB")).copy()
    changed[:8, :8] = 0
    data = path.read_bytes()
    tampered = tmp_path / "tampered.png"
    resaved = tmp_path / "resaved.png"
    Image.fromarray(changed).save(resaved)  # no credentials any more
    # The same signed file with its image data rewritten: splice the re-encoded IDAT into the signed container.
    idat = lambda b: (b.index(b"IDAT") - 4, b.rindex(b"IEND") - 4)  # noqa: E731
    (a0, a1), (b0, b1) = idat(data), idat(resaved.read_bytes())
    tampered.write_bytes(data[:a0] + resaved.read_bytes()[b0:b1] + data[a1:])
    assert read_credentials(tampered).state == "invalid"
    assert _verify(tampered, capsys)[0] == 3
    code, out = _verify(resaved, capsys)
    assert code == 0 and "content credentials: none" in out


def test_a_video_is_signed_after_its_tag(signing, tmp_path, capsys):
    path = tmp_path / "out.mp4"
    with VideoWriter(path, 25, watermark=WATERMARK) as writer:
        for i in range(10):
            writer.write(np.roll(_image(), 4 * i, axis=1))
    assert tag_synthetic(path) is None
    credentials = read_credentials(path)
    assert credentials.state == "valid" and credentials.ai_generated
    verdict = verify(path)
    assert verdict.frames == verdict.marked == 10 and verdict.payload == PAYLOAD
    assert _verify(path, capsys)[0] == 0


def test_without_a_key_files_are_unsigned_with_a_notice(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv(CERT_ENV, raising=False)
    monkeypatch.delenv(KEY_ENV, raising=False)
    path, notice = save_still(tmp_path / "edited.png", _image())
    assert notice == UNSIGNED_NOTICE and sign(path) == UNSIGNED_NOTICE
    assert read_credentials(path).state == "none"
    assert _verify(path, capsys)[0] == 0  # the watermark alone


def test_verify_exit_statuses_for_unmarked_and_missing_files(tmp_path, capsys):
    plain = tmp_path / "plain.png"
    Image.fromarray(_image()).save(plain)
    code, out = _verify(plain, capsys)
    assert code == 1 and "not found" in out
    assert _verify(tmp_path / "missing.mp4", capsys)[0] == 2


def test_half_a_key_is_a_config_error(test_key, monkeypatch, tmp_path):
    from base.errors import ConfigError

    monkeypatch.setenv(CERT_ENV, str(test_key[0]))
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(ConfigError, match=KEY_ENV):
        save_still(tmp_path / "x.png", _image())
