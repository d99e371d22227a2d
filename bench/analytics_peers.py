"""The peers of tagflow's analytics, measured in the same run as bench/run.sh's Rust benchmark.

usage: analytics_peers.py EXPORT_DIR [--networkx] [--rounds R --tagflow CMD]

Reads EXPORT_DIR/analytics.u32 (the whole selected network as little-endian uint32 triples
from, to, weight; dense ids) and EXPORT_DIR/tagflow.json (tagflow's figures on that network), runs
networkit and igraph (and, with --networkx, NetworkX where it finishes in minutes) on the same
network with the same definitions, and prints each time beside tagflow's with the ratio
peer time / tagflow time (above 1: tagflow is faster).

Definitions, as tagflow's: PageRank directed and weighted, damping 0.85, dangling mass spread
uniformly, stopped when the L1 change is below 1e-8; components weak and strong on the directed
network; core numbers, communities and betweenness on the undirected network with
weight(u,v) = weight(u->v) + weight(v->u) (core numbers and betweenness ignore weights).
With --rounds R and --tagflow CMD (a command that times tagflow's algorithms again on the same
network and writes EXPORT_DIR/tagflow-algorithms.json: `bench --algorithms EXPORT_DIR`), tagflow and
networkit take turns, R rounds each, and each side's figure is its best over its rounds: both sides
are timed within minutes of each other, on a machine whose speed drifts by 2-3x within an hour.
Peers run on every core (networkit's threads = the machine's cores; igraph and NetworkX have one).
Each figure is the best of 3 runs, as on tagflow's side (the machine is shared); the slowest (betweenness,
networkit's ParallelLeiden, igraph's Louvain and Leiden, NetworkX) run once, and so do igraph's
components, which igraph caches on the graph (a second call returns the first's result).
"""
import json
import os
import subprocess
import sys
import time

import numpy as np


BEST_OF = 3


def timed(f, label=None, runs=BEST_OF):
    """The best of `runs` timings (the machine is shared; tagflow's side is timed the same way)."""
    took = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        out = f()
        took = min(took, (time.perf_counter() - t) * 1e3)
    if label:
        print(f"  {label}: {took:.0f} ms", flush=True)
    return out, took


def load(base):
    raw = np.fromfile(os.path.join(base, "analytics.u32"), dtype="<u4").reshape(-1, 3)
    src, dst, w = raw[:, 0].astype(np.int64), raw[:, 1].astype(np.int64), raw[:, 2].astype(np.float64)
    n = int(max(src.max(), dst.max())) + 1 if len(raw) else 0
    # Undirected simple network: each unordered pair once, the weights of both directions summed.
    lo, hi = np.minimum(src, dst), np.maximum(src, dst)
    key = lo * n + hi
    order = np.argsort(key, kind="stable")
    key_sorted = key[order]
    uniq, start = np.unique(key_sorted, return_index=True)
    uw = np.add.reduceat(w[order], start) if len(start) else np.array([])
    ulo, uhi = uniq // n, uniq % n
    return n, (src, dst, w), (ulo, uhi, uw)


def networkit_figures(n, directed, undirected, samples, threads):
    import networkit as nk

    nk.setNumberOfThreads(threads)
    src, dst, w = directed
    ulo, uhi, uw = undirected
    g, load_ms = timed(lambda: nk.graph.GraphFromCoo((w, (src.astype(np.uint64), dst.astype(np.uint64))), n=n, directed=True, weighted=True), runs=1)
    gu = nk.graph.GraphFromCoo((uw, (ulo.astype(np.uint64), uhi.astype(np.uint64))), n=n, directed=False, weighted=True)
    gu_plain = nk.graph.GraphFromCoo((np.ones(len(ulo)), (ulo.astype(np.uint64), uhi.astype(np.uint64))), n=n, directed=False, weighted=False)
    f = {"version": nk.__version__, "load_ms": load_ms}

    def pr():
        p = nk.centrality.PageRank(g, damp=0.85, tol=1e-8, distributeSinks=nk.centrality.SinkHandling.DistributeSinks)
        p.norm = nk.centrality.Norm.L1_NORM
        p.run()
        return p

    p, f["pagerank_ms"] = timed(pr, "networkit pagerank")
    f["pagerank_iterations"] = p.numberOfIterations()
    weak, f["weak_ms"] = timed(lambda: nk.components.WeaklyConnectedComponents(g).run(), "networkit weak")
    strong, f["strong_ms"] = timed(lambda: nk.components.StronglyConnectedComponents(g).run(), "networkit strong")
    cores, f["cores_ms"] = timed(lambda: nk.centrality.CoreDecomposition(gu_plain).run(), "networkit cores")
    f["weak_count"] = weak.numberOfComponents()
    f["strong_count"] = strong.numberOfComponents()
    f["max_core"] = int(max(cores.scores(), default=0))
    plm, f["plm_ms"] = timed(lambda: nk.community.PLM(gu, refine=True, gamma=1.0).run(), "networkit plm")
    f["plm_modularity"] = nk.community.Modularity().getQuality(plm.getPartition(), gu)
    pl, f["parallel_leiden_ms"] = timed(lambda: nk.community.ParallelLeiden(gu, randomize=True, iterations=3, gamma=1.0).run(), "networkit parallel_leiden", 1)
    f["parallel_leiden_modularity"] = nk.community.Modularity().getQuality(pl.getPartition(), gu)
    f["betweenness_ms"] = timed(lambda: nk.centrality.EstimateBetweenness(gu_plain, samples, normalized=True, parallel=True).run(), "networkit betweenness", 1)[1]
    return f


