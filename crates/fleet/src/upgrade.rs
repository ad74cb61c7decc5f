//! `plinth upgrade`: after the platform changed, find the running
//! containers whose processes map platform files that are no longer the
//! files on the platform, check their own files against the new platform,
//! and restart them in waves; report the files in containers' upper layers
//! that hide a platform file changed since the container started
//! (shadowed: they will not get the patch).
//!
//! A mapping names its file by path and inode (`/proc/PID/maps`). A
//! package manager replaces a file by renaming a new one over it, so the
//! running process keeps the old inode: the container is affected when the
//! platform's file at that path has another inode now, or is gone. Files
//! the container has in its own upper layer are its own business.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::{Fleet, FleetError};

/// What the scan found in one running container.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Affected {
    /// The container.
    pub name: String,
    /// Platform files its processes map whose platform copy changed.
    pub changed: Vec<String>,
    /// Files of its upper layer hiding a platform file changed since it
    /// started.
    pub shadowed: Vec<String>,
    /// Files of its upper layer that `plinth check` fails on the new
    /// platform, with the first problem of each.
    pub check_failures: Vec<String>,
    /// The platform's packages that changed since it started
    /// (`name OLD → NEW`), from dpkg's database.
    pub packages_changed: Vec<String>,
}

/// What `upgrade` did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct UpgradeReport {
    /// Running containers that map changed platform files.
    pub affected: Vec<Affected>,
    /// Running containers that do not (only shadowed files, if any).
    pub unaffected: Vec<Affected>,
    /// Restarted, in order.
    pub restarted: Vec<String>,
    /// The restart that failed and stopped the rollout.
    pub failed: Option<(String, String)>,
}

/// (path, inode) of every file mapped by `pid`.
fn mapped_files(pid: i32) -> BTreeSet<(String, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut f = l.splitn(6, ' ');
            let (_, _, _, _) = (f.next()?, f.next()?, f.next()?, f.next()?);
            let inode: u64 = f.next()?.parse().ok()?;
            let path = f.next()?.trim_start();
            (inode != 0 && path.starts_with('/')).then(|| {
                let path = path.strip_suffix(" (deleted)").unwrap_or(path);
                (path.to_string(), inode)
            })
        })
        .collect()
}

/// When `pid` started, in seconds since the epoch.
fn started_epoch(pid: i32) -> Option<i64> {
    let (ticks, _) = plinth_runtime::proc_start_time(nix::unistd::Pid::from_raw(pid))?;
    let btime: i64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())?;
    // SAFETY: sysconf has no preconditions.
    #[allow(unsafe_code)]
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    Some(btime + ticks as i64 / hz)
}

/// Regular files of an upper layer, relative, at most `limit`.
fn upper_files(upper: &Path, limit: usize) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let Ok(dir) = std::fs::read_dir(upper.join(&rel)) else {
            continue;
        };
        for e in dir.flatten() {
            let Ok(t) = e.file_type() else { continue };
            let r = rel.join(e.file_name());
            if t.is_dir() {
                stack.push(r);
            } else if t.is_file() || t.is_symlink() {
                out.push(r);
                if out.len() >= limit {
                    return out;
                }
            }
        }
    }
    out
}

