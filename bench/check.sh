#!/usr/bin/env bash
# `plinth check ROOT --onto /` against the only existing tool that answers the same
# question: a loop of the dynamic loader's trace
# (`LD_TRACE_LOADED_OBJECTS=1 LD_BIND_NOW=1 /lib64/ld-linux-x86-64.so.2 FILE`) over the
# same root's dynamically linked ELF files, side by side in one hyperfine run, warm caches
# (issue 3, "Performance"; target: plinth at most 0.3 of the loop's wall time).
#
# Usage: bench/check.sh [RELEASE]          (default trixie: a Debian minbase root)
# Environment: RUNS (default 10), WARMUP (default 3), PLINTH (binary; default
#              target/release/plinth, built unless NO_BUILD=1).
#
# The root is the cached debootstrap of scripts/lib.sh (`debootstrap_cache`; built once,
# as root). Three commands are timed:
#   plinth   target/release/plinth check ROOT --onto / --format json
#   loop     the trace, one file after another (a plain sequential shell loop)
#   xargs    the same traces, $(nproc) at a time (xargs -P), for fairness: plinth runs
#            in parallel too
# Every command writes its full answer to a file, so none is timed doing less work. When
# `plinth check` is not implemented in this tree, the loops are still timed and the
# ratio is reported as unavailable.
#
# Results: bench/out/check-<date>/ (hyperfine.{json,csv,md}, elf-dynamic.txt, summary.txt,
# machine.txt); the summary is printed at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

LOADER=/lib64/ld-linux-x86-64.so.2

# The timed loops. Environment variables that steer the loader are dropped first.
trace_loop() {
	unset LD_LIBRARY_PATH LD_PRELOAD LD_AUDIT
	local f
	while IFS= read -r f; do
		LD_TRACE_LOADED_OBJECTS=1 LD_BIND_NOW=1 "$LOADER" "$f" </dev/null || true
	done <"$1"
}
trace_xargs() {
	unset LD_LIBRARY_PATH LD_PRELOAD LD_AUDIT
	# env(1) sets the variables for the loader only: set on xargs, the loader would trace
	# xargs itself. GNU xargs gives its commands /dev/null as stdin.
	xargs -d '\n' -n 1 -P "$(nproc)" env LD_TRACE_LOADED_OBJECTS=1 LD_BIND_NOW=1 "$LOADER" <"$1" || true
}
case ${1:-} in
--trace-loop)
	trace_loop "$2" >"$3" 2>&1
	exit 0
	;;
--trace-xargs)
	trace_xargs "$2" >"$3" 2>&1
	exit 0
	;;
esac

RELEASE=${1:-trixie}
RUNS=${RUNS:-10}
WARMUP=${WARMUP:-3}

ensure_packages hyperfine jq binutils debootstrap
root=$(debootstrap_cache "$RELEASE")

if [ -z "${PLINTH:-}" ]; then
	if [ "${NO_BUILD:-0}" != 1 ]; then
		load_cargo_env
		step "cargo build --release"
		cargo build --release || echo "warning: cargo build --release failed" >&2
	fi
	PLINTH=$PWD/target/release/plinth
fi

out=bench/out/check-$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d /tmp/plinth-bench-check.XXXXXX)
trap 'rm -rf "$work"' EXIT

# The oracle's file set (crates/cli/tests/common/elf_probe.rs, ElfInfo::is_dynamic):
# regular ELF executables and shared objects with PT_INTERP or a DT_NEEDED.
step "listing the dynamically linked ELF files of $root"
list=$out/elf-dynamic.txt
# shellcheck disable=SC2016 # the script is for sh -c, which expands it
find "$root" -type f -print0 | sort -z | xargs -0 -n 64 -P "$(nproc)" sh -c '
	for f; do
		h=$(LC_ALL=C readelf -hldW "$f" 2>/dev/null) || continue
		printf "%s\n" "$h" | grep -Eq "^ +Type: +(EXEC|DYN) " || continue
		printf "%s\n" "$h" | grep -Eq "Requesting program interpreter|\(NEEDED\)" && printf "%s\n" "$f"
	done
	exit 0' sh | sort >"$list"