def igraph_figures(n, directed, undirected):
    import igraph as ig

    src, dst, w = directed
    ulo, uhi, uw = undirected
    g, load_ms = timed(lambda: ig.Graph(n=n, edges=np.column_stack([src, dst]).tolist(), directed=True, edge_attrs={"weight": w.tolist()}), runs=1)
    gu = ig.Graph(n=n, edges=np.column_stack([ulo, uhi]).tolist(), directed=False, edge_attrs={"weight": uw.tolist()})
    f = {"version": ig.__version__, "load_ms": load_ms}
    # PRPACK solves the linear system to machine precision: tighter than 1e-8, not looser.
    f["pagerank_ms"] = timed(lambda: g.pagerank(damping=0.85, weights="weight"), "igraph pagerank")[1]
    f["weak_ms"] = timed(lambda: g.connected_components(mode="weak"), "igraph weak", 1)[1]
    f["strong_ms"] = timed(lambda: g.connected_components(mode="strong"), "igraph strong", 1)[1]
    f["cores_ms"] = timed(lambda: gu.coreness(), "igraph cores")[1]
    lv, f["louvain_ms"] = timed(lambda: gu.community_multilevel(weights="weight"), "igraph louvain", 1)
    f["louvain_modularity"] = gu.modularity(lv.membership, weights="weight")
    ld, f["leiden_ms"] = timed(lambda: gu.community_leiden(objective_function="modularity", weights="weight", n_iterations=-1), "igraph leiden", 1)
    f["leiden_modularity"] = gu.modularity(ld.membership, weights="weight")
    return f


def networkx_figures(n, directed):
    import networkx as nx

    src, dst, w = directed
    f = {"version": nx.__version__}
    def build():
        g = nx.DiGraph()
        g.add_nodes_from(range(n))
        g.add_weighted_edges_from(zip(src.tolist(), dst.tolist(), w.tolist()))
        return g
    g, f["load_ms"] = timed(build, "networkx load", 1)
    # NetworkX's criterion is users x tol: 1e-8 / n gives the same L1 bound as the others'.
    f["pagerank_ms"] = timed(lambda: nx.pagerank(g, alpha=0.85, weight="weight", tol=1e-8 / max(n, 1)), "networkx pagerank", 1)[1]
    f["weak_ms"] = timed(lambda: sum(1 for _ in nx.weakly_connected_components(g)), "networkx weak", 1)[1]
    f["strong_ms"] = timed(lambda: sum(1 for _ in nx.strongly_connected_components(g)), "networkx strong", 1)[1]
    gu = g.to_undirected(as_view=False)
    gu.remove_edges_from(nx.selfloop_edges(gu))
    f["cores_ms"] = timed(lambda: nx.core_number(gu), "networkx cores", 1)[1]
    return f


def merged(best, new):
    """`best` with each timing of `new` that is faster (and any figure it lacks)."""
    out = dict(best)
    for k, v in new.items():
        out[k] = min(out[k], v) if k.endswith("_ms") and k in out else out.get(k, v)
    return out


GOALS = [
    ("PageRank", "pagerank_ms", "pagerank_ms"),
    ("weak", "weak_ms", "weak_ms"),
    ("strong", "strong_ms", "strong_ms"),
    ("cores", "cores_ms", "cores_ms"),
    ("Leiden/PLM", "leiden_ms", "plm_ms"),
    ("Leiden/ParallelLeiden", "leiden_ms", "parallel_leiden_ms"),
    ("betweenness", "betweenness_ms", "betweenness_ms"),
]


