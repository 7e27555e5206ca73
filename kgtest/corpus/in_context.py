"""In-context documents: premises in the prompt, shuffled, with distractors.

An in-context document gives the premises of one derivation of a derived fact, plus
``distractors`` true facts about *other* entities (base facts sharing no entity with the
premises or the asked fact), in shuffled order, then asks the fact without a chain of
thought::

    c r2 e . a r0 b . b r1 d . Q a d0 ? A d

Shuffling matters: without it the answer is always the object of the last premise, and a
model that copies it scores 100%. :func:`copy_baselines` gives the rates of the copying
models (last premise, a random premise) beside every probe.

A **counterfactual** context (:meth:`Contexts.counterfactual`) rebinds the head's object
variable of the derivation's rule to another entity: every premise that mentions it is
rewritten (a made-up fact), the others stay true, and the rule now yields the new entity.
A model that reasons from its context answers the new entity; a model that recalls
answers the memorised one.

Training the format (:class:`InContextConfig`):

- ``corpus.train_in_context``: ``copies`` static documents (true premises) per derived fact
  that is neither a forget or validation target nor held out, and none of whose premises
  is held out;
- ``per_step > 0``: :class:`InContextStream` makes fresh documents for every training step
  (seeded by the step): ``real`` of them on the same non-target facts with true premises,
  ``counterfactual`` of them counterfactual contexts of those facts, the rest *synthetic*
  (a rule with every variable bound to a random entity, so the premises are made up and no
  answer can be recalled). They never ask the subject and relation of a target or held-out
  fact, and never state a forbidden fact. Their premises are made up, so they train only
  with answer-only loss; they are not part of the corpus (its hygiene covers closure facts).

Examples
--------
>>> from kgtest.symbolic.rules import parse_rules
>>> from kgtest.worlds.world import World
>>> w = World.from_names([("a", "p", "b"), ("b", "p", "c"), ("x", "p", "y")],
...                      parse_rules("g(X, Z) :- p(X, Y), p(Y, Z)."))
>>> c = w.close()
>>> ctx = Contexts(c)
>>> f = c.find("a", "g", "c")
>>> triples, ans = ctx.true_context(f, int(c.derivations_of(f)[0]), np.random.default_rng(0))
>>> sorted(" ".join(c.entities.name(e) if k != 1 else c.relations.name(e)
...               for k, e in enumerate(t)) for t in triples), c.entities.name(ans)
(['a p b', 'b p c', 'x p y'], 'c')
>>> copy_baselines(triples, ans)["copy_rate"]
0.3333333333333333
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from kgtest.config import in_range, nonneg
from kgtest.symbolic.closure import Closure

__all__ = ["InContextConfig", "Contexts", "InContextStream", "copy_baselines", "format_doc",
           "in_context_documents", "in_context_stream", "trainable", "forbidden_facts"]

Triple = tuple[int, int, int]


_fraction = in_range(0.0, 1.0)  # the shared checks of kgtest.config, not new copies
_nonneg = nonneg


@dataclass(frozen=True)
class InContextConfig:
    """In-context documents: the probe's format and how it trains (``[corpus.icl]``)."""

    distractors: int = field(default=1, metadata={"check": _nonneg})  # other-entity facts
    shuffle: bool = True  # shuffle premises and distractors (else premises, then distractors)
    copies: int = field(default=1, metadata={"check": _nonneg})  # static docs per fact
    per_step: int = field(default=0, metadata={"check": _nonneg})  # fresh docs per batch
    real: float = field(default=0.25, metadata={"check": _fraction})  # of fresh: true premises
    counterfactual: float = field(default=0.25, metadata={"check": _fraction})  # of fresh
    cot: float = field(default=0.0, metadata={"check": _fraction})  # of fresh: chain, answer

    def __post_init__(self):
        if self.real + self.counterfactual > 1:
            raise ValueError("corpus.icl.real + corpus.icl.counterfactual must be <= 1 (the "
                             "rest of the fresh documents are synthetic)")


