//! `/etc/ld.so.conf`: the directories `ldconfig` puts in the cache.
//!
//! The loader never reads this file; it is reported by `plinth platform` as
//! the configured search path. Parsed as `ldconfig` parses it: `#` starts a
//! comment, `include PATTERN` reads every file matching the glob (a
//! relative pattern is relative to the including file's directory; matches
//! in sorted order), `hwcap` lines are ignored, anything else is a
//! directory. Everything resolves inside the root.

use crate::root::RootDir;

/// How deep `include` may nest before the rest is ignored (a loop).
const MAX_DEPTH: usize = 16;

/// The directories configured by `conf` (usually `/etc/ld.so.conf`) in
/// `root`, in order, each once.
pub fn read_ld_so_conf(root: &RootDir, conf: &str) -> Vec<String> {
    let mut dirs = Vec::new();
    parse_file(root, conf, 0, &mut dirs);
    dirs
}

fn parse_file(root: &RootDir, path: &str, depth: usize, dirs: &mut Vec<String>) {
    if depth > MAX_DEPTH {
        return;
    }
    let Ok(bytes) = root.read(path, 1 << 20) else {
        return;
    };
    let text = String::from_utf8_lossy(&bytes);
    let here = match path.rfind('/') {
        Some(0) => "/".to_string(),
        Some(i) => path[..i].to_string(),
        None => "/".to_string(),
    };
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let word_end = line.find([' ', '\t']).unwrap_or(line.len());
        let (word, rest) = line.split_at(word_end);
        match word {
            "include" => {
                for pattern in rest.split_whitespace() {
                    let pattern = if pattern.starts_with('/') {
                        pattern.to_string()
                    } else {
                        format!("{}/{pattern}", here.trim_end_matches('/'))
                    };
                    for file in glob(root, &pattern) {
                        parse_file(root, &file, depth + 1, dirs);
                    }
                }
            }
            "hwcap" => {}
            _ => {
                let mut dir = line.to_string();
                while dir.len() > 1 && dir.ends_with('/') {
                    dir.pop();
                }
                if !dirs.contains(&dir) {
                    dirs.push(dir);
                }
            }
        }
    }
}

/// The paths below `root` matching an absolute glob pattern (`*`, `?`,
/// `[...]` within one component), sorted.
pub fn glob(root: &RootDir, pattern: &str) -> Vec<String> {
    let mut found = vec![String::new()];
    for comp in pattern.split('/').filter(|c| !c.is_empty()) {
        let mut next = Vec::new();
        for base in &found {
            if comp.contains(['*', '?', '[']) {
                let dir = if base.is_empty() { "/" } else { base.as_str() };
                for name in root.list_dir(dir).unwrap_or_default() {
                    if !name.starts_with('.') && glob_match(comp.as_bytes(), name.as_bytes()) {
                        next.push(format!("{base}/{name}"));
                    }
                }
            } else {
                next.push(format!("{base}/{comp}"));
            }
        }
        found = next;
        if found.len() > 100_000 {
            break;
        }
    }
    found.retain(|p| !p.is_empty() && root.open_file(p).is_ok());
    found.sort();
    found
}

/// Whether `name` matches the shell pattern `pat` (one path component).
pub fn glob_match(pat: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0usize, 0usize);
    let (mut star_p, mut star_n) = (usize::MAX, 0usize);
    while n < name.len() {
        if p < pat.len() {
            match pat[p] {
                b'*' => {
                    star_p = p;
                    star_n = n;
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    n += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, len)) = class_match(&pat[p..], name[n]) {
                        if matched {
                            p += len;
                            n += 1;
                            continue;
                        }
                    } else if name[n] == b'[' {
                        p += 1;
                        n += 1;
                        continue;
                    }
                }
                c => {
                    if c == name[n] {
                        p += 1;
                        n += 1;
                        continue;
                    }
                }
            }
        }
        if star_p == usize::MAX {
            return false;
        }
        p = star_p + 1;
        star_n += 1;
        n = star_n;
    }
    pat[p..].iter().all(|&c| c == b'*')
}

/// Matches `c` against the bracket expression at the start of `pat`;
/// returns whether it matched and the expression's length, or `None` when
/// the bracket is not closed (then it is a literal `[`).
fn class_match(pat: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(pat.get(i), Some(b'!') | Some(b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < pat.len() {
        if pat[i] == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if i + 2 < pat.len() && pat[i + 1] == b'-' && pat[i + 2] != b']' {
            if pat[i] <= c && c <= pat[i + 2] {
                matched = true;
            }
            i += 3;
        } else {
            if pat[i] == c {
                matched = true;
            }
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn glob_patterns() {
        assert!(glob_match(b"*.conf", b"x86_64-linux-gnu.conf"));
        assert!(!glob_match(b"*.conf", b"x.conf.bak"));
        assert!(glob_match(b"lib?.so", b"liba.so"));
        assert!(glob_match(b"[a-c]*", b"b1"));
        assert!(!glob_match(b"[!a-c]*", b"b1"));
        assert!(glob_match(b"*", b""));
    }

    #[test]
    fn includes_globs_and_comments() {
        let t = tempfile::tempdir().unwrap();
        let etc = t.path().join("etc");
        fs::create_dir_all(etc.join("ld.so.conf.d")).unwrap();
        fs::write(
            etc.join("ld.so.conf"),
            "# comment\ninclude /etc/ld.so.conf.d/*.conf\n/opt/lib/ # trailing\nhwcap 1 x\n",
        )
        .unwrap();
        fs::write(etc.join("ld.so.conf.d/b.conf"), "/usr/local/lib\n").unwrap();
        fs::write(
            etc.join("ld.so.conf.d/a.conf"),
            "/lib/x86_64-linux-gnu\ninclude sub.inc\n",
        )
        .unwrap();
        fs::write(etc.join("ld.so.conf.d/sub.inc"), "/from/relative/include\n").unwrap();
        fs::write(etc.join("ld.so.conf.d/c.conf.disabled"), "/not/me\n").unwrap();
        // A loop: included from itself.
        fs::write(
            etc.join("ld.so.conf.d/z.conf"),
            "include /etc/ld.so.conf.d/z.conf\n",
        )
        .unwrap();
        let root = RootDir::open(t.path()).unwrap();
        assert_eq!(
            read_ld_so_conf(&root, "/etc/ld.so.conf"),
            [
                "/lib/x86_64-linux-gnu",
                "/from/relative/include",
                "/usr/local/lib",
                "/opt/lib"
            ]
        );
    }

    #[test]
    fn host_configuration_reads() {
        let root = RootDir::open(std::path::Path::new("/")).unwrap();
        let dirs = read_ld_so_conf(&root, "/etc/ld.so.conf");
        if std::path::Path::new("/etc/ld.so.conf.d/x86_64-linux-gnu.conf").exists() {
            assert!(
                dirs.iter().any(|d| d == "/usr/lib/x86_64-linux-gnu"),
                "{dirs:?}"
            );
        }
    }
}
