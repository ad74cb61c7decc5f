//! The attributes of the container's process, set right before exec:
//! rlimits, personality, user and groups, capabilities, umask and
//! no_new_privs. Shared by the container's init and by `exec`.

use std::collections::HashSet;
use std::str::FromStr;

use caps::{CapSet, Capability};
use nix::errno::Errno;
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
use oci_spec::runtime::{
    LinuxCapabilities, LinuxPersonality, LinuxPersonalityDomain, PosixRlimit, PosixRlimitType,
    Process,
};

use crate::error::{InitError, InitStage};
use crate::sys;

fn resource(t: PosixRlimitType) -> Option<Resource> {
    use PosixRlimitType as T;
    Some(match t {
        T::RlimitCpu => Resource::RLIMIT_CPU,
        T::RlimitFsize => Resource::RLIMIT_FSIZE,
        T::RlimitData => Resource::RLIMIT_DATA,
        T::RlimitStack => Resource::RLIMIT_STACK,
        T::RlimitCore => Resource::RLIMIT_CORE,
        T::RlimitRss => Resource::RLIMIT_RSS,
        T::RlimitNproc => Resource::RLIMIT_NPROC,
        T::RlimitNofile => Resource::RLIMIT_NOFILE,
        T::RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        T::RlimitAs => Resource::RLIMIT_AS,
        T::RlimitLocks => Resource::RLIMIT_LOCKS,
        T::RlimitSigpending => Resource::RLIMIT_SIGPENDING,
        T::RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        T::RlimitNice => Resource::RLIMIT_NICE,
        T::RlimitRtprio => Resource::RLIMIT_RTPRIO,
        T::RlimitRttime => Resource::RLIMIT_RTTIME,
        #[allow(unreachable_patterns)]
        _ => return None,
    })
}

fn rlimit_name(r: &PosixRlimit) -> String {
    serde_json::to_value(r.typ())
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_else(|| format!("{:?}", r.typ()))
}

/// Checks `rlimits` against the calling process's hard limits: raising a
/// hard limit needs CAP_SYS_RESOURCE. Run in the runtime process so the
/// error comes before anything is created.
pub(crate) fn check_rlimits(rlimits: &[PosixRlimit], field: &str) -> Result<(), (String, String)> {
    let can_raise =
        caps::has_cap(None, CapSet::Effective, Capability::CAP_SYS_RESOURCE).unwrap_or(false);
    if can_raise {
        return Ok(());
    }
    for (i, r) in rlimits.iter().enumerate() {
        let Some(res) = resource(r.typ()) else {
            continue;
        };
        let Ok((_, hard)) = getrlimit(res) else {
            continue;
        };
        if hard != libc::RLIM_INFINITY && r.hard() > hard {
            return Err((
                format!("{field}[{i}]"),
                format!(
                    "{} hard limit {} is above the current hard limit {hard}, and raising it needs CAP_SYS_RESOURCE, which plinth does not have",
                    rlimit_name(r),
                    r.hard()
                ),
            ));
        }
    }
    Ok(())
}

/// Applies `process.rlimits`.
pub(crate) fn set_rlimits(rlimits: &[PosixRlimit]) -> Result<(), InitError> {
    for r in rlimits {
        let Some(res) = resource(r.typ()) else {
            return Err(InitError::reason(
                InitStage::Rlimit,
                rlimit_name(r),
                "unknown on this system",
            ));
        };
        setrlimit(res, r.soft(), r.hard()).map_err(|e| {
            let mut err = InitError::new(InitStage::Rlimit, rlimit_name(r), e);
            if e == Errno::EPERM {
                err.reason = Some(format!(
                    "raising the hard limit to {} needs CAP_SYS_RESOURCE",
                    r.hard()
                ));
            }
            err
        })?;
    }
    Ok(())
}

/// Applies `linux.personality`.
pub(crate) fn set_personality(p: &LinuxPersonality) -> Result<(), InitError> {
    let domain = match p.domain() {
        LinuxPersonalityDomain::PerLinux => 0x0000,
        LinuxPersonalityDomain::PerLinux32 => 0x0008,
    };
    let mut flags = 0;
    for f in p.flags().iter().flatten() {
        flags |= match f.as_str() {
            "ADDR_NO_RANDOMIZE" => 0x0040000,
            "ADDR_COMPAT_LAYOUT" => 0x0200000,
            "ADDR_LIMIT_32BIT" => 0x0800000,
            "ADDR_LIMIT_3GB" => 0x8000000,
            "MMAP_PAGE_ZERO" => 0x0100000,
            "READ_IMPLIES_EXEC" => 0x0400000,
            "SHORT_INODE" => 0x1000000,
            "STICKY_TIMEOUTS" => 0x4000000,
            "UNAME26" => 0x0020000,
            "WHOLE_SECONDS" => 0x2000000,
            "FDPIC_FUNCPTRS" => 0x0080000,
            other => {
                return Err(InitError::reason(
                    InitStage::Personality,
                    format!("linux.personality.flags {other:?}"),
                    "unknown flag",
                ))
            }
        };
    }
    sys::set_personality(domain | flags)
        .map_err(|e| InitError::new(InitStage::Personality, "linux.personality", e))
}

