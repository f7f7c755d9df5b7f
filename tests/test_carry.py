"""interp.carry: a run's small stages packed on one machine resume the run on another (tiny model):
nothing is recomputed, the results are the same bytes, and a damaged pack is refused whole."""

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from interp import pipeline
from interp.carry import CACHE_DIR, pack, unpack
from interp.cli import app
from test_pipeline import _cfg  # tests/ is on sys.path (pytest rootdir conftest)


def _stages_run(log: list[str]):
    return lambda *a: log.append(" ".join(map(str, a)))


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    """A keep-none run on machine A (its root) and a keep-update run beside it."""
    root = tmp_path_factory.mktemp("machine_a")
    res = pipeline.run_e1(_cfg(train={"keep": "none"}), root, progress=False, log=lambda *a: None)
    return root, res


def test_a_packed_run_resumes_elsewhere_without_recomputing(first, tmp_path):
    root, res = first
    rep = pack(root, tmp_path / "pack")
    assert rep.copied and not rep.left  # keep-none students have no weights: everything travels
    machine_b = tmp_path / "machine_b"
    assert len(unpack(tmp_path / "pack", machine_b).copied) == len(rep.copied)
    log: list[str] = []
    again = pipeline.run_e1(_cfg(train={"keep": "none"}), machine_b, progress=False, log=_stages_run(log))
    computed = [line for line in log if "done in" in line]
    assert computed == [], computed  # every stage came from the pack
    assert json.dumps(again["transfer"], sort_keys=True) == json.dumps(res["transfer"], sort_keys=True)


def test_weights_stay_behind_and_a_student_that_needs_them_is_retrained(tmp_path):
    res = pipeline.run_e1(_cfg(train={"keep": "update"}), tmp_path / "a", progress=False, log=lambda *a: None)
    big = max(p.stat().st_size for p in (tmp_path / "a" / CACHE_DIR).glob("student-*/*.safetensors"))
    rep = pack(tmp_path / "a", tmp_path / "pack", max_file_bytes=big - 1)
    assert rep.left and all(k.startswith("student-") and "bytes" in why for k, why in rep.left.items())
    assert not any(n.startswith("student-") for n in rep.copied)
    unpack(tmp_path / "pack", tmp_path / "b")
    log: list[str] = []
    again = pipeline.run_e1(_cfg(train={"keep": "update"}), tmp_path / "b", progress=False, log=_stages_run(log))
    computed = [line.split()[0] for line in log if "done in" in line]
    assert computed and all(c.startswith("student/") for c in computed), computed  # data and evals travelled
    assert json.dumps(again["transfer"], sort_keys=True) == json.dumps(res["transfer"], sort_keys=True)


def test_a_damaged_pack_is_refused_whole_in_one_line(first, tmp_path):
    root, _ = first
    pack(root, tmp_path / "pack")
    data = sorted((tmp_path / "pack" / CACHE_DIR).glob("data-*"))[0]
    rows = data / "dataset.jsonl"
    rows.write_text(rows.read_text().replace("1", "2", 1))
    with pytest.raises(ValueError, match=rf"^{rows}: does not match the hash"):
        unpack(tmp_path / "pack", tmp_path / "b")
    assert not (tmp_path / "b" / CACHE_DIR).exists()  # nothing copied, not even the sound stages
    # a config edited so that the directory no longer names its content
    shutil.rmtree(tmp_path / "pack")
    pack(root, tmp_path / "pack")
    cfg = sorted((tmp_path / "pack" / CACHE_DIR).glob("eval-*"))[0] / "config.json"
    c = json.loads(cfg.read_text())
    c["edited"] = True
    cfg.write_text(json.dumps(c))
    with pytest.raises(ValueError, match="not its directory's name"):
        unpack(tmp_path / "pack", tmp_path / "b")


def test_unfinished_stages_stay_and_a_second_pack_copies_only_what_is_new(first, tmp_path):
    root, _ = first
    scratch = root / CACHE_DIR / "student-0123456789abcdef"
    scratch.mkdir()
    (scratch / "train_log.json").write_text("[]")  # a student killed before its manifest
    try:
        rep = pack(root, tmp_path / "pack")
        assert rep.left == {scratch.name: "unfinished"}
        again = pack(root, tmp_path / "pack")
        assert again.copied == [] and sorted(again.present) == sorted(rep.copied)
    finally:
        shutil.rmtree(scratch)


def test_pack_and_unpack_commands_report_and_refuse_in_one_line(first, tmp_path):
    root, _ = first
    out = CliRunner().invoke(app, ["pack", str(tmp_path / "p"), "--root", str(root)])
    assert out.exit_code == 0 and "packed" in out.output and "0 left behind" in out.output, out.output
    out = CliRunner().invoke(app, ["unpack", str(tmp_path / "p"), "--root", str(tmp_path / "b"), "--json"])
    assert out.exit_code == 0 and json.loads(out.stdout)["copied"], out.output
    out = CliRunner().invoke(app, ["unpack", str(tmp_path / "nothing"), "--root", str(tmp_path / "b")])
    text = out.output.strip()
    assert out.exit_code == 2 and len(text.splitlines()) == 1 and "nothing/cache does not exist" in text, text
    out = CliRunner().invoke(app, ["pack", str(tmp_path / "p2"), "--root", str(tmp_path / "none")])
    assert out.exit_code == 2 and "root:" in out.output, out.output
    assert not Path(tmp_path / "p2").exists()


def test_unpack_names_the_stages_another_cpu_computed(first, tmp_path, monkeypatch):
    """Stages made on this CPU unpack silently; the same run made on a CPU with other matmul
    features (its manifests say so) unpacks too, and every copied stage is named."""
    root, _ = first
    pack(root, tmp_path / "here")
    rep = unpack(tmp_path / "here", tmp_path / "b")
    assert rep.copied and rep.other_cpu == []
    import interp.runs

    real = interp.runs.cpu_identity()
    other = {**real, "features": [f for f in real["features"] if f != "amx_bf16"] + ["elsewhere"]}
    monkeypatch.setattr(interp.runs, "cpu_identity", lambda: other)  # machine A's manifests
    pipeline.run_e1(_cfg(train={"keep": "none"}, seeds=[7]), tmp_path / "a", progress=False, log=lambda *a: None)
    monkeypatch.undo()
    pack(tmp_path / "a", tmp_path / "there")
    rep = unpack(tmp_path / "there", tmp_path / "c")
    assert rep.copied and sorted(rep.other_cpu) == sorted(rep.copied)
    out = CliRunner().invoke(app, ["unpack", str(tmp_path / "there"), "--root", str(tmp_path / "d")])
    assert out.exit_code == 0 and f"{len(rep.copied)} of the copied stages were computed on another CPU" in " ".join(
        out.output.split()
    ), out.output
