#!/usr/bin/env bash
# What a container's user namespace and bridge network cost: N idle busybox containers
# made by `plinth apply` in each of three modes, interleaved, RUNS times:
#   host     --userns host    --network none   (plinth before user namespaces)
#   private  --userns private --network none   (the default now)
#   bridge   --userns private --network bridge
# For each: the wall time of the apply, and memory per container, two ways, after caches
# are dropped:
# - charged: the benchmark runs in a memory cgroup of its own, so what plinth, its runtime
#   processes and the namespace holders allocate (namespaces, mounts, veth pairs, the
#   runtime's own pages while they last) is charged there, and what the containers'
#   processes allocate afterwards is charged to their cgroups /plinth/NAME: the sum of the
#   growth of both, over N. Other work on the machine does not touch it; kernel memory the
#   kernel does not account to a cgroup is missing from it.
# - MemAvailable: the host-wide fall of MemAvailable over N, which counts everything but
#   also everything else the machine does meanwhile: only meaningful on a quiet machine.
#
# Usage: bench/fleet_ns.sh [N] [RUNS]        (default 20 containers, 5 runs)
# Environment: PLINTH (binary), NO_BUILD=1 to skip `cargo build --release`.
# Results: bench/out/fleet-ns-<date>/{runs.csv,summary.md}, printed at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

N=${1:-20}
RUNS=${2:-5}
if [ "$(id -u)" -ne 0 ]; then
	echo "error: the benchmark runs containers and needs root" >&2
	exit 1
fi
if [ -z "${PLINTH:-}" ]; then
	if [ "${NO_BUILD:-0}" != 1 ]; then
		load_cargo_env
		step "cargo build --release"
		cargo build --release
	fi
	PLINTH=$PWD/target/release/plinth
fi
OUT=bench/out/fleet-ns-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
WORK=$(mktemp -d /var/tmp/plinth-fleet-ns.XXXXXX)
chmod 0711 "$WORK"
export PLINTH_STATE_DIR=$WORK/state PLINTH_BRIDGE=plbench0 PLINTH_BRIDGE_SUBNET=10.79.0.0/16
NAME=nsbench
# The memory cgroup of the benchmark itself, and where the containers' cgroups are.
if [ -e /sys/fs/cgroup/memory/memory.usage_in_bytes ]; then
	MEMCG=/sys/fs/cgroup/memory USAGE=memory.usage_in_bytes
elif grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
	MEMCG=/sys/fs/cgroup USAGE=memory.current
else
	echo "error: no memory cgroup controller" >&2
	exit 1
fi
BENCH_CG=$MEMCG/plinth-fleet-ns-bench
mkdir -p "$BENCH_CG"
echo $$ >"$BENCH_CG/cgroup.procs"
trap 'cleanup' EXIT

meminfo_kib() { awk -v k="$1:" '$1 == k {print $2}' /proc/meminfo; }
settle() { sync; echo 3 >/proc/sys/vm/drop_caches; sleep 2; }
now() { date +%s.%N; }
plinth() { "$PLINTH" --root "$WORK/run" "$@"; }

cleanup() {
	set +e
	printf '' >"$WORK/fleet.toml"
	plinth apply "$WORK/fleet.toml" >/dev/null 2>&1
	[ -e /sys/class/net/plbench0 ] && ip link del plbench0
	rm -rf "$WORK"
	echo $$ >"$MEMCG/cgroup.procs"
	rmdir "$BENCH_CG"
}

# Bytes charged to the benchmark's cgroup and to the containers' cgroups.
charged() {
	local total
	total=$(cat "$BENCH_CG/$USAGE")
	for f in "$MEMCG"/plinth/"$NAME"-*/"$USAGE"; do
		[ -e "$f" ] && total=$((total + $(cat "$f")))
	done
	echo "$total"
}

echo "run,mode,n,up_s,charged_kib,kmem_kib,memavailable_kib,left_after_rm_kib" >"$OUT/runs.csv"
for run in $(seq 1 "$RUNS"); do
	for mode in host private bridge; do
		case $mode in
		host) userns=host network=none ;;
		private) userns=private network=none ;;
		bridge) userns=private network=bridge ;;
		esac
		cat >"$WORK/fleet.toml" <<TOML
[[container]]
name = "$NAME-{n}"
count = $N
base = "host"
userns = "$userns"
network = "$network"
command = ["/bin/busybox", "sleep", "100000"]
TOML
		kmem() {
			local t
			t=$(cat "$BENCH_CG/memory.kmem.usage_in_bytes" 2>/dev/null || echo 0)
			for f in "$MEMCG"/plinth/"$NAME"-*/memory.kmem.usage_in_bytes; do
				[ -e "$f" ] && t=$((t + $(cat "$f")))
			done
			echo "$t"
		}
		settle
		before=$(meminfo_kib MemAvailable)
		c0=$(charged)
		k0=$(kmem)
		t0=$(now)
		plinth apply "$WORK/fleet.toml" >/dev/null
		t1=$(now)
		settle
		after=$(meminfo_kib MemAvailable)
		c1=$(charged)
		k1=$(kmem)
		running=$(plinth ls --format json | grep -c '"state": "running"' || true)
		[ "$running" = "$N" ] || echo "warning: $mode: $running of $N running" >&2
		printf '' >"$WORK/fleet.toml"
		plinth apply "$WORK/fleet.toml" >/dev/null
		settle
		c2=$(charged)
		printf '%s,%s,%s,%.2f,%s,%s,%s,%s\n' "$run" "$mode" "$N" "$(echo "$t1 - $t0" | bc -l)" \
			$(((c1 - c0) / 1024 / N)) $(((k1 - k0) / 1024 / N)) $(((before - after) / N)) \
			$(((c2 - c0) / 1024 / N)) | tee -a "$OUT/runs.csv"
	done
done

median() { sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
{
	echo "$N idle busybox containers per apply, $RUNS runs, medians (raw: runs.csv)"
	echo
	echo "| mode | up (s) | charged per container (KiB) | of it kernel (KiB) | MemAvailable per container (KiB) | left after rm (KiB) |"
	echo "| --- | ---: | ---: | ---: | ---: | ---: |"
	for mode in host private bridge; do
		col() { awk -F, -v m="$mode" -v c="$1" '$2 == m {print $c}' "$OUT/runs.csv" | median; }
		printf '| %s | %s | %s | %s | %s | %s |\n' "$mode" "$(col 4)" "$(col 5)" "$(col 6)" "$(col 7)" "$(col 8)"
	done
} | tee "$OUT/summary.md"
echo "results in $OUT"