fn to_caps(list: Option<&HashSet<oci_spec::runtime::Capability>>) -> HashSet<Capability> {
    list.into_iter()
        .flatten()
        .filter_map(|c| {
            let name = serde_json::to_value(c).ok()?;
            Capability::from_str(name.as_str()?).ok()
        })
        .collect()
}

/// Drops every capability not in `bounding` from the bounding set. Done
/// before changing uid, while CAP_SETPCAP is still held.
pub(crate) fn drop_bounding(capabilities: Option<&LinuxCapabilities>) -> Result<(), InitError> {
    let bounding = to_caps(capabilities.and_then(|c| c.bounding().as_ref()));
    for cap in caps::all() {
        if bounding.contains(&cap) {
            continue;
        }
        match caps::drop(None, CapSet::Bounding, cap) {
            Ok(()) => {}
            // Capabilities this kernel does not know are not there to drop.
            Err(_)
                if !caps::runtime::procfs_all_supported(None).is_ok_and(|s| s.contains(&cap)) => {}
            Err(e) => {
                return Err(InitError::reason(
                    InitStage::Capabilities,
                    format!("bounding {cap}"),
                    e.to_string(),
                ))
            }
        }
    }
    Ok(())
}

/// Sets the effective, permitted, inheritable and ambient sets (after the
/// uid change).
pub(crate) fn set_capabilities(capabilities: Option<&LinuxCapabilities>) -> Result<(), InitError> {
    let get = |f: fn(&LinuxCapabilities) -> &Option<HashSet<oci_spec::runtime::Capability>>| {
        to_caps(capabilities.and_then(|c| f(c).as_ref()))
    };
    let err = |set: &str, e: caps::errors::CapsError| {
        InitError::reason(InitStage::Capabilities, set.to_string(), e.to_string())
    };
    let permitted = get(LinuxCapabilities::permitted);
    let effective = get(LinuxCapabilities::effective);
    let inheritable = get(LinuxCapabilities::inheritable);
    let ambient = get(LinuxCapabilities::ambient);
    // The kernel checks each set against the others: inheritable while the
    // permitted set is still whole, then effective (which must stay within
    // permitted), then permitted.
    caps::set(None, CapSet::Inheritable, &inheritable).map_err(|e| err("inheritable", e))?;
    let current = caps::read(None, CapSet::Permitted).map_err(|e| err("permitted", e))?;
    let effective_now: HashSet<Capability> = effective.intersection(&current).copied().collect();
    caps::set(None, CapSet::Effective, &effective_now).map_err(|e| err("effective", e))?;
    caps::set(None, CapSet::Permitted, &permitted).map_err(|e| err("permitted", e))?;
    if effective_now != effective {
        caps::set(None, CapSet::Effective, &effective).map_err(|e| err("effective", e))?;
    }
    caps::clear(None, CapSet::Ambient).map_err(|e| err("ambient", e))?;
    for cap in ambient {
        // A capability can be ambient only if it is permitted and
        // inheritable; runc ignores the others, and so do we.
        if permitted.contains(&cap) && inheritable.contains(&cap) {
            caps::raise(None, CapSet::Ambient, cap).map_err(|e| err("ambient", e))?;
        }
    }
    Ok(())
}

/// Switches to `process.user` keeping the permitted capabilities, then
/// installs the configured capability sets.
pub(crate) fn set_user(process: &Process, in_userns: bool) -> Result<(), InitError> {
    let user = process.user();
    let uid = Uid::from_raw(user.uid());
    let gid = Gid::from_raw(user.gid());
    let groups: Vec<Gid> = user
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| Gid::from_raw(*g))
        .collect();
    let caps_cfg = process.capabilities().as_ref();
    drop_bounding(caps_cfg)?;
    sys::set_keep_caps().map_err(|e| InitError::new(InitStage::Capabilities, "keepcaps", e))?;
    match setgroups(&groups) {
        Ok(()) => {}
        // With `setgroups` denied in the user namespace an empty list is
        // what the process has anyway.
        Err(Errno::EPERM) if in_userns && groups.is_empty() => {}
        Err(e) => {
            return Err(InitError::new(
                InitStage::Groups,
                format!("process.user.additionalGids {:?}", user.additional_gids()),
                e,
            ))
        }
    }
    setresgid(gid, gid, gid)
        .map_err(|e| InitError::new(InitStage::User, format!("gid {gid}"), e))?;
    setresuid(uid, uid, uid)
        .map_err(|e| InitError::new(InitStage::User, format!("uid {uid}"), e))?;
    nix::sys::prctl::set_keepcaps(false)
        .map_err(|e| InitError::new(InitStage::Capabilities, "keepcaps", e))?;
    set_capabilities(caps_cfg)?;
    // The spec leaves the default to the runtime; 0022 is runc's.
    let mask = user.umask().unwrap_or(0o022);
    crate::sys::set_umask(mask)
        .map_err(|e| InitError::new(InitStage::User, format!("process.user.umask {mask:#o}"), e))
}
