#!/usr/bin/env bash
# HTTP figures of README "Performance", measured with wrk against a peer in the same run:
#
# 1. Throughput of the common reads (GET /status, /vertices?limit=100, a find_path) against nginx
#    serving each answer as a static file of the same size, same machine, same wrk (64 connections):
#    requests per second and the ratio tagflow / nginx.
# 2. Heavy reads hammered by 8 connections (a hub's edges, /graph?top=500, /vertices?sort=degree,
#    a find_path that misses along two long chains) while /status latency (p50, p99) and the durable
#    write rate are measured, against the same measures with nothing hammering, and with /status
#    itself hammered; in rounds, each row's writes against the writes alone measured just before and
#    just after it (the machine's speed drifts within a minute).
#
# Runs on the graph the main benchmark built (bench/run.sh calls it last), with the rate limits off so
# that what is measured is the service, not the limiter; writes go to users named bench-w-*.
#
#   apt-get install -y wrk nginx
#   bench/http.sh [DATA_DIR]            # default: the main benchmark's directory
#   SECS=10 ROUNDS=3 bench/http.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DIR=${1:-${BENCH_DIR:-${TMPDIR:-/tmp}/tagflow-bench}}
SECS=${SECS:-10}
ROUNDS=${ROUNDS:-3}
for tool in wrk nginx curl; do
    command -v "$tool" >/dev/null || { echo "bench/http.sh needs $tool: apt-get install -y wrk nginx curl" >&2; exit 1; }
