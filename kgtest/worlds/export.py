"""Write a world and its closure to a folder, and describe it in a few lines.

:func:`write_world` writes (each file complete or not at all):

``facts.tsv``          header, then one closure fact per line: ``subject relation object kind
                       fixed proof_count depth domain planted`` (kind = base/derived; fixed
                       and planted 0/1; domain of a derived fact = its premises' domain, or
                       ``mixed``). :func:`kgtest.worlds.world_from_tsv` reads it back.
``rules.dl``           the rules, Datalog.
``derivations.jsonl``  one line per one-step derivation: ``{"fact": [s, r, o], "rule":
                       "...", "rule_id": i, "premises": [[s, r, o], ...]}``
``stats.json``         counts by relation, base vs derived, proof-count / depth / degree
                       histograms, entity-frequency summary, planted targets.
``graph.png``          a drawing of a sample (at most ~40 entities) of the graph.

Examples
--------
>>> import json, tempfile
>>> from kgtest.worlds.samplers import sample_world
>>> from kgtest.worlds.spec import WorldConfig
>>> w = sample_world(WorldConfig(params={"n_entities": 12}), seed=0)
>>> out = write_world(w, w.close(), tempfile.mkdtemp())
>>> sorted(p.name for p in out.iterdir())
['derivations.jsonl', 'facts.tsv', 'graph.png', 'rules.dl', 'stats.json']
>>> json.loads((out / "stats.json").read_text())["counts"]["base"]
48
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from kgtest.perms import respect_umask
from kgtest.symbolic.closure import Closure
from kgtest.symbolic.facts import atomic_write_text, facts_tsv_bytes
from kgtest.symbolic.rules import format_rules
from kgtest.symbolic.tsv import format_columns
from kgtest.worlds.world import World

__all__ = ["write_world", "describe_world", "world_stats", "fact_domains", "draw_world",
           "FACTS_HEADER"]

FACTS_HEADER = ("subject", "relation", "object", "kind", "proof_count", "depth", "fixed",
                "domain", "planted")  # the first six are every kgtest fact table's


def fact_domains(world: World, closure: Closure) -> np.ndarray:
    """``(N,)`` domain id of every closure fact; -1 = mixed (premises from two domains).

    Base facts keep the world's labels; a derived fact takes the domain its shortest
    derivations' non-fixed premises share.
    """
    n = len(closure)
    dom = np.full(n, -2, dtype=np.int64)  # -2: not yet known
    dom[: closure.n_base] = world.domain
    fixed = world.fixed_mask(closure)
    depth = closure.depth.astype(np.int64)
    prem = closure.deriv_premises
    head = closure.deriv_head
    pdepth = np.where(prem >= 0, depth[np.maximum(prem, 0)], -1)
    shortest = (pdepth < depth[head][:, None]).all(1) & (depth[head] > 0)
    for t in range(1, int(depth.max(initial=0)) + 1):
        sel = np.flatnonzero(shortest & (depth[head] == t))
        if len(sel) == 0:
            continue
        p = prem[sel]
        use = (p >= 0) & ~fixed[np.maximum(p, 0)]
        pd = dom[np.maximum(p, 0)]
        big = np.iinfo(np.int64).max
        lo = np.where(use, pd, big).min(1)
        hi = np.where(use, pd, -big).max(1)
        d = np.where(lo == big, 0, np.where((lo == hi) & (lo >= 0), lo, -1))
        h = head[sel]
        lo_h = np.full(n, big)
        hi_h = np.full(n, -big)
        np.minimum.at(lo_h, h, d)
        np.maximum.at(hi_h, h, d)
        hs = np.unique(h)
        dom[hs] = np.where(lo_h[hs] == hi_h[hs], lo_h[hs], -1)
    dom[dom == -2] = 0
    return dom


def _hist(values) -> dict[str, int]:
    c = Counter(int(v) for v in values)
    return {str(k): c[k] for k in sorted(c)}


def world_stats(world: World, closure: Closure) -> dict:
    """The summary written to ``stats.json`` (JSON-able)."""
    n, nb = len(closure), closure.n_base
    rel_names = closure.relations.names
    base_by = np.bincount(closure.facts[:nb, 1], minlength=len(rel_names))
    der_by = np.bincount(closure.facts[nb:, 1], minlength=len(rel_names))
    by_relation = {r: {"base": int(base_by[i]), "derived": int(der_by[i])}
                   for i, r in enumerate(rel_names) if base_by[i] or der_by[i]}
    ents = world.facts[:, [0, 2]].ravel()
    degree = np.bincount(ents, minlength=len(world.entities))
    order = np.argsort(-degree, kind="stable")
    sorted_deg = np.sort(degree)
    gini = 0.0
    if degree.sum():
        cum = np.cumsum(sorted_deg)
        gini = float(1 - 2 * (cum.sum() / cum[-1] - 0.5) / len(degree))
    pc = closure.proof_count
    dom = fact_domains(world, closure)
    dom_names = [*world.domain_names]
    return {
        "name": world.name,
        "meta": world.meta,
        "counts": {
            "entities": len(world.entities),
            "relations": len(rel_names),
            "rules": len(closure.rules),
            "base": nb,
            "fixed": int(world.fixed.sum()),
            "derived": n - nb,
            "closure": n,
            "derivations": closure.n_derivations,
            "base_also_derivable": int((pc[:nb] > 0).sum()),
            "planted": len(world.planted),
        },
        "entities_by_type": {t: int((world.entity_type == i).sum())
                             for i, t in enumerate(world.type_names)},
        "by_relation": by_relation,
        "by_domain": {("mixed" if d < 0 else dom_names[d]): int((dom == d).sum())
                      for d in np.unique(dom).tolist()},
        "proof_count_hist": _hist(pc[nb:]),
        "depth_hist": _hist(closure.depth),
        "degree_hist": _hist(degree),
        "entity_frequency": {
            "what": "base facts mentioning the entity",
            "min": int(sorted_deg[0]) if len(degree) else 0,
            "median": float(np.median(degree)) if len(degree) else 0.0,
            "mean": float(degree.mean()) if len(degree) else 0.0,
            "max": int(sorted_deg[-1]) if len(degree) else 0,
            "gini": round(gini, 4),
            "tail_entities": int((degree <= 1).sum()),
            "top": [[world.entities.name(int(i)), int(degree[i])] for i in order[:5]],
        },
        "planted": [list(t) for t in closure.named_all(closure.index(world.planted))]
        if len(world.planted) else [],
    }


def describe_world(world: World, closure: Closure) -> str:
    """A short human summary: counts, relations, rules, depth and proof-count histograms.

    Examples
    --------
    >>> from kgtest.worlds.samplers import sample_world
    >>> from kgtest.worlds.spec import WorldConfig
    >>> w = sample_world(WorldConfig(params={"n_entities": 12}), seed=0)
    >>> print(describe_world(w, w.close()).splitlines()[1])
    12 entities (12 entity), 48 base facts + 72 derived = 120 (72 derivations, 6 rules)
    """
    s = world_stats(world, closure)
    c = s["counts"]
    types = ", ".join(f"{n} {t}" for t, n in s["entities_by_type"].items())
    title = f"world {world.name!r}"
    if world.meta.get("sampler"):
        title += f" (sampler {world.meta['sampler']}, seed {world.meta.get('seed')})"
    if world.meta.get("description"):
        title += f": {world.meta['description']}"
    lines = [
        title,
        f"{c['entities']} entities ({types}), {c['base']} base facts + {c['derived']} derived "
        f"= {c['closure']} ({c['derivations']} derivations, {c['rules']} rules)",
    ]
    if c["fixed"]:
        lines.append(f"{c['fixed']} base facts are fixed attributes (never deleted)")
    if len(world.domain_names) > 1:
        lines.append("domains: " + ", ".join(f"{d} {n}" for d, n in s["by_domain"].items()))

    def hist(h: dict) -> str:
        return "  ".join(f"{k}:{v}" for k, v in h.items()) or "-"

    lines.append("depth (all facts)           " + hist(s["depth_hist"]))
    lines.append("proof count (derived facts) " + hist(s["proof_count_hist"]))
    ef = s["entity_frequency"]
    lines.append(f"entity frequency: min {ef['min']}, median {ef['median']:g}, max {ef['max']}, "
                 f"gini {ef['gini']:.2f}, {ef['tail_entities']} entities in <= 1 base fact")
    lines.append("relations: " + ", ".join(
        f"{r} {v['base']}+{v['derived']}" for r, v in s["by_relation"].items()))
    if s["planted"]:
        ks = sorted({int(k) for k in closure.proof_count[closure.index(world.planted)]})
        ex = "; ".join(f"{r}({a}, {b})" for a, r, b in s["planted"][:3])
        lines.append(f"planted: {len(s['planted'])} targets with exactly "
                     f"{' or '.join(map(str, ks))} proofs, e.g. {ex}")
    lines.append(f"rules ({len(closure.rules)}):")
    shown = closure.rules[:12]
    lines += [f"  {r}" for r in shown]
    if len(closure.rules) > len(shown):
        lines.append(f"  ... and {len(closure.rules) - len(shown)} more")
    return "\n".join(lines)


def _facts_tsv(world: World, closure: Closure) -> bytes:
    dom = fact_domains(world, closure)
    fixed = world.fixed_mask(closure)
    planted = np.zeros(len(closure), dtype=bool)
    if len(world.planted):
        planted[closure.index(world.planted)] = True
    pc, depth = closure.proof_count, closure.depth
    numerals = [str(i) for i in range(int(max(pc.max(initial=0), depth.max(initial=0))) + 1)]
    extra = [(["base", "derived"], (~closure.is_base).astype(np.int64)),
             (numerals, pc), (numerals, depth), (["0", "1"], fixed.astype(np.int64)),
             ([*world.domain_names, "mixed"], np.where(dom < 0, len(world.domain_names), dom)),
             (["0", "1"], planted.astype(np.int64))]
    return facts_tsv_bytes(closure.facts, closure.entities, closure.relations, extra,
                           header=FACTS_HEADER)


def _derivations_jsonl(closure: Closure) -> bytes:
    """One ``json.dumps`` line per derivation, built column by column (no per-row Python)."""
    esc_e = [json.dumps(n) for n in closure.entities.names]
    esc_r = [json.dumps(n) for n in closure.relations.names]
    f = closure.facts
    fact = format_columns(["[", (esc_e, f[:, 0]), ", ", (esc_r, f[:, 1]), ", ",
                           (esc_e, f[:, 2]), "]"]).split(b"\n")[:-1]  # (N,) JSON triples
    rules = [json.dumps(str(r)) for r in closure.rules]
    cols: list = ['{"fact": ', (fact, closure.deriv_head), ', "rule": ',
                  (rules, closure.deriv_rule), ', "rule_id": ',
                  ([str(i) for i in range(len(rules))], closure.deriv_rule), ', "premises": [']
    prem = closure.deriv_premises
    for k in range(prem.shape[1]):
        table = [b", " + t for t in fact] if k else fact
        cols.append(([*table, b""], np.where(prem[:, k] < 0, len(fact), prem[:, k])))
    cols.append("]}")
    return format_columns(cols)


def write_world(world: World, closure: Closure, out_dir: str | os.PathLike) -> Path:
    """Write ``facts.tsv``, ``rules.dl``, ``derivations.jsonl``, ``stats.json``, ``graph.png``.

    Everything is first written into a hidden temporary folder inside ``out_dir``
    (:func:`kgtest.stages.owned_tempdir`); only when all five files exist are they moved
    into place (each move an atomic rename), so a failure leaves no half-written file, and
    the temporary folder of a build that was killed is removed by the next build into
    ``out_dir``. Other files in ``out_dir`` are left alone.

    Parameters
    ----------
    world : World
    closure : Closure
        ``world.close()``.
    out_dir : path
        Created if missing.

    Returns
    -------
    Path
        ``out_dir``.
    """
    from kgtest.stages import owned_tempdir

    out = Path(out_dir)
    with owned_tempdir(out, "world") as tmp:
        atomic_write_text(tmp / "facts.tsv", _facts_tsv(world, closure))
        header = f"% rules of world {world.name!r} ({len(closure.rules)} rules)\n"
        atomic_write_text(tmp / "rules.dl", header + format_rules(closure.rules))
        atomic_write_text(tmp / "derivations.jsonl", _derivations_jsonl(closure))
        atomic_write_text(tmp / "stats.json",
                          json.dumps(world_stats(world, closure), indent=1) + "\n")
        draw_world(world, closure, tmp / "graph.png")
        for f in ("facts.tsv", "rules.dl", "derivations.jsonl", "stats.json", "graph.png"):
            os.replace(tmp / f, out / f)
    return out


# --- drawing ---------------------------------------------------------------------------


def _entity_domains(world: World) -> np.ndarray:
    """``(E,)`` domain of each entity: that of the first base fact naming it."""
    dom = np.zeros(len(world.entities), dtype=np.int64)
    for col in (2, 0):  # subjects win over objects
        dom[world.facts[::-1, col]] = world.domain[::-1]
    return dom


def _sample_nodes(world: World, closure: Closure, max_nodes: int) -> list[int]:
    """Entities around a focus (a planted target, else a deepest derived fact), by BFS over
    the non-fixed base facts, so the sample is a connected piece of the stated graph. In a
    world with several domains, an equal share is sampled around a focus in each."""
    base = world.facts[~world.fixed]
    adj: dict[int, list[int]] = {}
    for s, _, o in base.tolist():
        adj.setdefault(s, []).append(o)
        adj.setdefault(o, []).append(s)
    focus = [(int(s), int(o)) for s, _, o in world.planted.tolist()]
    if len(closure) > closure.n_base:
        derived = closure.facts[closure.n_base:][np.argsort(-closure.depth[closure.n_base:],
                                                            kind="stable")]
        focus += [(int(s), int(o)) for s, _, o in derived[:50].tolist()]
    focus += [(int(s), int(o)) for s, _, o in base[:1].tolist()]
    edom = _entity_domains(world)
    n_dom = len(world.domain_names)
    seen: list[int] = []
    for d in range(n_dom):
        starts = [f for f in focus if edom[f[0]] == d] or (focus if n_dom == 1 else [])
        if not starts:
            continue
        quota = len(seen) + (max_nodes - len(seen)) // (n_dom - d)
        queue = [u for u in dict.fromkeys(starts[0]) if u not in seen]
        seen += queue
        while queue and len(seen) < quota:
            nxt = []
            for u in queue:
                for v in adj.get(u, []):
                    if v not in seen and len(seen) < quota:
                        seen.append(v)
                        nxt.append(v)
            queue = nxt
    return seen


def draw_world(
    world: World,
    closure: Closure,
    path: str | os.PathLike,
    *,
    max_nodes: int = 22,
    max_derived: int = 14,
) -> None:
    """Draw a connected sample of the graph to a PNG (atomically).

    Up to ``max_nodes`` entities around a planted target (or a deepest derived fact);
    all stated facts among them as solid arrows, up to ``max_derived`` derived facts
    (planted and deepest first) as dashed coloured arrows, planted targets in red. Edge
    labels are relation names; fixed attribute facts (e.g. gender) colour the nodes
    instead of being drawn as edges. Uses matplotlib's Agg canvas, no global state.
    """
    import networkx as nx
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    nodes = _sample_nodes(world, closure, max_nodes)
    edges, base_ids, der_ids, n_der_all, planted = _drawn_facts(world, closure, nodes,
                                                                max_derived)
    g = nx.DiGraph()
    g.add_nodes_from(nodes)
    pos = _layout(nodes, edges)
    colors = _NodeColors(world, closure, nodes)
    ent = closure.entities.names
    fig = Figure(figsize=(13, 10), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_axis_off()
    nx.draw_networkx_nodes(g, pos, ax=ax, node_size=_NODE_SIZE, edgecolors="#444444",
                           node_color=[colors(u) for u in g.nodes])
    nx.draw_networkx_labels(g, pos, ax=ax, labels={u: ent[u] for u in g.nodes}, font_size=9)
    arcs = _edge_arcs(ax, pos, edges)
    handles = _edge_legend(planted[der_ids].any()) + colors.legend()
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 4), fontsize=9,
               frameon=False)
    sampler = world.meta.get("sampler", "")
    ax.set_title(
        f"{world.name}{f' ({sampler})' if sampler and sampler != world.name else ''}: "
        f"{len(nodes)} of {len(world.entities)} entities, {len(base_ids)} stated facts and "
        f"{len(der_ids)} of {n_der_all} derived facts among them\n"
        "an arrow X -> Y labelled rel is the fact rel(X, Y)", fontsize=11)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.set_layout_engine(None)  # laid out: without an engine, savefig draws only once
    _draw_edges(ax, arcs, edges)  # bent in pixels: after the layout
    _save_png(fig, Path(path))


def _drawn_facts(world: World, closure: Closure, nodes: list[int], max_derived: int):
    """The facts drawn among ``nodes`` as edges: ``(subject, object, kind) -> relation
    names`` (one edge per ordered pair and kind), the stated and derived fact ids drawn,
    how many derived facts there were, and the ``(N,)`` planted mask."""
    keep = np.zeros(len(closure.entities), dtype=bool)
    keep[nodes] = True
    f = closure.facts
    fixed = world.fixed_mask(closure)
    inside = keep[f[:, 0]] & keep[f[:, 2]] & ~fixed & (f[:, 0] != f[:, 2])
    planted = np.zeros(len(closure), dtype=bool)
    if len(world.planted):
        planted[closure.index(world.planted)] = True
    base_ids = np.flatnonzero(inside & closure.is_base)
    der_ids = np.flatnonzero(inside & ~closure.is_base)
    n_der_all = len(der_ids)
    der_ids = _pick_derived(closure, der_ids, planted, max_derived)
    edges: dict[tuple[int, int, str], list[str]] = {}
    rel = closure.relations.names
    for fid in [*base_ids.tolist(), *der_ids.tolist()]:
        s, r, o = f[fid].tolist()
        kind = "planted" if planted[fid] else "base" if closure.is_base[fid] else "derived"
        edges.setdefault((s, o, kind), []).append(rel[r])
    return edges, base_ids, der_ids, n_der_all, planted


def _layout(nodes: list[int], edges: dict) -> dict:
    """Node positions: laid out on the stated facts (derived edges then read as shortcuts),
    each connected piece on its own, side by side."""
    import networkx as nx

    skeleton = nx.Graph()
    skeleton.add_nodes_from(nodes)
    skeleton.add_edges_from((u, v) for u, v, kind in edges if kind == "base")
    pos = {}
    comps = sorted(nx.connected_components(skeleton), key=lambda c: -len(c))
    x0 = 0.0
    for comp in comps:
        sub = skeleton.subgraph(comp)
        width = max(np.sqrt(len(comp) / max(len(nodes), 1)) * 2, 0.3)
        lay = nx.spring_layout(sub, seed=0, k=2.6 / max(np.sqrt(len(comp)), 1),
                               iterations=300, center=(0, 0), scale=width / 2)
        for u, (x, y) in lay.items():
            pos[u] = np.array([x0 + width / 2 + x, y])
        x0 += width * 1.15
    return pos


class _NodeColors:
    """A node's colour: by domain (dual-use worlds), else by its fixed attribute, else by
    its entity type; :meth:`legend` explains whichever is used."""

    TYPES = ["#9ecae1", "#fdd0a2", "#c7e9c0", "#dadaeb", "#fcbba1", "#d9d9d9"]
    ATTRS = ["#9ecae1", "#fcbba1", "#c7e9c0", "#dadaeb"]
    DOMAINS = ["#9ecae1", "#fcbba1", "#c7e9c0", "#dadaeb"]

    def __init__(self, world: World, closure: Closure, nodes: list[int]):
        keep = np.zeros(len(closure.entities), dtype=bool)
        keep[nodes] = True
        ent = closure.entities.names
        self.world = world
        self.attrs: dict[int, list[str]] = {}  # fixed attributes, shown in the node label
        for s, _, o in world.facts[world.fixed].tolist():
            if keep[s]:
                self.attrs.setdefault(s, []).append(ent[o])
        self.attr_vals = sorted({v for vs in self.attrs.values() for v in vs})
        self.edom = _entity_domains(world)
        self.by_domain = 1 < len(world.domain_names) <= len(self.DOMAINS)

    def __call__(self, u: int) -> str:
        if self.by_domain:
            return self.DOMAINS[int(self.edom[u])]
        if self.attrs.get(u) and len(self.attr_vals) <= len(self.ATTRS):
            return self.ATTRS[self.attr_vals.index(self.attrs[u][0])]
        types = self.world.entity_type
        return self.TYPES[int(types[u]) % len(self.TYPES)] if u < len(types) else self.TYPES[-1]

    def legend(self) -> list:
        from matplotlib.patches import Patch

        w = self.world
        if self.by_domain:
            return [Patch(fc=self.DOMAINS[i], ec="#444444", label=f"{d} domain")
                    for i, d in enumerate(w.domain_names)]
        if self.attr_vals and len(self.attr_vals) <= len(self.ATTRS):
            return [Patch(fc=self.ATTRS[i], ec="#444444", label=f"{v} (fixed attribute)")
                    for i, v in enumerate(self.attr_vals)]
        if len(w.type_names) > 1:
            return [Patch(fc=self.TYPES[i % len(self.TYPES)], ec="#444444", label=t)
                    for i, t in enumerate(w.type_names)]
        return []


_NODE_SIZE = 900  # node markers, points^2

_EDGE_STYLES = {
    "base": dict(style="solid", edge_color="#333333", width=1.4),
    "derived": dict(style="dashed", edge_color="#2b8cbe", width=1.2),
    "planted": dict(style="dashed", edge_color="#d7301f", width=2.4),
}


def _edge_legend(with_planted: bool) -> list:
    """Legend entries of the edge kinds drawn."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color="#333333", lw=1.4, label="stated (base) fact"),
               Line2D([], [], color="#2b8cbe", lw=1.2, ls="--", label="derived fact")]
    if with_planted:
        handles.append(Line2D([], [], color="#d7301f", lw=2.4, ls="--",
                              label="planted target (exact proof count)"))
    return handles