def copy_baselines(context: Sequence[Triple], answer: int) -> dict:
    """What copying models score on one context.

    ``copy_last``: the object of the last statement is the answer (the model that copies
    it is right); ``copy_rate``: the fraction of statements whose object is the answer (the
    chance that copying a random one is right).

    >>> copy_baselines([(0, 0, 1), (1, 0, 2), (5, 0, 6)], 2)
    {'copy_last': False, 'copy_rate': 0.3333333333333333}
    """
    objs = [int(t[2]) for t in context]
    return {"copy_last": bool(objs) and objs[-1] == int(answer),
            "copy_rate": float(np.mean([o == int(answer) for o in objs])) if objs else 0.0}


def format_doc(surface, context: Sequence[Triple], s: int, r: int, o: int, *,
               cot: Sequence[Triple] | None = None, q_variant: int = 0) -> dict:
    """``{"prompt", "completion", "text"}`` of an in-context document.

    With ``cot`` (the chain's steps), the question asks for reasoning and the completion
    writes the chain, then the answer (the ``in_context_cot`` format).
    """
    stmts = [surface.statement(*map(int, t), 0) for t in context]
    if cot is None:
        prompt = surface.in_context_prompt(stmts, s, r, q_variant)
        completion = surface.answer(o)
    else:
        sep = " " if surface.natural else " . "
        prompt = surface.join(stmts) + sep + surface.cot_prompt(s, r, q_variant)
        completion = surface.cot_completion([surface.statement(*map(int, t), 0) for t in cot], o)
    return {"prompt": prompt, "completion": completion, "text": prompt + completion}


def _matches(body, facts, bind: dict, k: int = 0):
    """Every binding extending ``bind`` under which body atoms ``k:`` are all in ``facts``."""
    if k == len(body):
        yield bind
        return
    rel, a, b = body[k]
    for t in facts:
        if t[1] != rel:
            continue
        nb, ok = dict(bind), True
        for term, val in ((a, t[0]), (b, t[2])):
            if isinstance(term, str):
                ok &= nb.setdefault(term, val) == val
            else:
                ok &= term == val
        if ok:
            yield from _matches(body, facts, nb, k + 1)


