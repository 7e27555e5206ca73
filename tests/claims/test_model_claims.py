"""Model-level claims: a tiny model trained on each drawn world, unlearned and probed.

Budget (docs/claims.md): 3 worlds per claim. Per world, one training of the original (a
tiny GPT-2, at most 1500 steps), one of the filter control (as many steps), and NPO
tuned on 3 validation targets: 60 to 100 s per world on one CPU thread. Both claims draw
from the same strategy with the same ``@seed``, and :func:`model_records` caches a world's
records in the process, so the worlds are trained once for the file: 3 to 6 minutes in
all on a shared 2-core machine. Shrinking is off (each shrink step would train three
models); a failure prints the world (``describe``), the rates of every variant and a
``@reproduce_failure`` blob.
``pytest -s`` prints one line per world. Three fast tests check the strategy, the
refusal of degenerate worlds and NPO's tuning sample.

Under the current definitions (targets stated only, CoT verified) neither claim holds on
every world and seed: ``tests/claims/spread.py`` retrained the three worlds with run seeds
0..4 (16 forget targets each; table in docs/claims.md). The first claim held on 8 of 14
runs: its precondition (the original re-derives >= 5 of its 16 targets by verified CoT)
failed on 5 (1 to 9 targets re-derived), and its interval missed chance on 2, so it is a
non-strict xfail until the original's CoT is stronger. The second is refuted: NPO's CoT never
recovered more than its direct recall (REFUTED_BY, replayed first).
"""
import dataclasses

import pytest
import torch
from hypothesis import HealthCheck, Phase, example, given, note, seed, settings

from kgtest.claims import closure_of, describe
from kgtest.claims_model import (
    check_trainable,
    composition_world,
    composition_worlds,
    difference,
    model_records,
    rate,
)
from kgtest.errors import InputError
from kgtest.strategies import worlds

#: asserts a trained model's outcome: `make test-arith` reruns it under other CPU arithmetic
pytestmark = pytest.mark.trained

#: Worlds with at least 32 derived facts (two rules x 16 entities): 8 forget and 3
#: validation targets leave most of each rule's facts as demonstrations.
WORLDS = composition_worlds(min_entities=16, max_entities=30, max_relations=4, min_rules=2,
                            max_rules=3)
