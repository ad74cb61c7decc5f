#!/usr/bin/env bash
# Fleet benchmark: 100 idle busybox containers made from nothing, side by side in one run
# with what an operator would use instead: plinth apply (host-platform containers),
# LXC overlay clones of one busybox container (lxc-copy -s -B overlayfs, lxc-start), and
# podman (run -d of a local busybox image). For each: the wall time to have all N
# running, and host memory per idle container (the fall of MemAvailable over N
# containers, their runtime processes included), then the time to remove them all.
#
# plinth's supervisor (`plinth daemon`) is started before the first measurement, as the
# service it is on a host: its fixed cost is not counted, its growth per container is.
#
# Usage: bench/fleet.sh [N]        (default 100)
# Environment: PLINTH (binary), NO_BUILD=1 to skip `cargo build --release`, USERNS=host
# for containers without user namespaces of their own (default: private), PEERS=0 to
# run plinth only (for N = 1000: podman's removal alone takes half an hour here).
# Results: bench/out/fleet-<date>/summary.md, printed at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

N=${1:-100}
if [ "$(id -u)" -ne 0 ]; then
	echo "error: the benchmark runs containers and needs root" >&2
	exit 1
fi
ensure_packages busybox-static lxc podman
if [ -z "${PLINTH:-}" ]; then
	if [ "${NO_BUILD:-0}" != 1 ]; then
		load_cargo_env
		step "cargo build --release"
		cargo build --release
	fi
	PLINTH=$PWD/target/release/plinth
fi
OUT=bench/out/fleet-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
WORK=$(mktemp -d /var/tmp/plinth-fleet-bench.XXXXXX)
# The containers' own root users (user namespaces) reach their roots below it.
chmod 0711 "$WORK"
trap 'cleanup' EXIT

mem_available_kib() { awk '/^MemAvailable:/ {print $2}' /proc/meminfo; }
# Free pages that the kernel keeps in per-CPU lists are not in MemFree, so not in
# MemAvailable either, and those lists grow and shrink by tens of MB on their own
# (here by up to 30 MB between two readings, 300 KiB per container at N = 100).
# The second figure counts them as the free memory they are.
pcp_free_kib() { awk '/^ +count:/ {s += $2} END {print s * 4}' /proc/zoneinfo; }
free_kib() { echo $(($(mem_available_kib) + $(pcp_free_kib))); }
declare -A MEMF
settle() { sync; echo 3 >/proc/sys/vm/drop_caches; sleep 2; }
now() { date +%s.%N; }

cleanup() {
	set +e
	# Only the manifest that made them removes them: empty it and apply it.
	printf '' >"$WORK/fleet.toml"
	PLINTH_STATE_DIR=$WORK/state "$PLINTH" --root "$WORK/run" apply "$WORK/fleet.toml" >/dev/null 2>&1
	PLINTH_STATE_DIR=$WORK/state "$PLINTH" --root "$WORK/run" daemon --stop >/dev/null 2>&1
	for i in $(seq 1 "$N"); do lxc-destroy -f -n "plinth-bench-$i" >/dev/null 2>&1; done
	lxc-destroy -f -n plinth-bench-base >/dev/null 2>&1
	podman ps -a -q --filter label=plinth-bench | xargs -r podman rm -f >/dev/null 2>&1
	rm -rf "$WORK"
}

cat >"$WORK/fleet.toml" <<TOML
[defaults]
base = "host"
network = "none"
userns = "${USERNS:-private}"

[[container]]
name = "idle-{n}"
count = $N
command = ["/bin/busybox", "sleep", "100000"]
TOML

declare -A UP MEM DOWN

step "plinth apply: $N containers"
mkdir -p "$WORK/state"
PLINTH_STATE_DIR=$WORK/state "$PLINTH" --root "$WORK/run" daemon >"$WORK/state/daemon.log" 2>&1 &
while [ ! -S "$WORK/run/plinth.sock" ]; do sleep 0.05; done
settle
before=$(mem_available_kib) beforef=$(free_kib)
t0=$(now)
PLINTH_STATE_DIR=$WORK/state "$PLINTH" --root "$WORK/run" apply "$WORK/fleet.toml" >/dev/null
t1=$(now)
settle
after=$(mem_available_kib) afterf=$(free_kib)
running=$(PLINTH_STATE_DIR=$WORK/state "$PLINTH" --root "$WORK/run" ls --format json | grep -c '"state": "running"')
dpid=$(cat "$WORK/state/daemon.lock")
echo "plinth: the supervisor's resident memory with $N containers: $(awk '/^VmRSS/ {print $2 " " $3}' "/proc/$dpid/status")"
printf '' >"$WORK/fleet.toml"
t2=$(now)
PLINTH_STATE_DIR=$WORK/state "$PLINTH" --root "$WORK/run" apply "$WORK/fleet.toml" >/dev/null
t3=$(now)
left=$(PLINTH_STATE_DIR=$WORK/state "$PLINTH" --root "$WORK/run" ls --format json | grep -c '"name"' || true)
echo "plinth: $left left after the manifest was emptied"
UP[plinth]=$(echo "$t1 - $t0" | bc -l)
DOWN[plinth]=$(echo "$t3 - $t2" | bc -l)
MEM[plinth]=$(((before - after) / N))
MEMF[plinth]=$(((beforef - afterf) / N))
echo "plinth: $running running"

