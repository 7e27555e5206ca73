"""World specs: the catalogue loads and builds; each bad input is one clear line."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from kgtest.config import build, load_toml
from kgtest.errors import InputError
from kgtest.worlds.samplers import sample_world
from kgtest.worlds.spec import WorldConfig, check_world_config, load_world_spec

GENERATORS = Path(__file__).resolve().parents[2] / "generators"
SPECS = sorted(GENERATORS.glob("*.toml"))


def test_catalogue_has_the_four_specs():
    assert {"family", "composition", "taxonomy", "dual_use"} <= {p.stem for p in SPECS}


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_every_spec_loads_and_builds_small_and_fast(spec):
    t = time.perf_counter()
    cfg = load_world_spec(spec)
    w = sample_world(cfg, seed=0)
    c = w.close()
    assert time.perf_counter() - t < 1.0
    assert 50 <= len(w.facts) <= 1000 and len(c) > len(w.facts)
    assert w.name == spec.stem and cfg.description
    assert len(w.planted) == cfg.n_planted


def test_overrides_reach_sampler_params():
    cfg = load_world_spec(GENERATORS / "family.toml",
                          ["world.params.n_families=5", "world.zipf=1.5"])
    assert cfg.sampler_params().n_families == 5 and cfg.zipf == 1.5


def test_embedding_as_an_experiment_section(tmp_path):
    exp = tmp_path / "exp.toml"
    exp.write_text(f'[world]\nsampler = "taxonomy"\nrules = "{GENERATORS}/taxonomy.dl"\n'
                   '[train]\nsteps = 3\n')
    cfg = build(WorldConfig, load_toml(exp)["world"], where=str(exp), section="world")
    cfg = check_world_config(replace(cfg, base_dir=str(exp.parent)), where=str(exp))
    assert sample_world(cfg, seed=0).facts.size
    assert load_world_spec(exp).sampler == "taxonomy"  # other tables are ignored


def _spec(tmp_path, text: str, dl: str | None = None):
    p = tmp_path / "w.toml"
    p.write_text(text)
    if dl is not None:
        (tmp_path / "rules.dl").write_text(dl)
    return p


FAMILY_DL = (GENERATORS / "family.dl").read_text()


@pytest.mark.parametrize(
    ("text", "dl", "pattern"),
    [
        ('[world]\nsampler = "family_tree"\nrules = "rules.dl"\nn_plantd = 2\n', FAMILY_DL,
         r"w\.toml: unknown key 'world\.n_plantd' \(did you mean 'world\.n_planted'\?"),
        ('[world]\nsampler = "family_tree"\nrules = "rules.dl"\nzipf = "high"\n', FAMILY_DL,
         r"w\.toml: key 'world\.zipf' must be float, got 'high'"),
        ('[world]\nsampler = "family_tree"\nrules = "rules.dl"\nn_planted = -1\n', FAMILY_DL,
         r"w\.toml: key 'world\.n_planted' must be >= 0"),
        ('[world]\nsampler = "family_tree"\nrules = "rules.dl"\n[world.params]\n'
         'generations = -2\n', FAMILY_DL,
         r"w\.toml: .*key 'world\.params\.generations' must be >= 0, got -2"),
        ('[world]\nsampler = "family_tree"\nrules = "rules.dl"\n[world.params]\n'
         'n_famlies = 2\n', FAMILY_DL,
         r"w\.toml: .*unknown key 'world\.params\.n_famlies' \(did you mean "
         r"'world\.params\.n_families'\?"),
        ('[world]\nsampler = "family_tree"\nrules = "rules.dl"\n[world.params]\n'
         'children = [1]\n', FAMILY_DL,
         r"w\.toml: .*key 'world\.params\.children' must be float"),
        ('[world]\nsampler = "family_tree"\nrules = "missing.dl"\n', None,
         r"w\.toml: key 'world\.rules': rules file '.*missing\.dl' not found"),
        ('[world]\nsampler = "family_tree"\n', None,
         r"w\.toml: key 'world\.rules': sampler 'family_tree' needs a rules file"),
        ('[world]\nsampler = "famly_tree"\n', None,
         r"w\.toml: .*key 'world\.sampler': unknown sampler 'famly_tree' \(did you mean "
         r"'family_tree'\?"),
        ('[world]\nsampler = "family_tree"\nrules = "rules.dl"\n',
         "% kin\nuncle(X, Z) :- brother(X, Y), parnet(Y, Z).\n",
         r"rules\.dl:2:31: unknown relation 'parnet' \(known: .*parent"),
        ('[wrold]\nsampler = "family_tree"\n', None, r"w\.toml: no \[world\] table.*'wrold'"),
    ],
    ids=["unknown-key", "wrong-type", "negative", "negative-param", "unknown-param",
         "param-type", "missing-rules", "no-rules", "unknown-sampler", "unknown-relation",
         "no-world-table"],
)
def test_spec_errors_are_one_line_naming_file_and_key(tmp_path, text, dl, pattern):
    with pytest.raises(InputError, match=pattern) as err:
        load_world_spec(_spec(tmp_path, text, dl))
    assert "\n" not in str(err.value)


def test_extra_relations_let_rules_define_new_heads(tmp_path):
    dl = FAMILY_DL + "relative(X, Y) :- cousin(X, Y).\ncousin(X, Y) :- grandparent(Z, X), " \
                     "grandparent(Z, Y), X != Y.\n"
    text = '[world]\nsampler = "family_tree"\nrules = "rules.dl"\n'
    with pytest.raises(InputError, match="unknown relation 'relative'"):
        load_world_spec(_spec(tmp_path, text, dl))
    cfg = load_world_spec(_spec(tmp_path, text + 'extra_relations = ["relative"]\n', dl))
    assert "relative" in sample_world(cfg, seed=0).relations


def test_set_override_errors_name_the_key():
    with pytest.raises(InputError, match="key 'world.planted_proofs' must be >= 1"):
        load_world_spec(GENERATORS / "taxonomy.toml", ["world.planted_proofs=0"])
    with pytest.raises(InputError, match="key 'world.planted_proofs' must be >= 1"):
        load_world_spec(GENERATORS / "taxonomy.toml", ["world.planted_proofs=[1, 0]"])
    with pytest.raises(InputError, match="key 'world.planted_proofs' must not be empty"):
        load_world_spec(GENERATORS / "taxonomy.toml", ["world.planted_proofs=[]"])
    cfg = load_world_spec(GENERATORS / "taxonomy.toml", ["world.planted_proofs=[1, 4]"])
    assert cfg.planted_proofs == (1, 4)
