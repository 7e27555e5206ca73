"""Probes: how a fact is asked, and the tidy rows that say whether the model knew it.

A probe is a registered function ``probe(model, tokenizer, facts, ctx) -> list[dict]``
that asks a batch of closure facts and returns one :func:`~kgtest.records.new_row` per
fact (docs/science.md, "Probes"). ``ctx`` is a :class:`ProbeContext`: the corpus, split and
world the model came from, plus the run's identity (run id, variant, seeds).

=============  ===========================================================  =====
probe          what is asked                                                gate
=============  ===========================================================  =====
direct         ``Q s r ? A`` -> greedy answer; log-prob and rank of the      direct
               true object among all entities of its type
statement      ``s r`` cut before the object                                 direct
paraphrase     held-out question template (natural), and the inverse         direct
               statement cut before the subject (``o ~r``; with
               ``corpus.inverse``); symbolic without inverse statements:
               rows with ``applicable = False``
cot            ``Q s r ? T`` -> the model's chain and answer; counts only    cot
               if the chain verifies (:func:`verify_chain`)
in_context     see :mod:`kgtest.probes.in_context` (premises shuffled with a    itself
               distractor; ``counterfactual`` setting; ``in_context_cot``)
latent         direct question on targets the variant never saw stated, and  direct
               (rows ``implied``) on held-out derived facts
relearn        see :mod:`kgtest.probes.relearn`                              direct
quantize       see :mod:`kgtest.probes.quantize`                             direct
utility        retain facts (direct, cot), rule application on unrelated    direct,
               entities (held-out facts, CoT) and held-out loss             cot
=============  ===========================================================  =====

:func:`evaluate` runs a list of probes over a dict of variants and fills the gate:
a row is ``gated_in`` only if the ``original`` model answered the same fact correctly by
the row's gate probe (the gate is a column, never a silent filter). No prompt a probe
builds contains its target fact (nor its answer, except as the subject or, for
``in_context``, inside a premise): :func:`check_prompt` raises :class:`PromptLeak`.

Examples
--------
>>> sorted(PROBES)[:4]
['cot', 'direct', 'in_context', 'in_context_cot']
>>> PROBES.get("cot").gate
'cot'
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from kgtest.corpus.surface import ParseError
from kgtest.errors import InputError
from kgtest.probes.context import (
    RETRAINED,
    Ask,
    ProbeContext,
    PromptLeak,
    ask,
    check_prompt,
    direct_items,
    na_rows,
    toy_context,  # noqa: F401  (the doctests' toy world)
)
from kgtest.probes.registry import DEFAULT_PROBES, PROBES, Probe  # noqa: F401 (Probe: public)
from kgtest.scoring import answer_logprobs, greedy_complete
from kgtest.several import filtered_rank
from kgtest.stacked_probes import probing

__all__ = ["PROBES", "DEFAULT_PROBES", "Probe", "ProbeContext", "PromptLeak", "Ask",
           "ask", "check_prompt", "verify_chain", "equivalent", "evaluate", "probe_variant",
           "gate", "asked", "ASKED"]

# --- the probes ----------------------------------------------------------------------------

@PROBES.register("direct")
def direct(model, tokenizer, facts, ctx: ProbeContext) -> list[dict]:
    """``Q s r ? A`` -> greedy answer, log-prob and rank of the true object."""
    return ask(model, tokenizer, ctx, direct_items(ctx, facts), "direct")


@PROBES.register("statement")
def statement(model, tokenizer, facts, ctx: ProbeContext) -> list[dict]:
    """The fact's statement cut before its object (``s r`` -> ``o``)."""
    sf, F = ctx.corpus.surface, ctx.corpus.facts
    items = [Ask(int(f), sf.statement_probe(*F[f].tolist(), 0)[0], int(F[f, 2]))
             for f in facts]
    # a natural statement ends "... is Mara Velt.": the period belongs to the answer
    return ask(model, tokenizer, ctx, items, "statement", suffix="." if sf.natural else "")


