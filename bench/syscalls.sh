#!/usr/bin/env bash
# `plinth check ROOT --syscalls` on whole Debian minimal roots: the system call analysis of
# every ELF file (its own `syscall` sites, its interpreter's and its libraries'), timed
# with hyperfine on warm caches, one command per root, and reported as files/s and MB/s
# of ELF input (target: a whole minbase root in at most 3 s of wall time).
#
# Usage: bench/syscalls.sh [RELEASE...]     (default: trixie bullseye)
# Environment: RUNS (default 10), WARMUP (default 1), PLINTH (binary; default
#              target/release/plinth, built unless NO_BUILD=1).
#
# The roots are the cached debootstraps of scripts/lib.sh (`debootstrap_cache`; built once,
# as root). The ELF files of a root are counted here, independently of plinth: regular
# files whose first four bytes are "\x7fELF", and their total size; plinth's own count
# (`summary.files` of its JSON) is printed beside it. Every timed run writes its whole
# answer (to /dev/null), and an exit code of 1 (some files fail the check) is an answer;
# a crash stops the run.
#
# Results: bench/out/syscalls-<date>/ (hyperfine.{json,csv,md}, <release>.json: one
# plinth answer per root, summary.txt, machine.txt); the summary is printed at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

RUNS=${RUNS:-10}
WARMUP=${WARMUP:-1}
TARGET_S=3
if [ $# -gt 0 ]; then
	releases=("$@")
else
	releases=(trixie bullseye)
fi

ensure_packages hyperfine jq debootstrap

if [ -z "${PLINTH:-}" ]; then
	if [ "${NO_BUILD:-0}" != 1 ]; then
		load_cargo_env
		step "cargo build --release"
		cargo build --release
	fi
	PLINTH=${CARGO_TARGET_DIR:-$PWD/target}/release/plinth
fi
if ! "$PLINTH" check --help 2>/dev/null | grep -q -- --syscalls; then
	echo "error: $PLINTH has no \`check --syscalls\`" >&2
	exit 1
fi

out=bench/out/syscalls-$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"
out=$(cd "$out" && pwd)

# elf_census ROOT: "FILES BYTES" of the regular ELF files under ROOT.
elf_census() {
	find "$1" -xdev -type f -print0 | perl -0ne '
		chomp;
		open(my $f, "<", $_) or next;
		(read($f, my $magic, 4) // 0) == 4 or next;
		$magic eq "\x7fELF" or next;
		$n++;
		$bytes += -s $f;
		END { printf "%d %d\n", $n // 0, $bytes // 0 }'
}

declare -A root files bytes plinth_files
cmds=()
for r in "${releases[@]}"; do
	root[$r]=$(debootstrap_cache "$r")
	read -r n b < <(elf_census "${root[$r]}")
	files[$r]=$n
	bytes[$r]=$b
	# One untimed answer, kept for the record and for plinth's own file count.
	code=0
	"$PLINTH" check "${root[$r]}" --syscalls --format json >"$out/$r.json" 2>"$out/$r.err" || code=$?
	if [ "$code" -gt 1 ]; then
		echo "error: plinth check --syscalls failed on ${root[$r]} (exit $code):" >&2
		tail -n 5 "$out/$r.err" >&2
		exit 1
	fi
	plinth_files[$r]=$(jq .summary.files "$out/$r.json")
	echo "$r: ${root[$r]}: ${files[$r]} ELF files, ${bytes[$r]} bytes; plinth examined ${plinth_files[$r]} files" >&2
	cmds+=(-n "$r" "$PLINTH check ${root[$r]} --syscalls --format json >/dev/null; [ \$? -le 1 ]")
done

{
	echo "date:     $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "host:     $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r)"
	echo "cpu:      $(nproc) x $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
	echo "memory:   $(awk '/^MemTotal/ {print $2 " kB"}' /proc/meminfo)"
	for r in "${releases[@]}"; do
		echo "root:     ${root[$r]} ($(tr '\n' ' ' <"${root[$r]}.done"))"
	done
	echo "plinth:   $PLINTH"
	echo "git:      $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
	echo "hyperfine: $(hyperfine --version)"
} >"$out/machine.txt"

step "hyperfine: $RUNS runs after $WARMUP warm-up run(s) each"
hyperfine --warmup "$WARMUP" --runs "$RUNS" --style basic \
	--export-json "$out/hyperfine.json" --export-csv "$out/hyperfine.csv" \
	--export-markdown "$out/hyperfine.md" "${cmds[@]}"

stat_of() { jq -r --arg n "$1" --arg k "$2" '.results[] | select(.command == $n) | .[$k]' "$out/hyperfine.json"; }
calc() { awk "BEGIN { printf \"%.6f\", $1 }"; }
{
	echo "plinth check ROOT --syscalls --format json: Debian minbase roots, warm caches, $(nproc) CPUs"
	printf '%-10s %9s %9s %9s %10s %9s %9s  %s\n' root "ELF files" "MB" "mean (s)" "stddev (s)" files/s MB/s "target <= ${TARGET_S} s"
	for r in "${releases[@]}"; do
		mean=$(stat_of "$r" mean)
		sd=$(stat_of "$r" stddev)
		mb=$(calc "${bytes[$r]} / 1000000")
		met=$(awk "BEGIN { print ($mean <= $TARGET_S) ? \"met\" : \"NOT met\" }")
		printf '%-10s %9d %9.1f %9.3f %10.3f %9.0f %9.1f  %s\n' "$r" "${files[$r]}" "$mb" "$mean" "$sd" \
			"$(calc "${files[$r]} / $mean")" "$(calc "$mb / $mean")" "$met"
	done
	for r in "${releases[@]}"; do
		echo "$r: plinth's summary.files: ${plinth_files[$r]}"
	done
} | tee "$out/summary.txt"
echo "results in $out" >&2
