//! The exactness proof of `plinth check` (issue 3, item 3): the set of files that glibc's
//! real dynamic loader refuses must equal the set that plinth marks `missing-library` or
//! `missing-symbol-version`, with no misses and no false alarms.
//!
//! The ground truth is the loader oracle of `common::oracle` (its classification rules are
//! written there). The roots are Debian 11 (bullseye) and 13 (trixie) minbase, debootstrapped
//! once into a cache (`common::debian`, `scripts/lib.sh`), checked on this Debian 12 host's
//! libraries (`--onto /`, against the host's loader) and on their own (no `--onto`, against
//! their own loader in a chroot). Small roots built here at test time with `cc`,
//! `musl-gcc` and `go` cover what the Debian roots do not: RUNPATH against RPATH, a
//! dependency's dependency, a library without version information, static executables, a
//! musl binary and its interpreter, Go binaries with and without cgo.
//!
//! The oracle is tested on its own first (`oracle_*`), so a failure of the `check_*` tests
//! is plinth's, not the oracle's. The oracle's counts are printed (run with
//! `--nocapture` to see them on success).

mod common;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use common::check_report::{CheckReport, ExactnessDiff};
use common::debian::debian_root;
use common::elf_probe::{probe, Probe};
use common::oracle::{classify, run_oracle, trace, Mode, OracleReport, Outcome, Refusal};
use common::{require, require_root, require_tool, TestDir};

/// A whole Debian root takes a few seconds; allow for a slow machine.
const CHECK_TIMEOUT: Duration = Duration::from_secs(600);

// ---------------------------------------------------------------------------------------
// Driving `plinth check`

/// The `plinth` binary cargo built, or `PLINTH_TEST_CHECK`: another program that answers
/// `check ROOT [--onto ONTO] --format json` the same way, which is how these tests are
/// themselves checked (against a stand-in built on the loader, and one that is wrong on
/// purpose).
fn check_bin() -> PathBuf {
    match std::env::var_os("PLINTH_TEST_CHECK") {
        Some(p) if !p.is_empty() => {
            eprintln!(
                "note: PLINTH_TEST_CHECK: testing {}",
                Path::new(&p).display()
            );
            PathBuf::from(p)
        }
        _ => PathBuf::from(env!("CARGO_BIN_EXE_plinth")),
    }
}

/// `plinth check ROOT [--onto ONTO] --format json`, shape-checked.
fn plinth_check(td: &TestDir, root: &Path, onto: Option<&Path>) -> CheckReport {
    let mut cmd = td.command(check_bin());
    cmd.arg("check").arg(root);
    if let Some(onto) = onto {
        cmd.arg("--onto").arg(onto);
    }
    cmd.args(["--format", "json"]).timeout(CHECK_TIMEOUT);
    let start = Instant::now();
    let out = cmd.output();
    let report = CheckReport::parse(&out);
    eprintln!(
        "plinth check {}{}: {} files listed in {:.2?}; summary {}",
        root.display(),
        onto.map(|o| format!(" --onto {}", o.display()))
            .unwrap_or_default(),
        report.files.len(),
        start.elapsed(),
        report.raw["summary"]
    );
    report.assert_paths_are_regular_files(root);
    report
}

/// Compare plinth with the oracle and fail with the file-by-file diff.
fn assert_exact(what: &str, report: &CheckReport, oracle: &OracleReport) {
    let diff = ExactnessDiff::compute(report, oracle);
    let rendered = diff.render();
    eprintln!("{what}: {rendered}");
    assert!(
        diff.is_exact(),
        "{what}: plinth check and the dynamic loader disagree\n{rendered}"
    );
}

// ---------------------------------------------------------------------------------------
// Building fixtures

/// Run a build command in `td`, failing the test with its output if it fails.
fn build(td: &TestDir, program: &str, args: &[&str]) {
    td.command(program)
        .args(args)
        .timeout(Duration::from_secs(300))
        .assert_success();
}

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

