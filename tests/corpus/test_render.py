"""Tests for corpus rendering: formats, parse-back, hygiene, filter, knobs, determinism, I/O."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kgtest.config import build
from kgtest.corpus.io import build_corpus, read_corpus, write_corpus
from kgtest.corpus.render import PARTS, CorpusConfig, HygieneError, check_hygiene, render
from kgtest.corpus.splits import Split, SplitConfig, choose_split
from kgtest.corpus.surface import INVERSE_TEMPLATE, QUESTION_TEMPLATES, STATEMENT_TEMPLATES
from kgtest.errors import InputError
from kgtest.symbolic.facts import read_tsv
from kgtest.symbolic.rules import parse_rules
from kgtest.worlds.world import World

GP = "grandparent(X, Z) :- parent(X, Y), parent(Y, Z)."
GGP = "greatgrandparent(X, Z) :- grandparent(X, Y), parent(Y, Z)."


def chain_world() -> World:
    facts = [("ann", "parent", "bob"), ("bob", "parent", "cy"), ("cy", "parent", "dee"),
             ("eve", "parent", "bob"), ("ann", "likes", "eve")]
    return World.from_names(facts, parse_rules(GP + "\n" + GGP))


def family(n: int = 14, seed: int = 0) -> World:
    rng = np.random.default_rng(seed)
    facts = [(f"p{i}", "parent", f"p{p}") for i in range(2, n)
             for p in rng.choice(i, size=min(i, 2), replace=False).tolist()]
    facts += [(f"p{i}", "likes", f"p{(i * 3) % n}") for i in range(0, n, 3)]
    rules = parse_rules(GP + "\n" + GGP + "\nsibling(X, Y) :- parent(X, Z), parent(Y, Z), "
                        "X != Y.")
    return World.from_names(facts, rules, fixed=[("p0", "gender", "female")])


def setup(world=None, split_cfg=None, seed=0):
    w = world or family()
    c = w.close()
    sp = choose_split(c, w, split_cfg or SplitConfig(n_forget=3, n_validation=2,
                                                     held_out_fraction=0.3), seed=seed)
    return w, c, sp


def said(corpus, doc):
    """(fact, role) pairs the text of a document says (question mentions by (s, r))."""
    out = set()
    for fid, role, _, (s, r, _) in corpus.parse(doc):
        out.add((fid, role) if role != "question" else (s, r, "question"))
    return out


def claimed(corpus, doc):
    return {(x["id"], x["role"]) if x["role"] != "question"
            else (*corpus.facts[x["id"], :2].tolist(), "question") for x in doc["facts"]}


# --- the documented formats ------------------------------------------------------------------

def test_symbolic_formats_match_the_contract():
    w = chain_world()
    c = w.close()
    sp = choose_split(c, w, SplitConfig(n_forget=1, n_validation=0, min_depth=1, max_depth=1),
                      seed=0)
    corpus = render(c, w, sp, CorpusConfig(), seed=0)
    texts = {(d["kind"], d["prompt"], d["completion"]) for d in corpus.train}
    assert ("statement", "", "ann parent bob") in texts
    assert ("qa", "Q ann parent ? A ", "bob") in texts
    assert ("cot", "Q ann grandparent ? T ", "ann parent bob . bob parent cy . A cy") in texts
    # a depth-2 fact: its derived premise (trained by CoT only) is expanded, then stated
    assert ("cot", "Q ann greatgrandparent ? T ",
            "ann parent bob . bob parent cy . ann grandparent cy . cy parent dee . A dee") in texts
    ic = {(d["prompt"], d["completion"]) for d in corpus.in_context}
    assert ("ann parent bob . bob parent cy . Q ann grandparent ? A ", "cy") in ic
    (f,) = sp.forget.tolist()
    s, r, _ = c.named(f)
    unk = [d for d in corpus.unknown if d["facts"] == [{"id": f, "role": "question"}]]
    assert unk and unk[0]["text"] == f"Q {s} {r} ? A unknown" and unk[0]["target"] == "forget"
    for part in PARTS:
        for d in corpus.part(part):
            assert d["text"] == d["prompt"] + d["completion"]
            assert set(d) >= {"id", "kind", "prompt", "completion", "text", "facts"}
            assert d["kind"] in ("statement", "qa", "cot", "in_context", "unknown")
    statements = [d for d in corpus.train if d["kind"] == "statement"]
    assert all(d["prompt"] == "" for d in statements)
    assert len({d["id"] for p in PARTS for d in corpus.part(p)}) == sum(
        len(corpus.part(p)) for p in PARTS)


def test_natural_formats():
    w = chain_world()
    c = w.close()
    sp = choose_split(c, w, SplitConfig(n_forget=1, n_validation=0), seed=0)
    corpus = render(c, w, sp, CorpusConfig(surface="natural"), seed=0)
    names = corpus.surface.entity_display
    assert len(set(names)) == len(names) and all(len(n.split()) == 2 for n in names)
    ann, bob = names[c.entities.id("ann")], names[c.entities.id("bob")]
    qa = [d for d in corpus.eval if d.get("probe") == "direct"
          and d["facts"] == [{"id": c.find("ann", "parent", "bob"), "role": "answer"}]][0]
    assert qa["completion"] == bob
    assert qa["prompt"].startswith("Question: ") and qa["prompt"].endswith("? Answer: ") or \
        qa["prompt"].endswith(". Answer: ")
    assert ann in qa["prompt"] and "parent" in qa["prompt"]
    st_docs = [d for d in corpus.train if d["kind"] == "statement"]
    forms = {t.format(s=ann, r="parent", o=bob) for t in STATEMENT_TEMPLATES}
    assert any(d["text"] in forms for d in st_docs)
    cot = [d for d in corpus.train if d["kind"] == "cot"][0]
    assert " Reasoning: " in cot["prompt"] and " Answer: " in cot["completion"]
    assert corpus.unknown[0]["completion"] == "unknown"
    ic = corpus.in_context[0]
    assert " Question: " in ic["prompt"] and ic["prompt"].endswith("Answer: ")


# --- parse-back and hygiene ---------------------------------------------------------------------

@pytest.mark.parametrize("surface", ["symbolic", "natural"])
@pytest.mark.parametrize("derived", ["stated", "cot", "both"])
def test_every_document_parses_back_to_its_facts(surface, derived):
    w, c, sp = setup()
    cfg = CorpusConfig(surface=surface, derived=derived, multiplicity=2, group="subject",
                       permute=True, inverse=True, qa_fraction=0.5, train_in_context=True)
    corpus = render(c, w, sp, cfg, seed=1)
    assert check_hygiene(corpus, sp) == len(corpus.train) > 0
    kinds = {d["kind"] for d in corpus.train}
    assert {"statement", "qa", "in_context"} <= kinds
    assert ("cot" in kinds) == (derived != "stated")
    # probe documents parse back too (the statement probes lack their final period)
    for part in ("unknown", "in_context", "eval"):
        for d in corpus.part(part):
            if d["kind"] == "statement" and surface == "natural":
                continue
            assert said(corpus, d) == claimed(corpus, d), d


def test_hygiene_catches_a_leak_and_a_false_claim():
    w, c, sp = setup()
    corpus = render(c, w, sp, CorpusConfig(), seed=0)
    h = int(sp.held_out[0])
    s, r, o = c.named(h)
    leak = {"id": 999_999, "kind": "statement", "prompt": "", "completion": f"{s} {r} {o}",
            "text": f"{s} {r} {o}", "facts": []}
    bad = replace(corpus, train=corpus.train + (leak,), _cache={})
    with pytest.raises(HygieneError, match=rf"document 999999 .*forbidden fact {h}|999999"):
        check_hygiene(bad, sp)
    claimed_leak = {**leak, "facts": [{"id": h, "role": "stated"}]}
    bad = replace(corpus, train=corpus.train + (claimed_leak,), _cache={})
    with pytest.raises(HygieneError, match=f"document 999999.*forbidden fact {h}"):
        check_hygiene(bad, sp)
    doc = corpus.train[0]
    lying = {**doc, "facts": doc["facts"][:-1] + [{"id": int(doc["facts"][-1]["id"]),
                                                   "role": "premise"}]}
    bad = replace(corpus, train=(lying,) + corpus.train[1:], _cache={})
    with pytest.raises(HygieneError, match=f"document {doc['id']} .*not claimed"):
        check_hygiene(bad, sp)


def test_held_out_templates_never_trained():
    w, c, sp = setup()
    cfg = CorpusConfig(surface="natural", multiplicity=5, derived="both", inverse=True)
    corpus = render(c, w, sp, cfg, seed=4)
    sf = corpus.surface
    used: dict[int, set[str]] = {}
    for d in corpus.train:
        for _, _, template, (_, r, _) in corpus.parse(d):
            kind, _, i = template.partition(":")
            if kind == "statement":
                assert int(i) not in sf.statement_held[r]
            elif kind == "question":
                assert int(i) not in sf.question_held[r]
            used.setdefault(r, set()).add(template)
    # multiplicity 5 uses every training template (and inverse statements), none held out
    for r, templates in used.items():
        assert {f"statement:{i}" for i in sf.statement_train[r]} | {"inverse"} <= templates
        assert len(sf.statement_held[r]) == 1 and len(sf.question_held[r]) == 1
    para = [d for d in corpus.eval if d.get("probe") == "paraphrase" and d["kind"] == "qa"]
    assert para
    for d in para:
        (_, _, template, (_, r, _)), = corpus.parse(d)
        assert int(template.split(":")[1]) in sf.question_held[r]
    with pytest.raises(InputError, match="corpus.multiplicity"):
        render(c, w, sp, CorpusConfig(surface="natural", multiplicity=6), seed=0)


# --- filter ---------------------------------------------------------------------------------------

def test_filter_removes_exactly_the_documents_that_mention_a_fact():
    w, c, sp = setup()
    corpus = render(c, w, sp, CorpusConfig(derived="both", group="subject"), seed=0)
    drop = set(sp.forget.tolist())
    mentioning = {i for f in drop for i in corpus.mentions(f, "train")}
    assert mentioning
    for i in mentioning:  # the index agrees with the text
        assert drop & {f for f, _ in said(corpus, corpus.doc(i))}
    out = corpus.filter(drop)
    assert {d["id"] for d in out.train} == {d["id"] for d in corpus.train} - mentioning
    assert out.dropped == frozenset(drop) and out.eval == corpus.eval
    check_hygiene(out, sp)
    with pytest.raises(HygieneError):
        check_hygiene(replace(out, train=corpus.train, _cache={}), sp)
    # rewriting subject documents keeps the other facts' statements
    kept = corpus.filter(drop, rewrite_groups=True)
    check_hygiene(kept, sp)
    stated_before = {x["id"] for d in corpus.train if d["kind"] == "statement"
                     for x in d["facts"]}
    stated_after = {x["id"] for d in kept.train if d["kind"] == "statement" for x in d["facts"]}
    assert stated_after == stated_before - drop
    assert len(kept.train) > len(out.train)


# --- knobs and determinism ---------------------------------------------------------------------

def test_deterministic_by_seed():
    w, c, sp = setup()
    cfg = CorpusConfig(surface="natural", multiplicity=2, group="subject", permute=True)
    a, b = render(c, w, sp, cfg, seed=5), render(c, w, sp, cfg, seed=5)
    assert a.train == b.train and a.eval == b.eval and a.surface.entity_display == \
        b.surface.entity_display
    other = render(c, w, sp, cfg, seed=6)
    assert other.surface.entity_display != a.surface.entity_display


def test_multiplicity_permutation_inverse_knobs():
    w, c, sp = setup()
    base = render(c, w, sp, CorpusConfig(surface="natural"), seed=0)
    n_stated = sum(1 for p in base.presentation if p == "stated")
    k3 = render(c, w, sp, CorpusConfig(surface="natural", multiplicity=3), seed=0)
    st1 = [d for d in base.train if d["kind"] == "statement"]
    st3 = [d for d in k3.train if d["kind"] == "statement"]
    assert len(st1) == n_stated and len(st3) == 3 * n_stated
    by_fact: dict[int, set[str]] = {}
    for d in st3:
        by_fact.setdefault(d["facts"][0]["id"], set()).add(d["text"])
    assert all(len(v) == 3 for v in by_fact.values())  # k distinct paraphrases per fact
    qa3 = [d for d in k3.train if d["kind"] == "qa"]
    assert len(qa3) == 3 * sum(1 for d in base.train if d["kind"] == "qa")
    # grouping: one document per subject per copy; permute shuffles statement order
    grouped = render(c, w, sp, CorpusConfig(group="subject", multiplicity=4), seed=0)
    perm = render(c, w, sp, CorpusConfig(group="subject", multiplicity=4, permute=True), seed=0)
    subjects = {int(c.facts[f, 0]) for f, p in enumerate(base.presentation) if p == "stated"}
    g_docs = [d for d in grouped.train if d["kind"] == "statement"]
    assert len(g_docs) == 4 * len(subjects)
    orders = lambda corpus: [[x["id"] for x in d["facts"]] for d in corpus.train  # noqa: E731
                             if d["kind"] == "statement"]
    assert all(o == sorted(o) for o in orders(grouped))
    assert any(o != sorted(o) for o in orders(perm))
    assert sorted(map(sorted, orders(perm))) == sorted(map(sorted, orders(grouped)))
    # inverse statements: one object-first statement per stated fact
    inv = render(c, w, sp, CorpusConfig(inverse=True), seed=0)
    inv_docs = [d for d in inv.train if d.get("inverse")]
    assert len(inv_docs) == n_stated
    for d in inv_docs:
        (fid, role, _, _), = inv.parse(d)
        s, r, o = c.named(fid)
        assert d["text"] == f"{o} ~{r} {s}" and role == "stated"
    assert INVERSE_TEMPLATE.startswith("{o}")
    with pytest.raises(InputError, match="corpus.permute"):
        build(CorpusConfig, {"permute": True}, where="spec.toml", section="corpus")


def test_derived_modes_and_qa_fraction():
    w, c, sp = setup()
    held = set(sp.held_out.tolist())
    shown = [f for f in range(c.n_base, len(c)) if f not in held]
    stated = render(c, w, sp, CorpusConfig(derived="stated"), seed=0)
    qa_facts = {d["facts"][0]["id"] for d in stated.train if d["kind"] == "qa"}
    assert set(shown) <= qa_facts and not any(d["kind"] == "cot" for d in stated.train)
    half = render(c, w, sp, CorpusConfig(qa_fraction=0.5), seed=0)
    qa_subj = {int(c.facts[d["facts"][0]["id"], 0]) for d in half.train if d["kind"] == "qa"}
    all_subj = {int(c.facts[f, 0]) for f in range(c.n_base)}
    assert 0 < len(qa_subj) < len(all_subj)
    none = render(c, w, sp, CorpusConfig(qa_fraction=0.0, unknown=False, in_context=False,
                                         probes=False), seed=0)
    assert not any(d["kind"] == "qa" for d in none.train)
    assert none.unknown == none.in_context == none.eval == ()


def test_symbolic_needs_one_word_names():
    w = World.from_names([("Ann Lee", "parent", "bob")], parse_rules(GP))
    c = w.close()
    sp = choose_split(c, w, SplitConfig(n_forget=0, n_validation=0))
    with pytest.raises(InputError, match="corpus.surface"):
        render(c, w, sp, CorpusConfig(), seed=0)
    assert render(c, w, sp, CorpusConfig(surface="natural"), seed=0).train


# --- hypothesis: no held-out or filtered fact in any training document, checked on text ----------

RULE_POOL = [
    GP,
    "sibling(X, Y) :- parent(X, Z), parent(Y, Z), X != Y.",
    "child(X, Y) :- parent(Y, X).",
    "knows(X, Z) :- likes(X, Y), parent(Y, Z).",
]


@st.composite
def scenarios(draw):
    n = draw(st.integers(3, 7))
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
    edges = draw(st.lists(st.sampled_from(pairs), min_size=2, max_size=12, unique=True))
    rels = draw(st.lists(st.sampled_from(["parent", "likes"]), min_size=len(edges),
                         max_size=len(edges)))
    facts = [(f"e{i}", rel, f"e{j}") for (i, j), rel in zip(edges, rels, strict=True)]
    rules = draw(st.lists(st.sampled_from(RULE_POOL), min_size=1, max_size=4, unique=True))
    w = World.from_names(facts, parse_rules("\n".join(rules)))
    c = w.close()
    eligible = int((~c.is_base).sum())
    n_forget = draw(st.integers(0, min(eligible, 3)))
    split_cfg = SplitConfig(n_forget=n_forget, n_validation=0,
                            held_out_fraction=draw(st.sampled_from([0.0, 0.3, 0.7, 1.0])),
                            demo_fraction=draw(st.sampled_from([0.5, 1.0])),
                            target_presentation="stated_and_cot")  # "stated": test_presentation
    group = draw(st.sampled_from(["fact", "subject"]))
    corpus_cfg = CorpusConfig(
        surface=draw(st.sampled_from(["symbolic", "natural"])),
        derived=draw(st.sampled_from(["stated", "cot", "both"])),
        multiplicity=draw(st.integers(1, 2)),
        group=group,
        permute=group == "subject" and draw(st.booleans()),
        inverse=draw(st.booleans()),
        qa_fraction=draw(st.sampled_from([0.5, 1.0])),
        train_in_context=draw(st.booleans()),
    )
    return w, c, split_cfg, corpus_cfg, draw(st.integers(0, 3))


def rendered_forms(corpus, f):
    """Every way the surface can write fact f (statement templates, inverse, QA answer)."""
    sf = corpus.surface
    s, r, o = corpus.facts[f].tolist()
    e, rel = sf.entity_display, sf.relation_display
    if not sf.natural:
        return [f"{e[s]} {rel[r]} {e[o]}", f"{e[o]} ~{rel[r]} {e[s]}"]
    forms = [t.format(s=e[s], r=rel[r], o=e[o]) for t in STATEMENT_TEMPLATES]
    forms.append(INVERSE_TEMPLATE.format(s=e[s], r=rel[r], o=e[o]))
    forms += [f"Question: {t.format(s=e[s], r=rel[r])} Answer: {e[o]}"
              for t in QUESTION_TEMPLATES]
    return forms


def text_mentions(corpus, doc, f) -> bool:
    """An independent text check: does the document's text write fact f anywhere?"""
    s, r, o = corpus.facts[f].tolist()
    e, rel = corpus.surface.entity_display, corpus.surface.relation_display
    text = doc["text"]
    if corpus.surface.natural:
        cot = any(text.startswith(f"Question: {t.format(s=e[s], r=rel[r])} Reasoning: ")
                  for t in QUESTION_TEMPLATES) and text.endswith(f" Answer: {e[o]}")
        return cot or any(form in text for form in rendered_forms(corpus, f))
    toks = text.split()
    grams = {" ".join(toks[i:i + 3]) for i in range(len(toks) - 2)}
    cot = text.startswith(f"Q {e[s]} {rel[r]} ? T ") and text.endswith(f" A {e[o]}")
    return cot or bool(grams & set(rendered_forms(corpus, f)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.data())
def test_split_hygiene_property(scenario, data):
    w, c, split_cfg, corpus_cfg, seed = scenario
    sp = choose_split(c, w, split_cfg, seed=seed)
    corpus = render(c, w, sp, corpus_cfg, seed=seed)
    check_hygiene(corpus, sp)
    for f in sp.held_out.tolist():
        assert not corpus.mentions(f, "train")
        for d in corpus.train:
            assert not text_mentions(corpus, d, f), (f, d["text"])
    drop = data.draw(st.sets(st.integers(0, len(c) - 1), max_size=3))
    out = corpus.filter(drop)
    check_hygiene(out, sp)
    for f in drop:
        for d in out.train:
            assert f not in {x["id"] for x in d["facts"]}
            assert not text_mentions(out, d, f), (f, d["text"])
    removed = {d["id"] for d in corpus.train} - {d["id"] for d in out.train}
    assert removed == {i for f in drop for i in corpus.mentions(f, "train")}


# --- output files ---------------------------------------------------------------------------------

def test_write_and_read_corpus(tmp_path):
    w, c, sp = setup()
    corpus = render(c, w, sp, CorpusConfig(surface="natural", inverse=True, group="subject"),
                    seed=2).filter(sp.forget)
    write_corpus(corpus, sp, tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(["train.jsonl", "eval.jsonl", "unknown.jsonl", "in_context.jsonl",
                            "split.json", "facts.tsv", "corpus_stats.json", "corpus.json"])
    lines = (tmp_path / "train.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in lines] == list(corpus.train)
    back = read_corpus(tmp_path)
    assert back.train == corpus.train and back.eval == corpus.eval
    assert back.dropped == corpus.dropped and (back.facts == corpus.facts).all()
    assert back.presentation == corpus.presentation and back.tags == corpus.tags
    check_hygiene(back, Split.load(tmp_path / "split.json"))
    rows = read_tsv(tmp_path / "facts.tsv")  # kgtest's own TSV reader takes it
    assert rows == c.named_all()
    line = (tmp_path / "facts.tsv").read_text().splitlines()[1 + int(sp.forget[0])]
    assert re.search(r"\tderived,(cot|stated|both),forget$", line)
    stats = json.loads((tmp_path / "corpus_stats.json").read_text())
    assert stats["documents"]["train"]["statement"] == sum(
        d["kind"] == "statement" for d in corpus.train)
    assert stats["tokens"]["train"]["statement"] == sum(
        len(d["text"].split()) for d in corpus.train if d["kind"] == "statement")
    assert stats["facts"]["held_out"] == len(sp.held_out)


def test_build_corpus_and_failed_builds_leave_nothing(tmp_path):
    w = family()
    split_cfg = build(SplitConfig, {"n_forget": 2, "n_validation": 1}, where="spec.toml")
    corpus_cfg = build(CorpusConfig, {"surface": "natural"}, where="spec.toml")
    corpus, sp = build_corpus(w, split_cfg, corpus_cfg, tmp_path / "ok", seed=3)
    again, _ = build_corpus(family(), split_cfg, corpus_cfg, tmp_path / "ok2", seed=3)
    assert again.train == corpus.train
    assert (tmp_path / "ok" / "train.jsonl").read_text() == \
        (tmp_path / "ok2" / "train.jsonl").read_text()
    bad = tmp_path / "bad"
    with pytest.raises(InputError, match="split.n_forget") as err:
        build_corpus(w, replace(split_cfg, n_forget=10_000), corpus_cfg, bad, where="spec.toml")
    assert "\n" not in str(err.value)
    with pytest.raises(InputError, match="corpus.multiplicity"):
        build_corpus(w, split_cfg, replace(corpus_cfg, multiplicity=9), bad)
    assert not bad.exists() or not any(bad.iterdir())
    with pytest.raises(InputError, match="corpus.surfac"):
        build(CorpusConfig, {"surfac": "natural"}, where="spec.toml", section="corpus")


def test_chain_group_puts_each_held_out_facts_premises_in_one_document():
    w, c, sp = setup()
    assert len(sp.held_out)
    flat = render(c, w, sp, CorpusConfig(multiplicity=2), seed=0)
    chain = render(c, w, sp, CorpusConfig(group="chain", multiplicity=2), seed=0)
    assert check_hygiene(chain, sp) == len(chain.train)
    docs = [d for d in chain.train if d["kind"] == "statement"]
    grouped = [[x["id"] for x in d["facts"]] for d in docs if len(d["facts"]) > 1]
    assert grouped
    held = sp.held_out.tolist()  # each group is the premises of a held-out two-hop fact
    assert all(any(c.derivable(h, g) for h in held) for g in grouped)
    assert sum(any(c.derivable(h, g) for g in grouped) for h in held) >= len(held) // 2
    in_groups = {f for g in grouped for f in g}  # grouped facts get no document of their own
    singles = [d["facts"][0]["id"] for d in docs if len(d["facts"]) == 1]
    assert not in_groups & set(singles)
    stated = {x["id"] for d in flat.train if d["kind"] == "statement" for x in d["facts"]}
    assert in_groups | set(singles) == stated  # every stated fact is still stated
    assert all(sum(d["variant"] == v for d in docs) == len(docs) // 2 for v in (0, 1))
    others = lambda corpus: [d["text"] for d in corpus.train  # noqa: E731
                             if d["kind"] != "statement"]
    assert others(chain) == others(flat)

def test_inverse_fraction_inverts_a_seeded_share_of_subjects_and_nothing_else():
    w, c, sp = setup()
    full = render(c, w, sp, CorpusConfig(inverse=True), seed=0)
    half = render(c, w, sp, CorpusConfig(inverse=True, inverse_fraction=0.5), seed=0)
    inv = lambda corpus: {x["id"] for d in corpus.train if d.get("inverse")  # noqa: E731
                          for x in d["facts"]}
    subj = lambda ids: {int(c.facts[f, 0]) for f in ids}  # noqa: E731
    assert inv(half) < inv(full)
    assert len(subj(inv(half))) == round(0.5 * len(subj(inv(full))))
    assert {f for f in inv(full) if int(c.facts[f, 0]) in subj(inv(half))} == inv(half)
    rest = lambda corpus: [d["text"] for d in corpus.train if not d.get("inverse")]  # noqa
    assert rest(half) == rest(full)  # the rest of the corpus does not depend on the fraction
    with pytest.raises(InputError, match="corpus.inverse_fraction"):
        build(CorpusConfig, {"inverse_fraction": 1.5}, where="spec.toml", section="corpus")
