"""Fuzzing every input format the command line reads, in process (``kgtest.cli.main``).

For each format (Datalog rules, a TOML spec, ``--set`` overrides, a records file for
``kgtest report``, a checkpoint folder) hypothesis mutates a valid input and the command
must either succeed with the right answer or exit with status 2 and exactly one line on
stderr: never a traceback, never a silently changed fact. Examples are few and small so
the module runs in well under a minute (the checkpoint part trains a 20-step tiny model).
"""

from __future__ import annotations

import json
import math
import shutil
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kgtest.cli import main
from kgtest.records import COLUMNS, REQUIRED, new_row, write_records
from kgtest.symbolic.rules import parse_rules

FUZZ = settings(max_examples=25, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


def run_cli(argv, capsys) -> tuple[int, str, str]:
    """``main(argv)``: (status, stdout, stderr); any exception escaping main fails the test."""
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_refused_in_one_line(rc: int, err: str) -> None:
    assert rc == 2, err
    assert err.startswith("kgtest: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err


# --- Datalog --------------------------------------------------------------------------------

FACTS = [("ann", "parent", "bob"), ("bob", "parent", "cy"), ("cy", "parent", "dee"),
         ("bob", "gender", "male"), ("ann", "gender", "female")]
RULES = ("grandparent(X, Z) :- parent(X, Y), parent(Y, Z).\n"
         "father(X, Y) :- parent(X, Y), gender(X, male).\n"
         "has_child(X, yes) :- parent(X, _).\n"
         "sibling(X, Y) :- parent(Z, X), parent(Z, Y), X != Y.\n")
PIECES = ["X", "Y", "Z", "_", "parent", "parnet", "gender", "male", "(", ")", ",", ".", ":-",
          "!=", " ", "\n", "%", "q", "1", "@", "\t"]


def _bindings(atoms, known, env):
    """Every extension of ``env`` that matches ``atoms`` against the facts ``known``."""
    if not atoms:
        yield env
        return
    a = atoms[0]
    for s, r, o in known:
        if r != a.relation:
            continue
        e, ok = dict(env), True
        for term, val in zip(a.args, (s, o), strict=True):
            if not term.is_var:
                ok &= term.name == val
            elif term.name in e:
                ok &= e[term.name] == val
            else:
                e[term.name] = val
        if ok:
            yield from _bindings(atoms[1:], known, e)


def naive_closure(facts, rules) -> set[tuple[str, str, str]]:
    """An independent, obviously correct fixed point: try every binding, until nothing new."""
    known = set(facts)
    while True:
        new = set()
        for rule in rules:
            for env in _bindings(rule.atoms, known, {}):
                def val(t, env=env):
                    return env[t.name] if t.is_var else t.name
                if all(val(q.left) != val(q.right) for q in rule.inequalities):
                    h = rule.head
                    new.add((val(h.args[0]), h.relation, val(h.args[1])))
        if new <= known:
            return known
        known |= new


@st.composite
def mutated_rules(draw) -> str:
    text = RULES
    for _ in range(draw(st.integers(0, 2))):
        i = draw(st.integers(0, len(text)))
        if draw(st.booleans()):  # layout only: the rules keep their meaning
            text = text[:i] + draw(st.sampled_from([" ", "\n", "\t", "% note\n"])) + text[i:]
            continue
        j = draw(st.integers(i, min(len(text), i + 6)))
        text = text[:i] + draw(st.sampled_from(PIECES)) + text[j:]
    return text


@FUZZ
@given(mutated_rules())
def test_fuzz_datalog_closure(tmp_path, capsys, text):
    (tmp_path / "kb.tsv").write_text("".join("\t".join(f) + "\n" for f in FACTS))
    (tmp_path / "r.dl").write_text(text)
    out = tmp_path / "closure.tsv"
    out.unlink(missing_ok=True)
    rc, _, err = run_cli(["world", "closure", "--facts", tmp_path / "kb.tsv", "--rules",
                          tmp_path / "r.dl", "--out", out], capsys)
    if rc != 0:
        assert_refused_in_one_line(rc, err)
        assert str(tmp_path / "r.dl") in err and not out.exists()
        return
    rows = {tuple(line.split("\t")) for line in out.read_text().splitlines()}
    # success means: the rules parse, use only relations that exist, and the closure is
    # exactly the naive fixed point (nothing dropped, nothing invented)
    assert rows == naive_closure(FACTS, parse_rules(text))


def test_datalog_refusals_name_file_line_column(tmp_path, capsys):
    (tmp_path / "kb.tsv").write_text("".join("\t".join(f) + "\n" for f in FACTS))
    (tmp_path / "r.dl").write_text("gp(X, Z) :- parent(X, Y),\n  parnet(Y, Z).\n")
    rc, _, err = run_cli(["world", "closure", "--facts", tmp_path / "kb.tsv", "--rules",
                          tmp_path / "r.dl"], capsys)
    assert_refused_in_one_line(rc, err)
    assert f"{tmp_path / 'r.dl'}:2:3: relation 'parnet'" in err and "'parent'" in err
    rc, out, _ = run_cli(["world", "closure", "--facts", tmp_path / "kb.tsv", "--rules",
                          tmp_path / "r.dl", "--allow-dead-rules"], capsys)
    assert rc == 0 and len(out.splitlines()) == len(FACTS)  # the dead rule derives nothing


# --- TOML spec and --set ---------------------------------------------------------------------

BASE = {
    "run": {"name": "fuzz", "seed": 0},
    "world": {"sampler": "random_composition",
              "params": {"n_entities": 8, "n_relations": 2, "n_derived": 2, "hops": 2}},
    "split": {"n_forget": 2, "n_validation": 1},
    "model": {"preset": "tiny"},
    "train": {"steps": 5, "lr": 0.001, "threads": 1},
    "unlearn": {"methods": ["NPO"], "tune_lrs": [0.001], "params": {"NPO": {"beta": 0.5}}},
    "probes": {"probes": ["direct"], "quantize_bits": [8], "relearn": {"steps": [5]}},
}
KEYS = ["run.name", "run.seed", "world.params.n_entities", "world.params.hops",
        "world.zipf", "split.n_forget", "split.held_out_fraction", "corpus.multiplicity",
        "model.n_layer", "model.dropout", "train.steps", "train.lr", "train.threads",
        "train.betas", "train.stop_at", "unlearn.tune_lrs", "unlearn.tune_epochs",
        "unlearn.params.NPO.beta", "probes.quantize_bits", "probes.relearn.steps",
        "probes.relearn.lr", "probes.n_boot", "train.stpes", "nosuch.key", "world"]
NASTY = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, -1, 0, 1, 3, 0.5, 1e23, 10**30, 2**64,
                     "", "../x", "a/b", "x" * 300, True, [], [0], [1, 2], {}, {"a": math.nan},
                     [math.nan], "tiny"]),
    st.integers(-5, 5), st.floats(allow_nan=True, allow_infinity=True))


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) \
            else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + "}"


