//! Snapshots, clones and send/receive of fleet containers, between two data directories
//! standing for two hosts (`--data-dir A`, `--data-dir B`), on both storage backends:
//! btrfs (a loop-mounted filesystem made for the test: subvolumes, btrfs send streams
//! applied by plinth) and the test directory's own filesystem (copies and portable
//! streams).
//!
//! Trees are compared by an independent walk ([`describe`]): every path with its type,
//! mode, owner, mtime to the nanosecond, size, device number, symlink target, extended
//! attributes (overlayfs whiteouts and opaque directories included), sha256 of content,
//! and which paths share an inode. The `btrfs` program is only an oracle here (what is a
//! subvolume, what was received); plinth never runs it.

mod common;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{require, require_root, require_tool, TestDir};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// `plinth --root ROOT --data-dir DATA`.
/// The runtime root of the host whose data dir is `data`: a host is its data dir and its
/// runtime root (its supervisor's socket and its running containers), so two hosts on
/// one machine have one each.
fn host_root(data: &Path) -> PathBuf {
    let name = data.file_name().unwrap().to_string_lossy().to_string();
    data.with_file_name(format!("run-{name}"))
}

fn plinth(td: &TestDir, data: &Path) -> common::TestCommand {
    let _ = common::fleet::plinth(td); // the test dir searchable by containers' root users
    let mut cmd = td.command(common::runtime_bin());
    cmd.arg("--root").arg(host_root(data));
    cmd.arg("--data-dir").arg(data);
    // --data-dir wins over the environment.
    cmd.env("PLINTH_STATE_DIR", td.path().join("not-this-one"));
    cmd
}

/// Runs plinth with stdin and stdout on files (streams are binary); returns (success,
/// stderr).
fn plinth_io(
    td: &TestDir,
    data: &Path,
    args: &[&str],
    stdin: Option<&Path>,
    stdout: Option<&Path>,
) -> (bool, String) {
    let err_path = td.fresh("stderr");
    let mut cmd = Command::new(common::runtime_bin());
    cmd.arg("--root")
        .arg(host_root(data))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .stdin(match stdin {
            Some(p) => Stdio::from(fs::File::open(p).unwrap()),
            None => Stdio::null(),
        })
        .stdout(match stdout {
            Some(p) => Stdio::from(fs::File::create(p).unwrap()),
            None => Stdio::null(),
        })
        .stderr(Stdio::from(fs::File::create(&err_path).unwrap()));
    let mut child = cmd.spawn().expect("start plinth");
    let status = common::wait_timeout(&mut child, Duration::from_secs(300))
        .unwrap_or_else(|| panic!("plinth {args:?} did not finish"));
    let err = fs::read_to_string(&err_path).unwrap_or_default();
    (status.success(), err)
}

fn names(td: &TestDir, data: &Path) -> Vec<String> {
    let v = plinth(td, data).args(["ls", "--format", "json"]).json();
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

/// Removes every container of a data directory when dropped.
struct FleetGuard<'a>(&'a TestDir, PathBuf);

impl Drop for FleetGuard<'_> {
    fn drop(&mut self) {
        let out = plinth(self.0, &self.1)
            .args(["ls", "--format", "json"])
            .output();
        let list: Vec<Value> = serde_json::from_str::<Value>(&out.stdout)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default();
        for c in list {
            if let Some(n) = c["name"].as_str() {
                let _ = plinth(self.0, &self.1).args(["rm", "--force", n]).output();
            }
        }
        let _ = plinth(self.0, &self.1).args(["daemon", "--stop"]).output();
    }
}

/// A btrfs filesystem in a loop file, mounted under the test dir; unmounted when dropped.
struct Btrfs {
    mnt: PathBuf,
}