/// Borrow a list of owned arguments.
fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 test path")
}

const HELLO_C: &str = "#include <stdio.h>\nint main(void) { puts(\"hello\"); return 0; }\n";

/// The loader-semantics fixture, built with `cc`: a root whose executables find their
/// libraries through `$ORIGIN`, so the host's loader resolves them inside the root.
///
/// | file | needs | the loader says |
/// | --- | --- | --- |
/// | usr/bin/hello | libc | accepted |
/// | usr/bin/fix-v1 | PLINTHFIX_1 of libplinthfix.so.1 | accepted |
/// | usr/bin/fix-v2 | PLINTHFIX_2, which the installed libplinthfix lacks | refused: version |
/// | usr/bin/gone | libplinthgone.so.1, absent | refused: not found |
/// | usr/lib/libplinthgone-user.so.1 | libplinthgone.so.1 | refused: not found (a .so) |
/// | usr/bin/gone-transitive | libplinthgone-user.so.1 (present) | refused: not found |
/// | usr/bin/nover | a version of libplinthnover, installed without versions | accepted, warning |
/// | usr/bin/rpath-chain | outer via DT_RPATH; outer needs inner, no path of its own | accepted |
/// | usr/bin/runpath-chain | the same via DT_RUNPATH, which does not reach inner | refused: not found |
/// | usr/lib/private/libplinthouter.so.1 | inner, with no path of its own | refused: not found |
/// | usr/bin/static | nothing (cc -static) | not dynamic |
fn loader_fixture(td: &TestDir) -> PathBuf {
    let src = td.path().join("src");
    let bld = td.path().join("build");
    let root = td.path().join("fixture");
    for d in [
        &src,
        &bld,
        &root.join("usr/bin"),
        &root.join("usr/lib/private"),
    ] {
        fs::create_dir_all(d).unwrap();
    }
    write(
        &src.join("fix.c"),
        "int fix_one(void) { return 1; }\nint fix_two(void) { return 2; }\n",
    );
    write(
        &src.join("fix12.map"),
        "PLINTHFIX_1 { global: fix_one; local: *; };\nPLINTHFIX_2 { global: fix_two; } PLINTHFIX_1;\n",
    );
    write(
        &src.join("fix1.map"),
        "PLINTHFIX_1 { global: fix_one; fix_two; local: *; };\n",
    );
    write(
        &src.join("one.c"),
        "int fix_one(void);\nint main(void) { return fix_one() - 1; }\n",
    );
    write(
        &src.join("two.c"),
        "int fix_two(void);\nint main(void) { return fix_two() - 2; }\n",
    );
    write(&src.join("gone.c"), "int gone(void) { return 0; }\n");
    write(
        &src.join("gone-user.c"),
        "int gone(void);\nint gone_user(void) { return gone(); }\n",
    );
    write(
        &src.join("use-gone.c"),
        "int gone(void);\nint main(void) { return gone(); }\n",
    );
    write(
        &src.join("use-gone-user.c"),
        "int gone_user(void);\nint main(void) { return gone_user(); }\n",
    );
    write(
        &src.join("nover.map"),
        "NOVER_1 { global: fix_one; local: *; };\n",
    );
    write(&src.join("inner.c"), "int inner(void) { return 0; }\n");
    write(
        &src.join("outer.c"),
        "int inner(void);\nint outer(void) { return inner(); }\n",
    );
    write(
        &src.join("chain.c"),
        "int outer(void);\nint main(void) { return outer(); }\n",
    );
    write(&src.join("hello.c"), HELLO_C);

    let c = |name: &str| src.join(name);
    let lib = |dir: &Path, soname: &str, source: &str, extra: &[&str]| {
        let out = dir.join(soname);
        let soname_flag = format!("-Wl,-soname,{soname}");
        let source = c(source);
        // The source before the libraries: Debian's gcc links with --as-needed.
        let mut args = vec!["-shared", "-fPIC", "-o", s(&out), &soname_flag, s(&source)];
        args.extend_from_slice(extra);
        build(td, "cc", &args);
    };
    let ulib = root.join("usr/lib");
    let private = root.join("usr/lib/private");
    let map = |name: &str| format!("-Wl,--version-script={}", s(&c(name)));
    // Link-time libraries in build/, installed ones in the root.
    lib(&bld, "libplinthfix.so.1", "fix.c", &[&map("fix12.map")]);
    lib(&ulib, "libplinthfix.so.1", "fix.c", &[&map("fix1.map")]);
    lib(&bld, "libplinthgone.so.1", "gone.c", &[]);
    let gone_l = format!("-L{}", s(&bld));
    lib(
        &ulib,
        "libplinthgone-user.so.1",
        "gone-user.c",
        &[
            &gone_l,
            "-l:libplinthgone.so.1",
            "-Wl,-rpath,$ORIGIN",
            "-Wl,--enable-new-dtags",
        ],
    );
    lib(&bld, "libplinthnover.so.1", "fix.c", &[&map("nover.map")]);
    lib(&ulib, "libplinthnover.so.1", "fix.c", &[]);
    lib(&private, "libplinthinner.so.1", "inner.c", &[]);
    let private_l = format!("-L{}", s(&private));
    lib(
        &private,
        "libplinthouter.so.1",
        "outer.c",
        &[&private_l, "-l:libplinthinner.so.1"],
    );

    let exe = |name: &str, source: &str, extra: &[&str]| {
        let out = root.join("usr/bin").join(name);
        let source = c(source);
        let mut args = vec!["-o", s(&out), s(&source)];
        args.extend_from_slice(extra);
        build(td, "cc", &args);
    };
    let bld_l = format!("-L{}", s(&bld));
    let ulib_l = format!("-L{}", s(&ulib));
    let runpath = ["-Wl,-rpath,$ORIGIN/../lib", "-Wl,--enable-new-dtags"];
    let with = |libs: &[&'static str], l: &str| -> Vec<String> {
        let mut v = vec![l.to_string()];
        v.extend(libs.iter().map(|s| s.to_string()));
        v.extend(runpath.iter().map(|s| s.to_string()));
        v
    };
    exe("hello", "hello.c", &[]);
    exe(
        "fix-v1",
        "one.c",
        &refs(&with(&["-l:libplinthfix.so.1"], &bld_l)),
    );
    exe(
        "fix-v2",
        "two.c",
        &refs(&with(&["-l:libplinthfix.so.1"], &bld_l)),
    );
    exe(
        "gone",
        "use-gone.c",
        &refs(&with(&["-l:libplinthgone.so.1"], &bld_l)),
    );
    exe(
        "gone-transitive",
        "use-gone-user.c",
        &refs(&with(
            &["-l:libplinthgone-user.so.1", "-Wl,--allow-shlib-undefined"],
            &ulib_l,
        )),
    );
    exe(
        "nover",
        "one.c",
        &refs(&with(&["-l:libplinthnover.so.1"], &bld_l)),
    );
    let chain = |name: &str, new_dtags: &str| {
        exe(
            name,
            "chain.c",
            &[
                &private_l,
                "-l:libplinthouter.so.1",
                "-Wl,-rpath,$ORIGIN/../lib/private",
                new_dtags,
                "-Wl,--allow-shlib-undefined",
            ],
        )
    };
    chain("rpath-chain", "-Wl,--disable-new-dtags");
    chain("runpath-chain", "-Wl,--enable-new-dtags");
    exe("static", "hello.c", &["-static"]);
    root
}