#: 8 forget targets per world: the rows each rate is over.
SETUP = {"n_forget": 16, "n_validation": 3}
#: 3 worlds, no deadline, no shrinking, no example database (a CI run is the same every
#: time), every health check off (one example takes tens of seconds by design).
BUDGET = settings(max_examples=3, deadline=None, database=None, print_blob=True,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
SEED = 20240601


# --- the strategy is valid by construction; degenerate worlds are refused (fast) ----------


@settings(max_examples=50, deadline=None, database=None)
@given(WORLDS)
def test_composition_worlds_always_host_the_experiment(world):
    """Every drawn world has room for the targets and demonstrations of every rule."""
    n_rules, n_ent = len(world.rules), len(world.entities)
    assert len(closure_of(world)) - len(world.facts) == n_rules * n_ent
    assert check_trainable(world, **SETUP) is None
    assert check_trainable(world, **SETUP, seed=1) is None


@settings(max_examples=20, deadline=None, database=None)
@given(worlds(max_entities=6, max_facts=6, max_rules=0, planted=1, planted_depth=(1, 1),
              planted_stated=False))
def test_a_world_with_one_fact_per_rule_is_refused_with_a_reason(world):
    """A planted target is the only fact of its goal rule: no demonstration elsewhere, so
    a CoT probe would be meaningless; model_records says so before training anything."""
    with pytest.raises(InputError, match="cannot host the experiment: .*(no other fact of "
                                         "its rule|demonstrated on another entity)"):
        model_records(world, n_forget=1, n_validation=0)
    assert "n_forget" in check_trainable(world, n_forget=2, n_validation=0)


@seed(SEED)
@BUDGET
@given(world=WORLDS)
def test_npo_tuning_has_retained_facts_to_check_its_utility_floor_on(world, tmp_path_factory):
    """On the claims' worlds (the same three the slow claims draw), NPO's tuning has
    retained facts to check its utility floor on: the utility probe reserves
    ``probes.utility_limit`` of them; with the library default (100) it reserved every
    one and retain accuracy was NaN, so no grid point could be admissible."""
    from kgtest.claims_model import default_config
    from kgtest.corpus.io import build_corpus
    from kgtest.probes.probes import utility_retain_facts
    from kgtest.seeds import stage_seed

    cfg = default_config()
    split = dataclasses.replace(cfg.split, **SETUP)
    corpus, sp = build_corpus(world, split, cfg.corpus, tmp_path_factory.mktemp("c"), seed=0)
    reserved = utility_retain_facts(corpus, sp, cfg.probes.utility_limit, stage_seed(0, "probes"))
    stated = {x["id"] for d in corpus.train if d["kind"] in ("statement", "qa")
              for x in d["facts"] if x["role"] in ("stated", "answer")}
    pool = {f for f in stated if sp.labels[f] == "retain"} - set(reserved["direct"]) - set(
        reserved["cot"])
    assert len(pool) >= 20, f"only {len(pool)} retained facts left for NPO's utility floor"


# --- the claims (slow: three tiny models per world) -----------------------------------------


def _records(world):
    torch.set_num_threads(1)
    note(describe(world))
    records = model_records(world, **SETUP)
    for v in ("original", "filter", "NPO"):
        for p in ("direct", "cot"):
            note(f"{v:8s} {p:6s} {rate(records, variant=v, probe=p)}")
    return records


def _line(world, what: str) -> str:
    m = world.meta
    return (f"composition_world({m['n_entities']}, {m['n_relations']}, {m['rules']}, "
            f"edge_seed={m['edge_seed']}): {what}")


@pytest.mark.slow
@pytest.mark.xfail(raises=AssertionError, strict=False,
                   reason="not established under stated-only targets and verified CoT: over "
                          "3 worlds x 5 seeds (tests/claims/spread.py, 16 targets per world) "
                          "the original re-derived 1 to 9 of 16 targets by verified CoT, below "
                          "the n >= 5 precondition on 5 of 14 runs (seed 0, the test's: 1 of "
                          "16 on the 17-entity world); docs/claims.md")
@seed(SEED)
@BUDGET
@given(WORLDS)
def test_filter_control_rederives_targets_by_cot_above_chance(world):
    """NOT ESTABLISHED at this budget (held under the old definitions, where targets were
    also trained as chains): the filter control never saw a forget target, yet with
    chain of thought it re-derives more of them than chance (the lower end of the 95%
    interval of its CoT rate is above 1 / candidates): knowing the premises and the rule
    (demonstrated on other entities) is enough to bring a filtered fact back.

    Spread (tests/claims/spread.py, run seeds 0..4, 2-core AMD EPYC, 16 targets per
    world, 14 runs): the interval was above chance on 12 (filter CoT 0.14 to 1.00; missed:
    0/1 and 0.143 [0.026, 0.513] vs chance 0.059), the precondition n >= 5 failed on 5 (the
    original's verified CoT on its targets: 1, 1, 3 of 16 on the 22-entity world, 1 and 3
    of 16 on the 17-entity one); both held on 8 of 14."""
    records = _records(world)
    r = rate(records, variant="filter", probe="cot")
    print(_line(world, f"filter CoT {r}"))
    assert r.n >= 5, f"the original re-derived only {r.n} forget targets by CoT"
    assert r.lo > r.chance, f"filter CoT {r} is not above chance"


#: The world this file's search found against the second claim (hypothesis 6.170.17,
#: seed SEED): 22 entities, r1_r1 and r0_r2. Under the current definitions (16 targets,
#: stated only; verified CoT; run seed 0): NPO direct 0/8 and CoT 0/8 on the targets the
#: original knew both ways (the filter control: CoT 2/8). Over run seeds 0..4 on the three
#: worlds (tests/claims/spread.py) NPO's CoT - direct never had its interval above 0
#: (largest 0.143 [-0.286, 0.571]).
REFUTED_BY = composition_world(22, 3, [(1, 1), (0, 2)], edge_seed=31352908)


@pytest.mark.slow
@pytest.mark.xfail(raises=AssertionError, strict=False,
                   reason="refuted: NPO suppresses CoT re-derivation as much as direct recall "
                          "on REFUTED_BY (docs/claims.md)")
@seed(SEED)
@BUDGET
@example(REFUTED_BY)
@given(WORLDS)
def test_cot_brings_back_more_than_direct_after_npo(world):
    """FALSE as stated: after NPO unlearns the forget targets (every form they were
    trained in: statement and QA; their rule is shown by CoT on other entities only),
    asking with chain of thought recovers more of them than asking directly:
    the paired difference CoT - direct, over the targets the original knew both ways, has
    the lower end of its 95% interval above 0."""
    records = _records(world)
    d = difference(records, ("NPO", "cot"), ("NPO", "direct"))
    note(f"NPO cot - direct: {d}")
    print(_line(world, f"NPO CoT - direct {d}"))
    assert d.n >= 5, f"only {d.n} targets known both ways by the original"
    assert d.lo > 0, f"NPO: CoT - direct = {d}"