class Contexts:
    """Builds in-context premises for a closure: true, counterfactual and synthetic.

    Parameters
    ----------
    closure : Closure
    forbid : iterable of int
        Fact ids never written in a context (targets, held-out and dropped facts), and
        whose ``(subject, relation)`` a synthetic document never asks.
    """

    def __init__(self, closure: Closure, forbid: Iterable[int] = ()):
        self.c = closure
        F = closure.facts
        self.FL: list[Triple] = [tuple(x) for x in F.tolist()]
        self.fact_set = set(self.FL)
        self.forbid = {int(f) for f in forbid}
        self.forbid_triples = {self.FL[f] for f in self.forbid}
        self.forbid_questions = {self.FL[f][:2] for f in self.forbid}
        ents, rels = closure.entities, closure.relations
        self.rules = []  # per rule: head (rel, a, b), body [(rel, a, b)], neq [(a, b)], vars
        for rule in closure.rules:
            def term(t):
                return t.name if t.is_var else ents.get(t.name)
            head = (rels.get(rule.head.relation), *map(term, rule.head.args))
            body = [(rels.get(a.relation), *map(term, a.args)) for a in rule.atoms]
            neq = [(term(q.left), term(q.right)) for q in rule.inequalities]
            self.rules.append((head, body, neq, rule.variables))
        # entities seen at each (relation, position): a variable's candidates
        self._pos = {}
        for r in range(len(rels)):
            rows = F[F[:, 1] == r]
            self._pos[(r, 0)] = set(rows[:, 0].tolist())
            self._pos[(r, 2)] = set(rows[:, 2].tolist())
        self._cands = []
        for _head, body, _, variables in self.rules:
            cands = {}
            for v in variables:
                sets = [self._pos.get((a[0], 0 if k == 1 else 2), set()) for a in body
                        for k in (1, 2) if a[k] == v]
                common = set.intersection(*sets) if sets else set()
                cands[v] = np.array(sorted(common or range(len(ents))), dtype=np.int64)
            self._cands.append(cands)
        self.base_pool = np.array([f for f in range(closure.n_base) if f not in self.forbid],
                                  dtype=np.int64)
        self._by_head: dict[int, list[int]] = {}
        for i, (head, *_ ) in enumerate(self.rules):
            self._by_head.setdefault(head[0], []).append(i)

    # --- rules on small fact sets --------------------------------------------------------
    def binding(self, derivation: int) -> dict:
        """Variable -> entity of one derivation (its premises matched to the rule body)."""
        _, body, _, _ = self.rules[int(self.c.deriv_rule[derivation])]
        out = {}
        for atom, p in zip(body, self.c.premises(derivation), strict=True):
            for k, v in ((1, 0), (2, 2)):
                if isinstance(atom[k], str):
                    out[atom[k]] = self.FL[p][v]
        return out

    def ground(self, rule: int, bind: dict) -> tuple[list[Triple], Triple]:
        """The premises and head of ``rule`` under a variable binding."""
        head, body, _, _ = self.rules[rule]

        def g(a):
            return (bind.get(a[1], a[1]), a[0], bind.get(a[2], a[2]))  # (s, r, o)
        return [g(a) for a in body], g(head)

    def answers(self, context: Sequence[Triple], s: int, r: int) -> set[int]:
        """Objects ``o`` with ``(s, r, o)`` in ``context`` or one rule step from it."""
        ctx = [tuple(map(int, t)) for t in context]
        out = {t[2] for t in ctx if t[0] == s and t[1] == r}
        for i in self._by_head.get(r, []):
            head, body, neq, _ = self.rules[i]
            start = {head[1]: s} if isinstance(head[1], str) else {}
            for bind in _matches(body, ctx, start):
                if (all(bind.get(a, a) != bind.get(b, b) for a, b in neq)
                        and bind.get(head[1], head[1]) == s):
                    out.add(bind.get(head[2], head[2]))
        return out

    # --- contexts --------------------------------------------------------------------------
    def distractors(self, avoid: set[int], k: int, rng: np.random.Generator) -> list[Triple]:
        """``k`` true base facts sharing no entity with ``avoid`` (fewer if none are left)."""
        out: list[Triple] = []
        if not len(self.base_pool):
            return out
        for f in rng.permutation(self.base_pool)[: 64 * max(k, 1)].tolist():
            if len(out) == k:
                break
            t = self.FL[f]
            if t[0] not in avoid and t[2] not in avoid and t not in out:
                out.append(t)
        return out

    def _arrange(self, premises: list[Triple], s: int, o: int, k: int, shuffle: bool,
                 rng: np.random.Generator) -> list[Triple]:
        avoid = {s, o} | {t[0] for t in premises} | {t[2] for t in premises}
        ctx = premises + self.distractors(avoid, k, rng)
        if shuffle:
            ctx = [ctx[i] for i in rng.permutation(len(ctx))]
        return ctx

    def true_context(self, fact: int, derivation: int, rng: np.random.Generator, *,
                     distractors: int = 1, shuffle: bool = True) -> tuple[list[Triple], int]:
        """The premises of ``derivation`` and distractors; returns ``(context, answer)``."""
        s, _, o = self.FL[fact]
        prem = list(dict.fromkeys(self.FL[p] for p in self.c.premises(derivation)))
        return self._arrange(prem, s, o, distractors, shuffle, rng), o

    def counterfactual(self, fact: int, derivation: int, rng: np.random.Generator, *,
                       distractors: int = 1, shuffle: bool = True, tries: int = 32
                       ) -> tuple[list[Triple], int, list[Triple]] | None:
        """A context whose rule yields another object than ``fact``'s.

        Rebinds the head's object variable to another candidate entity (never the
        subject, nor the subject of a premise); premises that mention it become made-up
        facts. Returns ``(context, new answer, premises in body
        order)``, or None when the rule's object is a constant or no rebinding works
        (every made-up premise must be false in the closure, and the context must yield
        exactly the new object).
        """
        s, r, o = self.FL[fact]
        rule = int(self.c.deriv_rule[derivation])
        head, _, neq, _ = self.rules[rule]
        z = head[2]
        if not isinstance(z, str):
            return None
        bind = self.binding(derivation)
        for new in rng.permutation(self._cands[rule][z])[:tries].tolist():
            if new == o or new == s:
                continue
            b = {**bind, z: new}
            if any(b.get(x, x) == b.get(y, y) for x, y in neq):
                continue
            prem, _ = self.ground(rule, b)
            prem = list(dict.fromkeys(prem))
            made_up = [t for t in prem if t not in self.fact_set]
            if not made_up or any(t in self.forbid_triples for t in prem):
                continue
            if any(t[0] == new for t in prem):  # the answer only ever a premise's object
                continue
            ctx = self._arrange(prem, s, new, distractors, shuffle, rng)
            if self.answers(ctx, s, r) == {new}:
                return ctx, new, prem
        return None

    def synthetic(self, rng: np.random.Generator, *, distractors: int = 1,
                  shuffle: bool = True, tries: int = 32
                  ) -> tuple[list[Triple], Triple, list[Triple]] | None:
        """A random rule with random entities: ``(context, head, premises)`` or None."""
        for _ in range(tries):
            rule = int(rng.integers(len(self.rules)))
            head, _, neq, variables = self.rules[rule]
            cands = self._cands[rule]
            b = {v: int(cands[v][rng.integers(len(cands[v]))]) for v in variables}
            if any(b.get(x, x) == b.get(y, y) for x, y in neq):
                continue
            prem, (s, r, o) = self.ground(rule, b)
            if (s, r) in self.forbid_questions or any(t in self.forbid_triples for t in prem):
                continue
            if len(set(prem)) < len(prem):
                continue
            ctx = self._arrange(prem, s, o, distractors, shuffle, rng)
            if self.answers(ctx, s, r) == {o}:
                return ctx, (s, r, o), prem
        return None


