#!/usr/bin/env bash
# Container lifecycle benchmark: `RUNTIME run` of /bin/true in a busybox bundle, for
# plinth (target/release/plinth), crun and runc side by side in one hyperfine run, plus
# each one's peak RSS from `/usr/bin/time -v`.
#
# Usage: bench/lifecycle.sh [RUNS]        (default 50 timed runs per runtime)
# Environment: PLINTH, CRUN, RUNC (binaries), WARMUP (default 5), RSS_RUNS (default 10),
#              NO_BUILD=1 to skip `cargo build --release`.
#
# Every runtime runs through the same wrapper, which gives it a fresh container id, its
# own --root (on tmpfs), and a private mount namespace in which /sys/fs/cgroup/unified is unmounted:
# crun 1.8 refuses this host's hybrid cgroup layout otherwise, and all three pay the same
# cost for it. A runtime that cannot run the bundle is reported as "failed" and left out
# of the timing; the others are still measured.
#
# A fourth row, "floor", is not a runtime: util-linux unshare(1) through the same wrapper,
# making the bundle's five namespaces (pid, network, ipc, uts, mount), chrooting into its
# rootfs and running /bin/true there. It makes no cgroup, mounts nothing (no /proc, /dev,
# /sys, masks), writes no state and needs no sealed re-exec, so no conforming runtime can be
# faster; its ratio to crun bounds what the plinth/crun ratio can reach on this machine.
#
# Results: bench/out/<date>/ (hyperfine.{csv,json,md}, rss-<runtime>.txt, summary.{csv,md},
# ratios.csv, machine.txt); the summary table is printed at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

RUNS=${1:-${RUNS:-50}}
WARMUP=${WARMUP:-5}
RSS_RUNS=${RSS_RUNS:-10}

if [ "$(id -u)" -ne 0 ]; then
	echo "error: the benchmark runs containers and needs root" >&2
	exit 1
fi
ensure_packages busybox-static hyperfine time runc crun libseccomp-dev pkg-config

if [ -z "${PLINTH:-}" ]; then
	if [ "${NO_BUILD:-0}" != 1 ]; then
		load_cargo_env
		step "cargo build --release"
		cargo build --release || echo "warning: cargo build --release failed" >&2
	fi
	PLINTH=$PWD/target/release/plinth
fi
CRUN=${CRUN:-$(command -v crun || echo /usr/bin/crun)}
RUNC=${RUNC:-$(command -v runc || echo /usr/sbin/runc)}
RUNTIMES=(plinth crun runc)
declare -A BIN=([plinth]=$PLINTH [crun]=$CRUN [runc]=$RUNC)

out=bench/out/$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d /tmp/plinth-bench.XXXXXX)
# Each runtime's state directory is on a tmpfs of the benchmark's own, as its default
# (/run/plinth, /run/crun, /run/runc) is on a host where /run is a tmpfs. Where /run is
# on disk (this VM's ext4, mounted with `discard`), deleting a state directory waits for
# the discard of its blocks, and creating one makes the allocator hunt for inodes not
# recently deleted: 0.3 ms or more per run, for every runtime alike.
roots=$(mktemp -d /run/plinth-bench.XXXXXX)
mount -t tmpfs -o mode=0700,size=64m plinth-bench "$roots"

cleanup() {
	local rt id
	for rt in "${RUNTIMES[@]}"; do
		[ -d "$roots/$rt" ] || continue
		for id in $("$work/run-one" "${BIN[$rt]}" "$roots/$rt" --list 2>/dev/null); do
			"$work/run-one" "${BIN[$rt]}" "$roots/$rt" --delete "$id" >/dev/null 2>&1 || true
		done
	done
	umount "$roots" 2>/dev/null || true
	rm -rf "$work" "$roots"
}
trap cleanup EXIT

# crun 1.8 accepts ociVersion up to 1.1.0; podman writes 1.0.2-dev, so every runtime
# must take it. The smoke bundle proves a runtime really runs the container (a runtime
# that exits 0 without doing anything must not pass for a fast one).
OCI_VERSION=1.0.2-dev make_busybox_bundle "$work/bundle" bench /bin/true
# shellcheck disable=SC2016 # expanded inside the container
OCI_VERSION=1.0.2-dev make_busybox_bundle "$work/smoke" bench-smoke \
	sh -c 'echo "smoke:$(hostname):$$"'

