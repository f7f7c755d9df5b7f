"""Pre-stated contrasts between the cells of one finished sweep, paired by seed.

    from interp.sweep_contrast import load_contrasts, run_contrasts
    cfg = load_contrasts("experiments/configs/e23_regime/rows_epochs_contrasts.toml")
    res = run_contrasts(cfg, "artifacts/e23-rows-epochs/15f1c41f54", "artifacts/e23-rows-contrasts")

A sweep's own report pairs every cell with one reference cell. A design question is often another
pair ("1280 unique rows against 80 rows seen 16 times", "top quintile against bottom"), and it is
only a test if it was written down before the cells' transfer was read. A contrast file states
those pairs: it names the sweep config it belongs to (its cells must be the sweep's, by content
id, so the file cannot be read against another grid), the comparison, and per contrast the grid
values of cells `a` and `b` and what "above 0" would mean. Each contrast is a minus b per seed (the
same seeds: the same prompts, data order and control), with its t-interval over seeds, seeds
positive, the exact sign-flip p, the difference detectable at 80% power, and a reading: "above 0",
"below 0", or "crosses 0" (never "the same": the detectable difference says what a null rules out).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from interp.config import read_toml
from interp.runs import RESULTS_FILE, file_hash, provenance, read_json, write_json, write_manifest
from interp.stats import detectable_effect, sign_flip_test, t_interval
from interp.sweep_axis import grid_value

KIND = "sweep-contrasts"


@dataclass(frozen=True)
class Contrast:
    """Cell `a` minus cell `b`, each picked by grid values ({"data.n_prompts": 1280, ...}: every
    field named must match, and exactly one cell may); `means` says what "above 0" would show."""

    name: str
    a: dict
    b: dict
    means: str = ""


@dataclass(frozen=True)
class ContrastConfig:
    """sweep_config: the committed sweep config the contrasts were stated for. comparison: the
    transfer comparison read (default: the sweep's). stated: when and against what they were stated."""

    sweep_config: str
    contrasts: tuple[Contrast, ...]
    comparison: str | None = None
    stated: str = ""
    source: str = field(default="", compare=False)


def load_contrasts(path: str | Path) -> ContrastConfig:
    """A contrast file: `sweep_config`, optional `comparison` and `stated`, and `[[contrast]]`
    tables with `name`, `a`, `b` (inline tables of grid values) and optional `means`."""
    raw = read_toml(path, "contrasts")
    unknown = set(raw) - {"sweep_config", "comparison", "stated", "contrast"}
    if unknown:
        raise ValueError(
            f"contrasts: {path} has unknown keys {sorted(unknown)}; use sweep_config, comparison, stated, [[contrast]]"
        )
    if "sweep_config" not in raw:
        raise ValueError(f"contrasts: {path} lacks sweep_config; name the sweep config these contrasts were stated for")
    items = raw.get("contrast") or []
    if not items:
        raise ValueError(f"contrasts: {path} states no [[contrast]]; add one with name, a and b")
    out = []
    for i, c in enumerate(items):
        where = f"contrast[{i}] of {path}"
        for k in ("name", "a", "b"):
            if k not in c:
                raise ValueError(f"{where}: lacks {k!r}; a contrast needs name, a and b")
        if not isinstance(c["a"], dict) or not isinstance(c["b"], dict) or not c["a"] or not c["b"]:
            raise ValueError(
                f'{where}: a and b must be inline tables of grid values, e.g. a = {{ "data.select" = "top" }}'
            )
        extra = set(c) - {"name", "a", "b", "means"}
        if extra:
            raise ValueError(f"{where}: unknown keys {sorted(extra)}; use name, a, b, means")
        out.append(Contrast(str(c["name"]), dict(c["a"]), dict(c["b"]), str(c.get("means", ""))))
    names = [c.name for c in out]
    if len(set(names)) != len(names):
        raise ValueError(f"contrasts: {path} names a contrast twice; give each its own name")
    return ContrastConfig(
        str(raw["sweep_config"]), tuple(out), raw.get("comparison"), str(raw.get("stated", "")), str(path)
    )


def _cell(rows: list[dict], keys: list[str], want: dict, where: str) -> dict:
    """The one row whose grid values are `want`'s: single fields, or a joined key with its list."""
    fields = {n.strip() for k in keys for n in k.split(",")} | set(keys)
    for name in want:
        if name not in fields:
            raise ValueError(f"{where}: {name!r} is not a grid field of this sweep (its fields: {sorted(fields)})")

    def value(r: dict, name: str):
        return r[name] if name in keys else grid_value(r, keys, name, where)

    hits = [r for r in rows if all(value(r, n) == v for n, v in want.items())]
    if len(hits) != 1:
        labels = [r["label"] for r in rows]
        raise ValueError(
            f"{where}: {want} matches {len(hits)} cells, not 1; name grid values that pick one of {labels}"
        )
    return hits[0]


def reading(interval: dict) -> str:
    lo, hi = interval["ci95"]
    return "above 0" if lo > 0 else "below 0" if hi < 0 else "crosses 0"


def sweep_contrasts(results: dict, cfg: ContrastConfig, cells: dict[str, list[int]] | None = None) -> dict:
    """Every contrast of `cfg` on a sweep's results.json. `cells` (the committed sweep config's
    cells: id -> seeds) must be the results' cells, so the contrasts are read on the grid they were
    stated for, and a contrast's two cells must share their seeds, so its pairs are pairs."""
    rows, keys = results["rows"], results.get("grid_keys", list(results["grid"]))
    if cells is not None and {r["cell"] for r in rows} != set(cells):
        raise ValueError(
            f"sweep_config: {cfg.sweep_config}'s cells are not this sweep's (the grid or a setting differs); "
            "read the contrasts on the sweep they were stated for"
        )
    comp = cfg.comparison or results["comparison"]
    out = []
    for c in cfg.contrasts:
        where = f"contrast {c.name!r}"
        a, b = _cell(rows, keys, c.a, f"{where} a"), _cell(rows, keys, c.b, f"{where} b")
        if a["cell"] == b["cell"]:
            raise ValueError(f"{where}: a and b pick the same cell {a['label']}; a contrast needs two cells")
        if comp not in a["comparisons"] or comp not in b["comparisons"]:
            raise ValueError(f"comparison: {comp!r} is not in the sweep's tables (it has {sorted(a['comparisons'])})")
        if cells is not None and cells[a["cell"]] != cells[b["cell"]]:
            raise ValueError(
                f"{where}: {a['label']} and {b['label']} ran on different seeds; a paired contrast needs the same seeds"
            )
        xa, xb = a["comparisons"][comp]["per_seed"], b["comparisons"][comp]["per_seed"]
        if len(xa) != len(xb):
            raise ValueError(
                f"{where}: {a['label']} has {len(xa)} seeds and {b['label']} {len(xb)}; a paired contrast needs the same seeds"
            )
        d = [p - q for p, q in zip(xa, xb)]
        t = t_interval(d)
        broken = [r["label"] for r in (a, b) if r.get("broken")]  # a noised base that no longer models numbers
        if broken:
            read = f"not read: broken base in {', '.join(broken)}"
        else:
            read = reading(t) if t["sd"] is not None else "one seed: no interval"
        out.append(
            {
                "name": c.name,
                "means": c.means,
                "a": {"cell": a["cell"], "label": a["label"], "transfer_per_seed": t_interval(xa)},
                "b": {"cell": b["cell"], "label": b["label"], "transfer_per_seed": t_interval(xb)},
                "per_seed": d,
                "n_seeds": len(d),
                "seeds": cells[a["cell"]] if cells is not None else None,
                "diff_per_seed": t,
                "positive_seeds": sum(v > 0 for v in d),
                "sign_flip": sign_flip_test(d),
                "detectable_80": detectable_effect(d),
                "broken": broken,
                "reading": read,
            }
        )
    return {"kind": KIND, "sweep": results.get("sweep"), "comparison": comp, "stated": cfg.stated, "contrasts": out}


def _sweep_file(cfg: ContrastConfig) -> Path:
    """`sweep_config` as written (a path from the repository root) from the working directory, or
    from a folder above the contrast file (the file lives in the repository it names)."""
    p = Path(cfg.sweep_config)
    if p.is_absolute() or p.is_file() or not cfg.source:
        return p
    return next((d / p for d in Path(cfg.source).resolve().parents if (d / p).is_file()), p)


def run_contrasts(cfg: ContrastConfig, sweep_dir: str | Path, out_dir: str | Path) -> dict:
    """`sweep_contrasts` on `sweep_dir/results.json`, checked against the cells of `cfg.sweep_config`;
    writes `out_dir/results.json`, then its manifest (the contrast file's and the results' hashes)."""
    from interp.sweep import load_sweep

    started, out = time.perf_counter(), Path(out_dir)
    src = Path(sweep_dir) / RESULTS_FILE
    if not src.is_file():
        raise ValueError(f"sweep: {src} does not exist; finish the sweep (`interp sweep CONFIG` reports at the end)")
    sweep = load_sweep(_sweep_file(cfg))
    res = sweep_contrasts(read_json(src), cfg, {c.id: list(c.config.seeds) for c in sweep.cells})
    res["sweep_config"] = cfg.sweep_config
    res["provenance"] = provenance()
    write_json(out / RESULTS_FILE, res)
    inputs = {str(src): file_hash(src), cfg.sweep_config: file_hash(_sweep_file(cfg))}
    if cfg.source:
        inputs[cfg.source] = file_hash(Path(cfg.source))
    write_manifest(out, KIND, asdict(cfg), inputs, started)
    return res


def contrast_lines(res: dict) -> list[str]:
    """The printed table: one line per contrast, a minus b paired by seed."""
    lines = [f"{res['comparison']}, a minus b paired by seed ({res['sweep']})"]
    for c in res["contrasts"]:
        t, n = c["diff_per_seed"], c["n_seeds"]
        mde = f"{c['detectable_80']:.3f}" if c["detectable_80"] is not None else "-"
        lines.append(
            f"{c['name']}: {t['mean']:+.3f} [{t['ci95'][0]:+.3f}, {t['ci95'][1]:+.3f}], {c['positive_seeds']}/{n} > 0, "
            f"sign-flip p {c['sign_flip']['p']:.3f}, detectable (80%) {mde}: {c['reading']}"
        )
        lines.append(
            f"    a = {c['a']['label']}, b = {c['b']['label']}"
            + (f"; above 0 means: {c['means']}" if c["means"] else "")
        )
    return lines
