//! Linux security modules: AppArmor profiles and SELinux labels.
//!
//! `process.apparmorProfile` and `process.selinuxLabel` are applied to the
//! container's program at exec through `/proc/self/attr/.../exec`, when
//! the host runs that module. On a host without it, the runtime warns
//! once (in the runtime process, before forking) and goes on, as runc.

use std::path::Path;

use oci_spec::runtime::Process;

use crate::error::{InitError, InitStage};

/// Whether the host runs AppArmor.
pub(crate) fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y")
        && Path::new("/sys/kernel/security/apparmor").exists()
}

/// Whether the host runs SELinux.
pub(crate) fn selinux_enabled() -> bool {
    Path::new("/sys/fs/selinux/enforce").exists()
}

/// What to apply, decided once in the runtime process.
#[derive(Debug, Default, Clone)]
pub(crate) struct Labels {
    apparmor: Option<String>,
    selinux: Option<String>,
}

impl Labels {
    /// The labels of `process` that this host can apply; warns about the
    /// others.
    pub(crate) fn for_process(process: &Process) -> Self {
        let mut labels = Labels::default();
        if let Some(p) = process
            .apparmor_profile()
            .as_ref()
            .filter(|p| !p.is_empty())
        {
            if apparmor_enabled() {
                labels.apparmor = Some(p.clone());
            } else {
                tracing::warn!(
                    "process.apparmorProfile {p:?} ignored: AppArmor is not enabled on this host"
                );
            }
        }
        if let Some(l) = process.selinux_label().as_ref().filter(|l| !l.is_empty()) {
            if selinux_enabled() {
                labels.selinux = Some(l.clone());
            } else {
                tracing::warn!(
                    "process.selinuxLabel {l:?} ignored: SELinux is not enabled on this host"
                );
            }
        }
        labels
    }

    /// Arms the labels for the next execve of the calling process.
    pub(crate) fn apply_on_exec(&self) -> Result<(), InitError> {
        if let Some(p) = &self.apparmor {
            let data = format!("exec {p}");
            let new = Path::new("/proc/self/attr/apparmor/exec");
            let path = if new.exists() {
                new
            } else {
                Path::new("/proc/self/attr/exec")
            };
            std::fs::write(path, data).map_err(|e| {
                InitError::reason(InitStage::Apparmor, format!("profile {p}"), e.to_string())
            })?;
        }
        if let Some(l) = &self.selinux {
            std::fs::write("/proc/self/attr/exec", l).map_err(|e| {
                InitError::reason(InitStage::Selinux, format!("label {l}"), e.to_string())
            })?;
        }
        Ok(())
    }
}
