#!/usr/bin/env bash
# Store benchmark, part 1: importing a ~200 MB docker-archive.
#   plinth   plinth --data-dir D image import FILE       (a fresh store every run)
#   podman   podman load -i FILE                          (the image removed before every run)
# side by side in one hyperfine run, warm page cache (each run starts after `sync`, so no
# run pays for the previous one's writeback), and the ratio plinth/podman.
#
# The archive is made here, once: a tar of the cached debootstrap root of scripts/lib.sh
# (`debootstrap_cache`, Debian trixie minbase, about 215 MB), `podman import`ed as one
# layer, then `podman save --format docker-archive`. Both tools read the same file and
# write to the same disk (plinth to a data dir under /var/tmp, podman to its storage).
#
# Usage: bench/store.sh [RELEASE]          (default trixie)
# Environment: RUNS (default 3), WARMUP (default 1), PLINTH (binary; default
#              target/release/plinth, built unless NO_BUILD=1).
# Results: bench/out/store-<date>/ (hyperfine.{json,md}, summary.txt, machine.txt).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

RELEASE=${1:-trixie}
RUNS=${RUNS:-3}
WARMUP=${WARMUP:-1}
if [ "$(id -u)" -ne 0 ]; then
	echo "error: importing layers needs root (ownership, whiteout devices)" >&2
	exit 1
fi
ensure_packages podman hyperfine debootstrap
configure_podman
if [ -z "${PLINTH:-}" ]; then
	if [ "${NO_BUILD:-0}" != 1 ]; then
		load_cargo_env
		step "cargo build --release -p plinth"
		cargo build --release -p plinth
	fi
	PLINTH=$PWD/target/release/plinth
fi
ROOT=$(debootstrap_cache "$RELEASE")
OUT=bench/out/store-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
WORK=$(mktemp -d /var/tmp/plinth-store-bench.XXXXXX)
IMAGE=localhost/plinth-bench-store:$RELEASE
cleanup() {
	set +e
	podman rmi -f "$IMAGE" >/dev/null 2>&1
	rm -rf "$WORK"
}
trap cleanup EXIT

step "the docker-archive: $ROOT as one layer"
tar -C "$ROOT" --numeric-owner -cf "$WORK/rootfs.tar" .
podman import --quiet "$WORK/rootfs.tar" "$IMAGE" >/dev/null
podman save --quiet --format docker-archive -o "$WORK/image.tar" "$IMAGE"
rm -f "$WORK/rootfs.tar"
podman rmi -f "$IMAGE" >/dev/null
SIZE=$(stat -c %s "$WORK/image.tar")
echo "$WORK/image.tar: $SIZE bytes" >&2

{
	echo "date:    $(date -Is)"
	echo "kernel:  $(uname -r)"
	echo "cpus:    $(nproc)"
	echo "memory:  $(awk '/^MemTotal:/ {print $2 " kB"}' /proc/meminfo)"
	echo "disk:    $(df -hT /var/tmp | tail -1)"
	echo "podman:  $(podman --version) (storage driver $(podman info --format '{{.Store.GraphDriverName}}'))"
	echo "plinth:  $PLINTH"
	echo "archive: $SIZE bytes ($RELEASE minbase, one layer)"
} >"$OUT/machine.txt"

step "hyperfine: $RUNS runs, $WARMUP warm-up"
hyperfine --runs "$RUNS" --warmup "$WARMUP" \
	--export-json "$OUT/hyperfine.json" --export-markdown "$OUT/hyperfine.md" \
	-n plinth --prepare "rm -rf $WORK/data; sync" \
	"$PLINTH --data-dir $WORK/data image import $WORK/image.tar --name bench" \
	-n podman --prepare "podman rmi -f $IMAGE >/dev/null 2>&1; sync" \
	"podman load -q -i $WORK/image.tar"

python3 - "$OUT/hyperfine.json" >"$OUT/summary.txt" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
p, q = r["plinth"], r["podman"]
print(f"plinth image import: {p['mean']:.3f} s ± {p['stddev'] or 0:.3f} (min {p['min']:.3f})")
print(f"podman load:         {q['mean']:.3f} s ± {q['stddev'] or 0:.3f} (min {q['min']:.3f})")
print(f"ratio plinth/podman: {p['mean'] / q['mean']:.2f}")
PY
cat "$OUT/machine.txt" "$OUT/summary.txt"
