//! Reading an OCI bundle: `config.json` and the root filesystem it names.
//!
//! On error, the JSON path of the value being read is recovered from the
//! position serde_json reports, so a malformed or non-conforming config is
//! reported with the field at fault (`linux.namespaces[1].type: unknown
//! variant "foo"`). Checks that
//! the spec implies but serde cannot express (the rootfs exists, each
//! namespace type appears once, paths are absolute) happen here too, in
//! the runtime process, before anything is created.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};
use serde::de::DeserializeOwned;

use crate::error::Error;

/// A loaded and validated bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    dir: PathBuf,
    spec: Spec,
    rootfs: PathBuf,
}

impl Bundle {
    /// Reads `DIR/config.json` and checks it.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, Error> {
        let dir = dir.as_ref();
        let dir = std::path::absolute(dir).map_err(|e| Error::io(dir, e))?;
        let config = dir.join("config.json");
        let spec: Spec = read_json(&config)?;
        Self::from_spec(dir, spec, &config)
    }

    fn from_spec(dir: PathBuf, spec: Spec, config: &Path) -> Result<Self, Error> {
        let invalid = |field: &str, message: String| Error::InvalidConfig {
            path: config.to_path_buf(),
            field: field.to_string(),
            message,
        };
        let root = spec
            .root()
            .as_ref()
            .ok_or_else(|| invalid("root", "is required".into()))?;
        let rootfs = if root.path().is_absolute() {
            root.path().clone()
        } else {
            dir.join(root.path())
        };
        match std::fs::metadata(&rootfs) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(invalid(
                    "root.path",
                    format!("{} is not a directory", rootfs.display()),
                ))
            }
            Err(e) => return Err(invalid("root.path", format!("{}: {e}", rootfs.display()))),
        }
        if spec.process().is_none() {
            return Err(invalid(
                "process",
                "is required to create a container".into(),
            ));
        }
        if let Some(process) = spec.process() {
            check_process(process, "process").map_err(|(f, m)| invalid(&f, m))?;
        }
        if let Some(linux) = spec.linux() {
            let mut seen = HashSet::new();
            for (i, ns) in linux.namespaces().iter().flatten().enumerate() {
                if !seen.insert(ns.typ()) {
                    return Err(invalid(
                        &format!("linux.namespaces[{i}].type"),
                        format!("namespace {} is listed twice", ns.typ()),
                    ));
                }
                if let Some(p) = ns.path() {
                    if !p.is_absolute() {
                        return Err(invalid(
                            &format!("linux.namespaces[{i}].path"),
                            format!("{} is not an absolute path", p.display()),
                        ));
                    }
                }
            }
            let has_userns = seen.contains(&LinuxNamespaceType::User);
            let maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty());
            if maps && !has_userns {
                return Err(invalid(
                    "linux.uidMappings",
                    "mappings are set but there is no user namespace".into(),
                ));
            }
        }
        for (i, m) in spec.mounts().iter().flatten().enumerate() {
            if !m.destination().is_absolute() {
                return Err(invalid(
                    &format!("mounts[{i}].destination"),
                    format!("{} is not an absolute path", m.destination().display()),
                ));
            }
        }
        Ok(Bundle { dir, spec, rootfs })
    }

    /// The bundle directory (absolute).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The parsed configuration.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// The root filesystem (absolute).
    pub fn rootfs(&self) -> &Path {
        &self.rootfs
    }
}

/// Checks a process object (config.json's `process` or an exec's
/// process.json); returns the field at fault and why.
pub(crate) fn check_process(process: &Process, prefix: &str) -> Result<(), (String, String)> {
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err((format!("{prefix}.args"), "must name a program".into()));
    }
    if !process.cwd().is_absolute() {
        return Err((
            format!("{prefix}.cwd"),
            format!("{} is not an absolute path", process.cwd().display()),
        ));
    }
    let mut seen = Vec::new();
    for (i, r) in process.rlimits().iter().flatten().enumerate() {
        if seen.contains(&r.typ()) {
            return Err((
                format!("{prefix}.rlimits[{i}]"),
                format!("{:?} is listed twice", r.typ()),
            ));
        }
        seen.push(r.typ());
        if r.soft() > r.hard() {
            return Err((
                format!("{prefix}.rlimits[{i}]"),
                format!("soft limit {} is above hard limit {}", r.soft(), r.hard()),
            ));
        }
    }
    Ok(())
}

/// Reads a JSON file into `T`, naming the field at fault on error.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, Error> {
    let text = std::fs::read(path).map_err(|source| Error::ReadConfig {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&text).map_err(|e| {
        let offset = byte_offset(&text, e.line(), e.column());
        let field = json_path_at(&text, offset);
        Error::InvalidConfig {
            path: path.to_path_buf(),
            field: if field.is_empty() {
                "(document)".into()
            } else {
                field
            },
            message: e.to_string(),
        }
    })
}

