#!/usr/bin/env bash
# Replication cost: two replicatord nodes (each in its own network namespace, joined by a veth
# pair) under protocols C, B and A against the single-node export (a standalone resource) on
# the same machine, in one run; plus resync efficiency and full-sync speed against nbdcopy
# copying the same image between two nbdkit instances over the same veth.
#
# Prints, for each protocol, the figure and its ratio to the single node, with the goals of
# issue 3 (the QD1 goal against both the ping RTT and a TCP round trip between two processes,
# sockperf ping-pong, since a replicated write's Data and WriteAck are a TCP round trip):
#   1 MiB sequential write QD16, bandwidth        goal >= 0.90 x single
#   4 KiB random write QD32, IOPS                  goal >= 0.70 x single
#   4 KiB random write QD1, mean latency           goal <= single + RTT + 50 us (RTT: ping)
#   resync after a disconnect: bytes sent / dirty  goal <= 1.01
#   full sync speed / nbdcopy between two nbdkit   goal >= 0.90 (the resync's own duration, from
#                                                  the source's status: last_resync)
# and the daemons' CPU seconds per GB written (utime + stime from /proc/PID/stat around each
# fio job): the single node's, and for each protocol the Primary's and the Secondary's — the
# share a real second machine would carry.
#
# Usage: benches/scripts/replication-vs-single.sh [--size 1G] [--runtime 5] [--rounds 3]
#        [--dir /dev/shm] [--only single,C,B,A] [--ack-spin US]
# --ack-spin US runs the pair with REPLICATORD_ACK_SPIN_US=US (the Primary polls for
# acknowledgements instead of sleeping while at most 2 writes wait for them; default off).
# Each configuration is measured once per round (single, C, B, A, then again), and the full
# sync and nbdcopy alternate likewise; the table shows medians, so a burst of load from
# elsewhere on the machine skews one sample rather than the comparison.
# The images live in --dir (tmpfs by default: flushes cost nothing, so the figures are the
# replication's own cost, not the virtual disk's). Needs root (namespaces), fio, nbdkit,
# nbdcopy, python3; builds --release.
set -euo pipefail
cd "$(dirname "$0")/../.."

size=1G
runtime=5
rounds=3
dir=/dev/shm
only="single,C,B,A"
ack_spin=0
while [ $# -gt 0 ]; do
  case "$1" in
    --size) size=$2; shift 2 ;;
    --runtime) runtime=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --ack-spin) ack_spin=$2; shift 2 ;;
    *) echo "usage: $0 [--size 1G] [--runtime SECONDS] [--rounds N] [--dir DIR] [--only single,C,B,A] [--ack-spin US]" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "replication-vs-single: needs root (network namespaces)" >&2; exit 1; }
for t in fio nbdkit nbdcopy ip /usr/bin/python3 ping sockperf; do
  command -v "$t" >/dev/null || { echo "replication-vs-single: $t is missing" >&2; exit 1; }
done
export PATH="$HOME/.cargo/bin:$PATH"

