"""E4 confusion: does the audit name the animal whose vector steered the teacher?

    from interp.analysis.confusion import AuditConfusionConfig, run_audit_confusion
    res = run_audit_confusion(AuditConfusionConfig(model="tiny", animals=("owl", "cat", "dog"), layer=1, n_prompts=8),
                              "artifacts/audit-confusion/tiny")

For each animal: its bank vector (`build_bank`, built-in contrastive pairs) and a dataset from the
teacher steered with it (`Teacher("steered", animal, Steering(layer, multiplier, scope="all"))`).
With `family="third_person"` or `"user_side"` the teachers are steered with those same vectors (the
teachers' texts), but the audit ranks another bank, built from that independent contrast family.
Every dataset is audited against one clean reference: the control teacher on the same prompts and
sampling seed, so the rows differ only by the steering (this makes the permutation p conservative).
`n_clean` clean datasets (control teacher, the same prompts, sampling seeds seed+1, seed+2, ...)
are audited alike: the false positives (an animal named on clean data), differing from the
reference only by sampling noise, counted with an exact interval.
Stages are cached under `<cache>/<stage>-<content key>/` (`interp.runs.Stage`; default
`<out>/cache`), so a rerun resumes. The artifact directory holds `config.json`,
`confusion.safetensors`, `confusion.html` (+ `.png` where a Chromium exists), `results.json`, then
`manifest.json` (kind "audit-confusion": config, input hashes, stages, provenance).
`experiments/audit_confusion.py` is its command line.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable

from interp.analysis.audit import CLEAN, audit_confusion, build_bank, load_bank, load_rows, save_confusion
from interp.prompts import ANIMALS, CONTRAST_FAMILIES, CONTRAST_FAMILY_VERSION, PROMPT_VERSION, TEACHER_FAMILY
from interp.runs import CONFIG_FILE, MANIFEST_FILE, RESULTS_FILE, Stage, content_hash, provenance, read_json, write_json

KIND = "audit-confusion"
CONFUSION_FILE = "confusion.json"
REFERENCE = "reference"
METHODS = ("likelihood", "gradient")
VOCABS = ("grammar", "full")
POSITIONS = ("assistant_tag", "completion", "all")
# options added after results existed: left out of the recorded config at these defaults, so an
# old run's config (and config_hash) reads the same
LATER_DEFAULTS = {"family": TEACHER_FAMILY, "n_clean": 1, "config": None, "cache": None}


def clean_names(n: int) -> list[str]:
    """The clean datasets' names: "clean" (sampling seed + 1, the one dataset before `n_clean`),
    then "clean-2", "clean-3", ... (seed + 2, ...)."""
    return [CLEAN] + [f"{CLEAN}-{i}" for i in range(2, n + 1)]


def default_animals(n: int = 8) -> list[str]:
    """The first `n` built-in animals that have contrastive pairs (today: every one of ANIMALS)."""
    from interp.prompts import contrastive_pairs

    def has_pairs(a: str) -> bool:
        try:
            return bool(contrastive_pairs(a, 1))
        except ValueError:
            return False

    return [a for a in ANIMALS if has_pairs(a)][:n]


@dataclass(frozen=True)
class AuditConfusionConfig:
    """model: registry name, local HF directory or hub id.
    animals: the true animals (>= 8 for E4), one steered teacher and bank vector each.
    bank: an existing bank folder (`interp bank`) whose vectors steer the teachers and are ranked;
      None: build one here.
    layer, multiplier: steering and audit layer (blocks.{l}.hook_resid_post); strength (x mean residual norm).
    n_prompts: number prompts per dataset; n_rows: rows audited per dataset (None: all kept).
    n_pairs: contrastive pairs per bank vector.
    family: the audit bank's contrast texts: the teachers' own (assistant), or an independent family.
    n_clean: clean datasets audited for false positives (>= 1).
    n_perm, alpha: permutations per p-value; flag when the Bonferroni p is below alpha.
    max_new_tokens, batch_size: tokens per completion at most; prompts decoded together.
    seed: prompts, sampling and permutations (clean dataset: sampling seed + 1).
    method: likelihood (the data's LLR under each candidate's steering) or gradient (the SFT-loss
      gradient at `position`).
    audit_multipliers: likelihood: steering strengths tried per candidate, best counts (None: `multiplier`).
    vocab: likelihood: renormalise over the number grammar's 13 tokens, or the whole vocabulary.
    position: gradient: read at the assistant tag, averaged over completion positions, or summed over all.
    cache: stage cache (None: <out>/cache); another run's cache reuses its bank and datasets.
    formats: figure formats (html always; png/svg/pdf need a Chromium).
    device: cpu, cuda or auto.
    config: the TOML file these options were read from (recorded only).
    """

    model: str = "smollm2-135m"
    animals: tuple[str, ...] = field(default_factory=lambda: tuple(default_animals()))
    bank: str | None = None
    layer: int = 8
    multiplier: float = 0.5
    n_prompts: int = 64
    n_rows: int | None = None
    n_pairs: int = 16
    family: str = TEACHER_FAMILY
    n_clean: int = 1
    n_perm: int = 1000
    alpha: float = 0.05
    max_new_tokens: int = 50
    batch_size: int = 32
    seed: int = 0
    method: str = "likelihood"
    audit_multipliers: tuple[float, ...] | None = None
    vocab: str = "grammar"
    position: str = "assistant_tag"
    cache: str | None = None
    formats: str = "html,png"
    device: str = "auto"
    config: str | None = None

    def __post_init__(self) -> None:
        # lists from a caller become tuples (the dataclass is frozen, hashable); None: the teacher's strength
        object.__setattr__(self, "animals", tuple(self.animals))
        multipliers = self.audit_multipliers if self.audit_multipliers else (self.multiplier,)
        object.__setattr__(self, "audit_multipliers", tuple(float(m) for m in multipliers))
        for name, choices in (
            ("family", CONTRAST_FAMILIES),
            ("method", METHODS),
            ("vocab", VOCABS),
            ("position", POSITIONS),
        ):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name}: {getattr(self, name)!r} is not one of {', '.join(choices)}")
        if self.n_clean < 1:
            raise ValueError(f"n_clean: {self.n_clean} must be >= 1")
        if self.bank is not None and self.family != TEACHER_FAMILY:
            raise ValueError(
                f"family: applies to a bank built here; drop it, or drop bank ({self.bank}), whose vectors also "
                "steer the teachers"
            )

    def default_dir(self) -> Path:
        """artifacts/audit-confusion/<model>, suffixed -<family> for an independent bank."""
        suffix = "" if self.family == TEACHER_FAMILY else f"-{self.family}"
        return Path("artifacts/audit-confusion") / (self.model.replace("/", "_") + suffix)

    def record(self, out_dir: str | Path) -> dict:
        """The config results.json records: every option in the command line's order (the output
        folder after `position`), the later options left out at their defaults (see LATER_DEFAULTS)."""
        values = {"config": self.config} | {f.name: getattr(self, f.name) for f in fields(self) if f.name != "config"}
        values = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
        order = list(values)
        order.insert(order.index("position") + 1, "out")
        values["out"] = str(out_dir)
        return {k: values[k] for k in order if not (k in LATER_DEFAULTS and values[k] == LATER_DEFAULTS[k])}


class _Stages:
    """Each stage computed unless cached; timed, logged and listed for results.json."""

    def __init__(self, log: Callable, progress: bool):
        self.log, self.progress = log, progress
        self.entries: list[dict] = []

    def run(self, name: str, stage: Stage, make: Callable[[Stage], None]) -> Stage:
        t, hit = time.perf_counter(), stage.done
        if not hit:
            make(stage)
        wall = round(time.perf_counter() - t, 2)
        self.entries.append(
            {
                "name": name,
                "dir": str(stage.dir),
                "cache_hit": hit,
                "wall_s": wall,
                "compute_s": stage.manifest()["wall_time_s"],
            }
        )
        self.log(f"  {name:<24} {'cached' if hit else 'done'} in {wall:.1f}s")
        return stage


def _bank(cfg: AuditConfusionConfig, model, stages: _Stages, cache: Path, name: str, family: str) -> dict:
    """A bank built once per (model, animals, pairs, family) in the cache."""
    key = {
        "model": model.identity(),
        "animals": list(cfg.animals),
        "n_pairs": cfg.n_pairs,
        "position": "mean",
        "prompts": PROMPT_VERSION,
    }
    if family != TEACHER_FAMILY:  # the teachers' bank keeps its key (and cache)
        key |= {"family": family, "family_texts": CONTRAST_FAMILY_VERSION}
    stage = Stage(cache, "bank", key)

    def make(st: Stage) -> None:
        build_bank(model, list(cfg.animals), st.dir / "bank", cfg.n_pairs, progress=stages.progress, family=family)
        st.finish()

    stages.run(name, stage, make)
    return load_bank(stage.dir / "bank", model)


def _banks(cfg: AuditConfusionConfig, model, stages: _Stages, cache: Path) -> tuple[dict, dict]:
    """(the vectors steering the teachers, the bank the audit ranks): the same bank unless `family`
    names an independent one, or `cfg.bank` for both."""
    if cfg.bank is None:
        teachers = _bank(cfg, model, stages, cache, "bank", TEACHER_FAMILY)
        bank = (
            teachers
            if cfg.family == TEACHER_FAMILY
            else _bank(cfg, model, stages, cache, f"bank/{cfg.family}", cfg.family)
        )
    else:
        bank = teachers = load_bank(cfg.bank, model)
    missing = [a for a in cfg.animals if a not in bank]
    if missing:
        raise ValueError(f"animals: {missing} have no vector in the bank ({list(bank)}); drop them or rebuild the bank")
    return teachers, bank


def _data_config(cfg: AuditConfusionConfig, sample_seed: int):
    from interp.generate import SampleConfig
    from interp.teachers import DataConfig

    sampling = SampleConfig(
        max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size, constrained=True, seed=sample_seed
    )
    return DataConfig(n_prompts=cfg.n_prompts, prompt_seed=cfg.seed, sampling=sampling)


def _datasets(cfg: AuditConfusionConfig, model, teachers: dict, stages: _Stages, cache: Path) -> tuple[dict, dict]:
    """({name: stage dir}, {name: hash, rows kept, pass rate, dir}): one dataset steered per animal,
    the clean reference (same prompts and seed), and the clean ones (sampling seeds seed+1, ...)."""
    from interp.datasets import dataset_stage, make_dataset
    from interp.steering import Steering
    from interp.teachers import Teacher

    steering = Steering(layer=cfg.layer, multiplier=cfg.multiplier, scope="all")
    plan = {a: (Teacher("steered", a, steering), _data_config(cfg, cfg.seed)) for a in cfg.animals}
    plan[REFERENCE] = (Teacher("control"), _data_config(cfg, cfg.seed))
    for i, name in enumerate(clean_names(cfg.n_clean), 1):
        plan[name] = (Teacher("control"), _data_config(cfg, cfg.seed + i))
    dirs, stats = {}, {}
    for name, (teacher, dcfg) in plan.items():
        vector = teachers[name] if teacher.kind == "steered" else None
        # interp.pipeline's data stages, so equal datasets are shared with `interp run`
        stage = dataset_stage(cache, model, teacher, vector, dcfg)
        make = lambda st, teacher=teacher, dcfg=dcfg, vector=vector: make_dataset(  # noqa: E731
            st, model, teacher, vector, dcfg, progress=stages.progress
        )
        stages.run(f"data/{name}", stage, make)
        man = stage.manifest()
        dirs[name] = stage.dir
        stats[name] = {
            "dataset_hash": man["dataset_hash"],
            "n_kept": man["n_kept"],
            "pass_rate": man["filter"]["pass_rate"],
            "dir": str(stage.dir),
        }
    return dirs, stats


def _audit(cfg: AuditConfusionConfig, model, bank: dict, dirs: dict, hashes: dict, stages: _Stages, cache: Path):
    """Every dataset audited against the reference (gradients once each); the confusion's content."""
    how = (
        {"position": cfg.position}
        if cfg.method == "gradient"
        else {"method": cfg.method, "multipliers": list(cfg.audit_multipliers), "vocab": cfg.vocab}
    )  # gradient keys as before: cache kept
    key = {
        "model": model.fingerprint(),
        "layer": cfg.layer,
        "n_rows": cfg.n_rows,
        "n_perm": cfg.n_perm,
        "seed": cfg.seed,
        "alpha": cfg.alpha,
        **how,
        **hashes,
    }
    stage = Stage(cache, "confusion", key)

    def make(st: Stage) -> None:
        res = audit_confusion(
            model,
            {n: load_rows(d) for n, d in dirs.items() if n != REFERENCE},
            load_rows(dirs[REFERENCE]),
            bank,
            cfg.layer,
            n_rows=cfg.n_rows,
            n_perm=cfg.n_perm,
            seed=cfg.seed,
            alpha=cfg.alpha,
            progress=stages.progress,
            position=cfg.position,
            method=cfg.method,
            multipliers=list(cfg.audit_multipliers),
            vocab=cfg.vocab,
        )
        write_json(st.path(CONFUSION_FILE), res)
        st.finish()

    stages.run("audit", stage, make)
    return read_json(stage.dir / CONFUSION_FILE)