/// A root holding copies of static executables: the host's busybox (busybox-static) and
/// `cc -static` hello; the caller may add more.
fn static_fixture(td: &TestDir) -> PathBuf {
    let root = td.path().join("static-root");
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::copy(common::HOST_BUSYBOX, root.join("bin/busybox")).unwrap();
    symlink("busybox", root.join("bin/sh")).unwrap();
    let src = td.path().join("hello.c");
    write(&src, HELLO_C);
    build(
        td,
        "cc",
        &["-static", "-o", s(&root.join("bin/hello-static")), s(&src)],
    );
    root
}

/// Build `main.go` with `go build`, offline, into `out`.
fn go_build(td: &TestDir, source: &str, out: &Path, cgo: bool) {
    let dir = td.fresh("go");
    write(&dir.join("main.go"), source);
    let mut cmd = td.command("go");
    cmd.args(["build", "-o", s(out), s(&dir.join("main.go"))])
        .env("CGO_ENABLED", if cgo { "1" } else { "0" })
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("GO111MODULE", "off")
        .timeout(Duration::from_secs(600));
    if std::env::var_os("HOME").is_none() {
        let cache = std::env::temp_dir().join("plinth-tests-go");
        cmd.env("GOCACHE", cache.join("cache"))
            .env("GOPATH", cache.join("path"));
    }
    cmd.assert_success();
}

