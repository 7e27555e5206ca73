"""Outputs that travel: file modes on shared storage, run metadata, exports, outside models."""

from __future__ import annotations

import os

import pytest

from kgtest.corpus.tokenizer import build_tokenizer
from kgtest.model import ModelConfig, build_model, save_model
from kgtest.symbolic.facts import atomic_write_text


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path) -> int:
    return os.stat(path).st_mode & 0o777


def test_atomic_writes_and_model_folders_respect_the_umask(tmp_path, umask_022):
    atomic_write_text(tmp_path / "a.txt", "hi\n")
    tok = build_tokenizer(["a b"])
    model_dir = save_model(build_model(ModelConfig(preset="tiny"), tok), tok, tmp_path / "m")
    assert _mode(tmp_path / "a.txt") == 0o644  # mkstemp alone gives 0600
    assert _mode(model_dir) == 0o755  # mkdtemp alone gives 0700
    assert all(_mode(p) == 0o644 for p in model_dir.iterdir())
    os.umask(0o077)  # a private umask stays private
    atomic_write_text(tmp_path / "b.txt", "hi\n")
    assert _mode(tmp_path / "b.txt") == 0o600


def test_run_info_spec_reproduces_from_any_directory(tmp_path, monkeypatch):
    """spec.toml holds every default, copies the rules and loads back to the same config."""
    import json
    import shutil
    from pathlib import Path

    from kgtest.experiment import load_experiment
    from kgtest.interop.runinfo import replace_source, run_info_markdown, write_run_info

    root = Path(__file__).resolve().parents[1]
    src = tmp_path / "spec"
    src.mkdir()
    shutil.copy(root / "generators" / "family.dl", src / "family.dl")
    (src / "exp.toml").write_text('[world]\nsampler = "family_tree"\nrules = "family.dl"\n'
                                  '[train]\nsteps = 9\n')
    cfg = load_experiment(src / "exp.toml", ["model.preset=tiny"])
    run = write_run_info(cfg, tmp_path / "runs" / "r", "kgtest run exp.toml")
    shutil.rmtree(src)  # the run folder must not need the original spec or rules
    monkeypatch.chdir(tmp_path)
    text = (run / "spec.toml").read_text()
    assert "# n_layer = (unset" in text and "[unlearn]" in text and "rules = \"family.dl\"" in text
    again = load_experiment(run / "spec.toml")
    assert again == replace_source(cfg, again)
    assert again.world.rules == "family.dl" and (run / "family.dl").is_file()
    info = json.loads((run / "run.json").read_text())
    assert set(info["versions"]) >= {"kgtest", "torch", "transformers", "numpy"}
    assert info["command"] == "kgtest run exp.toml" and info["overrides"] == ["model.preset=tiny"]
    assert info["reproduce"].startswith(f"kgtest run {run}/spec.toml --out /")
    assert info["git"] is None or len(info["git"]["commit"]) == 40
    md = run_info_markdown([run])
    assert "## Provenance" in md and info["reproduce"] in md and "torch" in md


def test_version_flag(capsys):
    import kgtest
    from kgtest.cli import main

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"kgtest {kgtest.__version__}"


# --- a tiny trained run (exports and outside models need one; accuracy does not matter) ----

