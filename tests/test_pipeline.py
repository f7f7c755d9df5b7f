import re
import shutil
from pathlib import Path

import pytest

from interp import pipeline
from interp.config import load_config, parse_config
import torch

from interp.models import load_model
from interp.runs import MANIFEST_FILE, load_tensors, read_json, stage_dirs

TINY = Path(__file__).resolve().parent.parent / "experiments" / "configs" / "tiny.toml"


def _cfg(**over):
    raw = {
        "experiment": "t",
        "model": "tiny",
        "seeds": [0],
        "teacher": {"kinds": ["control", "steered"], "layer": 2, "multiplier": 1.0},
        "data": {"n_prompts": 8, "batch_size": 8, "max_new_tokens": 12},
        "train": {"epochs": 1, "batch_size": 4, "lr": 1e-3},
        "eval": {"split": "tuning", "n_boot": 200},
    }
    for k, v in over.items():
        raw[k] = {**raw[k], **v} if isinstance(v, dict) else v
    return parse_config(raw)


def _quiet(*a, **k):
    pass


def test_tiny_config_file_parses():
    cfg = load_config(TINY)
    assert cfg.model == "tiny" and cfg.teacher.kinds == ["control", "steered"]


def test_full_pipeline_on_tiny_model_writes_results(tmp_path):
    res = pipeline.run_e1(_cfg(), tmp_path, progress=False, log=_quiet)
    run_dir = Path(res["run_dir"])
    for f in ("config.json", "manifest.json", "results.json"):
        assert (run_dir / f).exists()
    t = res["transfer"]["steered-control"]
    lo, hi = t["logprob_diff"]["ci95"]
    assert lo <= t["logprob_diff"]["mean"] <= hi
    assert res["arms"]["base"]["prob"]["mean"] > 0
    # the dataset manifest records its genealogy
    data_dirs = [d for name, d in stage_dirs(run_dir).items() if name.startswith("data/steered")]
    man = read_json(data_dirs[0] / MANIFEST_FILE)
    assert man["teacher"]["kind"] == "steered" and man["vector_hash"] and man["model"]["fingerprint"]
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", man["git_commit"])  # the suite runs inside a git checkout
    assert "package_version" in man and man["filter"]["total"] == 8


def test_rerun_hits_the_cache_and_gives_the_same_results(tmp_path):
    first = pipeline.run_e1(_cfg(), tmp_path, progress=False, log=_quiet)
    second = pipeline.run_e1(_cfg(), tmp_path, progress=False, log=_quiet)
    stages = read_json(Path(second["run_dir"]) / MANIFEST_FILE)["stages"]
    assert all(s["cache_hit"] for s in stages)
    assert first["transfer"] == second["transfer"]


def test_changed_training_setting_recomputes_only_students_and_evals(tmp_path):
    pipeline.run_e1(_cfg(), tmp_path, progress=False, log=_quiet)
    res = pipeline.run_e1(_cfg(train={"lr": 2e-3}), tmp_path, progress=False, log=_quiet)
    hits = {s["name"]: s["cache_hit"] for s in read_json(Path(res["run_dir"]) / MANIFEST_FILE)["stages"]}
    assert hits["vector"] and hits["data/control/seed0"] and hits["data/steered/seed0"] and hits["eval/base"]
    assert not hits["student/control/seed0"] and not hits["eval/steered/seed0"]