nfiles=$(wc -l <"$list")
echo "$nfiles dynamically linked ELF files" >&2
[ "$nfiles" -gt 0 ] || {
	echo "error: no dynamically linked ELF file found under $root" >&2
	exit 1
}

have_plinth=0
plinth_files=
if [ -x "$PLINTH" ] && "$PLINTH" check --help >/dev/null 2>&1; then
	if "$PLINTH" check "$root" --onto / --format json >"$work/plinth.json" 2>"$work/plinth.err" ||
		jq -e .summary.files "$work/plinth.json" >/dev/null 2>&1; then
		have_plinth=1
		plinth_files=$(jq .summary.files "$work/plinth.json")
	else
		echo "warning: plinth check failed on $root; timing the loader loops only:" >&2
		tail -n 5 "$work/plinth.err" >&2
	fi
else
	echo "note: plinth check is not implemented in $PLINTH yet; timing the loader loops only (no ratio)" >&2
fi

{
	echo "date:     $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "host:     $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r)"
	echo "cpu:      $(nproc) x $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
	echo "memory:   $(awk '/^MemTotal/ {print $2 " kB"}' /proc/meminfo)"
	echo "glibc:    $("$LOADER" --version 2>/dev/null | head -n1)"
	echo "root:     $root ($(tr '\n' ' ' <"$root.done"))"
	echo "plinth:   $PLINTH ($([ "$have_plinth" = 1 ] && echo "check implemented" || echo "no check"))"
	echo "git:      $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
	echo "hyperfine: $(hyperfine --version)"
} >"$out/machine.txt"

self=$PWD/bench/check.sh
cmds=()
# plinth may exit 1 when some files fail: that is an answer; a crash (> 1) stops the run.
[ "$have_plinth" = 1 ] && cmds+=(-n plinth "$PLINTH check $root --onto / --format json >$work/plinth.out; [ \$? -le 1 ]")
cmds+=(-n loop "bash $self --trace-loop $list $work/loop.out")
cmds+=(-n "xargs -P$(nproc)" "bash $self --trace-xargs $list $work/xargs.out")

step "hyperfine: $RUNS runs after $WARMUP warm-up runs each"
hyperfine --warmup "$WARMUP" --runs "$RUNS" --style basic \
	--export-json "$out/hyperfine.json" --export-csv "$out/hyperfine.csv" \
	--export-markdown "$out/hyperfine.md" "${cmds[@]}"

mean() { jq -r --arg n "$1" '.results[] | select(.command == $n) | .mean' "$out/hyperfine.json"; }
calc() { awk "BEGIN { printf \"%.6f\", $1 }"; }
loop_s=$(mean loop)
xname="xargs -P$(nproc)"
xargs_s=$(mean "$xname")
{
	echo "plinth check --onto / vs the loader's trace: $RELEASE minbase root, $nfiles dynamically linked ELF files, warm caches"
	printf '%-12s %10s %10s\n' command "mean (s)" "files/s"
	if [ "$have_plinth" = 1 ]; then
		plinth_s=$(mean plinth)
		printf '%-12s %10.3f %10.0f   (it examined %s files: %.0f/s)\n' plinth "$plinth_s" \
			"$(calc "$nfiles / $plinth_s")" "$plinth_files" "$(calc "$plinth_files / $plinth_s")"
	fi
	printf '%-12s %10.3f %10.0f\n' loop "$loop_s" "$(calc "$nfiles / $loop_s")"
	printf '%-12s %10.3f %10.0f\n' "$xname" "$xargs_s" "$(calc "$nfiles / $xargs_s")"
	if [ "$have_plinth" = 1 ]; then
		ratio=$(calc "$plinth_s / $loop_s")
		met=$(awk "BEGIN { print ($ratio <= 0.3) ? \"met\" : \"NOT met\" }")
		printf 'ratio plinth/loop:  %.3f (target <= 0.3: %s)\n' "$ratio" "$met"
		printf 'ratio plinth/%s: %.3f\n' "$xname" "$(calc "$plinth_s / $xargs_s")"
	else
		echo "ratio: unavailable (plinth check is not implemented in this tree)"
	fi
} | tee "$out/summary.txt"
echo "results in $out" >&2