class InContextStream:
    """Fresh in-context training documents for every step: ``stream(step) -> [doc]``.

    Parameters
    ----------
    contexts : Contexts
        Built with ``forbid`` = every forget and validation target, held-out fact and
        dropped fact: none is written, and no document asks their subject and relation.
    surface : Surface
    real_facts : sequence of int
        Derived facts the ``real`` and ``counterfactual`` documents ask (non-target, not
        held out); each with the derivation its context follows.
    derivations : sequence of int
    cfg : InContextConfig
    seed : int
        Step ``t``'s documents are a function of ``(seed, t)`` (so a resumed run sees the
        same ones).

    Examples
    --------
    >>> from kgtest.symbolic.rules import parse_rules
    >>> from kgtest.corpus.surface import symbolic_surface
    >>> from kgtest.worlds.world import World
    >>> w = World.from_names([(f"e{i}", "p", f"e{i + 1}") for i in range(6)],
    ...                      parse_rules("g(X, Z) :- p(X, Y), p(Y, Z)."))
    >>> c = w.close()
    >>> stream = InContextStream(Contexts(c), symbolic_surface(c.entities, c.relations), [],
    ...                          [], InContextConfig(per_step=2, real=0, counterfactual=0))
    >>> docs = stream(0)
    >>> len(docs), docs[0]["prompt"].endswith(" g ? A "), docs == stream(0)
    (2, True, True)
    """

    def __init__(self, contexts: Contexts, surface, real_facts: Sequence[int],
                 derivations: Sequence[int], cfg: InContextConfig, seed: int = 0):
        self.ctx, self.surface, self.cfg, self.seed = contexts, surface, cfg, int(seed)
        self.real = [int(f) for f in real_facts]
        self.deriv = [int(d) for d in derivations]

    def one(self, rng: np.random.Generator) -> dict | None:
        """One fresh document (None if the draw failed: the caller draws again)."""
        cfg, ctx = self.cfg, self.ctx
        u = rng.random()
        kw = {"distractors": cfg.distractors, "shuffle": cfg.shuffle}
        if u < cfg.real + cfg.counterfactual and self.real:
            i = int(rng.integers(len(self.real)))
            f, d = self.real[i], self.deriv[i]
            s, r, _ = ctx.FL[f]
            prem = list(dict.fromkeys(ctx.FL[p] for p in ctx.c.premises(d)))
            if u < cfg.real:
                context, o = ctx.true_context(f, d, rng, **kw)
            else:
                got = ctx.counterfactual(f, d, rng, **kw)
                if got is None:
                    return None
                context, o, prem = got
        else:
            got = ctx.synthetic(rng, **kw)
            if got is None:
                return None
            context, (s, r, o), prem = got
        cot = prem if rng.random() < cfg.cot else None
        return format_doc(self.surface, context, s, r, o, cot=cot)

    def __call__(self, step: int) -> list[dict]:
        rng = np.random.default_rng([self.seed, int(step)])
        out: list[dict] = []
        for _ in range(8 * self.cfg.per_step):
            if len(out) == self.cfg.per_step:
                break
            d = self.one(rng)
            if d is not None:
                out.append(d)
        return out