const GO_PLAIN: &str = "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello\") }\n";
const GO_CGO: &str = "package main\n\n// int one(void) { return 1; }\nimport \"C\"\nimport \"fmt\"\n\nfunc main() { fmt.Println(C.one()) }\n";

fn elf_of(path: &Path) -> common::elf_probe::ElfInfo {
    match probe(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())) {
        Probe::Elf(info) => info,
        other => panic!("{}: not a readable ELF file: {other:?}", path.display()),
    }
}

// ---------------------------------------------------------------------------------------
// The oracle on its own

fn status(code: i32) -> Option<ExitStatus> {
    Some(ExitStatus::from_raw(code << 8))
}

/// The classification rules, on the loader's real output as captured on Debian 12.
#[test]
fn oracle_classifies_loader_output() {
    let f = "/c/trixie/usr/sbin/fsck";
    let ok_out = "\tlinux-vdso.so.1 (0x00007f)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
    assert_eq!(
        classify(f, status(0), ok_out, ""),
        Outcome::Accepted { warnings: vec![] }
    );
    assert_eq!(
        classify(f, status(0), "\tstatically linked\n", ""),
        Outcome::Accepted { warnings: vec![] }
    );
    // Two version nodes missing, exit code 0.
    let err = format!(
        "{f}: /lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.38' not found (required by {f})\n\
         {f}: /lib/x86_64-linux-gnu/libmount.so.1: version `MOUNT_2_39' not found (required by {f})\n"
    );
    assert_eq!(
        classify(f, status(0), ok_out, &err),
        Outcome::Refused(vec![
            Refusal::VersionNotFound {
                version: "GLIBC_2.38".into(),
                library: "/lib/x86_64-linux-gnu/libc.so.6".into(),
                required_by: f.into(),
            },
            Refusal::VersionNotFound {
                version: "MOUNT_2_39".into(),
                library: "/lib/x86_64-linux-gnu/libmount.so.1".into(),
                required_by: f.into(),
            },
        ])
    );
    // A missing library, exit code 0.
    let nf = "\tlinux-vdso.so.1 (0x00007f)\n\tlibapt-pkg.so.7.0 => not found\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n";
    assert_eq!(
        classify(f, status(0), nf, ""),
        Outcome::Refused(vec![Refusal::NotFound {
            soname: "libapt-pkg.so.7.0".into()
        }])
    );
    // Warnings only.
    let warn =
        format!("{f}: /r/usr/lib/libx.so.1: no version information available (required by {f})\n");
    assert!(matches!(
        classify(f, status(0), ok_out, &warn),
        Outcome::Accepted { warnings } if warnings.len() == 1
    ));
    let weak =
        format!("{f}: /r/usr/lib/libx.so.1: weak version `X_2' not found (required by {f})\n");
    assert!(matches!(
        classify(f, status(0), ok_out, &weak),
        Outcome::Accepted { warnings } if warnings.len() == 1
    ));
    // Fatal: about a dependency (refused), about the file itself (skipped).
    let dep = format!("{f}: error while loading shared libraries: /lib/x86_64-linux-gnu/libc.so: invalid ELF header\n");
    assert!(matches!(
        classify(f, status(127), "", &dep),
        Outcome::Refused(r) if matches!(r[0], Refusal::Fatal { code: 127, .. })
    ));
    let itself =
        format!("{f}: error while loading shared libraries: {f}: wrong ELF class: ELFCLASS32\n");
    assert!(matches!(
        classify(f, status(127), "", &itself),
        Outcome::Skipped(_)
    ));
    // A crash (a static non-PIE executable) and a time-out are skips.
    assert!(matches!(
        classify(f, Some(ExitStatus::from_raw(libc::SIGSEGV)), "", ""),
        Outcome::Skipped(_)
    ));
    assert!(matches!(classify(f, None, "", ""), Outcome::Skipped(_)));
    // Anything else on stderr is not silently accepted.
    assert!(matches!(
        classify(f, status(0), ok_out, "something new\n"),
        Outcome::Refused(r) if matches!(r[0], Refusal::Unrecognised { .. })
    ));
}

