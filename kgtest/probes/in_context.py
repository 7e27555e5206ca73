"""The in-context probes: the premises in the prompt, shuffled, with distractors.

==================  ==========================================================  ===========
probe [setting]     what is asked                                               gate
==================  ==========================================================  ===========
in_context          the corpus's in-context document: one derivation's          in_context
                    premises and ``icl.distractors`` true facts about other
                    entities, shuffled, then ``Q s r ? A`` (no CoT)
in_context          premises whose rule yields another object than the          in_context
[counterfactual]    memorised one (:meth:`~kgtest.corpus.in_context.Contexts.   [counter-
                    counterfactual`); scored against the new object;            factual]
                    ``memorised`` says the model gave the memorised one
in_context_cot      the same premises, then ``Q s r ? T``: the model writes     in_context
                    the chain, then the answer; ``correct`` only if the         _cot
                    answer is right and the chain is valid and entails it
==================  ==========================================================  ===========

Every row carries the baselines beside its rate: ``copy_last`` (a model copying the last
premise's object is right), ``copy_rate`` (the chance that copying a random premise's
object is right) and ``majority_floor`` (:func:`kgtest.unlearn.data.majority_floor`: the
chance that always answering the relation's most frequent object is right). Each setting
is gated on the original's answer to the same prompt: only facts the original answers in
context count. No prompt states the fact it asks (:func:`check_prompt`).

Examples
--------
>>> from kgtest.probes.context import toy_context
>>> ctx = toy_context()  # a p b, b p c; g(X, Z) :- p(X, Y), p(Y, Z): fact 2 = a g c
>>> [it.prompt for it in true_items(ctx, [2])]
['a p b . b p c . Q a g ? A ']
>>> [it.prompt for it in true_items(ctx, [2], cot=True)]
['a p b . b p c . Q a g ? T ']
"""

from __future__ import annotations

import numpy as np

from kgtest.corpus.in_context import Contexts, copy_baselines, forbidden_facts, format_doc
from kgtest.probes.context import Ask, ProbeContext, ask, check_prompt, na_rows
from kgtest.probes.probes import verify_chain
from kgtest.probes.registry import PROBES
from kgtest.scoring import greedy_complete
from kgtest.unlearn.data import majority_floor

__all__ = ["true_items", "counterfactual_items", "in_context", "in_context_cot"]


def _docs(ctx: ProbeContext) -> dict[int, dict]:
    """Fact id -> its in-context probe document."""
    return ctx._cached("in_context", lambda: {
        next(x["id"] for x in d["facts"] if x["role"] == "answer"): d
        for d in ctx.corpus.in_context})


def _context(ctx: ProbeContext, doc: dict) -> list[tuple[int, int, int]]:
    """The statements a document's prompt gives, in order."""
    return [m[3] for m in ctx.corpus.parse(doc) if m[1] == "premise"]


def _floor(ctx: ProbeContext, fact: int, answer: int) -> float:
    F = ctx.corpus.facts
    if F[fact, 2] != answer:
        F = F.copy()
        F[fact, 2] = answer
    return float(majority_floor(F, [fact], any_true=False)[0])  # the premises' object


def true_items(ctx: ProbeContext, facts, *, cot: bool = False) -> list[Ask]:
    """Items of the corpus's in-context documents (``cot``: asking for the chain)."""
    sf, F, docs = ctx.corpus.surface, ctx.corpus.facts, _docs(ctx)
    items = []
    for f in (int(x) for x in facts):
        if f not in docs:
            continue
        doc, (s, r, o) = docs[f], F[f].tolist()
        context = _context(ctx, doc)
        prompt = format_doc(sf, context, s, r, o, cot=context if cot else None)["prompt"]
        items.append(Ask(f, prompt, o, {**copy_baselines(context, o),
                                        "majority_floor": _floor(ctx, f, o)}))
    return items


