"""An audit bank independent of the teachers (E4): contrast families whose texts share
nothing with the teachers' own, `build_bank(family=...)`, `interp bank --family` and
`audit_confusion.py --family / --n-clean / --config` on the tiny model."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from interp.analysis.audit import build_bank, load_bank
from interp.analysis.confusion import AuditConfusionConfig, run_audit_confusion
from interp.cli import app
from interp.prompts import (
    ANIMALS,
    CONTRAST_FAMILIES,
    NEUTRAL_OBJECTS,
    TEACHER_FAMILY,
    contrastive_pairs,
    family_pairs,
    plural,
)
from interp.runs import MANIFEST_FILE, read_json
from interp.steering import VECTOR_FILE, VECTOR_META, build_steering_vector

ROOT = Path(__file__).resolve().parents[2]
INDEPENDENT = [f for f in CONTRAST_FAMILIES if f != TEACHER_FAMILY]
runner = CliRunner()


def _texts(pairs) -> list[str]:
    return [m["content"] for pos, neg in pairs for m in pos + neg]


def _grams(text: str, k: int = 5) -> set[tuple[str, ...]]:
    words = re.findall(r"[a-z']+", text.lower())
    return {tuple(words[i : i + k]) for i in range(len(words) - k + 1)}


def test_independent_families_never_contain_the_teachers_contrast_sentences():
    """Ground truth: every text the teachers' vectors come from (statement and question, for every
    animal in either condition) against every text of each independent family, for every animal:
    no teacher sentence appears in them, nor any five-word run of one."""
    assert INDEPENDENT == ["third_person", "user_side"]
    teacher = {t for a in ANIMALS for t in _texts(contrastive_pairs(a, 64))}
    teacher_grams = set().union(*map(_grams, teacher))
    for family in INDEPENDENT:
        for a in ANIMALS:
            texts = _texts(family_pairs(a, family, 64))
            for t in texts:
                assert not any(s in t for s in teacher), (family, a, t)
                assert not _grams(t) & teacher_grams, (family, a, t, _grams(t) & teacher_grams)


@pytest.mark.parametrize("family", INDEPENDENT)
def test_each_pair_differs_only_in_the_animal_named(family):
    for a in ANIMALS:
        pairs = family_pairs(a, family, 16)
        assert len(pairs) == 16 and pairs == family_pairs(a, family, 16)  # seeded
        assert len({tuple(_texts([p])) for p in pairs}) == 16  # 16 different pairs
        for pos, neg in pairs:
            assert [m["role"] for m in pos] == [m["role"] for m in neg]
            said = pos[-1]["content"]
            # the trait text names the animal; the neutral one does not, and is the same sentence otherwise
            assert re.search(rf"\b({a}|{plural(a)})\b", said)
            assert not re.search(rf"\b({a}|{plural(a)})\b", neg[-1]["content"])
            if family == "third_person":  # someone else, against an everyday object
                assert pos[-1]["role"] == "assistant" and pos[0] == neg[0]
                swaps = [o for o in NEUTRAL_OBJECTS if neg[-1]["content"] == said.replace(f"the {a}", f"the {o}")]
            else:  # the user says it, against another animal; no assistant turn at all
                assert [m["role"] for m in pos] == ["user"]
                swaps = [o for o in ANIMALS if o != a and neg[0]["content"] == said.replace(plural(a), plural(o))]
            assert len(swaps) == 1, (family, said, neg)


def test_default_family_is_the_teachers_pairs_and_unknown_families_are_refused():
    for a in ("owl", "wolf"):
        assert family_pairs(a) == family_pairs(a, TEACHER_FAMILY) == contrastive_pairs(a)
    with pytest.raises(
        ValueError, match=r"^family: 'bogus' is not one of \['assistant', 'third_person', 'user_side'\]"
    ):
        family_pairs("owl", "bogus")
    with pytest.raises(ValueError, match="animal: 'unicorn'"):
        family_pairs("unicorn", "third_person")


def test_bank_family_changes_the_vectors_and_the_default_is_unchanged(tiny, tmp_path):
    default = build_bank(tiny, ["owl", "cat"], tmp_path / "default", n_pairs=4, progress=False)
    # the default bank is byte for byte what the teachers' vector builder saves
    for a, d in default.items():
        build_steering_vector(tiny, contrastive_pairs(a, 4), "mean", a).save(tmp_path / "direct" / a)
        for f in (VECTOR_FILE, VECTOR_META):
            assert (d / f).read_bytes() == (tmp_path / "direct" / a / f).read_bytes(), (a, f)
        assert "contrast_family" not in read_json(d / VECTOR_META)
    man = read_json(tmp_path / "default" / MANIFEST_FILE)
    assert (man["kind"], man["family"], man["animals"], man["n_pairs"]) == ("bank", "assistant", ["owl", "cat"], 4)
    assert man["git_commit"] and man["package_version"]
    banks = {TEACHER_FAMILY: load_bank(tmp_path / "default", tiny)}
    for family in INDEPENDENT:
        build_bank(tiny, ["owl", "cat"], tmp_path / family, n_pairs=4, progress=False, family=family)
        banks[family] = load_bank(tmp_path / family, tiny)
        assert read_json(tmp_path / family / MANIFEST_FILE)["family"] == family
        assert read_json(tmp_path / family / MANIFEST_FILE)["vector_hashes"] == {
            a: v.hash() for a, v in banks[family].items()
        }
        for a, v in banks[family].items():
            assert v.meta["contrast_family"] == family
            assert v.meta["pairs_hash"] != banks[TEACHER_FAMILY][a].meta["pairs_hash"]
    for a in ("owl", "cat"):
        vs = [banks[f][a].vectors for f in CONTRAST_FAMILIES]
        assert all(not torch.allclose(vs[i], vs[j]) for i in range(3) for j in range(i + 1, 3)), a
    with pytest.raises(ValueError, match=r"^family: 'bogus' is not one of"):
        build_bank(tiny, ["owl"], tmp_path / "x", n_pairs=2, progress=False, family="bogus")
    assert not (tmp_path / "x").exists()


def test_cli_bank_family_names_its_folder_and_refuses_an_unknown_family(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(
        app,
        [
            "bank",
            "--model",
            "tiny",
            "--animals",
            "owl",
            "--n-pairs",
            "2",
            "--family",
            "user_side",
            "--device",
            "cpu",
            "--no-progress",
        ],
    )
    assert res.exit_code == 0, res.output
    out = tmp_path / "artifacts" / "banks" / "tiny-user_side"
    assert read_json(out / MANIFEST_FILE)["family"] == "user_side" and (out / "owl" / VECTOR_FILE).exists()
    res = runner.invoke(app, ["bank", "--model", "no-such-model", "--family", "bogus"])
    assert res.exit_code == 2
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "--family: 'bogus' is not one of assistant, third_person, user_side" in lines[0]


# ----------------------------------------------------------------------------- the scripted experiment


def _script():
    spec = importlib.util.spec_from_file_location("audit_confusion", ROOT / "experiments" / "audit_confusion.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_script_family_audits_another_bank_on_the_same_teacher_data(tmp_path, capsys):
    script = _script()
    out = tmp_path / "out"
    argv = [
        "--model",
        "tiny",
        "--animals",
        "owl,cat",
        "--layer",
        "1",
        "--n-prompts",
        "4",
        "--max-new-tokens",
        "8",
        "--batch-size",
        "4",
        "--n-pairs",
        "4",
        "--n-perm",
        "50",
        "--out",
        str(out),
        "--device",
        "cpu",
        "--no-progress",
        "--formats",
        "html",
    ]
    first = script.main(argv)
    # the options added later stay out of the default run's config, so its config hash is as before
    assert not {"family", "n_clean", "config"} & set(first["config"]) and "teacher_vectors" not in first["hashes"]
    assert first["false_positives"]["n"] == 1 and first["datasets"] == ["cat", "owl", "clean"]
    # the runner, given the script's options in a config, meets the script's cache: the same stage keys
    cfg = AuditConfusionConfig(
        model="tiny",
        animals=("owl", "cat"),
        layer=1,
        n_prompts=4,
        max_new_tokens=8,
        batch_size=4,
        n_pairs=4,
        n_perm=50,
        device="cpu",
        formats="html",
        family="third_person",
        n_clean=2,
        cache=str(out / "cache"),
    )
    again = run_audit_confusion(cfg, tmp_path / "again", progress=False)
    stages = {s["name"]: s["cache_hit"] for s in again["stages"]}
    # the teachers and their data are those of the default run (cached); only the new bank and clean-2 are new
    assert stages == {
        "bank": True,
        "bank/third_person": False,
        "data/owl": True,
        "data/cat": True,
        "data/reference": True,
        "data/clean": True,
        "data/clean-2": False,
        "audit": False,
    }
    assert again["hashes"]["teacher_vectors"] == first["hashes"]["bank"]
    assert set(again["hashes"]["bank"]) == {"owl", "cat"}
    assert not set(again["hashes"]["bank"].values()) & set(first["hashes"]["bank"].values())
    assert {n: again["hashes"]["datasets"][n] for n in first["hashes"]["datasets"]} == first["hashes"]["datasets"]
    assert again["config"]["family"] == "third_person" and again["config"]["n_clean"] == 2
    fp = again["false_positives"]
    assert fp["datasets"] == ["clean", "clean-2"] and fp["n"] == 2 and fp["method"] == "Clopper-Pearson"
    assert fp["k"] == sum(bool(again["flagged"][n]) for n in ("clean", "clean-2"))
    assert again["datasets"] == ["cat", "owl", "clean", "clean-2"] and again["top1"]["n"] == 2
    bank_stage = next(s["dir"] for s in again["stages"] if s["name"] == "bank/third_person")
    assert read_json(Path(bank_stage) / "bank" / MANIFEST_FILE)["family"] == "third_person"
    assert read_json(tmp_path / "again" / MANIFEST_FILE)["config"]["cache"] == str(out / "cache")
    capsys.readouterr()
    script.print_table(again)
    assert f"false positives: {fp['k']}/2 clean datasets name an animal" in capsys.readouterr().out
    # --bank with a family is ambiguous (its vectors steer the teachers), refused in one line
    with pytest.raises(SystemExit) as e:
        script.parse_args(["--bank", str(tmp_path), "--family", "user_side"])
    assert e.value.code == 2 and "--family: applies to a bank built here" in capsys.readouterr().err


def test_script_reads_its_options_from_a_toml_config(tmp_path, capsys):
    script = _script()
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        'model = "tiny"\nanimals = ["owl", "cat"]\nfamily = "user_side"\nn_clean = 8\nlayer = 1\n'
        'audit_multipliers = [0.25, 0.5]\nbank = "b"\n'
    )
    with pytest.raises(SystemExit):  # bank + family: refused even from a file
        script.parse_args(["--config", str(cfg)])
    cfg.write_text(cfg.read_text().replace('bank = "b"\n', ""))
    args, out, _ = script.parse_args(["--config", str(cfg), "--layer", "2"])
    assert (args.model, args.animals, args.family, args.n_clean) == ("tiny", ("owl", "cat"), "user_side", 8)
    assert args.layer == 2 and args.audit_multipliers == (0.25, 0.5)  # the command line wins
    assert args.config == str(cfg) and out == Path("artifacts/audit-confusion/tiny-user_side")
    capsys.readouterr()
    for text, message in (
        ("n_pairs = 4\nn_prompt = 3\n", "sets unknown options ['n_prompt']"),
        ('family = "bogus"\n', "sets family = 'bogus'; choose one of"),
        ("n_clean = 0\n", "--n-clean: 0 must be >= 1"),
    ):
        cfg.write_text(text)
        with pytest.raises(SystemExit) as e:
            script.parse_args(["--config", str(cfg)])
        assert e.value.code == 2 and message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        script.parse_args(["--config", str(tmp_path / "missing.toml")])
    assert "does not exist" in capsys.readouterr().err


def test_e4_protocol_configs_parse():
    """The audit configs are valid options of the script, and the dose config is a valid run whose
    seeds no other config uses."""
    from interp.config import load_config

    script = _script()
    d = ROOT / "experiments" / "configs" / "e4_protocol"
    audits = sorted(d.glob("audit_*.toml"))
    assert {p.stem for p in audits} == {"audit_third_person", "audit_user_side"}
    for p in audits:
        args = script.parse_args(["--config", str(p)]).config
        assert args.family in INDEPENDENT and args.n_clean >= 8 and len(args.animals) >= 8
        assert "# Measured wall time" in p.read_text()  # each ran; its comment says how long
    dose = load_config(d / "dose_smollm2.toml")
    assert len(dose.seeds) == 10 and dose.teacher.layer == 8 and dose.teacher.kinds == ["control", "steered"]
    assert "# Measured wall time" in (d / "dose_smollm2.toml").read_text()
    confirm = load_config(ROOT / "experiments" / "configs" / "e1_protocol" / "confirm.toml")
    assert dose.data == confirm.data and dose.train == confirm.train and dose.vector == confirm.vector
    others = [p for p in (ROOT / "experiments" / "configs").rglob("*.toml") if p.parent != d]
    used = {
        int(s)
        for p in others
        for s in re.findall(r"\b\d+\b", "".join(re.findall(r"^seeds\s*=\s*\[[^\]]*\]", p.read_text(), re.M)))
    }
    assert not set(dose.seeds) & used
