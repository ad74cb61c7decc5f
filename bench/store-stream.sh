#!/usr/bin/env bash
# Storage benchmark: full and incremental `plinth send | plinth receive` of one container
# layer, against what an operator would use instead on the same tree: `tar | zstd` (GNU
# tar's --listed-incremental for the increment) on both backends, and `btrfs send` /
# `btrfs receive` on btrfs. The tree is a copy of /usr/bin and /usr/lib/python3.11 in the
# container's upper layer (about 400 MB); the change is an append to every 100th file,
# 20 files deleted and 20 added. Each command runs under hyperfine; the stream sizes are
# measured once.
#
# Usage: bench/store-stream.sh [RUNS]      (default 3)
# Environment: PLINTH (binary), NO_BUILD=1 to skip `cargo build --release`, TREE="DIR..."
# to change the tree.
# Results: bench/out/store-stream-<date>/summary.md, printed at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

RUNS=${1:-3}
if [ "$(id -u)" -ne 0 ]; then
	echo "error: the benchmark mounts a btrfs filesystem and needs root" >&2
	exit 1
fi
ensure_packages busybox-static btrfs-progs hyperfine zstd tar python3
if [ -z "${PLINTH:-}" ]; then
	if [ "${NO_BUILD:-0}" != 1 ]; then
		load_cargo_env
		step "cargo build --release"
		cargo build --release
	fi
	PLINTH=$PWD/target/release/plinth
fi
TREE=${TREE:-/usr/bin /usr/lib/python3.11}
OUT=bench/out/store-stream-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
WORK=$(mktemp -d /var/tmp/plinth-store-bench.XXXXXX)
C=bench-store
trap 'cleanup' EXIT

# Every data directory the benchmark uses, each with its own --root (a supervisor's
# socket lives there, and serves one data directory).
DATA_DIRS=("$WORK/bt/A" "$WORK/bt/B" "$WORK/ext4/A" "$WORK/ext4/B")
cleanup() {
	set +e
	# The supervisors that new, rm and receive started hold their data directories
	# open: stop them, or the btrfs filesystem cannot be unmounted.
	local d
	for d in "${DATA_DIRS[@]}"; do
		[ -d "$d" ] && "$PLINTH" --root "$d.run" --data-dir "$d" daemon --stop >/dev/null 2>&1
	done
	umount "$WORK/bt" 2>/dev/null || echo "warning: $WORK/bt is still mounted" >&2
	rm -rf "$WORK"
}

step "a btrfs filesystem in a 4 GiB loop file"
truncate -s 4G "$WORK/bt.img"
mkfs.btrfs -q "$WORK/bt.img"
mkdir -p "$WORK/bt" "$WORK/ext4"
mount -o loop "$WORK/bt.img" "$WORK/bt"

# results.tsv: backend, operation, tool, mean seconds, stream bytes
printf 'backend\top\ttool\tmean\tbytes\n' >"$OUT/results.tsv"

# time BACKEND OP TOOL BYTES PREPARE COMMAND
time_it() {
	local backend=$1 op=$2 tool=$3 bytes=$4 prepare=$5 cmd=$6 json
	json=$OUT/$backend-$op-$tool.json
	hyperfine --style basic --runs "$RUNS" --prepare "$prepare" --export-json "$json" \
		-n "$backend $op $tool" "$cmd" >&2
	python3 - "$json" "$backend" "$op" "$tool" "$bytes" >>"$OUT/results.tsv" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
print("\t".join([sys.argv[2], sys.argv[3], sys.argv[4], f"{r['mean']:.3f}", sys.argv[5]]))
PY
}

