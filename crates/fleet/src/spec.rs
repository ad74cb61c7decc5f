//! What a container is made of: the options of `plinth new`, validated.

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::FleetError;

/// The platform root a container's lower layer is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Base {
    /// The host's own `/` (its root filesystem, without the mounts on it).
    Host,
    /// A directory holding a distribution's root.
    Dir(PathBuf),
    /// An imported image (`plinth image import`): its layer directories,
    /// bottom first, stacked as the overlay's lower layers (filled in by
    /// [`crate::Fleet::create`] from the image store).
    Image {
        /// The image's name.
        name: String,
        /// Its layer directories, bottom first.
        layers: Vec<PathBuf>,
    },
}

impl Base {
    /// `host` or `dir:PATH`.
    pub fn parse(s: &str) -> Result<Base, FleetError> {
        if s == "host" {
            return Ok(Base::Host);
        }
        if let Some(p) = s.strip_prefix("dir:") {
            let path = Path::new(p);
            if !path.is_absolute() {
                return Err(FleetError::Invalid(format!(
                    "--base {s}: the directory must be an absolute path"
                )));
            }
            if !path.join("bin").exists() && !path.join("usr/bin").is_dir() {
                return Err(FleetError::Invalid(format!(
                    "--base {s}: {p} does not hold a root filesystem (no bin or usr/bin)"
                )));
            }
            return Ok(Base::Dir(path.to_path_buf()));
        }
        if let Some(name) = s.strip_prefix("image:") {
            if name.is_empty() {
                return Err(FleetError::Invalid(format!(
                    "--base {s}: expected image:NAME"
                )));
            }
            return Ok(Base::Image {
                name: name.to_string(),
                layers: Vec::new(),
            });
        }
        Err(FleetError::Invalid(format!(
            "--base {s}: expected host or dir:PATH"
        )))
    }

    /// The platform root: for an image, its bottom layer (the one that
    /// holds the base system).
    pub fn lower(&self) -> &Path {
        match self {
            Base::Host => Path::new("/"),
            Base::Dir(p) => p,
            Base::Image { layers, .. } => layers.first().map_or(Path::new("/nonexistent"), |p| p),
        }
    }

    /// The overlay's lower layers, top first.
    pub fn lowers(&self) -> Vec<&Path> {
        match self {
            Base::Image { layers, .. } => layers.iter().rev().map(PathBuf::as_path).collect(),
            _ => vec![self.lower()],
        }
    }

    /// As written on the command line.
    pub fn display(&self) -> String {
        match self {
            Base::Host => "host".into(),
            Base::Dir(p) => format!("dir:{}", p.display()),
            Base::Image { name, .. } => format!("image:{name}"),
        }
    }
}

/// The network a container gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// Its own network namespace.
    None,
    /// The host's.
    Host,
    /// Its own network namespace with `eth0` on the host's plinth bridge.
    Bridge,
}

impl Network {
    /// `none`, `host` or `bridge`.
    pub fn parse(s: &str) -> Result<Network, FleetError> {
        match s {
            "none" => Ok(Network::None),
            "host" => Ok(Network::Host),
            "bridge" => Ok(Network::Bridge),
            _ => Err(FleetError::Invalid(format!(
                "network {s}: expected none, host or bridge"
            ))),
        }
    }
}

/// Whose user ids a container runs with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserNs {
    /// The host's (its root is the host's root). Containers recorded
    /// before user namespaces existed read back as this.
    #[default]
    Host,
    /// A user namespace of its own with a range of host ids of its own.
    Private,
}

impl UserNs {
    /// `private` or `host`.
    pub fn parse(s: &str) -> Result<UserNs, FleetError> {
        match s {
            "private" => Ok(UserNs::Private),
            "host" => Ok(UserNs::Host),
            _ => Err(FleetError::Invalid(format!(
                "userns {s}: expected private or host"
            ))),
        }
    }
}

/// The user the container's process runs as (ids inside the container).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The user id.
    pub uid: u32,
    /// The group id.
    pub gid: u32,
}

impl User {
    /// `UID[:GID]`, numeric; the group defaults to the user id.
    pub fn parse(s: &str) -> Result<User, FleetError> {
        let bad = || FleetError::Invalid(format!("user {s}: expected UID or UID:GID (numbers)"));
        let (u, g) = match s.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (s, None),
        };
        let uid: u32 = u.parse().map_err(|_| bad())?;
        let gid: u32 = g
            .map(str::parse)
            .transpose()
            .map_err(|_| bad())?
            .unwrap_or(uid);
        Ok(User { uid, gid })
    }
}

