"""Reference analytics with NetworkX, for tests/analytics.rs.

Reads {"edges": [[from, to, weight], ...], "partition": {user: community}, "resolution": r,
"seed": s, "pairs": [[a, b], ...]} on stdin and prints what NetworkX computes on the same network.
"""
import json
import sys

import networkx as nx

data = json.load(sys.stdin)
D = nx.DiGraph()
for a, b, w in data["edges"]:
    D.add_edge(a, b, weight=w)
U = nx.Graph()
for a, b, w in data["edges"]:
    if U.has_edge(a, b):
        U[a][b]["weight"] += w
    else:
        U.add_edge(a, b, weight=w)
res = data["resolution"]
ours = {}
for user, c in data["partition"].items():
    ours.setdefault(c, set()).add(user)
louvain = nx.community.louvain_communities(U, weight="weight", resolution=res, seed=data["seed"])
simple = nx.Graph(U)
bet = nx.betweenness_centrality(simple, normalized=True)
top10 = [u for u, _ in sorted(bet.items(), key=lambda kv: (-kv[1], kv[0]))[:10]]


def cost(G):
    return {(a, b): 1.0 / d["weight"] for a, b, d in G.edges(data=True)}


paths = []
for a, b in data["pairs"]:
    try:
        und = nx.dijkstra_path_length(U, a, b, weight=lambda u, v, d: 1.0 / d["weight"])
    except nx.NetworkXNoPath:
        und = None
    try:
        dire = nx.dijkstra_path_length(D, a, b, weight=lambda u, v, d: 1.0 / d["weight"])
    except nx.NetworkXNoPath:
        dire = None
    paths.append([und, dire])

print(json.dumps({
    "pagerank": nx.pagerank(D, alpha=0.85, weight="weight", tol=1e-10),
    "core": nx.core_number(simple),
    "weak": sorted(sorted(c) for c in nx.weakly_connected_components(D)),
    "strong": sorted(sorted(c) for c in nx.strongly_connected_components(D)),
    "our_modularity": nx.community.modularity(U, list(ours.values()), weight="weight", resolution=res),
    "our_parts_connected": all(nx.is_connected(U.subgraph(c)) for c in ours.values()),
    "louvain_modularity": nx.community.modularity(U, louvain, weight="weight", resolution=res),
    "betweenness": bet,
    "betweenness_top10": top10,
    "paths": paths,
}))
