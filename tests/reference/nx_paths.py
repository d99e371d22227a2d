"""Independent reference for tagflow's graph queries: NetworkX on the same edge list.

stdin: JSON {"edges": [[from, to], ...], "nodes": [key, ...], "pairs": [[a, b], ...]}
stdout: JSON {"directed": [hops or null, ...], "undirected": [...], "in_degree": {key: n}, "out_degree": {key: n}}
"""
import json
import sys

import networkx as nx


def hops(g, a, b):
    try:
        return nx.shortest_path_length(g, a, b)
    except nx.NetworkXNoPath:
        return None


def main():
    data = json.load(sys.stdin)
    g = nx.DiGraph()
    g.add_nodes_from(data["nodes"])
    g.add_edges_from(tuple(e) for e in data["edges"])
    u = g.to_undirected(as_view=True)
    pairs = [tuple(p) for p in data["pairs"]]
    json.dump(
        {
            "directed": [hops(g, a, b) for a, b in pairs],
            "undirected": [hops(u, a, b) for a, b in pairs],
            "in_degree": dict(g.in_degree()),
            "out_degree": dict(g.out_degree()),
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
