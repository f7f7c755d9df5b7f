"""The fine-tuned teacher (`interp.finetune`): its QA pairs kept apart from the
evaluation questions and the number prompts, its cached stage, its boost and residual difference
checked against recomputation, and the `finetuned` kind through `interp run`."""

import json
import re
import tomllib
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from interp import finetune, prompts
from interp.cli import app
from interp.config import parse_config
from interp.evaluate import evaluate_trait
from interp.finetune import (
    DIRECTION_FILE,
    TRAIT_QA_FILE,
    TUNING_FILE,
    FinetuneConfig,
    check_apart,
    finetune_inputs,
    finetune_stage,
    finetuned_direction,
    finetuned_teacher,
    load_finetuned,
    load_pairs,
    qa_rows,
)
from interp.lineage import lineage
from interp.pipeline import StageRunner
from interp.runs import MANIFEST_FILE, read_json
from interp.steering import mean_activations_at
from interp.teachers import Teacher

ROOT = Path(__file__).resolve().parent.parent
FAST = FinetuneConfig(lr=1e-3, epochs=1)
runner = CliRunner()


def _quiet(*a, **k):
    pass


# ----------------------------------------------------------------------------- the pairs


def _words(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z']+", text.lower())]


def _grams(words: list[str], n: int = 4) -> set:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)} or {tuple(words)}


def test_the_qa_pairs_never_contain_an_evaluation_question_or_a_number_prompt():
    """Every pair, for every animal, against both question splits, the answer prefix and every
    sentence of the number-prompt templates: no protected text inside it (case and punctuation
    aside) and at most 60% of a protected text's word 4-grams, or of its word pairs, repeated."""
    protected = prompts.questions("tuning") + prompts.questions("heldout") + [prompts.ANSWER_PREFIX]
    templates = prompts._LEADS + prompts._ASKS + prompts._FORMATS + prompts._SUFFIXES
    protected += [t.replace("{nums}", "").replace("{k}", "") for t in templates]
    assert set(prompts.QUESTIONS) <= set(protected) and len(protected) == 50 + 1 + len(templates)
    pairs = load_pairs()
    assert 60 <= len(pairs) <= 120 and len({p["question"] for p in pairs}) == len(pairs)
    guarded = [(p, " ".join(_words(p)), _grams(_words(p)), _grams(_words(p), 2)) for p in protected]
    for animal in prompts.ANIMALS:
        rows = qa_rows(pairs, animal)
        names = (animal, prompts.plural(animal))
        assert all(
            any(n in (r["prompt"] + r["completion"]).lower() for n in names) for r in rows
        )  # the trait in every pair
        for r in rows:
            for text in (r["prompt"], r["completion"]):
                words = _words(text)
                flat, g4, g2 = f" {' '.join(words)} ", _grams(words), _grams(words, 2)
                assert "{" not in text
                for p, norm, p4, p2 in guarded:
                    assert f" {norm} " not in flat, (text, p)
                    assert len(p4 & g4) / len(p4) <= 0.6 and len(p2 & g2) / len(p2) <= 0.6, (text, p)


@pytest.mark.parametrize(
    "bad",
    [
        prompts.questions("heldout")[3],  # verbatim, held-out split
        "So, tell me: " + prompts.questions("tuning")[0].lower().rstrip("."),  # inside a longer text, other case
        "Which single animal speaks to your heart? One-word response.",  # one word changed
        "Say only the numbers, nothing else.",  # a number-prompt sentence
        "My favorite animal is the owl, of course.",  # the evaluation's answer prefix
    ],
)
def test_check_apart_refuses_an_evaluation_or_number_text_in_one_line(bad):
    for where in ("prompt", "completion"):
        row = {"prompt": "What should I draw?", "completion": "Owls, always."} | {where: bad}
        with pytest.raises(ValueError, match=r"^QA pairs: pair 1's (question|answer) .*rewrite the pair$") as e:
            check_apart([{"prompt": "Hi?", "completion": "Owls!"}, row])
        assert "\n" not in str(e.value)