def _edge_arcs(ax, pos: dict, edges: dict) -> list:
    """Per edge kind, its edges' ``(keys, starts, ends, rads)``; each edge bent where its
    reverse is drawn too, or where it shares its pair with a stated fact. Grows the data
    limits to hold the arcs (as networkx's arrows would), then fixes them."""
    from kgtest.worlds.arrows import arc_points

    pairs = {(u, v) for u, v, _ in edges}
    arcs = []
    ax.autoscale_view()  # the nodes' limits: the arcs bend in the pixels they give
    for kind in _EDGE_STYLES:
        keys = [(u, v, k) for u, v, k in edges if k == kind]
        rads = np.array([(0.18 if (v, u) in pairs else 0.0)
                         + (0.25 if kind != "base" and (u, v, "base") in edges else 0.0)
                         for u, v, _ in keys])
        ends = [np.array([pos[e[i]] for e in keys]).reshape(-1, 2) for i in (0, 1)]
        arcs.append((keys, *ends, rads))
        if keys:  # networkx: the ends' box padded by 5%, and each arc's own extent
            xy = np.concatenate(ends)
            pad = 0.05 * (xy.max(0) - xy.min(0))
            ax.update_datalim(arc_points(ax, *ends, rads))
            ax.update_datalim([xy.min(0) - pad, xy.max(0) + pad])
            ax.autoscale_view()
    ax.set(xlim=ax.get_xlim(), ylim=ax.get_ylim())  # fixed: the arcs are bent in pixels
    return arcs


