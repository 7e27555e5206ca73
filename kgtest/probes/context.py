"""The probe context, prompt hygiene, and batched asking (shared by every probe).

:class:`ProbeContext` carries what a probe needs besides the model: the corpus, split and
world a model came from, the run's identity, and per-fact categories (cached, shared
between variants). :func:`ask` asks many questions at once, greedy then teacher-forced;
:func:`check_prompt` refuses a prompt that gives its target away.

Examples
--------
>>> ctx = toy_context()
>>> ctx.corpus.named(2), ctx.categories[2]["split"], ctx.candidates(2)
(('a', 'g', 'c'), 'forget', (['a', 'b', 'c'], 2))
>>> ctx.row("direct", 2, correct=True)["presentation"]
'cot'
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from kgtest.corpus.render import Corpus
from kgtest.corpus.splits import Split
from kgtest.corpus.surface import INVERSE_TEMPLATE, STATEMENT_TEMPLATES
from kgtest.errors import InputError
from kgtest.records import new_row
from kgtest.scoring import answer_logprobs, greedy_complete
from kgtest.several import filtered_rank, judge, true_objects

__all__ = ["ProbeContext", "PromptLeak", "Ask", "ask", "check_prompt", "direct_items", "na_rows",
           "toy_context"]


#: The ``trained`` column's document kinds, in the order it lists them.
TRAINED_KINDS = ("statement", "inverse", "qa", "cot", "in_context")

#: Controls retrained from scratch on a filtered corpus (what they dropped is ``removed``).
RETRAINED = ("filter", "ignorance")


class PromptLeak(AssertionError):
    """An evaluation prompt contains the fact it asks about."""



@dataclass(frozen=True, eq=False)
class ProbeContext:
    """What a probe needs besides the model: the data it came from and the run's identity.

    Attributes
    ----------
    corpus : Corpus
        The run's corpus (``read_corpus(corpus_dir)``); its facts are the closure's.
    split : Split
    world : World
        The run's world (``sample_world(cfg.world, seed=stage_seed(seed, "world"))``):
        entity types (candidate sets), rules and domains.
    variant : str
        Set per variant by :func:`evaluate`.
    run_id : str
    seeds : mapping
        ``world``, ``train``, ``unlearn``, ``attack`` -> int (recorded on every row).
    removed : mapping
        Variant -> fact ids it deletes, for the relearn audit. Missing variants: nothing
        for ``original``, everything for ``never_trained``, the forget targets otherwise
        (give the ignorance control and ``*_deep`` methods their deletion sets).
    relearn : RelearnConfig or None
        The attack grid (:class:`kgtest.probes.relearn.RelearnConfig`; None: defaults).
    quantize_bits : tuple of int
    quantize_group_size : int
        Weights per quantization scale (0: one per channel).
    quantize_embeddings : bool
        Also quantize the embeddings and the output head.
    utility_limit : int
        At most this many facts per utility sub-probe (a fixed seeded sample).
    batch_size : int
        Prompts per forward pass.
    """

    corpus: Corpus
    split: Split
    world: Any
    variant: str = "original"
    run_id: str = "run"
    seeds: Mapping[str, int | None] = field(default_factory=dict)
    removed: Mapping[str, Sequence[int]] = field(default_factory=dict)
    relearn: Any = None
    quantize_bits: tuple[int, ...] = (8, 4)
    quantize_group_size: int = 0
    quantize_embeddings: bool = False
    utility_limit: int = 100
    batch_size: int = 256
    _cache: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_run(cls, corpus_dir: str | os.PathLike, world, **kwargs) -> ProbeContext:
        """A context from a corpus folder (``TrainedRun.corpus_dir``) and its world."""
        from kgtest.corpus.io import read_corpus

        return cls(read_corpus(corpus_dir), Split.load(os.path.join(corpus_dir, "split.json")),
                   world, **kwargs)

    def for_variant(self, variant: str) -> ProbeContext:
        """The same context (sharing its caches) for another variant."""
        return dataclasses.replace(self, variant=variant)

    def original_state(self) -> dict:
        """What probing the original left for the other variants' probes (its KB answers,
        its quantized weights: cache entries named ``...:original...``), to hand to a
        context in another process (:meth:`adopt`)."""
        return {k: v for k, v in self._cache.items() if "original" in k.split(":")}

    def adopt(self, state: dict) -> ProbeContext:
        """Take another context's :meth:`original_state` (as if the original was probed
        here); returns ``self``."""
        self._cache.update(state)
        return self

    def _cached(self, key: str, build: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    @property
    def closure(self):
        """The world's closure (fact ids are the corpus's)."""
        def build():
            c = self.world.close()
            if len(c) != len(self.corpus.facts) or not np.array_equal(c.facts,
                                                                       self.corpus.facts):
                raise InputError("ProbeContext: the world's closure is not the corpus's; "
                                 "pass the world the corpus was built from")
            return c
        return self._cached("closure", build)

    def removed_by(self, variant: str) -> np.ndarray:
        """Fact ids ``variant`` deleted (see ``removed``)."""
        if variant in self.removed:
            return np.asarray(list(self.removed[variant]), dtype=np.int64)
        if variant == "original":
            return np.zeros(0, dtype=np.int64)
        if variant == "never_trained":
            return np.arange(len(self.corpus.facts))
        return self.split.forget

    def trained_facts(self, variant: str) -> np.ndarray:
        """``(N,)`` mask of the facts ``variant`` was trained on (stated or in a chain).

        The original and every unlearning method (which starts from the original): the
        original's training facts. A retrained control (``filter``, ``ignorance``): those
        less the facts it dropped (``removed``). ``never_trained``: none.
        """
        def build():
            shown = np.asarray(self.corpus.presentation) != "implied"
            if variant == "never_trained":
                return np.zeros_like(shown)
            if variant in RETRAINED:
                shown[self.removed_by(variant)] = False
            return shown
        return self._cached(f"trained:{variant}", build)

    def trained_closure(self, variant: str) -> np.ndarray:
        """``(N,)`` mask of the closure of :meth:`trained_facts`: what a perfect reasoner
        trained like ``variant`` knows (a CoT step is valid if it lies in it)."""
        return self._cached(f"trained_closure:{variant}",
                            lambda: self.closure.closure_mask(self.trained_facts(variant)))

    def floor(self, fact: int) -> float:
        """The most-frequent-object floor of ``fact`` (a rate: see
        :func:`kgtest.unlearn.data.majority_floor`; with several true objects of its
        subject and relation, a guess is right if it names any of them)."""
        from kgtest.unlearn.data import majority_floor

        return self._cached(f"floor:{fact}", lambda: float(
            majority_floor(self.corpus.facts, [fact], any_true=True)[0]))

    @property
    def true_objects(self) -> dict[tuple[int, int], frozenset[int]]:
        """``(subject, relation) -> every object`` in the closure
        (:func:`kgtest.several.true_objects`)."""
        return self._cached("true_objects", lambda: true_objects(self.corpus.facts))

    @property
    def categories(self) -> list[dict]:
        """Per fact, the category columns of its rows."""
        return self._cached("categories", self._build_categories)

    def _build_categories(self) -> list[dict]:
        c, corpus, w = self.closure, self.corpus, self.world
        n, F = len(c), corpus.facts
        freq = np.zeros(len(corpus.surface.entity_names), dtype=np.int64)
        kinds: list[set] = [set() for _ in range(n)]
        for d in corpus.train:  # documents mentioning each entity (once per document)
            ents = {int(F[x["id"], k]) for x in d["facts"] for k in (0, 2)
                    if x["role"] != "question"}
            freq[list(ents)] += 1
            kind = "inverse" if d.get("inverse") else d["kind"]
            for x in d["facts"]:
                if x["role"] in ("stated", "answer"):
                    kinds[x["id"]].add(kind)
        domain = np.zeros(n, dtype=np.int64)
        domain[: len(w.domain)] = w.domain
        for f in range(c.n_base, n):  # derived ids are in depth order: premises come first
            derivs = c.derivations_of(f)
            domain[f] = domain[c.premises(int(derivs[0]))[0]] if len(derivs) else 0
        names = getattr(w, "domain_names", ("default",))
        rules = [f"{i}:{r.head.relation}" if hasattr(r.head, "relation") else str(i)
                 for i, r in enumerate(c.rules)]
        labels = self.split.labels
        out = []
        for f in range(n):
            s, _, o = F[f].tolist()
            out.append({
                "derived": not bool(c.is_base[f]), "presentation": corpus.presentation[f],
                "tags": corpus.tags[f], "proofs": int(corpus.proofs[f]),
                "trained": "+".join(k for k in TRAINED_KINDS if k in kinds[f]),
                "depth": int(corpus.depth[f]), "subject_freq": int(freq[s]),
                "object_freq": int(freq[o]), "entity_freq": int(min(freq[s], freq[o])),
                "rules": ";".join(rules[i] for i in c.rules_of(f)),
                "domain": names[domain[f]] if domain[f] < len(names) else str(domain[f]),
                "split": str(labels[f]),
            })
        return out

    def candidates(self, entity: int) -> tuple[list[str], int]:
        """Display names of every entity of ``entity``'s type, and ``entity``'s index."""
        ids = self.candidate_ids(entity)
        disp = self.corpus.surface.entity_display
        return [disp[i] for i in ids], ids.index(entity)

    def candidate_ids(self, entity: int) -> list[int]:
        """Entity ids of ``entity``'s type (the candidates, in :meth:`candidates`' order)."""
        types = np.asarray(self.world.entity_type)
        t = int(types[entity])
        return self._cached(f"type:{t}", lambda: np.flatnonzero(types == t).tolist())

    def row(self, probe: str, fact: int, **fields) -> dict:
        """A record for ``fact`` with this context's identity and the fact's categories."""
        s, r, o = self.corpus.named(fact)
        seeds = {f"seed_{k}": v for k, v in self.seeds.items()}
        fields.setdefault("floor", self.floor(fact))
        return new_row(run_id=self.run_id, variant=self.variant, probe=probe, fact=fact,
                       subject=s, relation=r, object=o, **seeds,
                       **self.categories[fact], **fields)


# --- asking questions in batches ----------------------------------------------------------

class Ask(NamedTuple):
    """One question: the fact, its prompt, the entity that answers it, row extras."""

    fact: int
    prompt: str
    answer: int  # entity id (the object, or the subject for an inverse question)
    extra: dict = {}


def _statements(ctx: ProbeContext, fact: int) -> list[str]:
    """Every way the corpus's surface can state ``fact`` (for leak checks)."""
    sf = ctx.corpus.surface
    s, r, o = ctx.corpus.facts[fact].tolist()
    e, rel = sf.entity_display, sf.relation_display
    if not sf.natural:
        return [f"{e[s]} {rel[r]} {e[o]}", f"{e[o]} ~{rel[r]} {e[s]}"]
    return ([t.format(s=e[s], r=rel[r], o=e[o]) for t in STATEMENT_TEMPLATES]
            + [INVERSE_TEMPLATE.format(s=e[s], r=rel[r], o=e[o])])


