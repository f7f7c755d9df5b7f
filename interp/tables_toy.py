"""The tables of the toy experiments: `interp mnist` (E7) and `theorem` (E8)."""

from __future__ import annotations

from interp.tables_render import WIDTH, ci, make_table, render


def mnist_tables(results: dict, n_aux: int, hidden: int, chance: float, width: int = WIDTH) -> str:
    """`interp mnist` (E7): digit accuracy per condition, then one table per sweep."""
    diff = results["paired_difference"]
    rows = [(r["condition"], ci(r), f"{r['sd']:.3f}", r["n"]) for r in results["table"]]
    rows.append((f"{diff['a']} - {diff['b']} (paired)", ci(diff, "{:+.3f}"), f"{diff['sd']:.3f}", diff["n"]))
    items = [
        make_table(
            ("condition", "digit accuracy [95% CI]", "sd", "seeds"),
            rows,
            title=f"E7 on {results['data']['source']} (m={n_aux}, hidden={hidden}; chance {chance:.2f})",
        )
    ]
    for name, sweep in results["sweeps"].items():
        shown = [
            r
            for r in sweep
            if r["condition"] in ("teacher", "student_aux", "cross_student_aux") or " - " in r["condition"]
        ]
        if sweep:
            items.append(
                make_table(
                    (name, "condition", "digit accuracy [95% CI]", "seeds"),
                    [
                        (r["value"], r["condition"], ci(r, "{:+.3f}" if " - " in r["condition"] else "{:.3f}"), r["n"])
                        for r in shown
                    ],
                    title=f"sweep over {name}",
                )
            )
    return render(*items, width=width)


def theorem_table(results: dict, width: int = WIDTH) -> str:
    """`interp theorem` (E8): the student step against the teacher's displacement, per cell."""
    return render(
        make_table(
            ("model", "teacher", "loss", "init", "<u,d> [95% CI]", "cos(u,d) [95% CI]", ">=0", "seeds", "|d|/|th0|"),
            [
                (
                    r["model"],
                    r["teacher"],
                    r["loss"],
                    r["init"],
                    ci(r["inner"], "{:+.1e}"),
                    ci(r["cosine"], "{:+.3f}"),
                    f"{r['frac_nonneg']:.2f}",
                    r["n"],
                    f"{r['relative_teacher_delta']:.4f}",
                )
                for r in results["rows"]
            ],
            title="E8: student step u vs teacher displacement d = theta_T - theta_0",
        ),
        width=width,
    )