@PROBES.register("paraphrase")
def paraphrase(model, tokenizer, facts, ctx: ProbeContext) -> list[dict]:
    """A held-out question template (natural), and the inverse statement (with
    ``corpus.inverse``)."""
    sf, F = ctx.corpus.surface, ctx.corpus.facts
    if sf.natural:
        items = [Ask(int(f), sf.qa_prompt(int(F[f, 0]), int(F[f, 1]), 0, held=True),
                     int(F[f, 2])) for f in facts]
        rows = ask(model, tokenizer, ctx, items, "paraphrase", setting="held_template")
        return rows + (_inverse(model, tokenizer, facts, ctx) if ctx.corpus.config.inverse
                       else [])
    if not ctx.corpus.config.inverse:
        return na_rows(ctx, facts, "paraphrase")  # no unseen surface to ask with: say so
    return _inverse(model, tokenizer, facts, ctx)


def _inverse(model, tokenizer, facts, ctx: ProbeContext) -> list[dict]:
    """The inverse statement cut before the subject: ``o ~r`` / ``"O is the r of"``.

    Asked on every fact, whether or not its own inverse was trained (the ``trained``
    column says): a fact stated only forward asks the reversal curse."""
    sf, F = ctx.corpus.surface, ctx.corpus.facts
    items = []
    for f in facts:
        s, r, o = F[f].tolist()
        prompt = sf.inverse_statement(s, r, o)[: -len(sf.entity_display[s]) - sf.natural]
        items.append(Ask(int(f), prompt, s, {"floor": None}))  # the answer is the subject:
    # the object floor does not apply; a natural inverse statement ends in "."
    return ask(model, tokenizer, ctx, items, "paraphrase", setting="inverse",
               suffix="." if sf.natural else "", several=False)


def _steps(ctx: ProbeContext, chain: str) -> tuple[int, list[int]]:
    """(number of statements in a chain, fact id per statement that names one, else -1)."""
    sf, c = ctx.corpus.surface, ctx.closure
    chain = chain.strip()
    if sf.natural:
        sents = [x for x in re.split(r"(?<=\.) ", chain) if x.strip()]
    else:
        sents = [x.strip() for x in chain.split(" . ") if x.strip()]
        if sents and sents[-1].endswith(" ."):
            sents[-1] = sents[-1][:-2]
    ids = []
    for sent in sents:
        try:
            m = sf.parse(sent)
        except ParseError:
            ids.append(-1)
            continue
        ok = len(m) == 1 and m[0][3] == "stated"
        ids.append(int(c.index(np.array([m[0][:3]]))[0]) if ok else -1)
    return len(sents), ids


def equivalent(ctx: ProbeContext, a: int, b: int) -> bool:
    """Are closure facts ``a`` and ``b`` the same fact in another form?

    Each must be derivable from the other alone: the same triple, or a symmetric or
    inverse restatement (``spouse(a, b)`` and ``spouse(b, a)`` under
    ``spouse(X, Y) :- spouse(Y, X).``). A premise that derives ``b`` only together with
    other facts is not equivalent to it.

    Examples
    --------
    >>> ctx = toy_context()  # a p b, b p c; g(X, Z) :- p(X, Y), p(Y, Z): fact 2 = a g c
    >>> equivalent(ctx, 2, 2), equivalent(ctx, 0, 2)
    (True, False)
    """
    if a == b:
        return True
    c = ctx.closure
    return bool(c.derivable(b, [a]) and c.derivable(a, [b]))


