#!/bin/sh
# Times `plinth check ROOT --onto /` against a loop of the loader trace
# (LD_TRACE_LOADED_OBJECTS=1 LD_BIND_NOW=1 ld.so FILE) over the same dynamically
# linked ELF files, warm caches, side by side; prints files per second.
#
# Usage: bench/check.sh ROOT [PLINTH]   (PLINTH defaults to target/release/plinth)
set -eu
root=${1:?usage: bench/check.sh ROOT [PLINTH]}
plinth=${2:-target/release/plinth}
out=${BENCH_OUT:-bench/out}
mkdir -p "$out"
list="$out/check-dynamic-elf.txt"

# The dynamically linked ELF files plinth examined (those it resolved).
"$plinth" check "$root" --onto / --format json > "$out/check-report.json"
python3 - "$root" "$out/check-report.json" > "$list" <<'PY'
import json, os, sys
root, report = sys.argv[1], json.load(open(sys.argv[2]))
for f in report["files"]:
    p = os.path.join(root, f["path"])
    with open(p, "rb") as fh:
        head = fh.read(64)
    if head[:4] != b"\x7fELF" or any(x["kind"] in ("wrong-architecture", "malformed-elf") for x in f["problems"]):
        continue
    # PT_DYNAMIC present: scan the program headers (64-bit little-endian).
    import struct
    with open(p, "rb") as fh:
        data = fh.read()
    phoff, = struct.unpack_from("<Q", data, 32)
    phnum, = struct.unpack_from("<H", data, 56)
    if any(struct.unpack_from("<I", data, phoff + 56 * i)[0] == 2 for i in range(phnum)):
        print(p)
PY
n=$(wc -l < "$list")
loop="$out/check-loop.sh"
cat > "$loop" <<SH
#!/bin/sh
while read -r f; do LD_TRACE_LOADED_OBJECTS=1 LD_BIND_NOW=1 /lib64/ld-linux-x86-64.so.2 "\$f" >/dev/null 2>&1; done < "$list"
SH
chmod +x "$loop"
echo "$n dynamically linked ELF files under $root"
if command -v hyperfine >/dev/null; then
    hyperfine --warmup 1 --export-json "$out/check-hyperfine.json" \
        -n plinth "$plinth check $root --onto / --format json" \
        -n ld.so-loop "$loop"
    python3 - "$out/check-hyperfine.json" "$n" <<'PY'
import json, sys
r = {x["command"]: x["mean"] for x in json.load(open(sys.argv[1]))["results"]}
n = int(sys.argv[2])
p, l = r["plinth"], r["ld.so-loop"]
print(f"plinth {p:.3f} s ({n / p:.0f} ELF files/s), loader loop {l:.3f} s ({n / l:.0f} files/s), ratio {p / l:.2f} (target <= 0.30)")
PY
else
    time "$plinth" check "$root" --onto / --format json > /dev/null
    time "$loop"
fi