tag=rb$$
ns1=${tag}a; ns2=${tag}b
ip1=10.213.$(( $$ % 200 )).1; ip2=10.213.$(( $$ % 200 )).2
work=$(mktemp -d "$dir/replbench.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for ns in $ns1 $ns2; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

echo "building (release)..." >&2
cargo build --release -q -p replicator --bins
B=$PWD/target/release

ip netns add $ns1; ip netns add $ns2
ip link add ${tag}x type veth peer name ${tag}y
ip link set ${tag}x netns $ns1; ip link set ${tag}y netns $ns2
ip -n $ns1 addr add $ip1/24 dev ${tag}x; ip -n $ns2 addr add $ip2/24 dev ${tag}y
for ns in $ns1 $ns2; do ip -n $ns link set lo up; done
ip -n $ns1 link set ${tag}x up; ip -n $ns2 link set ${tag}y up

bytes=$(/usr/bin/python3 -c "
s='$size'; m={'K':1<<10,'M':1<<20,'G':1<<30}
print(int(s[:-1])*m[s[-1]] if s[-1] in m else int(s))")
meta=$((64 << 20))   # room for internal meta-data after the exported bytes
# Allocated up front (tmpfs pages), so no configuration pays for allocation in its measurement.
for f in s n1 n2 k2; do fallocate -l $((bytes + meta)) "$work/$f.img"; done

wait_sock() { for _ in $(seq 1 200); do [ -S "$1" ] && return 0; sleep 0.05; done; return 1; }
json() { "$B/replicatorctl" -s "$1" status --json r0; }
field() { json "$1" | /usr/bin/python3 -c "import json,sys; s=json.load(sys.stdin); print(eval(sys.argv[1]))" "$2"; }
wait_state() { # STATE_DIR PYTHON-EXPR [TIMEOUT_S]
  local t=$(( ${3:-600} * 20 ))
  for _ in $(seq 1 $t); do [ "$(field "$1" "$2" 2>/dev/null)" = True ] && return 0; sleep 0.05; done
  echo "timed out waiting for $2 on $1" >&2; json "$1" >&2; return 1
}
in_sync='s["connection_state"]=="Connected" and s["disk_state"]=="UpToDate" and s["peers"][0]["disk_state"]=="UpToDate" and s["out_of_sync_bytes"]==0'

# fio job: NAME RW BS IODEPTH URI; prints "bw_bytes iops lat_mean_us"
run_fio() {
  local name=$1 rw=$2 bs=$3 qd=$4 uri=$5
  fio --name="$name" --ioengine=nbd --uri="$uri" --rw="$rw" --bs="$bs" --iodepth="$qd" \
      --size="$size" --time_based --runtime="$runtime" --ramp_time=1 --numjobs=1 \
      --output-format=json --output="$work/$name.json" >/dev/null 2>"$work/fio.err" || { cat "$work/fio.err" >&2; return 1; }
  /usr/bin/python3 - "$work/$name.json" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))["jobs"][0]["write"]
print(s["bw_bytes"], s["iops"], s["lat_ns"]["mean"] / 1000)
EOF
}