run_backend() {
	local backend=$1 root=$2
	local A="$PLINTH --root $root/A.run --data-dir $root/A"
	local B="$PLINTH --root $root/B.run --data-dir $root/B"
	local S=$WORK/streams-$backend
	mkdir -p "$S"
	step "$backend: the container and its tree"
	$A new "$C" --base host -- /bin/busybox sleep 1000
	local up=$root/A/containers/$C/upper
	mkdir -p "$up/data"
	# shellcheck disable=SC2086
	cp -a $TREE "$up/data/"
	du -sh "$up" | tee "$OUT/$backend-tree.txt"
	find "$up" -type f | wc -l >>"$OUT/$backend-tree.txt"
	$A snapshot "$C@s1"
	# tar's level-0 archive and its snapshot file, of the same state.
	tar -g "$S/snar0" -C "$up" -cf - . | zstd -q -3 -T1 >"$S/full.tar.zst"
	step "$backend: the change"
	find "$up" -type f | sort | awk 'NR % 100 == 0' | while read -r f; do
		printf 'changed\n' >>"$f"
	done
	find "$up" -type f | sort | awk 'NR % 100 == 50' | head -n 20 | xargs rm -f
	for i in $(seq 1 20); do head -c 4096 /dev/urandom >"$up/data/new-$i"; done
	$A snapshot "$C@s2"
	cp "$S/snar0" "$S/snar1"
	tar -g "$S/snar1" -C "$up" -cf - . | zstd -q -3 -T1 >"$S/inc.tar.zst"

	local snaps=$root/A/containers/$C/snapshots
	$A send "$C@s1" >"$S/full.plinth" 2>/dev/null
	$A send "$C@s2" --from s1 >"$S/inc.plinth" 2>/dev/null
	sz() { stat -c %s "$1"; }

	step "$backend: send"
	time_it "$backend" "full-send" plinth "$(sz "$S/full.plinth")" "sync" \
		"$A send $C@s1 > $S/full.plinth"
	time_it "$backend" "full-send" "tar|zstd" "$(sz "$S/full.tar.zst")" "sync" \
		"tar -C $snaps/s1 -cf - . | zstd -q -3 -T1 > $S/full2.tar.zst"
	time_it "$backend" "inc-send" plinth "$(sz "$S/inc.plinth")" "sync" \
		"$A send $C@s2 --from s1 > $S/inc.plinth"
	time_it "$backend" "inc-send" "tar|zstd" "$(sz "$S/inc.tar.zst")" "cp $S/snar0 $S/snar2" \
		"tar -g $S/snar2 -C $up -cf - . | zstd -q -3 -T1 > $S/inc2.tar.zst"
	if [ "$backend" = btrfs ]; then
		btrfs send -q "$snaps/s1" >"$S/full.btrfs"
		btrfs send -q -p "$snaps/s1" "$snaps/s2" >"$S/inc.btrfs"
		time_it "$backend" "full-send" "btrfs send" "$(sz "$S/full.btrfs")" "sync" \
			"btrfs send -q $snaps/s1 > $S/full.btrfs"
		time_it "$backend" "inc-send" "btrfs send" "$(sz "$S/inc.btrfs")" "sync" \
			"btrfs send -q -p $snaps/s1 $snaps/s2 > $S/inc.btrfs"
	fi

	step "$backend: receive"
	mkdir -p "$root/B" "$root/tar" "$root/raw"
	time_it "$backend" "full-receive" plinth "$(sz "$S/full.plinth")" \
		"$B rm -f $C >/dev/null 2>&1 || true; sync" "$B receive < $S/full.plinth"
	time_it "$backend" "inc-receive" plinth "$(sz "$S/inc.plinth")" \
		"$B snapshot rm $C@s2 >/dev/null 2>&1 || true; sync" "$B receive < $S/inc.plinth"
	time_it "$backend" "full-receive" "tar|zstd" "$(sz "$S/full.tar.zst")" \
		"rm -rf $root/tar/t; mkdir $root/tar/t; sync" \
		"zstd -q -d < $S/full.tar.zst | tar -g /dev/null -C $root/tar/t -xf -"
	rm -rf "$root/tar/base"
	mkdir "$root/tar/base"
	zstd -q -d <"$S/full.tar.zst" | tar -g /dev/null -C "$root/tar/base" -xf -
	time_it "$backend" "inc-receive" "tar|zstd" "$(sz "$S/inc.tar.zst")" \
		"rm -rf $root/tar/t; cp -a $root/tar/base $root/tar/t; sync" \
		"zstd -q -d < $S/inc.tar.zst | tar -g /dev/null -C $root/tar/t -xf -"
	if [ "$backend" = btrfs ]; then
		time_it "$backend" "full-receive" "btrfs receive" "$(sz "$S/full.btrfs")" \
			"btrfs subvolume delete -c $root/raw/s2 >/dev/null 2>&1; btrfs subvolume delete -c $root/raw/s1 >/dev/null 2>&1; sync" \
			"btrfs receive -q $root/raw < $S/full.btrfs"
		time_it "$backend" "inc-receive" "btrfs receive" "$(sz "$S/inc.btrfs")" \
			"btrfs subvolume delete -c $root/raw/s2 >/dev/null 2>&1; sync" \
			"btrfs receive -q $root/raw < $S/inc.btrfs"
	fi
	# What plinth received is what was sent.
	diff -r --no-dereference "$snaps/s2" "$root/B/containers/$C/snapshots/s2" >/dev/null 2>&1 ||
		echo "warning: $backend: the received s2 differs from the sent one" >&2
	$B rm -f "$C" >/dev/null 2>&1 || true
	$A rm -f "$C" >/dev/null 2>&1 || true
}

run_backend btrfs "$WORK/bt"
run_backend ext4 "$WORK/ext4"

{
	echo "# bench/store-stream.sh, $(date -u +%Y-%m-%d), $RUNS runs each"
	echo
	echo "kernel $(uname -r), $(nproc) CPUs; tree: $TREE"
	for b in btrfs ext4; do echo "$b tree: $(tr '\n' ' ' <"$OUT/$b-tree.txt")(size, files)"; done
	echo
	python3 - "$OUT/results.tsv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
print("| backend | operation | tool | mean (s) | stream (bytes) | time / plinth | size / plinth |")
print("|---|---|---|---:|---:|---:|---:|")
for r in rows:
    p = next(x for x in rows if x["backend"] == r["backend"] and x["op"] == r["op"] and x["tool"] == "plinth")
    t = float(r["mean"]) / float(p["mean"])
    s = int(r["bytes"]) / int(p["bytes"])
    print(f"| {r['backend']} | {r['op']} | {r['tool']} | {float(r['mean']):.2f} | {int(r['bytes'])} | {t:.2f} | {s:.2f} |")
PY
} >"$OUT/summary.md"
cat "$OUT/summary.md"
