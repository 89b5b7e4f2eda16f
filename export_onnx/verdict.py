"""Which renderer a model folder makes the default: decided once, at export, from the model's `heads evaluate` run on
the test split, and stored in its config.json for the app and `heads animate` to follow.

The neural renderer exists to fix what the warp gets wrong (the open mouth), so it is the default only where it
does that and breaks nothing else: on every T of the table, mouth SSIM of open-mouth frames at least
`MOUTH_GAIN` above the warp's and FID below it, and no other metric worse than the warp's by more than the noise
of the comparison (`NOISE_SE` standard errors of the per-clip differences, which pair each clip with itself; a
metric with a target, sharpness, by its distance from it: `Metric.shortfall`). A
model without such a table gets the warp, and the reason says so: a claim nobody measured is not a default.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from pathlib import Path

from base.errors import UserError
from training.metrics.registry import METRICS

NEURAL, WARP = "FF", "warp"  # the two rows compared, as `heads evaluate` labels them
MOUTH_GAIN = 0.03  # mouth SSIM on open-mouth frames: what the refinement must add to count
MUST_BEAT = ("fid",)  # pooled over all clips: no per-clip noise, so strictly better
AT_LEAST_EQUAL = ("ssim", "lpips", "akd", "mouth", "eye", "sharpness")  # not worse beyond the noise
NOISE_SE = 2.0


def _paired(rows: list[dict], metric: str, t: int, read: Callable[[float], float] = float
            ) -> tuple[float, float, int]:
    """Mean and standard error of read(neural) − read(warp) over the clips where both have `metric` at T = t
    (`read`: the value itself, or its `Metric.shortfall`)."""
    by = {(r["method"], r["video"]): r.get(metric) for r in rows if r["T"] == t}
    pairs = [(by[(NEURAL, v)], by[(WARP, v)]) for (m, v) in by if m == NEURAL and (WARP, v) in by]
    diffs = [read(a) - read(b) for a, b in pairs if _finite(a) and _finite(b) and _finite(read(a) - read(b))]
    if not diffs:
        return math.nan, math.nan, 0
    mean = sum(diffs) / len(diffs)
    var = sum((d - mean) ** 2 for d in diffs) / max(1, len(diffs) - 1)
    return mean, math.sqrt(var / len(diffs)), len(diffs)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def stored(folder: Path | None, model_id: str, out: Path) -> dict:
    """config.json's "default": the verdict of the evaluation in `folder` of model `model_id` (its table copied to
    `out`/evaluation.md beside the graphs), or the warp with the reason when there is none."""
    if folder is None:
        return {"renderer": "warp", "reason": "no `heads evaluate` table of the test split was stored with this model "
                "(heads export --evaluation)"}
    evaluated = {json.loads(line).get("model_id") for path in folder.glob("metric-*.jsonl")
                 for line in path.read_text().splitlines() if line}
    if evaluated != {model_id}:
        raise UserError(f"{folder.name} evaluated model(s) {sorted(map(str, evaluated))}, not {model_id}: evaluate "
                        "the model being exported")
    result = verdict(folder)
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.md").write_text((folder / "results.md").read_text())
    clean = json.loads(json.dumps(result["comparison"]).replace("NaN", "null"))
    return {"renderer": result["renderer"], "reason": result["reason"], "evaluation": "evaluation.md",
            "shots": result["shots"], "comparison": clean}


def verdict(folder: Path) -> dict:
    """The default renderer by the evaluation in `folder` (written by `heads evaluate`): {"renderer", "reason",
    "shots", "comparison"}; the comparison holds, per T and metric, the paired difference, its standard error and
    the clip count (pooled metrics: the two values)."""
    try:
        per_video = [json.loads(line) for line in (folder / "per_video.jsonl").read_text().splitlines() if line]
        with open(folder / "results.csv") as f:
            table = list(csv.DictReader(f))
    except (OSError, ValueError) as error:
        raise UserError(f"{folder} is not a `heads evaluate` output folder ({error})") from None
    shots = sorted({r["T"] for r in per_video if r["method"] == NEURAL} & {r["T"] for r in per_video
                                                                         if r["method"] == WARP})
    if not shots:
        return {"renderer": "warp", "reason": f"the evaluation holds no {NEURAL} and {WARP} rows to compare",
                "shots": [], "comparison": {}}
    failures: list[str] = []
    comparison: dict[str, dict] = {}
    for t in shots:
        row = {}
        gain, se, n = _paired(per_video, "mouth_ssim", t)
        row["mouth_ssim"] = {"difference": gain, "se": se, "clips": n}
        if not gain >= MOUTH_GAIN:
            failures.append(f"mouth SSIM {gain:+.3f} at T={t} (needs +{MOUTH_GAIN})")
        for name in MUST_BEAT:
            values = {r["method"]: float(r[name]) for r in table if int(r["T"]) == t and r.get(name)}
            neural, warp = values.get(NEURAL, math.nan), values.get(WARP, math.nan)
            row[name] = {NEURAL: neural, WARP: warp}
            better = METRICS[name].shortfall(neural) < METRICS[name].shortfall(warp)
            if not better:
                failures.append(f"{METRICS[name].label} {neural:.1f} vs {warp:.1f} at T={t}"
                                if _finite(neural) and _finite(warp) else f"{METRICS[name].label} not measured")
        for name in AT_LEAST_EQUAL:
            metric = METRICS[name]
            diff, _, n = _paired(per_video, name, t)
            worse, se, _ = _paired(per_video, name, t, metric.shortfall)  # > 0: the neural renderer is further off
            row[name] = {"difference": diff, "worse": worse, "se": se, "clips": n}
            if not _finite(worse) or worse > NOISE_SE * se:
                failures.append(f"{metric.label} {diff:+.3g} (worse by {worse:.3g} ± {se:.2g}) at T={t}")
        comparison[str(t)] = row
    if failures:
        reason = f"the neural renderer does not beat the warp on the test split: {'; '.join(failures)}"
        return {"renderer": "warp", "reason": reason, "shots": shots, "comparison": comparison}
    reason = f"the neural renderer beats the warp on the test split at T = {', '.join(map(str, shots))}"
    return {"renderer": "neural", "reason": reason, "shots": shots, "comparison": comparison}
