//! The image configuration: the part of an OCI or docker image config
//! (`config` object) that says how to run the image (Env, Cmd, Entrypoint,
//! WorkingDir, User, ExposedPorts, Labels, ...), and the `rootfs.diff_ids`
//! that the layers are verified against.
//!
//! The config JSON is also kept whole in the image record (for export);
//! this module reads the fields plinth uses and ignores the rest, as the
//! image spec asks of readers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// How an image wants to be run: the defaults a container of it starts
/// from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ImageConfig {
    /// `KEY=VALUE` environment entries.
    pub env: Vec<String>,
    /// The entry point; `Cmd` becomes its arguments.
    pub entrypoint: Vec<String>,
    /// The default command (or the entry point's arguments).
    pub cmd: Vec<String>,
    /// The working directory (empty: `/`).
    pub working_dir: String,
    /// `user`, `uid`, `user:group` or `uid:gid` (empty: root).
    pub user: String,
    /// Ports the image documents, as `80/tcp`.
    pub exposed_ports: Vec<String>,
    /// Volumes the image documents.
    pub volumes: Vec<String>,
    /// Free-form labels.
    pub labels: BTreeMap<String, String>,
    /// The signal that stops the container (empty: SIGTERM).
    pub stop_signal: String,
}

impl ImageConfig {
    /// The process to run: the entry point followed by `Cmd`.
    pub fn command(&self) -> Vec<String> {
        self.entrypoint
            .iter()
            .chain(self.cmd.iter())
            .cloned()
            .collect()
    }
}

/// The image config file, as much of it as plinth reads.
#[derive(Debug, Deserialize)]
pub(crate) struct ConfigFile {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub created: Option<String>,
    #[serde(default)]
    pub config: Option<RawConfig>,
    pub rootfs: RootFs,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<Digest>,
}

/// The `config` object with its map-shaped fields as the spec has them.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct RawConfig {
    env: Option<Vec<String>>,
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    working_dir: Option<String>,
    user: Option<String>,
    exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    volumes: Option<BTreeMap<String, serde_json::Value>>,
    labels: Option<BTreeMap<String, String>>,
    stop_signal: Option<String>,
}

impl From<RawConfig> for ImageConfig {
    fn from(r: RawConfig) -> ImageConfig {
        ImageConfig {
            env: r.env.unwrap_or_default(),
            entrypoint: r.entrypoint.unwrap_or_default(),
            cmd: r.cmd.unwrap_or_default(),
            working_dir: r.working_dir.unwrap_or_default(),
            user: r.user.unwrap_or_default(),
            exposed_ports: r.exposed_ports.unwrap_or_default().into_keys().collect(),
            volumes: r.volumes.unwrap_or_default().into_keys().collect(),
            labels: r.labels.unwrap_or_default(),
            stop_signal: r.stop_signal.unwrap_or_default(),
        }
    }
}

/// Parses a config blob; `Err` is serde's message, with the field's path.
pub(crate) fn parse(bytes: &[u8]) -> Result<(ConfigFile, ImageConfig), String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let mut file: ConfigFile =
        serde::Deserialize::deserialize(&mut de).map_err(|e| e.to_string())?;
    if file.rootfs.kind != "layers" {
        return Err(format!(
            "rootfs.type is {:?}, not \"layers\"",
            file.rootfs.kind
        ));
    }
    let config = file.config.take().unwrap_or_default().into();
    Ok((file, config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_run_fields_and_diff_ids() {
        let json = br#"{
            "architecture": "amd64", "os": "linux",
            "config": {"Env": ["PATH=/bin"], "Entrypoint": ["/bin/sh", "-c"], "Cmd": ["echo hi"],
                       "WorkingDir": "/srv", "User": "1000:1000",
                       "ExposedPorts": {"80/tcp": {}, "53/udp": {}}, "Labels": {"a": "b"},
                       "Volumes": {"/data": {}}, "StopSignal": "SIGINT", "Unknown": 1},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]},
            "history": []
        }"#;
        let (file, c) = parse(json).unwrap();
        assert_eq!(file.rootfs.diff_ids.len(), 1);
        assert_eq!(c.command(), ["/bin/sh", "-c", "echo hi"]);
        assert_eq!(c.exposed_ports, ["53/udp", "80/tcp"]);
        assert_eq!(c.working_dir, "/srv");
        assert_eq!(c.user, "1000:1000");
        assert_eq!(c.volumes, ["/data"]);
        assert_eq!(c.labels["a"], "b");
    }

    #[test]
    fn null_fields_are_empty_and_bad_digests_refused() {
        let ok = br#"{"config": {"Env": null, "Cmd": null}, "rootfs": {"type": "layers", "diff_ids": []}}"#;
        assert_eq!(parse(ok).unwrap().1, ImageConfig::default());
        let bad = br#"{"rootfs": {"type": "layers", "diff_ids": ["sha256:../../x"]}}"#;
        assert!(parse(bad).unwrap_err().contains("not a sha256 digest"));
    }
}
