"""A run's questions and forget/retain sets in the formats other tools read.

- :func:`export_lm_eval` (``kgtest export lm-eval RUN --out DIR``): an
  lm-evaluation-harness task folder (one YAML + JSONL per probe and split, and a group
  ``kgtest_<run>`` over all of them) with the run's direct and CoT questions, exactly as
  kgtest's probes ask them, for any model of the run (``--model_args
  pretrained=RUN/.../model,add_bos_token=True``: the models were trained with ``<bos>``).
- :func:`export_forget_retain` (``kgtest export forget-retain RUN --out DIR``): the
  run's forget, validation and retain sets as TOFU-style ``question``/``answer`` tables
  and as raw documents (``text``), JSONL and Parquet, loadable with
  ``datasets.load_dataset("json"|"parquet", data_files=...)``, so an outside method
  unlearns exactly the documents kgtest's methods unlearn.

Both read a run folder (or a model stage folder) made by ``kgtest train``/``kgtest run``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from kgtest.errors import InputError
from kgtest.symbolic.facts import atomic_write_text

__all__ = ["export_lm_eval", "export_forget_retain", "LM_EVAL_SPLITS"]

#: Split labels that get lm-eval tasks (each only if the run has facts with it).
LM_EVAL_SPLITS = ("forget", "validation", "retain", "held_out")


def _run(run):
    from kgtest.unlearn.api import load_run

    return load_run(run)


def _answer_fact(doc: dict) -> int | None:
    ids = [x["id"] for x in doc["facts"] if x["role"] == "answer"]
    return int(ids[-1]) if ids else None


def _final_answer(ctx, completion: str) -> str:
    parts = ctx.corpus.surface.split_answer(completion)  # a QA completion has no marker
    return parts[1] if parts else completion.strip()


def _fact_columns(ctx, fact: int) -> dict:
    s, r, o = ctx.corpus.named(fact)
    return {"fact": int(fact), "subject": s, "relation": r, "object": o,
            "split": str(ctx.split.labels[fact])}


def _task_name(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z_]+", "_", text).strip("_").lower()


def _yaml_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)  # a JSON string is a valid YAML scalar


def _task_yaml(task: str, data: Path, probe: str, max_toks: int, natural: bool) -> str:
    if probe == "cot":  # the answer after the last answer marker, as kgtest scores it
        pattern = r"(?s).*Answer: (.*?)\s*$" if natural else r"(?s).*(?:^| )A (.*?)\s*$"
    else:
        pattern = r"(?s)^\s*(.*?)\s*$"
    return "\n".join([
        f"task: {task}",
        "dataset_path: json",
        "dataset_kwargs:",
        "  data_files:",
        f"    test: {_yaml_str(str(data))}",
        "test_split: test",
        "output_type: generate_until",
        'doc_to_text: "{{prompt}}"',
        'doc_to_target: "{{answer}}"',
        'target_delimiter: ""',
        "generation_kwargs:",
        "  until: []  # the model's <eos> ends an answer (lm-eval adds it)",
        "  do_sample: false",
        f"  max_gen_toks: {max_toks}",
        "filter_list:",
        "  - name: answer",
        "    filter:",
        "      - function: regex",
        f"        regex_pattern: {_yaml_str(pattern)}",
        "      - function: take_first",
        "metric_list:",
        "  - metric: exact_match",
        "    aggregation: mean",
        "    higher_is_better: true",
        "metadata:",
        "  version: 1.0",
        "",
    ])


def export_lm_eval(run, out_dir: str | os.PathLike, *, name: str | None = None) -> dict:
    """Write an lm-evaluation-harness task folder for a run's direct and CoT questions.

    Parameters
    ----------
    run : path or TrainedRun
        A run folder with one trained model, or a model stage folder.
    out_dir : path
        The task folder (``lm_eval --include_path out_dir``).
    name : str, optional
        The group name (default ``kgtest_<run folder name>``); tasks are
        ``<name>_<probe>_<split>``.

    Returns
    -------
    dict
        ``{"group": name, "tasks": {task: n_questions}, "dir": out_dir}``.

    Notes
    -----
    Questions are the run's ``eval.jsonl`` probe documents (prompt ``Q s r ? A `` or the
    CoT prompt ``Q s r ? T ``), answers the true object; CoT outputs are scored on the
    answer after the last ``A``/``Answer:`` marker, so only the final answer counts (the
    chain is not checked here; ``kgtest probe`` checks it).
    """
    ctx = _run(run)
    out = Path(out_dir).resolve()
    group = _task_name(name or f"kgtest_{ctx.run_dir.resolve().name}")
    tok_len = _token_counter(ctx)
    rows: dict[tuple[str, str], list[dict]] = {}
    for d in ctx.corpus.eval:
        probe, fact = d.get("probe"), _answer_fact(d)
        if probe not in ("direct", "cot") or fact is None:
            continue
        row = {"prompt": d["prompt"], "answer": _final_answer(ctx, d["completion"]),
               "completion": d["completion"], **_fact_columns(ctx, fact)}
        if row["split"] in LM_EVAL_SPLITS:
            rows.setdefault((probe, row["split"]), []).append(row)
    if not rows:
        raise InputError(f"{ctx.corpus_dir}: no direct or CoT probe documents in eval.jsonl "
                         "(corpus.probes = false?)")
    tasks = {}
    for (probe, split), docs in sorted(rows.items()):
        task = f"{group}_{probe}_{split}"
        data = out / f"{task}.jsonl"
        atomic_write_text(data, "".join(json.dumps(r, ensure_ascii=False) + "\n"
                                        for r in docs))
        longest = max(tok_len(r["completion"]) for r in docs)
        atomic_write_text(out / f"{task}.yaml", _task_yaml(
            task, data, probe, longest + (8 if probe == "cot" else 4),
            ctx.corpus.surface.natural))
        tasks[task] = len(docs)
    atomic_write_text(out / f"{group}.yaml", "\n".join(
        [f"group: {group}", "task:"] + [f"  - {t}" for t in tasks]
        + ["aggregate_metric_list:", "  - metric: exact_match", "    aggregation: mean",
           "    weight_by_size: true", "metadata:", "  version: 1.0", ""]))
    model = ctx.model_dir.resolve()
    readme = (f"# lm-evaluation-harness tasks for {ctx.run_dir.resolve()}\n\n"
              f"Tasks (questions): {', '.join(f'{t} ({n})' for t, n in tasks.items())}\n\n"
              "kgtest models were trained with <bos> first: add_bos_token=True is needed.\n\n"
              f"    lm_eval --model hf --model_args pretrained={model},add_bos_token=True "
              f"--include_path {out} --tasks {group} --batch_size 32\n")
    atomic_write_text(out / "README.md", readme)
    return {"group": group, "tasks": tasks, "dir": str(out)}


def _token_counter(ctx):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ctx.model_dir)
    return lambda text: len(tok(text, add_special_tokens=False)["input_ids"])


# --- forget / retain sets ---------------------------------------------------------------------

def _doc_id(d: dict) -> int:
    """A training document's id; a forget unit (one fact of a document) names its source."""
    return int(d["id"] if "id" in d else d["source"])