impl Btrfs {
    fn new(td: &TestDir) -> Btrfs {
        let img = td.path().join("btrfs.img");
        let mnt = td.path().join("btrfs");
        fs::create_dir(&mnt).unwrap();
        td.command("truncate")
            .args(["-s", "1G"])
            .arg(&img)
            .assert_success();
        td.command("mkfs.btrfs")
            .arg("-q")
            .arg(&img)
            .assert_success();
        td.command("mount")
            .args(["-o", "loop"])
            .arg(&img)
            .arg(&mnt)
            .assert_success();
        Btrfs { mnt }
    }
}

impl Drop for Btrfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mnt).status();
    }
}

fn xattrs(path: &Path) -> Vec<(String, String)> {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut list = vec![0u8; 64 * 1024];
    // SAFETY: the buffers outlive the calls and their lengths are passed.
    let n = unsafe { libc::llistxattr(c.as_ptr(), list.as_mut_ptr().cast(), list.len()) };
    assert!(n >= 0, "llistxattr {}", path.display());
    let mut out = Vec::new();
    for name in list[..n as usize]
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
    {
        let cn = CString::new(name).unwrap();
        let mut val = vec![0u8; 64 * 1024];
        // SAFETY: as above.
        let m =
            unsafe { libc::lgetxattr(c.as_ptr(), cn.as_ptr(), val.as_mut_ptr().cast(), val.len()) };
        assert!(m >= 0);
        out.push((
            String::from_utf8_lossy(name).into_owned(),
            format!("{:?}", &val[..m as usize]),
        ));
    }
    out.sort();
    out
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    // SAFETY: NUL-terminated strings and a value buffer that outlive the call.
    let rc = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(rc, 0, "setxattr {name} on {}", path.display());
}

/// Every path under `root` (and `root` itself as ""), described as plinth must keep it.
fn describe(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    // Each file's inode, to mark the hard links within this tree (a link count
    // above one may also come from a snapshot sharing the file with another).
    let mut inode_of: Vec<(String, u64)> = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let p = root.join(&rel);
        let md = fs::symlink_metadata(&p).unwrap();
        let ft = md.file_type();
        let key = rel.to_string_lossy().into_owned();
        let mut d = format!(
            "mode {:o} uid {} gid {} mtime {}.{:09} xattrs {:?}",
            md.mode(),
            md.uid(),
            md.gid(),
            md.mtime(),
            md.mtime_nsec(),
            xattrs(&p)
        );
        if ft.is_dir() {
            let mut kids: Vec<_> = fs::read_dir(&p)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            kids.sort();
            for k in kids.into_iter().rev() {
                stack.push(rel.join(k));
            }
        } else if ft.is_symlink() {
            d += &format!(" -> {:?}", fs::read_link(&p).unwrap());
        } else if ft.is_file() {
            inode_of.push((key.clone(), md.ino()));
            let data = fs::read(&p).unwrap();
            d += &format!(" size {} sha256 {:x}", md.len(), Sha256::digest(&data));
        } else {
            d += &format!(" rdev {}", md.rdev());
        }
        out.insert(key, d);
    }
    let mut paths: BTreeMap<u64, Vec<&String>> = BTreeMap::new();
    for (key, ino) in &inode_of {
        paths.entry(*ino).or_default().push(key);
    }
    for (key, ino) in &inode_of {
        if let [first, _, ..] = paths[ino][..] {
            let d = out.get_mut(key).unwrap();
            *d = format!("{d} inode-of {first}");
        }
    }
    out
}

fn assert_same_tree(a: &Path, b: &Path) {
    let (da, db) = (describe(a), describe(b));
    for (k, v) in &da {
        assert_eq!(
            db.get(k),
            Some(v),
            "{k}: {} vs {}",
            a.display(),
            b.display()
        );
    }
    assert_eq!(da.len(), db.len(), "{} vs {}", a.display(), b.display());
}

/// Deterministic, incompressible bytes.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn set_mtime(path: &Path, sec: i64, nsec: i64) {
    let t = nix::sys::time::TimeSpec::new(sec, nsec);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
}

