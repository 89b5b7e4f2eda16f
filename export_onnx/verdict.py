"""Which renderer a model folder makes the default: decided once, at export, from the model's `heads evaluate` run on
the test split, and stored in its config.json for the app and `heads animate` to follow.

A learned renderer (the neural generator, or the warp with its mouth corrected by the mouth refiner) exists to fix
what the warp gets wrong (the open mouth), so it is the default only where it does that and breaks nothing else: on
every T of the table, mouth SSIM of open-mouth frames at least `MOUTH_GAIN` above the warp's and FID below it, and
no other metric worse than the warp's by more than the noise of the comparison (`NOISE_SE` standard errors of the
per-clip differences, which pair each clip with itself; a metric with a target, sharpness, by its distance from it:
`Metric.shortfall`). Where both pass, the larger least mouth gain over T wins. A model without such a table gets
the warp, and the reason says so: a claim nobody measured is not a default.

The same rule is also applied to each T alone (`by_shots`): a renderer may fix the one-photo warp's mouth, which
has nothing better to show, and add little where eight photos already hold a mouth like the target's. The app then
follows the row of the T nearest to the number of photos a person gives (`demo.renderers.ModelFolder.default`),
so a person with one portrait gets what measured best with one photo.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from pathlib import Path

from base.errors import UserError
from training.metrics.registry import METRICS

WARP = "warp"  # the row every candidate is compared with, as `heads evaluate` labels it
CANDIDATES = {"neural": "FF", "mouth": "warp + mouth"}  # renderer -> its row in `heads evaluate`'s table
NAMES = {"neural": "the neural renderer", "mouth": "the mouth refiner"}
MOUTH_GAIN = 0.03  # mouth SSIM on open-mouth frames: what the refinement must add to count
MUST_BEAT = ("fid",)  # pooled over all clips: no per-clip noise, so strictly better
AT_LEAST_EQUAL = ("ssim", "lpips", "akd", "mouth", "eye", "sharpness")  # not worse beyond the noise
NOISE_SE = 2.0


def _paired(rows: list[dict], label: str, metric: str, t: int, read: Callable[[float], float] = float
            ) -> tuple[float, float, int]:
    """Mean and standard error of read(candidate) − read(warp) over the clips where both have `metric` at T = t
    (`label`: the candidate's row; `read`: the value itself, or its `Metric.shortfall`)."""
    by = {(r["method"], r["video"]): r.get(metric) for r in rows if r["T"] == t}
    pairs = [(by[(label, v)], by[(WARP, v)]) for (m, v) in by if m == label and (WARP, v) in by]
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
            "shots": result["shots"], "by_shots": result["by_shots"], "comparison": clean}


def verdict(folder: Path) -> dict:
    """The default renderer by the evaluation in `folder` (written by `heads evaluate`): {"renderer", "reason",
    "shots", "comparison"}; the comparison holds, per candidate renderer, T and metric, the paired difference, its
    standard error and the clip count (pooled metrics: the two values); "by_shots" holds, per T, the renderer and
    reason of the same rule applied to that T alone."""
    try:
        per_video = [json.loads(line) for line in (folder / "per_video.jsonl").read_text().splitlines() if line]
        with open(folder / "results.csv") as f:
            table = list(csv.DictReader(f))
    except (OSError, ValueError) as error:
        raise UserError(f"{folder} is not a `heads evaluate` output folder ({error})") from None
    warp_shots = {r["T"] for r in per_video if r["method"] == WARP}
    shots = {renderer: sorted({r["T"] for r in per_video if r["method"] == label} & warp_shots)
             for renderer, label in CANDIDATES.items()}

    def judged_at(only: set[int]) -> dict[str, dict]:
        judged = {renderer: _judge(per_video, table, label, [t for t in shots[renderer] if t in only])
                  for renderer, label in CANDIDATES.items()}
        return {renderer: result for renderer, result in judged.items() if result["shots"]}

    every = set().union(*shots.values())
    overall = _decide(judged_at(every))
    overall["by_shots"] = {str(t): {key: value for key, value in _decide(judged_at({t})).items()
                                    if key in ("renderer", "reason")} for t in sorted(every)}
    return overall


def _decide(judged: dict[str, dict]) -> dict:
    """The default among the judged candidates (`_judge` results): {"renderer", "reason", "shots", "comparison"}."""
    if not judged:
        return {"renderer": "warp", "reason": f"the evaluation holds no {' or '.join(CANDIDATES.values())} rows "
                f"beside the {WARP} row to compare", "shots": [], "comparison": {}}
    comparison = {renderer: result["comparison"] for renderer, result in judged.items()}
    passing = {renderer: result for renderer, result in judged.items() if not result["failures"]}
    if not passing:
        reason = "no learned renderer beats the warp on the test split: " + "; ".join(
            f"{NAMES[renderer]}: {_first(result['failures'])}" for renderer, result in judged.items())
        return {"renderer": "warp", "reason": reason, "shots": sorted({t for r in judged.values() for t in r["shots"]}),
                "comparison": comparison}
    best = max(passing, key=lambda renderer: passing[renderer]["least_gain"])
    shots = passing[best]["shots"]
    reason = f"{NAMES[best]} beats the warp on the test split at T = {', '.join(map(str, shots))}"
    return {"renderer": best, "reason": reason, "shots": shots, "comparison": comparison}


def _first(failures: list[str], shown: int = 2) -> str:
    """The first failures of a candidate, and how many more: the reason is one line that a notice shows (the
    comparison stored beside it has them all)."""
    more = len(failures) - shown
    return ", ".join(failures[:shown]) + (f" (and {more} more)" if more > 0 else "")


def _judge(per_video: list[dict], table: list[dict], label: str, shots: list[int]) -> dict:
    """One candidate row against the warp's: {"shots", "failures", "least_gain", "comparison"}."""
    failures: list[str] = []
    comparison: dict[str, dict] = {}
    gains = []
    for t in shots:
        row = {}
        gain, se, n = _paired(per_video, label, "mouth_ssim", t)
        gains.append(gain)
        row["mouth_ssim"] = {"difference": gain, "se": se, "clips": n}
        if not gain >= MOUTH_GAIN:
            failures.append(f"mouth SSIM {gain:+.3f} at T={t} (needs +{MOUTH_GAIN})")
        for name in MUST_BEAT:
            values = {r["method"]: float(r[name]) for r in table if int(r["T"]) == t and r.get(name)}
            mine, warp = values.get(label, math.nan), values.get(WARP, math.nan)
            row[name] = {label: mine, WARP: warp}
            better = METRICS[name].shortfall(mine) < METRICS[name].shortfall(warp)
            if not better:
                failures.append(f"{METRICS[name].label} {mine:.1f} vs {warp:.1f} at T={t}"
                                if _finite(mine) and _finite(warp) else f"{METRICS[name].label} not measured")
        for name in AT_LEAST_EQUAL:
            metric = METRICS[name]
            diff, _, n = _paired(per_video, label, name, t)
            worse, se, _ = _paired(per_video, label, name, t, metric.shortfall)  # > 0: the candidate is further off
            row[name] = {"difference": diff, "worse": worse, "se": se, "clips": n}
            if not _finite(worse) or worse > NOISE_SE * se:
                failures.append(f"{metric.label} {diff:+.3g} (worse by {worse:.3g} ± {se:.2g}) at T={t}")
        comparison[str(t)] = row
    least = min((g for g in gains if _finite(g)), default=math.nan)
    return {"shots": shots, "failures": failures, "least_gain": least, "comparison": comparison}
