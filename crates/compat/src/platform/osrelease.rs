//! The distribution, from the root's `os-release` (`/etc/os-release`, else
//! `/usr/lib/os-release`).

use serde::Serialize;

use crate::root::RootDir;

/// What os-release says.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OsRelease {
    /// `ID` (`debian`).
    pub id: Option<String>,
    /// `VERSION_ID` (`12`).
    pub version_id: Option<String>,
    /// `VERSION_CODENAME` (`bookworm`).
    pub codename: Option<String>,
    /// `PRETTY_NAME`.
    pub pretty_name: Option<String>,
}

impl OsRelease {
    /// Reads the os-release of `root`; empty when there is none.
    pub fn read(root: &RootDir) -> OsRelease {
        let text = ["/etc/os-release", "/usr/lib/os-release"]
            .iter()
            .find_map(|p| root.read(p, 1 << 16).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        OsRelease::parse(&text)
    }

    /// Parses os-release text (`KEY=value`, values optionally quoted).
    pub fn parse(text: &str) -> OsRelease {
        let mut out = OsRelease::default();
        for line in text.lines() {
            let Some((key, value)) = line.trim().split_once('=') else {
                continue;
            };
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(value)
                .replace("\\\"", "\"");
            let slot = match key {
                "ID" => &mut out.id,
                "VERSION_ID" => &mut out.version_id,
                "VERSION_CODENAME" => &mut out.codename,
                "PRETTY_NAME" => &mut out.pretty_name,
                _ => continue,
            };
            *slot = Some(value);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_debian() {
        let os = OsRelease::parse(
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_ID=\"12\"\nID=debian\nVERSION_CODENAME=bookworm\n",
        );
        assert_eq!(os.id.as_deref(), Some("debian"));
        assert_eq!(os.version_id.as_deref(), Some("12"));
        assert_eq!(os.codename.as_deref(), Some("bookworm"));
    }

    #[test]
    fn falls_back_to_usr_lib() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("usr/lib")).unwrap();
        std::fs::write(t.path().join("usr/lib/os-release"), "ID=alpine\n").unwrap();
        let root = RootDir::open(t.path()).unwrap();
        assert_eq!(OsRelease::read(&root).id.as_deref(), Some("alpine"));
    }
}
