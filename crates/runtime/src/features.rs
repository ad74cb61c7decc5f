//! What `plinth features` reports (runtime-spec `features.md`).

use crate::rootfs::mounts::KNOWN_OPTIONS;

/// The features document of this runtime on this host.
pub fn features() -> serde_json::Value {
    let namespaces = [
        "cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts",
    ];
    let caps: Vec<String> = caps::all().iter().map(|c| c.to_string()).collect();
    let hooks = [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ];
    let layout = crate::cgroups::Layout::detect().ok();
    let (v1, v2) = match &layout {
        Some(crate::cgroups::Layout::Unified(_)) => (false, true),
        Some(crate::cgroups::Layout::Legacy { unified, .. }) => (true, unified.is_some()),
        None => (false, false),
    };
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": crate::OCI_VERSION,
        "hooks": hooks,
        "mountOptions": KNOWN_OPTIONS,
        "linux": {
            "namespaces": namespaces,
            "capabilities": caps,
            "cgroup": {"v1": v1, "v2": v2, "systemd": false, "systemdUser": false, "rdma": false},
            "seccomp": crate::seccomp::features(),
            "apparmor": {"enabled": crate::lsm::apparmor_enabled()},
            "selinux": {"enabled": crate::lsm::selinux_enabled()},
            "intelRdt": {"enabled": false},
            "mountExtensions": {"idmap": {"enabled": false}},
        },
        "annotations": {
            "org.opencontainers.runc.checkpoint.enabled": "false",
            "io.github.plinth.version": env!("CARGO_PKG_VERSION"),
        },
    })
}
