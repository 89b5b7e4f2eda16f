"""`heads verify FILE`: is this mp4 or PNG marked as made by few-shot-heads, and what do its content credentials say.

The exit status answers the first question for scripts (a CLI decision, so it lives here and not in the library,
`faces.provenance.verify`, which only reports).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

from tyro.conf import Positional, arg

from base.errors import ConfigError
from faces.provenance import verify as read_provenance

MARKED, NOT_MARKED, TAMPERED = 0, 1, 3  # 2 is every `heads` command's usage error (a missing or unreadable file)


@dataclass(frozen=True)
class VerifyConfig:
    """Read the invisible watermark and the C2PA content credentials of an mp4 or PNG.

    Exit status: 0 the watermark was found (in at least one frame read) and any content credentials validate;
    1 no frame carries the watermark; 2 the file is missing or not a readable video or image; 3 the file has content
    credentials that do not validate (it was changed after signing, or the signature is broken)."""

    file: Positional[Annotated[Path, arg(metavar="FILE")]]
    """The mp4 (or any video PyAV reads) or image to check. Exit status: 0 watermark found (any credentials valid),
    1 no watermark, 2 missing or unreadable file, 3 content credentials that do not validate."""
    max_frames: int = 250
    """Frames of a video to read (from the start)."""
    json: bool = False
    """Print the verdict as JSON instead of sentences."""

    def __post_init__(self) -> None:
        if self.max_frames < 1:
            raise ConfigError("max_frames must be at least 1")


def verify(config: VerifyConfig) -> None:
    verdict = read_provenance(config.file, config.max_frames)
    c = verdict.credentials
    status = TAMPERED if c.state == "invalid" else MARKED if verdict.watermarked else NOT_MARKED
    if config.json:
        print(json.dumps({**asdict(verdict), "share": verdict.share, "watermarked": verdict.watermarked,
                          "payload": None if verdict.payload is None else f"{verdict.payload:#010x}",
                          "exit_status": status}, indent=2))
    else:
        if verdict.watermarked:
            text = verdict.payload.to_bytes(4, "big").decode("ascii", "replace")
            print(f"watermark: found in {verdict.marked} of {verdict.frames} frames ({verdict.share:.0%}), payload "
                  f"{verdict.payload:#010x} ({text!r})")
        else:
            print(f"watermark: not found in any of {verdict.frames} frames")
        if c.state == "none":
            print("content credentials: none")
        else:
            made = "made by a trained model" if c.ai_generated else "no AI-generated action"
            print(f"content credentials: {c.state}; signed by {c.signer or '?'}; generator {c.generator or '?'}; "
                  f"{made}")
            if c.failures:
                print(f"  failed checks: {', '.join(c.failures)}")
    if status != MARKED:
        raise SystemExit(status)