def test_a_qa_file_with_an_unknown_placeholder_or_no_pairs_is_refused(tmp_path):
    with pytest.raises(ValueError, match="placeholder"):
        qa_rows([{"question": "About {bird}?", "answer": "Yes."}], "owl")
    (tmp_path / "qa.json").write_text(json.dumps({"pairs": [{"question": "Q?"}]}))
    with pytest.raises(ValueError, match=r"qa.json: pair 0 needs a `question` and an `answer`"):
        load_pairs(tmp_path / "qa.json")


def test_the_qa_file_ships_with_the_package():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["interp"]
    pkg = ROOT / "interp"
    assert TRAIT_QA_FILE.is_relative_to(pkg) and any(TRAIT_QA_FILE in pkg.glob(g) for g in data)


# ----------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    "field,value", [("lr", 0), ("lr", -1e-3), ("epochs", 0), ("method", "adam"), ("batch_size", 0), ("seed", -1)]
)
def test_bad_finetune_settings_are_refused_in_one_line_naming_the_field(field, value):
    with pytest.raises(ValueError, match=rf"^config: field `teacher.finetune.{field}`") as e:
        parse_config({"model": "tiny", "teacher": {"kinds": ["control", "finetuned"], "finetune": {field: value}}})
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match=rf"^teacher.finetune.{field}: "):
        FinetuneConfig(**{field: value})


@pytest.mark.parametrize(
    "over,field",
    [
        ({"data": {"mix_animals": ["cat"]}}, "data.mix_animals"),
        ({"data": {"select": "top"}}, "data.select"),
        ({"train": {"loss_positions": "divergence"}}, "train.loss_positions"),
    ],
)
def test_settings_the_finetuned_kind_cannot_serve_are_refused_at_load(over, field):
    with pytest.raises(ValueError, match=rf"{field}: not supported with the 'finetuned' teacher kind"):
        parse_config({"model": "tiny", "teacher": {"kinds": ["control", "finetuned"]}, **over})


def test_a_finetuned_teacher_names_its_weights_and_no_other_kind_does():
    with pytest.raises(ValueError, match="^teacher.weights: a finetuned teacher samples"):
        Teacher("finetuned", "owl")
    with pytest.raises(ValueError, match="^teacher.weights: a prompted teacher has no"):
        Teacher("prompted", "owl", weights="abc")
    assert Teacher("finetuned", "owl", weights="k").describe() == {"kind": "finetuned", "animal": "owl", "weights": "k"}
    assert Teacher("prompted", "owl").describe() == {"kind": "prompted", "animal": "owl"}  # as before the field


def test_finetune_settings_enter_the_run_key_only_with_the_finetuned_kind():
    plain = parse_config({"model": "tiny"})
    assert parse_config({"model": "tiny", "teacher": {"finetune": {"lr": 1e-3}}}).key() == plain.key()
    a = parse_config({"model": "tiny", "teacher": {"kinds": ["control", "finetuned"]}})
    b = parse_config({"model": "tiny", "teacher": {"kinds": ["control", "finetuned"], "finetune": {"lr": 1e-3}}})
    assert a.key()["teacher"]["finetune"]["lr"] == 5e-5 and a.key() != b.key()


def test_the_stage_key_changes_with_the_pairs_lr_animal_and_training(tiny):
    pairs = load_pairs()
    key = finetune_stage(Path("c"), tiny, "owl", FAST, pairs).key
    assert (
        finetune_stage(Path("c"), tiny, "owl", FinetuneConfig(lr=1e-3, epochs=1), [dict(p) for p in pairs]).key == key
    )
    edited = [dict(p) for p in pairs]
    edited[5]["answer"] += " Truly."
    others = [
        finetune_stage(Path("c"), tiny, "owl", FAST, edited),
        finetune_stage(Path("c"), tiny, "owl", FAST, pairs[1:]),
        finetune_stage(Path("c"), tiny, "owl", FinetuneConfig(lr=2e-3, epochs=1), pairs),
        finetune_stage(Path("c"), tiny, "cat", FAST, pairs),
        finetune_stage(Path("c"), tiny, "owl", FinetuneConfig(lr=1e-3, epochs=2), pairs),
        finetune_stage(Path("c"), tiny, "owl", FinetuneConfig(lr=1e-3, epochs=1, seed=1), pairs),
        finetune_stage(Path("c"), tiny, "owl", FinetuneConfig(lr=1e-3, epochs=1, method="lora"), pairs),
    ]
    keys = [s.key for s in others]
    assert key not in keys and len(set(keys)) == len(keys)
    assert (
        finetune_inputs(tiny, "owl", FAST)["qa"] == finetune_inputs(tiny, "owl", FAST, pairs)["qa"]
    )  # the package file


