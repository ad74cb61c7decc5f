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