impl Fleet {
    /// The scan, without restarting anything.
    pub fn upgrade_scan(&self) -> Result<(Vec<Affected>, Vec<Affected>), FleetError> {
        let mut affected = Vec::new();
        let mut unaffected = Vec::new();
        for rec in self.db.all()? {
            // An image does not change under its containers.
            if matches!(rec.spec.base, crate::Base::Image { .. }) {
                continue;
            }
            let (state, pid) = self.live(&rec);
            let (Some(init), "running") = (pid, state.as_str()) else {
                continue;
            };
            let name = rec.spec.name.clone();
            let dir = self.dir(&name);
            let upper = dir.join("upper");
            let lower = rec.spec.base.lower().to_path_buf();
            let mut a = Affected {
                name: name.clone(),
                ..Default::default()
            };
            let pids = plinth_runtime::container::ps(&self.runtime, &name)
                .map(|p| p.into_iter().map(|p| p.as_raw()).collect())
                .unwrap_or_else(|_| vec![init]);
            if let (Ok(Some(then)), Some((_, now))) =
                (self.db.platform_state(&name), self.packages.state(&lower))
            {
                a.packages_changed = crate::packages::diff(&then, &now);
            }
            let since = started_epoch(init);
            let mut changed = BTreeSet::new();
            for pid in pids {
                for (path, inode) in mapped_files(pid) {
                    let rel = path.trim_start_matches('/');
                    if std::fs::symlink_metadata(upper.join(rel)).is_ok() {
                        continue;
                    }
                    // Another inode, and changed since the container started
                    // (the inode alone misleads when the platform is itself
                    // an overlay: the mapping shows the file underneath).
                    let now = std::fs::metadata(lower.join(rel));
                    let same = match &now {
                        Ok(m) => m.ino() == inode || since.is_some_and(|t| m.ctime() < t),
                        Err(_) => false,
                    };
                    if !same {
                        changed.insert(path);
                    }
                }
            }
            a.changed = changed.into_iter().collect();
            let own_files = upper_files(&upper, 100_000);
            if let Some(since) = since {
                for rel in &own_files {
                    if let Ok(m) = std::fs::symlink_metadata(lower.join(rel)) {
                        if m.ctime() >= since {
                            a.shadowed.push(format!("/{}", rel.display()));
                        }
                    }
                }
                a.shadowed.sort();
            }
            if a.changed.is_empty() {
                unaffected.push(a);
                continue;
            }
            if own_files.is_empty() {
                // Nothing of its own to judge: it runs the platform's files.
                affected.push(a);
                continue;
            }
            let report = plinth_compat::CheckBuilder::new(&upper)
                .onto(&lower)
                .build()
                .and_then(|c| c.run())
                .map_err(|e| FleetError::Runtime(format!("{name}: check: {e}")))?;
            for f in report.files {
                if f.verdict == plinth_compat::Verdict::Fail {
                    let why = f
                        .problems
                        .first()
                        .map(|p| p.detail.clone())
                        .unwrap_or_default();
                    a.check_failures.push(format!("/{}: {why}", f.path));
                }
            }
            affected.push(a);
        }
        Ok((affected, unaffected))
    }

    /// `plinth upgrade`: scan, then (unless `dry_run`) restart the affected
    /// containers `parallel` at a time (SIGTERM, SIGKILL after
    /// `stop_timeout`), each wave checked before the next; the first
    /// container that does not come back stops the rollout.
    pub fn upgrade(
        &self,
        dry_run: bool,
        parallel: usize,
        stop_timeout: Duration,
        report: &mut dyn FnMut(&str),
    ) -> Result<UpgradeReport, FleetError> {
        let (affected, unaffected) = self.upgrade_scan()?;
        let mut out = UpgradeReport {
            affected,
            unaffected,
            ..Default::default()
        };
        if dry_run {
            return Ok(out);
        }
        let names: Vec<String> = out.affected.iter().map(|a| a.name.clone()).collect();
        for wave in names.chunks(parallel.max(1)) {
            // The wave stops together (one grace period for all), then starts
            // together; the supervisor does both.
            let mut failed = None;
            let restarted = self.restart_many(wave, stop_timeout, &mut |name, r| {
                if let Err(e) = r {
                    failed.get_or_insert((name.to_string(), e.to_string()));
                }
            });
            if let Some(f) = failed {
                out.failed = Some(f);
                return Ok(out);
            }
            restarted?;
            if let Some(f) = self.wait_healthy(wave)? {
                out.failed = Some(f);
                return Ok(out);
            }
            for name in wave {
                out.restarted.push(name.clone());
                report(name);
            }
        }
        Ok(out)
    }

    /// Waits until every container of `names` is healthy: its health check
    /// passed, or (without one) it still runs a moment after its start.
    /// The first that is not names the failure.
    fn wait_healthy(&self, names: &[String]) -> Result<Option<(String, String)>, FleetError> {
        let deadline = std::time::Instant::now() + HEALTH_WAIT;
        std::thread::sleep(Duration::from_millis(100));
        loop {
            let mut waiting = false;
            for name in names {
                let rec = self.record(name)?;
                if self.live(&rec).0 != "running" {
                    return Ok(Some((name.clone(), "exited after the restart".into())));
                }
                match (&rec.spec.health, rec.health.as_deref()) {
                    (None, _) | (Some(_), Some("healthy")) => {}
                    (Some(_), Some("unhealthy")) => {
                        return Ok(Some((name.clone(), "unhealthy after the restart".into())))
                    }
                    (Some(_), _) => waiting = true,
                }
            }
            if !waiting {
                return Ok(None);
            }
            if std::time::Instant::now() >= deadline {
                let name = names[0].clone();
                let why = format!("not healthy {} s after the restart", HEALTH_WAIT.as_secs());
                return Ok(Some((name, why)));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// How long `upgrade` waits for a restarted wave to become healthy.
const HEALTH_WAIT: Duration = Duration::from_secs(60);