def verify_chain(ctx: ProbeContext, fact: int, output: str, *, several: bool = False) -> dict:
    """Check a chain of thought against what ``ctx.variant`` was trained on.

    A step is **valid** if it states a fact in the closure of the variant's training
    facts (:meth:`ProbeContext.trained_closure`: for the filter control, without the
    targets; for the ignorance control, without their deletion sets either; for the
    original and unlearning methods, the original's). The chain **cites the target** if a
    step is the target or a fact :func:`equivalent` to it. The chain **entails** the
    target if its valid steps, less the cited ones, derive it. The answer is
    **verified** only if it is right, the chain has at least one step, every step is
    valid, the steps entail the target and none cites it; an answer with no chain is
    not verified.

    ``several``: with several true objects of the target's ``(s, r)`` in the closure, the
    answer is right if it is any of them (``o'``), and the chain must entail, and must not
    cite, the fact ``(s, r, o')`` it answers (nor cite the target); :func:`cot` adds that
    the target's object has filtered rank 1 after the chain
    (:mod:`kgtest.several`). With one true object this is the rule above.

    Returns
    -------
    dict
        ``n_steps``, ``n_true_steps`` (valid steps), ``chain_valid``, ``chain_entails``,
        ``chain_cites_target``, ``answer`` (the final answer text, '' if none),
        ``answer_correct`` and ``verified``.

    Examples
    --------
    >>> ctx = toy_context()  # a p b, b p c; g(X, Z) :- p(X, Y), p(Y, Z): fact 2 = a g c
    >>> v = verify_chain(ctx, 2, "a p b . b p c . A c")
    >>> v["chain_valid"], v["chain_entails"], v["verified"]
    (True, True, True)
    >>> verify_chain(ctx, 2, "a g c . A c")["verified"]  # cites the target
    False
    >>> v = verify_chain(ctx, 2, "a p c . A c")  # right answer, a false step
    >>> v["chain_valid"], v["n_true_steps"], v["answer_correct"], v["verified"]
    (False, 0, True, False)
    >>> verify_chain(ctx, 2, "A c")["verified"]  # no chain at all
    False
    """
    F, sf = ctx.corpus.facts, ctx.corpus.surface
    chain, answer = sf.split_answer(output) or (output, "")
    n, ids = _steps(ctx, chain)
    known = ctx.trained_closure(ctx.variant)
    valid_ids = [f for f in ids if f >= 0 and known[f]]
    s, r, o = F[fact].tolist()
    named = {sf.answer(x): x for x in ctx.true_objects[s, r]} if several else {}
    answered = (int(ctx.closure.index(np.array([[s, r, named[answer]]]))[0])
                if named.get(answer, o) != o else int(fact))  # the fact the answer names
    cited = [f for f in valid_ids
             if equivalent(ctx, f, int(fact)) or equivalent(ctx, f, answered)]
    support = [f for f in valid_ids if f not in cited]
    valid = n > 0 and len(valid_ids) == n
    entails = bool(support) and bool(ctx.closure.derivable(answered, support))
    right = answer == sf.answer(o) or answer in named
    return {"n_steps": n, "n_true_steps": len(valid_ids), "chain_valid": valid,
            "chain_entails": entails, "chain_cites_target": bool(cited), "answer": answer,
            "answer_correct": right,
            "verified": right and valid and entails and not cited}


def _cot(model, tokenizer, facts, ctx: ProbeContext, probe: str) -> list[dict]:
    """Greedy chains for derived facts, verified; the answer scored after the chain."""
    sf, F, c = ctx.corpus.surface, ctx.corpus.facts, ctx.closure
    facts = [int(f) for f in facts]
    derived = [f for f in facts if not c.is_base[f]]
    rows = na_rows(ctx, [f for f in facts if c.is_base[f]], probe, gate="cot")
    if not derived:
        return rows
    prompts = [sf.cot_prompt(int(F[f, 0]), int(F[f, 1]), 0) for f in derived]
    for f, p in zip(derived, prompts, strict=True):
        check_prompt(ctx, f, p, answer=int(F[f, 2]))
    gold = {d["facts"][-1]["id"]: d["completion"] for d in ctx.corpus.eval
            if d.get("probe") == "cot"}
    longest = max(len(tokenizer(gold.get(f, ""), add_special_tokens=False)["input_ids"])
                  for f in derived)
    outs = greedy_complete(model, tokenizer, prompts, longest + 8, batch_size=ctx.batch_size)
    # Score the true answer after the model's own chain: rank among candidates of its type.
    prefixes, where = [], []
    for i, (p, out) in enumerate(zip(prompts, outs, strict=True)):
        parts = sf.split_answer(out)
        if parts is not None:  # the prompt, the model's chain, the marker: score the answer
            prefixes.append(Ask(derived[i], p + parts[0] + sf.answer_marker,
                                int(F[derived[i], 2])))
            where.append(i)
    scored = {}
    for names in {tuple(ctx.candidates(a.answer)[0]) for a in prefixes}:
        idx = [k for k, a in enumerate(prefixes) if tuple(ctx.candidates(a.answer)[0]) == names]
        lp = answer_logprobs(model, tokenizer, [prefixes[k].prompt for k in idx], list(names),
                             batch_size=4 * ctx.batch_size).numpy()  # (P, C)
        ids = np.asarray(ctx.candidate_ids(prefixes[idx[0]].answer))  # (C,)
        for row, k in enumerate(idx):
            s, r, o = F[prefixes[k].fact].tolist()
            t = ctx.candidates(o)[1]
            others = np.isin(ids, list(ctx.true_objects[s, r] - {o}))[None]  # (1, C)
            scored[where[k]] = (float(lp[row, t]), int((lp[row] > lp[row, t]).sum()) + 1,
                                int(filtered_rank(lp[row][None], np.array([t]), others)[0]))
    for i, (f, out) in enumerate(zip(derived, outs, strict=True)):
        n_true = len(ctx.true_objects[int(F[f, 0]), int(F[f, 1])])
        v = verify_chain(ctx, f, out, several=n_true > 1)
        names, _ = ctx.candidates(int(F[f, 2]))
        s, rk, frk = scored.get(i, (None, None, None))
        ranked = n_true == 1 or frk == 1  # several: o above every wrong candidate
        rows.append(ctx.row(probe, f, gate="cot", correct=v["verified"] and ranked,
                            filtered_rank=frk, n_true=n_true,
                            answer_correct=v["answer_correct"] and ranked, score=s,
                            rank=rk, n_candidates=len(names), chance=1 / len(names),
                            output=out,
                            chain_valid=v["chain_valid"], chain_entails=v["chain_entails"],
                            chain_cites_target=v["chain_cites_target"], n_steps=v["n_steps"],
                            n_true_steps=v["n_true_steps"]))
    return rows


