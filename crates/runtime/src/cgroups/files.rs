//! Reading and writing cgroup control files.
//!
//! Every access to a control file in the cgroups module goes through these
//! helpers, so that each failure becomes a [`CgroupError`] naming the file
//! (and, for writes, the value the kernel refused). A value is written with
//! one `write(2)`, because the kernel parses each write on its own. Parsers
//! for the common file shapes (flat keyed `key value` lines, nested keyed
//! `8:0 rbytes=1 wbytes=2` lines) live here too; what the keys mean is left
//! to the v1, v2 and statistics code.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use super::CgroupError;

/// One value to write into one control file of a cgroup directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Write {
    /// The control file's name, relative to the cgroup directory.
    pub(crate) file: String,
    /// The exact bytes to write.
    pub(crate) value: String,
    /// Succeed without writing when the file does not exist (used where the
    /// value only restates the kernel's default, like `memory.swap.max` =
    /// `max` on a host without swap accounting).
    pub(crate) missing_ok: bool,
}

impl Write {
    /// A write that must succeed.
    pub(crate) fn new(file: impl Into<String>, value: impl Into<String>) -> Self {
        Write {
            file: file.into(),
            value: value.into(),
            missing_ok: false,
        }
    }

    /// A write that is skipped when the file does not exist.
    pub(crate) fn missing_ok(file: impl Into<String>, value: impl Into<String>) -> Self {
        Write {
            missing_ok: true,
            ..Write::new(file, value)
        }
    }
}

/// Writes `value` to `dir/file` with a single `write(2)`.
pub(crate) fn write(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    let path = dir.join(file);
    write_path(&path, value).map_err(|source| CgroupError::Write {
        path,
        value: value.to_owned(),
        source,
    })
}

/// Like [`write()`], but returns the raw I/O error so that callers can react
/// to a particular errno (EINVAL ordering problems, ENOENT).
pub(crate) fn try_write(dir: &Path, file: &str, value: &str) -> io::Result<()> {
    write_path(&dir.join(file), value)
}

fn write_path(path: &Path, value: &str) -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).open(path)?;
    let n = f.write(value.as_bytes())?;
    if n != value.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("short write ({n} of {} bytes)", value.len()),
        ));
    }
    Ok(())
}

/// Performs a list of writes in order.
pub(crate) fn write_all(dir: &Path, writes: &[Write]) -> Result<(), CgroupError> {
    for w in writes {
        match try_write(dir, &w.file, &w.value) {
            Ok(()) => {}
            Err(e) if w.missing_ok && e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(CgroupError::Write {
                    path: dir.join(&w.file),
                    value: w.value.clone(),
                    source,
                })
            }
        }
    }
    Ok(())
}

/// Reads `dir/file` as text.
pub(crate) fn read(dir: &Path, file: &str) -> Result<String, CgroupError> {
    let path = dir.join(file);
    std::fs::read_to_string(&path).map_err(|source| CgroupError::Io { path, source })
}

/// Reads `dir/file`, or `None` when it does not exist.
pub(crate) fn read_opt(dir: &Path, file: &str) -> Result<Option<String>, CgroupError> {
    let path = dir.join(file);
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CgroupError::Io { path, source }),
    }
}

/// Reads a file that holds one number (`max` reads as `u64::MAX`), or
/// `None` when it does not exist.
pub(crate) fn read_u64_opt(dir: &Path, file: &str) -> Result<Option<u64>, CgroupError> {
    match read_opt(dir, file)? {
        None => Ok(None),
        Some(text) => parse_u64(&text)
            .map(Some)
            .ok_or_else(|| parse_error(dir.join(file), &text, "expected a number or \"max\"")),
    }
}

/// Parses one number (`max` is `u64::MAX`; a negative v1 "unlimited" such
/// as `-1` is too).
pub(crate) fn parse_u64(text: &str) -> Option<u64> {
    let t = text.trim();
    if t == "max" {
        return Some(u64::MAX);
    }
    if let Ok(v) = t.parse::<u64>() {
        return Some(v);
    }
    t.parse::<i64>().ok().filter(|v| *v < 0).map(|_| u64::MAX)
}

/// Parses a flat keyed file (`key value` per line); lines that do not hold
/// a number are skipped.
pub(crate) fn parse_flat_keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let mut it = line.split_whitespace();
            let key = it.next()?;
            let value = parse_u64(it.next()?)?;
            Some((key.to_owned(), value))
        })
        .collect()
}

/// One line of a nested keyed file: `8:0 rbytes=1 wbytes=2`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeviceLine {
    pub(crate) major: u64,
    pub(crate) minor: u64,
    /// The `key=value` pairs, in file order.
    pub(crate) pairs: Vec<(String, u64)>,
}

/// Parses a nested keyed file (`8:0 rbytes=1 wbytes=2` per line).
pub(crate) fn parse_nested_keyed(text: &str) -> Vec<DeviceLine> {
    text.lines()
        .filter_map(|line| {
            let mut it = line.split_whitespace();
            let (major, minor) = parse_dev(it.next()?)?;
            let pairs = it
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    Some((k.to_owned(), parse_u64(v)?))
                })
                .collect();
            Some(DeviceLine {
                major,
                minor,
                pairs,
            })
        })
        .collect()
}

/// Parses `major:minor`.
pub(crate) fn parse_dev(text: &str) -> Option<(u64, u64)> {
    let (a, b) = text.split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

pub(crate) fn parse_error(path: PathBuf, content: &str, reason: &'static str) -> CgroupError {
    CgroupError::Parse {
        path,
        content: content.trim().chars().take(200).collect(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_u64("42\n"), Some(42));
        assert_eq!(parse_u64("max\n"), Some(u64::MAX));
        assert_eq!(parse_u64("-1"), Some(u64::MAX));
        assert_eq!(parse_u64("x"), None);
    }

    #[test]
    fn keyed_files() {
        let flat = parse_flat_keyed("usage_usec 10\nuser_usec 7\nbogus\nname x\n");
        assert_eq!(flat.get("usage_usec"), Some(&10));
        assert_eq!(flat.get("user_usec"), Some(&7));
        assert_eq!(flat.len(), 2);

        let nested = parse_nested_keyed("8:0 rbytes=4096 wbytes=0 rios=1\n253:1 rbytes=1\n");
        assert_eq!(nested.len(), 2);
        assert_eq!(nested[0].major, 8);
        assert_eq!(nested[0].pairs[0], ("rbytes".to_owned(), 4096));
        assert_eq!(nested[1].minor, 1);
    }

    #[test]
    fn write_reports_file_and_value() {
        let dir = tempfile::tempdir().unwrap();
        let err = write(dir.path(), "missing.file", "42").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("missing.file") && msg.contains("\"42\""),
            "{msg}"
        );
        std::fs::write(dir.path().join("x"), "").unwrap();
        write(dir.path(), "x", "7").unwrap();
        assert_eq!(read(dir.path(), "x").unwrap(), "7");
        write_all(dir.path(), &[Write::missing_ok("nope", "max")]).unwrap();
        assert!(write_all(dir.path(), &[Write::new("nope", "max")]).is_err());
    }
}
