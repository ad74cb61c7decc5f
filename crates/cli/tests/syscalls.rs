//! The recall proof of `plinth check --syscalls` and of the profiles `plinth seccomp`
//! writes: every system call a real workload makes must be among the calls plinth
//! predicts for its program, and the program must run in a container whose seccomp
//! filter allows only the predicted calls.
//!
//! Each workload runs twice. First under `strace -f` (`common::strace` reads the trace:
//! only the calls of the program under test and of the threads and processes it creates
//! count), on the host's root `/` or chrooted into a cached Debian root
//! (`common::debian`). The calls it made must be a subset of the `syscalls` of its file
//! in `plinth check ROOT --syscalls --binary REL --format json` (compared by x86-64
//! number, so `newfstat` and `fstat` are one call); the test prints how many
//! were made, how many were predicted, and their ratio (the precision; run with
//! `--nocapture` to see it on success). Then it runs as the process of a container whose
//! `linux.seccomp` is the output of `plinth seccomp ROOT --binary REL` (anything else gets
//! ENOSYS) and must succeed with the same output. The host's workloads see the host root
//! through a read-only, non-recursive bind mount; a Debian root is the container's
//! read-only root as it is. One test removes an observed call from a profile and shows
//! the workload then fails, so it is the profile that lets the others run.
//!
//! The workloads: `ls -lR`, `tar -cf -`, `gzip -9`, `sort --parallel=2` (threads),
//! `find`, `perl -e` (with `fork`) on the host and on Debian 11 and 13; on the host only,
//! `xz -T2` (threads), Debian's `python3.11` with a socket pair, a TCP connection and
//! threads, `busybox httpd` answering one request, and a static Go program with
//! goroutines and a TCP connection to itself, built here with `go build`.

mod common;

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use common::debian::{debian_root, RELEASES};
use common::strace::{traced_command, SyscallTable, Trace};
use common::{
    config_template, container_id, pointer_set, require, require_container_host, require_root,
    require_tool, resolve_program, run_detached, runtime_bin, wait_timeout, Bundle, TestDir,
};
use libseccomp::{ScmpArch, ScmpSyscall};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use serde_json::{json, Value};

/// How long a workload, traced or contained, may run.
const RUN_TIMEOUT: Duration = Duration::from_secs(180);

/// The environment of every workload, traced or contained.
const ENV: [&str; 2] = [
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME=/root",
];

/// Debian's own Python (the first `python3` on PATH may be another one).
const PYTHON: &str = "/usr/bin/python3.11";

/// A socket pair and a TCP connection over 127.0.0.1, each served by a thread.
const PYTHON_SCRIPT: &str = r#"
import socket, threading
a, b = socket.socketpair()
def echo():
    b.sendall(b.recv(64).upper())
t = threading.Thread(target=echo)
t.start()
a.sendall(b"hello")
print(a.recv(64).decode())
t.join()
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.bind(("127.0.0.1", 0))
srv.listen(1)
def serve():
    c, _ = srv.accept()
    c.sendall(c.recv(64)[::-1])
    c.close()
t = threading.Thread(target=serve)
t.start()
cli = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
cli.connect(srv.getsockname())
cli.sendall(b"plinth")
print(cli.recv(64).decode())
cli.close()
t.join()
"#;

/// Pure Perl (no XS module): hashes, a directory, a file, `stat`, and a child that
/// writes into a pipe.
const PERL_SCRIPT: &str = r#"
use strict;
my %h;
$h{$_ % 97} += $_ for 1 .. 200000;
opendir(my $d, "/usr/share/doc") or die "opendir: $!";
my @docs = sort grep { !/^\./ } readdir($d);
closedir($d);
open(my $f, "<", "/etc/passwd") or die "open: $!";
my @users = <$f>;
close($f);
my @st = stat("/etc/passwd") or die "stat: $!";
pipe(my $r, my $w) or die "pipe: $!";
my $pid = fork() // die "fork: $!";
if ($pid == 0) { close($r); print $w "from the child\n"; close($w); exit(0); }
close($w);
my $got = <$r>;
waitpid($pid, 0);
printf "%d keys, %d docs, %d users, %d bytes, %s", scalar(keys %h), scalar(@docs),
    scalar(@users), $st[7], $got;
"#;

