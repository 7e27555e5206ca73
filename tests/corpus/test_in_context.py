"""In-context documents: shuffled premises with distractors, counterfactuals, the stream."""

from __future__ import annotations

import numpy as np
import pytest

from kgtest.corpus.in_context import (
    Contexts,
    InContextConfig,
    forbidden_facts,
    in_context_stream,
    trainable,
)
from kgtest.corpus.render import CorpusConfig, check_hygiene, render
from kgtest.corpus.splits import SplitConfig, choose_split
from kgtest.experiment import load_experiment
from kgtest.symbolic.rules import parse_rules
from kgtest.worlds.samplers import sample_world
from kgtest.worlds.world import World


@pytest.fixture(scope="module")
def quick():
    """The quickstart world (40 entities, two-hop compositions), rendered."""
    cfg = load_experiment("experiments/quickstart.toml")
    w = sample_world(cfg.world, seed=3)
    c = w.close()
    sp = choose_split(c, w, cfg.split, seed=0)
    corpus = render(c, w, sp, CorpusConfig(derived="both", train_in_context=True,
                                           icl=InContextConfig(copies=2, per_step=32)), seed=0)
    return c, sp, corpus


def _statements(corpus, doc):
    return [m[3] for m in corpus.parse(doc) if m[1] == "premise"]


def _only_object_of_a_premise(context, s, answer, *, loops: bool = False) -> bool:
    """The hygiene rule: the answer appears in the prompt only as a premise's object.

    With ``loops``, a world's own cycles are allowed: a true derivation whose bridge or
    subject is the answer itself (``a r1 c . c r0 c``) cannot be written otherwise.
    """
    if loops and (s == answer or any(t[0] == t[2] == answer for t in context)):
        return any(t[2] == answer for t in context)
    return (s != answer and any(t[2] == answer for t in context)
            and all(t[0] != answer for t in context))


def test_probe_documents_are_shuffled_with_a_distractor(quick):
    c, _, corpus = quick
    base = {tuple(x) for x in c.facts[: c.n_base].tolist()}
    last = []
    for d in corpus.in_context:
        f = d["facts"][-1]["id"]
        s, r, o = c.facts[f].tolist()
        context = _statements(corpus, d)
        prem = {tuple(x) for x in c.facts[c.premises(d["derivation"])].tolist()}
        extra = [t for t in context if t not in prem]
        assert len(context) == len(prem) + 1 and len(extra) == 1  # one distractor
        assert extra[0] in base  # a true fact...
        ents = {e for t in prem for e in (t[0], t[2])}
        assert not {extra[0][0], extra[0][2]} & ents  # ...about other entities
        assert (s, r, o) not in context  # the prompt never states its fact
        assert _only_object_of_a_premise(context, s, o, loops=True)
        assert d["copy_last"] == (context[-1][2] == o)
        last.append(context[-1][2] == o)
    # shuffled: the last statement is the answer's premise about a third of the time
    # (2 premises + 1 distractor), never always (unshuffled, it would be every time)
    assert 0.2 < np.mean(last) < 0.5, np.mean(last)


def test_unshuffled_documents_put_the_answer_last(quick):
    c, sp, _ = quick
    w = sample_world(load_experiment("experiments/quickstart.toml").world, seed=3)
    corpus = render(c, w, sp, CorpusConfig(icl=InContextConfig(shuffle=False, distractors=0)))
    assert all(d["copy_last"] for d in corpus.in_context)


def test_training_documents_avoid_targets_and_held_out_facts(quick):
    c, sp, corpus = quick
    bad = set(forbidden_facts(sp).tolist())
    train = [d for d in corpus.train if d["kind"] == "in_context"]
    facts, _ = trainable(c, bad)
    assert len(train) == 2 * len(facts) > 0
    for d in train:
        assert bad.isdisjoint(x["id"] for x in d["facts"]), d["text"]
    assert check_hygiene(corpus, sp) == len(corpus.train)


def test_counterfactual_contexts_imply_another_object(quick):
    c, sp, corpus = quick
    cx = Contexts(c, forbid=forbidden_facts(sp))
    facts = {tuple(x) for x in c.facts.tolist()}
    asked = sp.forget.tolist() + sp.held_out.tolist()
    made = 0
    for f in asked:
        s, r, o = c.facts[f].tolist()
        got = cx.counterfactual(f, int(c.derivations_of(f)[0]), np.random.default_rng(f))
        if got is None:
            continue
        made += 1
        context, new, prem = got
        assert new != o and cx.answers(context, s, r) == {new}
        assert any(t not in facts for t in prem)  # a made-up premise...
        assert any(t in facts for t in prem)  # ...beside a true one (two-hop rules)
        assert (s, r, o) not in context and (s, r, new) not in context
        assert _only_object_of_a_premise(context, s, new)
    assert made == len(asked)