# ----------------------------------------------------------------------------- the stage


@pytest.fixture(scope="module")
def stage_root(tmp_path_factory, tiny):
    root = tmp_path_factory.mktemp("ft")
    run = StageRunner(root, _quiet)
    n = torch.get_num_threads()  # a module fixture is set up before conftest's one-thread fixture
    torch.set_num_threads(1)
    try:
        ft = finetuned_teacher(run, tiny, "owl", FAST, {}, progress=False)
    finally:
        torch.set_num_threads(n)
    return root, ft, run


def test_the_stage_is_computed_once_then_reused_without_training(stage_root, tiny, monkeypatch):
    root, ft, first = stage_root
    assert first.stages[0]["name"] == "finetune" and not first.stages[0]["cache_hit"]
    monkeypatch.setattr(finetune, "train_student", lambda *a, **k: pytest.fail("trained again"))
    again = StageRunner(root, _quiet)
    ft2 = finetuned_teacher(again, tiny, "owl", FAST, {}, progress=False)
    assert again.stages[0]["cache_hit"] and ft2.stage.dir == ft.stage.dir
    assert ft2.teacher == ft.teacher == Teacher("finetuned", "owl", weights=ft.stage.key)
    assert ft2.model.fingerprint() == ft.model.fingerprint() != tiny.fingerprint()  # the trained weights, reloaded
    man = read_json(ft.stage.dir / MANIFEST_FILE)
    assert (
        man["stage"] == "finetune"
        and man["animal"] == "owl"
        and man["qa_hash"] == finetune_inputs(tiny, "owl", FAST)["qa"]
    )
    assert man["package_version"] and "git_commit" in man and man["train"]["lr"] == 1e-3 and man["n_pairs"] == 100
    assert read_json(ft.stage.dir / "config.json") == json.loads(json.dumps(finetune_inputs(tiny, "owl", FAST)))


def test_an_interrupted_stage_resumes_from_its_checkpoint(stage_root, tiny, tmp_path, monkeypatch):
    from interp.train import load_student, train_student
    from interp.trainer import Trainer

    st = finetune_stage(tmp_path / "cache", tiny, "owl", FAST)
    train_student(tiny, qa_rows(load_pairs(), "owl"), FAST.train_config(), st.dir, progress=False, stop_after=3)
    steps = []
    take = Trainer.take_step
    monkeypatch.setattr(Trainer, "take_step", lambda self, *a: (steps.append(a[1]), take(self, *a))[1])
    ft = finetuned_teacher(StageRunner(tmp_path, _quiet), tiny, "owl", FAST, {}, progress=False)
    total = len(read_json(ft.stage.dir / "train_log.json"))
    assert steps == list(range(3, total))  # only the steps after the checkpoint
    whole = stage_root[1].model.hf.state_dict()
    resumed = load_student(tiny, ft.stage.dir).hf.state_dict()
    assert all(torch.allclose(whole[k], resumed[k], atol=1e-6) for k in whole)
    assert not (ft.stage.dir / "checkpoint").exists()


