//! The busybox bundle: a root filesystem made from the host's static `/bin/busybox`, the
//! `config.json` template (runc's `spec`, adjusted for tests), and JSON-pointer edits of it.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::{json, Value};

/// The host's busybox, copied into every rootfs.
pub const HOST_BUSYBOX: &str = "/bin/busybox";

/// Whether `/bin/busybox` is an ELF executable with no program interpreter (PT_INTERP).
pub fn host_busybox_is_static() -> bool {
    let Ok(data) = fs::read(HOST_BUSYBOX) else {
        return false;
    };
    elf_is_static(&data)
}

fn elf_is_static(data: &[u8]) -> bool {
    // 64-bit little-endian ELF only: e_phoff at 0x20, e_phentsize at 0x36, e_phnum at 0x38.
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 || data[5] != 1 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([data[o], data[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(data[0x20..0x28].try_into().unwrap()) as usize;
    let (entsize, num) = (u16_at(0x36), u16_at(0x38));
    const PT_INTERP: u32 = 3;
    (0..num).all(|i| {
        let o = phoff + i * entsize;
        data.get(o..o + 4)
            .map(|t| u32::from_le_bytes(t.try_into().unwrap()) != PT_INTERP)
            .unwrap_or(false)
    })
}

/// The applet names of the host's busybox (`busybox --list`), read once.
pub fn busybox_applets() -> &'static [String] {
    static APPLETS: OnceLock<Vec<String>> = OnceLock::new();
    APPLETS.get_or_init(|| {
        let out = Command::new(HOST_BUSYBOX)
            .arg("--list")
            .stderr(Stdio::inherit())
            .output()
            .expect("run /bin/busybox --list");
        assert!(out.status.success(), "/bin/busybox --list failed");
        let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && *l != "busybox" && !l.contains('/'))
            .map(String::from)
            .collect();
        for needed in [
            "sh", "echo", "cat", "ls", "id", "sleep", "true", "false", "uname", "hostname",
            "mount", "grep", "wc", "touch", "env", "ps", "pwd",
        ] {
            assert!(
                names.iter().any(|n| n == needed),
                "host busybox lacks the applet {needed}"
            );
        }
        names
    })
}

/// Build a busybox root filesystem at `rootfs`: the host's static busybox in `/bin`, a
/// symlink per applet, `/sbin`, `/usr/bin`, `/usr/sbin` pointing at `/bin`, the usual
/// mount points, and `/etc/passwd`, `/etc/group`, `/etc/hostname`.
pub fn build_busybox_rootfs(rootfs: &Path, hostname: &str) {
    for d in [
        "bin", "etc", "dev", "proc", "sys", "tmp", "root", "run", "var", "usr", "home",
    ] {
        fs::create_dir_all(rootfs.join(d)).expect("create rootfs dir");
    }
    fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::set_permissions(rootfs.join("root"), fs::Permissions::from_mode(0o700)).unwrap();
    let bb = rootfs.join("bin/busybox");
    fs::copy(HOST_BUSYBOX, &bb).expect("copy /bin/busybox");
    fs::set_permissions(&bb, fs::Permissions::from_mode(0o755)).unwrap();
    for applet in busybox_applets() {
        symlink("busybox", rootfs.join("bin").join(applet)).expect("applet symlink");
    }
    symlink("bin", rootfs.join("sbin")).unwrap();
    symlink("../bin", rootfs.join("usr/bin")).unwrap();
    symlink("../bin", rootfs.join("usr/sbin")).unwrap();
    fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .unwrap();
    fs::write(
        rootfs.join("etc/group"),
        "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n",
    )
    .unwrap();
    fs::write(rootfs.join("etc/hostname"), format!("{hostname}\n")).unwrap();
}

/// The default hostname of a test bundle.
pub const DEFAULT_HOSTNAME: &str = "plinth-test";

/// The `ociVersion` of test bundles: runtime-spec 1.2, which plinth speaks, unless
/// `PLINTH_TEST_OCI_VERSION` says otherwise (crun 1.8 refuses "1.2.0"; set "1.1.0" to
/// check the tests against it).
pub fn oci_version() -> String {
    std::env::var("PLINTH_TEST_OCI_VERSION")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "1.2.0".to_string())
}