def run_audit_confusion(
    cfg: AuditConfusionConfig, out_dir: str | Path, progress: bool = True, log: Callable = print
) -> dict:
    """Run (or resume) the confusion experiment into `out_dir`; returns results.json's content."""
    from interp.export import save_figures
    from interp.models import load_model
    from interp.plots import confusion_figure

    started = time.perf_counter()
    out = Path(out_dir)
    cache = Path(cfg.cache) if cfg.cache is not None else out / "cache"
    config = cfg.record(out)
    stages = _Stages(log, progress)
    timings: dict[str, float] = {}

    t = time.perf_counter()
    model = load_model(cfg.model, device=cfg.device)
    timings["load_model"] = round(time.perf_counter() - t, 2)
    if not 0 <= cfg.layer < model.n_layers:
        raise ValueError(f"layer: {cfg.layer} is out of range for {model.name} (0..{model.n_layers - 1})")

    t = time.perf_counter()
    teachers, bank = _banks(cfg, model, stages, cache)
    timings["bank"] = round(time.perf_counter() - t, 2)

    t = time.perf_counter()
    dirs, data_stats = _datasets(cfg, model, teachers, stages, cache)
    timings["data_generation"] = round(time.perf_counter() - t, 2)

    hashes = {
        "bank": {n: v.hash() for n, v in bank.items()},
        "datasets": {n: s["dataset_hash"] for n, s in data_stats.items()},
    }
    if teachers is not bank:
        hashes["teacher_vectors"] = {n: v.hash() for n, v in teachers.items()}
    t = time.perf_counter()
    res = _audit(cfg, model, bank, dirs, hashes, stages, cache)
    timings["audit"] = round(time.perf_counter() - t, 2)

    out.mkdir(parents=True, exist_ok=True)
    save_confusion(out / "confusion.safetensors", res)
    exported = save_figures({"confusion": confusion_figure(res)}, out, cfg.formats)
    if exported.message:
        log(f"  {exported.message}")
    timings["total"] = round(time.perf_counter() - started, 2)
    compute = {
        "data_generation": round(sum(s["compute_s"] for s in stages.entries if s["name"].startswith("data/")), 2),
        **res["timings_s"],
    }  # what each step cost when it ran (a cached rerun reports the original)
    results = {
        **res,
        "experiment": KIND,
        "config": config,
        "hashes": hashes,
        "data": data_stats,
        "stages": stages.entries,
        "timings_s": timings,
        "compute_s": compute,
        "figures": [str(p) for p in exported.written],
        "provenance": provenance(),
        "config_hash": content_hash(config),
    }
    write_json(out / CONFIG_FILE, config)
    write_json(out / RESULTS_FILE, results)
    write_json(
        out / MANIFEST_FILE,
        {
            "kind": KIND,
            "config": config,
            "config_hash": results["config_hash"],
            "inputs": hashes,
            "stages": stages.entries,
            **provenance(model.device),
            "wall_time_s": round(time.perf_counter() - started, 2),
        },
    )  # last: it marks the directory complete
    return results