/// Fills an upper layer with what containers leave there: a large tree of files,
/// owners, set-id modes, xattrs, an opaque directory, a whiteout, symlinks, hardlinks, a
/// fifo, a sparse file, nanosecond times.
fn populate(upper: &Path) {
    let data = upper.join("srv/data");
    fs::create_dir_all(&data).unwrap();
    for i in 0..200u64 {
        fs::write(data.join(format!("f{i:03}")), noise(i, 100 * 1024)).unwrap();
    }
    let etc = upper.join("etc");
    fs::create_dir_all(&etc).unwrap();
    fs::write(etc.join("motd"), "welcome\n").unwrap();
    fs::write(etc.join("secret"), "s3cret\n").unwrap();
    std::os::unix::fs::chown(etc.join("secret"), Some(1000), Some(1001)).unwrap();
    fs::set_permissions(etc.join("secret"), fs::Permissions::from_mode(0o4750)).unwrap();
    set_xattr(&etc.join("motd"), "user.origin", b"test");
    set_xattr(&etc.join("motd"), "trusted.plinth-test", b"\x00\x01binary");
    // overlayfs: an opaque directory and a whiteout (character device 0:0).
    fs::create_dir_all(upper.join("opt/opaque/inner")).unwrap();
    set_xattr(&upper.join("opt/opaque"), "trusted.overlay.opaque", b"y");
    nix::sys::stat::mknod(
        &etc.join("removed.conf"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::empty(),
        0,
    )
    .unwrap();
    nix::unistd::mkfifo(
        &upper.join("opt/fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o640),
    )
    .unwrap();
    std::os::unix::fs::symlink("../etc/motd", upper.join("opt/motd-link")).unwrap();
    std::os::unix::fs::symlink("/nowhere/at/all", upper.join("opt/dangling")).unwrap();
    fs::hard_link(etc.join("motd"), upper.join("opt/motd-hard")).unwrap();
    let sparse = fs::File::create(upper.join("opt/sparse")).unwrap();
    sparse.set_len(64 << 20).unwrap();
    use std::os::unix::fs::FileExt;
    sparse.write_all_at(b"in the middle", 32 << 20).unwrap();
    drop(sparse);
    set_mtime(&etc.join("motd"), 1_600_000_000, 123_456_789);
    set_mtime(&upper.join("opt/motd-link"), 1_500_000_000, 1);
    set_mtime(&upper.join("opt/opaque"), 1_400_000_000, 999_999_999);
}

/// A small change: one file edited, one deleted, a directory removed, one file added,
/// a rename, a mode and an xattr changed.
fn change(upper: &Path) {
    let data = upper.join("srv/data");
    fs::OpenOptions::new()
        .append(true)
        .open(data.join("f007"))
        .unwrap()
        .write_all(b"appended")
        .unwrap();
    fs::remove_file(data.join("f100")).unwrap();
    fs::rename(data.join("f150"), data.join("f150.moved")).unwrap();
    fs::remove_dir_all(upper.join("opt/opaque/inner")).unwrap();
    fs::write(upper.join("etc/new.conf"), "new\n").unwrap();
    fs::set_permissions(upper.join("etc/motd"), fs::Permissions::from_mode(0o600)).unwrap();
    set_xattr(&upper.join("etc/motd"), "user.origin", b"changed");
    fs::remove_file(upper.join("etc/removed.conf")).unwrap();
}

fn is_subvolume(p: &Path) -> bool {
    Command::new("btrfs")
        .args(["subvolume", "show"])
        .arg(p)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

fn subvolumes(mnt: &Path) -> String {
    let out = Command::new("btrfs")
        .args(["subvolume", "list", "-o"])
        .arg(mnt)
        .output()
        .unwrap();
    // "ID 257 gen 9 top level 5 path A/...": the generation moves with any write.
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            format!("{} {}\n", f[1], f.last().unwrap())
        })
        .collect()
}

fn subvolume_field(p: &Path, field: &str) -> String {
    let out = Command::new("btrfs")
        .args(["subvolume", "show"])
        .arg(p)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix(&format!("{field}:"))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("{field} not in {text}"))
}