/// The Go workload: a file read, goroutines summing it, and a TCP echo over 127.0.0.1.
const GO_PROGRAM: &str = r#"package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"sync"
)

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func main() {
	data, err := os.ReadFile("/data.txt")
	check(err)
	var wg sync.WaitGroup
	sums := make([]int, 4)
	for i := range sums {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := i; j < len(data); j += len(sums) {
				sums[i] += int(data[j])
			}
		}(i)
	}
	wg.Wait()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		io.Copy(c, c)
		c.Close()
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	check(err)
	_, err = c.Write([]byte("plinth"))
	check(err)
	check(c.(*net.TCPConn).CloseWrite())
	back, err := io.ReadAll(c)
	check(err)
	fmt.Println(len(data), sums, string(back))
}
"#;

// ---------------------------------------------------------------------------------------
// Workloads

/// One program run with fixed arguments.
struct Workload {
    /// For messages: what runs, and where.
    label: String,
    /// `argv[0]` is the program's absolute path as seen inside its root.
    argv: Vec<String>,
    /// A host file given as standard input.
    stdin: Option<PathBuf>,
    /// The program must create threads or processes (checked on the trace, so that a
    /// workload meant to exercise them really does).
    creates_tasks: bool,
    /// The container shares the host's network namespace (a new one has no loopback).
    host_network: bool,
}

impl Workload {
    fn new(root: &TestRoot, argv: &[&str]) -> Workload {
        let name = Path::new(argv[0]).file_name().unwrap().to_string_lossy();
        Workload {
            label: format!("{name} on {}", root.label),
            argv: argv.iter().map(|a| a.to_string()).collect(),
            stdin: None,
            creates_tasks: false,
            host_network: false,
        }
    }

    fn stdin(mut self, path: PathBuf) -> Workload {
        self.stdin = Some(path);
        self
    }

    fn creates_tasks(mut self) -> Workload {
        self.creates_tasks = true;
        self
    }

    fn host_network(mut self) -> Workload {
        self.host_network = true;
        self
    }
}

/// A root filesystem the workloads run in.
struct TestRoot {
    /// `host`, `bullseye`, ...
    label: String,
    /// Its absolute path: `/` for the host.
    path: PathBuf,
}

impl TestRoot {
    fn host() -> TestRoot {
        TestRoot {
            label: "host".into(),
            path: PathBuf::from("/"),
        }
    }

    fn is_host(&self) -> bool {
        self.path == Path::new("/")
    }
}

/// What every test needs: root, strace, chroot.
fn require_tracing() -> bool {
    require_root() && require_tool("strace") && require_tool("chroot")
}

/// The Debian roots, or None (after saying why) when the test must skip.
fn debian_roots() -> Option<Vec<TestRoot>> {
    let mut roots = Vec::new();
    for release in RELEASES {
        roots.push(TestRoot {
            label: release.to_string(),
            path: debian_root(release)?,
        });
    }
    Some(roots)
}

/// `lines` pseudo-random numbers, one a line, in a file of the test dir: enough lines
/// make `sort --parallel=2` sort with two threads (GNU sort splits from 128 Ki lines).
fn numbers_file(td: &TestDir, lines: usize) -> PathBuf {
    let path = td.path().join("numbers.txt");
    let mut text = String::with_capacity(lines * 11);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..lines {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        text.push_str(&format!("{}\n", x % 1_000_000_007));
    }
    fs::write(&path, text).expect("write numbers.txt");
    path
}

// ---------------------------------------------------------------------------------------
// Running, traced or contained

/// What a finished command did, with stdout as bytes.
struct Ran {
    cmdline: String,
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: String,
}

impl fmt::Display for Ran {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = match (self.status.code(), self.status.signal()) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            _ => format!("{:?}", self.status),
        };
        let shown = &self.stdout[..self.stdout.len().min(2000)];
        write!(
            f,
            "command: {}\nstatus: {status}\n--- stdout ({} bytes) ---\n{}\n--- stderr ---\n{}\n---",
            self.cmdline,
            self.stdout.len(),
            String::from_utf8_lossy(shown),
            self.stderr
        )
    }
}

fn cmdline(cmd: &Command) -> String {
    let mut s = common::shell_quote(cmd.get_program());
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&common::shell_quote(a));
    }
    s
}

