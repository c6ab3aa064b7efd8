#!/usr/bin/env bash
# NBD export speed: the same fio jobs (and an nbdcopy) against `nbdkit file` and against our
# servers, on the same backing file in the page cache, over unix sockets, in one run.
# Prints each figure for every server and its ratio to nbdkit (goal: >= 1.00 everywhere).
#
# Servers measured:
#   nbdkit       nbdkit 1.32 file plugin (the reference)
#   tandem       the tandem-nbd example server (replicator/nbd/examples/nbd-file-server.rs):
#                a thread per connection doing blocking pread/pwrite, large READs by splice
#   tandem-inline  the same with --inline: every connection on one shared multi-thread runtime,
#                blocking pread/pwrite on its threads (large READs by splice on the blocking pool)
#   replicatord  replicatord's export of a standalone resource, Primary (when it is built and
#                its CLI answers; skipped with a note otherwise)
#
# Usage: benches/scripts/nbd-vs-nbdkit.sh [--size 1G] [--runtime 10] [--rounds 1] [--dir DIR] [--only LIST]
#   --only nbdkit,tandem   restrict the servers (comma-separated)
#   --rounds N             run every test N times against every server, interleaved; print medians
# All servers run at once; each test goes to each server in turn (see the measuring loop), so a
# machine whose load changes during the run skews all servers alike.
# Needs: fio (nbd engine), nbdkit, nbdcopy (libnbd-bin), python3; builds --release.
set -euo pipefail
cd "$(dirname "$0")/../.."

size=1G
runtime=10
rounds=1
dir=""
only="nbdkit,tandem,tandem-inline,replicatord"
while [ $# -gt 0 ]; do
  case "$1" in
    --size) size=$2; shift 2 ;;
    --runtime) runtime=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    *) echo "usage: $0 [--size 1G] [--runtime SECONDS] [--rounds N] [--dir DIR] [--only nbdkit,tandem,tandem-inline,replicatord]" >&2; exit 2 ;;
  esac
done
for t in fio nbdkit nbdcopy nbdinfo /usr/bin/python3; do
  command -v "$t" >/dev/null || { echo "nbd-vs-nbdkit: $t is missing (scripts/install-deps)" >&2; exit 1; }
done
export PATH="$HOME/.cargo/bin:$PATH"

work=$(mktemp -d "${dir:-${TMPDIR:-/tmp}}/nbdbench.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

echo "building (release)..." >&2
cargo build --release -q -p tandem-nbd --example nbd-file-server
tandem_bin=target/release/examples/nbd-file-server

img=$work/disk.img
src=$work/source.img
truncate -s "$size" "$img"
# The nbdcopy source: random data, so nothing is sparse or compressible.
bytes=$(stat -c %s "$img")
head -c "$bytes" /dev/urandom > "$src"
# Allocate and cache every block of the image up front: otherwise the first server measured
# pays ext4's block allocation on its sequential write and the comparison is skewed.
cp "$src" "$img"

wait_sock() { for _ in $(seq 1 200); do [ -S "$1" ] && nbdinfo --size "nbd+unix:///?socket=$1" >/dev/null 2>&1 && return 0; sleep 0.05; done; return 1; }

start_nbdkit() {
  nbdkit --foreground --exit-with-parent -U "$work/nbdkit.sock" file "$img" 2>"$work/nbdkit.log" &
  pids+=($!)
  wait_sock "$work/nbdkit.sock"
  uri="nbd+unix:///?socket=$work/nbdkit.sock"
}
start_tandem() {
  RUST_LOG=warn "$tandem_bin" --socket "$work/tandem.sock" "$img" 2>"$work/tandem.log" &
  pids+=($!)
  wait_sock "$work/tandem.sock"
  uri="nbd+unix:///?socket=$work/tandem.sock"
}
start_tandem-inline() {
  RUST_LOG=warn "$tandem_bin" --inline --socket "$work/tandem-inline.sock" "$img" 2>"$work/tandem-inline.log" &
  pids+=($!)
  wait_sock "$work/tandem-inline.sock"
  uri="nbd+unix:///?socket=$work/tandem-inline.sock"
}
# replicatord: a standalone resource (one `on` section) on the same image, made Primary.
start_replicatord() {
  if ! cargo build --release -q -p replicator --bins 2>"$work/replicator-build.log"; then
    echo "replicatord: does not build yet (see cargo build -p replicator); skipped" >&2; return 1
  fi
  local d=target/release
  [ -x $d/replicatord ] && [ -x $d/replicatorctl ] || { echo "replicatord: binaries not built yet; skipped" >&2; return 1; }
  local host; host=$(hostname)
  local rimg=$work/r0.img
  # Internal meta-data lives at the end of the backing file: give it room beyond the export.
  cp --sparse=always "$img" "$rimg"; truncate -s +256M "$rimg"
  cat > "$work/r0.res" <<EOF
resource r0 {
  protocol C;
  device nbd+unix:///r0?socket=$work/r0.sock;
  meta-disk internal;
  on $host { disk $rimg; address 127.0.0.1:7789; }
}
EOF
  local ctl="$d/replicatorctl --state-dir $work/state --config $work/r0.res"
  mkdir -p "$work/state"
  $ctl create-md r0 >"$work/replicatorctl.log" 2>&1 || { echo "replicatord: create-md failed; skipped" >&2; return 1; }
  "$d/replicatord" --config "$work/r0.res" --node "$host" --state-dir "$work/state" 2>"$work/replicatord.log" &
  pids+=($!)
  for _ in $(seq 1 100); do $ctl status r0 >/dev/null 2>&1 && break; sleep 0.05; done
  { $ctl up r0 && $ctl primary --force r0; } >>"$work/replicatorctl.log" 2>&1 || { echo "replicatord: up/primary failed; skipped" >&2; return 1; }
  wait_sock "$work/r0.sock" || { echo "replicatord: export did not appear; skipped" >&2; return 1; }
  uri="nbd+unix:///r0?socket=$work/r0.sock"
}

# fio job: NAME RW BS IODEPTH; prints "bw_bytes iops lat_mean_us"
run_fio() {
  local name=$1 rw=$2 bs=$3 qd=$4
  fio --name="$name" --ioengine=nbd --uri="$uri" --rw="$rw" --bs="$bs" --iodepth="$qd" \
      --size="$size" --time_based --runtime="$runtime" --ramp_time=1 --numjobs=1 \
      --output-format=json --output="$work/$name.json" >/dev/null 2>"$work/fio.err" || { cat "$work/fio.err" >&2; return 1; }
  /usr/bin/python3 - "$work/$name.json" "$rw" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
side = "write" if "write" in sys.argv[2] else "read"
s = j[side]
print(s["bw_bytes"], s["iops"], s["lat_ns"]["mean"] / 1000)
EOF
}

# One test against the server at $uri; prints "bw_bytes iops lat_mean_us".
run_test() {
  case $1 in
    seqwrite) run_fio seqwrite write 1M 16 ;;
    seqread) run_fio seqread read 1M 16 ;;
    randwrite1) run_fio randwrite1 randwrite 4k 1 ;;
    randwrite32) run_fio randwrite32 randwrite 4k 32 ;;
    randread1) run_fio randread1 randread 4k 1 ;;
    randread32) run_fio randread32 randread 4k 32 ;;
    nbdcopy)
      local t0 t1
      t0=$(date +%s.%N)
      nbdcopy "$src" "$uri"
      t1=$(date +%s.%N)
      /usr/bin/python3 -c "b=$bytes; t=$t1-$t0; print(b/t, 0, t*1e6)" ;;
  esac
}