step "plinth upgrade: $N containers on a dir: platform whose libc is replaced"
PLAT=$WORK/platform
for f in /usr/bin/sleep /lib64/ld-linux-x86-64.so.2 /lib/x86_64-linux-gnu/libc.so.6; do
	mkdir -p "$PLAT$(dirname "$f")"
	cp "$f" "$PLAT$f"
done
cat >"$WORK/fleet.toml" <<TOML
[[container]]
name = "dyn-{n}"
count = $N
base = "dir:$PLAT"
command = ["/usr/bin/sleep", "100000"]
TOML
PLINTH_STATE_DIR=$WORK/state "$PLINTH" --root "$WORK/run" apply "$WORK/fleet.toml" >/dev/null
cp "$PLAT/lib/x86_64-linux-gnu/libc.so.6" "$PLAT/lib/x86_64-linux-gnu/.libc.new"
mv "$PLAT/lib/x86_64-linux-gnu/.libc.new" "$PLAT/lib/x86_64-linux-gnu/libc.so.6"
# sleep as a container's PID 1 ignores SIGTERM: no grace period (--timeout 0).
t0=$(now)
PLINTH_STATE_DIR=$WORK/state "$PLINTH" --root "$WORK/run" upgrade --parallel 10 --timeout 0 >"$OUT/upgrade.txt"
t1=$(now)
tail -n 1 "$OUT/upgrade.txt"
ROLL=$(echo "$t1 - $t0" | bc -l)
printf '' >"$WORK/fleet.toml"
PLINTH_STATE_DIR=$WORK/state "$PLINTH" --root "$WORK/run" apply "$WORK/fleet.toml" >/dev/null

step "LXC: lxc-copy -s -B overlayfs of a busybox container, lxc-start, $N times"
lxc_ok=1
if [ "${PEERS:-1}" = 0 ]; then
	echo "LXC: skipped (PEERS=0)"
elif lxc-create -q -t busybox -n plinth-bench-base >"$OUT/lxc-create.log" 2>&1; then
	cfg=/var/lib/lxc/plinth-bench-base/config
	sed -i '/^lxc.net.0/d' "$cfg"
	echo "lxc.net.0.type = empty" >>"$cfg"
	settle
	before=$(mem_available_kib) beforef=$(free_kib)
	t0=$(now)
	for i in $(seq 1 "$N"); do
		lxc-copy -s -B overlayfs -n plinth-bench-base -N "plinth-bench-$i" >>"$OUT/lxc.log" 2>&1 &&
			lxc-start -n "plinth-bench-$i" >>"$OUT/lxc.log" 2>&1 || lxc_ok=0
	done
	t1=$(now)
	settle
	after=$(mem_available_kib) afterf=$(free_kib)
	running=$(lxc-ls --running | wc -w)
	echo "LXC: $running running"
	t2=$(now)
	for i in $(seq 1 "$N"); do lxc-destroy -f -n "plinth-bench-$i" >>"$OUT/lxc.log" 2>&1; done
	t3=$(now)
	UP[lxc]=$(echo "$t1 - $t0" | bc -l)
	DOWN[lxc]=$(echo "$t3 - $t2" | bc -l)
	MEM[lxc]=$(((before - after) / N))
	MEMF[lxc]=$(((beforef - afterf) / N))
else
	lxc_ok=0
	echo "LXC: lxc-create failed (see $OUT/lxc-create.log)" >&2
fi

step "podman run -d, $N times"
image=localhost/plinth-busybox:test
if [ "${PEERS:-1}" = 0 ]; then
	echo "podman: skipped (PEERS=0)"
elif podman image exists "$image"; then
	settle
	before=$(mem_available_kib) beforef=$(free_kib)
	t0=$(now)
	for i in $(seq 1 "$N"); do
		# crun 1.8, podman's default here, refuses this host's hybrid cgroups.
		podman run -d --runtime runc --label plinth-bench --network none --name "plinth-bench-$i" \
			"$image" sleep 100000 >>"$OUT/podman.log" 2>&1 || echo "podman run $i failed" >&2
	done
	t1=$(now)
	settle
	after=$(mem_available_kib) afterf=$(free_kib)
	echo "podman: $(podman ps --filter label=plinth-bench -q | wc -l) running"
	t2=$(now)
	podman ps -a -q --filter label=plinth-bench | xargs -r podman rm -f >>"$OUT/podman.log" 2>&1
	t3=$(now)
	UP[podman]=$(echo "$t1 - $t0" | bc -l)
	DOWN[podman]=$(echo "$t3 - $t2" | bc -l)
	MEM[podman]=$(((before - after) / N))
	MEMF[podman]=$(((beforef - afterf) / N))
else
	echo "podman: image $image missing (the podman tests build it); skipped" >&2
fi

{
	echo "| tool | $N up (s) | per container (KiB of MemAvailable) | per container (KiB, MemAvailable + per-CPU free lists) | $N removed (s) |"
	echo "| --- | ---: | ---: | ---: | ---: |"
	for t in plinth lxc podman; do
		[ -n "${UP[$t]:-}" ] || continue
		printf '| %s | %.2f | %s | %s | %.2f |\n' "$t" "${UP[$t]}" "${MEM[$t]}" "${MEMF[$t]}" "${DOWN[$t]}"
	done
	[ "$lxc_ok" = 1 ] || echo "(LXC: some containers failed; see lxc.log)"
	printf '\nplinth upgrade, %s containers affected, waves of 10, no grace period: %.2f s\n' "$N" "$ROLL"
} | tee "$OUT/summary.md"
echo "results in $OUT"