cat >"$work/run-one" <<'SH'
#!/bin/sh
# run-one RUNTIME ROOT BUNDLE     run BUNDLE once under a fresh container id
# run-one RUNTIME ROOT --list     ids of the containers under ROOT
# run-one RUNTIME ROOT --delete ID
# Each in a private mount namespace without /sys/fs/cgroup/unified (see lifecycle.sh).
rt=$1 root=$2
shift 2
case $1 in
--list) set -- list -q ;;
--delete) set -- delete --force "$2" ;;
*) set -- run --bundle "$1" "bench-$$-$(date +%s%N)" ;;
esac
exec unshare -m sh -c '
	if mountpoint -q /sys/fs/cgroup/unified; then umount /sys/fs/cgroup/unified || exit 125; fi
	exec "$@"' sh "$rt" --root "$root" "$@"
SH
chmod +x "$work/run-one"

cat >"$work/floor-one" <<'SH'
#!/bin/sh
# floor-one ROOTFS CMD...   the bundle's namespaces and root, nothing else (see lifecycle.sh)
# The id is made, and not used, so that the wrapper costs what run-one's does.
: "bench-$$-$(date +%s%N)"
exec unshare -m sh -c '
	if mountpoint -q /sys/fs/cgroup/unified; then umount /sys/fs/cgroup/unified || exit 125; fi
	exec unshare --fork --pid --net --ipc --uts --mount --root="$@"' sh "$@"
SH
chmod +x "$work/floor-one"

# Which runtimes can run the bundle at all.
declare -A STATUS
ok=()
for rt in "${RUNTIMES[@]}"; do
	mkdir -p "$roots/$rt"
	if [ ! -x "${BIN[$rt]}" ]; then
		STATUS[$rt]=failed
		echo "$rt: ${BIN[$rt]} is not an executable: failed" >&2
		continue
	fi
	# Three runs: the output must come from PID 1 of a container with our hostname, and
	# the /bin/true bundle must run too.
	smoke=ok
	for _ in 1 2 3; do
		got=$("$work/run-one" "${BIN[$rt]}" "$roots/$rt" "$work/smoke" 2>>"$out/smoke-$rt.log") || smoke=failed
		echo "$got" >>"$out/smoke-$rt.log"
		[ "$got" = "smoke:bench-smoke:1" ] || smoke=failed
		"$work/run-one" "${BIN[$rt]}" "$roots/$rt" "$work/bundle" >>"$out/smoke-$rt.log" 2>&1 || smoke=failed
	done
	STATUS[$rt]=$smoke
	if [ "$smoke" = ok ]; then
		ok+=("$rt")
	else
		echo "$rt: does not run the bundle (want \"smoke:bench-smoke:1\"): failed; $out/smoke-$rt.log:" >&2
		sed 's/^/    /' "$out/smoke-$rt.log" | head -n 20 >&2
	fi
done

# The floor: PID 1 of its own namespaces, in the bundle's root.
# shellcheck disable=SC2016 # expanded inside the namespaces
floor_got=$("$work/floor-one" "$work/bundle/rootfs" /bin/sh -c 'echo "floor:$$"' 2>&1) || true
if [ "$floor_got" = "floor:1" ] && "$work/floor-one" "$work/bundle/rootfs" /bin/true; then
	FLOOR=ok
else
	FLOOR=failed
	echo "floor: util-linux unshare does not run the bundle's root (got \"$floor_got\"): left out" >&2
fi

{
	echo "date:    $(date -Iseconds)"
	echo "kernel:  $(uname -r)"
	echo "cpus:    $(nproc)"
	echo "memory:  $(free -h | awk '/^Mem:/ {print $2}')"
	echo "cgroups: $(awk '$9 ~ /^cgroup2?$/ {print $5}' /proc/self/mountinfo | paste -sd' ')"
	echo "runs:    $RUNS (warmup $WARMUP), rss runs $RSS_RUNS"
	for rt in "${RUNTIMES[@]}"; do
		printf '%-7s  %s  %s\n' "$rt:" "${BIN[$rt]}" \
			"$("${BIN[$rt]}" --version 2>/dev/null | head -n1 || echo '?')"
	done
	echo "commit:  $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
} >"$out/machine.txt"