/// The byte offset of a 1-based line and column as serde_json reports them.
fn byte_offset(text: &[u8], line: usize, column: usize) -> usize {
    let mut start = 0;
    for _ in 1..line {
        match text[start..].iter().position(|b| *b == b'\n') {
            Some(p) => start += p + 1,
            None => return text.len(),
        }
    }
    (start + column.saturating_sub(1)).min(text.len())
}

/// The JSON path (`linux.namespaces[1].type`) of the value being read at
/// byte `offset` of `text`. A small scanner instead of a path-tracking
/// deserializer: it runs only on error, and costs no code per type.
fn json_path_at(text: &[u8], offset: usize) -> String {
    enum Frame {
        Object(Option<String>),
        Array(usize),
    }
    let mut stack: Vec<Frame> = Vec::new();
    let mut last_string: Option<String> = None;
    let mut i = 0;
    while i < offset.min(text.len()) {
        match text[i] {
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < text.len() && text[i] != b'"' {
                    i += if text[i] == b'\\' { 2 } else { 1 };
                }
                last_string =
                    Some(String::from_utf8_lossy(&text[start..i.min(text.len())]).into_owned());
            }
            b':' => {
                if let Some(Frame::Object(key)) = stack.last_mut() {
                    *key = last_string.take();
                }
            }
            b',' => match stack.last_mut() {
                Some(Frame::Array(n)) => *n += 1,
                Some(Frame::Object(key)) => *key = None,
                None => {}
            },
            b'{' => stack.push(Frame::Object(None)),
            b'[' => stack.push(Frame::Array(0)),
            b'}' | b']' => {
                stack.pop();
            }
            _ => {}
        }
        i += 1;
    }
    let mut path = String::new();
    for frame in &stack {
        match frame {
            Frame::Object(Some(key)) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Frame::Object(None) => {}
            Frame::Array(n) => path.push_str(&format!("[{n}]")),
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, config: &str) -> PathBuf {
        std::fs::create_dir_all(dir.join("rootfs")).unwrap();
        std::fs::write(dir.join("config.json"), config).unwrap();
        dir.to_path_buf()
    }

    const MINIMAL: &str = r#"{"ociVersion":"1.2.0","root":{"path":"rootfs"},
        "process":{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0}},
        "linux":{"namespaces":[{"type":"pid"},{"type":"mount"}]}}"#;

    #[test]
    fn loads_minimal_bundle() {
        let t = tempfile::tempdir().unwrap();
        let b = Bundle::load(write(t.path(), MINIMAL)).unwrap();
        assert_eq!(b.rootfs(), t.path().join("rootfs"));
    }

    #[test]
    fn not_json_names_the_file() {
        let t = tempfile::tempdir().unwrap();
        let err = Bundle::load(write(t.path(), "{not json")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("config.json"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
    }

    #[test]
    fn unknown_namespace_names_the_field() {
        let t = tempfile::tempdir().unwrap();
        let cfg = MINIMAL.replace(r#"{"type":"mount"}"#, r#"{"type":"bogus"}"#);
        let msg = Bundle::load(write(t.path(), &cfg)).unwrap_err().to_string();
        assert!(msg.contains("linux.namespaces[1].type"), "{msg}");
    }

    #[test]
    fn missing_rootfs_names_root_path() {
        let t = tempfile::tempdir().unwrap();
        let cfg = MINIMAL.replace(r#""rootfs""#, r#""nowhere""#);
        let msg = Bundle::load(write(t.path(), &cfg)).unwrap_err().to_string();
        assert!(
            msg.contains("root.path") && msg.contains("nowhere"),
            "{msg}"
        );
    }

    #[test]
    fn json_paths() {
        let t = br#"{"a": {"b": [1, {"c": "x"}]}, "d": 2}"#;
        let at = |needle: &str| {
            let pos = t
                .windows(needle.len())
                .position(|w| w == needle.as_bytes())
                .unwrap();
            json_path_at(t, pos + needle.len())
        };
        assert_eq!(at(r#""x""#), "a.b[1].c");
        assert_eq!(at("1"), "a.b[0]");
        assert_eq!(at("2"), "d");
    }

    #[test]
    fn wrong_type_names_the_field() {
        let t = tempfile::tempdir().unwrap();
        let cfg = MINIMAL.replace(r#""uid":0"#, r#""uid":"root""#);
        let msg = Bundle::load(write(t.path(), &cfg)).unwrap_err().to_string();
        assert!(msg.contains("process.user.uid"), "{msg}");
    }

    #[test]
    fn duplicate_namespace_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let cfg = MINIMAL.replace(r#"{"type":"mount"}"#, r#"{"type":"pid"}"#);
        let msg = Bundle::load(write(t.path(), &cfg)).unwrap_err().to_string();
        assert!(msg.contains("listed twice"), "{msg}");
    }
}