# CPU seconds (utime + stime, every thread) a process has used so far, from /proc/PID/stat.
cpu_s() { /usr/bin/python3 -c "
import os, sys
f = open('/proc/%s/stat' % sys.argv[1]).read().rsplit(')', 1)[1].split()
print((int(f[11]) + int(f[12])) / os.sysconf('SC_CLK_TCK'))" "$1"; }
written() { field "$1" 's["io"]["written_bytes"]'; }

declare -A result   # "CONFIG,JOB" -> one "bw iops lat" sample per round, ';'-separated
declare -A cpu      # "CONFIG,JOB" -> one "serving secondary" CPU s/GB sample per round
# One fio job, with the CPU the daemons used for it: the serving daemon's (the single node's,
# or the Primary's) and the Secondary's, per GB the serving daemon was sent (its
# io.written_bytes, ramp-up included, as the CPU is).
job() { # LABEL JOB RW BS QD URI
  local label=$1 key=$2 serving=$pid_single st=$work/st-s c0 s0 w0 c1 s1 w1
  [ "$label" = single ] || { serving=$pid_n1; st=$work/st-n1; }
  c0=$(cpu_s "$serving"); s0=$(cpu_s "$pid_n2"); w0=$(written "$st")
  result[$label,$key]+="$(run_fio "$label-$key" "$3" "$4" "$5" "$6");"
  c1=$(cpu_s "$serving"); s1=$(cpu_s "$pid_n2"); w1=$(written "$st")
  cpu[$label,$key]+="$(/usr/bin/python3 -c "
gb = ($w1 - $w0) / 1e9
print(($c1 - $c0) / gb, 0 if '$label' == 'single' else ($s1 - $s0) / gb)");"
}
measure() { # LABEL URI
  echo "measuring $1 (round $round)..." >&2
  job "$1" seq write 1M 16 "$2"
  job "$1" qd32 randwrite 4k 32 "$2"
  job "$1" qd1 randwrite 4k 1 "$2"
}

pair_config() { # PROTOCOL
  cat > "$work/r0.res" <<EOF
resource r0 {
  protocol $1;
  meta-disk internal;
  net { connect-int 1; ping-int 10; max-buffers 8192; }
  disk { c-plan-ahead 0; resync-rate 4G; c-min-rate 0; }
  on n1 { device nbd+unix:///r0?socket=$work/n1.sock; disk $work/n1.img; address $ip1:7789; }
  on n2 { device nbd+unix:///r0?socket=$work/n2.sock; disk $work/n2.img; address $ip2:7789; }
}
EOF
}

rtt_us=$(ip netns exec $ns1 ping -q -c 200 -i 0.002 $ip2 | /usr/bin/python3 -c "
import sys, re
m = re.search(r'= [0-9.]+/([0-9.]+)/', sys.stdin.read()); print(float(m.group(1)) * 1000)")
# A TCP round trip between two processes (sockperf ping-pong reports half of it), 4 KiB
# messages: what one replicated write's Data and WriteAck cost at least.
ip netns exec $ns2 sockperf server --tcp -i $ip2 -p 11111 >/dev/null 2>&1 & sp=$!; pids+=($sp)
sleep 0.5
tcp_rtt_us=$(ip netns exec $ns1 sockperf ping-pong --tcp -i $ip2 -p 11111 -t 3 -m 4096 2>&1 \
  | /usr/bin/python3 -c "
import sys, re
m = re.search(r'avg-latency=([0-9.]+)', sys.stdin.read()); print(2 * float(m.group(1)))")
kill $sp 2>/dev/null || true
echo "ping RTT over the veth: ${rtt_us} us; TCP round trip: ${tcp_rtt_us} us" >&2

# The single-node export: a standalone resource in its own daemon (idle while the pair runs).
cat > "$work/s.res" <<EOF
resource r0 { protocol C; device nbd+unix:///r0?socket=$work/s.sock; disk $work/s.img; meta-disk internal; on single { } }
EOF
"$B/replicatorctl" -c "$work/s.res" -n single -s "$work/st-s" create-md r0 >/dev/null
"$B/replicatord" -c "$work/s.res" -n single -s "$work/st-s" 2>"$work/single.log" >/dev/null & pids+=($!)
pid_single=$!
wait_sock "$work/st-s/control.sock"
"$B/replicatorctl" -s "$work/st-s" up r0 >/dev/null 2>&1
"$B/replicatorctl" -s "$work/st-s" primary --force r0 >/dev/null

# The pair, and its initial full sync.
pair_config C
proto_now=C
for n in n1 n2; do "$B/replicatorctl" -c "$work/r0.res" -n $n -s "$work/st-$n" create-md r0 >/dev/null; done
# (ip netns exec execs the daemon: $! is replicatord's pid, whose CPU time job() reads.)
export REPLICATORD_ACK_SPIN_US=$ack_spin
ip netns exec $ns1 "$B/replicatord" -c "$work/r0.res" -n n1 -s "$work/st-n1" 2>>"$work/n1.log" >/dev/null & pids+=($!)
pid_n1=$!
ip netns exec $ns2 "$B/replicatord" -c "$work/r0.res" -n n2 -s "$work/st-n2" 2>>"$work/n2.log" >/dev/null & pids+=($!)
pid_n2=$!
wait_sock "$work/st-n1/control.sock"; wait_sock "$work/st-n2/control.sock"
"$B/replicatorctl" -s "$work/st-n1" up r0 >/dev/null 2>&1
"$B/replicatorctl" -s "$work/st-n2" up r0 >/dev/null 2>&1
wait_state "$work/st-n1" 's["connection_state"]=="Connected"' 60
echo "initial full sync..." >&2
"$B/replicatorctl" -s "$work/st-n1" primary --force r0 >/dev/null
wait_state "$work/st-n1" "$in_sync" 900
sync_rate() { field "$work/st-n1" 's["last_resync"]["bytes"] / s["last_resync"]["seconds"]'; }
sync_rates="$(sync_rate);"

switch_protocol() { # PROTOCOL: down both, new configuration, up both (in sync: no resync)
  [ "$proto_now" = "$1" ] && return 0
  "$B/replicatorctl" -s "$work/st-n1" down r0 >/dev/null
  "$B/replicatorctl" -s "$work/st-n2" down r0 >/dev/null
  pair_config "$1"; proto_now=$1
  "$B/replicatorctl" -s "$work/st-n1" up r0 >/dev/null 2>&1
  "$B/replicatorctl" -s "$work/st-n2" up r0 >/dev/null 2>&1
  wait_state "$work/st-n1" "$in_sync" 60
  "$B/replicatorctl" -s "$work/st-n1" primary r0 >/dev/null
}

for round in $(seq 1 "$rounds"); do
  if [[ ",$only," == *",single,"* ]]; then measure single "nbd+unix:///r0?socket=$work/s.sock"; fi
  for proto in C B A; do
    [[ ",$only," == *",$proto,"* ]] || continue
    switch_protocol $proto
    measure "$proto" "nbd+unix:///r0?socket=$work/n1.sock"
    wait_state "$work/st-n1" "$in_sync" 120
  done
done
switch_protocol C

# Resync after a disconnect: only the dirty blocks are sent.
echo "resync after a disconnect..." >&2
"$B/replicatorctl" -s "$work/st-n1" disconnect r0 >/dev/null
fio --name=dirty --ioengine=nbd --uri="nbd+unix:///r0?socket=$work/n1.sock" --rw=randwrite --bs=4k \
    --iodepth=16 --size="$size" --number_ios=20000 >/dev/null 2>&1
dirty=$(field "$work/st-n1" 's["out_of_sync_bytes"]')
sent0=$(field "$work/st-n1" 's["counters"]["resync_sent_bytes"]')
"$B/replicatorctl" -s "$work/st-n1" connect r0 >/dev/null
wait_state "$work/st-n1" "$in_sync" 300
sent1=$(field "$work/st-n1" 's["counters"]["resync_sent_bytes"]')

# Full sync (n2 invalidated, resynced in full from n1) and nbdcopy between two nbdkit over the
# same veth, alternating.
ip netns exec $ns2 nbdkit --foreground --exit-with-parent -i $ip2 -p 10809 file "$work/k2.img" 2>"$work/nbdkit2.log" & pids+=($!)
ip netns exec $ns1 nbdkit --foreground --exit-with-parent -U "$work/k1.sock" file "$work/s.img" 2>"$work/nbdkit1.log" & pids+=($!)
wait_sock "$work/k1.sock"; sleep 0.3
copy_bytes=$(stat -c %s "$work/s.img")
copy_rates=""
"$B/replicatorctl" -s "$work/st-n1" secondary r0 >/dev/null
for round in $(seq 1 "$rounds"); do
  echo "full sync and nbdcopy (round $round)..." >&2
  if [ "$round" -gt 1 ]; then
    before=$(field "$work/st-n1" 's["last_resync"]["seconds"]')
    "$B/replicatorctl" -s "$work/st-n2" invalidate r0 >/dev/null
    wait_state "$work/st-n1" "$in_sync and s['last_resync']['seconds'] != $before" 900
    sync_rates+="$(sync_rate);"
  fi
  t0=$(date +%s.%N)
  ip netns exec $ns1 nbdcopy "nbd+unix:///?socket=$work/k1.sock" "nbd://$ip2:10809/"
  t1=$(date +%s.%N)
  copy_rates+="$(/usr/bin/python3 -c "print($copy_bytes / ($t1 - $t0))");"
done

raw=$(for k in "${!result[@]}"; do printf '%s=%s\n' "$k" "${result[$k]}"; done)
rawcpu=$(for k in "${!cpu[@]}"; do printf '%s=%s\n' "$k" "${cpu[$k]}"; done)
/usr/bin/python3 - "$size" "$runtime" "$rounds" "$rtt_us" "$tcp_rtt_us" "$sync_rates" "$copy_rates" "$dirty" "$((sent1 - sent0))" "$raw" "$rawcpu" <<'EOF'
import os, statistics, sys
size, runtime, rounds, rtt, tcp_rtt, sync_rates, copy_rates, dirty, sent, raw_text, cpu_text = sys.argv[1:]
rtt, tcp_rtt, dirty, sent = float(rtt), float(tcp_rtt), int(dirty), int(sent)
rates = lambda s: [float(x) for x in s.split(";") if x]
sync, copy = statistics.median(rates(sync_rates)), statistics.median(rates(copy_rates))
raw = dict(line.split("=", 1) for line in raw_text.splitlines() if "=" in line)
def get(key, i):
    if key not in raw:
        return None
    return statistics.median(float(s.split()[i]) for s in raw[key].split(";") if s)
protos = [p for p in ["C", "B", "A"] if (p + ",seq") in raw]
print("# replicatord two nodes (veth between network namespaces) vs the single-node export")
print(f"# {size} device on tmpfs, fio nbd engine, {runtime} s per job, medians of {rounds} rounds;")
print(f"# ping RTT {rtt:.0f} us, TCP round trip (sockperf, 4 KiB) {tcp_rtt:.0f} us; REPLICATORD_ACK_SPIN_US={os.environ.get('REPLICATORD_ACK_SPIN_US', '0')}")
print(f"{'test':30}{'unit':>6}{'single':>11}" + "".join(f"{p:>11}" for p in protos)
      + "".join(f"{p + '/single':>11}" for p in protos) + "   goal")
rows = [("seq", "1 MiB seq write QD16", "MB/s", 0, 1e-6, ">= 0.90x"),
        ("qd32", "4 KiB rand write QD32", "IOPS", 1, 1, ">= 0.70x"),
        ("qd1", "4 KiB rand write QD1 lat", "us", 2, 1, None)]
for key, label, unit, i, scale, goal in rows:
    single = get("single," + key, i)
    line = f"{label:30}{unit:>6}" + (f"{single * scale:>11.1f}" if single else f"{'-':>11}")
    vals = {p: get(p + "," + key, i) for p in protos}
    for p in protos:
        line += f"{vals[p] * scale:>11.1f}"
    for p in protos:
        line += f"{vals[p] / single:>11.2f}" if single else f"{'-':>11}"
    if goal is None and single:
        goal = f"<= {single + rtt + 50:.0f} us (single + ping RTT + 50), {single + tcp_rtt + 50:.0f} us (with the TCP RTT)"
    print(line + "   " + (goal or ""))
print(f"{'resync after disconnect':30}{'bytes':>6}  sent {sent} / dirty {dirty} = {sent / dirty:.4f}   goal <= 1.01")
print(f"{'full sync vs nbdcopy':30}{'MB/s':>6}  replicatord {sync / 1e6:.0f}, nbdcopy nbdkit->nbdkit {copy / 1e6:.0f} = {sync / copy:.2f}   goal >= 0.90")
# CPU seconds per GB written: the single node's daemon; for each protocol the Primary's ("P")
# and the Secondary's ("S"). On two machines the Secondary's share runs on the other one.
# Kernel TCP work is charged to whichever process ran it: over the veth, the receiver's
# softirq processing often runs in the sender's system call.
cpu = dict(line.split("=", 1) for line in cpu_text.splitlines() if "=" in line)
def cpu_med(key, i):
    if key not in cpu:
        return None
    return statistics.median(float(s.split()[i]) for s in cpu[key].split(";") if s)
print()
print("# daemon CPU seconds per GB written (utime+stime from /proc/PID/stat around each job)")
print(f"{'test':30}{'single':>9}" + "".join(f"{p + ' P':>9}{p + ' S':>9}{p + ' P+S':>9}" for p in protos))
for key, label, *_ in rows:
    single = cpu_med("single," + key, 0)
    line = f"{label:30}" + (f"{single:>9.2f}" if single is not None else f"{'-':>9}")
    for p in protos:
        prim, sec = cpu_med(p + "," + key, 0), cpu_med(p + "," + key, 1)
        line += f"{prim:>9.2f}{sec:>9.2f}{prim + sec:>9.2f}"
    print(line)
EOF