# Every server runs at once (idle but one); each test runs against all of them in turn, the
# order rotating every round, so load from elsewhere on the machine drifts over all servers
# alike instead of over whichever was measured last. Each figure is the median of the rounds.
declare -A result uris
servers=()
for srv in nbdkit tandem tandem-inline replicatord; do
  case ",$only," in *",$srv,"*) ;; *) continue ;; esac
  if "start_$srv"; then
    uris[$srv]=$uri
    servers+=("$srv")
  fi
done
tests=(seqwrite seqread randwrite1 randwrite32 randread1 randread32 nbdcopy)
n=${#servers[@]}
for t in "${tests[@]}"; do
  for r in $(seq 1 "$rounds"); do
    echo "measuring $t, round $r/$rounds..." >&2
    for i in $(seq 0 $((n - 1))); do
      srv=${servers[$(((i + r - 1) % n))]}
      uri=${uris[$srv]}
      result[$srv,$t]+="$(run_test "$t");"
    done
  done
done

/usr/bin/python3 - "$size" "$runtime" "$rounds" "${servers[@]}" <<EOF
import statistics, sys
size, runtime, rounds, servers = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
raw = {$(for k in "${!result[@]}"; do printf '"%s": "%s", ' "$k" "${result[$k]}"; done)}
rows = [
    ("seqwrite",   "1 MiB seq write QD16",    "GB/s", lambda v: v[0] / 1e9),
    ("seqread",    "1 MiB seq read QD16",     "GB/s", lambda v: v[0] / 1e9),
    ("randwrite1", "4 KiB rand write QD1",    "IOPS", lambda v: v[1]),
    ("randwrite32","4 KiB rand write QD32",   "IOPS", lambda v: v[1]),
    ("randread1",  "4 KiB rand read QD1",     "IOPS", lambda v: v[1]),
    ("randread32", "4 KiB rand read QD32",    "IOPS", lambda v: v[1]),
    ("nbdcopy",    "nbdcopy $size in",        "GB/s", lambda v: v[0] / 1e9),
]
print(f"# NBD export, {size} file in page cache, unix socket, fio nbd engine, {runtime} s per job, median of {rounds} interleaved round(s)")
hdr = f"{'test':26}{'unit':>6}" + "".join(f"{s:>15}" for s in servers) + "".join(f"{s + '/nbdkit':>22}" for s in servers if s != "nbdkit")
print(hdr)
for key, label, unit, f in rows:
    vals = {}
    for s in servers:
        r = raw.get(f"{s},{key}")
        runs = [f([float(x) for x in one.split()]) for one in (r or "").split(";") if one.strip()]
        if runs:
            vals[s] = statistics.median(runs)
    line = f"{label:26}{unit:>6}"
    for s in servers:
        v = vals.get(s)
        line += f"{v:>15.2f}" if unit == "GB/s" and v is not None else (f"{v:>15.0f}" if v is not None else f"{'-':>15}")
    for s in servers:
        if s == "nbdkit":
            continue
        if s in vals and vals.get("nbdkit"):
            line += f"{vals[s] / vals['nbdkit']:>22.2f}"
        else:
            line += f"{'-':>22}"
    print(line)
EOF