/// The host's own binaries load on the host; a static non-PIE one crashes the loader.
#[test]
fn oracle_accepts_host_binaries() {
    for bin in ["usr/bin/ls", "usr/bin/bash"] {
        let t = trace(Path::new("/"), bin, Mode::Host).expect("an ELF file");
        assert!(
            t.file.probe.as_ref().unwrap().is_dynamic(),
            "/{bin} should be dynamically linked"
        );
        assert_eq!(
            t.outcome,
            Outcome::Accepted { warnings: vec![] },
            "/{bin}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            t.stdout,
            t.stderr
        );
        assert!(t.stdout.contains("libc.so.6 => "), "{}", t.stdout);
    }
    if require(
        common::host_busybox_is_static(),
        "a static /bin/busybox (busybox-static)",
    ) {
        assert!(!elf_of(Path::new("/bin/busybox")).is_dynamic());
        let t = trace(Path::new("/"), "bin/busybox", Mode::Host).unwrap();
        assert!(
            matches!(t.outcome, Outcome::Skipped(_)),
            "the loader on a static non-PIE executable: {}",
            t.outcome
        );
    }
}

/// The oracle on the cc fixture, file by file (see [`loader_fixture`]).
#[test]
fn oracle_on_loader_fixture() {
    if !require_tool("cc") {
        return;
    }
    let td = TestDir::new("oracle-fixture");
    let root = loader_fixture(&td);
    let oracle = run_oracle(&root, Mode::Host);
    eprintln!("{}", oracle.summary());
    let outcome = |rel: &str| {
        oracle
            .outcome(rel)
            .unwrap_or_else(|| panic!("{rel} was not traced:\n{}", oracle.summary()))
            .clone()
    };
    let accepted = |rel: &str| match outcome(rel) {
        Outcome::Accepted { warnings } => warnings,
        o => panic!("{rel}: expected accepted, got {o}"),
    };
    let refused = |rel: &str| match outcome(rel) {
        Outcome::Refused(r) => r,
        o => panic!("{rel}: expected refused, got {o}"),
    };
    assert!(accepted("usr/bin/hello").is_empty());
    assert!(accepted("usr/bin/fix-v1").is_empty());
    assert!(accepted("usr/bin/rpath-chain").is_empty());
    let w = accepted("usr/bin/nover");
    assert!(
        w.len() == 1 && w[0].contains("no version information available"),
        "{w:?}"
    );
    assert!(matches!(
        &refused("usr/bin/fix-v2")[..],
        [Refusal::VersionNotFound { version, .. }] if version == "PLINTHFIX_2"
    ));
    for rel in [
        "usr/bin/gone",
        "usr/bin/gone-transitive",
        "usr/lib/libplinthgone-user.so.1",
    ] {
        assert!(
            matches!(&refused(rel)[..], [Refusal::NotFound { soname }] if soname == "libplinthgone.so.1"),
            "{rel}: {:?}",
            refused(rel)
        );
    }
    // On its own the outer library has no path to the inner one either: only an
    // executable's DT_RPATH lends it one.
    for rel in [
        "usr/bin/runpath-chain",
        "usr/lib/private/libplinthouter.so.1",
    ] {
        assert!(
            matches!(&refused(rel)[..], [Refusal::NotFound { soname }] if soname == "libplinthinner.so.1"),
            "{rel}: {:?}",
            refused(rel)
        );
    }
    // Not dynamically linked: never traced, but found.
    assert!(oracle.outcome("usr/bin/static").is_none());
    assert!(oracle.walk.elf.iter().any(|f| f.rel == "usr/bin/static"));
    assert_eq!(
        oracle.refused_paths().len(),
        6,
        "refused: {:?}",
        oracle.refused_paths()
    );
}