/// What to do when the container's command ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    /// Leave it stopped.
    #[default]
    No,
    /// Start it again when it fails.
    OnFailure,
    /// Start it again whenever it ends.
    Always,
}

impl Restart {
    /// `no`, `on-failure` or `always`.
    pub fn parse(s: &str) -> Result<Restart, FleetError> {
        match s {
            "no" => Ok(Restart::No),
            "on-failure" => Ok(Restart::OnFailure),
            "always" => Ok(Restart::Always),
            _ => Err(FleetError::Invalid(format!(
                "restart {s}: expected no, on-failure or always"
            ))),
        }
    }
}

/// A bind mount from the host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bind {
    /// Host path.
    pub source: PathBuf,
    /// Path in the container.
    pub destination: PathBuf,
    /// Read-only.
    pub readonly: bool,
}

impl Bind {
    /// `SRC:DST[:ro]`.
    pub fn parse(s: &str) -> Result<Bind, FleetError> {
        let bad = |why: &str| FleetError::Invalid(format!("--bind {s}: {why}"));
        let parts: Vec<&str> = s.split(':').collect();
        let (src, dst, ro) = match parts[..] {
            [a, b] => (a, b, false),
            [a, b, "ro"] => (a, b, true),
            [a, b, "rw"] => (a, b, false),
            _ => return Err(bad("expected SRC:DST or SRC:DST:ro")),
        };
        let (src, dst) = (PathBuf::from(src), PathBuf::from(dst));
        if !src.is_absolute() || !dst.is_absolute() {
            return Err(bad("both paths must be absolute"));
        }
        if !src.exists() {
            return Err(bad("the source does not exist"));
        }
        check_inside(&dst).map_err(|_| bad("the destination may not contain `..`"))?;
        Ok(Bind {
            source: src,
            destination: dst,
            readonly: ro,
        })
    }
}

/// A command run in the container (`/bin/sh -c COMMAND`) to tell whether
/// it works: exit status 0 is healthy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// The shell command.
    pub command: String,
    /// Seconds between checks once it is healthy (while it starts, checks
    /// run every quarter of a second).
    pub interval: u64,
}

/// Everything `plinth new` records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// The container's name.
    pub name: String,
    /// The platform root.
    pub base: Base,
    /// The program and its arguments.
    pub command: Vec<String>,
    /// Paths that are empty in the container (opaque directories of the
    /// upper layer).
    pub hide: Vec<PathBuf>,
    /// Host directories or files mounted in.
    pub binds: Vec<Bind>,
    /// `KEY=VALUE`.
    pub env: Vec<String>,
    /// The working directory.
    pub workdir: PathBuf,
    /// The hostname (default: the name).
    pub hostname: String,
    /// The network.
    pub network: Network,
    /// Memory limit in bytes.
    pub memory: Option<i64>,
    /// CPUs (fractional: `0.5`).
    pub cpus: Option<f64>,
    /// Process limit.
    pub pids: Option<i64>,
    /// The restart policy, applied by the supervisor.
    #[serde(default)]
    pub restart: Restart,
    /// The health check, run by the supervisor.
    #[serde(default)]
    pub health: Option<HealthCheck>,
    /// Its user namespace.
    #[serde(default)]
    pub userns: UserNs,
    /// The user its process runs as (default: root).
    #[serde(default)]
    pub user: Option<User>,
}

/// The paths hidden when `--hide` is not given.
pub const DEFAULT_HIDE: [&str; 4] = ["/root", "/home", "/tmp", "/var/tmp"];

impl ContainerSpec {
    /// A spec with defaults for `name`, `base` and `command`.
    pub fn new(name: &str, base: Base, command: Vec<String>) -> Result<ContainerSpec, FleetError> {
        check_name(name)?;
        // An image's own command is the default of its containers.
        if command.is_empty() && !matches!(base, Base::Image { .. }) {
            return Err(FleetError::Invalid(format!(
                "{name}: no command (give it after --)"
            )));
        }
        Ok(ContainerSpec {
            name: name.to_string(),
            base,
            command,
            hide: DEFAULT_HIDE.iter().map(PathBuf::from).collect(),
            binds: Vec::new(),
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
            workdir: PathBuf::from("/"),
            hostname: name.to_string(),
            network: Network::None,
            memory: None,
            cpus: None,
            pids: None,
            restart: Restart::No,
            health: None,
            userns: UserNs::Private,
            user: None,
        })
    }

