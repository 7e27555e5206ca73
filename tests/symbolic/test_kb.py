"""One KB reader (kgtest.symbolic.kb.read_kb) under `kgtest world closure`/`deletion-set`
and `world_from_tsv`: the same files mean the same facts, with the same error lines."""

from __future__ import annotations

import pytest

from kgtest.cli import main
from kgtest.cli_world import load_kb
from kgtest.errors import InputError
from kgtest.symbolic.facts import decode
from kgtest.symbolic.kb import read_kb
from kgtest.worlds.export import write_world
from kgtest.worlds.samplers import world_from_tsv

RULES = "grandparent(X, Z) :- parent(X, Y), parent(Y, Z).\n"
HEAD = "subject\trelation\tobject\tkind\tfixed\tdomain\n"


def _files(tmp_path, facts: str, rules: str = RULES):
    (tmp_path / "f.tsv").write_text(facts)
    (tmp_path / "r.dl").write_text(rules)
    return tmp_path / "f.tsv", tmp_path / "r.dl"


def test_a_written_world_reads_back_the_same_through_both_readers(tmp_path):
    """world build's facts.tsv: derived rows dropped, fixed flags and domains kept, by
    world_from_tsv and by `world closure` / `deletion-set` (load_kb) alike."""
    f, r = _files(tmp_path, HEAD + "ann\tparent\tbob\tbase\t0\tkin\n"
                  "bob\tparent\tcy\tbase\t1\twork\n"
                  "ann\tgrandparent\tcy\tderived\t0\tmixed\n")
    w = world_from_tsv(f, r)
    assert decode(w.facts, w.entities, w.relations) == [("ann", "parent", "bob"),
                                                        ("bob", "parent", "cy")]
    assert w.fixed.tolist() == [False, True] and w.domain_names == ("kin", "work")
    closure, kb, fixed = load_kb(str(f), str(r))
    assert closure.n_base == 2 and len(closure) == 3
    assert kb.tolist() == [True, False, False] and fixed.tolist() == [False, True, False]
    out = write_world(w, w.close(), tmp_path / "w")  # and round-trips again
    back = world_from_tsv(out / "facts.tsv", out / "rules.dl")
    assert back.facts.tolist() == w.facts.tolist() and back.fixed.tolist() == [False, True]
    assert load_kb(str(out / "facts.tsv"), str(r))[0].n_base == 2


def test_closure_of_a_world_files_facts_is_not_every_fact_stated(tmp_path, capsys):
    """Before one reader, `world closure` read a derived row as a base fact."""
    f, r = _files(tmp_path, HEAD + "ann\tparent\tbob\tbase\t0\td\nbob\tparent\tcy\tbase\t0\td\n"
                  "ann\tgrandparent\tcy\tderived\t0\td\n")
    assert main(["world", "closure", "--facts", str(f), "--rules", str(r), "--explain"]) == 0
    rows = [ln.split("\t") for ln in capsys.readouterr().out.splitlines()]
    assert [(x[2], x[3]) for x in rows] == [("bob", "base"), ("cy", "base"), ("cy", "derived")]


def test_duplicates_and_the_fixed_file(tmp_path):
    """A fact listed twice is one fact, fixed if any line (or the fixed file) says so."""
    f, r = _files(tmp_path, HEAD + "ann\tparent\tbob\tbase\t0\ta\nann\tparent\tbob\tbase\t1\tb\n"
                  "bob\tparent\tcy\n")
    (tmp_path / "g.tsv").write_text("bob\tparent\tcy\nann\tgender\tf\n")
    kb = read_kb(f, r, tmp_path / "g.tsv")
    assert len(kb.facts) == 5 and kb.fixed.tolist() == [False, True, False, True, True]
    w = world_from_tsv(f, r, tmp_path / "g.tsv")
    assert len(w.facts) == 3 and w.fixed.tolist() == [True, True, True]
    assert w.domain.tolist() == [0, 2, 0] and w.domain_names == ("a", "b", "default")
    closure, kbm, fixed = load_kb(str(f), str(r), str(tmp_path / "g.tsv"))
    assert fixed[: closure.n_base].tolist() == [True, True, True] and not kbm.any()


@pytest.mark.parametrize("facts, rules, expect", [
    ("ann\tparent\n", RULES, "f.tsv:1: expected 'subject<TAB>relation<TAB>object'"),
    (HEAD + "a\tparent\tb\tbase\tyes\td\n", RULES,
     "f.tsv:2: column 'fixed' must be one of '1', 'true', '0', 'false', got 'yes'"),
    (HEAD + "a\tparent\tb\tBASE\t0\td\na\tparent\tc\tstated\t0\td\n", RULES,
     "f.tsv:3: column 'kind' must be one of 'base', 'derived', got 'stated'"),
    ("# nothing\n", RULES, "f.tsv: no facts in file"),
    (HEAD + "a\tgrandparent\tc\tderived\t0\td\n", RULES,
     "f.tsv: no facts in file (every row is derived)"),
    ("a\tparent\tb\n", "gp(X, Z) :- parnet(X, Y), parent(Y, Z).\n", "r.dl:1:13: relation"),
])
def test_both_readers_refuse_with_the_same_line(tmp_path, capsys, facts, rules, expect):
    f, r = _files(tmp_path, facts, rules)
    with pytest.raises(InputError) as a:
        world_from_tsv(f, r)
    with pytest.raises(InputError) as b:
        load_kb(str(f), str(r))
    assert str(a.value) == str(b.value) and expect in str(a.value), str(a.value)
    assert main(["world", "closure", "--facts", str(f), "--rules", str(r)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expect in err


def test_allow_dead_rules_in_both(tmp_path):
    f, r = _files(tmp_path, "a\tparent\tb\n", "gp(X, Z) :- newphe(X, Y), parent(Y, Z).\n")
    assert len(world_from_tsv(f, r, allow_dead_rules=True).close()) == 1
    assert len(load_kb(str(f), str(r), allow_dead_rules=True)[0]) == 1