/// The oracle on the Debian roots: on this host, trixie's files need newer glibc and
/// friends; on their own libraries both roots load completely.
#[test]
fn oracle_on_debian_roots() {
    let Some(trixie) = debian_root("trixie") else {
        return;
    };
    let Some(bullseye) = debian_root("bullseye") else {
        return;
    };
    let t = run_oracle(&trixie, Mode::Host);
    eprintln!("{}", t.summary());
    assert!(
        t.refused().count() > 0,
        "the loader of this host accepts every file of trixie? {}",
        t.summary()
    );
    assert!(t.traced.len() > 300, "{}", t.summary());
    if host_codename().as_deref() == Some("bookworm") {
        // glibc 2.36 on the host, 2.41 in trixie: ls uses a 2.38 symbol.
        assert!(
            matches!(t.outcome("usr/bin/ls"), Some(Outcome::Refused(r))
                if r.iter().any(|x| matches!(x, Refusal::VersionNotFound { version, .. } if version == "GLIBC_2.38"))),
            "usr/bin/ls of trixie on bookworm: {:?}",
            t.outcome("usr/bin/ls")
        );
    }
    let b = run_oracle(&bullseye, Mode::Host);
    eprintln!("{}", b.summary());
    assert!(b.traced.len() > 300, "{}", b.summary());

    if !require_root() {
        return;
    }
    for root in [&trixie, &bullseye] {
        let own = run_oracle(root, Mode::Chroot);
        eprintln!("{}", own.summary());
        assert_eq!(
            own.traced.len(),
            if root == &trixie {
                t.traced.len()
            } else {
                b.traced.len()
            }
        );
        assert_eq!(
            own.refused().count() + own.skipped().count(),
            0,
            "a Debian root does not load on its own libraries:\n{}",
            own.summary()
        );
    }
}

fn host_codename() -> Option<String> {
    let text = fs::read_to_string("/etc/os-release").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim_matches('"').to_string())
}

// ---------------------------------------------------------------------------------------
// plinth check against the oracle

/// The cc fixture on the host's libraries: RUNPATH vs RPATH, transitive misses, a
/// library without version information, a shared object, a static executable.
#[test]
fn check_loader_fixture_onto_host_is_exact() {
    if !require_tool("cc") {
        return;
    }
    let td = TestDir::new("check-fixture");
    let root = loader_fixture(&td);
    let oracle = run_oracle(&root, Mode::Host);
    let report = plinth_check(&td, &root, Some(Path::new("/")));
    assert_exact("cc fixture --onto /", &report, &oracle);
    let st = report.expect_file("usr/bin/static");
    assert_eq!(st.verdict, "ok", "a static executable: {}", st.describe());
}

fn exact_onto_host(release: &str) {
    let Some(root) = debian_root(release) else {
        return;
    };
    let oracle = run_oracle(&root, Mode::Host);
    eprintln!("{}", oracle.summary());
    let td = TestDir::new(&format!("check-{release}-onto-host"));
    let report = plinth_check(&td, &root, Some(Path::new("/")));
    assert_exact(&format!("{release} --onto /"), &report, &oracle);
}