@PROBES.register("cot", gate="cot", columns=("cot", "cot_answer"))
def cot(model, tokenizer, facts, ctx: ProbeContext) -> list[dict]:
    """``Q s r ? T`` -> the model's chain and answer; every step checked on the closure."""
    return _cot(model, tokenizer, facts, ctx, "cot")


def _latent_facts(ctx: ProbeContext, facts) -> list[int]:
    """The asked facts that are latent for ``ctx.variant`` (see :func:`latent`)."""
    trained = ctx.trained_facts(ctx.variant)
    method = ctx.variant not in ("original", "never_trained", *RETRAINED)
    pres = ctx.corpus.presentation
    return [int(f) for f in facts if not trained[f] or (method and pres[f] == "stated")]


@PROBES.register("latent", columns=("latent", "implied"))
def latent(model, tokenizer, facts, ctx: ProbeContext) -> list[dict]:
    """Direct questions on facts never seen stated (targets) and on held-out facts.

    docs/science.md, "latent": the direct question on a fact the model never saw stated and
    can only get by composition. Rows ``latent``: the asked targets the variant was not
    trained on (every target of the filter, ignorance and never-trained controls; any
    target rendered as ``implied``), and on an unlearning method the targets presented
    stated only (no chain of their own to recall); other targets are not applicable.
    Rows ``implied``: the split's held-out derived facts, never rendered for any variant
    (the scored half, ``Split.held_out_scored``: early stopping never saw them):
    a capability measure, not the targets.
    """
    facts = [int(f) for f in facts]
    asked = _latent_facts(ctx, facts)
    rest = sorted(set(facts) - set(asked))
    return (ask(model, tokenizer, ctx, direct_items(ctx, asked), "latent")
            + na_rows(ctx, rest, "latent")
            + ask(model, tokenizer, ctx,
                  direct_items(ctx, ctx.split.held_out_scored.tolist()), "implied"))


def _sample(ids, limit: int, seed: int) -> list[int]:
    ids = sorted(int(x) for x in ids)
    if len(ids) <= limit:
        return ids
    return sorted(np.random.default_rng(seed).choice(ids, limit, replace=False).tolist())