TINY = ["model.preset=tiny", "train.steps=60", "train.progress=false", "train.threads=1",
        "train.tensorboard=false", "world.params.n_entities=12", "train.lr=3e-3",
        "corpus.derived=both", "split.n_forget=4", "split.n_validation=2",
        "train.eval_every=1000"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from pathlib import Path

    import torch

    from kgtest.experiment import load_experiment
    from kgtest.pipeline import train_experiment

    torch.set_num_threads(1)
    root = Path(__file__).resolve().parents[1]
    cfg = load_experiment(root / "experiments" / "quickstart.toml", TINY)
    run_dir = tmp_path_factory.mktemp("runs") / "tiny-seed0"
    return train_experiment(cfg, run_dir), run_dir


@pytest.mark.slow
def test_export_lm_eval_writes_tasks_that_match_the_probes(tiny_run, tmp_path, capsys):
    import json

    from kgtest.cli import main
    from kgtest.unlearn.api import load_run

    run, run_dir = tiny_run
    assert main(["export", "lm-eval", str(run_dir), "--out", str(tmp_path), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    ctx = load_run(run_dir)
    group = res["group"]
    assert f"{group}_direct_forget" in res["tasks"] and f"{group}_cot_forget" in res["tasks"]
    assert res["tasks"][f"{group}_direct_forget"] == len(ctx.split.forget)
    rows = [json.loads(x) for x in (tmp_path / f"{group}_cot_forget.jsonl").open()]
    assert sorted(r["fact"] for r in rows) == sorted(ctx.split.forget.tolist())
    for r in rows:  # the question never contains its answer; the answer is the object
        assert r["answer"] == r["object"] and r["prompt"].endswith("? T ")
        assert r["completion"].endswith(f"A {r['answer']}")
    yaml = (tmp_path / f"{group}_cot_forget.yaml").read_text()
    assert "output_type: generate_until" in yaml and str(tmp_path) in yaml
    assert f"- {group}_direct_forget" in (tmp_path / f"{group}.yaml").read_text()
    assert "add_bos_token=True" in (tmp_path / "README.md").read_text()


@pytest.mark.slow
def test_export_forget_retain_is_what_the_methods_unlearn(tiny_run, tmp_path):
    import json

    from kgtest.interop.exports import export_forget_retain
    from kgtest.unlearn.api import load_run
    from kgtest.unlearn.data import forget_set

    run, run_dir = tiny_run
    meta = export_forget_retain(run_dir, tmp_path)
    ctx = load_run(run_dir)
    fs = forget_set(ctx.corpus, ctx.split.forget)

    def load(name):
        try:
            import datasets
        except ImportError:
            return [json.loads(x) for x in (tmp_path / f"{name}.jsonl").open()]
        return list(datasets.load_dataset("json", data_files=str(tmp_path / f"{name}.jsonl"),
                                          split="train"))

    forget, docs = load("forget"), load("forget_docs")
    assert {r["doc_id"] for r in docs} == {d["source"] for d in fs.docs}
    assert [(r["question"], r["answer"]) for r in forget] == \
        [(d["prompt"], d["completion"]) for d in fs.pair_docs]
    assert {r["answer"] for r in load("forget_idk")} == {fs.idk_docs[0]["completion"]}
    retain = load("retain_docs")
    gone = set(meta["facts"]["forget"]) | set(meta["facts"]["validation"])
    assert retain and all(gone.isdisjoint(r["facts"]) for r in retain)
    assert {r["split"] for r in load("eval_forget")} == {"forget"}
    pq = pytest.importorskip("pyarrow.parquet")
    table = pq.read_table(tmp_path / "forget.parquet")
    assert table.column_names[:2] == ["question", "answer"] and table.num_rows == len(forget)


@pytest.mark.slow
def test_probe_an_outside_checkpoint_as_a_new_variant(tiny_run, tmp_path, capsys):
    import json

    from kgtest.cli import main
    from kgtest.interop.external import probe_model
    from kgtest.model import load_model
    from kgtest.records import read_records, write_records
    from kgtest.unlearn.api import load_run

    run, run_dir = tiny_run
    ctx = load_run(run_dir)
    # the original itself, probed from outside: gated in exactly where it is right
    res = probe_model(ctx.model_dir, run_dir, "copy", probes=["direct", "cot"],
                      log=lambda m: None)
    rows = read_records(run_dir)
    assert res["rows"] == len(rows) == 2 * len(ctx.split.forget)
    assert all(r["gated_in"] == bool(r["correct"]) for r in rows if r["applicable"])
    # records as `kgtest run` leaves them: add the original's rows, then an untrained model
    write_records([{**r, "variant": "original"} for r in rows] + rows, run_dir)
    model, tok = load_model(ctx.model_dir)
    scratch = save_model(build_model(ModelConfig(preset="tiny"), tok, seed=5), tok,
                         tmp_path / "scratch")
    assert main(["probe", str(scratch), "--run", str(run_dir), "--as", "scratch",
                 "--probes", "direct", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["variant"] == "scratch" and out["summary"]
    by_variant = {r["variant"] for r in read_records(run_dir)}
    assert by_variant == {"original", "copy", "scratch"}
    assert "scratch" in (run_dir / "summary.md").read_text()
    assert main(["report", str(run_dir), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert {"original", "copy", "scratch"} <= {r["variant"] for r in rows}
    assert main(["probe", str(scratch), "--run", str(run_dir), "--as", "original"]) == 2
    assert "built-in variant" in capsys.readouterr().err


def test_json_output_of_build_commands(tmp_path, capsys):
    import json
    from pathlib import Path

    from kgtest.cli import main

    root = Path(__file__).resolve().parents[1]
    assert main(["world", "build", str(root / "generators" / "family.toml"), "--out",
                 str(tmp_path / "w"), "--json"]) == 0
    world = json.loads(capsys.readouterr().out)
    assert world["facts"] == world["base"] + world["derived"] and world["rules"] > 0
    assert main(["corpus", "build", str(root / "experiments" / "quickstart.toml"), "--out",
                 str(tmp_path / "c"), "--json", "--set", "world.params.n_entities=12"]) == 0
    corpus = json.loads(capsys.readouterr().out)
    assert corpus["train_documents"] == sum(corpus["by_kind"].values())
    assert corpus["split"]["forget"] == 20  # experiments/quickstart.toml: n_forget


@pytest.mark.slow
def test_register_a_custom_method_and_probe(tiny_run):
    """The public hooks (README, "Extending kgtest"): a method and a probe registered by a
    user run through kgtest's own unlearning stage and probe runner."""
    import json

    from kgtest.model import load_model
    from kgtest.probes.probes import PROBES, ProbeContext, evaluate
    from kgtest.unlearn import METHODS, UnlearnConfig, load_run, unlearn_run
    from kgtest.unlearn.methods import mean_nll

    @METHODS.register("HalfAscent")
    def half_ascent(step, *, scale: float = 0.5):
        """Gradient ascent at a fraction of the forget NLL: ``L = -scale · NLL_f``."""
        nll = mean_nll(step.model, step.forget)
        return -scale * nll, {"forget": nll.detach()}

    @PROBES.register("answer_is_entity")
    def answer_is_entity(model, tokenizer, facts, ctx):
        """Whether the greedy direct answer is any entity name (right or wrong)."""
        names = set(ctx.corpus.surface.entity_names)
        rows = PROBES.get("direct").fn(model, tokenizer, facts, ctx)
        return [{**r, "probe": "answer_is_entity", "correct": r["output"].strip() in names}
                for r in rows]

    try:
        run, run_dir = tiny_run
        cfg = UnlearnConfig(methods=("HalfAscent",), tune=False, epochs=1, lr=1e-3,
                            progress=False, params={"HalfAscent": {"scale": 0.25}})
        stage = unlearn_run(run_dir, cfg, "HalfAscent")
        info = json.loads((stage / "unlearn.json").read_text())
        assert info["method"] == "HalfAscent" and info["hyperparameters"]["scale"] == 0.25
        ctx = load_run(run_dir)
        pctx = ProbeContext.from_run(ctx.corpus_dir, ctx.world, run_id="t")
        rows = evaluate({"original": load_model(ctx.model_dir), "HalfAscent": stage / "model"},
                        pctx, probes=["answer_is_entity"])
        assert {r["variant"] for r in rows} == {"original", "HalfAscent"}
        assert len(rows) == 2 * len(ctx.split.forget)
        assert all(r["probe"] == "answer_is_entity" for r in rows)
    finally:
        METHODS._items.pop("HalfAscent", None)  # registries are global: leave them as found
        PROBES._items.pop("answer_is_entity", None)


@pytest.mark.slow
def test_transformer_lens_bridge_matches_logits(tmp_path):
    """README recipe: a kgtest checkpoint in TransformerLens (>= 4; not a kgtest dependency:
    `pip install transformer-lens` after torch). Checked with 4.3.0: max diff 6e-8."""
    pytest.importorskip("transformer_lens")
    import torch
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = build_tokenizer(["Q ann parent ? A bob", "ann parent bob ."])
    path = save_model(build_model(ModelConfig(preset="tiny"), tok, seed=3), tok, tmp_path / "m")
    hf = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager").eval()
    bridge = TransformerBridge.boot_transformers(str(path), tokenizer=AutoTokenizer.from_pretrained(
        path), device="cpu")
    ids = tok(["Q ann parent ? A bob"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        diff = (hf(ids).logits - bridge(ids)).abs().max().item()
    _, cache = bridge.run_with_cache(ids)
    assert diff < 1e-4 and "blocks.0.hook_resid_pre" in cache
