"""In-loop evaluation reads answers with the probes' parser (Surface.split_answer)."""

import pytest

from kgtest.corpus.surface import natural_surface, symbolic_surface
from kgtest.symbolic.facts import Vocab
from kgtest.train_eval import is_correct

ENTS, RELS = Vocab(["ann", "bob", "cy"]), Vocab(["parent", "grandparent"])


@pytest.mark.parametrize("make", [symbolic_surface,
                                  lambda e, r: natural_surface(e, r, seed=0)])
def test_in_loop_cot_answer_is_the_probes_answer(make):
    """Whatever the output, early stopping counts a CoT answer right exactly when the
    probes would (the answer after this surface's own marker equals the object)."""
    sf = make(ENTS, RELS)
    steps = [sf.statement(0, 0, 1), sf.statement(1, 0, 2)]
    doc = {"kind": "cot", "completion": sf.cot_completion(steps, 2)}
    cy, bob = sf.answer(2), sf.answer(1)
    other = " A " if sf.natural else " Answer: "  # the other surface's marker
    outputs = [doc["completion"], sf.cot_completion(steps, 1), sf.cot_completion([], 2),
               sf.join(steps) + other + cy,  # the wrong marker: no answer
               doc["completion"] + ".", doc["completion"] + other + bob, "", cy]
    for out in outputs:
        parts = sf.split_answer(out)
        probes_say = parts is not None and parts[1] == sf.answer(2)
        assert is_correct(out, doc, sf) == probes_say, out
    assert [is_correct(o, doc, sf) for o in outputs[:4]] == [True, False, True, False]


def test_natural_answer_needs_the_natural_marker():
    """The one-off of the parser change: before, in-loop evaluation took the answer after
    whichever of ' A ' / ' Answer: ' came last, on either surface."""
    sf = natural_surface(ENTS, RELS, seed=0)
    doc = {"kind": "cot", "completion": sf.cot_completion([sf.statement(0, 0, 1)], 1)}
    assert not is_correct(sf.statement(0, 0, 1) + " A " + sf.answer(1), doc, sf)
    assert is_correct(sf.statement(0, 0, 1) + " Answer: " + sf.answer(1), doc, sf)
