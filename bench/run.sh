#!/usr/bin/env bash
# The benchmark of README "Performance": builds release binaries, builds a USERS-user /
# INTERACTIONS-interaction graph through the real durable write path, measures import rate, memory per
# edge, restart time and find_path latency (in-process and over HTTP), the analytics (snapshots, each
# algorithm, the timeline, ingest while analyses run, a cached answer over HTTP); then measures the
# exports in every format; then the peers on the same graph: NetworkX for paths, networkit, igraph
# and NetworkX for the analytics, igraph and networkit for the exports.
# Then bench/http.sh: wrk against nginx, and heavy reads hammered while /status and writes are measured.
# Figures print; nothing fails on a timing.
#
#   pip install -r bench/requirements.txt
#   bench/run.sh                      # 1,000,000 users, 10,000,000 interactions (needs ~16 GB for NetworkX)
#   USERS=100000 INTERACTIONS=1000000 bench/run.sh
#   NX_ANALYTICS=0 bench/run.sh       # without NetworkX's analytics (minutes at full size)
#   ROUNDS=1 bench/run.sh             # tagflow's algorithms and networkit's once each (default 3)
#   PG_URL=postgres://postgres@127.0.0.1:5432/tagflow_bench bench/run.sh
#                                     # also the PostgreSQL store (the database is dropped and created)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
USERS=${USERS:-1000000}
INTERACTIONS=${INTERACTIONS:-10000000}
DIR=${BENCH_DIR:-${TMPDIR:-/tmp}/tagflow-bench}
NX_PAIRS=${NX_PAIRS:-1000}
cargo build --release --locked --bin tagflow --example bench
./target/release/examples/bench --users "$USERS" --interactions "$INTERACTIONS" --dir "$DIR" \
    --binary target/release/tagflow
if ! python3 -c 'import networkx, networkit, igraph, numpy' 2>/dev/null; then
    echo "the peers are missing: pip install -r bench/requirements.txt" >&2
    exit 1
fi
python3 bench/networkx_compare.py "$DIR.export" "$NX_PAIRS"
python3 bench/export_peers.py "$DIR.export"
# tagflow's algorithms and networkit's in turns, ROUNDS each (the best of each side's rounds).
nx_flag=()
if [ "${NX_ANALYTICS:-1}" = 1 ]; then nx_flag=(--networkx); fi
python3 bench/analytics_peers.py "$DIR.export" "${nx_flag[@]}" --rounds "${ROUNDS:-3}" \
    --tagflow "./target/release/examples/bench --algorithms $DIR.export"
# The PostgreSQL store on the same workload: import, checkpoint, a replica's start, follower lag.
if [ -n "${PG_URL:-}" ]; then
    db=${PG_URL##*/}
    psql "${PG_URL%/*}/postgres" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" -c "CREATE DATABASE \"$db\""
    ./target/release/examples/bench --users "$USERS" --interactions "$INTERACTIONS" --no-micro --postgres "$PG_URL"
fi
# HTTP: tagflow against nginx, and heavy reads hammered while /status and writes are measured.
if command -v wrk >/dev/null && command -v nginx >/dev/null; then
    bench/http.sh "$DIR"
else
    echo "bench/http.sh needs wrk and nginx: apt-get install -y wrk nginx" >&2
    exit 1
fi
