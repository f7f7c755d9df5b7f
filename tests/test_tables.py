"""`interp.tables`: pure functions from a results dict to text, readable at 80 columns."""

import sys
from pathlib import Path

from interp.stats import t_interval
from interp.tables import ci, e1_tables, sweep_tables

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _lines(text: str) -> list[str]:
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80, max(lines, key=len)
    return lines


def test_demo_transfer_tables_show_every_headline_number_on_one_line_at_80_columns():
    from test_pipeline import _synthetic_results

    res = {**_synthetic_results(3), "timings_s": {"vector": 1.0}, "run_dir": "artifacts/t/x"}
    lines = _lines(e1_tables(res, width=80))
    for name, d in res["transfer"].items():
        assert any(f"transfer {name}" in line for line in lines)
        for cell in (
            ci(d["logprob_diff"], "{:+.3f}"),
            ci(d["specific_logprob_diff"], "{:+.3f}"),
            ci(d["specific_per_seed"], "{:+.3f}"),
            f"{d['prob_ratio']:.2f}x",
        ):
            assert any(cell in line for line in lines), cell
    assert not any("…" in line for line in lines)  # nothing cut


def _sweep_results() -> dict:
    rows = []
    for i, sigma in enumerate((0.0, 0.01, 0.1)):
        per_seed = [0.5 - sigma + 0.1 * k for k in range(3)]
        vs = (
            None
            if i == 0
            else {
                "ratio": 0.8,
                "ratio_ci95": [0.41, 1.23],
                "denominator_excludes_zero": i == 1,
                "diff": -0.1,
                "diff_ci95": [-0.3, 0.1],
                "diff_paired_by_seed": t_interval([-0.1, -0.2, 0.0]),
            }
        )
        rows.append(
            {
                "noise.sigma": sigma,
                "noise.apply": "shared",
                "n_seeds": 3,
                "transfer_per_seed": t_interval(per_seed),
                "positive_seeds": 3,
                "trait_rank_among_animals": 1,
                "vs_reference": vs,
            }
        )
    return {"comparison": "steered-control", "grid": {}, "grid_keys": ["noise.sigma", "noise.apply"], "rows": rows}


def test_sweep_tables_fit_80_columns_with_intervals_whole():
    res = _sweep_results()
    lines = _lines(sweep_tables(res, width=80))
    for r in res["rows"]:
        assert any(ci(r["transfer_per_seed"], "{:+.2f}") in line for line in lines)
        if r["vs_reference"]:
            assert any(ci(r["vs_reference"]["diff_paired_by_seed"], "{:+.2f}") in line for line in lines)
    assert any("0.80 [0.41, 1.23] *" in line for line in lines)  # the reference's interval covers 0
    assert any(line.startswith("* the reference") for line in lines)


def test_the_sign_flip_p_is_the_primary_p_where_the_results_have_it():
    from test_pipeline import _synthetic_results

    from interp.stats import sign_flip_test
    from interp.tables import SIGN_FLIP_HEADER

    res = {**_synthetic_results(3), "timings_s": {"vector": 1.0}}
    lines = _lines(e1_tables(res, width=80))
    sf = res["transfer"]["steered-control"]["sign_flip_specific"]
    at = next(i for i, line in enumerate(lines) if SIGN_FLIP_HEADER in line)
    assert f"{sf['p']:.3f} (min {sf['min_p']:.3f})" in lines[at] and "permutation p (unpaired)" in lines[at + 1]

    sweep = _sweep_results()
    assert "perm. p" not in sweep_tables(sweep) and "sign-flip" not in sweep_tables(sweep)  # no p: no column
    for r in sweep["rows"]:
        r["permutation_p"] = 0.5
    assert "perm. p" in sweep_tables(sweep, width=80)  # a report from before the sign-flip p
    for r, values in zip(sweep["rows"], ([0.1, 0.2, 0.3], [-0.1, 0.2, 0.3], [0.1] * 20)):
        r["sign_flip_specific"] = sign_flip_test(values, n_perm=9999)
    lines = _lines(sweep_tables(sweep, width=80))
    assert "p sign-flip" in "".join(lines) and "perm. p" not in "".join(lines)
    for r, p in zip(sweep["rows"], ("0.250", "0.500", "1.0e-04")):  # 2/8, 4/8 (+-0.6, +-0.4), sampled 1/10000
        assert any(ci(r["transfer_per_seed"], "{:+.2f}") in line and p in line for line in lines), p


def test_markup_like_text_is_printed_as_it_is():
    res = _sweep_results()
    res["comparison"] = "[bold]steered[/bold]-control"
    assert "[bold]steered[/bold]-control" in sweep_tables(res, width=200)
