//! Dynamic string tokens (`$ORIGIN`, `$LIB`, `$PLATFORM`) and the
//! splitting of `DT_RPATH`/`DT_RUNPATH` into directories, as glibc's
//! `_dl_dst_substitute` and `fillin_rpath` do them (for a process that is
//! not set-uid).
//!
//! A token is `$NAME` or `${NAME}`; `$NAME` must not be followed by a
//! letter, digit or `_`. An unknown token is kept literally. A path whose
//! `$ORIGIN` cannot be known is dropped. RPATH components are separated by
//! `:`, trailing slashes are removed and one is added, duplicates within
//! one list are dropped. An empty component means the current directory
//! of the process, which a check cannot know: like any relative
//! directory, it is skipped (documented in docs/check.md).

/// What the tokens expand to for one object.
#[derive(Clone, Copy, Debug)]
pub struct Tokens<'a> {
    /// The directory of the object (`$ORIGIN`), if known.
    pub origin: Option<&'a str>,
    /// `$PLATFORM`.
    pub platform: &'a str,
    /// `$LIB`.
    pub lib: &'a str,
}

/// The length of token `name` at the start of `input` (just after `$`),
/// braces included, or 0.
fn is_dst(input: &[u8], name: &[u8]) -> usize {
    let (curly, body) = match input.first() {
        Some(b'{') => (true, &input[1..]),
        _ => (false, input),
    };
    if !body.starts_with(name) {
        return 0;
    }
    let next = body.get(name.len()).copied().unwrap_or(0);
    if curly && next != b'}' {
        return 0;
    }
    if !curly && (next.is_ascii_alphanumeric() || next == b'_') {
        return 0;
    }
    if curly {
        name.len() + 2
    } else {
        name.len()
    }
}

/// Expands the tokens of one path. Returns the result and whether
/// `$ORIGIN` was used; `None` when the path must be dropped (an unknown
/// origin) or comes out empty.
pub fn expand(input: &str, t: &Tokens<'_>) -> Option<(String, bool)> {
    let b = input.as_bytes();
    let mut out = String::with_capacity(input.len() + 16);
    let mut used_origin = false;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' {
            let rest = &b[i + 1..];
            let (len, repl) = if let n @ 1.. = is_dst(rest, b"ORIGIN") {
                used_origin = true;
                (n, Some(t.origin?))
            } else if let n @ 1.. = is_dst(rest, b"PLATFORM") {
                (n, Some(t.platform))
            } else if let n @ 1.. = is_dst(rest, b"LIB") {
                (n, Some(t.lib))
            } else {
                (0, None)
            };
            match repl {
                Some(r) => {
                    out.push_str(r);
                    i += 1 + len;
                }
                None => {
                    out.push('$');
                    i += 1;
                }
            }
        } else {
            let start = i;
            while i < b.len() && b[i] != b'$' {
                i += 1;
            }
            out.push_str(&input[start..i]);
        }
    }
    if out.is_empty() {
        None
    } else {
        Some((out, used_origin))
    }
}

/// One directory of a search path: the directory (ending in `/`) and
/// whether it came from `$ORIGIN` (then it lives in the object's own root).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchDir {
    /// The directory, ending in `/`.
    pub dir: String,
    /// Whether `$ORIGIN` was expanded into it.
    pub from_origin: bool,
}

/// Splits and expands a `DT_RPATH`/`DT_RUNPATH` string.
pub fn decompose(rpath: &str, t: &Tokens<'_>) -> Vec<SearchDir> {
    let mut dirs: Vec<SearchDir> = Vec::new();
    for comp in rpath.split(':') {
        if comp.is_empty() {
            // The current directory: unknowable here.
            continue;
        }
        let Some((mut dir, from_origin)) = expand(comp, t) else {
            continue;
        };
        while dir.len() > 1 && dir.ends_with('/') {
            dir.pop();
        }
        if !dir.ends_with('/') {
            dir.push('/');
        }
        if !dir.starts_with('/') {
            continue;
        }
        if !dirs.iter().any(|d| d.dir == dir) {
            dirs.push(SearchDir { dir, from_origin });
        }
    }
    dirs
}

/// The directory part of a path as the loader computes `l_origin`: all up
/// to the last `/`, or `/` itself for a file at the top.
pub fn origin_of(path: &str) -> Option<String> {
    let i = path.rfind('/')?;
    Some(if i == 0 {
        "/".to_string()
    } else {
        path[..i].to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Tokens<'static> = Tokens {
        origin: Some("/opt/app/bin"),
        platform: "x86_64",
        lib: "lib/x86_64-linux-gnu",
    };

    #[test]
    fn tokens() {
        assert_eq!(
            expand("$ORIGIN/../lib", &T),
            Some(("/opt/app/bin/../lib".into(), true))
        );
        assert_eq!(
            expand("${ORIGIN}/x:$LIB", &T),
            Some(("/opt/app/bin/x:lib/x86_64-linux-gnu".into(), true))
        );
        assert_eq!(
            expand("/usr/$LIB/$PLATFORM", &T),
            Some(("/usr/lib/x86_64-linux-gnu/x86_64".into(), false))
        );
        // Not a token: followed by an identifier character, or unknown.
        assert_eq!(
            expand("$ORIGINAL/$HOME", &T),
            Some(("$ORIGINAL/$HOME".into(), false))
        );
        assert_eq!(expand("${ORIGIN", &T), Some(("${ORIGIN".into(), false)));
        let unknown = Tokens { origin: None, ..T };
        assert_eq!(expand("$ORIGIN/lib", &unknown), None);
    }

    #[test]
    fn rpath_lists() {
        let dirs = decompose("$ORIGIN/../lib:/usr/lib//::/usr/lib:rel/dir:/", &T);
        let names: Vec<&str> = dirs.iter().map(|d| d.dir.as_str()).collect();
        assert_eq!(names, ["/opt/app/bin/../lib/", "/usr/lib/", "/"]);
        assert!(dirs[0].from_origin && !dirs[1].from_origin);
    }

    #[test]
    fn origins() {
        assert_eq!(origin_of("/usr/bin/ls").as_deref(), Some("/usr/bin"));
        assert_eq!(origin_of("/init").as_deref(), Some("/"));
        assert_eq!(origin_of("ls"), None);
    }
}
