"""Provenance that survives: C2PA content credentials on every output file, and the check `heads verify` runs.

Two marks, for two kinds of copy. The invisible watermark (`faces.watermark`) is in the pixels, so it survives a
re-encode, a resize or a screen recording, but says only "made by few-shot-heads". Content credentials (C2PA, the
standard that cameras, editors and social networks read) say who signed the file, with what, and that it was made by
a trained model ("trainedAlgorithmicMedia"), in a manifest bound to the file's bytes by a hash: any edit breaks the
binding, any re-encode drops it. Both are written on every mp4 and PNG this project outputs.

The host provides the signing key: HEADS_C2PA_CERT (a PEM chain, signing certificate first) and HEADS_C2PA_KEY (its
PEM private key), optionally HEADS_C2PA_ALG (es256 by default; es384, es512, ps256, ps384, ps512, ed25519). Without
them files are written unsigned and the result carries one notice that says so: a self-made key would only claim
an identity nobody can check.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from base.errors import ConfigError, InputError
from faces.image_io import IMAGE_SUFFIXES, ImageError, load_image
from faces.video import VideoError, read_frames
from faces.watermark import WATERMARK, Watermark

CERT_ENV, KEY_ENV, ALG_ENV = "HEADS_C2PA_CERT", "HEADS_C2PA_KEY", "HEADS_C2PA_ALG"
GENERATOR = "few-shot-heads"
# IPTC's term for media made by a trained model, which C2PA readers show as "AI-generated".
AI_GENERATED = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
WATERMARK_ASSERTION = "org.few-shot-heads.watermark"  # ties the manifest to the mark in the pixels
MIME_TYPES = {".mp4": "video/mp4", ".png": "image/png"}  # what this project writes
UNSIGNED_NOTICE = (f"The file carries no content credentials (C2PA): the host has set no signing key ({CERT_ENV}, "
                   f"{KEY_ENV}). Its invisible watermark and metadata still mark it as synthetic.")
ALGORITHMS = ("es256", "es384", "es512", "ps256", "ps384", "ps512", "ed25519")


@dataclass(frozen=True)
class SigningConfig:
    cert: Path
    """PEM certificate chain: the signing certificate first, then any intermediates."""
    key: Path
    """PEM private key of the signing certificate."""
    alg: str = "es256"
    """Signature algorithm matching the key."""

    def __post_init__(self) -> None:
        if self.alg not in ALGORITHMS:
            raise ConfigError(f"{ALG_ENV} must be one of {', '.join(ALGORITHMS)}, got {self.alg!r}")

    @classmethod
    def from_env(cls) -> SigningConfig | None:
        """The host's key from the environment; None when neither variable is set, an error when only one is."""
        cert, key = os.environ.get(CERT_ENV, ""), os.environ.get(KEY_ENV, "")
        if not cert and not key:
            return None
        if not cert or not key:
            raise ConfigError(f"set both {CERT_ENV} and {KEY_ENV} to sign outputs with content credentials, or neither")
        return cls(Path(cert), Path(key), os.environ.get(ALG_ENV, "es256").lower())


def _manifest(path: Path, payload: int) -> dict:
    try:
        version = importlib.metadata.version(GENERATOR)
    except importlib.metadata.PackageNotFoundError:  # a Space runs the packages copied beside app.py
        version = "unknown"
    return {
        "claim_generator_info": [{"name": GENERATOR, "version": version}],
        "title": path.name,
        "assertions": [
            {"label": "c2pa.actions", "data": {"actions": [
                {"action": "c2pa.created", "digitalSourceType": AI_GENERATED,
                 "softwareAgent": {"name": GENERATOR, "version": version}},
            ]}},
            {"label": WATERMARK_ASSERTION, "data": {"payload": f"{payload:#010x}", "scheme": "faces.watermark"}},
        ],
    }