/// Start `cmd` with stdout and stderr in files of the test dir.
fn spawn(td: &TestDir, cmd: &mut Command, stdin: Option<&Path>) -> (Child, PathBuf, PathBuf) {
    let (out, err) = (td.fresh("stdout"), td.fresh("stderr"));
    let stdin = match stdin {
        Some(p) => {
            Stdio::from(fs::File::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        }
        None => Stdio::null(),
    };
    let child = cmd
        .stdin(stdin)
        .stdout(fs::File::create(&out).expect("create stdout file"))
        .stderr(fs::File::create(&err).expect("create stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{}`: {e}", cmdline(cmd)));
    (child, out, err)
}

/// Run `cmd` to completion (at most [`RUN_TIMEOUT`]).
fn run(td: &TestDir, mut cmd: Command, stdin: Option<&Path>) -> Ran {
    let (mut child, out, err) = spawn(td, &mut cmd, stdin);
    let status = wait_timeout(&mut child, RUN_TIMEOUT);
    let ran = Ran {
        cmdline: cmdline(&cmd),
        status: status.unwrap_or_else(|| ExitStatus::from_raw(libc::SIGKILL)),
        stdout: fs::read(&out).unwrap_or_default(),
        stderr: String::from_utf8_lossy(&fs::read(&err).unwrap_or_default()).into_owned(),
    };
    if status.is_none() {
        panic!("did not finish within {RUN_TIMEOUT:?} and was killed\n{ran}");
    }
    ran
}

/// The syscall table, read once.
fn table() -> &'static SyscallTable {
    static TABLE: OnceLock<SyscallTable> = OnceLock::new();
    TABLE.get_or_init(SyscallTable::load)
}

/// The tracer around `argv`, chrooted into `root` unless it is `/`, with [`ENV`].
fn traced(root: &TestRoot, argv: &[String], trace_file: &Path) -> Command {
    let mut cmd = traced_command(trace_file);
    if !root.is_host() {
        let chroot = resolve_program("chroot".as_ref()).expect("chroot on PATH");
        cmd.arg(chroot).arg(&root.path);
    }
    cmd.args(argv).env_clear().current_dir("/");
    for kv in ENV {
        let (k, v) = kv.split_once('=').unwrap();
        cmd.env(k, v);
    }
    cmd
}

/// Read the trace of a run of `argv[0]`.
fn read_trace(label: &str, trace_file: &Path, argv0: &str) -> Trace {
    let text = fs::read_to_string(trace_file)
        .unwrap_or_else(|e| panic!("{label}: read {}: {e}", trace_file.display()));
    Trace::parse(&text, argv0, table())
        .unwrap_or_else(|e| panic!("{label}: {}: {e}", trace_file.display()))
}

/// Run the workload under strace; it must succeed. Returns the trace and what it did.
fn observe(td: &TestDir, root: &TestRoot, w: &Workload) -> (Trace, Ran) {
    let trace_file = td.fresh("trace");
    let ran = run(td, traced(root, &w.argv, &trace_file), w.stdin.as_deref());
    if !ran.status.success() {
        panic!("{}: the traced run failed\n{ran}", w.label);
    }
    let trace = read_trace(&w.label, &trace_file, &w.argv[0]);
    if w.creates_tasks {
        assert!(
            trace.created_tasks() > 0,
            "{}: the program created no thread or process; the workload is too small to \
             exercise them",
            w.label
        );
    }
    (trace, ran)
}

// ---------------------------------------------------------------------------------------
// plinth's prediction and profile

/// `path` (absolute, as seen inside `root`) as a path relative to `root` with every
/// symlink resolved inside `root`: the `--binary` of the file that really runs.
fn rel_in_root(root: &Path, path: &str) -> String {
    let mut rel = PathBuf::new();
    let mut todo: Vec<String> = components(path);
    todo.reverse();
    let mut hops = 0;
    while let Some(c) = todo.pop() {
        if c == ".." {
            rel.pop();
            continue;
        }
        let cand = rel.join(&c);
        let full = root.join(&cand);
        match fs::symlink_metadata(&full) {
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                assert!(
                    hops < 40,
                    "{path}: too many symlinks under {}",
                    root.display()
                );
                let target = fs::read_link(&full).unwrap();
                let target = target.to_string_lossy();
                if target.starts_with('/') {
                    rel = PathBuf::new();
                }
                let mut more = components(&target);
                more.reverse();
                todo.extend(more);
            }
            Ok(_) => rel = cand,
            Err(e) => panic!("{path} in {}: {e}", root.display()),
        }
    }
    let full = root.join(&rel);
    assert!(
        full.is_file(),
        "{path} resolves to {}, not a regular file",
        full.display()
    );
    rel.to_string_lossy().into_owned()
}