def utility_retain_facts(corpus, split, limit: int, seed: int) -> dict[str, list[int]]:
    """The retained facts the utility probe asks: ``direct`` (stated) and ``cot`` samples.

    ``seed`` is the run's ``probes`` seed (:func:`kgtest.seeds.run_seeds`). Unlearning
    tunes on retained facts outside these (its utility floor must not peek at them).
    """
    pres = np.asarray(corpus.presentation)
    retain = split.labels == "retain"
    derived = np.asarray([t.split(",")[0] == "derived" for t in corpus.tags], dtype=bool)
    stated = np.flatnonzero(retain & np.isin(pres, ["stated", "both"]))
    chained = np.flatnonzero(retain & np.isin(pres, ["cot", "both"]) & derived)
    return {"direct": _sample(stated, limit, seed), "cot": _sample(chained, limit, seed)}


@PROBES.register("utility", kind="utility", columns=(
    "utility_direct", "utility_cot", "utility_rule", "utility_loss"))
def utility(model, tokenizer, facts, ctx: ProbeContext) -> list[dict]:
    """Retain facts (direct, cot), rule use on unrelated entities, held-out loss.

    Rows: ``utility_direct`` (retained stated facts), ``utility_cot`` (retained facts
    trained with CoT), ``utility_rule`` (scored held-out derived facts, none of whose entities
    appear in a forget target or its premises, asked with CoT: the inference capability
    away from the targets; none in a small world where every entity is near a target)
    and ``utility_loss`` (mean log-prob per token of the gold CoT documents of held-out
    facts, which no training document contains; ``correct`` is None).
    """
    F, sp = ctx.corpus.facts, ctx.split
    seed = int(ctx.seeds.get("probes") or 0)
    kept = utility_retain_facts(ctx.corpus, sp, ctx.utility_limit, seed)
    near = np.concatenate([sp.forget, sp.premise]).astype(np.int64)
    near_ents = set(F[near][:, [0, 2]].ravel().tolist())
    held = sp.held_out_scored.tolist()  # never the in-loop stop half (Split.held_out_stop)
    far = [int(f) for f in held if not {int(F[f, 0]), int(F[f, 2])} & near_ents]
    rows = ask(model, tokenizer, ctx, direct_items(ctx, kept["direct"]), "utility_direct")
    rows += _cot(model, tokenizer, kept["cot"], ctx, "utility_cot")
    rows += _cot(model, tokenizer, _sample(far, ctx.utility_limit, seed), ctx, "utility_rule")
    gold = {d["facts"][-1]["id"]: d for d in ctx.corpus.eval if d.get("probe") == "cot"}
    far = _sample([f for f in held if f in gold], ctx.utility_limit, seed)
    if far:
        lp = answer_logprobs(model, tokenizer, [gold[f]["prompt"] for f in far],
                             [[gold[f]["completion"]] for f in far])[:, 0]  # (P,)
        n_tok = [len(tokenizer(gold[f]["completion"], add_special_tokens=False)["input_ids"])
                 + 1 for f in far]  # + eos
        rows += [ctx.row("utility_loss", f, gate="none", score=float(lp[i]) / n_tok[i])
                 for i, f in enumerate(far)]
    return rows


# --- running probes over variants ----------------------------------------------------------

#: What ``probes.facts`` may name (:func:`asked`).
ASKED = ("targets", "held_out", "base")


def asked(ctx: ProbeContext, which: str = "targets") -> list[int]:
    """The facts the probes ask (``probes.facts``).

    ``targets``: the split's forget targets (the default: re-derivation). ``held_out``:
    the scored held-out derived facts (``Split.held_out_scored``: never asked by early
    stopping), never in any document (two-hop questions on facts learned
    only through their premises). ``base``: every base fact (storage and extraction:
    QA on subjects whose QA was never trained, inverse questions).

    Examples
    --------
    >>> ctx = toy_context()  # a p b, b p c; g(X, Z) :- p(X, Y), p(Y, Z): fact 2 = a g c
    >>> asked(ctx), asked(ctx, "base")
    ([2], [0, 1])
    """
    if which not in ASKED:
        raise InputError(f"probes.facts: unknown {which!r} (known: {', '.join(ASKED)})")
    if which == "targets":
        return ctx.split.forget.tolist()
    if which == "held_out":
        return ctx.split.held_out_scored.tolist()
    return np.flatnonzero(ctx.closure.is_base).tolist()


_GATE_SOURCES = {"direct": ("direct", "latent", "implied", "utility_direct"),
                 "cot": ("cot", "utility_cot", "utility_rule")}