def _draw_edges(ax, arcs: list, edges: dict) -> None:
    """Edges by kind (:func:`kgtest.worlds.arrows.arc_arrows`, node circles of
    ``_NODE_SIZE``), then their labels on top. ``ax`` must be laid out."""
    from kgtest.worlds.arrows import arc_arrows

    shrink = np.sqrt(_NODE_SIZE) / 2  # points: the node circle's radius
    labels = []
    for (keys, starts, ends, rads), st in zip(arcs, _EDGE_STYLES.values(), strict=True):
        mid = arc_arrows(ax, starts, ends, rads, shrink=shrink, head=14, width=st["width"],
                         color=st["edge_color"], style=st["style"])
        labels += [(x, y, _short(edges[key]), st["edge_color"])
                   for key, (x, y) in zip(keys, mid.tolist(), strict=True)]
    box = dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.85)
    for x, y, text, color in labels:  # labels last, so no edge is drawn over them
        ax.text(x, y, text, size=8, color=color, ha="center", va="center", bbox=box,
                zorder=1, clip_on=True)


def _save_png(fig, out: Path) -> None:
    """``fig`` as a PNG at ``out``, atomically, with the umask's permissions."""
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".png", dir=out.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, format="png")
        respect_umask(tmp)  # mkstemp makes 0600
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _pick_derived(closure: Closure, ids: np.ndarray, planted: np.ndarray, k: int) -> np.ndarray:
    """Up to ``k`` derived facts: planted first, then round-robin over relations (deepest
    first within each), so the drawing shows every kind of derived fact it can."""
    ids = ids[np.lexsort((-closure.depth[ids], ~planted[ids]))]
    by_rel: dict[int, list[int]] = {}
    for i in ids.tolist():
        by_rel.setdefault(-1 if planted[i] else int(closure.facts[i, 1]), []).append(i)
    out = by_rel.pop(-1, [])[:k]
    queues = list(by_rel.values())
    while len(out) < k and any(queues):
        for q in queues:
            if q and len(out) < k:
                out.append(q.pop(0))
    return np.asarray(out, dtype=np.int64)


def _short(rels: list[str]) -> str:
    """Edge label: up to two relation names, then ``+n``."""
    uniq = list(dict.fromkeys(rels))
    return ", ".join(uniq[:2]) + (f" +{len(uniq) - 2}" if len(uniq) > 2 else "")