def toml_text(data: dict, path=()) -> str:
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict) or not v
               or not all(isinstance(x, dict) for x in v.values())}
    lines = [f"[{'.'.join(path)}]"] if path else []
    lines += [f"{k} = {toml_value(v)}" for k, v in scalars.items()]
    for k, v in data.items():
        if k not in scalars:
            lines.append(toml_text(v, (*path, k)))
    return "\n".join(lines) + "\n"


def set_key(data: dict, dotted: str, value) -> dict:
    out = json.loads(json.dumps(data))
    node, parts = out, dotted.split(".")
    for p in parts[:-1]:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[parts[-1]] = value
    return out


def resolved(cfg, dotted: str):
    node = cfg
    for p in dotted.split("."):
        node = node[p] if isinstance(node, dict) else getattr(node, p)
    return node


def same_value(got, want) -> bool:
    if isinstance(want, list):
        return isinstance(got, (list, tuple)) and len(got) == len(want) and all(
            same_value(g, w) for g, w in zip(got, want, strict=True))
    if isinstance(want, float) or isinstance(got, float):
        return float(got) == float(want)
    return got == want


@FUZZ
@given(st.sampled_from(KEYS), NASTY)
def test_fuzz_toml_spec(tmp_path, capsys, key, value):
    from kgtest.experiment import load_experiment

    spec = tmp_path / "spec.toml"
    spec.write_text(toml_text(set_key(BASE, key, value)))
    shutil.rmtree(tmp_path / "c", ignore_errors=True)
    rc, _, err = run_cli(["corpus", "build", spec, "--out", tmp_path / "c"], capsys)
    if rc != 0:
        assert_refused_in_one_line(rc, err)
        assert str(spec) in err
        return
    # accepted: the value is exactly what the file says, finite, and sane
    got = resolved(load_experiment(spec), key)
    assert isinstance(value, dict) or same_value(got, value), (key, value, got)
    assert not (isinstance(value, float) and not math.isfinite(value))
    assert (tmp_path / "c" / "train.jsonl").is_file()