done
[ -e "$DIR/db" ] || { echo "no graph in $DIR: run bench/run.sh first (or pass a data directory)" >&2; exit 1; }
cargo build --release --locked --bin tagflow
BIN=target/release/tagflow
WORK=$(mktemp -d)
T_PORT=${T_PORT:-18181}
N_PORT=${N_PORT:-18182}
cleanup() {
    [ -n "${T_PID:-}" ] && kill "$T_PID" 2>/dev/null && wait "$T_PID" 2>/dev/null
    [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

RUST_LOG=warn "$BIN" serve --data-dir "$DIR" --host 127.0.0.1 --port "$T_PORT" --sources none \
    --rate-limit-writes 0 --rate-limit-reads 0 >"$WORK/tagflow.log" 2>&1 &
T_PID=$!
for _ in $(seq 1 600); do
    curl -fs "http://127.0.0.1:$T_PORT/status" >/dev/null 2>&1 && break
    sleep 0.5
done
T="http://127.0.0.1:$T_PORT"
workers=$(nproc)
users() { curl -fs "$T/status" | python3 -c 'import json, sys; print(json.load(sys.stdin)["users"])'; }
echo "graph: $(users) users at the start"

# The users the heavy reads need: the busiest (a hub), and two near ones (the first two by key,
# past the chains of users earlier runs' writes left, named bench-w-*).
hub=$(curl -fs "$T/vertices?sort=degree&limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["vertices"][0]["id"])')
read -r near_a near_b < <(curl -fs "$T/vertices?limit=2&cursor=0:bench-w-~" | python3 -c '
import json, sys
users = json.load(sys.stdin)["vertices"]
print(users[0]["id"], users[1]["id"])')
enc() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }
path_route="/find_path/$(enc "$near_a")/$(enc "$near_b")"

rps() { sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' "$1"; }
lat() { # p50 and p99 in ms from wrk --latency
    python3 - "$1" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def ms(p):
    m = re.search(r"^\s*%d%%\s+([\d.]+)(us|ms|s)\s*$" % p, text, re.M)
    v, u = float(m.group(1)), m.group(2)
    return v / 1000 if u == "us" else v * 1000 if u == "s" else v
print("%.2f %.2f" % (ms(50), ms(99)))
PY
}

echo "== throughput: tagflow vs nginx serving the same bytes as a static file (wrk, 64 connections, ${SECS}s each, $workers cores)"
mkdir -p "$WORK/root"
declare -A routes=([status]="/status" [vertices]="/vertices?limit=100" [find_path]="$path_route")
cat >"$WORK/nginx.conf" <<EOF
worker_processes $workers;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$N_PORT;
        root $WORK/root;
        default_type application/json;
    }
}
EOF
for name in status vertices find_path; do
    curl -fs "$T${routes[$name]}" >"$WORK/root/$name.json"
done
nginx -c "$WORK/nginx.conf"
sleep 0.5
printf '%-12s %8s %14s %14s %8s\n' route bytes tagflow_rps nginx_rps ratio
for name in status vertices find_path; do
    wrk -t2 -c64 -d"${SECS}s" "$T${routes[$name]}" >"$WORK/t.txt"
    wrk -t2 -c64 -d"${SECS}s" "http://127.0.0.1:$N_PORT/$name.json" >"$WORK/n.txt"
    t=$(rps "$WORK/t.txt"); n=$(rps "$WORK/n.txt")
    printf '%-12s %8s %14.0f %14.0f %7.2fx\n' "$name" "$(stat -c %s "$WORK/root/$name.json")" "$t" "$n" \
        "$(python3 -c "print($t / $n)")"
done
kill "$(cat "$WORK/nginx.pid")"; rm -f "$WORK/nginx.pid"

echo "== heavy reads hammered by 8 connections: /status latency and durable writes meanwhile (${SECS}s each, $ROUNDS rounds in turns)"
cat >"$WORK/writes.lua" <<'EOF'
local n = 0
local id = "x"
init = function(args) id = args[1] end
request = function()
    n = n + 1
    return wrk.format("POST", "/aristas/add/bench-w-" .. id .. "-" .. n .. "/bench-w-" .. id .. "-" .. (n + 1))
end
EOF
# Each row's writes make a chain of new users, bench-w-RUN-ROW-n -> n+1 (wrk asks for one request
# before the run: a chain starts at 1 or 2).
RUN=$(date +%s%N)
chain_head() {
    for n in 1 2 3; do
        curl -fs "$T/vertices/bench-w-$RUN-$1-$n" >/dev/null && { echo "bench-w-$RUN-$1-$n"; return; }
    done
    echo "no chain $1" >&2; exit 1
}
measure() { # $1: round, $2: label, $3: the route to hammer (empty: none), $4: its writes' chain
    local hammer_pid=""
    if [ -n "$3" ]; then
        wrk -t1 -c8 -d"$((SECS + 2))s" "$T$3" >"$WORK/h.txt" &
        hammer_pid=$!
        sleep 1
    fi
    wrk -t1 -c8 -d"${SECS}s" -s "$WORK/writes.lua" "$T" -- "$RUN-$4" >"$WORK/w.txt" &
    local w_pid=$!
    wrk -t1 -c1 -d"${SECS}s" --latency "$T/status" >"$WORK/s.txt"
    wait "$w_pid"
    [ -n "$hammer_pid" ] && wait "$hammer_pid"
    read -r p50 p99 < <(lat "$WORK/s.txt")
    local hammered="-"
    [ -n "$3" ] && hammered=$(rps "$WORK/h.txt")
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$p50" "$p99" "$(rps "$WORK/w.txt")" "$hammered" \
        | tee -a "$WORK/rows.tsv"
}
# Rounds in turns, and the writes alone measured between every two hammered rows: the machine's
# speed drifts within a minute (shared cores), so each hammered row is read against the mean of the
# writes alone just before and just after it, and the summary takes each row's median over rounds.
for round in $(seq 1 "$ROUNDS"); do
    measure "$round" "nothing" "" "nothing-$round-0"
    # A control: the cheapest read there is. What any flood of 8 connections costs the writes on
    # this machine (their requests share the request threads and the cores).
    measure "$round" "/status (control: the cheapest read)" "/status" "control-$round"
    measure "$round" "nothing" "" "nothing-$round-1"
    measure "$round" "a hub's edges (limit=1)" "/vertices/$(enc "$hub")/aristas?limit=1" "hub-$round"
    measure "$round" "nothing" "" "nothing-$round-2"
    measure "$round" "/graph?top=500" "/graph?top=500" "graph-$round"
    measure "$round" "nothing" "" "nothing-$round-3"
    measure "$round" "/vertices?sort=degree&limit=100" "/vertices?sort=degree&limit=100" "degree-$round"
    measure "$round" "nothing" "" "nothing-$round-4"
    # The costliest search there is: a miss between the heads of the two chains the first rows
    # wrote (separate components of ~100,000 users each), which walks the shorter chain whole,
    # millions of its budget's entries (a level costs as much as 32 entries).
    far_a=$(chain_head nothing-1-0)
    far_b=$(chain_head control-1)
    measure "$round" "find_path, a miss along two chains" "/find_path/$far_a/$far_b" "path-$round"
    measure "$round" "nothing" "" "nothing-$round-5"
done
python3 - "$WORK/rows.tsv" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
# Each hammered row against the writes alone just before and just after it.
alone = {}
for i, r in enumerate(rows):
    if r[1] != "nothing":
        alone[id(r)] = (float(rows[i - 1][4]) + float(rows[i + 1][4])) / 2
labels = list(dict.fromkeys(r[1] for r in rows))
print("%-38s %10s %10s %12s %24s %10s" % ("hammered (median of rounds)", "status_p50", "worst_p99",
      "writes_per_s", "of_alone (each round)", "heavy_rps"))
for label in labels:
    mine = [r for r in rows if r[1] == label]
    # The writes alone against their median over the run: how far the machine drifted.
    if label == "nothing":
        ratios = [float(r[4]) / statistics.median(float(x[4]) for x in mine) for r in mine]
    else:
        ratios = [float(r[4]) / alone[id(r)] for r in mine]
    heavy = [float(r[5]) for r in mine if r[5] != "-"]
    print("%-38s %10.2f %10.2f %12.0f %8.2fx (%s) %10s" % (
        label, statistics.median(float(r[2]) for r in mine), max(float(r[3]) for r in mine),
        statistics.median(float(r[4]) for r in mine), statistics.median(ratios),
        " ".join("%.2f" % x for x in ratios), "%.0f" % statistics.median(heavy) if heavy else "-"))
PY
# What every read waits for when it waits on the writer: how long each commit held the graph.
echo "== the graph held for writing, per commit (whole run, from /metrics; $(users) users at the end)"
curl -fs "$T/metrics" | python3 -c '
import re, sys
buckets, total, secs = [], 0, 0.0
for line in sys.stdin:
    m = re.match(r"tagflow_graph_write_hold_seconds_(bucket\{le=\"([^\"]+)\"\}|count|sum) (\S+)", line)
    if not m:
        continue
    if m.group(2):
        buckets.append((float(m.group(2)), int(float(m.group(3)))))
    elif m.group(1) == "count":
        total = int(float(m.group(3)))
    else:
        secs = float(m.group(3))
worst = next(le for le, n in buckets if n == total)
over = ", ".join("over %g ms: %d" % (1000 * le, total - n) for le, n in buckets if 0.002 < le < 0.1)
print("commits %d, mean %.3f ms; %s; the longest at most %g ms" % (
    total, 1000 * secs / max(total, 1), over, 1000 * worst))'
