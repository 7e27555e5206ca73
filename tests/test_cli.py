"""The command line: outputs, formats, and one-line errors with status 2."""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from kgtest.cli import EXAMPLES, build_parser, main

RULES = "grandparent(X, Z) :- parent(X, Y), parent(Y, Z).\n"
FACTS = "# a tiny family\nann\tparent\tbob\nbob\tparent\tcy\n"


@pytest.fixture
def kb(tmp_path):
    (tmp_path / "kb.tsv").write_text(FACTS)
    (tmp_path / "r.dl").write_text(RULES)
    return tmp_path


def run(argv, capsys):
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def test_closure_to_stdout_is_three_columns(kb, capsys):
    rc, out, _ = run(["world", "closure", "--facts", str(kb / "kb.tsv"),
                      "--rules", str(kb / "r.dl")], capsys)
    assert rc == 0
    rows = [line.split("\t") for line in out.splitlines()]
    assert rows == [["ann", "parent", "bob"], ["bob", "parent", "cy"],
                    ["ann", "grandparent", "cy"]]


def test_closure_explain_and_header(kb, capsys):
    out_path = kb / "out" / "c.tsv"
    rc, _, err = run(["world", "closure", "--facts", str(kb / "kb.tsv"), "--rules",
                      str(kb / "r.dl"), "--out", str(out_path), "--explain", "--header"], capsys)
    assert rc == 0 and "3 facts (1 derived)" in err
    lines = out_path.read_text().splitlines()
    assert lines[0].split("\t")[:6] == ["subject", "relation", "object", "kind", "proof_count",
                                        "depth"]  # every kgtest fact table starts so
    derived = lines[3].split("\t")
    assert derived[:6] == ["ann", "grandparent", "cy", "derived", "1", "1"]
    (d,) = json.loads(derived[6])
    assert d["premises"] == [["ann", "parent", "bob"], ["bob", "parent", "cy"]]
    assert d["rule"] == RULES.strip()


@pytest.mark.parametrize(
    "facts, rules, expect",
    [
        ("ann\tparent\n", RULES, "kb.tsv:1: expected 'subject<TAB>relation<TAB>object'"),
        (FACTS, "grandparent(X, Z) :- parent(X Y).\n", "r.dl:1:31: expected ')'"),
        (FACTS, "% only a comment\n", "r.dl:1:1: no rules found"),
        (FACTS, "p(X, Z) :- parent(X, Y).\n", "unsafe rule: variable Z"),
    ],
)
def test_bad_input_is_one_line_status_2(kb, capsys, facts, rules, expect):
    (kb / "kb.tsv").write_text(facts)
    (kb / "r.dl").write_text(rules)
    rc, out, err = run(["world", "closure", "--facts", str(kb / "kb.tsv"),
                        "--rules", str(kb / "r.dl")], capsys)
    assert rc == 2 and out == ""
    assert expect in err and err.count("\n") == 1 and "Traceback" not in err