def main():
    base = sys.argv[1]
    args = sys.argv[2:]
    with_nx = "--networkx" in args
    rounds = int(args[args.index("--rounds") + 1]) if "--rounds" in args else 1
    command = args[args.index("--tagflow") + 1] if "--tagflow" in args else None
    if rounds > 1 and not command:
        sys.exit("--rounds needs --tagflow CMD: the rounds alternate tagflow and networkit")
    with open(os.path.join(base, "tagflow.json")) as fh:
        tf = json.load(fh)
    n, directed, undirected = load(base)
    threads = int(tf.get("threads", os.cpu_count() or 1))
    print(f"peers on the same network: {n} users, {len(directed[0])} directed edges, {len(undirected[0])} undirected pairs; {threads} threads")
    peers = {}
    mine = None
    for r in range(1, rounds + 1):
        if command:
            print(f"round {r} of {rounds}: tagflow ({command})", flush=True)
            subprocess.run(command, shell=True, check=True)
            with open(os.path.join(base, "tagflow-algorithms.json")) as fh:
                got = json.load(fh)
            mine = got if mine is None else merged(mine, got)
        else:
            got = tf
        print(f"round {r} of {rounds}: networkit", flush=True)
        nk = networkit_figures(n, directed, undirected, int(tf["betweenness_samples"]), threads)
        peers["networkit"] = nk if r == 1 else merged(peers["networkit"], nk)
        print(f"round {r} ratios (networkit / tagflow): " + ", ".join(f"{label} {nk[theirs] / max(got[ours], 1e-9):.2f}x" for label, ours, theirs in GOALS), flush=True)
    if mine is not None:
        # The algorithms' figures are the rounds' best; the snapshot's stay those of the run that took it.
        tf = merged({k: v for k, v in tf.items() if k not in mine}, mine)
        print(f"best of {rounds} rounds each:")
    peers["igraph"] = igraph_figures(n, directed, undirected)
    if with_nx:
        peers["networkx"] = networkx_figures(n, directed)
    rows = [
        ("PageRank (L1 < 1e-8)", "pagerank_ms", {"networkit": "pagerank_ms", "igraph": "pagerank_ms", "networkx": "pagerank_ms"}),
        ("weak components", "weak_ms", {"networkit": "weak_ms", "igraph": "weak_ms", "networkx": "weak_ms"}),
        ("strong components", "strong_ms", {"networkit": "strong_ms", "igraph": "strong_ms", "networkx": "strong_ms"}),
        ("core numbers", "cores_ms", {"networkit": "cores_ms", "igraph": "cores_ms", "networkx": "cores_ms"}),
        ("Leiden (networkit: ParallelLeiden)", "leiden_ms", {"networkit": "parallel_leiden_ms", "igraph": "leiden_ms"}),
        ("Leiden vs networkit PLM", "leiden_ms", {"networkit": "plm_ms"}),
        ("Louvain (igraph: multilevel)", "louvain_ms", {"igraph": "louvain_ms"}),
        (f"betweenness, {tf['betweenness_samples']} samples", "betweenness_ms", {"networkit": "betweenness_ms"}),
    ]
    names = list(peers)
    head = ["measure", "tagflow ms"] + [f"{p} {peers[p]['version']} ms (ratio)" for p in names]
    print(" | ".join(head))
    for label, mine, theirs in rows:
        cells = [label, f"{tf[mine]:.0f}"]
        for p in names:
            k = theirs.get(p)
            if k and k in peers[p]:
                t = peers[p][k]
                cells.append(f"{t:.0f} ({t / max(tf[mine], 1e-9):.2f}x)")
            else:
                cells.append("-")
        print(" | ".join(cells))
    print(
        "modularity: tagflow Leiden {:.4f}, Louvain {:.4f}; networkit PLM {:.4f}, ParallelLeiden {:.4f}; igraph Leiden {:.4f}, multilevel {:.4f}".format(
            tf["leiden_modularity"],
            tf["louvain_modularity"],
            peers["networkit"]["plm_modularity"],
            peers["networkit"]["parallel_leiden_modularity"],
            peers["igraph"]["leiden_modularity"],
            peers["igraph"]["louvain_modularity"],
        )
    )
    print(f"tagflow Leiden modularity - networkit PLM's: {tf['leiden_modularity'] - peers['networkit']['plm_modularity']:+.4f} (goal >= -0.005)")
    print(f"networkit PageRank iterations: {peers['networkit']['pagerank_iterations']}")
    nkf = peers["networkit"]
    for key in ["weak_count", "strong_count", "max_core"]:
        if key in tf:
            same = "same" if tf[key] == nkf[key] else "DIFFERENT"
            print(f"{key}: tagflow {tf[key]}, networkit {nkf[key]} ({same})")
    with open(os.path.join(base, "peers.json"), "w") as fh:
        json.dump(peers, fh, indent=2)


if __name__ == "__main__":
    main()
