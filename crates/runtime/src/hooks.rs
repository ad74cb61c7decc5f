//! Lifecycle hooks: prestart, createRuntime, createContainer,
//! startContainer, poststart and poststop.
//!
//! A hook is spawned with its own `args` and `env`, the container's state
//! JSON on its stdin, and killed (SIGKILL) when its `timeout` runs out.
//! Whoever calls [`run`] picks the namespace: the runtime process for
//! prestart, createRuntime, poststart and poststop; the container's init
//! for createContainer (before pivot_root) and startContainer (after).

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

use crate::error::Error;

/// The hook kinds, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Prestart => "prestart",
            Kind::CreateRuntime => "createRuntime",
            Kind::CreateContainer => "createContainer",
            Kind::StartContainer => "startContainer",
            Kind::Poststart => "poststart",
            Kind::Poststop => "poststop",
        }
    }
}

/// Runs `hooks` in order; the first failure stops the run.
pub(crate) fn run(kind: Kind, hooks: &[Hook], state: &serde_json::Value) -> Result<(), Error> {
    if hooks.is_empty() {
        return Ok(());
    }
    let state = serde_json::to_vec(state).expect("state serialises");
    for hook in hooks {
        run_one(kind, hook, &state)?;
    }
    Ok(())
}

fn run_one(kind: Kind, hook: &Hook, state: &[u8]) -> Result<(), Error> {
    let fail = |reason: String| Error::Hook {
        kind: kind.name(),
        path: hook.path().clone(),
        reason,
    };
    let mut cmd = Command::new(hook.path());
    if let Some([argv0, rest @ ..]) = hook.args().as_deref() {
        cmd.arg0(argv0).args(rest);
    }
    cmd.env_clear();
    for kv in hook.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| fail(format!("cannot start: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook may exit without reading its stdin: EPIPE is not an error.
        let _ = stdin.write_all(state);
    }
    let deadline = hook
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(fail(format!("exited with {status}"))),
            Ok(None) => {}
            Err(e) => return Err(fail(e.to_string())),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(fail(format!(
                "timed out after {}s",
                hook.timeout().unwrap_or_default()
            )));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::HookBuilder;

    fn sh(script: &str, timeout: Option<i64>) -> Hook {
        let mut b = HookBuilder::default()
            .path("/bin/sh")
            .args(vec!["sh".into(), "-c".into(), script.into()])
            .env(vec!["HOOKVAR=x".into()]);
        if let Some(t) = timeout {
            b = b.timeout(t);
        }
        b.build().unwrap()
    }

    #[test]
    fn state_reaches_stdin_and_env_is_set() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("out");
        let h = sh(
            &format!("cat > {} && echo $HOOKVAR >> {0}", out.display()),
            None,
        );
        run(Kind::Poststop, &[h], &serde_json::json!({"id": "c1"})).unwrap();
        let got = std::fs::read_to_string(out).unwrap();
        assert!(
            got.starts_with(r#"{"id":"c1"}"#) && got.ends_with("x\n"),
            "{got}"
        );
    }

    #[test]
    fn failure_and_timeout_are_reported() {
        let e = run(
            Kind::Prestart,
            &[sh("exit 3", None)],
            &serde_json::json!({}),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("prestart") && e.to_string().contains("3"),
            "{e}"
        );
        let start = Instant::now();
        let e = run(
            Kind::Poststart,
            &[sh("sleep 10", Some(1))],
            &serde_json::json!({}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("timed out"), "{e}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