def sign(path: str | Path, signing: SigningConfig | None = None, watermark: Watermark = WATERMARK) -> str | None:
    """Embed signed content credentials in the mp4 or PNG at `path` (replaced in place); `signing` defaults to the
    host's key from the environment. Returns UNSIGNED_NOTICE when there is no key, None when signed. A key that does
    not sign (a wrong path, a key that does not match its certificate) is the host's error and raises ConfigError."""
    signing = signing or SigningConfig.from_env()
    if signing is None:
        return UNSIGNED_NOTICE
    import c2pa  # a native library: loaded only by a process that signs or verifies

    path = Path(path)
    mime = MIME_TYPES.get(path.suffix.lower())
    if mime is None:
        raise ValueError(f"{path}: content credentials are written on {', '.join(MIME_TYPES)} files only")
    try:
        cert, key = signing.cert.read_bytes(), signing.key.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read the C2PA signing certificate or key ({e})") from e
    signed = path.with_name(f".{path.stem}.signed{path.suffix}")
    try:
        with c2pa.Signer.from_info(c2pa.C2paSignerInfo(signing.alg, cert, key, None)) as signer, \
                c2pa.Builder(_manifest(path, watermark.config.payload)) as builder, \
                open(path, "rb") as source, open(signed, "w+b") as dest:
            builder.sign(signer, mime, source, dest)
        os.replace(signed, path)
    except c2pa.C2paError as e:
        raise ConfigError(f"signing {path.name} with the C2PA key {signing.key} failed: {e}") from e
    finally:
        signed.unlink(missing_ok=True)
    return None


@dataclass(frozen=True)
class Credentials:
    """What a file's C2PA manifest says, as far as the reader could check it."""

    state: str  # "none" (no manifest), "valid", "trusted" (a trust list was configured and knows the signer), "invalid"
    signer: str | None = None  # the certificate's issuer and common name
    generator: str | None = None  # the claim generator's name and version
    ai_generated: bool = False  # an action says the content was made by a trained model
    failures: tuple[str, ...] = ()  # validation codes that failed (a hash mismatch: the file was changed)


def read_credentials(path: str | Path) -> Credentials:
    """The C2PA manifest of `path`, validated against the file's bytes."""
    import c2pa

    try:
        with c2pa.Reader(str(path)) as reader:
            state = (reader.get_validation_state() or "invalid").lower()
            manifest = reader.get_active_manifest() or {}
            results = reader.get_validation_results() or {}
    except c2pa.C2paError.ManifestNotFound:
        return Credentials("none")
    except c2pa.C2paError as e:
        return Credentials("invalid", failures=(str(e),))
    info = manifest.get("signature_info") or {}
    signer = " / ".join(v for v in (info.get("issuer"), info.get("common_name")) if v) or None
    generators = manifest.get("claim_generator_info") or [{}]
    generator = " ".join(str(generators[0].get(k, "")) for k in ("name", "version")).strip() or None
    actions = [a for assertion in manifest.get("assertions", []) if assertion.get("label", "").startswith(
        "c2pa.actions") for a in assertion.get("data", {}).get("actions", [])]
    failures = tuple(f.get("code", "?") for f in (results.get("activeManifest") or {}).get("failure", []))
    return Credentials(state, signer, generator, any(a.get("digitalSourceType") == AI_GENERATED for a in actions),
                       failures)


@dataclass(frozen=True)
class Verdict:
    """The watermark and the credentials of one file."""

    path: str
    frames: int  # frames read
    marked: int  # of those, frames whose watermark checks out
    payload: int | None  # the payload most of them carry
    credentials: Credentials

    @property
    def share(self) -> float:
        return self.marked / self.frames if self.frames else 0.0

    @property
    def watermarked(self) -> bool:
        """At least one frame carries the mark: an unmarked frame passes its check with probability 6e-8, so one
        is evidence enough, and a clip cut into a real video may hold only a few."""
        return self.marked > 0


def verify(path: str | Path, max_frames: int = 250, watermark: Watermark = WATERMARK) -> Verdict:
    """Read the watermark of the first `max_frames` frames of a video (or of an image) and the C2PA manifest."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file.")
    try:
        if path.suffix.lower() in IMAGE_SUFFIXES:
            frames = [load_image(path)]
        else:
            frames = read_frames(path, max_frames=max_frames, threads=1)
        payloads = [watermark.read(frame) for frame in frames]
    except (ImageError, VideoError) as e:
        raise InputError(str(e)) from None
    found = Counter(p for p in payloads if p is not None)
    payload = found.most_common(1)[0][0] if found else None
    return Verdict(str(path), len(payloads), sum(found.values()), payload, read_credentials(path))
