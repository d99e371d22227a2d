#!/usr/bin/env bash
# The benchmark of README "Performance": builds release binaries, builds a USERS-user /
# INTERACTIONS-interaction graph through the real durable write path, measures import rate, memory per
# edge, restart time and find_path latency (in-process and over HTTP), then measures NetworkX on the
# same graph and pairs as the peer. Figures print; nothing fails on a timing.
#
#   bench/run.sh                      # 1,000,000 users, 10,000,000 interactions (needs ~12 GB for NetworkX)
#   USERS=100000 INTERACTIONS=1000000 bench/run.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
USERS=${USERS:-1000000}
INTERACTIONS=${INTERACTIONS:-10000000}
DIR=${BENCH_DIR:-${TMPDIR:-/tmp}/tagflow-bench}
NX_PAIRS=${NX_PAIRS:-1000}
cargo build --release --locked --bin tagflow --example bench
./target/release/examples/bench --users "$USERS" --interactions "$INTERACTIONS" --dir "$DIR" \
    --binary target/release/tagflow
if python3 -c 'import networkx' 2>/dev/null; then
    python3 bench/networkx_compare.py "$DIR.export" "$NX_PAIRS"
else
    echo "networkx comparison skipped: pip install -r .ci/test-requirements.txt"
fi
