"""Writing and reading a corpus folder, and :func:`build_corpus` (``kgtest corpus build``).

A corpus folder holds (every file written atomically, and only once the whole corpus has
been rendered and checked, so a failed build leaves no file half-written)::

    train.jsonl        training documents, one JSON object per line
    eval.jsonl         evaluation/probe documents (never trained)
    unknown.jsonl      'unknown' answers for forget and validation targets
    in_context.jsonl   premises-in-context probe documents
    split.json         the split (see kgtest.corpus.splits)
    facts.tsv          every closure fact: subject relation object kind proof_count depth id
                       categories (a header line first)
    corpus_stats.json  documents, whitespace tokens by part and kind; facts by category
    corpus.json        the corpus config, seed, surface (names, templates), dropped facts

Examples
--------
>>> import tempfile
>>> from kgtest.symbolic.rules import parse_rules
>>> from kgtest.worlds.world import World
>>> w = World.from_names([("ann", "parent", "bob"), ("bob", "parent", "cy")],
...                      parse_rules("grandparent(X, Z) :- parent(X, Y), parent(Y, Z)."))
>>> with tempfile.TemporaryDirectory() as out:
...     corpus, split = build_corpus(w, SplitConfig(1, 0, target_presentation="stated_and_cot"),
...                                  CorpusConfig(), out, seed=0)
...     again = read_corpus(out)
>>> [d["text"] for d in again.train] == [d["text"] for d in corpus.train]
True
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from kgtest.config import build, to_dict
from kgtest.corpus.render import PARTS, Corpus, CorpusConfig, check_hygiene, render
from kgtest.corpus.splits import Split, SplitConfig, choose_split
from kgtest.corpus.surface import Surface
from kgtest.errors import InputError
from kgtest.perms import respect_umask
from kgtest.seeds import stage_seed

__all__ = ["write_corpus", "read_corpus", "build_corpus", "corpus_stats", "fact_categories",
           "stage_seed", "FILES"]

#: The files a corpus folder holds.
FILES = ("train.jsonl", "eval.jsonl", "unknown.jsonl", "in_context.jsonl", "split.json",
         "facts.tsv", "corpus_stats.json", "corpus.json")


def fact_categories(corpus: Corpus, split: Split) -> list[str]:
    """Per fact, its comma-joined categories: tags, presentation and split label.

    Examples: ``"base,stated,premise"``, ``"derived,cot,forget"``,
    ``"derived,implied,held_out"``.
    """
    labels = split.labels
    return [f"{t},{p},{lab}" for t, p, lab in zip(corpus.tags, corpus.presentation, labels,
                                                  strict=True)]


def corpus_stats(corpus: Corpus, split: Split) -> dict:
    """Documents and whitespace tokens by part and kind; facts by category."""
    docs, toks = {}, {}
    for part in PARTS:
        d, t = Counter(), Counter()
        for doc in corpus.part(part):
            d[doc["kind"]] += 1
            t[doc["kind"]] += len(doc["text"].split())
        docs[part], toks[part] = dict(sorted(d.items())), dict(sorted(t.items()))
    cats: Counter = Counter()
    for c in fact_categories(corpus, split):
        for x in c.split(","):
            cats[x] += 1
    return {
        "surface": corpus.surface.kind,
        "documents": docs,
        "tokens": toks,
        "facts": {"total": len(corpus.facts), **dict(sorted(cats.items()))},
        "split": split.counts(),
        "dropped": len(corpus.dropped),
    }


def _jsonl(docs) -> str:
    return "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs)


def _write_all(out_dir: Path, files: dict[str, str]) -> None:
    """Write every file to a temporary name first, then rename them all into place."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tmps: list[tuple[str, Path]] = []
    try:
        for name, text in files.items():
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=out_dir)
            tmps.append((name, Path(tmp)))
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            respect_umask(tmp)  # mkstemp makes 0600
        for name, tmp in tmps:
            os.replace(tmp, out_dir / name)
    finally:
        for _, tmp in tmps:
            tmp.unlink(missing_ok=True)


#: facts.tsv columns: the first six are every kgtest fact table's (world build, closure).
FACTS_COLUMNS = ("subject", "relation", "object", "kind", "proof_count", "depth", "id",
                 "categories")


def _facts_columns(header: str, where: Path) -> dict[str, int]:
    """Column name -> index from a facts.tsv header (also the older ``# subject ...
    proofs`` header)."""
    names = header.removeprefix("# ").split("\t")
    names = ["proof_count" if n == "proofs" else n for n in names]
    need = ("subject", "relation", "object", "id", "depth", "proof_count", "categories")
    if not set(need) <= set(names):
        raise InputError(f"{where}:1: expected a header naming {', '.join(need)}")
    return {n: i for i, n in enumerate(names)}