/// `runc spec` for runtime-spec 1.2 with `terminal: false`, no seccomp, and the process
/// `sh`. The masked paths are runc 1.2's.
pub fn config_template() -> Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    json!({
        "ociVersion": oci_version(),
        "process": {
            "terminal": false,
            "user": { "uid": 0, "gid": 0 },
            "args": ["sh"],
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm"
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": caps,
                "effective": caps,
                "permitted": caps,
                "ambient": caps
            },
            "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 }],
            "noNewPrivileges": true
        },
        "root": { "path": "rootfs", "readonly": true },
        "hostname": DEFAULT_HOSTNAME,
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
            "resources": { "devices": [{ "allow": false, "access": "rwm" }] },
            "namespaces": [
                { "type": "pid" }, { "type": "network" }, { "type": "ipc" },
                { "type": "uts" }, { "type": "mount" }
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/sys/devices/virtual/powercap",
                "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    })
}

/// Builder of a bundle (`rootfs/` + `config.json`) around the host's busybox. The config
/// starts as [`config_template`]; change it with `args`, `hostname`, `set`, `remove` or
/// `config_mut`, then `write`.
pub struct BusyboxBundle {
    dir: PathBuf,
    config: Value,
}

impl BusyboxBundle {
    /// A bundle to be written at `dir` (created by `write`).
    pub fn new(dir: impl Into<PathBuf>) -> BusyboxBundle {
        BusyboxBundle {
            dir: dir.into(),
            config: config_template(),
        }
    }

    /// The process arguments.
    pub fn args(self, args: &[&str]) -> BusyboxBundle {
        self.set("/process/args", json!(args))
    }

    /// The container's hostname (config `hostname` and the rootfs's `/etc/hostname`).
    pub fn hostname(self, name: &str) -> BusyboxBundle {
        self.set("/hostname", json!(name))
    }

    /// Set the value at a JSON pointer, creating missing objects on the way; `-` as the
    /// last token appends to an array.
    pub fn set(mut self, pointer: &str, value: Value) -> BusyboxBundle {
        pointer_set(&mut self.config, pointer, value);
        self
    }

    /// Remove the value at a JSON pointer (which must exist).
    pub fn remove(mut self, pointer: &str) -> BusyboxBundle {
        pointer_remove(&mut self.config, pointer);
        self
    }

    /// The config as it stands.
    pub fn config_mut(&mut self) -> &mut Value {
        &mut self.config
    }

    /// Create the bundle directory, its rootfs and config.json.
    pub fn write(self) -> Bundle {
        fs::create_dir_all(&self.dir).expect("create bundle dir");
        let dir = fs::canonicalize(&self.dir).expect("canonical bundle dir");
        let hostname = self.config["hostname"].as_str().unwrap_or(DEFAULT_HOSTNAME);
        build_busybox_rootfs(&dir.join("rootfs"), hostname);
        let bundle = Bundle {
            dir,
            config: self.config,
        };
        bundle.write_config();
        bundle
    }
}

/// A bundle on disk.
pub struct Bundle {
    /// Absolute bundle directory.
    pub dir: PathBuf,
    /// The config written to `config.json`.
    pub config: Value,
}

impl Bundle {
    /// The bundle directory, for `--bundle`.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// `rootfs/` inside the bundle.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// `config.json` inside the bundle.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    /// (Re)write `config.json` from `self.config`.
    pub fn write_config(&self) {
        let text = serde_json::to_string_pretty(&self.config).unwrap();
        fs::write(self.config_path(), text).expect("write config.json");
    }
}

fn pointer_tokens(pointer: &str) -> Vec<String> {
    assert!(
        pointer.starts_with('/'),
        "JSON pointer must start with '/': {pointer:?}"
    );
    pointer[1..]
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// Set `value` at `pointer` in `root`, creating missing object members on the way.
pub fn pointer_set(root: &mut Value, pointer: &str, value: Value) {
    let tokens = pointer_tokens(pointer);
    let (last, parents) = tokens.split_last().expect("non-empty pointer");
    let mut cur = root;
    for tok in parents {
        cur = match cur {
            Value::Object(map) => map.entry(tok.clone()).or_insert_with(|| json!({})),
            Value::Array(items) => {
                if tok == "-" {
                    items.push(json!({}));
                    items.last_mut().unwrap()
                } else {
                    let i: usize = tok
                        .parse()
                        .unwrap_or_else(|_| panic!("{pointer}: bad index {tok}"));
                    items
                        .get_mut(i)
                        .unwrap_or_else(|| panic!("{pointer}: index {i} out of range"))
                }
            }
            other => panic!("{pointer}: cannot descend into {other}"),
        };
    }
    match cur {
        Value::Object(map) => {
            map.insert(last.clone(), value);
        }
        Value::Array(items) if last == "-" => items.push(value),
        Value::Array(items) => {
            let i: usize = last
                .parse()
                .unwrap_or_else(|_| panic!("{pointer}: bad index {last}"));
            *items
                .get_mut(i)
                .unwrap_or_else(|| panic!("{pointer}: index {i} out of range")) = value;
        }
        other => panic!("{pointer}: cannot set inside {other}"),
    }
}

/// Remove the value at `pointer` from `root`; it must exist.
pub fn pointer_remove(root: &mut Value, pointer: &str) {
    let tokens = pointer_tokens(pointer);
    let (last, parents) = tokens.split_last().expect("non-empty pointer");
    let parent_ptr: String = parents
        .iter()
        .map(|t| format!("/{}", t.replace('~', "~0").replace('/', "~1")))
        .collect();
    let parent = root
        .pointer_mut(&parent_ptr)
        .unwrap_or_else(|| panic!("{pointer}: no parent"));
    match parent {
        Value::Object(map) => {
            map.remove(last)
                .unwrap_or_else(|| panic!("{pointer}: no such member"));
        }
        Value::Array(items) => {
            let i: usize = last.parse().expect("array index");
            assert!(i < items.len(), "{pointer}: index out of range");
            items.remove(i);
        }
        other => panic!("{pointer}: cannot remove from {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointer_set_creates_and_appends() {
        let mut v = json!({"a": {"b": [1]}});
        pointer_set(&mut v, "/a/b/-", json!(2));
        pointer_set(&mut v, "/x/y", json!("z"));
        pointer_set(&mut v, "/a/b/0", json!(0));
        pointer_set(&mut v, "/with~1slash", json!(1));
        assert_eq!(
            v,
            json!({"a": {"b": [0, 2]}, "x": {"y": "z"}, "with/slash": 1})
        );
        pointer_remove(&mut v, "/x/y");
        assert_eq!(v["x"], json!({}));
    }

    #[test]
    fn static_elf_detection() {
        assert!(!elf_is_static(
            b"not an elf at all, not even close to 64 bytes long......."
        ));
        if let Ok(ls) = fs::read("/bin/ls") {
            assert!(!elf_is_static(&ls), "/bin/ls is dynamic on Debian");
        }
    }
}