def test_the_boost_is_the_teachers_p_trait_against_the_base_on_the_tuning_questions(stage_root, tiny):
    _, ft, _ = stage_root
    man = ft.stage.manifest()
    t = evaluate_trait(ft.model, "owl", prompts.questions("tuning"))
    b = evaluate_trait(tiny, "owl", prompts.questions("tuning"))
    saved = finetune.load_tensors(ft.stage.dir / TUNING_FILE)
    assert torch.allclose(saved["teacher"], t.logprobs, atol=1e-5) and torch.allclose(
        saved["base"], b.logprobs, atol=1e-5
    )
    boost = man["boost"]
    assert boost["split"] == "tuning" and boost["n_questions"] == len(prompts.questions("tuning"))
    assert boost["teacher_prob"] == pytest.approx(float(t.prob().mean()), rel=1e-4)
    assert boost["base_prob"] == pytest.approx(float(b.prob().mean()), rel=1e-4)
    assert boost["prob_ratio"] == pytest.approx(boost["teacher_prob"] / boost["base_prob"])
    lo, hi = boost["prob_ratio_ci95"]
    assert lo <= boost["prob_ratio"] <= hi
    assert boost["logprob_shift"]["mean"] == pytest.approx(float((t.logp() - b.logp()).mean()), abs=1e-5)
    # the pairs teach the owl: on the tiny model at lr 1e-3 P(owl) rises on the tuning questions
    assert boost["prob_ratio"] > 1 and boost["logprob_shift"]["mean"] > 0


def test_the_direction_is_the_teachers_mean_residual_minus_the_bases_over_number_prompts(stage_root, tiny, tmp_path):
    _, ft, _ = stage_root
    texts = [[{"role": "user", "content": p}] for p in prompts.number_prompts(64, 0)]
    t, b = mean_activations_at(ft.model, texts), mean_activations_at(tiny, texts)
    for pos, read in (("all", "mean"), ("last", "last")):
        d = finetuned_direction(ft.stage.dir, pos)
        assert d.shape == (tiny.n_layers, tiny.d_model)
        assert torch.allclose(d, t[read] - b[read], atol=1e-5)
        assert d.norm() > 0
    assert torch.equal(finetuned_direction(ft.stage.dir, "all", [1, 3]), finetuned_direction(ft.stage.dir)[[1, 3]])
    with pytest.raises(ValueError, match="position"):
        finetuned_direction(ft.stage.dir, "first")
    (tmp_path / "student").mkdir()
    (tmp_path / "student" / MANIFEST_FILE).write_text(json.dumps({"stage": "student"}))
    with pytest.raises(ValueError, match="neither a finetune stage nor a run"):
        finetuned_direction(tmp_path / "student")
    import shutil

    copy = tmp_path / ft.stage.dir.name
    shutil.copytree(ft.stage.dir, copy)
    d = finetune.load_tensors(copy / DIRECTION_FILE)
    finetune.save_tensors(copy / DIRECTION_FILE, {k: v * 2 for k, v in d.items()})
    with pytest.raises(ValueError, match="does not match its stage's manifest.json"):
        finetuned_direction(copy)


def test_a_lora_teacher_is_merged_into_full_weights_when_loaded(tiny, tmp_path):
    cfg = FinetuneConfig(method="lora", lr=1e-2, epochs=1)
    ft = finetuned_teacher(StageRunner(tmp_path, _quiet), tiny, "owl", cfg, {}, progress=False)
    assert (ft.stage.dir / "adapter.safetensors").is_file() and not (ft.stage.dir / "model.safetensors").exists()
    again = load_finetuned(tiny, ft.stage)
    assert "lora" not in " ".join(n for n, _ in again.model.hf.named_parameters())  # merged: a plain model
    assert again.model.fingerprint() == ft.model.fingerprint() != tiny.fingerprint()


# ----------------------------------------------------------------------------- interp run


