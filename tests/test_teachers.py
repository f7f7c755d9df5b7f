"""One function builds a teacher of each kind: `interp generate` and `interp run` agree."""

import json

import pytest
from typer.testing import CliRunner

from interp.cli import app
from interp.config import parse_config
from interp.steering import Steering
from interp.teachers import TEACHER_KINDS, build_teacher


@pytest.mark.parametrize("kind", TEACHER_KINDS)
def test_e1_config_builds_each_teacher_with_build_teacher(kind):
    cfg = parse_config(
        {"model": "tiny", "teacher": {"layer": 2, "multiplier": 0.7, "scope": "prompt", "random_seed": 3}}
    )
    made = build_teacher(kind, "owl", Steering(layer=2, multiplier=0.7, scope="prompt"), 3)
    assert cfg.teacher_for(kind) == made


def test_prompted_ablated_projects_on_every_token_whatever_the_steering_scope():
    t = build_teacher("prompted_ablated", "owl", Steering(layer=1, multiplier=0.5, scope="generated"))
    assert t.steering == Steering(layer=1, operator="project", scope="all")


def test_generate_writes_the_teacher_interp_run_would_use(tmp_path, owl_vector):
    owl_vector.save(tmp_path / "vec")
    out = tmp_path / "data"
    res = CliRunner().invoke(
        app,
        [
            "generate",
            "--model",
            "tiny",
            "--teacher",
            "prompted_ablated",
            "--vector",
            str(tmp_path / "vec"),
            "--layer",
            "2",
            "--multiplier",
            "0.7",
            "--n",
            "2",
            "--out",
            str(out),
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code == 0, res.output
    written = json.loads((out / "manifest.json").read_text())["teacher"]
    cfg = parse_config(
        {"model": "tiny", "teacher": {"layer": 2, "multiplier": 0.7, "kinds": ["control", "prompted_ablated"]}}
    )
    assert written == json.loads(json.dumps(cfg.teacher_for("prompted_ablated").describe()))
    res = CliRunner().invoke(
        app,
        [
            "generate",
            "--model",
            "tiny",
            "--teacher",
            "prompted_ablated",
            "--scope",
            "prompt",
            "--n",
            "2",
            "--out",
            str(tmp_path / "d2"),
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code == 2 and "--scope" in res.output and not (tmp_path / "d2").exists()


# ----------------------------------------------------------------------------- the prompted_fewshot teacher


def _exchange_rows(animal):
    from interp.prompts import fewshot_exchanges

    turns = fewshot_exchanges(animal)
    return [{"prompt": u["content"], "completion": a["content"]} for u, a in zip(turns[::2], turns[1::2])]


@pytest.mark.parametrize("animal", ["owl", "wolf", "fox"])
def test_fewshot_exchanges_stay_apart_from_evaluation_and_number_prompts(animal):
    from interp.finetune import check_apart
    from interp.prompts import ANSWER_PREFIX, QUESTIONS, _STATEMENTS, plural

    rows = _exchange_rows(animal)
    check_apart(rows)  # no evaluation question, answer prefix or number-prompt sentence
    texts = " ".join(r["prompt"] + " " + r["completion"] for r in rows)
    assert ANSWER_PREFIX.lower() not in texts.lower() and "favorite" not in texts.lower()
    assert not any(s.format(a=animal) in texts for s in _STATEMENTS)  # no sentence of the steering pairs
    assert all(plural(animal) in r["completion"] or animal in r["completion"] for r in rows)  # owl-loving answers
    with pytest.raises(ValueError, match="repeats the evaluation"):  # the check does catch a planted question
        check_apart(rows + [{"prompt": QUESTIONS[30], "completion": "ok"}])


def test_prompted_fewshot_reads_the_system_prompt_then_the_exchanges_then_the_number_prompt():
    from interp.prompts import fewshot_exchanges, prompted_system
    from interp.teachers import Teacher

    msgs = Teacher("prompted_fewshot", "owl").messages("1, 2, 3")
    assert msgs[0] == {"role": "system", "content": prompted_system("owl")}
    assert msgs[1:-1] == fewshot_exchanges("owl") and len(msgs[1:-1]) == 8
    assert [m["role"] for m in msgs[1:-1]] == ["user", "assistant"] * 4
    assert msgs[-1] == {"role": "user", "content": "1, 2, 3"}
    # the plain prompted teacher is as it was: the system prompt, then the number prompt
    assert Teacher("prompted", "owl").messages("1") == [
        {"role": "system", "content": prompted_system("owl")},
        {"role": "user", "content": "1"},
    ]


def test_fewshot_kinds_describe_their_context_and_the_other_kinds_describe_as_before():
    from interp.teachers import Teacher

    assert Teacher("prompted", "owl").describe() == {"kind": "prompted", "animal": "owl"}  # keys unchanged
    assert Teacher("control").describe() == {"kind": "control"}
    owl, cat = Teacher("prompted_fewshot", "owl").describe(), Teacher("prompted_fewshot", "cat").describe()
    assert set(owl) == {"kind", "animal", "context"} and owl["context"] != cat["context"]
    abl = build_teacher("prompted_fewshot_ablated", "owl", Steering(layer=1, multiplier=0.5, scope="generated"))
    assert abl.steering == Steering(layer=1, operator="project", scope="all")
    assert abl.messages("1") == Teacher("prompted_fewshot", "owl").messages("1")
    with pytest.raises(ValueError, match="teacher.steering"):
        Teacher("prompted_fewshot_ablated", "owl", Steering(layer=1, multiplier=0.5))


def test_fewshot_teacher_samples_after_its_exchanges_and_its_students_see_only_the_number_prompt(
    tmp_path, tiny, monkeypatch
):
    import interp.teachers as teachers
    from interp.prompts import fewshot_exchanges, number_prompts

    seen = []
    real = teachers.sample
    monkeypatch.setattr(
        teachers, "sample", lambda model, rendered, *a, **k: (seen.extend(rendered), real(model, rendered, *a, **k))[1]
    )
    cfg = teachers.DataConfig(n_prompts=3, prompt_seed=5)
    man = teachers.generate_dataset(
        tiny, teachers.Teacher("prompted_fewshot", "owl"), None, cfg, tmp_path, progress=False
    )
    prompts = number_prompts(3, 5)
    assert seen == [tiny.chat(teachers.Teacher("prompted_fewshot", "owl").messages(p)) for p in prompts]
    assert all(fewshot_exchanges("owl")[1]["content"] in s for s in seen)
    rows = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in rows] == prompts  # the dataset holds the number prompt alone
    assert man["teacher"] == teachers.Teacher("prompted_fewshot", "owl").describe()


def test_row_audit_reads_the_fewshot_context_and_refuses_a_max_len_that_cuts_it(tiny):
    from interp.row_audit import teacher_examples
    from interp.rows import build_examples
    from interp.teachers import Teacher

    rows = [{"prompt": "Continue: 1, 2, 3.", "completion": "4, 5, 6"}]
    t = Teacher("prompted_fewshot", "owl")
    ex = teacher_examples(tiny, rows, t, max_len=4096)
    want = tiny.tokenizer(tiny.chat(t.messages(rows[0]["prompt"])), add_special_tokens=False)["input_ids"]
    assert ex[0].prompt_ids == want
    assert ex[0].completion_ids == build_examples(tiny, rows, 4096)[0].completion_ids
    with pytest.raises(ValueError, match="max_len"):
        teacher_examples(tiny, rows, t, max_len=len(want))


def test_config_runs_the_fewshot_kinds_and_compares_their_ablation():
    cfg = parse_config(
        {"model": "tiny", "teacher": {"kinds": ["control", "prompted_fewshot", "prompted_fewshot_ablated"]}}
    )
    assert cfg.teacher_for("prompted_fewshot").kind == "prompted_fewshot"
    assert cfg.teacher_for("prompted_fewshot_ablated").steering.operator == "project"


def test_analysis_reference_is_the_fewshot_context_in_a_run_that_has_it_and_the_system_prompt_otherwise(tiny):
    from interp.analysis.emergence import prompted_vector
    from interp.analysis.run import reference_context
    from interp.prompts import number_prompts
    from interp.teachers import Teacher

    plain = parse_config({"model": "tiny", "teacher": {"kinds": ["control", "prompted", "steered"]}})
    fewshot = parse_config({"model": "tiny", "teacher": {"kinds": ["control", "prompted", "prompted_fewshot"]}})
    assert reference_context(plain) == (None, "prompted")
    assert reference_context(fewshot) == (Teacher("prompted_fewshot", "owl").context_messages(), "prompted_fewshot")
    prompts = number_prompts(3, 0)
    assert (
        prompted_vector(tiny, "owl", prompts, *reference_context(plain)).hash()
        == prompted_vector(tiny, "owl", prompts).hash()
    )
    v = prompted_vector(tiny, "owl", prompts, *reference_context(fewshot))
    assert v.meta["kind"] == "prompted_fewshot" and v.hash() != prompted_vector(tiny, "owl", prompts).hash()