def counterfactual_items(ctx: ProbeContext, facts) -> tuple[list[Ask], list[int]]:
    """Counterfactual items (seeded per fact), and the facts that have none."""
    sf, F, docs = ctx.corpus.surface, ctx.corpus.facts, _docs(ctx)
    icl = ctx.corpus.config.icl
    cx = ctx._cached("contexts", lambda: Contexts(ctx.closure,
                                                  forbid=forbidden_facts(ctx.split)))
    items, missing = [], []
    for f in (int(x) for x in facts):
        got = None
        if f in docs:
            rng = np.random.default_rng([int(ctx.corpus.seed), f, 0xCF])
            got = cx.counterfactual(f, int(docs[f]["derivation"]), rng,
                                    distractors=icl.distractors, shuffle=icl.shuffle)
        if got is None:
            missing.append(f)
            continue
        context, new, _ = got
        s, r, _ = F[f].tolist()
        prompt = format_doc(sf, context, s, r, new)["prompt"]
        items.append(Ask(f, prompt, new, {**copy_baselines(context, new),
                                          "majority_floor": _floor(ctx, f, new)}))
    return items, missing


@PROBES.register("in_context", gate="in_context")
def in_context(model, tokenizer, facts, ctx: ProbeContext) -> list[dict]:
    """Premises (shuffled, with distractors) in the prompt, then the question, no CoT."""
    sf, F = ctx.corpus.surface, ctx.corpus.facts
    items = true_items(ctx, facts)
    asked = {it.fact for it in items}
    rows = ask(model, tokenizer, ctx, items, "in_context", gate="in_context",
               premises_allowed=True, several=False)  # the premises imply this object
    rows += na_rows(ctx, [f for f in facts if int(f) not in asked], "in_context",
                     gate="in_context")
    cf, missing = counterfactual_items(ctx, facts)
    gate = "in_context[counterfactual]"
    cf_rows = ask(model, tokenizer, ctx, cf, "in_context", setting="counterfactual",
                  gate=gate, premises_allowed=True)
    for row in cf_rows:
        row["memorised"] = row["output"].strip() == sf.answer(int(F[row["fact"], 2]))
    na = na_rows(ctx, missing, "in_context", gate=gate)
    for row in na:
        row["setting"] = "counterfactual"
    return rows + cf_rows + na


@PROBES.register("in_context_cot", gate="in_context_cot")
def in_context_cot(model, tokenizer, facts, ctx: ProbeContext) -> list[dict]:
    """Premises in the prompt, then ``Q s r ? T``: a verified chain, then the answer."""
    sf, F = ctx.corpus.surface, ctx.corpus.facts
    items = true_items(ctx, facts, cot=True)
    asked = {it.fact for it in items}
    rows = na_rows(ctx, [f for f in facts if int(f) not in asked], "in_context_cot",
                    gate="in_context_cot")
    if not items:
        return rows
    for it in items:
        check_prompt(ctx, it.fact, it.prompt, answer=it.answer, premises_allowed=True)
    # the chain restates (some of) the premises: at most the prompt's length, plus the answer
    longest = max(len(tokenizer(it.prompt, add_special_tokens=False)["input_ids"])
                  for it in items)
    outs = greedy_complete(model, tokenizer, [it.prompt for it in items], longest + 8,
                           batch_size=ctx.batch_size)
    for it, out in zip(items, outs, strict=True):
        v = verify_chain(ctx, it.fact, out)
        right = v["answer"] == sf.answer(int(F[it.fact, 2]))
        names, _ = ctx.candidates(int(F[it.fact, 2]))
        rows.append(ctx.row("in_context_cot", it.fact, gate="in_context_cot",
                            correct=right and v["chain_valid"] and v["chain_entails"],
                            n_candidates=len(names), chance=1 / len(names), output=out,
                            chain_valid=v["chain_valid"], chain_entails=v["chain_entails"],
                            n_steps=v["n_steps"], n_true_steps=v["n_true_steps"],
                            **it.extra))
    return rows