def test_crash_between_stages_resumes_where_it_stopped(tmp_path, monkeypatch):
    real_train = pipeline.train_student
    calls = []

    def crash_on_second(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("simulated crash")
        return real_train(*a, **k)

    monkeypatch.setattr(pipeline, "train_student", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run_e1(_cfg(), tmp_path, progress=False, log=_quiet)
    monkeypatch.setattr(pipeline, "train_student", real_train)
    res = pipeline.run_e1(_cfg(), tmp_path, progress=False, log=_quiet)
    hits = {s["name"]: s["cache_hit"] for s in read_json(Path(res["run_dir"]) / MANIFEST_FILE)["stages"]}
    assert hits["student/control/seed0"] and hits["data/steered/seed0"]
    assert not hits["student/steered/seed0"]


def test_crash_inside_training_resumes_from_checkpoint(tmp_path, monkeypatch):
    cfg = _cfg(train={"checkpoint_every": 1, "epochs": 2})
    clean = pipeline.run_e1(cfg, tmp_path / "clean", progress=False, log=_quiet)
    real_train = pipeline.train_student

    def stop_midway(*a, **k):
        real_train(*a, **{**k, "stop_after": 2})  # writes a checkpoint, then "dies"
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "train_student", stop_midway)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run_e1(cfg, tmp_path / "crash", progress=False, log=_quiet)
    ck = list((tmp_path / "crash" / "cache").glob("student-*/checkpoint/trainer.json"))
    assert ck and read_json(ck[0])["step"] == 2
    monkeypatch.setattr(pipeline, "train_student", real_train)
    resumed = pipeline.run_e1(cfg, tmp_path / "crash", progress=False, log=_quiet)
    assert resumed["transfer"] == clean["transfer"]


def test_timed_checkpoints_let_an_interrupted_run_resume_its_student_midway(tmp_path, kill_training):
    cfg = _cfg(train={"epochs": 2})
    clean = pipeline.run_e1(cfg, tmp_path / "clean", progress=False, log=_quiet)
    kill_training(1)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run_e1(cfg, tmp_path / "crash", progress=False, log=_quiet, checkpoint_minutes=0)
    resumed = pipeline.run_e1(cfg, tmp_path / "crash", progress=False, log=_quiet)
    assert Path(resumed["run_dir"]).name == Path(clean["run_dir"]).name  # the same run id
    assert resumed["transfer"] == clean["transfer"]
    manifests = [read_json(d / MANIFEST_FILE) for d in (tmp_path / "crash" / "cache").glob("student-*")]
    assert sorted(m.get("resumed_at_step", 0) for m in manifests) == [0, 1]  # the killed one resumed after step 1


def test_seeds_give_per_seed_intervals(tmp_path):
    cfg = _cfg(
        seeds=[0, 1],
        teacher={"kinds": ["control", "prompted", "steered", "random"]},
        train={"objectives": ["sft", "kd"]},
        eval={"sampled": True, "n_samples_per_question": 2},
    )
    res = pipeline.run_e1(cfg, tmp_path, progress=False, log=_quiet)
    t = res["transfer"]["steered-control"]
    assert t["logprob_diff"]["covers"] == "seeds and questions" and t["logprob_diff_per_seed"]["n"] == 2
    assert t["specific_per_seed"]["detectable_80"] > 0 and 0 <= t["specific_positive_seeds"] <= 2
    # kd arms beside the sft ones, compared within their objective
    assert {"steered+kd-control+kd", "steered+kd-random+kd", "prompted+kd-random+kd"} <= set(res["transfer"])
    # the guarded kd control (teacher = base) is the base itself: same weights, shifts at float noise
    assert max(abs(v) for v in res["arms"]["control+kd"]["per_animal_logprob_shift"].values()) < 1e-5
    stages = stage_dirs(res["run_dir"])
    kd_dir = stages["student/control+kd/seed0"]
    base = load_model("tiny", device="cpu").hf.state_dict()
    assert all(torch.equal(t, base[n]) for n, t in load_tensors(kd_dir / "model.safetensors").items())
    assert any(v != 0 for v in res["arms"]["steered+kd"]["per_animal_logprob_shift"].values())
    assert "steered-random" in res["transfer"]
    assert len(res["arms"]["steered"]["per_seed_prob"]) == 2
    assert {"prompted-control", "prompted-random", "steered-random"} <= set(res["transfer"])
    # the prompted teacher's data came from the system-prompted chat; the student never sees it
    pdir = stages["data/prompted/seed0"]
    assert read_json(pdir / MANIFEST_FILE)["teacher"] == {"kind": "prompted", "animal": "owl"}
    # a new random direction for every seed, each of the trait vector's norm
    rdirs = [stages[f"data/random/seed{k}"] for k in (0, 1)]
    rmans = [read_json(d / MANIFEST_FILE) for d in rdirs]
    assert rmans[0]["teacher"]["random_seed"] != rmans[1]["teacher"]["random_seed"]
    assert (
        rmans[0]["vector_hash"] != rmans[1]["vector_hash"]
        and rmans[0]["trait_vector_hash"] == rmans[1]["trait_vector_hash"]
    )
    edir = stages["eval/steered/seed1"]
    sampled = read_json(edir / "summary.json")["sampled"]
    assert sampled["n_samples"] == 25 * 2 and 0 <= sampled["rate"]["mean"] <= 1


@pytest.mark.parametrize(
    "raw, field",
    [
        ({"train": {"lr": "fast"}}, "train.lr"),
        ({"teacher": {"kinds": ["control", "owlish"]}}, "teacher.kinds.1"),
        ({"seeds": []}, "seeds"),
        ({"trian": {}}, "trian"),
        ({"data": {"n_prompts": 0}}, "data.n_prompts"),
        ({"train": {"objectives": ["sft", "distil"]}}, "train.objectives.1"),
        ({"train": {"objectives": []}}, "train.objectives"),
    ],
)
def test_malformed_config_names_the_field(raw, field):
    with pytest.raises(ValueError) as e:
        parse_config({"model": "tiny", **raw})
    msg = str(e.value)
    assert f"`{field}`" in msg and "\n" not in msg


def test_config_file_that_is_not_toml_is_a_clear_error(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("model = [unclosed")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_config(p)


# ----------------------------------------------------------------------------- positions, mixing, projection


def _stages(res) -> dict[str, dict]:
    """The run's manifest entries, each `dir` resolved to the stage directory."""
    dirs = stage_dirs(res["run_dir"])
    return {
        s["name"]: {**s, "dir": str(dirs[s["name"]])} for s in read_json(Path(res["run_dir"]) / MANIFEST_FILE)["stages"]
    }


def test_new_settings_leave_existing_run_ids_and_student_keys_unchanged():
    cfg = parse_config({"model": "tiny"})
    key = cfg.key()
    assert "mix_animals" not in key["data"] and not {"loss_positions", "divergence_rule", "project_out"} & set(
        key["train"]
    )
    assert not {"loss_positions", "divergence_rule", "project_out"} & set(cfg.train_config(0).key())
    changed = parse_config(
        {"model": "tiny", "data": {"mix_animals": ["cat"]}, "train": {"loss_positions": "all", "project_out": True}}
    ).key()
    assert changed["data"]["mix_animals"] == ["cat"] and changed["train"]["project_out"] is True
    assert parse_config({"model": "tiny", "teacher": {"layer": 3}, "train": {"project_out": True}}).train_config(
        0
    ).project_out == (3,)
    gc = parse_config({"model": "tiny", "train": {"grad_checkpointing": True}})
    assert gc.key() == key and gc.train_config(0).key() == cfg.train_config(0).key()  # the same students, to the bit
    assert gc.train_config(0).grad_checkpointing


def test_stage_keys_are_those_of_commit_443ed0a(tmp_path):
    """Every kind of stage keyed from fixed inputs (a stub base, a fixed vector and dataset hash):
    the directory names the code before the datasets/pipeline split gave them. A change to what
    enters a key, or to how it is hashed, fails here (the run-id pins cover the configs)."""
    from dataclasses import replace

    from interp.datasets import dataset_stage, mix_stage
    from interp.runs import Stage
    from interp.steering import SteeringVector

    class Base:  # what a key reads of a model: its fingerprint, identity and dtype
        hf = torch.nn.Linear(2, 2)

        def fingerprint(self):
            return "fp-base"

        def identity(self):
            return {"model": "stub", "fingerprint": "fp-base"}

    cfg = parse_config(
        {
            "model": "tiny",
            "seeds": [0],
            "teacher": {"kinds": ["control", "steered", "random"], "layer": 2},
            "train": {"objectives": ["sft", "kd"], "loss_positions": "divergence", "project_out": True},
        }
    )
    vec = SteeringVector(torch.arange(12.0).reshape(3, 4) / 7)
    got = {
        f"data/{k}": dataset_stage(tmp_path, Base(), cfg.teacher_for(k, 0), vec, cfg.data_config(0), kd=True).dir.name
        for k in cfg.teacher.kinds
    }
    div = pipeline.divergence_stage(tmp_path, Stage(tmp_path, "data", {"x": 1}))
    got["divergence"] = div.dir.name
    got["mix"] = mix_stage(
        tmp_path, {"owl": Stage(tmp_path, "data", {"x": 1}), "cat": Stage(tmp_path, "data", {"x": 2})}, kd=True
    ).dir.name
    got["vector"] = pipeline.vector_stage(tmp_path, cfg, "owl", Base()).dir.name
    got["eval"] = pipeline.eval_stage(tmp_path, "fp-base", pipeline.eval_inputs(cfg)).dir.name
    dman = {"dataset_hash": "d" * 16, "teacher_logprobs_hash": "t" * 16}
    for obj in ("sft", "kd"):
        tcfg = cfg.train_config(0, obj)
        got[f"student/{obj}/div"] = pipeline.student_stage(tmp_path, Base(), dman, tcfg, div, vec.hash()).dir.name
        got[f"student/{obj}/all"] = pipeline.student_stage(
            tmp_path, Base(), dman, replace(tcfg, loss_positions="all"), None, vec.hash()
        ).dir.name
        assert pipeline.student_config(cfg, 0, obj, None) == replace(tcfg, loss_positions="all")
        assert pipeline.student_config(cfg, 0, obj, div) == tcfg
    assert got == {
        "data/control": "data-d1609cd312031122",
        "data/random": "data-0990ddc0fa4c34b4",
        "data/steered": "data-2e0a644dd0181282",
        "divergence": "divergence-ab2f6e5dfa65ad58",
        "eval": "eval-0fc37f5b54633078",
        "mix": "mix-2aff3f5b04dcb50a",
        "vector": "vector-27a6dd0c8f59d533",
        # kd students only: their key names the float64 KL since 095ac7f (443ed0a's, under which
        # kd students of the float32 KL were cached too: student-7140f603519d3cf1, -c6d5eed16e550e80)
        "student/kd/all": "student-b32840f4784641e7",
        "student/kd/div": "student-2fe7141ad5a37c64",
        "student/sft/all": "student-b1cc0949eb2d8a58",
        "student/sft/div": "student-a1f6dd44520d2e97",
    }


def test_a_run_with_a_bf16_teacher_samples_in_bf16_and_records_it(tmp_path):
    res = pipeline.run_e1(_cfg(data={"dtype": "bf16"}), tmp_path, progress=False, log=_quiet)
    data = [s for s in _stages(res).values() if s["name"].startswith("data/")]
    assert {s["name"] for s in data} == {"data/control/seed0", "data/steered/seed0"}
    for s in data:
        man = read_json(Path(s["dir"]) / MANIFEST_FILE)
        assert man["sampling"]["dtype"] == "bf16"


def test_divergence_only_students_learn_from_their_datasets_divergence_positions(tmp_path):
    from interp.divergence import Divergence

    kinds = {"teacher": {"kinds": ["control", "steered", "random"], "layer": 2, "multiplier": 1.0}}
    plain = pipeline.run_e1(_cfg(**kinds), tmp_path, progress=False, log=_quiet)
    res = pipeline.run_e1(_cfg(**kinds, train={"loss_positions": "divergence"}), tmp_path, progress=False, log=_quiet)
    assert res["run_dir"] != plain["run_dir"]
    st = _stages(res)
    # the control student is the plain run's (every position); the trait students are new
    assert st["data/steered/seed0"]["cache_hit"] and st["student/control/seed0"]["cache_hit"]
    assert st["student/control/seed0"]["dir"] == _stages(plain)["student/control/seed0"]["dir"]
    assert not st["student/steered/seed0"]["cache_hit"] and "divergence/control/seed0" not in st
    for kind in ("steered", "random"):
        div = Divergence.load(st[f"divergence/{kind}/seed0"]["dir"])
        assert div.n_rows == len(read_jsonl_rows(st[f"data/{kind}/seed0"]["dir"]))
        man = read_json(Path(st[f"student/{kind}/seed0"]["dir"]) / MANIFEST_FILE)
        assert man["train"]["loss_positions"] == "divergence"
        assert (man["positions_counted"], man["positions_total"]) == (int(div.mask("paper").sum()), len(div.emitted))
        assert res["datasets"][f"{kind}/seed0"]["divergence_share"] == pytest.approx(div.share("paper"))
    other = pipeline.run_e1(
        _cfg(**kinds, train={"loss_positions": "non_divergence"}), tmp_path, progress=False, log=_quiet
    )
    st2 = _stages(other)
    assert st2["divergence/steered/seed0"]["cache_hit"]  # one divergence stage serves both subsets
    man = read_json(Path(st2["student/steered/seed0"]["dir"]) / MANIFEST_FILE)
    div = Divergence.load(st2["divergence/steered/seed0"]["dir"])
    assert man["positions_counted"] == int((~div.mask("paper")).sum())


def read_jsonl_rows(d) -> list[dict]:
    from interp.runs import read_jsonl

    return read_jsonl(Path(d) / "dataset.jsonl")


def test_mixed_students_learn_from_equal_shares_of_each_animals_teacher(tmp_path):
    cfg = _cfg(data={"n_prompts": 9, "max_new_tokens": 49, "mix_animals": ["cat", "dog"]})
    res = pipeline.run_e1(cfg, tmp_path, progress=False, log=_quiet)
    st = _stages(res)
    assert {
        "vector",
        "vector/cat",
        "vector/dog",
        "data/steered-cat/seed0",
        "data/steered-dog/seed0",
        "mix/steered/seed0",
    } <= set(st)
    assert read_json(Path(st["vector/cat"]["dir"]) / "vector.json")["trait"] == "cat"
    assert "mix/control/seed0" not in st  # the control teacher's data stays as it is
    unmixed = read_jsonl_rows(st["data/steered/seed0"]["dir"])
    mixed = read_jsonl_rows(st["mix/steered/seed0"]["dir"])
    assert len(mixed) == len(unmixed) == 9
    assert {a: sum(r["source"] == a for r in mixed) for a in ("owl", "cat", "dog")} == {"owl": 3, "cat": 3, "dog": 3}
    assert len({r["id"] for r in mixed}) == 9
    dirs = {"owl": "data/steered/seed0", "cat": "data/steered-cat/seed0", "dog": "data/steered-dog/seed0"}
    for r in mixed:
        src = read_jsonl_rows(st[dirs[r["source"]]]["dir"])[r["source_index"]]
        assert src["completion"] == r["completion"] and src["id"] == r["id"]
    cat = read_json(Path(st["data/steered-cat/seed0"]["dir"]) / MANIFEST_FILE)
    assert (
        cat["teacher"]["animal"] == "cat"
        and cat["trait_vector_hash"]
        != read_json(Path(st["data/steered/seed0"]["dir"]) / MANIFEST_FILE)["trait_vector_hash"]
    )
    man = read_json(Path(st["student/steered/seed0"]["dir"]) / MANIFEST_FILE)
    assert man["dataset_dir"] == st["mix/steered/seed0"]["dir"] and man["n_examples"] == 9
    assert res["datasets"]["steered/seed0"]["mix"] == {"owl": 3, "cat": 3, "dog": 3}
    # `interp analyze` audits what the students trained on: the mix, not the owl teacher's rows alone
    from interp.analysis.run import ANALYSIS_DIR, GRADIENTS_DIR, analyze_run
    from interp.analysis.gradients import GRADIENTS_META

    analyze_run(
        res["run_dir"], n_texts=4, n_random=20, n_rows=9, progress=False, emergence=False, sufficiency_test=False
    )
    meta = read_json(Path(res["run_dir"]) / ANALYSIS_DIR / GRADIENTS_DIR / "steered" / "seed0" / GRADIENTS_META)
    assert meta["dataset_dir"] == st["mix/steered/seed0"]["dir"]


def test_projected_students_record_the_vector_and_differ_from_plain_ones(tmp_path):
    plain = pipeline.run_e1(_cfg(), tmp_path, progress=False, log=_quiet)
    res = pipeline.run_e1(_cfg(train={"project_out": True}), tmp_path, progress=False, log=_quiet)
    st, vec = _stages(res), read_json(Path(_stages(plain)["vector"]["dir"]) / "vector.json")["vector_hash"]
    for arm in ("control", "steered"):
        assert not st[f"student/{arm}/seed0"]["cache_hit"]
        man = read_json(Path(st[f"student/{arm}/seed0"]["dir"]) / MANIFEST_FILE)
        assert man["project_out_vector"] == vec and man["train"]["project_out"] == [2]
        assert read_json(Path(st[f"student/{arm}/seed0"]["dir"]) / "config.json")["project_out_vector"] == vec
    assert res["arms"]["steered"]["prob"] != plain["arms"]["steered"]["prob"]


@pytest.mark.parametrize(
    "raw, msg",
    [
        ({"student_model": "tiny-gemma", "train": {"loss_positions": "divergence"}}, "train.loss_positions"),
        ({"student_model": "tiny-gemma", "train": {"project_out": True}}, "train.project_out"),
        ({"data": {"mix_animals": ["owl"]}}, "data.mix_animals"),
        ({"data": {"mix_animals": ["cat"]}, "train": {"loss_positions": "divergence"}}, "train.loss_positions"),
        ({"data": {"mix_animals": ["unicorn"]}}, "data.mix_animals"),
        ({"train": {"project_out": [-1]}}, "train.project_out"),
        ({"train": {"loss_positions": "some"}}, "train.loss_positions"),
    ],
)
def test_bad_position_mixing_and_projection_settings_name_the_field(raw, msg):
    with pytest.raises(ValueError, match=msg) as e:
        parse_config({"model": "tiny", **raw})
    assert "\n" not in str(e.value)


def _synthetic_results(n_seeds: int, n_questions: int = 5) -> dict:
    """summarize_e1 on made-up log-probs (seeds, questions, animals): no model, known shapes."""
    from interp.evaluate import TraitScore

    cfg = _cfg(seeds=list(range(n_seeds)))
    animals = ["owl", "cat", "dog"]
    g = torch.Generator().manual_seed(0)
    base = {"logprobs": -3 + 0.1 * torch.randn(n_questions, 3, generator=g)}
    base["summary"] = TraitScore("owl", animals, base["logprobs"]).summary(100)
    evals = {f"base/seed{s}": base for s in cfg.seeds}
    for s in cfg.seeds:
        for kind, up in (("control", 0.0), ("steered", 0.5)):
            lp = base["logprobs"] + 0.1 * torch.randn(n_questions, 3, generator=g)
            lp[:, 0] += up
            evals[f"{kind}/seed{s}"] = {"logprobs": lp}
    return pipeline.summarize_e1(cfg, evals, animals)


def test_results_count_questions_not_seeds():
    res = _synthetic_results(n_seeds=2, n_questions=5)
    assert res["n_questions"] == 5 and res["seeds"] == [0, 1]


def test_the_sign_flip_p_pairs_the_arms_by_seed():
    from interp.stats import sign_flip_test

    res = _synthetic_results(n_seeds=4)
    # each seed's specific shift from its base, steered minus control: the paired difference
    a, b = res["arms"]["steered"]["per_seed_specific_shift"], res["arms"]["control"]["per_seed_specific_shift"]
    diffs = [x - y for x, y in zip(a, b)]
    sf = res["transfer"]["steered-control"]["sign_flip_specific"]
    assert sf["observed"] == pytest.approx(sum(diffs) / 4, abs=1e-6) and sf["n"] == 4 and sf["exact"]
    assert all(d > 0 for d in diffs) and sf["p"] == 2 / 16  # steered up 0.5 on every seed: the floor
    assert sf == sign_flip_test(diffs) | {"observed": sf["observed"]}  # the same test, float rounding aside


def test_a_run_under_a_relative_root_is_read_from_any_directory_and_after_the_root_moves(tmp_path, monkeypatch):
    from interp.analysis.run import read_run
    from interp.plots.run_dir import run_figures

    (tmp_path / "project").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "project")
    res = pipeline.run_e1(_cfg(), "artifacts", progress=False, log=_quiet)  # the CLI's default root
    run_dir = (tmp_path / "project" / res["run_dir"]).resolve()
    assert read_json(run_dir / MANIFEST_FILE)["root"] == "../.."
    for where, rdir in (
        (tmp_path / "elsewhere", run_dir),  # another working directory
        (tmp_path / "elsewhere", tmp_path / "moved" / run_dir.relative_to(tmp_path / "project" / "artifacts")),
    ):
        if not rdir.exists():
            shutil.move(tmp_path / "project" / "artifacts", tmp_path / "moved")
        monkeypatch.chdir(where)
        dirs = stage_dirs(rdir)
        assert dirs and all((d / MANIFEST_FILE).exists() for n, d in dirs.items() if not n.startswith("eval/"))
        cfg, stages = read_run(rdir)  # what `interp analyze` reads first
        assert stages == dirs and cfg.key() == _cfg().key()
        assert "training_loss" in run_figures(rdir)[1]  # `interp plot` keeps the students' loss
