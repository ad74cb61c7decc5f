//! A container's directory: `upper/` and `work/` (its OverlayFS layers),
//! `rootfs/` (where the overlay is mounted while it runs), `config.json`
//! (the OCI bundle) and `console.log`; while it runs, `netns` and `userns`
//! (its namespaces, see `netns.rs`) and, during a start only, `lower/`
//! (the idmapped platform root).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use serde_json::{json, Value};

use crate::namespaces::Namespaces;
use crate::spec::{ContainerSpec, Network};
use crate::{io, FleetError};

/// Makes `upper/` (a btrfs subvolume when the state directory is on
/// btrfs, so that it can be snapshotted and sent), `work/` and `rootfs/`;
/// each hidden path becomes an opaque directory of the upper layer, which
/// shows as empty.
pub(crate) fn make_layers(dir: &Path, spec: &ContainerSpec) -> Result<(), FleetError> {
    std::fs::create_dir_all(dir).map_err(io(dir.display().to_string()))?;
    let upper = dir.join("upper");
    if upper.symlink_metadata().is_err() {
        plinth_store::make_layer(&upper)?;
    }
    make_work_dirs(dir)?;
    for hidden in &spec.hide {
        let rel = hidden.strip_prefix("/").unwrap_or(hidden);
        let p = dir.join("upper").join(rel);
        std::fs::create_dir_all(&p).map_err(io(p.display().to_string()))?;
        set_opaque(&p)?;
    }
    Ok(())
}

/// Makes `work/` and `rootfs/` beside an upper layer that exists.
pub(crate) fn make_work_dirs(dir: &Path) -> Result<(), FleetError> {
    for sub in ["work", "rootfs"] {
        let p = dir.join(sub);
        std::fs::create_dir_all(&p).map_err(io(p.display().to_string()))?;
    }
    Ok(())
}