/// Debian 11 on this host: removed sonames, GLIBC_PRIVATE, ncurses version nodes.
#[test]
fn check_bullseye_onto_host_is_exact() {
    exact_onto_host("bullseye");
}

/// Debian 13 on this host: GLIBC_2.38 and newer, GLIBCXX_3.4.32, new sonames.
#[test]
fn check_trixie_onto_host_is_exact() {
    exact_onto_host("trixie");
}

fn own_libraries(release: &str) {
    let Some(root) = debian_root(release) else {
        return;
    };
    let td = TestDir::new(&format!("check-{release}-own"));
    let report = plinth_check(&td, &root, None);
    let missing: Vec<String> = report
        .files
        .iter()
        .filter(|f| f.has("missing-library"))
        .map(|f| format!("{}: {}", f.path, f.describe()))
        .collect();
    assert!(
        missing.is_empty(),
        "{release} is a consistent distribution, yet plinth finds missing libraries in it:\n  {}",
        missing.join("\n  ")
    );
    // And exactly what the root's own loader says (it refuses nothing there).
    if require_root() {
        let oracle = run_oracle(&root, Mode::Chroot);
        eprintln!("{}", oracle.summary());
        assert_exact(&format!("{release} on its own libraries"), &report, &oracle);
    }
}

/// `plinth check` of the bullseye root on its own libraries.
#[test]
fn check_bullseye_on_own_libraries() {
    own_libraries("bullseye");
}

/// `plinth check` of the trixie root on its own libraries.
#[test]
fn check_trixie_on_own_libraries() {
    own_libraries("trixie");
}

// ---------------------------------------------------------------------------------------
// Static, musl and Go binaries

/// Static executables need nothing: verdict ok, no problems, on their own root and onto
/// the host.
#[test]
fn check_static_binaries_are_ok() {
    if !require_tool("cc")
        || !require(
            common::host_busybox_is_static(),
            "a static /bin/busybox (Debian package busybox-static)",
        )
    {
        return;
    }
    let td = TestDir::new("check-static");
    let root = static_fixture(&td);
    let mut names = vec!["bin/busybox", "bin/hello-static"];
    if require_tool("go") {
        go_build(&td, GO_PLAIN, &root.join("bin/go-static"), false);
        names.push("bin/go-static");
    }
    for rel in &names {
        let info = elf_of(&root.join(rel));
        assert!(
            !info.is_dynamic() && info.interp.is_none() && info.needed == 0,
            "{rel} should be static: {info:?}"
        );
    }
    for onto in [None, Some(Path::new("/"))] {
        let report = plinth_check(&td, &root, onto);
        for rel in &names {
            let f = report.expect_file(rel);
            assert!(
                f.verdict == "ok" && f.problems.is_empty(),
                "{rel} (onto {onto:?}): {}",
                f.describe()
            );
        }
        assert!(
            report.file("bin/sh").is_none(),
            "symlinks are not listed (bin/sh -> busybox)"
        );
        assert_eq!(report.files.len(), names.len(), "{:?}", report.raw["files"]);
    }
}

