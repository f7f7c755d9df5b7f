"""Lineage: a two-generation chain on the tiny model, traced back to the first
teacher's vector from the second generation's run, student and dataset."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from interp import pipeline
from interp.cli import app
from interp.config import parse_config
from interp.lineage import lineage, vectors_reached
from interp.models import load_model
from interp.runs import MANIFEST_FILE, read_json, stage_dirs


def _cfg(**over):
    raw = {
        "experiment": "gen",
        "model": "tiny",
        "seeds": [0],
        "teacher": {"kinds": ["control", "steered"], "layer": 2, "multiplier": 1.0},
        "data": {"n_prompts": 8, "batch_size": 8, "max_new_tokens": 12},
        "train": {"epochs": 1, "batch_size": 4, "lr": 1e-3},
        "eval": {"split": "tuning", "n_boot": 200},
    }
    raw.update(over)
    return parse_config(raw)


def _quiet(*a, **k):
    pass


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """Generation 1: control and owl-steered teachers' students. Generation 2: the steered
    teacher's student, unsteered, teaches students of the original base."""
    root = tmp_path_factory.mktemp("lineage")
    gen1 = pipeline.run_e1(_cfg(), root, progress=False, log=_quiet)
    dirs1 = stage_dirs(gen1["run_dir"])
    student1 = dirs1["student/steered/seed0"]
    gen2 = pipeline.run_e1(
        _cfg(
            experiment="gen2",
            model=str(student1),
            student_model="tiny",
            teacher={"kinds": ["control"], "layer": 2, "multiplier": 1.0},
        ),
        root,
        progress=False,
        log=_quiet,
    )
    return {
        "root": root,
        "gen1": dirs1,
        "gen2": stage_dirs(gen2["run_dir"]),
        "run2": Path(gen2["run_dir"]),
        "vector": read_json(dirs1["vector"] / "vector.json")["vector_hash"],
        "student1": student1,
    }


def test_a_student_stage_loads_as_a_teacher_base(chain):
    m = load_model(str(chain["student1"]), device="cpu")
    assert m.name == f"tiny+student:{chain['student1'].name}"
    assert m.fingerprint() != load_model("tiny", device="cpu").fingerprint()


def test_datasets_point_at_their_vector_stage(chain):
    man = read_json(chain["gen1"]["data/steered/seed0"] / MANIFEST_FILE)
    assert man["vector_stage"] == chain["gen1"]["vector"].name


def test_second_generation_lineage_reaches_the_first_teachers_vector(chain):
    res = lineage(chain["run2"])
    assert res["kind"] == "run" and [r["name"] for r in res["roots"]] == ["student/control/seed0"]
    s2 = res["roots"][0]
    data2, base2 = s2["parents"]
    assert s2["kind"] == "student" and base2["name"] == "tiny" and data2["teacher"]["kind"] == "control"
    teacher_base = data2["parents"][0]
    assert teacher_base["kind"] == "model" and teacher_base["root_model"] == "tiny"
    s1 = teacher_base["parents"][0]
    assert s1["kind"] == "student" and Path(s1["dir"]).name == chain["student1"].name
    data1 = s1["parents"][0]
    assert data1["teacher"]["kind"] == "steered" and data1["teacher"]["steering"]["layer"] == 2
    vec = data1["parents"][1]
    assert vec["kind"] == "vector" and vec["vector_hash"] == chain["vector"]
    assert vectors_reached(res) == [chain["vector"]]
    # from the second generation's dataset stage too
    assert vectors_reached(lineage(chain["gen2"]["data/control/seed0"])) == [chain["vector"]]


def test_a_moved_dataset_path_is_found_by_its_hash(chain, tmp_path):
    import shutil

    s1 = tmp_path / chain["student1"].name
    shutil.copytree(chain["student1"], s1)
    (tmp_path / "elsewhere").mkdir()
    shutil.copytree(chain["gen1"]["data/steered/seed0"], tmp_path / "data-moved")  # another name: found by hash
    man = read_json(s1 / MANIFEST_FILE)
    man["dataset_dir"] = str(tmp_path / "gone" / "data-x")
    (s1 / MANIFEST_FILE).write_text(json.dumps(man))
    node = lineage(s1)["roots"][0]
    assert Path(node["parents"][0]["dir"]).name == "data-moved"


def test_the_lineage_command_prints_the_chain_and_its_json(chain):
    r = CliRunner().invoke(app, ["lineage", str(chain["run2"])])
    assert r.exit_code == 0, r.output
    assert "+student:" in r.output and chain["vector"] in r.output and "steered teacher" in r.output
    r = CliRunner().invoke(app, ["lineage", str(chain["run2"]), "--json"])
    assert r.exit_code == 0 and vectors_reached(json.loads(r.stdout)) == [chain["vector"]]
    r = CliRunner().invoke(app, ["lineage", str(chain["root"] / "nothing")])
    assert r.exit_code == 2 and "not a directory" in r.output


# ----------------------------------------------------------------------------- a fine-tuned teacher


@pytest.fixture(scope="module")
def finetune_dir(tmp_path_factory, tiny):
    from interp.finetune import FinetuneConfig, finetuned_teacher
    from interp.pipeline import StageRunner

    ft = finetuned_teacher(
        StageRunner(tmp_path_factory.mktemp("ft"), _quiet),
        tiny,
        "owl",
        FinetuneConfig(lr=1e-3, epochs=1),
        {},
        progress=False,
    )
    return ft.stage.dir, ft.model


def test_a_finetune_stage_loads_as_a_model(finetune_dir, tiny):
    d, model = finetune_dir
    m = load_model(str(d), device="cpu")
    assert m.name == f"tiny+student:{d.name}" and m.fingerprint() == model.fingerprint() != tiny.fingerprint()


def test_a_finetune_stage_shows_its_base_and_qa_hash(finetune_dir, tiny):
    from interp.finetune import load_pairs
    from interp.runs import content_hash
    from interp.tables import lineage_text

    d, _ = finetune_dir
    res = lineage(d)
    node = res["roots"][0]
    assert node["kind"] == "finetune" and node["qa_hash"] == content_hash(load_pairs()) and node["animal"] == "owl"
    assert (
        node["n_pairs"] == 100
        and node["method"] == "full"
        and node["prob_ratio"] == read_json(d / MANIFEST_FILE)["boost"]["prob_ratio"]
    )
    assert node["parents"] == [{"kind": "model", "name": "tiny", "fingerprint": tiny.fingerprint()}]
    text = lineage_text(res)
    assert f"finetune: owl teacher, full on 100 QA pairs (hash {node['qa_hash']})" in text
    assert f"<- model tiny (fingerprint {tiny.fingerprint()})" in text