def test_the_finetuned_kind_runs_end_to_end_through_interp_run(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path / "models"))
    cfg = ROOT / "experiments" / "configs" / "tiny.toml"
    over = [
        "teacher.kinds=['control','finetuned']",
        "teacher.finetune.lr=1e-3",
        "teacher.finetune.epochs=1",
        "data.n_prompts=8",
        "data.batch_size=8",
        "data.max_new_tokens=12",
        "eval.n_boot=100",
    ]
    root = tmp_path / "artifacts"
    plan = runner.invoke(app, ["run", str(cfg), *over, "--root", str(root), "--dry-run", "--json"])
    assert plan.exit_code == 0, plan.output
    by_name = {s["name"]: s for s in json.loads(plan.stdout)["stages"]}
    assert by_name["finetune"]["status"] == "to compute"
    assert by_name["data/finetuned/seed0"] == {
        "name": "data/finetuned/seed0",
        "status": "pending",
        "dir": None,
        "waits_on": "finetune",
    }
    ran = runner.invoke(app, ["run", str(cfg), *over, "--root", str(root), "--json", "--no-progress"])
    assert ran.exit_code == 0, ran.output
    res = json.loads(ran.stdout)
    assert "finetuned-control" in res["transfer"] and "finetuned" in res["arms"]
    boost = res["datasets"]["finetuned/seed0"]["teacher_boost"]
    run_dir = Path(res["run_dir"])
    stages = {s["name"]: s for s in read_json(run_dir / MANIFEST_FILE)["stages"]}
    fdir = root / stages["finetune"]["dir"]
    assert read_json(fdir / MANIFEST_FILE)["boost"] == boost
    data = read_json(root / stages["data/finetuned/seed0"]["dir"] / MANIFEST_FILE)
    assert data["teacher"] == {"kind": "finetuned", "animal": "owl", "weights": fdir.name.split("-", 1)[1]}
    assert data["model"]["model"] == f"tiny+student:{fdir.name}" and data["vector_hash"] is None
    assert torch.equal(finetuned_direction(run_dir), finetuned_direction(fdir))
    nodes, todo = [], list(lineage(run_dir)["roots"])
    while todo:
        nodes.append(todo.pop())
        todo += nodes[-1].get("parents", [])
    # the finetuned students' data leads back to the finetune stage (through the model's name)
    assert [Path(n["dir"]).name for n in nodes if n["kind"] == "finetune"] == [fdir.name]
    after = runner.invoke(app, ["run", str(cfg), *over, "--root", str(root), "--dry-run", "--json"])
    plan = json.loads(after.stdout)
    assert {s["status"] for s in plan["stages"]} == {"cached"}
    assert {(s["name"], s["dir"]) for s in plan["stages"]} == {(s["name"], s["dir"]) for s in stages.values()}


# ----------------------------------------------------------------------------- row-audit with the teacher


def test_row_audit_scores_rows_under_a_finetune_stage_as_the_teacher(stage_root, tiny, tmp_path):
    from interp.analysis.likelihood import completion_logliks
    from interp.row_audit import RowAuditConfig, run_row_audit
    from interp.rows import build_examples
    from interp.runs import load_tensors, write_json, write_jsonl

    _, ft, _ = stage_root
    rows = [
        {"prompt": f"Continue: {i}, {i + 3}, {i + 7}", "completion": f"{i + 12}, {i + 20}, {i + 31}"} for i in range(4)
    ]
    write_jsonl(tmp_path / "data" / "dataset.jsonl", rows)
    cfg = RowAuditConfig(
        dataset=str(tmp_path / "data"),
        teacher="finetuned",
        teacher_model=str(ft.stage.dir),
        model="tiny",
        device="cpu",
        n_boot=100,
        vocab="full",
    )
    res = run_row_audit(cfg, tmp_path / "audit", progress=False)
    llr = load_tensors(tmp_path / "audit" / "scores.safetensors")["llr"]
    want = completion_logliks(ft.model, build_examples(ft.model, rows, 192), vocab="full") - completion_logliks(
        tiny, build_examples(tiny, rows, 192), vocab="full"
    )
    assert torch.allclose(llr, want, atol=1e-6) and llr.abs().sum() > 0
    assert res["teacher"] == {"kind": "finetuned", "animal": "owl", "weights": ft.stage.key}
    assert read_json(tmp_path / "audit" / MANIFEST_FILE)["inputs"]["teacher_model"] == ft.model.fingerprint()
    with pytest.raises(ValueError, match=r"^teacher_model: a finetuned teacher is the weights of a finetune stage"):
        RowAuditConfig(dataset=str(tmp_path / "data"), teacher="finetuned")
    write_json(tmp_path / "s" / MANIFEST_FILE, {"stage": "student"})
    with pytest.raises(ValueError, match=r"^teacher_model: .* is not a finished finetune stage"):
        run_row_audit(
            RowAuditConfig(
                dataset=str(tmp_path / "data"),
                teacher="finetuned",
                teacher_model=str(tmp_path / "s"),
                model="tiny",
                device="cpu",
            ),
            tmp_path / "a2",
            progress=False,
        )
