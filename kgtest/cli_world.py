"""The symbolic subcommands of ``kgtest``: ``world build`` (sample a world from a spec and
write it out), ``world closure`` (close your own facts under Datalog rules) and ``world
deletion-set`` (minimal deletion sets for deep unlearning). Their parsers are in
:func:`kgtest.cli.build_parser`; bad input raises :class:`~kgtest.errors.InputError`, which
the entry point prints as one line.
"""

from __future__ import annotations

import argparse
import json
import sys

from kgtest.errors import InputError

__all__ = ["cmd_world_build", "cmd_world_closure", "cmd_world_deletion_set", "load_kb",
           "add_dead_rules"]


def add_dead_rules(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-dead-rules", action="store_true",
                   help="accept rules whose body names a relation that no fact and no rule "
                        "head has (they never fire; e.g. EDU-RELAT's published 'newphe')")


def load_kb(facts_path: str, rules_path: str, fixed_path: str | None = None,
            masks: bool = True, allow_dead_rules: bool = False):
    """Read a user KB and close it: returns (closure, kb mask, fixed mask); masks None if
    not asked. The files mean what :mod:`kgtest.symbolic.kb` says (derived rows of an
    annotated file dropped, its ``fixed`` column and the fixed file marking fixed facts),
    as for :func:`kgtest.worlds.samplers.world_from_tsv`."""
    import numpy as np

    from kgtest.symbolic.closure import forward_chain
    from kgtest.symbolic.kb import read_kb

    kb = read_kb(facts_path, rules_path, fixed_path, allow_dead_rules=allow_dead_rules)
    closure = forward_chain(kb.facts, kb.rules, kb.entities, kb.relations)
    if not masks:
        return closure, None, None
    fixed_mask = np.zeros(len(closure), dtype=bool)
    if kb.fixed.any():
        fixed_mask[closure.index(kb.facts[kb.fixed])] = True
    kb_mask = closure.is_base & ~fixed_mask  # input rows come first, deduplicated
    return closure, kb_mask, fixed_mask


def cmd_world_closure(args) -> int:
    from kgtest.symbolic.facts import atomic_write_text, facts_tsv_chunks

    closure, _, _ = load_kb(args.facts, args.rules, masks=False,
                             allow_dead_rules=args.allow_dead_rules)
    cols = ["subject", "relation", "object"]
    extra = []
    if args.explain:
        cols += ["kind", "proof_count", "depth", "derivations"]  # as world build's facts.tsv
        extra = [(["base", "derived"], (~closure.is_base).astype(int)),
                 (_numerals(closure.proof_count), closure.proof_count),
                 (_numerals(closure.depth), closure.depth),
                 (_derivations_json(closure), range(len(closure)))]
    chunks = facts_tsv_chunks(closure.facts, closure.entities, closure.relations, extra,
                              header=cols if args.header else None)  # written as made
    if args.out:
        atomic_write_text(args.out, chunks)
        n_derived = len(closure) - closure.n_base
        print(f"wrote {len(closure)} facts ({n_derived} derived) to {args.out}", file=sys.stderr)
    else:
        sys.stdout.flush()
        for chunk in chunks:
            sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
    return 0


def _numerals(values) -> list[str]:
    return [str(i) for i in range(int(values.max(initial=0)) + 1)]


def _derivations_json(closure) -> list[str]:
    names = closure.named_all()
    out = []
    for i in range(len(closure)):
        derivs = [{"rule": str(closure.rules[closure.deriv_rule[d]]),
                   "premises": [list(names[p]) for p in closure.premises(d)]}
                  for d in closure.derivations_of(i).tolist()]
        out.append(json.dumps(derivs, separators=(",", ":")))
    return out


def _check_seed(seed: int) -> None:
    from kgtest.config import check_seed

    msg = check_seed(seed)
    if msg:
        raise InputError(f"--seed: {msg}, got {seed}")


def _parse_target(text: str) -> tuple[str, str, str]:
    """``"s r o"``, ``"s<TAB>r<TAB>o"`` (names with spaces) or a JSON list ``["s", "r", "o"]``."""
    text = text.strip()
    if text.startswith("["):
        try:
            parts = json.loads(text)
        except json.JSONDecodeError:
            parts = None
        ok = isinstance(parts, list) and all(isinstance(p, str) and p.strip() for p in parts)
        parts = parts if ok else []
    elif "\t" in text:
        parts = [p.strip() for p in text.split("\t")]
    else:
        parts = text.split()
    if len(parts) != 3 or not all(parts):
        raise InputError(f"--target: expected 'subject relation object' (tab-separated or a "
                         f"JSON list when a name has spaces), got {text[:100]!r}")
    return parts[0], parts[1], parts[2]


def cmd_world_deletion_set(args) -> int:
    from kgtest.symbolic.deletion import minimal_deletion_sets

    if args.count < 1 or args.restarts < 1:
        raise InputError("--count and --restarts must be >= 1")
    _check_seed(args.seed)
    closure, kb_mask, fixed_mask = load_kb(args.facts, args.rules, args.fixed,
                                            allow_dead_rules=args.allow_dead_rules)
    s, r, o = _parse_target(args.target)
    target = closure.find(s, r, o)
    if target < 0:
        raise InputError(f"--target: {s} {r} {o} is not in the closure of {args.facts} "
                         f"under {args.rules}")
    if fixed_mask[target]:
        raise InputError(f"--target: {s} {r} {o} is a fixed fact ({args.fixed}); "
                         "fixed facts are never deleted")
    result = minimal_deletion_sets(closure, target, kb=kb_mask, fixed=fixed_mask,
                                   count=args.count, restarts=args.restarts, seed=args.seed)
    sets = [closure.named_all(sorted(m)) for m in result.sets[: args.count]]
    if len(sets) < args.count:
        print(f"kgtest: note: only {len(sets)} distinct minimal deletion set(s) found for "
              f"{s} {r} {o} (asked for {args.count}; {args.restarts} restarts)",
              file=sys.stderr)
    if args.json:
        print(json.dumps(_deletion_json(closure, target, result, sets, args.count)))
    else:
        for m in sets:
            print(" ; ".join("\t".join(f) for f in m))
    return 0


def _deletion_json(closure, target: int, result, sets, count: int) -> dict:
    """The target, each set with its size and whether it is a proven minimum, and how
    many sets exist beyond those printed."""
    bound = result.lower_bound if result.proven_minimum else None
    return {"target": list(closure.named_all([target])[0]), "requested": count,
            "n_found": result.n_found, "lower_bound": result.lower_bound,
            "sets": [{"size": len(m), "proven_minimum": bound is not None and len(m) == bound,
                      "facts": [list(f) for f in m]} for m in sets]}


def cmd_world_build(args) -> int:
    from kgtest.worlds.export import describe_world, write_world
    from kgtest.worlds.samplers import sample_world
    from kgtest.worlds.spec import load_world_spec

    _check_seed(args.seed)
    cfg = load_world_spec(args.spec, overrides=args.overrides)
    world = sample_world(cfg, seed=args.seed)
    closure = world.close()
    write_world(world, closure, args.out)
    if args.json:
        print(json.dumps({"out": args.out, "entities": len(world.entities),
                          "facts": len(closure), "base": closure.n_base,
                          "derived": len(closure) - closure.n_base, "rules": len(closure.rules)}))
        return 0
    print(describe_world(world, closure))
    print(f"wrote {args.out}/ (facts.tsv, rules.dl, derivations.jsonl, stats.json, graph.png)")
    return 0