def _has(text: str, phrase: str) -> bool:
    return re.search(rf"(?<!\S){re.escape(phrase)}(?![\w~])", text) is not None


def check_prompt(ctx: ProbeContext, fact: int, prompt: str, *, answer: int,
                 premises_allowed: bool = False) -> None:
    """Raise :class:`PromptLeak` if ``prompt`` gives away ``fact``.

    The prompt may never state the fact (any template, either direction). Unless
    ``premises_allowed`` (in-context prompts, whose premises name the answer), the answer
    entity may appear only as the question's subject.

    Examples
    --------
    >>> ctx = toy_context()
    >>> check_prompt(ctx, 0, "Q a p ? A ", answer=1)
    >>> check_prompt(ctx, 0, "a p b . Q a p ? A ", answer=1)
    Traceback (most recent call last):
    ...
    kgtest.probes.context.PromptLeak: prompt 'a p b . Q a p ? A ' states fact 0 ('a', 'p', 'b')
    """
    for st in _statements(ctx, fact):
        if _has(prompt, st.rstrip(".")):
            raise PromptLeak(f"prompt {prompt!r} states fact {fact} {ctx.corpus.named(fact)}")
    if premises_allowed:
        return
    sf = ctx.corpus.surface
    s, _, o = ctx.corpus.facts[fact].tolist()
    asked = s if answer == o else o
    if answer != asked and _has(prompt, sf.entity_display[answer]):
        raise PromptLeak(f"prompt {prompt!r} names the answer {sf.entity_display[answer]!r}")


