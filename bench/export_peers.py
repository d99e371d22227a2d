"""Exports: igraph and networkit write the same graph as tagflow's benchmark did, for the ratio.

Reads the edge list the benchmark wrote (DIR.export/edges.tsv: one `from<TAB>to` per edge) and its
export rates (DIR.export/exports.json), loads the graph into igraph (and from it networkit), times
igraph's GraphML writer and networkit's GEXF writer to a file in DIR.export, and prints each one's
edges per second with tagflow's and the ratio. The peers write bare documents (ids and edges; igraph
adds the vertex names), tagflow's carry every attribute (labels, names, degrees, strengths, counts
per kind, first and last times, and in GEXF each interaction's time): bytes are printed too.

    python3 bench/export_peers.py /tmp/tagflow-bench.export
"""

import json
import os
import sys
import time


def main():
    base = sys.argv[1]
    ours = json.load(open(os.path.join(base, "exports.json")))
    import igraph as ig

    t = time.perf_counter()
    g = ig.Graph.Read_Ncol(os.path.join(base, "edges.tsv"), names=True, weights=False, directed=True)
    print(f"peers: loaded {g.vcount()} users, {g.ecount()} edges into igraph in {time.perf_counter() - t:.1f}s")
    edges = g.ecount()

    def report(peer, fmt, seconds, path):
        rate = edges / seconds
        size = os.path.getsize(path)
        os.remove(path)
        mine = ours[fmt]["edges_per_s"]
        print(
            f"export {fmt}: {peer} {rate / 1e6:.2f}M edges/s ({size / 1e6:.0f} MB); "
            f"tagflow {mine / 1e6:.2f}M edges/s ({ours[fmt]['bytes'] / 1e6:.0f} MB): {mine / rate:.2f}x"
        )

    path = os.path.join(base, "peer.graphml")
    t = time.perf_counter()
    g.write_graphml(path)
    report("igraph write_graphml (bare)", "graphml", time.perf_counter() - t, path)

    # The same columns as tagflow's GraphML (values of the same types; their values do not change
    # a writer's work): labels, names, platforms, degrees and strengths; weights, counts per kind,
    # first and last times.
    n, m = g.vcount(), g.ecount()
    g.vs["label"] = g.vs["name"]
    g.vs["platform"] = ["x"] * n
    for col in ("in_degree", "out_degree", "in_strength", "out_strength"):
        g.vs[col] = g.degree(mode="in" if col.startswith("in") else "out")
    g.es["weight"] = [1.0] * m
    for kind in ("repost", "reply", "quote", "mention", "manual"):
        g.es[kind] = [1 if kind == "repost" else 0] * m
    g.es["first_seen"] = ["2026-11-23T00:00:00Z"] * m
    g.es["last_seen"] = ["2026-11-23T00:00:00Z"] * m
    t = time.perf_counter()
    g.write_graphml(path)
    report("igraph write_graphml (same columns)", "graphml", time.perf_counter() - t, path)

    import networkit as nk
    import numpy as np

    pairs = np.array(g.get_edgelist(), dtype=np.uint64)
    n = nk.Graph(g.vcount(), directed=True)
    n.addEdges((pairs[:, 0], pairs[:, 1]))
    path = os.path.join(base, "peer.gexf")
    t = time.perf_counter()
    nk.graphio.GEXFWriter().write(n, path)
    report("networkit GEXFWriter", "gexf", time.perf_counter() - t, path)


if __name__ == "__main__":
    main()