/// `trusted.overlay.opaque=y`: overlayfs shows the directory without what
/// the lower layer has there.
fn set_opaque(path: &Path) -> Result<(), FleetError> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| FleetError::Invalid(format!("{}: contains a NUL byte", path.display())))?;
    let name = c"trusted.overlay.opaque";
    // SAFETY: both strings are NUL-terminated and outlive the call; the
    // value is one byte.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::lsetxattr(c.as_ptr(), name.as_ptr(), b"y".as_ptr().cast(), 1, 0) };
    if rc != 0 {
        return Err(io(format!(
            "{}: set trusted.overlay.opaque",
            path.display()
        ))(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Escapes a path for overlayfs's comma-separated options.
fn overlay_path(p: &Path) -> Result<String, FleetError> {
    let s = p
        .to_str()
        .ok_or_else(|| FleetError::Invalid(format!("{}: not UTF-8", p.display())))?;
    if s.contains(',') || s.contains(':') {
        return Err(FleetError::Invalid(format!(
            "{s}: overlayfs layer paths cannot contain `,` or `:`"
        )));
    }
    Ok(s.to_string())
}

/// Mounts the overlay of the base and the upper layer on `rootfs/`. With
/// a user namespace (`userns`), the base is seen through an idmapped
/// mount of it (attached at `lower/` while the overlay is made).
pub(crate) fn mount_root(
    dir: &Path,
    spec: &ContainerSpec,
    userns: Option<&Path>,
) -> Result<(), FleetError> {
    // With a user namespace, each lower layer is seen through an idmapped
    // mount of its own, stacked in the same order.
    let lowers: Vec<PathBuf> = match userns {
        Some(ns) => {
            let mut at = Vec::new();
            for (i, layer) in spec.base.lowers().into_iter().enumerate() {
                let p = dir.join("lower").join(i.to_string());
                std::fs::create_dir_all(&p).map_err(io(p.display().to_string()))?;
                if let Err(e) = crate::userns::mount_idmapped(layer, ns, &p) {
                    at.iter()
                        .for_each(|p: &PathBuf| crate::userns::unmount_idmapped(p));
                    return Err(e);
                }
                at.push(p);
            }
            at
        }
        None => spec
            .base
            .lowers()
            .into_iter()
            .map(Path::to_path_buf)
            .collect(),
    };
    let lower = lowers
        .iter()
        .map(|p| overlay_path(p))
        .collect::<Result<Vec<_>, _>>()?
        .join(":");
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower,
        overlay_path(&dir.join("upper"))?,
        overlay_path(&dir.join("work"))?
    );
    let target = dir.join("rootfs");
    let mounted = mount(
        Some("overlay"),
        &target,
        Some("overlay"),
        MsFlags::MS_NODEV,
        Some(opts.as_str()),
    )
    .map_err(|e| {
        io(format!("mount overlay on {} ({opts})", target.display()))(std::io::Error::from(e))
    });
    if userns.is_some() {
        lowers
            .iter()
            .for_each(|p| crate::userns::unmount_idmapped(p));
    }
    mounted
}

/// Detaches `rootfs/` if mounted.
pub(crate) fn unmount_root(dir: &Path) {
    let _ = umount2(&dir.join("rootfs"), MntFlags::MNT_DETACH);
}

/// The command must exist in the mounted root (the runtime would only find
/// out after start, with nobody left to tell). It is resolved inside the
/// root, as the container will resolve it.
pub(crate) fn check_command(dir: &Path, spec: &ContainerSpec) -> Result<(), FleetError> {
    let prog = Path::new(&spec.command[0]);
    let root = dir.join("rootfs");
    let found = if prog.is_absolute() {
        plinth_runtime::is_file_in_root(&root, prog)
    } else {
        [
            "/usr/local/sbin",
            "/usr/local/bin",
            "/usr/sbin",
            "/usr/bin",
            "/sbin",
            "/bin",
        ]
        .iter()
        .any(|d| plinth_runtime::is_file_in_root(&root, &Path::new(d).join(prog)))
    };
    if found {
        Ok(())
    } else {
        Err(FleetError::Runtime(format!(
            "{}: cannot start: {}: not found in the container's root",
            spec.name,
            prog.display()
        )))
    }
}

/// Undoes what a start put on the host for the container in `dir`: the
/// root mount, the bridge's veth pair, the network and user namespaces.
pub(crate) fn release(dir: &Path) {
    unmount_root(dir);
    // The idmapped lower layers (`lower/0`, `lower/1`... for an image).
    if let Ok(entries) = std::fs::read_dir(dir.join("lower")) {
        for e in entries.flatten() {
            crate::userns::unmount_idmapped(&e.path());
        }
    }
    crate::userns::unmount_idmapped(&dir.join("lower"));
    let netns = dir.join("netns");
    if netns.exists() {
        crate::bridge::detach(dir);
    }
    crate::netns::remove(&netns);
    crate::netns::remove(&dir.join("userns"));
}

/// The v1 controllers in whose hierarchies a container gets no cgroup of
/// its own (see `plinth_runtime::cgroups::V1_INHERIT_ANNOTATION`): on a
/// host with v1 controllers every cgroup directory costs kernel memory in
/// its hierarchy (a memory cgroup as much as an idle container), so a
/// container has one only where plinth needs it: `devices` (its device
/// policy) for a container without a user namespace of its own, and
/// `memory`, `cpu` and `pids` when it has `--memory`, `--cpus` or
/// `--pids`. In a user namespace the device policy adds nothing: its root
/// cannot make device nodes, and filesystems it mounts open none. Elsewhere its processes are counted
/// with the supervisor's. The freezer is not needed: a container stops
/// when its init, PID 1 of its PID namespace, ends. A hybrid host's
/// cgroup2 hierarchy holds no controller that plinth sets.
pub(crate) fn inherited_v1_controllers(spec: &ContainerSpec, userns: bool) -> Vec<&'static str> {
    let mut list = vec![
        "cgroup2",
        "freezer",
        "cpuset",
        "cpuacct",
        "blkio",
        "net_cls",
        "net_prio",
        "perf_event",
        "hugetlb",
        "rdma",
        "misc",
        "name=systemd",
    ];
    if spec.memory.is_none() {
        list.push("memory");
    }
    if spec.cpus.is_none() {
        list.push("cpu");
    }
    if spec.pids.is_none() {
        list.push("pids");
    }
    if userns {
        list.push("devices");
    }
    list
}

/// Writes `config.json` for the container.
pub(crate) fn write_config(
    dir: &Path,
    spec: &ContainerSpec,
    ns: &Namespaces,
) -> Result<(), FleetError> {
    let template = plinth_runtime::template::default_spec(false);
    let mut c = serde_json::to_value(&template).expect("a spec serializes");
    c["root"] = json!({"path": dir.join("rootfs"), "readonly": false});
    c["hostname"] = json!(spec.hostname);
    let p = &mut c["process"];
    p["terminal"] = json!(false);
    p["args"] = json!(spec.command);
    p["env"] = json!(spec.env);
    p["cwd"] = json!(spec.workdir);
    if let Some(u) = spec.user {
        p["user"] = json!({"uid": u.uid, "gid": u.gid});
    }
    let mounts = c["mounts"].as_array_mut().expect("the template has mounts");
    // A container without limits has no cgroup of its own to show (see
    // `inherited_v1_controllers`), and the supervisor's are none of its
    // business: no cgroup filesystem, and no tmpfs with a directory and a
    // mount per hierarchy to hold it.
    if spec.memory.is_none() && spec.cpus.is_none() && spec.pids.is_none() {
        mounts.retain(|m| m["type"] != "cgroup" && m["destination"] != "/sys/fs/cgroup");
    }
    mounts.push(json!({
        "destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
        "options": ["nosuid", "nodev", "mode=1777"]
    }));
    for b in &spec.binds {
        let mut options = vec!["rbind"];
        if b.readonly {
            options.push("ro");
        }
        mounts.push(json!({
            "destination": b.destination, "type": "bind", "source": b.source,
            "options": options
        }));
    }
    let linux = &mut c["linux"];
    if let Some(list) = linux["namespaces"].as_array_mut() {
        list.retain(|n| n["type"] != "network" && n["type"] != "user");
        match (spec.network, &ns.net) {
            (Network::None | Network::Bridge, Some(path)) => {
                list.push(json!({"type": "network", "path": path}))
            }
            (Network::None | Network::Bridge, None) => list.push(json!({"type": "network"})),
            (Network::Host, _) => {}
        }
        // Joined by path: the runtime reads its maps from the namespace.
        if let Some(path) = ns.user_path() {
            list.push(json!({"type": "user", "path": path}));
        }
        if !list.iter().any(|n| n["type"] == "cgroup") {
            list.push(json!({"type": "cgroup"}));
        }
    }
    linux["cgroupsPath"] = json!(format!("/plinth/{}", spec.name));
    let mut res = match linux["resources"].take() {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    if let Some(m) = spec.memory {
        res.insert("memory".into(), json!({"limit": m}));
    }
    if let Some(n) = spec.pids {
        res.insert("pids".into(), json!({"limit": n}));
    }
    if let Some(cpus) = spec.cpus {
        let period = 100_000u64;
        res.insert(
            "cpu".into(),
            json!({"quota": (cpus * period as f64).round() as i64, "period": period}),
        );
    }
    if !res.is_empty() {
        linux["resources"] = Value::Object(res);
    }
    c["annotations"] = json!({
        plinth_runtime::cgroups::V1_INHERIT_ANNOTATION: inherited_v1_controllers(spec, ns.user_path().is_some()).join(",")
    });
    let path = dir.join("config.json");
    let text = serde_json::to_string_pretty(&c).expect("a config serializes");
    std::fs::write(&path, text).map_err(io(path.display().to_string()))
}