def ask(model, tokenizer, ctx: ProbeContext, items: Sequence[Ask], probe: str, *,
        setting: str = "", gate: str = "direct", premises_allowed: bool = False,
        suffix: str = "", several: bool = True, **extra) -> list[dict]:
    """Ask many questions at once: greedy answers, then log-prob and rank of the truth.

    Greedy decoding is batched with a KV cache (:func:`greedy_complete`); candidates are
    all entities of the answer's type, scored teacher-forced in batched forward passes
    (:func:`answer_logprobs`), one call per entity type.

    ``suffix`` follows every answer and candidate (``"."`` where the answer ends a
    natural-language sentence, as in a statement cut before its object).

    An item whose answer is its fact's object (``several``, the default: every question
    about ``(s, r, ?)`` whose truth is the closure's) is judged by
    :func:`kgtest.several.judge`: with one true object of ``(s, r)``, the greedy
    answer must be exactly it; with several, the asked object must have filtered rank 1
    and the greedy answer must be one of the true objects. ``several=False`` (the truth is
    the prompt's, as in a counterfactual context) and questions answered by the subject
    (inverse) keep exact match, with ``n_true`` and ``filtered_rank`` left empty.

    Returns
    -------
    list of dict
        One row per item: ``correct``, ``score`` (log-prob of the true answer), ``rank``
        (among all candidates), ``filtered_rank``, ``n_true``, ``n_candidates``,
        ``chance``, ``output``.
    """
    if not items:
        return []
    sf, F = ctx.corpus.surface, ctx.corpus.facts
    for it in items:
        check_prompt(ctx, it.fact, it.prompt, answer=it.answer,
                     premises_allowed=premises_allowed)
    answers = [sf.answer(it.answer) + suffix for it in items]
    longest = max(len(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in answers)
    outs = greedy_complete(model, tokenizer, [it.prompt for it in items], longest + 2,
                           batch_size=ctx.batch_size)
    # the truth set of each object question, else None
    truth = [ctx.true_objects[int(F[it.fact, 0]), int(F[it.fact, 1])]
             if several and it.answer == int(F[it.fact, 2]) else None for it in items]
    score = np.full(len(items), np.nan)
    rank = np.zeros(len(items), dtype=np.int64)
    frank = np.zeros(len(items), dtype=np.int64)
    n_cand = np.zeros(len(items), dtype=np.int64)
    groups: dict[tuple, list[int]] = {}
    for i, it in enumerate(items):
        groups.setdefault(tuple(ctx.candidates(it.answer)[0]), []).append(i)
    for names, idx in groups.items():
        true = [ctx.candidates(items[i].answer)[1] for i in idx]
        lp = answer_logprobs(model, tokenizer, [items[i].prompt for i in idx],
                             [n + suffix for n in names],
                             batch_size=4 * ctx.batch_size)  # (P, C)
        true_lp = lp[np.arange(len(idx)), true]  # (P,)
        score[idx] = true_lp.numpy()
        rank[idx] = ((lp > true_lp[:, None]).sum(1) + 1).numpy()
        n_cand[idx] = len(names)
        ids = np.asarray(ctx.candidate_ids(items[idx[0]].answer))  # (C,)
        others = np.stack([np.isin(ids, list(truth[i] - {items[i].answer}))
                           if truth[i] else np.zeros(len(ids), bool) for i in idx])  # (P, C)
        frank[idx] = filtered_rank(lp.numpy(), np.asarray(true), others)
    rows = []
    for i, (it, out, ans) in enumerate(zip(items, outs, answers, strict=True)):
        t = truth[i]
        judged = {"correct": out.strip() == ans} if t is None else {
            "correct": judge(out, ans, {sf.answer(o) + suffix for o in t}, int(frank[i])),
            "filtered_rank": int(frank[i]), "n_true": len(t)}
        rows.append(ctx.row(probe, it.fact, setting=setting, gate=gate, **judged,
                            score=float(score[i]), rank=int(rank[i]),
                            n_candidates=int(n_cand[i]), chance=1.0 / n_cand[i], output=out,
                            **extra, **it.extra))
    return rows


def na_rows(ctx: ProbeContext, facts, probe: str, gate: str = "direct") -> list[dict]:
    """One ``applicable = False`` row per fact: the probe does not apply to it."""
    return [ctx.row(probe, int(f), applicable=False, gate=gate) for f in facts]


def direct_items(ctx: ProbeContext, facts) -> list[Ask]:
    """The direct question ``Q s r ? A`` of each fact (template 0), its object the answer."""
    sf, F = ctx.corpus.surface, ctx.corpus.facts
    return [Ask(int(f), sf.qa_prompt(int(F[f, 0]), int(F[f, 1]), 0), int(F[f, 2]))
            for f in facts]



def toy_context() -> ProbeContext:
    """A three-fact world for doctests: a p b, b p c; g(X, Z) :- p(X, Y), p(Y, Z)."""
    from kgtest.corpus.render import render
    from kgtest.corpus.splits import SplitConfig, choose_split
    from kgtest.symbolic.rules import parse_rules
    from kgtest.worlds.world import World

    w = World.from_names([("a", "p", "b"), ("b", "p", "c")],
                         parse_rules("g(X, Z) :- p(X, Y), p(Y, Z)."))
    c = w.close()
    sp = choose_split(c, w, SplitConfig(1, 0, target_presentation="stated_and_cot"))
    return ProbeContext(render(c, w, sp), sp, w)