SET_TEXT = st.one_of(
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS),
              st.sampled_from(["nan", "inf", "-inf", "-1", "1e23", "10000000000000000000000",
                               '"../../x"', "a/b", "[]", "[0]", "{}", "[1, nan]", "0x10",
                               "true", '""', "3", "0.5", "=", "1 2"])),
    st.text(string.printable, max_size=30),
)


@FUZZ
@given(SET_TEXT)
def test_fuzz_set_overrides(tmp_path, capsys, item):
    spec = tmp_path / "spec.toml"
    spec.write_text(toml_text(BASE))
    shutil.rmtree(tmp_path / "c", ignore_errors=True)
    rc, _, err = run_cli(["corpus", "build", spec, "--out", tmp_path / "c", "--set", item],
                         capsys)
    if rc != 0:
        assert_refused_in_one_line(rc, err)
        return
    assert (tmp_path / "c" / "train.jsonl").is_file()


def test_bad_numbers_and_names_are_refused_at_load(tmp_path, capsys):
    """Each was accepted (or crashed) after work had been done; now refused before any."""
    spec = tmp_path / "spec.toml"
    spec.write_text(toml_text(BASE))
    for item, says in [("train.lr=nan", "'train.lr' must be a finite number"),
                       ("unlearn.params.NPO.beta=nan", "'unlearn.params.NPO.beta' must be"),
                       ("train.steps=100000000000000000000000", "'train.steps' is out of"),
                       ("train.steps=99999999999", "'train.steps' must be <= 10000000"),
                       ("run.seed=-1", "'run.seed' must be a seed"),
                       ("train.threads=100000", "'train.threads' must be <="),
                       ("probes.quantize_bits=[0]", "'probes.quantize_bits' must hold"),
                       ("probes.relearn.steps=[]", "'probes.relearn.steps' must not be empty"),
                       ('run.name="../../x"', "'run.name' must be a plain folder name"),
                       ('run.name="a/b"', "'run.name' must be a plain folder name")]:
        rc, _, err = run_cli(["train", spec, "--out", tmp_path / "runs", "--set", item],
                             capsys)
        assert_refused_in_one_line(rc, err)
        assert says in err, (item, err)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "x").exists()


# --- records files for `kgtest report` --------------------------------------------------------

def _records() -> list[dict]:
    rows = []
    for variant in ("original", "filter", "NPO"):
        for fact in range(4):
            rows.append(new_row(run_id="r0", seed_world=0, seed_train=0, variant=variant,
                                probe="direct", fact=fact, subject=f"e{fact}", relation="r",
                                object="e9", correct=fact % 2 == 0, score=-0.5 * fact,
                                rank=1 + fact, n_candidates=10, chance=0.1, gated_in=True,
                                derived=True, presentation="stated", proofs=1, depth=1,
                                split="forget"))
    return rows


def type_ok(column: str, value) -> bool:
    if value is None:
        return column not in ("run_id", "variant", "probe", "setting", "fact")
    typ = COLUMNS[column][0]
    if typ is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) \
            and math.isfinite(value)
    if typ is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, typ)


JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.text(max_size=3),
                        st.floats(allow_nan=True, allow_infinity=True), st.just([1]),
                        st.just({"a": 1}))


@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.integers(0, 11), st.sampled_from(list(COLUMNS) + ["DROP", "DUP", "GARBAGE"]),
       JSON_VALUES)
