"""write_world writes every file atomically, and each file parses back."""

from __future__ import annotations

import json

import pytest

import kgtest.worlds.export as export
from kgtest.symbolic.facts import decode
from kgtest.symbolic.rules import read_rules
from kgtest.worlds.export import FACTS_HEADER, describe_world, write_world
from kgtest.worlds.samplers import sample_world, world_from_tsv

FILES = ["derivations.jsonl", "facts.tsv", "graph.png", "rules.dl", "stats.json"]


@pytest.fixture(scope="module")
def written(tmp_path_factory, small_config):
    w = sample_world(small_config("dual_use", n_planted=2), seed=0)
    c = w.close()
    out = write_world(w, c, tmp_path_factory.mktemp("world") / "out")
    return w, c, out


def test_writes_all_files_and_nothing_else(written):
    _, _, out = written
    assert sorted(p.name for p in out.iterdir()) == FILES
    assert (out / "graph.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_facts_tsv_parses_back(written):
    w, c, out = written
    lines = (out / "facts.tsv").read_text().splitlines()
    assert tuple(lines[0].split("\t")) == FACTS_HEADER
    rows = [ln.split("\t") for ln in lines[1:]]
    assert len(rows) == len(c)
    kinds = [r[3] for r in rows]
    assert kinds.count("base") == c.n_base and kinds.count("derived") == len(c) - c.n_base
    assert [int(r[4]) for r in rows] == c.proof_count.tolist()
    assert [int(r[5]) for r in rows] == c.depth.tolist()
    assert {r[7] for r in rows} == {"benign", "harmful"}
    assert sum(int(r[8]) for r in rows) == 2
    back = world_from_tsv(out / "facts.tsv", out / "rules.dl")
    assert decode(back.facts, back.entities, back.relations) == decode(
        w.facts, w.entities, w.relations)
    assert back.domain_names == w.domain_names and back.domain.tolist() == w.domain.tolist()
    assert len(back.close()) == len(c)


def test_rules_and_derivations_parse_back(written):
    _, c, out = written
    assert [str(r) for r in read_rules(out / "rules.dl")] == [str(r) for r in c.rules]
    recs = [json.loads(ln) for ln in (out / "derivations.jsonl").read_text().splitlines()]
    assert len(recs) == c.n_derivations
    rule_texts = {str(r) for r in c.rules}
    for rec in recs[:50]:
        assert rec["rule"] in rule_texts and c.find(*rec["fact"]) >= 0
        assert all(c.find(*p) >= 0 for p in rec["premises"])


def test_stats_json(written):
    w, c, out = written
    s = json.loads((out / "stats.json").read_text())
    assert s["counts"]["base"] == c.n_base and s["counts"]["closure"] == len(c)
    assert sum(s["proof_count_hist"].values()) == len(c) - c.n_base
    assert sum(s["depth_hist"].values()) == len(c)
    assert sum(s["degree_hist"].values()) == len(w.entities)
    assert sum(v["base"] + v["derived"] for v in s["by_relation"].values()) == len(c)
    assert len(s["planted"]) == 2 and "gini" in s["entity_frequency"]


def test_failure_leaves_nothing_half_written(tmp_path, monkeypatch, small_config):
    w = sample_world(small_config("taxonomy"), seed=0)

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(export, "draw_world", boom)
    with pytest.raises(RuntimeError):
        write_world(w, w.close(), tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_describe_world_mentions_the_essentials(small_config):
    w = sample_world(small_config("family_tree", n_planted=2, planted_proofs=1), seed=0)
    text = describe_world(w, w.close())
    assert "family_tree" in text and "base facts" in text and "derived" in text
    assert "planted: 2 targets with exactly 1 proofs" in text
    assert "sibling(X, Y) :- parent(Z, X), parent(Z, Y), X != Y." in text
