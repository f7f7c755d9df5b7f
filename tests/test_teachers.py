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
    cfg = parse_config({"model": "tiny", "teacher": {"layer": 2, "multiplier": 0.7, "scope": "prompt", "random_seed": 3}})
    made = build_teacher(kind, "owl", Steering(layer=2, multiplier=0.7, scope="prompt"), 3)
    assert cfg.teacher_for(kind) == made


def test_prompted_ablated_projects_on_every_token_whatever_the_steering_scope():
    t = build_teacher("prompted_ablated", "owl", Steering(layer=1, multiplier=0.5, scope="generated"))
    assert t.steering == Steering(layer=1, operator="project", scope="all")


def test_generate_writes_the_teacher_interp_run_would_use(tmp_path, owl_vector):
    owl_vector.save(tmp_path / "vec")
    out = tmp_path / "data"
    res = CliRunner().invoke(app, ["generate", "--model", "tiny", "--teacher", "prompted_ablated", "--vector",
                                   str(tmp_path / "vec"), "--layer", "2", "--multiplier", "0.7", "--n", "2",
                                   "--out", str(out), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    written = json.loads((out / "manifest.json").read_text())["teacher"]
    cfg = parse_config({"model": "tiny", "teacher": {"layer": 2, "multiplier": 0.7, "kinds": ["control", "prompted_ablated"]}})
    assert written == json.loads(json.dumps(cfg.teacher_for("prompted_ablated").describe()))
    res = CliRunner().invoke(app, ["generate", "--model", "tiny", "--teacher", "prompted_ablated", "--scope", "prompt",
                                   "--n", "2", "--out", str(tmp_path / "d2"), "--device", "cpu"])
    assert res.exit_code == 2 and "--scope" in res.output and not (tmp_path / "d2").exists()