def test_fuzz_records_for_report(tmp_path, capsys, line, column, value):
    run = tmp_path / "run"
    shutil.rmtree(run, ignore_errors=True)
    write_records(_records(), run, parquet=False)
    lines = (run / "records.jsonl").read_text().splitlines()
    row = json.loads(lines[line])
    if column == "DROP":
        del row[REQUIRED[line % len(REQUIRED)]]
    elif column == "DUP":
        lines.append(lines[line])
    elif column == "GARBAGE":
        lines[line] = lines[line][: len(lines[line]) // 2]
    else:
        row[column] = value
    if column not in ("DUP", "GARBAGE"):
        lines[line] = json.dumps(row)
    (run / "records.jsonl").write_text("\n".join(lines) + "\n")
    rc, _, err = run_cli(["report", run, "--out", tmp_path / "rep"], capsys)
    if rc != 0:
        assert_refused_in_one_line(rc, err)
        assert f"records.jsonl:{line + 1 if column != 'DUP' else len(lines)}" in err
        return
    # accepted: the edit was a well-typed value of a known column (never a silent coercion)
    assert column in COLUMNS and type_ok(column, value), (column, value)


def test_report_unknown_control_lists_the_known_ones(tmp_path, capsys):
    write_records(_records(), tmp_path, parquet=False)
    rc, _, err = run_cli(["report", tmp_path, "--control", "foo"], capsys)
    assert_refused_in_one_line(rc, err)
    assert "'foo'" in err and "filter, ignorance, never_trained" in err


# --- checkpoint folders ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A tiny run trained for 20 steps (a few seconds), with its model checkpoint."""
    out = tmp_path_factory.mktemp("runs")
    rc = main(["train", "tests/data/tiny.toml", "--out", str(out), "--set", "train.steps=20",
               "--set", "train.eval_every=0"])
    assert rc == 0
    return out / "tiny-seed0"


CONFIG_EDITS = st.tuples(
    st.sampled_from(["n_layer", "n_head", "n_embd", "n_inner", "n_positions", "vocab_size",
                     "model_type", "transformers_version"]),
    st.sampled_from([1, 2, 4, 3, 64, 128, "llama", "bert", "0.0.1"]))
DAMAGE = st.one_of(
    st.tuples(st.just("config"), CONFIG_EDITS),
    st.tuples(st.just("truncate"), st.floats(0.0, 0.99)),
    st.tuples(st.just("delete"), st.sampled_from(["model.safetensors", "config.json",
                                                  "tokenizer.json"])),
    st.tuples(st.just("garbage"), st.sampled_from(["config.json", "tokenizer.json"])),
)


@settings(max_examples=10, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(DAMAGE)
def test_fuzz_checkpoint_folder(trained_run, tmp_path, capsys, damage):
    run = tmp_path / "run"
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(trained_run, run)
    (model,) = run.glob("model-*/model")
    kind, what = damage
    harmless = False
    if kind == "config":
        key, value = what
        cfg = json.loads((model / "config.json").read_text())
        harmless = key == "transformers_version" or cfg.get(key) == value
        cfg[key] = value
        (model / "config.json").write_text(json.dumps(cfg))
    elif kind == "truncate":
        blob = (model / "model.safetensors").read_bytes()
        (model / "model.safetensors").write_bytes(blob[: int(len(blob) * what)])
    elif kind == "delete":
        (model / what).unlink()
    else:
        (model / what).write_text("{not json")
    rc, _, err = run_cli(["unlearn", run, "--method", "GradAscent", "--set", "tune=false",
                          "--set", "steps=1", "--set", "progress=false"], capsys)
    if harmless:  # the same weights, read as the same model
        assert rc == 0, err
    else:  # a checkpoint that is not the run's model is never used
        assert_refused_in_one_line(rc, err)


def test_checkpoint_with_fewer_layers_is_refused(trained_run, tmp_path, capsys):
    from kgtest.errors import InputError
    from kgtest.model import load_model

    (model,) = trained_run.glob("model-*/model")
    copy = tmp_path / "m"
    shutil.copytree(model, copy)
    cfg = json.loads((copy / "config.json").read_text())
    cfg["n_layer"] = 1
    (copy / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match=r"config.json does not match the weights: weights "
                                         r"that config.json has no place for \(transformer.h.1"):
        load_model(copy)
    load_model(model)
    _, err = capsys.readouterr()
    assert err == ""  # no "Loading weights" bar, no load report


# --- non-finite losses ------------------------------------------------------------------------

def test_training_stops_in_one_line_when_the_loss_is_nan(tmp_path, capsys):
    rc, _, err = run_cli(["train", "tests/data/tiny.toml", "--out", tmp_path, "--set",
                          "train.steps=20", "--set", "train.lr=1e30", "--set",
                          "train.grad_clip=0", "--set", "train.log_every=5", "--set",
                          "train.eval_every=0"], capsys)
    assert_refused_in_one_line(rc, err)
    assert "train: the loss became nan by step 5" in err
    assert not list((tmp_path / "tiny-seed0").glob("model-*/model"))  # no NaN model saved


def test_unlearning_stops_in_one_line_when_the_loss_is_nan(trained_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    rc, _, err = run_cli(["unlearn", run, "--method", "GradAscent", "--set", "tune=false",
                          "--set", "epochs=8", "--set", "lr=1e30", "--set", "grad_clip=0",
                          "--set", "progress=false"], capsys)
    assert_refused_in_one_line(rc, err)
    assert "unlearn GradAscent: the loss became" in err
    assert not list(run.glob("unlearn-*"))