    /// Checks the fields that `new` did not build itself.
    pub fn validate(&self) -> Result<(), FleetError> {
        check_name(&self.name)?;
        for h in &self.hide {
            if !h.is_absolute() || check_inside(h).is_err() || h == Path::new("/") {
                return Err(FleetError::Invalid(format!(
                    "--hide {}: must be an absolute path below /, without `..`",
                    h.display()
                )));
            }
        }
        for e in &self.env {
            if !e.contains('=') {
                return Err(FleetError::Invalid(format!(
                    "--env {e}: expected KEY=VALUE"
                )));
            }
        }
        if !self.workdir.is_absolute() {
            return Err(FleetError::Invalid(format!(
                "--workdir {}: must be absolute",
                self.workdir.display()
            )));
        }
        if let (UserNs::Private, Some(u)) = (self.userns, self.user) {
            let size = crate::userns::RANGE_SIZE;
            if u.uid >= size || u.gid >= size {
                return Err(FleetError::Invalid(format!(
                    "--user {}:{}: a private user namespace maps ids 0 to {}",
                    u.uid,
                    u.gid,
                    size - 1
                )));
            }
        }
        if let Some(c) = self.cpus {
            if !(c > 0.0 && c <= 1024.0) {
                return Err(FleetError::Invalid(format!("--cpus {c}: must be above 0")));
            }
        }
        Ok(())
    }
}

/// Names are used as directory names and container ids.
fn check_name(name: &str) -> Result<(), FleetError> {
    if plinth_store::is_plain_name(name) {
        Ok(())
    } else {
        Err(FleetError::Invalid(format!(
            "{name:?}: a name is 1 to 64 letters, digits, `-`, `_` or `.`, not starting with `.` or `-`"
        )))
    }
}

fn check_inside(p: &Path) -> Result<(), ()> {
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        Err(())
    } else {
        Ok(())
    }
}

/// `64M`, `1G`, `512k`, `1048576` → bytes.
pub fn parse_size(s: &str) -> Result<i64, FleetError> {
    let bad = || FleetError::Invalid(format!("--memory {s}: expected a size like 64M or 1G"));
    let (num, mult) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1i64 << 10),
        Some('m' | 'M') => (&s[..s.len() - 1], 1 << 20),
        Some('g' | 'G') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    let n: i64 = num.parse().map_err(|_| bad())?;
    if n <= 0 {
        return Err(bad());
    }
    n.checked_mul(mult).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing() {
        assert_eq!(Base::parse("host").unwrap(), Base::Host);
        assert!(Base::parse("dir:relative").is_err());
        assert!(Base::parse("dir:/no/such/root").is_err());
        assert!(matches!(Base::parse("image:x").unwrap(), Base::Image { name, .. } if name == "x"));
        assert!(Base::parse("image:").is_err());
        assert_eq!(parse_size("64M").unwrap(), 64 << 20);
        assert!(parse_size("0").is_err() && parse_size("x").is_err());
        assert!(Bind::parse("/tmp:/mnt:ro").unwrap().readonly);
        assert!(Bind::parse("/tmp:/../x").is_err());
        assert!(Bind::parse("tmp:/x").is_err());
        assert!(ContainerSpec::new("../x", Base::Host, vec!["sh".into()]).is_err());
        assert!(ContainerSpec::new("web-1", Base::Host, vec![]).is_err());
        let mut s = ContainerSpec::new("web-1", Base::Host, vec!["sh".into()]).unwrap();
        s.validate().unwrap();
        s.hide.push("/".into());
        assert!(s.validate().is_err());
        assert_eq!(s.userns, UserNs::Private);
        assert_eq!(Network::parse("bridge").unwrap(), Network::Bridge);
        assert!(Network::parse("nat")
            .unwrap_err()
            .to_string()
            .contains("network nat"));
        assert_eq!(UserNs::parse("host").unwrap(), UserNs::Host);
        assert!(UserNs::parse("auto").is_err());
        assert_eq!(
            User::parse("1000").unwrap(),
            User {
                uid: 1000,
                gid: 1000
            }
        );
        assert_eq!(User::parse("1000:5").unwrap(), User { uid: 1000, gid: 5 });
        for bad in ["", "x", "1000:", "1000:x", "-1", "1:2:3"] {
            assert!(User::parse(bad).is_err(), "{bad}");
        }
        // A record written before user namespaces reads back with the host's.
        let mut v = serde_json::to_value(&s).unwrap();
        v.as_object_mut().unwrap().remove("userns");
        v.as_object_mut().unwrap().remove("user");
        let old: ContainerSpec = serde_json::from_value(v).unwrap();
        assert_eq!((old.userns, old.user), (UserNs::Host, None));
    }
}