def _qa(ctx, docs) -> list[dict]:
    """TOFU-style rows: question = prompt, answer = completion, plus the fact asked."""
    out = []
    for d in docs:
        fact = d.get("fact", _answer_fact(d) if d["prompt"] else None)
        if fact is None or not d["prompt"]:
            continue
        out.append({"question": d["prompt"], "answer": d["completion"], "kind": d["kind"],
                    "doc_id": _doc_id(d), **_fact_columns(ctx, fact)})
    return out


def _texts(docs) -> list[dict]:
    return [{"text": d["text"], "kind": d["kind"], "doc_id": _doc_id(d),
             "facts": [int(x["id"]) for x in d["facts"]]} for d in docs]


def _write_table(out: Path, name: str, rows: list[dict]) -> list[str]:
    atomic_write_text(out / f"{name}.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n"
                                                     for r in rows))
    written = [f"{name}.jsonl"]
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return written
    tmp = out / f".{name}.parquet.tmp"
    pq.write_table(pa.Table.from_pylist(rows), tmp)
    os.replace(tmp, out / f"{name}.parquet")
    return written + [f"{name}.parquet"]


def export_forget_retain(run, out_dir: str | os.PathLike, *, deep: bool = False) -> dict:
    """Write a run's forget, validation and retain sets as ``datasets``-loadable tables.

    Tables (each ``.jsonl``, and ``.parquet`` when pyarrow is installed):

    ``forget`` / ``validation`` / ``retain``
        TOFU-style ``question``, ``answer`` rows (QA and CoT documents), with the fact
        asked (``fact``, ``subject``, ``relation``, ``object``, ``split``), ``kind`` and
        ``doc_id``. ``forget`` is exactly what kgtest's methods unlearn; ``validation``
        is what they tune on; ``retain`` is every training document that mentions none
        of the forget or validation facts (what GradDiff-style methods keep).
    ``forget_idk`` / ``validation_idk``
        The same questions answered with the corpus's "unknown" (IdkSFT/IdkDPO).
    ``forget_docs`` / ``validation_docs`` / ``retain_docs``
        The raw training documents (``text``; statements included), for methods that
        unlearn text rather than QA pairs (MUSE style).
    ``eval_forget`` / ``eval_retain``
        The direct probe's questions on the forget targets and on retained stated facts.

    ``meta.json`` records the run, the targets, the deletion sets (``deep``) and counts.

    Returns
    -------
    dict
        The contents of ``meta.json``.
    """
    from kgtest.corpus.io import stage_seed
    from kgtest.unlearn.data import direct_docs, forget_set, retain_docs

    ctx = _run(run)
    cfg = ctx.unlearn_config()
    out = Path(out_dir)
    split = ctx.split
    kw = {}
    if deep:
        kw = dict(closure=ctx.closure, kb=ctx.kb, fixed=ctx.fixed,
                  restarts=cfg.deletion_restarts, time_limit=cfg.deletion_time_limit,
                  seed=stage_seed(cfg.seed, "deletion"))
    sets = {"forget": forget_set(ctx.corpus, split.forget, deep=deep,
                                 include_cot_premise_docs=cfg.include_cot_premise_docs, **kw)}
    if len(split.validation):
        sets["validation"] = forget_set(ctx.corpus, split.validation, deep=deep,
                                        include_cot_premise_docs=cfg.include_cot_premise_docs,
                                        **kw)
    avoid = {f for fs in sets.values() for f in fs.facts.tolist()}
    retain = retain_docs(ctx.corpus, avoid)
    tables = {}
    for name, fs in sets.items():
        tables[name] = _qa(ctx, fs.pair_docs)
        tables[f"{name}_idk"] = _qa(ctx, fs.idk_docs)
        tables[f"{name}_docs"] = _texts(fs.docs)
    tables["retain"] = _qa(ctx, retain)
    tables["retain_docs"] = _texts(retain)
    tables["eval_forget"] = _qa(ctx, direct_docs(ctx.corpus, split.forget))
    retained = sorted({r["fact"] for r in tables["retain"] if r["split"] == "retain"})
    tables["eval_retain"] = _qa(ctx, direct_docs(ctx.corpus, retained))
    files = []
    for name, rows in tables.items():
        files += _write_table(out, name, rows)
    meta = {"run": str(ctx.run_dir.resolve()), "model": str(ctx.model_dir.resolve()),
            "deep": deep, "targets": {k: fs.targets.tolist() for k, fs in sets.items()},
            "facts": {k: fs.facts.tolist() for k, fs in sets.items()},
            "deletion_sets": {k: {str(t): v for t, v in fs.deletion_sets.items()}
                              for k, fs in sets.items()},
            "rows": {k: len(v) for k, v in tables.items()}, "files": files}
    atomic_write_text(out / "meta.json", json.dumps(meta, indent=1) + "\n")
    return meta
