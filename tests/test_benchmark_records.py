"""The README's performance figures against the committed benchmark JSON they come from.

Benchmarks are never timed in tests; these only recompute the README's summary of a committed
record (`benchmarks/results/*.json`), so a quoted ratio cannot drift from the run behind it.
"""

from __future__ import annotations

import json
from pathlib import Path

from interp.stats import t_interval

ROOT = Path(__file__).resolve().parents[1]
PAIRS = ROOT / "benchmarks" / "results"
# every recorded run of bench_student_pair.py, in the order the README gives them
PAIR_RUNS = (
    "2026-12-02_student-pair-one-rate.json",
    "2026-12-02_student-pair.json",
    "2026-12-02_student-pair-sitting2.json",
)


def _ratios(name: str) -> dict[str, list[float]]:
    """Per arm, each pair's machine time a student over its fp32 floor, recomputed from the raw
    wall times and FLOPs at the run's best measured fp32 rate (as the script computes it)."""
    rec = json.loads((PAIRS / name).read_text())
    fp32 = rec["rates"]["fp32"]
    if "rates_measured" in rec:  # the floor takes the best rate seen in the run
        assert fp32 == max(r["fp32"] for r in rec["rates_measured"])
    out = {}
    for arm, runs in rec["arms"].items():
        vals = []
        for a in runs:
            students = a["students"]
            wall = max(s["end"] for s in students) - min(s["start"] for s in students)
            floor = sum(s["flops"] for s in students) / len(students) / (fp32 * 1e9)
            assert abs(wall / len(students) - a["cost_s"]) < 1e-6  # the script's own figure
            vals.append(wall / len(students) / floor)
        out["alone" if arm == "alone" else "at once"] = vals
    return out


def _readme_section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("- **Where issue 21's goals stand**")
    return " ".join(text[start : text.index("## Under faults", start)].split())


def test_student_pair_records_and_the_readme_pooled_ratios_agree():
    runs = [_ratios(n) for n in PAIR_RUNS]
    readme = _readme_section()
    # the second sitting's table: every pair's ratio and the arm means
    sitting2 = runs[2]
    for arm, label in (("alone", "alone, 2 threads"), ("at once", "two at once, 1 thread each")):
        cells = ", ".join(f"{v:.2f}" for v in sitting2[arm])
        mean = sum(sitting2[arm]) / len(sitting2[arm])
        assert f"| {label} |" in readme and f"| {cells} | **{mean:.2f}x** |" in readme, (label, cells, mean)
    # each run's mean at once, as the goals bullet lists them
    means = ", ".join(f"{sum(r['at once']) / len(r['at once']):.2f}x" for r in runs)
    assert f"runs {means.rsplit(', ', 1)[0]} and {means.rsplit(', ', 1)[1]}" in readme, means
    # the pooled t-intervals over every recorded pair
    pooled = {}
    for arm in ("at once", "alone"):
        vals = [v for r in runs for v in r[arm]]
        ci = pooled[arm] = t_interval(vals)
        quoted = f"{ci['mean']:.2f}x [{ci['ci95'][0]:.2f}, {ci['ci95'][1]:.2f}]"
        assert len(vals) == 10 and quoted in readme, (arm, quoted)
    # the README's reading of the goal (1.15x) follows from the records: met at once (the whole
    # interval under it), not alone
    assert pooled["at once"]["ci95"][1] <= 1.15
    assert pooled["alone"]["mean"] > 1.15
