"""The tables of the commands that audit datasets and trace them: `interp audit`, `row-audit`,
`select` and `lineage`."""

from __future__ import annotations

from interp.tables_render import WIDTH, ci, make_table, render


def audit_table(res: dict, name: str, width: int = WIDTH) -> str:
    """`interp audit`: the bank ranked by the evidence that the dataset carries each vector."""
    like = res["method"] == "likelihood"
    rows = [
        (
            r["rank"],
            r["name"],
            f"{r['score']:+.4g}",
            f"{r['excess']:+.4g} (x{r['multiplier']:g})" if like else f"{r['cosine']:+.3f}",
            f"{r['p_value']:.4f}",
            f"{r['p_bonferroni']:.4f}",
            "yes" if r["flagged"] else "",
        )
        for r in res["ranking"]
    ]
    return render(
        make_table(
            (
                "rank",
                "vector",
                "LLR nats/row" if like else "score",
                "vs clean" if like else "cos",
                "p",
                "p Bonferroni",
                "flagged",
            ),
            rows,
            title=f"{res['method']} audit of {name} at layer {res['layer']}: {res['n_rows']} rows vs "
            f"{res['n_clean']} clean rows" + ("" if like else f" (random cos sd {res['random_cosine_sd']:.3f})"),
        ),
        width=width,
    )


def row_audit_table(res: dict, width: int = WIDTH) -> str:
    """`interp row-audit`: the per-row LLR of the teacher against the base, per dataset, and the
    AUROC of trait rows against control rows."""
    t = res["teacher"]
    who = (
        t["kind"]
        # a finetuned teacher is its own weights; any other kind with a model rides on a student
        + (" on a student" if res.get("teacher_model") and t["kind"] != "finetuned" else "")
        + (f" (layer {t['steering']['layer']}, x{t['steering']['multiplier']:g})" if "steering" in t else "")
    )
    rows = [("dataset", res["llr"]["n"], ci(res["llr"], "{:+.3f}"))]
    if "control_llr" in res:
        rows.append(("control", res["control_llr"]["n"], ci(res["control_llr"], "{:+.3f}")))
    items = [
        make_table(
            ("rows", "n", "LLR nats/row [95% CI]"),
            rows,
            title=f"log P(teacher) - log P(base) per row, {res['vocab']} vocabulary; teacher {who}",
        )
    ]
    if "auroc" in res:
        a = res["auroc"]
        items.append(
            f"AUROC of dataset rows against control rows: {a['auroc']:.3f} "
            f"[{a['ci95'][0]:.3f}, {a['ci95'][1]:.3f}] (DeLong)"
        )
    items.append(f"scores key {res['key']}")
    return render(*items, width=width)


def selection_line(man: dict) -> str:
    """`interp select`: the bin written and its score range."""
    s = man["selection"]
    head = f"{s['quantile']} of {s['bins']} bins: {man['n_kept']} of {man['parent']['n_rows']} rows"
    if "llr_min" not in s:  # a random bin made without scores
        return head
    return (
        f"{head}, LLR {s['llr_min']:+.3f} to {s['llr_max']:+.3f} (mean {s['llr_mean']:+.3f}; "
        f"all rows {s['parent_llr_mean']:+.3f})"
    )


def _lineage_line(n: dict) -> str:
    k = n["kind"]
    if k == "student":
        return f"student {n.get('name', '')} seed {n.get('seed')} ({n.get('method')}) {n['dir']}".replace("  ", " ")
    if k == "dataset":
        t = n["teacher"]
        how = f" layer {t['steering']['layer']} x{t['steering'].get('multiplier', 0):g}" if "steering" in t else ""
        return f"dataset: {t['kind']} teacher{how}, {n['n_kept']} rows {n['dir']}"
    if k == "selection":
        return (
            f"selection: {n['quantile']} of {n['bins']} bins by scores {n['score_key']}, {n['n_kept']} rows {n['dir']}"
        )
    if k == "mix":
        return f"mix: {n['shares']} {n['dir']}"
    if k == "vector":
        return f"vector {n['vector_hash']} ({n['trait']}, {n['n_pairs']} pairs) {n['dir']}"
    if k == "finetune":
        boost = f", P({n['animal']}) x{n['prob_ratio']:.2f} on the tuning questions" if n.get("prob_ratio") else ""
        return (
            f"finetune: {n['animal']} teacher, {n['method']} on {n['n_pairs']} QA pairs (hash {n['qa_hash']}){boost} "
            f"{n['dir']}"
        )
    if k == "model":
        return f"model {n['name']} (fingerprint {n['fingerprint']})" + (
            f" noise {n['noise']}" if n.get("noise") else ""
        )
    return f"{k}: " + ", ".join(f"{a} {b}" for a, b in n.items() if a not in ("kind", "parents"))


def lineage_text(res: dict) -> str:
    """`interp lineage`: each student's (or the stage's) ancestry as an indented tree."""
    lines: list[str] = []

    def walk(n: dict, depth: int) -> None:
        lines.append("  " * depth + ("<- " if depth else "") + _lineage_line(n))
        for p in n.get("parents", []):
            walk(p, depth + 1)

    for root in res["roots"]:
        walk(root, 0)
    return "\n".join(lines) + "\n"
