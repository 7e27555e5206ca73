"""The plain-Python baseline for ``kgtest world closure``: a dict-indexed forward chainer.

What a researcher would write without kgtest, standard library only: read the facts TSV
line by line, intern names with dicts, run semi-naive forward chaining over dict indexes
for chain rules ``h(X0, Xk) :- r1(X0, X1), ..., rk(Xk-1, Xk).`` recording every one-step
derivation (what kgtest records), and write the closure as TSV (input facts first, then
derived facts in discovery order). ``benchmarks/bench_closure.py`` times this script as a
whole process against ``kgtest world closure`` on the same files.

    python benchmarks/plain_chainer.py FACTS.tsv RULES.dl OUT.tsv
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict

_ATOM = re.compile(r"(\w+)\s*\(\s*([A-Z]\w*)\s*,\s*([A-Z]\w*)\s*\)")


def parse_chain_rules(text: str) -> list[tuple[str, list[str]]]:
    """``[(head relation, [body relations])]`` for chain rules, one per line."""
    rules = []
    for line in text.splitlines():
        line = line.split("%", 1)[0].strip()
        if not line:
            continue
        head, body = line.rstrip(".").split(":-")
        rules.append((_ATOM.match(head.strip()).group(1),
                      [m.group(1) for m in _ATOM.finditer(body)]))
    return rules


def chain(facts: list[tuple[int, int, int]], chains: list[tuple[int, list[int]]]):
    """Semi-naive forward chaining in pure Python over dict indexes, recording derivations.

    Facts are tuples ``(s, r, o)`` numbered in discovery order; the indexes map
    ``(relation, subject)`` and ``(relation, object)`` to lists of ``(other end, fact
    id)`` in id order. Round t joins, for each rule and body position i, the facts new in
    round t-1 at i with older facts at positions before i (walking left through the object
    index) and all facts at positions after i (walking right through the subject index),
    so each derivation is found once.

    Returns ``(triples, derivations)``: the list of fact tuples and a list of
    ``(head id, rule id, premise ids)``; derivations whose head is one of its own premises
    are dropped, as kgtest does.
    """
    fact_id: dict[tuple[int, int, int], int] = {}
    triples: list[tuple[int, int, int]] = []
    by_s: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
    by_o: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)

    def add(t):
        f = fact_id.get(t)
        if f is None:
            f = fact_id[t] = len(triples)
            triples.append(t)
            by_s[t[1], t[0]].append((t[2], f))
            by_o[t[1], t[2]].append((t[0], f))
        return f

    for t in facts:
        add(t)
    derivations = []
    old_end, new_end = 0, len(triples)
    while old_end < new_end:
        delta = defaultdict(list)  # relation -> new fact ids
        for f in range(old_end, new_end):
            delta[triples[f][1]].append(f)
        found = []
        for ri, (head, rels) in enumerate(chains):
            k = len(rels)
            for i in range(k):
                for f in delta.get(rels[i], ()):
                    s, _, o = triples[f]
                    paths = [(s, o, (f,))]
                    for j in range(i + 1, k):  # extend right, any fact so far
                        paths = [(a, b2, p + (g,)) for a, b, p in paths
                                 for b2, g in by_s.get((rels[j], b), ()) if g < new_end]
                    for j in range(i - 1, -1, -1):  # extend left, facts older than the delta
                        paths = [(a2, b, (g,) + p) for a, b, p in paths
                                 for a2, g in by_o.get((rels[j], a), ()) if g < old_end]
                    for a, b, p in paths:
                        found.append(((a, head, b), ri, p))
        old_end = new_end
        for t, ri, p in found:
            h = add(t)
            if h not in p:
                derivations.append((h, ri, p))
        new_end = len(triples)
    return triples, derivations


def main(argv: list[str]) -> int:
    facts_path, rules_path, out_path = argv
    ents: dict[str, int] = {}
    rels: dict[str, int] = {}
    facts = []
    with open(facts_path, encoding="utf-8") as f:
        for line in f:
            s, r, o = line.rstrip("\n").split("\t")
            facts.append((ents.setdefault(s, len(ents)), rels.setdefault(r, len(rels)),
                          ents.setdefault(o, len(ents))))
    with open(rules_path, encoding="utf-8") as f:
        rules = parse_chain_rules(f.read())
    chains = [(rels.setdefault(h, len(rels)), [rels.setdefault(b, len(rels)) for b in body])
              for h, body in rules]
    triples, _ = chain(facts, chains)
    en, rn = list(ents), list(rels)
    with open(out_path, "w", encoding="utf-8") as f:
        f.write("".join(f"{en[s]}\t{rn[r]}\t{en[o]}\n" for s, r, o in triples))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
