//! Text output: the platform as `key: value` lines; a check as a summary
//! line, the causes of failure grouped with counts, then a table.

use std::fmt::Write;

use crate::check::{Report, Verdict};
use crate::platform::Platform;

/// The platform, one fact per line.
pub fn platform_text(p: &Platform) -> String {
    let mut s = String::new();
    let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    let _ = writeln!(s, "id:             {}", p.id);
    let _ = writeln!(s, "root:           {}", p.root.display());
    let _ = writeln!(s, "architecture:   {}", p.arch);
    let _ = writeln!(
        s,
        "cpu:            {} ({}), {}",
        p.cpu.model, p.cpu.vendor, p.cpu.level
    );
    let _ = writeln!(s, "kernel:         {}", p.kernel.release);
    let _ = writeln!(s, "namespaces:     {}", p.kernel.namespaces.join(" "));
    let _ = writeln!(
        s,
        "features:       overlayfs={} seccomp={} cgroup={}",
        p.kernel.overlayfs, p.kernel.seccomp, p.kernel.cgroup
    );
    let libc = serde_json::to_value(p.libc.family)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    let _ = writeln!(s, "libc:           {libc} {}", opt(&p.libc.version));
    let _ = writeln!(
        s,
        "distribution:   {}",
        p.os.pretty_name
            .clone()
            .or_else(|| p.os.id.clone())
            .unwrap_or_else(|| "-".into())
    );
    let sp = &p.search_path;
    let _ = writeln!(s, "ld.so.conf:     {}", sp.ld_so_conf.join(" "));
    match &sp.cache {
        Some(c) => {
            let _ = writeln!(
                s,
                "ld.so.cache:    {} entries ({:?}), hwcaps: {}",
                c.entries,
                c.format,
                if c.hwcaps_subdirs.is_empty() {
                    "-".into()
                } else {
                    c.hwcaps_subdirs.join(" ")
                }
            );
        }
        None => {
            let _ = writeln!(s, "ld.so.cache:    none ({})", opt(&sp.cache_error));
        }
    }
    let _ = writeln!(s, "system dirs:    {}", sp.system_dirs.join(" "));
    let subdirs: Vec<&str> = sp
        .subdirs
        .iter()
        .filter(|d| !d.is_empty())
        .map(String::as_str)
        .collect();
    let _ = writeln!(s, "subdirectories: {}", subdirs.join(" "));
    let _ = writeln!(s, "$LIB:           {}", sp.dst_lib);
    let _ = writeln!(s, "$PLATFORM:      {}", sp.dst_platform);
    s
}

/// A check report: summary line, causes, table. `color` adds ANSI colours.
pub fn report_text(r: &Report, color: bool) -> String {
    let paint = |code: &str, text: &str| {
        if color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    };
    let mut s = String::new();
    let sm = &r.summary;
    let _ = writeln!(
        s,
        "{} files checked against {} ({}): {} ok, {} warn, {}",
        sm.files,
        r.platform
            .os
            .pretty_name
            .clone()
            .unwrap_or_else(|| r.platform.root.display().to_string()),
        r.platform.id.get(..12).unwrap_or(""),
        sm.ok,
        sm.warn,
        if sm.fail > 0 {
            paint("1;31", &format!("{} fail", sm.fail))
        } else {
            format!("{} fail", sm.fail)
        }
    );
    let causes = r.causes();
    if !causes.is_empty() {
        let _ = writeln!(s, "\nCauses:");
        for c in &causes {
            let mark = if c.kind.fails() {
                paint("31", "✗")
            } else {
                paint("33", "!")
            };
            let _ = writeln!(s, "  {mark} {}", c.summary);
        }
    }
    let rows: Vec<_> = r
        .files
        .iter()
        .filter(|f| f.verdict != Verdict::Ok)
        .collect();
    if !rows.is_empty() {
        let width = rows
            .iter()
            .map(|f| f.path.len())
            .max()
            .unwrap_or(4)
            .clamp(4, 60);
        let _ = writeln!(s, "\n{:<width$}  {:<7}  PROBLEM", "FILE", "VERDICT");
        for f in rows {
            let verdict = match f.verdict {
                Verdict::Fail => paint("31", "fail   "),
                Verdict::Warn => paint("33", "warn   "),
                Verdict::Ok => "ok     ".into(),
            };
            for (i, p) in f.problems.iter().enumerate() {
                let (path, v) = if i == 0 {
                    (f.path.as_str(), verdict.clone())
                } else {
                    ("", "       ".to_string())
                };
                let _ = writeln!(s, "{path:<width$}  {v}  {}: {}", p.kind, p.detail);
            }
        }
    }
    // With --syscalls, the calls themselves for a few files (a whole root
    // has them in the JSON).
    let with_calls: Vec<_> = r.files.iter().filter(|f| f.syscalls.is_some()).collect();
    if !with_calls.is_empty() && with_calls.len() <= 10 {
        let _ = writeln!(s, "\nSystem calls:");
        for f in with_calls {
            let calls = f.syscalls.as_deref().unwrap_or_default();
            let _ = writeln!(s, "  {} ({}): {}", f.path, calls.len(), calls.join(" "));
        }
    }
    s
}
