# shellcheck shell=bash
# Shared helpers for scripts/demo, scripts/test and bench/lifecycle.sh.
#
# This file owns the host set-up that plinth's scripts need on a Debian 12 machine run as
# root (packages, podman's configuration, the cargo environment) and the shell version of
# the busybox bundle. The Rust tests build their own bundle in
# crates/cli/tests/common/mod.rs; both follow `runc spec` with the same changes (terminal
# off, no seccomp, runtime-spec 1.2 masked paths).

# Print a step header on stderr.
step() { printf '\n==> %s\n' "$*" >&2; }

# Make cargo reachable in non-login shells (rustup installs under ~/.cargo/bin).
load_cargo_env() {
	if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
		# shellcheck disable=SC1091
		. "$HOME/.cargo/env"
	fi
	command -v cargo >/dev/null 2>&1 || {
		echo "error: cargo not found (install the Rust toolchain)" >&2
		return 1
	}
}

# ensure_packages PKG...: install the Debian packages that are not installed yet.
ensure_packages() {
	local missing=() p
	for p in "$@"; do
		if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
			missing+=("$p")
		fi
	done
	if [ "${#missing[@]}" -eq 0 ]; then
		return 0
	fi
	if [ "$(id -u)" -ne 0 ]; then
		echo "error: missing packages ${missing[*]}; run as root or install them" >&2
		return 1
	fi
	step "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# toml_set FILE SECTION KEY VALUE: set KEY = VALUE under [SECTION] of a TOML file,
# replacing an existing (uncommented) setting of KEY there, even a multi-line array, and
# keeping everything else. Creates the file and the section when missing. Idempotent.
toml_set() {
	local file=$1 section=$2 key=$3 value=$4 tmp
	[ -f "$file" ] || : >"$file"
	tmp=$(mktemp "$file.XXXXXX")
	awk -v section="[$section]" -v key="$key" -v value="$value" '
		function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t]+$/, "", s); return s }
		function emit() { print key " = " value; done = 1 }
		BEGIN { insec = 0; done = 0; skipping = 0 }
		skipping {
			# inside the old multi-line value of KEY: drop lines up to the closing bracket
			if ($0 ~ /\]/) skipping = 0
			next
		}
		/^[ \t]*\[/ {
			t = trim($0)
			if (insec && !done) emit()
			insec = (t == section)
			print
			next
		}
		insec && $0 ~ "^[ \t]*" key "[ \t]*=" {
			rest = $0; sub(/^[^=]*=[ \t]*/, "", rest)
			if (rest ~ /^\[/ && rest !~ /\]/) skipping = 1
			if (!done) emit()
			next
		}
		{ print }
		END {
			if (insec && !done) emit()
			else if (!done) { print ""; print section; emit() }
		}
	' "$file" >"$tmp"
	if cmp -s "$tmp" "$file"; then
		rm -f "$tmp"
	else
		cat "$tmp" >"$file" && rm -f "$tmp"
	fi
}

# configure_podman: podman on this kind of host has no systemd (so no systemd cgroup
# manager and no journald) and a low hard RLIMIT_NOFILE (so no default ulimits).
configure_podman() {
	local conf=/etc/containers/containers.conf
	mkdir -p /etc/containers
	toml_set "$conf" containers default_ulimits '[]'
	toml_set "$conf" engine cgroup_manager '"cgroupfs"'
	toml_set "$conf" engine events_logger '"file"'
}