if [ "${#ok[@]}" -gt 0 ]; then
	step "hyperfine: ${ok[*]} ($RUNS runs each)"
	args=()
	for rt in "${ok[@]}"; do
		args+=(-n "$rt" "$work/run-one ${BIN[$rt]} $roots/$rt $work/bundle")
	done
	[ "$FLOOR" != ok ] || args+=(-n floor "$work/floor-one $work/bundle/rootfs /bin/true")
	if ! hyperfine --shell=none --warmup "$WARMUP" --runs "$RUNS" \
		--export-csv "$out/hyperfine.csv" --export-json "$out/hyperfine.json" \
		--export-markdown "$out/hyperfine.md" "${args[@]}"; then
		# A runtime failed part-way: time each alone, so the others still get numbers.
		echo "warning: hyperfine failed; timing each runtime on its own" >&2
		echo "command,mean,stddev,median,user,system,min,max" >"$out/hyperfine.csv"
		still_ok=()
		for rt in "${ok[@]}"; do
			if hyperfine --shell=none --warmup "$WARMUP" --runs "$RUNS" \
				--export-csv "$work/one.csv" \
				-n "$rt" "$work/run-one ${BIN[$rt]} $roots/$rt $work/bundle"; then
				tail -n +2 "$work/one.csv" >>"$out/hyperfine.csv"
				still_ok+=("$rt")
			else
				STATUS[$rt]=failed
			fi
		done
		ok=("${still_ok[@]}")
	fi

	step "peak RSS (/usr/bin/time -v, $RSS_RUNS runs each)"
	for rt in "${ok[@]}"; do
		: >"$out/rss-$rt.txt"
		for _ in $(seq "$RSS_RUNS"); do
			/usr/bin/time -v -o "$work/time.txt" \
				"$work/run-one" "${BIN[$rt]}" "$roots/$rt" "$work/bundle" >/dev/null 2>&1 || true
			awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt" >>"$out/rss-$rt.txt"
		done
	done
fi

# Summary: median and mean (ms) from hyperfine's CSV, peak RSS (max over the runs, KiB).
median_of() { awk -F, -v n="$1" 'NR > 1 && $1 == n {printf "%.2f", $4 * 1000}' "$out/hyperfine.csv" 2>/dev/null; }
mean_of() { awk -F, -v n="$1" 'NR > 1 && $1 == n {printf "%.2f", $2 * 1000}' "$out/hyperfine.csv" 2>/dev/null; }
stddev_of() { awk -F, -v n="$1" 'NR > 1 && $1 == n {printf "%.2f", $3 * 1000}' "$out/hyperfine.csv" 2>/dev/null; }
rss_of() { sort -n "$out/rss-$1.txt" 2>/dev/null | tail -n1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "n/a"; else printf "%.2f", a / b }'; }

declare -A MED
echo "runtime,status,median_ms,mean_ms,stddev_ms,peak_rss_kib" >"$out/summary.csv"
{
	echo "| runtime | status | median (ms) | mean ± σ (ms) | peak RSS (KiB) |"
	echo "|---|---|---:|---:|---:|"
} >"$out/summary.md"
for rt in "${RUNTIMES[@]}"; do
	if [ "${STATUS[$rt]}" = ok ]; then
		MED[$rt]=$(median_of "$rt")
		mean=$(mean_of "$rt") sd=$(stddev_of "$rt") rss=$(rss_of "$rt")
	else
		MED[$rt]="" mean="" sd="" rss=""
	fi
	echo "$rt,${STATUS[$rt]},${MED[$rt]},$mean,$sd,$rss" >>"$out/summary.csv"
	echo "| $rt | ${STATUS[$rt]} | ${MED[$rt]:--} | ${mean:--} ± ${sd:--} | ${rss:--} |" >>"$out/summary.md"
done
MED[floor]=""
if [ "$FLOOR" = ok ]; then
	MED[floor]=$(median_of floor)
	echo "floor,reference,${MED[floor]},$(mean_of floor),$(stddev_of floor)," >>"$out/summary.csv"
	echo "| floor (unshare, not a runtime) | reference | ${MED[floor]:--} | $(mean_of floor) ± $(stddev_of floor) | - |" >>"$out/summary.md"
fi
R_FLOOR=$(ratio "${MED[floor]}" "${MED[crun]}")
R_CRUN=$(ratio "${MED[plinth]}" "${MED[crun]}")
R_RUNC=$(ratio "${MED[plinth]}" "${MED[runc]}")
printf 'ratio,value\nplinth/crun,%s\nplinth/runc,%s\nfloor/crun,%s\n' "$R_CRUN" "$R_RUNC" "$R_FLOOR" >"$out/ratios.csv"
printf '\nplinth/crun median ratio: %s\nplinth/runc median ratio: %s\nfloor/crun median ratio: %s\n' \
	"$R_CRUN" "$R_RUNC" "$R_FLOOR" >>"$out/summary.md"

step "summary ($out)"
while IFS=, read -r rt st med mean sd rss; do
	printf '%-8s %-7s %10s %10s %10s %14s\n' "$rt" "$st" "${med:--}" "${mean:--}" "${sd:--}" "${rss:--}"
done <"$out/summary.csv"
echo "plinth/crun median ratio: $R_CRUN"
echo "plinth/runc median ratio: $R_RUNC"
echo "floor/crun median ratio:  $R_FLOOR (namespaces, chroot and /bin/true alone: see the top of this script)"