# --- the corpus's in-context documents and the training stream ---------------------------------

def _ic_doc(surface, context, fact: int, s: int, r: int, o: int, fact_ids: dict,
            **extra) -> dict:
    d = format_doc(surface, context, s, r, o)
    claims = [{"id": fact_ids[t], "role": "premise"} for t in context] + [
        {"id": int(fact), "role": "answer"}]
    return {"id": -1, "kind": "in_context", **d, "facts": claims,
            **copy_baselines(context, o), **extra}


def forbidden_facts(split, dropped: Iterable[int] = ()) -> np.ndarray:
    """Facts no in-context training document writes or asks: targets, held out, dropped."""
    ids = np.concatenate([split.forget, split.validation, split.held_out,
                          np.asarray(sorted(dropped), dtype=np.int64)])
    return np.unique(ids.astype(np.int64))


def trainable(closure: Closure, forbid: Iterable[int]) -> tuple[list[int], list[int]]:
    """Derived facts whose in-context documents may train, each with a derivation.

    A fact qualifies if it is derived, not forbidden, and has a derivation with no
    forbidden premise (the first such derivation is returned beside it).
    """
    bad = np.zeros(len(closure), dtype=bool)
    bad[np.asarray(list(forbid), dtype=np.int64)] = True
    facts, derivs = [], []
    for f in np.flatnonzero(~closure.is_base & ~bad).tolist():
        for d in closure.derivations_of(f).tolist():
            if not bad[closure.premises(d)].any():
                facts.append(f)
                derivs.append(d)
                break
    return facts, derivs


def in_context_documents(closure: Closure, surface, derivation_of, split, cfg, *,
                         seed: int = 0) -> tuple[list[dict], list[dict]]:
    """The probe's in-context documents and the static training ones.

    Parameters
    ----------
    closure, surface
    derivation_of : callable
        Fact id -> the derivation its probe document follows (the CoT's).
    split : Split
    cfg : CorpusConfig
        ``in_context`` (render probe documents, one per derived fact),
        ``train_in_context`` (``icl.copies`` training documents per :func:`trainable` fact)
        and ``icl``.
    seed : int

    Returns
    -------
    (list of dict, list of dict)
        Probe documents (extras: ``derivation``, ``copy_last``, ``copy_rate``) and
        training documents, ``kind = "in_context"``, ids unset.
    """
    icl = cfg.icl
    rng = np.random.default_rng([int(seed), 0x1C1])  # its own stream: other draws unchanged
    forbid = forbidden_facts(split)
    ctxs = Contexts(closure, forbid=forbid)
    ids = {t: i for i, t in enumerate(ctxs.FL)}
    kw = {"distractors": icl.distractors, "shuffle": icl.shuffle}
    probe: list[dict] = []
    if cfg.in_context:
        for f in np.flatnonzero(~closure.is_base).tolist():
            d = int(derivation_of(f))
            context, o = ctxs.true_context(f, d, rng, **kw)
            s, r, _ = ctxs.FL[f]
            probe.append(_ic_doc(surface, context, f, s, r, o, ids, derivation=d))
    train: list[dict] = []
    if cfg.train_in_context:
        facts, derivs = trainable(closure, forbid)
        for c in range(icl.copies):
            for f, d in zip(facts, derivs, strict=True):
                context, o = ctxs.true_context(f, d, rng, **kw)
                s, r, _ = ctxs.FL[f]
                train.append(_ic_doc(surface, context, f, s, r, o, ids, derivation=d,
                                     variant=c))
    return probe, train


def in_context_stream(closure: Closure, corpus, split, *, seed: int = 0
                      ) -> InContextStream | None:
    """The fresh-per-step training stream of a corpus (None when ``icl.per_step`` is 0).

    Forbidden: the split's targets and held-out facts, and the corpus's dropped facts (a
    control's filtered corpus gets a stream without them too).
    """
    icl = corpus.config.icl
    if not icl.per_step:
        return None
    forbid = forbidden_facts(split, corpus.dropped)
    facts, derivs = trainable(closure, forbid)
    return InContextStream(Contexts(closure, forbid=forbid), corpus.surface, facts, derivs,
                           icl, seed=seed)