def test_stream_is_fresh_deterministic_and_never_touches_targets(quick):
    c, sp, corpus = quick
    stream = in_context_stream(c, corpus, sp, seed=5)
    assert stream(3) == stream(3) and stream(3) != stream(4)
    bad = forbidden_facts(sp).tolist()
    questions = {tuple(c.facts[f, :2].tolist()) for f in bad}
    sf = corpus.surface
    ent = {n: i for i, n in enumerate(sf.entity_display)}
    rel = {n: i for i, n in enumerate(sf.relation_display)}
    cx = Contexts(c)
    texts = set()
    for step in range(20):
        for d in stream(step):
            assert d["prompt"] + d["completion"] == d["text"]
            toks = d["prompt"].split()
            q = toks.index("Q")
            context = [(ent[toks[i]], rel[toks[i + 1]], ent[toks[i + 2]])
                       for i in range(0, q, 4)]
            s, r = ent[toks[q + 1]], rel[toks[q + 2]]
            assert (s, r) not in questions
            assert not {tuple(c.facts[f].tolist()) for f in bad} & set(context)
            assert cx.answers(context, s, r) == {ent[d["completion"]]}
            texts.add(d["text"])
    assert len(texts) > 0.95 * 20 * 32  # fresh: (almost) never the same document twice


def test_stream_follows_the_config(quick):
    c, sp, corpus = quick
    assert in_context_stream(c, render(c, *_w_sp(quick)), sp) is None  # per_step = 0
    from dataclasses import replace
    cot = replace(corpus, config=replace(corpus.config, icl=InContextConfig(per_step=8, cot=1)))
    docs = in_context_stream(c, cot, sp)(0)
    assert len(docs) == 8 and all(" T " in d["prompt"] and d["completion"].count(" . ") >= 1
                                  for d in docs)


def _w_sp(quick):
    w = sample_world(load_experiment("experiments/quickstart.toml").world, seed=3)
    return w, quick[1]


def test_rules_with_constants_and_inequalities():
    w = World.from_names([("a", "parent", "b"), ("a", "gender", "male"), ("c", "parent", "b"),
                          ("c", "gender", "female"), ("d", "parent", "e")],
                         parse_rules("father(X, Y) :- parent(X, Y), gender(X, male).\n"
                                     "cop(X, Y) :- parent(X, Z), parent(Y, Z), X != Y."))
    c = w.close()
    cx = Contexts(c)
    f = c.find("a", "father", "b")
    context, o = cx.true_context(f, int(c.derivations_of(f)[0]), np.random.default_rng(0))
    assert cx.answers(context, *c.facts[f, :2].tolist()) == {o}
    got = cx.counterfactual(f, int(c.derivations_of(f)[0]), np.random.default_rng(0))
    assert got is not None and got[1] != o
    assert cx.answers([(0, c.relations.id("parent"), 1)], 0,
                      c.relations.id("cop")) == set()  # X != Y: no self-cousin
    split = choose_split(c, w, SplitConfig(n_forget=0, n_validation=0))
    assert check_hygiene(render(c, w, split, CorpusConfig(train_in_context=True)), split)


def test_train_adds_the_fresh_documents_of_each_step(tmp_path):
    import torch

    from kgtest.corpus.tokenizer import build_tokenizer
    from kgtest.model import ModelConfig, build_model
    from kgtest.train import TrainConfig, train

    docs = [{"prompt": "Q a r ? A ", "completion": "b"}]
    fresh = {0: [{"prompt": "a r c . Q a r ? A ", "completion": "c"}], 1: []}
    tok = build_tokenizer(["Q a r ? A b", "a r c . Q a r ? A c"])
    cfg = TrainConfig(steps=2, warmup=0, progress=False, tensorboard=False,
                      checkpoint_every=0, device="cpu")
    seen = []

    def extra(step):
        seen.append(step)
        return fresh[step]

    runs = []
    for i, ex in enumerate((extra, None)):
        torch.manual_seed(0)
        model = build_model(ModelConfig(preset="tiny"), tok, seed=0)
        runs.append(train(model, tok, docs, cfg, tmp_path / str(i), extra=ex))
    assert seen == [0, 1]
    # step 0 also trained the fresh document: [bos] + 10 words + [eos]
    assert runs[0].tokens == runs[1].tokens + 12
