//! Container logs: each container's output goes straight to its
//! `console.log` (opened for appending by the runtime process, so the
//! container's writes need nobody in between and survive the supervisor's
//! restarts). The supervisor rotates it in place, and `plinth logs` reads
//! and follows it.
//!
//! Rotation copies the head of the file to `console.log.1` (older ones move
//! up to `.N`) and then removes that head from the live file with
//! `fallocate(FALLOC_FL_COLLAPSE_RANGE)`: the container keeps writing at the
//! end and no line it writes meanwhile is lost. Filesystems without
//! collapse (tmpfs, btrfs) get copy-and-truncate, which can lose what is
//! written between the two steps.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::{fallocate, FallocateFlags};

/// When the supervisor rotates a container's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogRotation {
    /// Rotate once the live file is larger (bytes).
    pub max_size: u64,
    /// Rotated files kept (`console.log.1` to `.N`).
    pub keep: u32,
}

impl Default for LogRotation {
    fn default() -> LogRotation {
        LogRotation {
            max_size: 10 << 20,
            keep: 3,
        }
    }
}

fn numbered(log: &Path, n: u32) -> PathBuf {
    let mut s = log.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

impl LogRotation {
    /// Rotates `log` if it is over the size; says whether it did.
    pub fn check(&self, log: &Path) -> io::Result<bool> {
        match std::fs::metadata(log) {
            Ok(m) if m.len() > self.max_size && self.keep > 0 => {}
            Ok(_) => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        }
        self.rotate(log)?;
        Ok(true)
    }

    fn rotate(&self, log: &Path) -> io::Result<()> {
        let mut live = OpenOptions::new().read(true).write(true).open(log)?;
        let meta = live.metadata()?;
        let size = meta.len();
        let block = meta.blksize().max(512);
        // Collapse needs whole blocks and must leave the file's end.
        let head = if size > block {
            (size - 1) / block * block
        } else {
            0
        };
        let tmp = numbered(log, 0);
        let mut copy = File::create(&tmp)?;
        let collapsed = head > 0 && {
            io::copy(&mut (&mut live).take(head), &mut copy)?;
            fallocate(
                &live,
                FallocateFlags::FALLOC_FL_COLLAPSE_RANGE,
                0,
                head as i64,
            )
            .is_ok()
        };
        if !collapsed {
            copy.set_len(0)?;
            live.seek(SeekFrom::Start(0))?;
            io::copy(&mut live, &mut copy)?;
            live.set_len(0)?;
        }
        drop(copy);
        for n in (1..self.keep).rev() {
            match std::fs::rename(numbered(log, n), numbered(log, n + 1)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        std::fs::rename(&tmp, numbered(log, 1))
    }
}

/// The log files of a container, oldest first: `console.log.N` ..
/// `console.log.1`, `console.log`.
fn generations(log: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = (1..1000)
        .map(|n| numbered(log, n))
        .take_while(|p| p.exists())
        .collect();
    out.reverse();
    out.push(log.to_path_buf());
    out
}

/// `plinth logs`: writes the log (the rotated files first), or its last
/// `tail` lines, to `out`; with `follow`, keeps writing what is appended,
/// across rotations, until `out` fails.
pub fn follow(
    log: &Path,
    tail: Option<usize>,
    follow: bool,
    out: &mut dyn Write,
) -> io::Result<()> {
    let files = generations(log);
    let mut offset = 0u64;
    match tail {
        Some(n) => {
            let mut all = Vec::new();
            for f in &files {
                if let Ok(mut file) = File::open(f) {
                    file.read_to_end(&mut all)?;
                }
            }
            offset = std::fs::metadata(log).map(|m| m.len()).unwrap_or(0);
            let body = all.strip_suffix(b"\n").unwrap_or(&all);
            let start = if n == 0 {
                all.len()
            } else {
                body.iter()
                    .enumerate()
                    .rev()
                    .filter(|(_, b)| **b == b'\n')
                    .nth(n - 1)
                    .map(|(i, _)| i + 1)
                    .unwrap_or(0)
            };
            out.write_all(&all[start..])?;
        }
        None => {
            for f in &files {
                if let Ok(mut file) = File::open(f) {
                    let n = io::copy(&mut file, out)?;
                    if f == log {
                        offset = n;
                    }
                }
            }
        }
    }
    out.flush()?;
    if !follow {
        return Ok(());
    }
    let first = numbered(log, 1);
    let mut rotated = std::fs::metadata(&first).map(|m| m.ino()).ok();
    loop {
        let size = std::fs::metadata(log).map(|m| m.len()).unwrap_or(0);
        if size < offset {
            // Rotated: the head now in `.1` left the live file.
            let now = std::fs::metadata(&first).ok();
            match now {
                Some(m) if Some(m.ino()) != rotated => {
                    rotated = Some(m.ino());
                    offset = offset.saturating_sub(m.len());
                }
                _ => {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            }
        }
        if size > offset {
            let mut f = File::open(log)?;
            f.seek(SeekFrom::Start(offset))?;
            offset += io::copy(&mut f.take(size - offset), out)?;
            out.flush()?;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_every_byte_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("console.log");
        let mut w = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let rot = LogRotation {
            max_size: 20_000,
            keep: 2,
        };
        let mut written = Vec::new();
        for i in 0..6000 {
            let line = format!("line {i}\n");
            w.write_all(line.as_bytes()).unwrap();
            written.extend_from_slice(line.as_bytes());
            if i % 500 == 0 {
                rot.check(&log).unwrap();
            }
        }
        assert!(numbered(&log, 2).exists() && !numbered(&log, 3).exists());
        // The kept generations are a suffix of what was written, whole.
        let mut kept = Vec::new();
        follow(&log, None, false, &mut kept).unwrap();
        assert!(written.ends_with(&kept), "rotation lost or reordered bytes");
        assert!(kept.len() > 20_000);
        let mut last = Vec::new();
        follow(&log, Some(2), false, &mut last).unwrap();
        assert_eq!(last, b"line 5998\nline 5999\n");
    }
}
