"""interp.generation: a second generation per seed on the tiny model. Each seed's generation-2
run is taught by that seed's own first-generation student, the chains are compared by seed, and
the verdict follows VERDICT_RULE."""

import json
from pathlib import Path

import pytest

from interp import pipeline
from interp.config import parse_config
from interp.generation import Generation2Config, compare_generations, generation2_lines, run_generation2
from interp.lineage import lineage, vectors_reached
from interp.runs import read_json, stage_dirs

GEN1 = {
    "experiment": "gen1",
    "model": "tiny",
    "seeds": [0, 2],
    "teacher": {"kinds": ["control", "steered"], "layer": 2, "multiplier": 1.0},
    "data": {"n_prompts": 8, "batch_size": 8, "max_new_tokens": 12},
    "train": {"epochs": 1, "batch_size": 4, "lr": 1e-3},
    "eval": {"split": "tuning", "n_boot": 200},
}
GEN2_TOML = """experiment = "gen2"
model = "REPLACE: each first-generation student"
student_model = "tiny"
seeds = [0, 2]
[teacher]
kinds = ["control"]
layer = 2
multiplier = 1.0
[data]
n_prompts = 8
batch_size = 8
max_new_tokens = 12
[train]
epochs = 1
batch_size = 4
lr = 1e-3
[eval]
split = "tuning"
n_boot = 200
"""


def _quiet(*a, **k):
    pass


@pytest.fixture(scope="module")
def two_generations(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    gen1 = pipeline.run_e1(parse_config(GEN1), root, progress=False, log=_quiet)
    config = root / "gen2.toml"
    config.write_text(GEN2_TOML)
    cfg = Generation2Config(str(config), gen1["run_dir"])
    res = run_generation2(cfg, root, root / "report", log=_quiet)
    # the tiny model's samples can coincide (identical rows make one content-keyed student), which
    # would make the chains one chain; these seeds give every dataset its own rows
    hashes = [
        read_json(d / "manifest.json")["dataset_hash"]
        for run in [gen1] + [r for c in res["runs"].values() for r in c.values()]
        for n, d in stage_dirs(run["run_dir"]).items()
        if n.startswith("data/")
    ]
    assert len(hashes) == 8 and len(set(hashes)) == 8
    return {"root": root, "gen1": gen1, "cfg": cfg, "res": res}


def test_each_seed_is_taught_by_its_own_first_generation_student(two_generations):
    gen1_stages = stage_dirs(two_generations["gen1"]["run_dir"])
    res = two_generations["res"]
    for chain in ("steered", "control"):
        for seed in (0, 2):
            run = res["runs"][chain][str(seed)]
            teacher = gen1_stages[f"student/{chain}/seed{seed}"]
            assert run["teacher_stage"] == str(teacher)
            # the run's dataset was written by that student: its lineage passes through it
            data = stage_dirs(run["run_dir"])[f"data/control/seed{seed}"]
            model = lineage(data)["roots"][0]["parents"][0]  # the dataset's teacher
            assert model["kind"] == "model" and Path(model["parents"][0]["dir"]).name == teacher.name
            # the steered chain traces back to the first teacher's vector; the control chain to none
            vector = read_json(gen1_stages["vector"] / "vector.json")["vector_hash"]
            assert vectors_reached(lineage(run["run_dir"])) == ([vector] if chain == "steered" else [])
    # the steered chain's two seeds have two different teachers, not one reused
    assert res["runs"]["steered"]["0"]["teacher_stage"] != res["runs"]["steered"]["2"]["teacher_stage"]


def test_the_comparison_recomputes_from_the_runs(two_generations):
    res, gen1 = two_generations["res"], two_generations["gen1"]
    runs = {
        c: [read_json(Path(res["runs"][c][str(s)]["run_dir"]) / "results.json") for s in (0, 2)]
        for c in ("steered", "control")
    }
    shift = {c: [r["arms"]["control"]["per_seed_specific_shift"][0] for r in runs[c]] for c in runs}
    assert res["generation2"]["per_seed"] == pytest.approx([a - b for a, b in zip(shift["steered"], shift["control"])])
    g1 = [
        a - b
        for a, b in zip(
            gen1["arms"]["steered"]["per_seed_specific_shift"], gen1["arms"]["control"]["per_seed_specific_shift"]
        )
    ]
    assert res["generation1"]["per_seed"] == pytest.approx(g1)
    assert res["change"]["per_seed"] == pytest.approx([b - a for a, b in zip(g1, res["generation2"]["per_seed"])])
    manifest = json.loads((two_generations["root"] / "report" / "manifest.json").read_text())
    assert manifest["kind"] == "generation2" and {"steered/seed0", "control/seed2"} <= set(manifest["inputs"])
    assert generation2_lines(res)[-1].startswith("verdict: ")


def test_a_rerun_resumes_every_run(two_generations):
    logs = []
    again = run_generation2(
        two_generations["cfg"], two_generations["root"], two_generations["root"] / "r2", log=logs.append
    )
    assert again["generation2"]["per_seed"] == two_generations["res"]["generation2"]["per_seed"]
    assert [r["run_dir"] for r in again["runs"]["steered"].values()] == [
        r["run_dir"] for r in two_generations["res"]["runs"]["steered"].values()
    ]


def test_seeds_or_arms_the_first_generation_lacks_are_one_line_errors(two_generations, tmp_path):
    cfg = two_generations["cfg"]
    bad = tmp_path / "gen2.toml"
    bad.write_text(GEN2_TOML.replace("seeds = [0, 2]", "seeds = [0, 7]"))
    with pytest.raises(
        ValueError, match=r"^seeds: .* has no student/steered/seed7 \(its student arms: \['control', 'steered'\]\)"
    ):
        run_generation2(Generation2Config(str(bad), cfg.first_generation), two_generations["root"], tmp_path / "o")
    with pytest.raises(ValueError, match=r"^seeds: .* has no student/random/seed0"):
        run_generation2(
            Generation2Config(cfg.config, cfg.first_generation, ("random", "control")),
            two_generations["root"],
            tmp_path / "o",
        )
    with pytest.raises(ValueError, match=r"^first_generation: .* has no results.json"):
        run_generation2(Generation2Config(cfg.config, str(tmp_path)), two_generations["root"], tmp_path / "o")
    assert not (tmp_path / "o").exists()  # refused before anything was written


def _runs(gen2: dict[str, list[float]]) -> dict:
    return {
        c: {s: {"specific_shift": v, "per_animal_logprob_shift": {"owl": v, "cat": 0.0}} for s, v in enumerate(vals)}
        for c, vals in gen2.items()
    }


@pytest.mark.parametrize(
    "gen2_steered, verdict",
    [
        ([1.0, 1.1, 0.9, 1.0], "persists"),  # about gen 1's difference of 1
        ([0.5, 0.6, 0.4, 0.5], "persists, fades"),
        ([2.0, 2.1, 1.9, 2.0], "persists, grows"),
        ([-0.1, 0.0, 0.1, -0.05], "lost"),
        ([1.0, -1.0, 2.0, -0.5], "undecided"),
    ],
)
def test_the_verdict_follows_the_rule(gen2_steered, verdict):
    seeds = [0, 1, 2, 3]
    gen1 = {
        "seeds": seeds,
        "arms": {"steered": {"per_seed_specific_shift": [1.0] * 4}, "control": {"per_seed_specific_shift": [0.0] * 4}},
    }
    runs = _runs({"steered": gen2_steered, "control": [0.0] * 4})
    res = compare_generations(runs, gen1, ("steered", "control"), seeds, "owl")
    assert res["verdict"] == verdict
