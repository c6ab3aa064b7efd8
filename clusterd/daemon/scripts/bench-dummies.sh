#!/usr/bin/env bash
# How fast one clusterd node brings N Debian Dummy resources up and down, and its memory.
#
#   clusterd/daemon/scripts/bench-dummies.sh [N]     (default 100; root; release build)
#
# Measures, on a single node with the default executor bound (4 agents at once):
#   - push → every resource probed, started and its first monitor run (3N agent runs),
#   - SIGTERM → every resource stopped (N stops) and clusterd exited,
#   - clusterd's resident memory with N resources monitored every 10 s.
# Everything lives in a temp dir removed on exit; nothing binds a port.
set -euo pipefail
n=${1:-100}
root=$(cd "$(dirname "$0")/../../.." && pwd)
cargo build --release -q -p clusterd -p clusterctl --manifest-path "$root/Cargo.toml"
bin="$root/target/release"
work=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
printf 'cluster_name = "bench"\n[[node]]\nname = "n1"\n' > "$work/c.toml"
ctl() { "$bin/clusterctl" "$@" > /dev/null; }
ctl -f "$work/cib.json" property set stonith-enabled=false
for i in $(seq 1 "$n"); do
  ctl -f "$work/cib.json" resource create "d$i" ocf:heartbeat:Dummy "state=$work/d$i.state" op monitor interval=10s
done
"$bin/clusterd" --config "$work/c.toml" --node n1 --state-dir "$work/s" 2> "$work/log" &
pid=$!
until "$bin/clusterctl" --state-dir "$work/s" status > /dev/null 2>&1; do sleep 0.05; done
monitors() { grep -c 'action=monitor interval_ms=10000' "$work/log" || true; }
t0=$(date +%s%N)
ctl --state-dir "$work/s" cluster cib-push "$work/cib.json"
until [ "$(monitors)" -ge "$n" ]; do sleep 0.01; done
t1=$(date +%s%N)
sleep 1
rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
t2=$(date +%s%N)
kill -TERM "$pid"
wait "$pid" || true
pid=
t3=$(date +%s%N)
left=$(find "$work" -maxdepth 1 -name 'd*.state' | wc -l)
echo "resources: $n (ocf:heartbeat:Dummy, monitor 10s), max_concurrent_ops 4"
echo "push -> all probed, started, first monitor done: $(( (t1 - t0) / 1000000 )) ms"
echo "SIGTERM -> all stopped, clusterd exited:        $(( (t3 - t2) / 1000000 )) ms (left running: $left)"
echo "clusterd RSS with $n resources:                $rss KiB"