# json_string S: S as a JSON string literal.
json_string() {
	local s=$1
	s=${s//\\/\\\\}
	s=${s//\"/\\\"}
	s=${s//$'\n'/\\n}
	s=${s//$'\t'/\\t}
	printf '"%s"' "$s"
}

# make_busybox_bundle DIR HOSTNAME ARG...: a bundle at DIR (rootfs/ + config.json) whose
# rootfs holds a copy of the host's static /bin/busybox (Debian's busybox-static) and one
# symlink per applet, and whose process runs ARG... $OCI_VERSION sets the config's
# ociVersion (default 1.2.0; crun 1.8 accepts at most 1.1.0).
make_busybox_bundle() {
	local dir=$1 hostname=$2
	shift 2
	local rootfs=$dir/rootfs applet args="" a
	if ! file_is_static /bin/busybox; then
		echo "error: /bin/busybox is not statically linked (install busybox-static)" >&2
		return 1
	fi
	mkdir -p "$rootfs"/{bin,etc,dev,proc,sys,tmp,root,run,var,usr}
	chmod 1777 "$rootfs/tmp"
	cp /bin/busybox "$rootfs/bin/busybox"
	for applet in $(/bin/busybox --list); do
		[ "$applet" = busybox ] || ln -sf busybox "$rootfs/bin/$applet"
	done
	ln -sfn bin "$rootfs/sbin"
	ln -sfn ../bin "$rootfs/usr/bin"
	ln -sfn ../bin "$rootfs/usr/sbin"
	printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >"$rootfs/etc/passwd"
	printf '%s\n' 'root:x:0:' 'tty:x:5:' 'nogroup:x:65534:' >"$rootfs/etc/group"
	printf '%s\n' "$hostname" >"$rootfs/etc/hostname"
	for a in "$@"; do
		args+="${args:+, }$(json_string "$a")"
	done
	cat >"$dir/config.json" <<JSON
{
  "ociVersion": $(json_string "${OCI_VERSION:-1.2.0}"),
  "process": {
    "terminal": false,
    "user": { "uid": 0, "gid": 0 },
    "args": [ $args ],
    "env": [
      "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      "TERM=xterm"
    ],
    "cwd": "/",
    "capabilities": {
      "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "ambient": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    },
    "rlimits": [ { "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 } ],
    "noNewPrivileges": true
  },
  "root": { "path": "rootfs", "readonly": true },
  "hostname": $(json_string "$hostname"),
  "mounts": [
    { "destination": "/proc", "type": "proc", "source": "proc" },
    { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
      "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
    { "destination": "/dev/pts", "type": "devpts", "source": "devpts",
      "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] },
    { "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
      "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
    { "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
      "options": ["nosuid", "noexec", "nodev"] },
    { "destination": "/sys", "type": "sysfs", "source": "sysfs",
      "options": ["nosuid", "noexec", "nodev", "ro"] },
    { "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
      "options": ["nosuid", "noexec", "nodev", "relatime", "ro"] }
  ],
  "linux": {
    "resources": { "devices": [ { "allow": false, "access": "rwm" } ] },
    "namespaces": [
      { "type": "pid" }, { "type": "network" }, { "type": "ipc" },
      { "type": "uts" }, { "type": "mount" }
    ],
    "maskedPaths": [
      "/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys",
      "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
      "/sys/firmware", "/sys/devices/virtual/powercap", "/proc/scsi"
    ],
    "readonlyPaths": [
      "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
    ]
  }
}
JSON
}

# file_is_static PATH: true when PATH is a statically linked executable.
file_is_static() {
	[ -f "$1" ] || return 1
	# ldd fails with "not a dynamic executable" on a static binary.
	! ldd "$1" >/dev/null 2>&1
}

# debian_mirror: the URL of the Debian archive this machine's apt installs from: the first
# enabled `deb` source (one-line .list or deb822 .sources, in apt's order) whose suite is
# the host's own codename, so neither -security nor -updates. Prints nothing and fails
# when there is none.
debian_mirror() {
	local codename f
	codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
	[ -n "$codename" ] || return 1
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		case $f in
		*.sources)
			# deb822: stanzas separated by blank lines; Types, URIs, Suites, Enabled fields.
			awk -v want="$codename" '
				function flush() {
					if (types ~ /(^| )deb( |$)/ && enabled !~ /^(no|false)$/) {
						ns = split(suites, s, " "); nu = split(uris, u, " ")
						for (i = 1; i <= ns; i++) if (s[i] == want && nu > 0) { print u[1]; found = 1; exit }
					}
					types = uris = suites = enabled = ""
				}
				/^[ \t]*#/ { next }
				/^[ \t]*$/ { flush(); next }
				{
					key = tolower($1); sub(/:$/, "", key); val = $0; sub(/^[^:]*:[ \t]*/, "", val)
					if (key == "types") types = val
					else if (key == "uris") uris = val
					else if (key == "suites") suites = val
					else if (key == "enabled") enabled = tolower(val)
				}
				END { if (!found) flush() }
			' "$f"
			;;
		*)
			# one-line: deb [options] URI SUITE COMPONENT...
			awk -v want="$codename" '
				$1 != "deb" { next }
				{
					i = 2
					if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
					if ($(i + 1) == want) { print $i; exit }
				}
			' "$f"
			;;
		esac
	done | head -n1 | sed 's:/*$::' | grep .
}

# The cache of debootstrapped Debian roots that crates/cli/tests/check_exact.rs and
# bench/check.sh use: $PLINTH_TEST_CACHE (default /var/cache/plinth-tests)/debootstrap/
# RELEASE/ is the root, RELEASE.done its completion marker (written last; a root without
# it is rebuilt), RELEASE.lock serialises builders (flock), RELEASE.log the last build log.
debootstrap_cache_dir() {
	printf '%s/debootstrap\n' "${PLINTH_TEST_CACHE:-/var/cache/plinth-tests}"
}

# debootstrap_cache RELEASE: make sure the cached minbase root of Debian RELEASE exists,
# building it once (as root, from debian_mirror) under the lock, and print its path.
debootstrap_cache() {
	local release=$1 dir root
	dir=$(debootstrap_cache_dir)
	root=$dir/$release
	if [ -f "$root.done" ] && [ -d "$root" ]; then
		printf '%s\n' "$root"
		return 0
	fi
	if [ "$(id -u)" -ne 0 ]; then
		echo "error: debootstrap of $release needs root (cache $root is not built)" >&2
		return 1
	fi
	command -v debootstrap >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin
	command -v debootstrap >/dev/null 2>&1 || {
		echo "error: debootstrap not installed (Debian package debootstrap)" >&2
		return 1
	}
	mkdir -p "$dir" || return 1
	(
		# set -e does not reach into a subshell on the left of ||: each step checks itself.
		flock 9 || exit 1
		# Someone else may have built it while we waited.
		[ -f "$root.done" ] && [ -d "$root" ] && exit 0
		local mirror start tmp rc
		mirror=$(debian_mirror) || {
			echo "error: no Debian source for this host's codename in /etc/apt/sources.list{,.d}" >&2
			exit 1
		}
		tmp=$root.tmp
		remove_tree "$tmp" || exit 1
		step "debootstrap --variant=minbase $release from $mirror into $root (log: $root.log)"
		start=$(date +%s)
		rc=0
		debootstrap --variant=minbase --arch=amd64 "$release" "$tmp" "$mirror" >"$root.log" 2>&1 || rc=$?
		unmount_below "$tmp" # debootstrap unmounts proc and sys itself, unless it was killed
		if [ "$rc" -ne 0 ]; then
			echo "error: debootstrap $release failed (exit $rc); last lines of $root.log:" >&2
			tail -n 20 "$root.log" >&2
			remove_tree "$tmp"
			exit 1
		fi
		remove_tree "$root" || exit 1 # a root without its marker is a stale partial one
		mv "$tmp" "$root" || exit 1
		{
			echo "release=$release"
			echo "mirror=$mirror"
			echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
			echo "seconds=$(($(date +%s) - start))"
			echo "size=$(du -sh "$root" | cut -f1)"
			echo "debootstrap=$(dpkg-query -W -f='${Version}' debootstrap 2>/dev/null)"
		} >"$root.done.tmp" || exit 1
		mv "$root.done.tmp" "$root.done" || exit 1
		echo "built $root: $(tr '\n' ' ' <"$root.done")" >&2
	) 9>"$root.lock" || return 1
	printf '%s\n' "$root"
}

# debootstrap_caches RELEASE...: debootstrap_cache for each RELEASE, all at once; fails
# when any of them fails (each has printed why).
debootstrap_caches() {
	local r p rc=0 pids=()
	for r in "$@"; do
		debootstrap_cache "$r" >/dev/null &
		pids+=("$!")
	done
	for p in "${pids[@]}"; do
		wait "$p" || rc=1
	done
	return "$rc"
}

# unmount_below DIR: detach every mount at or below DIR, deepest first (a killed
# debootstrap leaves proc, sys or a bind of /dev in its target).
unmount_below() {
	local m
	findmnt -rn -o TARGET | awk -v d="$1" 'index($0, d "/") == 1 || $0 == d' | sort -r |
		while IFS= read -r m; do umount -l "$m" || true; done
}

# remove_tree DIR: delete DIR (if it exists) after detaching the mounts below it, without
# crossing into another filesystem.
remove_tree() {
	[ -e "$1" ] || return 0
	unmount_below "$1"
	rm -rf --one-file-system "$1"
}