def _known(model, tokenizer, ctx: ProbeContext, rows: list[dict]) -> dict[str, dict]:
    """Per gate, fact -> the original answered it correctly (asking what rows lack)."""
    known: dict[str, dict[int, bool]] = {"direct": {}, "cot": {}}
    for r in rows:
        for gate, probes in _GATE_SOURCES.items():
            if r["probe"] in probes and r["setting"] in ("", None) and r["applicable"]:
                known[gate][r["fact"]] = bool(r["correct"])
    need = {g: sorted({r["fact"] for r in rows if r["gate"] == g} - set(known[g]))
            for g in known}
    for r in rows:  # other gates (the in-context probes): the original's own answer
        if r["gate"] not in ("direct", "cot", "none") and r["applicable"]:
            known.setdefault(r["gate"], {})[r["fact"]] = bool(r["correct"])
    for r in direct(model, tokenizer, need["direct"], ctx):
        known["direct"][r["fact"]] = bool(r["correct"])
    for r in cot(model, tokenizer, need["cot"], ctx):
        known["cot"][r["fact"]] = bool(r["correct"]) and bool(r["applicable"])
    return known


def _load(v):
    if isinstance(v, (str, os.PathLike)):
        from kgtest.model import load_model

        return load_model(v)
    return v


def evaluate(variants: Mapping[str, Any], ctx: ProbeContext,
             probes: Sequence[str] = DEFAULT_PROBES, facts: Sequence[int] | None = None, *,
             original: str = "original", log: Callable[[str], None] | None = None
             ) -> list[dict]:
    """Run probes on every variant and gate the rows by what the original knew.

    Parameters
    ----------
    variants : mapping
        Variant name -> ``(model, tokenizer)`` or a model folder (loaded one at a time).
        Must contain ``original``.
    ctx : ProbeContext
    probes : sequence of str
        Registered probe names (default: all of :data:`DEFAULT_PROBES`).
    facts : sequence of int, optional
        The facts asked (default: the split's forget targets). ``latent`` adds held-out
        facts; ``utility`` picks retain and unrelated facts itself.
    original : str
        The variant whose answers gate every row.
    log : callable, optional
        Called with a short progress line per (variant, probe).

    Returns
    -------
    list of dict
        Tidy rows (:mod:`kgtest.records`), ``gated_in`` filled.
    """
    if original not in variants:
        raise InputError(f"evaluate: the gate needs the {original!r} variant; got "
                         f"{', '.join(variants) or 'none'}")
    rows, known = probe_variant(original, variants[original], ctx, probes, facts, log=log,
                                gate_source=True)
    for name in [v for v in variants if v != original]:
        rows += probe_variant(name, variants[name], ctx, probes, facts, log=log)[0]
    return gate(rows, known)


def probe_variant(name: str, variant: Any, ctx: ProbeContext,
                  probes: Sequence[str] = DEFAULT_PROBES, facts: Sequence[int] | None = None,
                  *, gate_source: bool = False, log: Callable[[str], None] | None = None
                  ) -> tuple[list[dict], dict | None]:
    """One variant's rows, ungated (one step of :func:`evaluate`).

    The original (``gate_source=True``) is probed first: it leaves in ``ctx`` what the
    other variants' probes compare with (:meth:`ProbeContext.original_state`), and its
    answers per gate come back as the second element (else None) for :func:`gate`.
    """
    specs = [PROBES.get(p) for p in probes]
    facts = ctx.split.forget.tolist() if facts is None else [int(f) for f in facts]
    model, tok = _load(variant)
    vctx = ctx.for_variant(name)
    rows = []
    with probing():  # beside other models' probes (kgtest run --seeds): batched with them
        for p in specs:
            if log:
                log(f"{name}: {p.name}")
            rows += p.fn(model, tok, facts, vctx)
        return rows, (_known(model, tok, vctx, rows) if gate_source else None)


def gate(rows: list[dict], known: dict) -> list[dict]:
    """Fill ``gated_in`` on every row from the original's answers per gate (in place)."""
    for r in rows:
        r["gated_in"] = r["gate"] == "none" or (
            bool(r["applicable"]) and known.get(r["gate"], {}).get(r["fact"], False))
    return rows