def write_corpus(corpus: Corpus, split: Split, out_dir: str | os.PathLike) -> Path:
    """Write a corpus folder (see the module docstring); returns its path."""
    out = Path(out_dir)
    sf = corpus.surface
    cats = fact_categories(corpus, split)
    rows = ["\t".join(FACTS_COLUMNS) + "\n"]
    for i, (s, r, o) in enumerate(corpus.facts.tolist()):
        kind = "derived" if "derived" in corpus.tags[i].split(",") else "base"
        rows.append(f"{sf.entity_names[s]}\t{sf.relation_names[r]}\t{sf.entity_names[o]}\t"
                    f"{kind}\t{int(corpus.proofs[i])}\t{int(corpus.depth[i])}\t{i}\t{cats[i]}\n")
    meta = {
        "version": 1,
        "seed": corpus.seed,
        "config": to_dict(corpus.config),
        "dropped": sorted(corpus.dropped),
        "surface": sf.to_json(),
    }
    files = {f"{part}.jsonl": _jsonl(corpus.part(part)) for part in PARTS}
    files["split.json"] = json.dumps(split.to_json(), indent=1) + "\n"
    files["facts.tsv"] = "".join(rows)
    files["corpus_stats.json"] = json.dumps(corpus_stats(corpus, split), indent=1) + "\n"
    files["corpus.json"] = json.dumps(meta, indent=1) + "\n"
    _write_all(out, files)
    return out


def _read_jsonl(path: Path) -> tuple:
    docs = []
    try:
        with path.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                if line.strip():
                    try:
                        docs.append(json.loads(line))
                    except json.JSONDecodeError as err:
                        raise InputError(f"{path}:{lineno}: invalid JSON ({err.msg})") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read ({err.strerror or err})") from None
    return tuple(docs)


def read_corpus(path: str | os.PathLike) -> Corpus:
    """Read a corpus folder written by :func:`write_corpus` (the split: ``Split.load``).

    The returned corpus parses and checks like the rendered one
    (:func:`~kgtest.corpus.render.check_hygiene`).
    """
    root = Path(path)
    try:
        meta = json.loads((root / "corpus.json").read_text(encoding="utf-8"))
        surface = Surface.from_json(meta["surface"])
        cfg = build(CorpusConfig, meta.get("config", {}), where=str(root / "corpus.json"),
                    section="corpus")
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise InputError(f"{root / 'corpus.json'}: not a kgtest corpus ({err})") from None
    ents = {n: i for i, n in enumerate(surface.entity_names)}
    rels = {n: i for i, n in enumerate(surface.relation_names)}
    facts, depth, proofs, tags, pres = [], [], [], [], []
    tsv = root / "facts.tsv"
    try:
        lines = tsv.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise InputError(f"{tsv}: cannot read ({err.strerror or err})") from None
    at = _facts_columns(lines[0] if lines else "", tsv)
    for lineno, line in enumerate(lines[1:], start=2):
        if not line or line.startswith("#"):
            continue
        cols = line.split("\t")
        try:
            if len(cols) != len(at):
                raise ValueError(f"{len(cols)} columns, the header has {len(at)}")
            s, r, o, i, d, p, cat = (cols[at[k]] for k in ("subject", "relation", "object",
                                                           "id", "depth", "proof_count",
                                                           "categories"))
            if int(i) != len(facts):
                raise ValueError("fact ids out of order")
            facts.append((ents[s], rels[r], ents[o]))
        except (ValueError, KeyError) as err:
            raise InputError(f"{tsv}:{lineno}: bad fact row ({err})") from None
        depth.append(int(d))
        proofs.append(int(p))
        c = cat.split(",")
        tags.append(",".join(x for x in c if x in ("base", "derived", "planted", "fixed", "ood")))
        pres.append(next((x for x in c if x in ("stated", "cot", "both", "implied")), ""))
    parts = {part: _read_jsonl(root / f"{part}.jsonl") for part in PARTS}
    return Corpus(
        **parts,
        facts=np.asarray(facts, dtype=np.int64).reshape(-1, 3),
        surface=surface,
        presentation=tuple(pres),
        depth=np.asarray(depth, dtype=np.int64),
        proofs=np.asarray(proofs, dtype=np.int64),
        tags=tuple(tags),
        config=cfg,
        seed=int(meta.get("seed", 0)),
        dropped=frozenset(meta.get("dropped", [])),
    )


def build_corpus(world, split_cfg: SplitConfig, corpus_cfg: CorpusConfig,
                 out_dir: str | os.PathLike, seed: int = 0, *,
                 where: str = "") -> tuple[Corpus, Split]:
    """World -> closure -> split -> corpus -> checked -> written to ``out_dir``.

    Parameters
    ----------
    world : World
        The world (sampled, or read with :func:`kgtest.worlds.samplers.world_from_tsv`).
    split_cfg, corpus_cfg : SplitConfig, CorpusConfig
    out_dir : path
        Created if missing; the files of :data:`FILES` are replaced.
    seed : int
        The run seed; the split and the corpus get ``stage_seed(seed, "split")`` and
        ``stage_seed(seed, "corpus")``.
    where : str
        The spec file, for error messages.

    Returns
    -------
    (Corpus, Split)

    Raises
    ------
    InputError
        Impossible splits or corpus settings (one line, naming the key); nothing is
        written then.
    """
    closure = world.close()
    split = choose_split(closure, world, split_cfg, stage_seed(seed, "split"), where=where)
    try:
        corpus = render(closure, world, split, corpus_cfg, stage_seed(seed, "corpus"))
    except InputError as err:
        raise InputError(f"{where}: {err}" if where else str(err)) from None
    check_hygiene(corpus, split)
    write_corpus(corpus, split, out_dir)
    return corpus, split