/// A musl binary needs musl's loader, `/lib/ld-musl-x86_64.so.1`, which also provides its
/// `libc.so`: without it, `missing-interpreter`; with it, nothing missing.
#[test]
fn check_musl_binary_needs_its_interpreter() {
    if !require_tool("musl-gcc") {
        return;
    }
    let musl_loader = Path::new("/lib/ld-musl-x86_64.so.1");
    if !require(
        musl_loader.exists(),
        "/lib/ld-musl-x86_64.so.1 (Debian package musl)",
    ) {
        return;
    }
    let td = TestDir::new("check-musl");
    let root = td.path().join("musl-root");
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    let src = td.path().join("hello.c");
    write(&src, HELLO_C);
    let hello = root.join("usr/bin/hello");
    build(&td, "musl-gcc", &["-o", s(&hello), s(&src)]);
    let info = elf_of(&hello);
    assert_eq!(info.interp.as_deref(), Some("/lib/ld-musl-x86_64.so.1"));
    assert!(info.is_dynamic());
    // The glibc oracle does not apply to it: it is skipped, not called refused.
    let t = trace(&root, "usr/bin/hello", Mode::Host).unwrap();
    assert!(matches!(t.outcome, Outcome::Skipped(_)), "{}", t.outcome);

    // Without musl's loader.
    let report = plinth_check(&td, &root, None);
    let f = report.expect_file("usr/bin/hello");
    assert!(
        f.has("missing-interpreter") && f.verdict == "fail",
        "a musl binary in a root without /lib/ld-musl-x86_64.so.1: {}",
        f.describe()
    );

    // With it: a copy of the real file (on Debian the path is a symlink into
    // /usr/lib/x86_64-linux-musl).
    fs::create_dir_all(root.join("lib")).unwrap();
    let real = fs::canonicalize(musl_loader).unwrap();
    fs::copy(&real, root.join("lib/ld-musl-x86_64.so.1")).unwrap();
    fs::set_permissions(
        root.join("lib/ld-musl-x86_64.so.1"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let report = plinth_check(&td, &root, None);
    let f = report.expect_file("usr/bin/hello");
    assert!(
        !f.has("missing-interpreter") && !f.has("missing-library") && f.verdict != "fail",
        "a musl binary beside musl's loader (which is its libc.so): {}",
        f.describe()
    );
    report.expect_file("lib/ld-musl-x86_64.so.1");
}

/// Go: `CGO_ENABLED=0` is static (ok anywhere); with cgo it needs glibc's loader and
/// libc.so.6, which the host has and a root of its own does not.
#[test]
fn check_go_binaries() {
    if !require_tool("go") || !require_tool("cc") {
        return;
    }
    let td = TestDir::new("check-go");
    let root = td.path().join("go-root");
    fs::create_dir_all(root.join("app")).unwrap();
    go_build(&td, GO_PLAIN, &root.join("app/static"), false);
    go_build(&td, GO_CGO, &root.join("app/cgo"), true);
    let st = elf_of(&root.join("app/static"));
    assert!(!st.is_dynamic(), "CGO_ENABLED=0: {st:?}");
    let dy = elf_of(&root.join("app/cgo"));
    assert!(
        dy.is_dynamic() && dy.interp.as_deref() == Some(common::oracle::GLIBC_LOADER),
        "cgo: {dy:?}"
    );

    // Onto the host: both load; exactly what the loader says.
    let oracle = run_oracle(&root, Mode::Host);
    eprintln!("{}", oracle.summary());
    assert_eq!(
        oracle.outcome("app/cgo"),
        Some(&Outcome::Accepted { warnings: vec![] })
    );
    let report = plinth_check(&td, &root, Some(Path::new("/")));
    assert_exact("go --onto /", &report, &oracle);
    for rel in ["app/static", "app/cgo"] {
        let f = report.expect_file(rel);
        assert_eq!(f.verdict, "ok", "{rel} onto the host: {}", f.describe());
    }

    // On its own (no libc, no loader in the root).
    let report = plinth_check(&td, &root, None);
    let f = report.expect_file("app/static");
    assert!(
        f.verdict == "ok" && f.problems.is_empty(),
        "{}",
        f.describe()
    );
    let f = report.expect_file("app/cgo");
    assert!(
        f.verdict == "fail" && f.has("missing-library") && f.has("missing-interpreter"),
        "a cgo binary in a root without libc.so.6 and ld-linux: {}",
        f.describe()
    );
    assert!(
        f.problems
            .iter()
            .any(|p| p.kind == "missing-library" && p.detail.contains("libc.so.6")),
        "the missing library is libc.so.6: {}",
        f.describe()
    );
}