fn components(path: &str) -> Vec<String> {
    Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

/// What `plinth check --syscalls` says of one file.
struct Prediction {
    /// The predicted calls, by x86-64 number.
    numbers: BTreeSet<u32>,
    unresolved_sites: u64,
    verdict: String,
    problems: Vec<String>,
}

/// The x86-64 number of a call named the kernel's way (`newfstat`, from the syscall
/// table) or user space's way (`fstat`, as strace, libseccomp and OCI profiles say).
fn number_of(name: &str) -> Option<u32> {
    table().number(name).or_else(|| {
        ScmpSyscall::from_name_by_arch(name, ScmpArch::X8664)
            .ok()
            .and_then(|nr| u32::try_from(i32::from(nr)).ok())
    })
}

/// `nr` for messages: the table's name, and libseccomp's where it differs.
fn describe(nr: u32) -> String {
    let kernel = table().name(nr).unwrap_or("?");
    match ScmpSyscall::from(nr as i32).get_name_by_arch(ScmpArch::X8664) {
        Ok(user) if user != kernel => format!("{kernel}/{user}"),
        _ => kernel.to_string(),
    }
}

/// `plinth check ROOT --syscalls --binary REL --format json`, the entry of `rel`.
fn predict(td: &TestDir, root: &Path, rel: &str) -> Prediction {
    let out = td
        .command(runtime_bin())
        .arg("check")
        .arg(root)
        .args(["--syscalls", "--binary", rel, "--format", "json"])
        .timeout(RUN_TIMEOUT)
        .output();
    // Exit code 1 says some file fails: still an answer. A crash or a usage error is not.
    assert!(
        matches!(out.code(), Some(0 | 1)),
        "plinth check --syscalls failed\n{out}"
    );
    let report: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON value: {e}\n{out}"));
    let files = report["files"]
        .as_array()
        .unwrap_or_else(|| panic!("no \"files\" array\n{out}"));
    let file = files
        .iter()
        .find(|f| f["path"] == rel)
        .unwrap_or_else(|| panic!("no entry for {rel} in the report\n{out}"));
    let names: Vec<String> = file["syscalls"]
        .as_array()
        .unwrap_or_else(|| panic!("{rel}: no \"syscalls\" array: {file}"))
        .iter()
        .map(|n| {
            n.as_str()
                .unwrap_or_else(|| panic!("{rel}: a syscall name is not a string: {n}"))
                .to_string()
        })
        .collect();
    assert!(
        names.windows(2).all(|w| w[0] < w[1]),
        "{rel}: \"syscalls\" is not sorted without duplicates: {names:?}"
    );
    let numbers = names
        .iter()
        .map(|n| number_of(n).unwrap_or_else(|| panic!("{rel}: {n:?} is no x86-64 system call")))
        .collect();
    Prediction {
        numbers,
        unresolved_sites: file["unresolved_syscall_sites"]
            .as_u64()
            .unwrap_or_else(|| {
                panic!("{rel}: \"unresolved_syscall_sites\" is not a count: {file}")
            }),
        verdict: file["verdict"].as_str().unwrap_or("").to_string(),
        problems: file["problems"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .map(|p| format!("{}: {}", p["kind"].as_str().unwrap_or("?"), p["detail"]))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Observed ⊆ predicted, compared by number, with the counts printed.
fn assert_recall(label: &str, trace: &Trace, pred: &Prediction) {
    let observed: BTreeSet<u32> = trace.numbers.keys().copied().collect();
    let missing: Vec<String> = observed
        .difference(&pred.numbers)
        .map(|&nr| format!("{} (x{})", describe(nr), trace.numbers[&nr]))
        .collect();
    eprintln!(
        "{label}: observed {} / predicted {} = precision {:.2}; {} tasks; {} unresolved \
         syscall sites; verdict {}; kernel-made {:?}",
        observed.len(),
        pred.numbers.len(),
        observed.len() as f64 / pred.numbers.len().max(1) as f64,
        trace.tasks,
        pred.unresolved_sites,
        pred.verdict,
        trace.kernel_made,
    );
    if !missing.is_empty() {
        panic!(
            "{label}: recall below 100%: observed but not predicted: {}\nproblems: {:#?}\n\
             observed: {:?}",
            missing.join(", "),
            pred.problems,
            trace.names()
        );
    }
}

/// `plinth seccomp ROOT --binary REL -o FILE`, parsed.
fn profile(td: &TestDir, root: &Path, rel: &str) -> Value {
    let path = td.fresh("profile").with_extension("json");
    td.command(runtime_bin())
        .arg("seccomp")
        .arg(root)
        .args(["--binary", rel, "-o"])
        .arg(&path)
        .timeout(RUN_TIMEOUT)
        .assert_success();
    let text = fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("plinth seccomp wrote no {}: {e}", path.display()));
    let profile: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{}: not JSON: {e}\n{text}", path.display()));
    assert_ne!(
        profile["defaultAction"], "SCMP_ACT_ALLOW",
        "a profile that allows by default proves nothing: {profile}"
    );
    profile
}

/// The names a profile allows unconditionally.
fn allowed(profile: &Value) -> BTreeSet<String> {
    let rules = profile["syscalls"]
        .as_array()
        .unwrap_or_else(|| panic!("profile without \"syscalls\": {profile}"));
    rules
        .iter()
        .filter(|r| r["action"] == "SCMP_ACT_ALLOW" && r.get("args").is_none_or(Value::is_null))
        .flat_map(|r| r["names"].as_array().into_iter().flatten())
        .filter_map(|n| n.as_str().map(String::from))
        .collect()
}

/// The profile must allow every call the program made, kernel-made calls included.
/// Names are read as the runtime reads them: through libseccomp, as x86-64 numbers.
fn assert_profile_allows(label: &str, trace: &Trace, profile: &Value) -> usize {
    let names = allowed(profile);
    let mut unknown = Vec::new();
    let mut numbers = BTreeSet::new();
    for name in &names {
        match ScmpSyscall::from_name_by_arch(name, ScmpArch::X8664) {
            Ok(nr) => {
                numbers.insert(i32::from(nr));
            }
            Err(_) => unknown.push(name.as_str()),
        }
    }
    let kernel_made = trace.kernel_made.keys().filter_map(|n| table().number(n));
    let made: BTreeSet<u32> = trace.numbers.keys().copied().chain(kernel_made).collect();
    let missing: Vec<String> = made
        .iter()
        .filter(|&&nr| !numbers.contains(&(nr as i32)))
        .map(|&nr| describe(nr))
        .collect();
    eprintln!(
        "{label}: the profile allows {} calls (the program made {})",
        names.len(),
        made.len()
    );
    assert!(
        missing.is_empty(),
        "{label}: the profile does not allow calls the program made: {missing:?}\n\
         names in the profile that libseccomp does not know on x86-64: {unknown:?}"
    );
    names.len()
}

// ---------------------------------------------------------------------------------------
// Containers

/// A read-only, non-recursive bind mount of the host's `/`, undone when dropped.
struct HostRootBind {
    target: PathBuf,
}

impl HostRootBind {
    fn new(target: &Path) -> HostRootBind {
        fs::create_dir_all(target).expect("create the bind target");
        mount(
            Some("/"),
            target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .unwrap_or_else(|e| panic!("bind / onto {}: {e}", target.display()));
        let bind = HostRootBind {
            target: target.to_path_buf(),
        };
        mount(
            None::<&str>,
            target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .unwrap_or_else(|e| panic!("remount {} read-only: {e}", target.display()));
        let st = nix::sys::statvfs::statvfs(target).expect("statvfs of the bind");
        assert!(
            st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY),
            "{} is not read-only",
            target.display()
        );
        bind
    }
}

impl Drop for HostRootBind {
    fn drop(&mut self) {
        let _ = umount2(&self.target, MntFlags::MNT_DETACH);
    }
}

/// A bundle running `argv` on the read-only root `rootfs` (absolute) with `seccomp`,
/// a tmpfs on /tmp, and the read capabilities root has on the host (the traced run is
/// root's).
fn bundle(td: &TestDir, rootfs: &Path, w: &Workload, seccomp: Value) -> Bundle {
    let dir = td.fresh("bundle");
    fs::create_dir_all(&dir).expect("create bundle dir");
    let mut config = config_template();
    pointer_set(&mut config, "/root/path", json!(rootfs));
    pointer_set(&mut config, "/root/readonly", json!(true));
    pointer_set(&mut config, "/process/args", json!(w.argv));
    pointer_set(&mut config, "/process/env", json!(ENV));
    for set in ["bounding", "effective", "permitted", "ambient"] {
        for cap in ["CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH"] {
            pointer_set(
                &mut config,
                &format!("/process/capabilities/{set}/-"),
                json!(cap),
            );
        }
    }
    pointer_set(
        &mut config,
        "/mounts/-",
        json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "nodev", "mode=1777", "size=65536k"]}),
    );
    if w.host_network {
        config["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .retain(|ns| ns["type"] != "network");
    }
    pointer_set(&mut config, "/linux/seccomp", seccomp);
    let bundle = Bundle {
        dir: fs::canonicalize(&dir).unwrap(),
        config,
    };
    bundle.write_config();
    bundle
}

/// `run --bundle` in the foreground, with the workload's stdin.
fn run_contained(td: &TestDir, bundle: &Bundle, w: &Workload) -> Ran {
    let id = container_id();
    let _guard = td.guard(&id);
    let mut cmd = Command::new(runtime_bin());
    cmd.arg("--root")
        .arg(td.root())
        .args(["run", "--bundle"])
        .arg(bundle.path())
        .arg(&id);
    run(td, cmd, w.stdin.as_deref())
}

/// The container must succeed and print what the traced run printed.
fn assert_same_run(label: &str, traced: &Ran, contained: &Ran) {
    if !contained.status.success() {
        panic!("{label}: the workload failed in its container under its profile\n{contained}");
    }
    if traced.stdout != contained.stdout {
        let at = traced
            .stdout
            .iter()
            .zip(&contained.stdout)
            .position(|(a, b)| a != b)
            .unwrap_or(traced.stdout.len().min(contained.stdout.len()));
        panic!(
            "{label}: the container printed {} bytes, the traced run {} (first difference at \
             byte {at})\n--- traced ---\n{traced}\n--- contained ---\n{contained}",
            contained.stdout.len(),
            traced.stdout.len()
        );
    }
}

/// The whole proof for one workload: trace, recall, profile, container.
fn prove(td: &TestDir, root: &TestRoot, w: &Workload) {
    let rel = rel_in_root(&root.path, &w.argv[0]);
    let (trace, traced_run) = observe(td, root, w);
    let pred = predict(td, &root.path, &rel);
    assert_recall(&w.label, &trace, &pred);
    let profile = profile(td, &root.path, &rel);
    assert_profile_allows(&w.label, &trace, &profile);
    let contained = if root.is_host() {
        let bind = HostRootBind::new(&td.fresh("host-root"));
        let bundle = bundle(td, &bind.target, w, profile);
        run_contained(td, &bundle, w)
    } else {
        let bundle = bundle(td, &root.path, w, profile);
        run_contained(td, &bundle, w)
    };
    assert_same_run(&w.label, &traced_run, &contained);
}

/// The workloads every root has, in `root`'s paths.
fn common_workloads(td: &TestDir, root: &TestRoot) -> Vec<Workload> {
    vec![
        Workload::new(root, &["/usr/bin/ls", "-lR", "/usr/share/doc"]),
        Workload::new(root, &["/usr/bin/tar", "-cf", "-", "/usr/share/zoneinfo"]),
        Workload::new(root, &["/usr/bin/gzip", "-9", "-c", "/usr/bin/perl"]),
        Workload::new(root, &["/usr/bin/sort", "--parallel=2"])
            .stdin(numbers_file(td, 400_000))
            .creates_tasks(),
        Workload::new(root, &["/usr/bin/find", "/usr/share", "-name", "*.txt"]),
        Workload::new(root, &["/usr/bin/perl", "-e", PERL_SCRIPT]).creates_tasks(),
    ]
}

/// Prove the workload of `common_workloads` whose program is `name`, on `roots`.
fn prove_common(test: &str, name: &str, roots: Vec<TestRoot>) {
    for root in roots {
        let td = TestDir::new(&format!("{test}-{}", root.label));
        let w = common_workloads(&td, &root)
            .into_iter()
            .find(|w| w.argv[0].ends_with(&format!("/{name}")))
            .unwrap_or_else(|| panic!("no workload {name}"));
        prove(&td, &root, &w);
    }
}

// ---------------------------------------------------------------------------------------
// The host's root

macro_rules! host_and_debian {
    ($($host:ident, $debian:ident: $name:literal;)*) => {$(
        #[test]
        fn $host() {
            if require_tracing() {
                prove_common(stringify!($host), $name, vec![TestRoot::host()]);
            }
        }

        #[test]
        fn $debian() {
            if !require_tracing() {
                return;
            }
            if let Some(roots) = debian_roots() {
                prove_common(stringify!($debian), $name, roots);
            }
        }
    )*};
}

host_and_debian! {
    host_ls_lr, debian_ls_lr: "ls";
    host_tar_cf, debian_tar_cf: "tar";
    host_gzip_9, debian_gzip_9: "gzip";
    host_sort_parallel, debian_sort_parallel: "sort";
    host_find, debian_find: "find";
    host_perl, debian_perl: "perl";
}

#[test]
fn host_xz_threads() {
    if !require_tracing() || !require_tool("xz") {
        return;
    }
    let root = TestRoot::host();
    let td = TestDir::new("sc-xz");
    let w = Workload::new(
        &root,
        &[
            "/usr/bin/xz",
            "-T2",
            "--block-size=1MiB",
            "-c",
            "/usr/bin/perl",
        ],
    )
    .creates_tasks();
    prove(&td, &root, &w);
}

#[test]
fn host_python_sockets_and_threads() {
    if !require_tracing() || !require(Path::new(PYTHON).is_file(), PYTHON) {
        return;
    }
    let root = TestRoot::host();
    let td = TestDir::new("sc-python");
    let w = Workload::new(&root, &[PYTHON, "-I", "-B", "-c", PYTHON_SCRIPT])
        .creates_tasks()
        .host_network();
    prove(&td, &root, &w);
}

#[test]
fn go_program_with_goroutines_and_tcp() {
    if !require_tracing() || !require_tool("go") {
        return;
    }
    let td = TestDir::new("sc-go");
    // A root of its own: the static binary, its input, and the container's mount points.
    let dir = td.path().join("go-root");
    for d in ["proc", "dev", "sys", "tmp"] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    fs::write(dir.join("data.txt"), "plinth ".repeat(10_000)).unwrap();
    let src = td.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("main.go"), GO_PROGRAM).unwrap();
    let mut build = Command::new(resolve_program("go".as_ref()).unwrap());
    build
        .args(["build", "-o"])
        .arg(dir.join("main"))
        .arg("main.go")
        .current_dir(&src)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", td.path())
        .env("GOCACHE", td.path().join("gocache"))
        .env("GOPATH", td.path().join("gopath"))
        .env("GOPROXY", "off")
        .env("CGO_ENABLED", "0");
    let built = run(&td, build, None);
    assert!(built.status.success(), "go build failed\n{built}");
    let root = TestRoot {
        label: "its own root".into(),
        path: dir,
    };
    let w = Workload::new(&root, &["/main"])
        .creates_tasks()
        .host_network();
    prove(&td, &root, &w);
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// `GET /copyright` from the server on `port`, retried until it listens (a refused
/// connection reaches no server); returns the whole response.
fn http_get(port: u16, what: &str) -> Vec<u8> {
    let start = Instant::now();
    let mut conn = loop {
        match TcpStream::connect((Ipv4Addr::LOCALHOST, port)) {
            Ok(c) => break c,
            Err(e) if start.elapsed() > Duration::from_secs(20) => {
                panic!("{what}: nothing listens on 127.0.0.1:{port}: {e}")
            }
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    };
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    conn.write_all(b"GET /copyright HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut response = Vec::new();
    conn.read_to_end(&mut response)
        .unwrap_or_else(|e| panic!("{what}: read the response: {e}"));
    response
}

/// A server run under strace: `terminate` sends SIGTERM to the server (the tracer's
/// child), which ends the tracer too; dropped early, it kills both.
struct TracedServer {
    strace: Child,
}

impl TracedServer {
    fn server_pid(&self) -> Option<nix::unistd::Pid> {
        let pid = self.strace.id();
        let children = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
        let first = children.split_whitespace().next()?.parse().ok()?;
        Some(nix::unistd::Pid::from_raw(first))
    }

    fn terminate(&self) {
        let server = self
            .server_pid()
            .expect("the tracer has no child: the server is gone");
        nix::sys::signal::kill(server, nix::sys::signal::Signal::SIGTERM)
            .expect("SIGTERM the server");
    }
}

impl Drop for TracedServer {
    fn drop(&mut self) {
        if let Ok(None) = self.strace.try_wait() {
            if let Some(server) = self.server_pid() {
                let _ = nix::sys::signal::kill(server, nix::sys::signal::Signal::SIGKILL);
            }
            let _ = self.strace.kill();
            let _ = self.strace.wait();
        }
    }
}

/// The response must be a 200 whose body is `body`.
fn assert_served(what: &str, response: &[u8], body: &[u8]) {
    let text = String::from_utf8_lossy(response);
    assert!(
        text.starts_with("HTTP/1.") && text.lines().next().unwrap_or("").contains(" 200 "),
        "{what}: not a 200 response:\n{text}"
    );
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("{what}: no end of headers:\n{text}"));
    assert!(
        response[split + 4..] == *body,
        "{what}: wrong body:\n{text}"
    );
}

#[test]
fn host_busybox_httpd_serves_one_request() {
    if !require_tracing() || !require_container_host() {
        return;
    }
    const DOCS: &str = "/usr/share/doc/busybox-static";
    let body = fs::read(format!("{DOCS}/copyright"))
        .unwrap_or_else(|e| panic!("{DOCS}/copyright (package busybox-static): {e}"));
    let root = TestRoot::host();
    let td = TestDir::new("sc-httpd");
    let argv = |port: u16| {
        let listen = format!("127.0.0.1:{port}");
        Workload::new(
            &root,
            &["/usr/bin/busybox", "httpd", "-f", "-p", &listen, "-h", DOCS],
        )
        .creates_tasks()
        .host_network()
    };
    let rel = rel_in_root(&root.path, "/usr/bin/busybox");

    // Traced: serve one request, then SIGTERM the server (not the tracer).
    let w = argv(free_port());
    let trace_file = td.fresh("trace");
    let mut cmd = traced(&root, &w.argv, &trace_file);
    let (strace, _, err) = spawn(&td, &mut cmd, None);
    let mut server = TracedServer { strace };
    let port = w.argv[4].rsplit(':').next().unwrap().parse().unwrap();
    let response = http_get(port, "traced httpd");
    server.terminate();
    if wait_timeout(&mut server.strace, RUN_TIMEOUT).is_none() {
        panic!(
            "strace did not finish after its server was killed\n{}",
            fs::read_to_string(&err).unwrap_or_default()
        );
    }
    assert_served("traced httpd", &response, &body);
    let trace = read_trace(&w.label, &trace_file, &w.argv[0]);
    assert!(trace.created_tasks() > 0, "httpd served without a child");
    let pred = predict(&td, &root.path, &rel);
    assert_recall(&w.label, &trace, &pred);
    let profile = profile(&td, &root.path, &rel);
    assert_profile_allows(&w.label, &trace, &profile);

    // Contained, detached, under the profile: the same request, then SIGKILL (it is the
    // container's pid 1, which ignores SIGTERM).
    let bind = HostRootBind::new(&td.fresh("host-root"));
    let w = argv(free_port());
    let port = w.argv[4].rsplit(':').next().unwrap().parse().unwrap();
    let bundle = bundle(&td, &bind.target, &w, profile);
    let running = run_detached(&td, &bundle);
    let response = http_get(port, "contained httpd");
    td.plinth()
        .args(["kill", &running.id, "KILL"])
        .assert_success();
    assert_served("contained httpd", &response, &body);
    drop(running);
}

// ---------------------------------------------------------------------------------------
// The profile is what lets them run

#[test]
fn without_getdents64_ls_lr_fails_under_its_profile() {
    if !require_tracing() {
        return;
    }
    let root = TestRoot::host();
    let td = TestDir::new("sc-negative");
    let w = Workload::new(&root, &["/usr/bin/ls", "-lR", "/usr/share/doc"]);
    let rel = rel_in_root(&root.path, &w.argv[0]);
    let full = profile(&td, &root.path, &rel);
    assert!(
        allowed(&full).contains("getdents64"),
        "the profile of ls does not allow getdents64: {full}"
    );
    let mut reduced = full.clone();
    for rule in reduced["syscalls"].as_array_mut().unwrap() {
        if let Some(names) = rule["names"].as_array_mut() {
            names.retain(|n| n != "getdents64");
        }
    }
    assert!(!allowed(&reduced).contains("getdents64"));
    let bind = HostRootBind::new(&td.fresh("host-root"));

    let ok = run_contained(&td, &bundle(&td, &bind.target, &w, full), &w);
    assert!(ok.status.success(), "ls -lR under its full profile\n{ok}");
    let failed = run_contained(&td, &bundle(&td, &bind.target, &w, reduced), &w);
    assert!(
        !failed.status.success() && failed.status.code().is_some(),
        "ls -lR without getdents64 must fail cleanly\n{failed}"
    );
    assert!(
        failed.stderr.contains("Function not implemented"),
        "ls -lR without getdents64 must say ENOSYS (the profile's defaultErrnoRet)\n{failed}"
    );
    // Only the directory listing broke: nothing was listed below /usr/share/doc.
    assert!(
        failed.stdout.len() < ok.stdout.len() / 10,
        "ls -lR listed {} bytes without getdents64 (with it: {})",
        failed.stdout.len(),
        ok.stdout.len()
    );
}