/// Lists a data directory's container directories, for before/after comparisons.
fn container_dirs(data: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(data.join("containers"))
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The whole story on one backend: new, fill, snapshot, full send, receive, compare;
/// change, snapshot, incremental send, receive, compare; bad streams; clones; start.
fn two_hosts(td: &TestDir, a: &Path, b: &Path, name: &str, btrfs: Option<&Path>) {
    let _ga = FleetGuard(td, a.to_path_buf());
    let _gb = FleetGuard(td, b.to_path_buf());
    plinth(td, a)
        .args([
            "new",
            name,
            "--base",
            "host",
            "--",
            "/bin/busybox",
            "sleep",
            "1000",
        ])
        .assert_success();
    let cdir = |data: &Path, n: &str| data.join("containers").join(n);
    let upper = cdir(a, name).join("upper");
    if btrfs.is_some() {
        assert!(is_subvolume(&upper), "the upper layer is a subvolume");
        assert_eq!(fs::metadata(&upper).unwrap().ino(), 256);
    }
    populate(&upper);

    // A snapshot of a running container is allowed.
    plinth(td, a).args(["start", name]).assert_success();
    let out = plinth(td, a)
        .args(["snapshot", &format!("{name}@s1")])
        .assert_success();
    assert_eq!(out.stdout_trimmed(), format!("{name}@s1"));
    plinth(td, a)
        .args(["stop", "--timeout", "0", name])
        .assert_success();
    let list = plinth(td, a)
        .args(["snapshot", "ls", name, "--format", "json"])
        .json();
    assert_eq!(list[0]["name"], "s1", "{list}");
    assert_eq!(
        list[0]["backend"],
        if btrfs.is_some() { "btrfs" } else { "tree" }
    );
    let s1 = cdir(a, name).join("snapshots/s1");
    if btrfs.is_some() {
        assert_eq!(subvolume_field(&s1, "Flags"), "readonly");
    }
    assert_same_tree(&upper, &s1);

    // Full stream, received on the other host.
    let full = td.path().join(format!("{name}.full"));
    let (ok, err) = plinth_io(td, a, &["send", &format!("{name}@s1")], None, Some(&full));
    assert!(ok, "send: {err}");
    let (ok, err) = plinth_io(td, b, &["receive"], Some(&full), None);
    assert!(ok, "receive: {err}");
    assert_eq!(names(td, b), [name]);
    let b_upper = cdir(b, name).join("upper");
    assert_same_tree(&s1, &b_upper);
    assert_same_tree(&s1, &cdir(b, name).join("snapshots/s1"));
    let sparse = fs::metadata(b_upper.join("opt/sparse")).unwrap();
    assert!(
        sparse.blocks() * 512 < 1 << 20,
        "the sparse file stays sparse"
    );
    if btrfs.is_some() {
        let b_s1 = cdir(b, name).join("snapshots/s1");
        assert_eq!(
            subvolume_field(&b_s1, "Received UUID"),
            subvolume_field(&s1, "UUID")
        );
        assert_eq!(subvolume_field(&b_s1, "Flags"), "readonly");
        assert!(is_subvolume(&b_upper));
    }

    // A small change, sent as an increment on s1.
    change(&upper);
    plinth(td, a)
        .args(["snapshot", &format!("{name}@s2")])
        .assert_success();
    let inc = td.path().join(format!("{name}.inc"));
    let (ok, err) = plinth_io(
        td,
        a,
        &["send", &format!("{name}@s2"), "--from", "s1"],
        None,
        Some(&inc),
    );
    assert!(ok, "send --from: {err}");
    let (full_len, inc_len) = (
        fs::metadata(&full).unwrap().len(),
        fs::metadata(&inc).unwrap().len(),
    );
    eprintln!("{name}: full stream {full_len} bytes, incremental {inc_len} bytes");
    assert!(
        full_len > 20_000_000,
        "the full stream carries the 20 MB of data"
    );
    assert!(
        inc_len * 10 < full_len,
        "incremental {inc_len} vs full {full_len}"
    );
    // A cut increment changes nothing.
    let before = describe(&cdir(b, name).join("upper"));
    let inc_cut = td.path().join("inc-cut.stream");
    let ib = fs::read(&inc).unwrap();
    fs::write(&inc_cut, &ib[..ib.len() - 10]).unwrap();
    let (ok, err) = plinth_io(td, b, &["receive"], Some(&inc_cut), None);
    assert!(!ok && err.contains("cut short"), "{err}");
    assert_eq!(describe(&cdir(b, name).join("upper")), before);
    assert!(!cdir(b, name).join("snapshots/s2").exists());
    let (ok, err) = plinth_io(td, b, &["receive"], Some(&inc), None);
    assert!(ok, "receive incremental: {err}");
    let (ok, err) = plinth_io(td, b, &["receive"], Some(&inc), None);
    assert!(
        !ok && err.contains("s2: a snapshot of that name exists"),
        "{err}"
    );
    let s2 = cdir(a, name).join("snapshots/s2");
    assert_same_tree(&s2, &cdir(b, name).join("upper"));
    assert_same_tree(&s2, &cdir(b, name).join("snapshots/s2"));
    assert_same_tree(&s1, &cdir(b, name).join("snapshots/s1"));
    assert!(!cdir(b, name).join("upper/srv/data/f100").exists());
    assert!(!cdir(b, name).join("upper/opt/opaque/inner").exists());

    // Cut and corrupted streams are refused and leave nothing on B.
    let dirs_before = container_dirs(b);
    let subvols_before = btrfs.map(subvolumes);
    let bytes = fs::read(&full).unwrap();
    let cut = td.path().join("cut.stream");
    fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let (ok, err) = plinth_io(td, b, &["receive", "store-cut"], Some(&cut), None);
    assert!(!ok && err.contains("cut short"), "{err}");
    assert!(err.lines().count() == 1, "one line: {err}");
    let flipped = td.path().join("flipped.stream");
    let mut bad = bytes.clone();
    let at = bad.len() * 2 / 3;
    bad[at] ^= 0x01;
    fs::write(&flipped, &bad).unwrap();
    let (ok, err) = plinth_io(td, b, &["receive", "store-flip"], Some(&flipped), None);
    assert!(!ok && err.contains("corrupted"), "{err}");
    assert_eq!(names(td, b), [name]);
    assert_eq!(container_dirs(b), dirs_before);
    assert_eq!(btrfs.map(subvolumes), subvols_before);

    // Clones: of a snapshot and of the upper layer.
    let c1 = format!("{name}-c1");
    let c2 = format!("{name}-c2");
    plinth(td, a)
        .args(["clone", &format!("{name}@s1"), &c1])
        .assert_success();
    plinth(td, a).args(["clone", name, &c2]).assert_success();
    assert_same_tree(&s1, &cdir(a, &c1).join("upper"));
    assert_same_tree(&upper, &cdir(a, &c2).join("upper"));
    if btrfs.is_some() {
        assert!(is_subvolume(&cdir(a, &c1).join("upper")));
        assert_ne!(
            subvolume_field(&cdir(a, &c1).join("upper"), "Flags"),
            "readonly"
        );
    }
    let ls = plinth(td, a).args(["ls", "--format", "json"]).json();
    assert_eq!(ls.as_array().unwrap().len(), 3, "{ls}");
    // A clone is writable and independent.
    fs::write(cdir(a, &c1).join("upper/etc/motd"), "clone\n").unwrap();
    assert_eq!(
        fs::read_to_string(s1.join("etc/motd")).unwrap(),
        "welcome\n"
    );

    // The received container runs, with what was sent in its root.
    plinth(td, b).args(["start", name]).assert_success();
    let ls = plinth(td, b).args(["ls", "--format", "json"]).json();
    let c = &ls[0];
    assert_eq!(c["state"], "running", "{ls}");
    let pid = c["pid"].as_i64().unwrap();
    assert_eq!(
        fs::read(format!("/proc/{pid}/root/srv/data/f007")).unwrap(),
        fs::read(s2.join("srv/data/f007")).unwrap()
    );
    // The whiteout hides the platform's file, the opaque directory its content.
    assert!(fs::read_dir(format!("/proc/{pid}/root/opt/opaque"))
        .unwrap()
        .next()
        .is_none());

    // Deleting snapshots and containers leaves no subvolume behind.
    plinth(td, b)
        .args(["snapshot", "rm", &format!("{name}@s1")])
        .assert_success();
    let list = plinth(td, b)
        .args(["snapshot", "ls", name, "--format", "json"])
        .json();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    plinth(td, b).args(["rm", "--force", name]).assert_success();
    assert!(!cdir(b, name).exists());
    if let Some(mnt) = btrfs {
        assert!(
            !subvolumes(mnt).contains("B/containers"),
            "{}",
            subvolumes(mnt)
        );
    }
}

fn require_btrfs() -> bool {
    require_root()
        && require_tool("mkfs.btrfs")
        && require_tool("btrfs")
        && require(
            fs::read_to_string("/proc/filesystems")
                .map(|f| f.contains("btrfs"))
                .unwrap_or(false),
            "btrfs in the kernel",
        )
}

#[test]
fn two_hosts_on_btrfs() {
    if !require_btrfs() {
        return;
    }
    let td = TestDir::new("storage-btrfs");
    let fs = Btrfs::new(&td);
    let (a, b) = (fs.mnt.join("A"), fs.mnt.join("B"));
    two_hosts(
        &td,
        &a,
        &b,
        &format!("store-bt-{}", std::process::id()),
        Some(&fs.mnt),
    );
}

#[test]
fn two_hosts_on_plain_directories() {
    if !require_root() {
        return;
    }
    let td = TestDir::new("storage-tree");
    let (a, b) = (td.path().join("A"), td.path().join("B"));
    two_hosts(
        &td,
        &a,
        &b,
        &format!("store-tree-{}", std::process::id()),
        None,
    );
}

#[test]
fn bad_input_names_the_problem() {
    if !require_root() {
        return;
    }
    let td = TestDir::new("storage-bad");
    let a = td.path().join("A");
    let _g = FleetGuard(&td, a.clone());
    let out = plinth(&td, &a)
        .args(["snapshot", "nobody@x"])
        .assert_failure();
    assert!(out.stderr.contains("nobody: no such container"), "{out}");
    let junk = td.path().join("junk");
    fs::write(&junk, b"this is not a stream at all").unwrap();
    let (ok, err) = plinth_io(&td, &a, &["receive"], Some(&junk), None);
    assert!(!ok && err.contains("not a plinth stream"), "{err}");
    let empty = td.path().join("empty");
    fs::write(&empty, b"").unwrap();
    let (ok, err) = plinth_io(&td, &a, &["receive"], Some(&empty), None);
    assert!(!ok && err.contains("empty"), "{err}");
    plinth(&td, &a)
        .args(["new", "store-bad-x", "--", "/bin/busybox", "true"])
        .assert_success();
    let out = plinth(&td, &a)
        .args(["snapshot", "store-bad-x@../x"])
        .assert_failure();
    assert!(out.stderr.contains("snapshot name"), "{out}");
    let out = plinth(&td, &a).args(["send", "store-bad-x@nope"]).output();
    assert!(!out.status.success());
    let out = plinth(&td, &a)
        .args(["clone", "store-bad-x@nope", "store-bad-y"])
        .assert_failure();
    assert!(out.stderr.contains("nope: no such snapshot"), "{out}");
    assert_eq!(names(&td, &a), ["store-bad-x"]);
    assert!(!a.join("containers/store-bad-y").exists());
}