def test_missing_file_is_one_line(kb, capsys):
    rc, _, err = run(["world", "closure", "--facts", str(kb / "nope.tsv"),
                      "--rules", str(kb / "r.dl")], capsys)
    assert rc == 2 and "nope.tsv: cannot read facts file" in err


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ("kgtest",)):
    """(command line prefix, parser) of every runnable subcommand (one with no subcommands)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]  # noqa: SLF001
    if not subs:
        yield " ".join(path), parser
        return
    for name, p in subs[0].choices.items():
        yield from _commands(p, (*path, name))


def test_every_command_help_shows_an_example():
    commands = dict(_commands(build_parser()))
    assert {"kgtest world deletion-set", "kgtest run", "kgtest probe"} <= set(commands)
    assert len(commands) >= 14
    for command, p in commands.items():
        text = p.format_help()
        assert "example:\n" in text, f"{command} --help has no example"
        example = text.split("example:\n", 1)[1].strip().splitlines()[0]
        assert example.startswith(command + " "), (command, example)
    top = build_parser().format_help()
    assert all(example in top for example in EXAMPLES.values())


def test_python_dash_m_entry_point(kb):
    proc = subprocess.run(
        [sys.executable, "-m", "kgtest", "world", "closure", "--facts", str(kb / "kb.tsv"),
         "--rules", str(kb / "missing.dl")],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("kgtest: error: ") and "missing.dl" in proc.stderr


EDU = "kgtest/data/edu_relat/"


def test_deletion_set_lines_and_json(capsys):
    argv = ["world", "deletion-set", "--facts", EDU + "edu_relat_facts.tsv", "--rules",
            EDU + "edu_relat.dl", "--fixed", EDU + "edu_relat_gender.tsv", "--allow-dead-rules",
            "--target", "person66 husband person65", "--count", "2"]
    rc, out, _ = run(argv, capsys)
    assert rc == 0
    sets = [[tuple(f.split("\t")) for f in line.split(" ; ")] for line in out.splitlines()]
    assert len(sets) == 2 and all(len(m) == 4 for m in sets)  # published minimum: 4
    assert all(("person66", "husband", "person65") in m for m in sets)
    rc, out, _ = run(argv + ["--json"], capsys)
    assert rc == 0
    data = json.loads(out)
    assert data["target"] == ["person66", "husband", "person65"] and data["requested"] == 2
    assert [[tuple(f) for f in m["facts"]] for m in data["sets"]] == sets
    assert [m["size"] for m in data["sets"]] == [4, 4]
    assert all(m["proven_minimum"] for m in data["sets"]) and data["lower_bound"] == 4


@pytest.mark.parametrize(
    "target, expect",
    [("person66 husband person1", "is not in the closure"),
     ("person66 husband", "expected 'subject relation object'"),
     ("person0 gender female", "is a fixed fact")],
)
def test_deletion_set_bad_target(capsys, target, expect):
    rc, out, err = run(["world", "deletion-set", "--facts", EDU + "edu_relat_facts.tsv",
                        "--rules", EDU + "edu_relat.dl", "--fixed",
                        EDU + "edu_relat_gender.tsv", "--allow-dead-rules", "--target",
                        target], capsys)
    assert rc == 2 and out == "" and expect in err and err.count("\n") == 1


def test_world_build_writes_every_file(tmp_path, capsys):
    rc, out, _ = run(["world", "build", "generators/composition.toml", "--out",
                      str(tmp_path / "w"), "--set", "world.params.n_entities=12"], capsys)
    assert rc == 0 and "world 'composition'" in out
    names = {p.name for p in (tmp_path / "w").iterdir()}
    assert {"facts.tsv", "rules.dl", "derivations.jsonl", "stats.json", "graph.png"} <= names


def test_world_build_bad_key_is_one_line(tmp_path, capsys):
    rc, _, err = run(["world", "build", "generators/family.toml", "--out", str(tmp_path / "w"),
                      "--set", "world.zipff=1"], capsys)
    assert rc == 2 and "generators/family.toml" in err and "world.zipff" in err
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("key, hint", [("train.lr=0.1", ""),
                                       ("params.n_families=2", "world.params.n_families"),
                                       ("zipf=1", "world.zipf")])
def test_world_build_refuses_keys_outside_world(tmp_path, capsys, key, hint):
    """A key the world spec would ignore (another section, or world. forgotten) is an error."""
    rc, out, err = run(["world", "build", "generators/family.toml", "--out",
                        str(tmp_path / "w"), "--set", key], capsys)
    _one_line_error(rc, out, err)
    assert f"--set {key.split('=')[0]}: a world spec takes only world.* keys" in err
    assert hint in err and not (tmp_path / "w").exists()


def test_corpus_build_and_unknown_section(tmp_path, capsys):
    rc, out, _ = run(["corpus", "build", "experiments/quickstart.toml", "--out",
                      str(tmp_path / "c")], capsys)
    assert rc == 0 and "training documents" in out
    assert (tmp_path / "c" / "train.jsonl").exists()
    spec = tmp_path / "bad.toml"
    spec.write_text("[trian]\nsteps = 3\n")
    rc, _, err = run(["corpus", "build", str(spec), "--out", str(tmp_path / "d")], capsys)
    assert rc == 2 and "unknown section '[trian]'" in err and "did you mean 'train'" in err


def test_train_reuses_a_finished_model(tmp_path, capsys):
    argv = ["train", "experiments/quickstart.toml", "--out", str(tmp_path),
            "--set", "model.preset=tiny", "--set", "train.steps=20",
            "--set", "train.eval_every=0", "--set", "train.progress=false",
            "--set", "world.params.n_entities=10"]
    rc, out, _ = run(argv, capsys)
    assert rc == 0 and "20 steps" in out
    (model_dir,) = (tmp_path / "quickstart-seed0").glob("model-*")
    stamp = (model_dir / "metrics.json").stat().st_mtime_ns
    rc, out2, _ = run(argv, capsys)
    assert rc == 0 and (model_dir / "metrics.json").stat().st_mtime_ns == stamp


def test_train_ensemble_writes_loadable_members(tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    rc, out, _ = run(["train", "tests/data/tiny.toml", "--out", str(tmp_path), "--ensemble",
                      "2", "--set", "train.steps=20", "--set", "train.eval_every=0"], capsys)
    assert rc == 0 and "member 1: 20 steps" in out
    (stage,) = (tmp_path / "tiny-seed0").glob("ensemble-*")
    members = sorted(stage.glob("member-*"))
    assert len(members) == 2
    a, b = (AutoModelForCausalLM.from_pretrained(m) for m in members)
    wa, wb = (m.get_input_embeddings().weight for m in (a, b))
    assert wa.shape == wb.shape and not bool((wa == wb).all())  # different seeds


# --- bad output paths, absurd options, huge worlds: one line, status 2 -------------------------

def _one_line_error(rc, out, err):
    assert rc == 2 and err.startswith("kgtest: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err


def test_output_path_errors_are_one_line(kb, tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    closure = ["world", "closure", "--facts", str(kb / "kb.tsv"), "--rules", str(kb / "r.dl")]
    cases = [
        (["world", "build", "generators/composition.toml", "--out", str(a_file)], "a_file"),
        (["world", "build", "generators/composition.toml", "--out", str(a_file / "sub")],
         "Not a directory"),
        (closure + ["--out", str(tmp_path)], str(tmp_path)),  # a folder where a file goes
        (closure + ["--out", str(tmp_path / ("n" * 300))], "too long"),
    ]
    for argv, says in cases:
        rc, out, err = run(argv, capsys)
        _one_line_error(rc, out, err)
        assert says in err, err
    assert a_file.read_text() == "x"


def test_read_only_folder_is_one_line(kb, tmp_path, capsys):
    import os

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as root: permissions are not enforced")
        rc, out, err = run(["world", "closure", "--facts", str(kb / "kb.tsv"), "--rules",
                            str(kb / "r.dl"), "--out", str(ro / "c.tsv")], capsys)
        _one_line_error(rc, out, err)
        assert "Permission denied" in err and not list(ro.iterdir())
    finally:
        ro.chmod(0o700)


@pytest.mark.parametrize("argv, says", [
    (["sweep", "tests/data/sweep_tiny.toml", "--jobs", "-1"], "--jobs: must be between 1"),
    (["sweep", "tests/data/sweep_tiny.toml", "--cpus-per-run", "nan"], "--cpus-per-run"),
    (["world", "build", "generators/family.toml", "--out", "x", "--seed", "-1"],
     "--seed: must be a seed"),
    (["train", "tests/data/tiny.toml", "--ensemble", "-2"], "--ensemble"),
    (["world", "build", "generators/composition.toml", "--out", "x", "--set",
      "world.params.n_entities=100000000"], "[world.params] about 1e+08 entities"),
])
def test_absurd_options_and_sizes_are_refused_before_work(argv, says, capsys):
    rc, out, err = run(argv, capsys)
    _one_line_error(rc, out, err)
    assert says in err, err
    assert not Path("x").exists()


@pytest.mark.parametrize("target", ["ann\tparent\tbob", '["ann", "parent", "bob"]',
                                    "ann  parent bob"])
def test_target_forms_and_fewer_sets_than_asked(kb, capsys, target):
    rc, out, err = run(["world", "deletion-set", "--facts", str(kb / "kb.tsv"), "--rules",
                        str(kb / "r.dl"), "--target", target, "--count", "3"], capsys)
    assert rc == 0 and out == "ann\tparent\tbob\n"
    assert err.startswith("kgtest: note: only 1 distinct minimal deletion set(s) found")


def test_target_with_spaces_in_a_name(tmp_path, capsys):
    (tmp_path / "kb.tsv").write_text("ann lee\tparent\tbob\nbob\tparent\tcy\n")
    (tmp_path / "r.dl").write_text(RULES)
    rc, out, _ = run(["world", "deletion-set", "--facts", str(tmp_path / "kb.tsv"), "--rules",
                      str(tmp_path / "r.dl"), "--target", "ann lee\tgrandparent\tcy",
                      "--json"], capsys)
    assert rc == 0 and ["ann lee", "parent", "bob"] in json.loads(out)["sets"][0]["facts"]
    rc, _, err = run(["world", "deletion-set", "--facts", str(tmp_path / "kb.tsv"), "--rules",
                      str(tmp_path / "r.dl"), "--target", '["ann lee", "grandparent"]'], capsys)
    assert rc == 2 and "tab-separated or a JSON list" in err and err.count("\n") == 1
