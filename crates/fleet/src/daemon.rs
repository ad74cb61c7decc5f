//! `plinth daemon`: one supervisor for every container of the host.
//!
//! It is the child subreaper of every container init it starts (each start
//! is a `plinth run --detach` child whose init is re-parented to the
//! supervisor when that process exits), so there is no shim per container:
//! the supervisor holds a pidfd per init and nothing else. One thread runs
//! an epoll loop over the API socket ([`crate::api`]), a signalfd and those
//! pidfds, with timers for stop grace periods, restart backoff, health
//! checks and log rotation.
//!
//! Desired state (`desired`: what the operator asked for) and observed
//! state (`state`, `pid`, `exit_code`, `health`) are written to the SQLite
//! database as they change. Killing the supervisor (even with SIGKILL)
//! loses nothing: containers keep running, and the next supervisor
//! reconciles at start: it re-adopts running inits (a pidfd does not need
//! a parent), waits for `plinth run` processes that were starting a
//! container, cleans up after containers that ended while nobody watched
//! and restarts them by their policy, and removes what a crash left half
//! made.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use serde_json::{json, Value};

use crate::api::{self, Batch, Outcome};
use crate::logs::LogRotation;
use crate::spec::Restart;
use crate::{io, sys, Fleet, FleetError};

/// How `plinth daemon` runs.
#[derive(Clone, Debug)]
pub struct DaemonOptions {
    /// The API socket (`/run/plinth/plinth.sock`).
    pub socket: PathBuf,
    /// When container logs rotate.
    pub logs: LogRotation,
    /// `plinth run` processes at once while starting many containers.
    pub parallel: usize,
}

/// A restart waits this long after the first failure, doubling up to
/// [`BACKOFF_MAX`]; a container that ran for [`BACKOFF_RESET`] starts
/// over from the first step.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
const BACKOFF_RESET: Duration = Duration::from_secs(10);
/// Log sizes are looked at, and stray children reaped, this often.
const TICK: Duration = Duration::from_secs(2);
/// Health checks while a container is `starting`, and their time limit.
const HEALTH_START_EVERY: Duration = Duration::from_millis(250);
const HEALTH_TIMEOUT: Duration = Duration::from_secs(10);
/// Consecutive failed checks before `unhealthy`.
const HEALTH_RETRIES: u32 = 3;

const LISTEN: u64 = 1;
const SIGNALS: u64 = 2;
/// Tokens at or above this are connections (even) and processes (odd).
const FIRST_TOKEN: u64 = 16;

/// A process the supervisor waits for.
struct Watched {
    pid: i32,
    fd: OwnedFd,
    token: u64,
}

/// Where a container is in its life, as the supervisor sees it.
enum Phase {
    /// Not running, nothing under way.
    Idle,
    /// Waiting for a runtime slot.
    Queued,
    /// Its `plinth run` process runs.
    Starting(Watched),
    /// Its init runs.
    Running { init: Watched, since: Instant },
    /// Signalled; SIGKILL at `kill_at`.
    Stopping {
        init: Watched,
        kill_at: Instant,
        killed: bool,
    },
}

/// What to do once a stop is done.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Then {
    Rest,
    Start,
    Remove,
}

struct Health {
    command: String,
    interval: Duration,
    next: Instant,
    run: Option<(Watched, Instant)>,
    failures: u32,
    verdict: &'static str,
}

struct Unit {
    phase: Phase,
    /// Batches waiting for the operation under way.
    waiters: Vec<u64>,
    then: Then,
    /// A stop asked for while it was starting (grace period).
    stop_after_start: Option<Duration>,
    restart_at: Option<Instant>,
    backoff: u32,
    health: Option<Health>,
}

impl Unit {
    fn new() -> Unit {
        Unit {
            phase: Phase::Idle,
            waiters: Vec::new(),
            then: Then::Rest,
            stop_after_start: None,
            restart_at: None,
            backoff: 0,
            health: None,
        }
    }
}

/// What a process token stands for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Runtime,
    Init,
    Health,
}

struct Conn {
    stream: UnixStream,
    input: Vec<u8>,
    output: Vec<u8>,
    /// The answer is being written; close when it is out.
    answered: bool,
}

/// A batch request waiting for its containers.
struct Job {
    conn: u64,
    verb: &'static str,
    results: BTreeMap<String, Outcome>,
    pending: usize,
}

struct Supervisor {
    fleet: Fleet,
    opts: DaemonOptions,
    epoll: Epoll,
    listener: UnixListener,
    /// The device and inode of the socket file `listener` is bound to.
    socket_id: (u64, u64),
    /// The data directory's lock file, locked for as long as this runs.
    lock: Flock<File>,
    signals: SignalFd,
    units: HashMap<String, Unit>,
    procs: HashMap<u64, (String, Role)>,
    conns: HashMap<u64, Conn>,
    jobs: HashMap<u64, Job>,
    queue: VecDeque<String>,
    starting: usize,
    next_token: u64,
    next_tick: Instant,
    quit: bool,
}

/// The file a supervisor locks for as long as it runs, and writes its pid
/// to once it holds the lock.
const LOCK_FILE: &str = "daemon.lock";

/// Whether a supervisor runs, or is starting, for the state directory
/// `state_dir`: the lock file names a live pid, or is still empty (the
/// moment between taking the lock and writing the pid). Read only: trying
/// the lock could make a supervisor that starts at that moment give up.
pub fn supervisor_runs(state_dir: &Path) -> bool {
    match std::fs::read_to_string(state_dir.join(LOCK_FILE)) {
        Ok(text) if text.trim().is_empty() => true,
        Ok(text) => text
            .trim()
            .parse::<i32>()
            .is_ok_and(|pid| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()),
        Err(_) => false,
    }
}

/// Which file `m` describes: its device and inode.
fn file_id(m: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}

/// Binds the API socket at `socket` (mode 0600), non-blocking; returns it
/// with the device and inode of its file.
fn bind(socket: &Path) -> Result<(UnixListener, (u64, u64)), FleetError> {
    let err = || io(socket.display().to_string());
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir.display().to_string()))?;
    }
    let listener = UnixListener::bind(socket).map_err(err())?;
    std::fs::set_permissions(socket, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(err())?;
    listener.set_nonblocking(true).map_err(err())?;
    let m = std::fs::symlink_metadata(socket).map_err(err())?;
    Ok((listener, file_id(&m)))
}

/// Runs the supervisor until SIGTERM or SIGINT (the containers keep
/// running; the next supervisor adopts them). Refuses to run beside
/// another supervisor of the same state directory.
pub fn serve(fleet: Fleet, opts: DaemonOptions) -> Result<(), FleetError> {
    let lock_path = fleet.state_dir().join(LOCK_FILE);
    let lock_file = File::options()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&lock_path)
        .map_err(io(lock_path.display().to_string()))?;
    let mut lock = match Flock::lock(lock_file, FlockArg::LockExclusiveNonblock) {
        Ok(l) => l,
        Err((mut f, Errno::EWOULDBLOCK)) => {
            let mut pid = String::new();
            let _ = f.read_to_string(&mut pid);
            return Err(FleetError::Daemon(format!(
                "another supervisor runs for {} (pid {})",
                fleet.state_dir().display(),
                pid.trim()
            )));
        }
        Err((_, e)) => return Err(io(lock_path.display().to_string())(e.into())),
    };
    lock.set_len(0)
        .and_then(|()| write!(lock, "{}", std::process::id()))
        .map_err(io(lock_path.display().to_string()))?;

    // A pidfd per container: 1024 descriptors, a common soft limit, would
    // cap the fleet. The hard limit needs no privilege.
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| io("prctl(PR_SET_CHILD_SUBREAPER)")(e.into()))?;
    let mut mask = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        mask.add(s);
    }
    mask.thread_block()
        .map_err(|e| io("sigprocmask")(e.into()))?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(|e| io("signalfd")(e.into()))?;

    // The lock is held, so no other supervisor of this data directory runs:
    // one that answers there serves another data directory behind the same
    // --root, and keeps its socket. A file nobody answers on is a dead
    // supervisor's.
    if UnixStream::connect(&opts.socket).is_ok() {
        return Err(FleetError::Daemon(format!(
            "a supervisor of another data directory answers on {}: give each data directory its own --root",
            opts.socket.display()
        )));
    }
    let _ = std::fs::remove_file(&opts.socket);
    let (listener, socket_id) = bind(&opts.socket)?;

    let epoll =
        Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(|e| io("epoll_create")(e.into()))?;
    epoll
        .add(&listener, EpollEvent::new(EpollFlags::EPOLLIN, LISTEN))
        .and_then(|()| epoll.add(&signals, EpollEvent::new(EpollFlags::EPOLLIN, SIGNALS)))
        .map_err(|e| io("epoll_ctl")(e.into()))?;

    let mut sup = Supervisor {
        fleet,
        opts,
        epoll,
        listener,
        socket_id,
        lock,
        signals,
        units: HashMap::new(),
        procs: HashMap::new(),
        conns: HashMap::new(),
        jobs: HashMap::new(),
        queue: VecDeque::new(),
        starting: 0,
        next_token: FIRST_TOKEN,
        next_tick: Instant::now(),
        quit: false,
    };
    sup.reconcile()?;
    let run = sup.run();
    // Ours only: another supervisor may have bound a socket there since.
    if std::fs::symlink_metadata(&sup.opts.socket).is_ok_and(|m| file_id(&m) == sup.socket_id) {
        let _ = std::fs::remove_file(&sup.opts.socket);
    }
    run
}

impl Supervisor {
    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    fn unit(&mut self, name: &str) -> &mut Unit {
        self.units.entry(name.to_string()).or_insert_with(Unit::new)
    }

    /// Watches `pid` (which must be alive or a zombie).
    fn watch(&mut self, pid: i32, name: &str, role: Role) -> io::Result<Watched> {
        let fd = sys::pidfd_open(pid)?;
        let token = self.token();
        self.epoll
            .add(&fd, EpollEvent::new(EpollFlags::EPOLLIN, token))
            .map_err(io::Error::from)?;
        self.procs.insert(token, (name.to_string(), role));
        Ok(Watched { pid, fd, token })
    }

    /// Forgets a watched process that ended and gives its exit code: from
    /// the wait status for the supervisor's own children, from the kernel's
    /// record of an unreaped process otherwise (an init adopted from an
    /// earlier supervisor); `None` when nobody can tell any more.
    fn reap(&mut self, w: Watched) -> Option<i32> {
        let _ = self.epoll.delete(&w.fd);
        self.procs.remove(&w.token);
        match waitid(Id::PIDFd(w.fd.as_fd()), WaitPidFlag::WEXITED) {
            Ok(WaitStatus::Exited(_, code)) => Some(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => Some(128 + sig as i32),
            _ => sys::zombie_exit_code(w.pid),
        }
    }

    // ---- start-up ------------------------------------------------------

    /// Brings what the database says in line with what runs.
    fn reconcile(&mut self) -> Result<(), FleetError> {
        let records = self.fleet.db.all()?;
        let known: std::collections::HashSet<String> =
            records.iter().map(|r| r.spec.name.clone()).collect();
        // Directories a crash left without a record (between `new` making
        // the layers and recording them). A receive's staging directory is
        // its own while that receive runs.
        self.fleet.sweep_stale_receives();
        if let Ok(dir) = std::fs::read_dir(self.fleet.state_dir.join("containers")) {
            for e in dir.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if plinth_store::work_owner(&e.file_name()).is_some() {
                    continue;
                }
                if !known.contains(&name) {
                    let _ = self.fleet.clear_run(&name);
                    if !mounted_below(&e.path()) {
                        let _ = std::fs::remove_dir_all(e.path());
                    }
                }
            }
        }
        for rec in records {
            let name = rec.spec.name.clone();
            self.unit(&name).health = rec.spec.health.as_ref().map(|h| Health {
                command: h.command.clone(),
                interval: Duration::from_secs(h.interval.max(1)),
                next: Instant::now(),
                run: None,
                failures: 0,
                verdict: "starting",
            });
            // A `plinth run` an earlier supervisor had under way.
            if let Some((pid, start)) = rec.op {
                let alive = plinth_runtime::proc_start_time(nix::unistd::Pid::from_raw(pid))
                    .is_some_and(|(s, state)| s == start && state != 'Z');
                if alive {
                    if let Ok(w) = self.watch(pid, &name, Role::Runtime) {
                        self.starting += 1;
                        self.unit(&name).phase = Phase::Starting(w);
                        continue;
                    }
                }
                let _ = self.fleet.db.set_op(&name, None);
            }
            let (state, pid) = self.fleet.live(&rec);
            if let (Some(pid), "running") = (pid, state.as_str()) {
                // (An error: it ended between the two looks.)
                if let Ok(init) = self.watch(pid, &name, Role::Init) {
                    let since = Instant::now();
                    self.unit(&name).phase = Phase::Running { init, since };
                    if rec.state != "running" || rec.pid != Some(pid) {
                        self.fleet.db.set_state(&name, "running", Some(pid), None)?;
                    }
                    continue;
                }
            }
            // Not running: whatever a run left on the host goes.
            let ended_unwatched = rec.state == "running";
            let code = rec.pid.and_then(sys::zombie_exit_code);
            if ended_unwatched {
                let _ = self.fleet.complete_exit(&name, code, false);
            } else {
                let _ = self.fleet.clear_run(&name);
            }
            if rec.desired == "running" && wants_restart(rec.spec.restart, code) {
                // It ran and ended: starting it again is a restart, as when
                // the supervisor sees the end itself.
                if ended_unwatched {
                    let _ = self.fleet.db.count_restart(&name);
                }
                self.queue_start(&name);
            }
        }
        self.pump();
        Ok(())
    }

    // ---- the loop ------------------------------------------------------

    fn run(&mut self) -> Result<(), FleetError> {
        let mut events = vec![EpollEvent::empty(); 256];
        while !self.quit {
            let timeout = self
                .next_deadline()
                .saturating_duration_since(Instant::now())
                .as_millis()
                .min(60_000) as u16;
            let n = match self.epoll.wait(&mut events, timeout) {
                Ok(n) => n,
                Err(Errno::EINTR) => 0,
                Err(e) => return Err(io("epoll_wait")(e.into())),
            };
            for ev in &events[..n] {
                match ev.data() {
                    LISTEN => self.accept(),
                    SIGNALS => self.on_signal(),
                    t if self.conns.contains_key(&t) => self.on_conn(t, ev.events()),
                    t => self.on_exit(t),
                }
            }
            self.on_timers();
        }
        Ok(())
    }

    fn next_deadline(&self) -> Instant {
        let mut next = self.next_tick;
        for u in self.units.values() {
            if let Phase::Stopping {
                kill_at,
                killed: false,
                ..
            } = u.phase
            {
                next = next.min(kill_at);
            }
            if let Some(t) = u.restart_at {
                next = next.min(t);
            }
            if let (Some(h), Phase::Running { .. }) = (&u.health, &u.phase) {
                next = next.min(match &h.run {
                    Some((_, deadline)) => *deadline,
                    None => h.next,
                });
            }
        }
        next
    }

    fn on_signal(&mut self) {
        while let Ok(Some(info)) = self.signals.read_signal() {
            if info.ssi_signo == Signal::SIGTERM as u32 || info.ssi_signo == Signal::SIGINT as u32 {
                self.quit = true;
            }
        }
    }

    fn on_timers(&mut self) {
        let now = Instant::now();
        let names: Vec<String> = self.units.keys().cloned().collect();
        for name in names {
            let u = self.unit(&name);
            if let Phase::Stopping {
                kill_at,
                killed: killed @ false,
                ..
            } = &mut u.phase
            {
                if *kill_at <= now {
                    *killed = true;
                    self.fleet.signal(&name, Signal::SIGKILL);
                }
            }
            let u = self.unit(&name);
            if u.restart_at.is_some_and(|t| t <= now) {
                u.restart_at = None;
                let _ = self.fleet.db.count_restart(&name);
                self.queue_start(&name);
            }
            self.health_timers(&name, now);
        }
        if self.next_tick <= now {
            self.next_tick = now + TICK;
            self.rotate_logs();
            self.reap_strays();
            self.keep_socket();
            self.keep_lock();
        }
        self.pump();
    }

    /// Ends this supervisor when its lock file was removed (the data
    /// directory deleted or replaced): the next command would start a
    /// supervisor on a new lock file, and two must never act on the same
    /// containers. The containers keep running; that one adopts them.
    fn keep_lock(&mut self) {
        use std::os::unix::fs::MetadataExt;
        if self.lock.metadata().is_ok_and(|m| m.nlink() == 0) {
            tracing::warn!(
                "{}: the lock file was removed; this supervisor ends",
                self.fleet.state_dir().join(LOCK_FILE).display()
            );
            self.quit = true;
        }
    }

    /// Binds the socket again when its file is gone (a cleaned `/run`, a
    /// removed `--root`) or is a dead socket nobody listens on (that of a
    /// supervisor of another data directory that was killed): this
    /// supervisor holds the data directory's lock, so without its socket
    /// no command could reach it and none could start another. A live
    /// socket or any other file someone put there is left alone.
    fn keep_socket(&mut self) {
        use std::os::unix::fs::FileTypeExt;
        let path = &self.opts.socket;
        match std::fs::symlink_metadata(path) {
            Ok(m) if file_id(&m) == self.socket_id => return,
            Ok(m)
                if m.file_type().is_socket()
                    && UnixStream::connect(path)
                        .is_err_and(|e| e.kind() == io::ErrorKind::ConnectionRefused) =>
            {
                let _ = std::fs::remove_file(path);
            }
            Ok(_) => return,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(_) => return,
        }
        match bind(&self.opts.socket) {
            Ok((listener, id)) => {
                let _ = self.epoll.delete(&self.listener);
                if let Err(e) = self
                    .epoll
                    .add(&listener, EpollEvent::new(EpollFlags::EPOLLIN, LISTEN))
                {
                    tracing::warn!("{}: epoll_ctl: {e}", self.opts.socket.display());
                }
                self.listener = listener;
                self.socket_id = id;
                tracing::warn!(
                    "{}: the socket file was removed or dead; bound it again",
                    self.opts.socket.display()
                );
            }
            Err(e) => tracing::warn!("{e}"),
        }
    }

    // ---- the API -------------------------------------------------------

    fn accept(&mut self) {
        while let Ok((stream, _)) = self.listener.accept() {
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let token = self.token();
            let flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP;
            if self
                .epoll
                .add(&stream, EpollEvent::new(flags, token))
                .is_err()
            {
                continue;
            }
            self.conns.insert(
                token,
                Conn {
                    stream,
                    input: Vec::new(),
                    output: Vec::new(),
                    answered: false,
                },
            );
        }
    }

    fn on_conn(&mut self, token: u64, events: EpollFlags) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        if conn.answered {
            self.flush(token);
            return;
        }
        let mut buf = [0u8; 16 << 10];
        loop {
            match conn.stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => conn.input.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return self.close(token),
            }
        }
        match api::parse_request(&conn.input) {
            Ok(Some(req)) => {
                // Nothing more is read from it: out of the loop until its
                // answer is ready (a client that hung up would otherwise wake
                // the loop for as long as its batch runs).
                let _ = self.epoll.delete(&conn.stream);
                self.dispatch(token, req)
            }
            Ok(None) if events.contains(EpollFlags::EPOLLRDHUP) => self.close(token),
            Ok(None) => {}
            Err(e) => self.answer(token, 400, &json!({ "error": e })),
        }
    }

    fn answer(&mut self, token: u64, status: u16, body: &Value) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        conn.output = api::response(status, body);
        conn.answered = true;
        let mut out = EpollEvent::new(EpollFlags::EPOLLOUT, token);
        if self.epoll.modify(&conn.stream, &mut out).is_err() {
            let _ = self.epoll.add(&conn.stream, out);
        }
        self.flush(token);
    }

    fn flush(&mut self, token: u64) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        while !conn.output.is_empty() {
            match conn.stream.write(&conn.output) {
                Ok(n) => {
                    conn.output.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => break,
            }
        }
        self.close(token);
    }

    fn close(&mut self, token: u64) {
        if let Some(conn) = self.conns.remove(&token) {
            let _ = self.epoll.delete(&conn.stream);
        }
    }

    fn dispatch(&mut self, token: u64, req: api::Request) {
        let verb = match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/v1/daemon") => {
                let body = json!({
                    "pid": std::process::id(),
                    "data_dir": self.fleet.state_dir(),
                    "containers": self.units.len(),
                    "watched": self.procs.len(),
                });
                return self.answer(token, 200, &body);
            }
            ("GET", "/v1/containers") => {
                return match self.fleet.list() {
                    Ok(list) => self.answer(token, 200, &json!(list)),
                    Err(e) => self.answer(token, 500, &json!({ "error": e.to_string() })),
                };
            }
            ("POST", "/v1/containers/start") => "start",
            ("POST", "/v1/containers/stop") => "stop",
            ("POST", "/v1/containers/restart") => "restart",
            ("POST", "/v1/containers/remove") => "remove",
            (_, p) if p.starts_with("/v1/") => {
                let why = format!("{} {}: no such request", req.method, req.path);
                return self.answer(token, 404, &json!({ "error": why }));
            }
            _ => {
                let why = format!("{}: not a plinth API path", req.path);
                return self.answer(token, 404, &json!({ "error": why }));
            }
        };
        let batch: Batch = match serde_json::from_slice(&req.body) {
            Ok(b) => b,
            Err(e) => {
                let why = format!("{}: the body is not a batch: {e}", req.path);
                return self.answer(token, 400, &json!({ "error": why }));
            }
        };
        let job = self.token();
        self.jobs.insert(
            job,
            Job {
                conn: token,
                verb,
                results: BTreeMap::new(),
                pending: batch.names.len(),
            },
        );
        let timeout = Duration::from_millis(batch.timeout_ms.unwrap_or(10_000));
        for name in &batch.names {
            if self.units.contains_key(name) || self.fleet.exists(name).unwrap_or(false) {
                match verb {
                    "start" => self.request_start(name, batch.ensure, job),
                    "stop" => self.request_stop(name, timeout, Then::Rest, job),
                    "restart" => self.request_stop(name, timeout, Then::Start, job),
                    _ => self.request_remove(name, batch.force, job),
                }
            } else {
                self.done(job, name, Err(FleetError::NotFound(name.clone())));
            }
        }
        self.pump();
    }

    /// One container of a batch is done.
    fn done(&mut self, job: u64, name: &str, r: Result<i32, FleetError>) {
        let Some(j) = self.jobs.get_mut(&job) else {
            return;
        };
        let outcome = match r {
            Ok(pid) => Outcome {
                name: name.to_string(),
                pid: (pid > 0).then_some(pid),
                error: None,
            },
            Err(e) => Outcome {
                name: name.to_string(),
                pid: None,
                error: Some(e.to_string()),
            },
        };
        if j.results.insert(name.to_string(), outcome).is_none() {
            j.pending -= 1;
        }
        if j.pending == 0 {
            let j = self.jobs.remove(&job).expect("the job is there");
            let results: Vec<&Outcome> = j.results.values().collect();
            log_failures(j.verb, &results);
            self.answer(j.conn, 200, &json!({ "results": results }));
        }
    }

    /// Tells every batch waiting on `name` how its operation ended.
    fn notify(&mut self, name: &str, r: &Result<i32, String>) {
        let waiters = std::mem::take(&mut self.unit(name).waiters);
        for job in waiters {
            let r = r.clone().map_err(FleetError::Runtime);
            self.done(job, name, r);
        }
    }

    // ---- start ---------------------------------------------------------

    fn request_start(&mut self, name: &str, ensure: bool, job: u64) {
        let u = self.unit(name);
        match u.phase {
            Phase::Running { ref init, .. } if ensure => {
                let pid = init.pid;
                let _ = self.fleet.db.set_desired(name, "running");
                self.done(job, name, Ok(pid));
            }
            Phase::Running { .. } => {
                let why = "already running".to_string();
                let e = FleetError::State {
                    name: name.into(),
                    why,
                };
                self.done(job, name, Err(e));
            }
            Phase::Stopping { .. } => {
                u.then = Then::Start;
                u.waiters.push(job);
            }
            Phase::Queued | Phase::Starting(_) => {
                u.stop_after_start = None;
                u.waiters.push(job);
            }
            Phase::Idle => {
                u.waiters.push(job);
                u.restart_at = None;
                u.backoff = 0;
                if let Err(e) = self.fleet.db.set_desired(name, "running") {
                    return self.notify(name, &Err(e.to_string()));
                }
                self.queue_start(name);
            }
        }
    }

    fn queue_start(&mut self, name: &str) {
        let u = self.unit(name);
        if matches!(u.phase, Phase::Idle) {
            u.phase = Phase::Queued;
            self.queue.push_back(name.to_string());
        }
    }

    /// Starts queued containers while runtime slots are free.
    fn pump(&mut self) {
        while self.starting < self.opts.parallel.max(1) {
            let Some(name) = self.queue.pop_front() else {
                return;
            };
            if !matches!(self.unit(&name).phase, Phase::Queued) {
                continue;
            }
            let watched = self.fleet.prepare_start(&name).and_then(|child| {
                let pid = child.id() as i32;
                // The child is reaped through its pidfd.
                drop(child);
                self.watch(pid, &name, Role::Runtime)
                    .map_err(io(format!("{name}: pidfd_open({pid})")))
            });
            match watched {
                Ok(w) => {
                    self.starting += 1;
                    self.unit(&name).phase = Phase::Starting(w);
                }
                Err(e) => {
                    self.unit(&name).phase = Phase::Idle;
                    self.start_failed(&name, e.to_string());
                }
            }
        }
    }

    fn start_failed(&mut self, name: &str, why: String) {
        self.notify(name, &Err(why));
        // An automatic restart that failed tries again later.
        let restart = self
            .fleet
            .db
            .get(name)
            .ok()
            .flatten()
            .is_some_and(|r| r.desired == "running" && r.spec.restart == Restart::Always);
        if restart {
            self.schedule_restart(name);
        }
    }

    fn on_exit(&mut self, token: u64) {
        let Some((name, role)) = self.procs.get(&token).cloned() else {
            return;
        };
        match role {
            Role::Runtime => self.runtime_ended(&name),
            Role::Init => self.init_ended(&name),
            Role::Health => self.health_ended(&name),
        }
        self.pump();
    }

    fn runtime_ended(&mut self, name: &str) {
        let Phase::Starting(w) = std::mem::replace(&mut self.unit(name).phase, Phase::Idle) else {
            return;
        };
        self.starting -= 1;
        let code = self.reap(w);
        let r = self.fleet.complete_start(name, code.map(|c| c == 0));
        let init = r.and_then(|pid| {
            self.watch(pid, name, Role::Init)
                .map_err(io(format!("{name}: pidfd_open({pid})")))
        });
        match init {
            Ok(init) => {
                let pid = init.pid;
                let u = self.unit(name);
                u.phase = Phase::Running {
                    init,
                    since: Instant::now(),
                };
                if let Some(h) = &mut u.health {
                    h.next = Instant::now();
                    h.failures = 0;
                    h.verdict = "starting";
                }
                let stop = u.stop_after_start.take();
                if u.health.is_some() {
                    let _ = self.fleet.db.set_health(name, Some("starting"));
                }
                self.notify(name, &Ok(pid));
                if let Some(grace) = stop {
                    self.begin_stop(name, grace);
                }
            }
            Err(e) => {
                self.unit(name).stop_after_start = None;
                self.start_failed(name, e.to_string());
            }
        }
    }

    // ---- exits, stop, restart policy -----------------------------------

    fn init_ended(&mut self, name: &str) {
        let phase = std::mem::replace(&mut self.unit(name).phase, Phase::Idle);
        let (init, asked, ran) = match phase {
            Phase::Running { init, since } => (init, false, since.elapsed()),
            Phase::Stopping { init, .. } => (init, true, Duration::ZERO),
            other => {
                self.unit(name).phase = other;
                return;
            }
        };
        let code = self.reap(init);
        self.stop_health(name);
        let cleaned = self.fleet.complete_exit(name, code, asked);
        if asked {
            let then = std::mem::replace(&mut self.unit(name).then, Then::Rest);
            match then {
                Then::Rest => self.notify(name, &cleaned.map(|()| 0).map_err(|e| e.to_string())),
                Then::Start => {
                    let _ = self.fleet.db.set_desired(name, "running");
                    self.queue_start(name);
                }
                Then::Remove => {
                    let r = self.fleet.remove_stopped(name);
                    self.notify_removed(name, r);
                }
            }
            return;
        }
        let Ok(Some(rec)) = self.fleet.db.get(name) else {
            return;
        };
        if rec.desired == "running" && wants_restart(rec.spec.restart, code) {
            if ran >= BACKOFF_RESET {
                self.unit(name).backoff = 0;
            }
            self.schedule_restart(name);
        }
    }

    fn schedule_restart(&mut self, name: &str) {
        let u = self.unit(name);
        let delay = BACKOFF_FIRST
            .saturating_mul(1 << u.backoff.min(16))
            .min(BACKOFF_MAX);
        u.backoff += 1;
        u.restart_at = Some(Instant::now() + delay);
    }

    fn request_stop(&mut self, name: &str, grace: Duration, then: Then, job: u64) {
        let _ = self.fleet.db.set_desired(
            name,
            if then == Then::Start {
                "running"
            } else {
                "stopped"
            },
        );
        let u = self.unit(name);
        u.restart_at = None;
        if matches!(u.phase, Phase::Queued) && then != Then::Start {
            let waiting = std::mem::take(&mut u.waiters);
            for j in waiting {
                let why = format!("{name}: stopped before it started");
                self.done(j, name, Err(FleetError::Runtime(why)));
            }
        }
        let u = self.unit(name);
        u.waiters.push(job);
        match u.phase {
            Phase::Running { .. } => {
                u.then = then;
                self.begin_stop(name, grace);
            }
            Phase::Stopping { .. } => u.then = then,
            Phase::Starting(_) => {
                u.stop_after_start = Some(grace);
                u.then = then;
            }
            Phase::Queued | Phase::Idle => {
                u.phase = Phase::Idle;
                let r = if then == Then::Start {
                    self.queue_start(name);
                    return;
                } else {
                    // Nothing runs (a restart may have been due): only what
                    // an ended run left goes, and it is stopped now.
                    let _ = self.fleet.clear_run(name);
                    self.fleet
                        .db
                        .set_state(name, "stopped", None, None)
                        .map(|()| 0)
                        .map_err(|e| e.to_string())
                };
                self.notify(name, &r);
            }
        }
    }

    fn begin_stop(&mut self, name: &str, grace: Duration) {
        let u = self.unit(name);
        let Phase::Running { init, .. } = std::mem::replace(&mut u.phase, Phase::Idle) else {
            return;
        };
        let sig = if grace.is_zero() {
            Signal::SIGKILL
        } else {
            Signal::SIGTERM
        };
        u.phase = Phase::Stopping {
            init,
            kill_at: Instant::now() + grace,
            killed: grace.is_zero(),
        };
        self.fleet.signal(name, sig);
    }

    fn request_remove(&mut self, name: &str, force: bool, job: u64) {
        let u = self.unit(name);
        match u.phase {
            Phase::Idle | Phase::Queued => {
                u.phase = Phase::Idle;
                let waiting = std::mem::take(&mut u.waiters);
                let r = self.fleet.remove_stopped(name);
                self.units.remove(name);
                for j in waiting {
                    self.done(j, name, Err(FleetError::NotFound(name.to_string())));
                }
                self.done(job, name, r.map(|()| 0));
            }
            _ if !force => self.done(
                job,
                name,
                Err(FleetError::State {
                    name: name.into(),
                    why: "running; stop it first or use --force".into(),
                }),
            ),
            _ => self.request_stop(name, Duration::ZERO, Then::Remove, job),
        }
    }

    fn notify_removed(&mut self, name: &str, r: Result<(), FleetError>) {
        self.notify(name, &r.map(|()| 0).map_err(|e| e.to_string()));
        self.units.remove(name);
    }

    // ---- health --------------------------------------------------------

    fn health_timers(&mut self, name: &str, now: Instant) {
        let u = self.units.get_mut(name).expect("the unit is there");
        let (Some(h), Phase::Running { .. }) = (&mut u.health, &u.phase) else {
            return;
        };
        match &h.run {
            Some((w, deadline)) if *deadline <= now => {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(w.pid), Signal::SIGKILL);
            }
            Some(_) => {}
            None if h.next <= now => {
                let command = h.command.clone();
                let child = std::process::Command::new(&self.fleet.runtime_exe)
                    .arg("--root")
                    .arg(self.fleet.runtime.path())
                    .args(["exec", name, "/bin/sh", "-c", &command])
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn();
                let watched = child
                    .map(|c| c.id() as i32)
                    .and_then(|pid| self.watch(pid, name, Role::Health));
                let h = self
                    .unit(name)
                    .health
                    .as_mut()
                    .expect("it has a health check");
                match watched {
                    Ok(w) => h.run = Some((w, now + HEALTH_TIMEOUT)),
                    Err(_) => h.next = now + h.interval,
                }
            }
            None => {}
        }
    }

    fn health_ended(&mut self, name: &str) {
        let Some(h) = self.unit(name).health.as_mut() else {
            return;
        };
        let Some((w, _)) = h.run.take() else {
            return;
        };
        let code = self.reap(w);
        let running = matches!(self.unit(name).phase, Phase::Running { .. });
        let h = self
            .unit(name)
            .health
            .as_mut()
            .expect("it has a health check");
        let before = h.verdict;
        if code == Some(0) {
            h.failures = 0;
            h.verdict = "healthy";
        } else {
            h.failures += 1;
            if h.failures >= HEALTH_RETRIES && h.verdict != "starting"
                || h.failures >= HEALTH_RETRIES * 40
            {
                h.verdict = "unhealthy";
            }
        }
        h.next = Instant::now()
            + if h.verdict == "starting" {
                HEALTH_START_EVERY
            } else {
                h.interval
            };
        let verdict = h.verdict;
        if running && verdict != before {
            let _ = self.fleet.db.set_health(name, Some(verdict));
        }
    }

    fn stop_health(&mut self, name: &str) {
        let run = self.unit(name).health.as_mut().and_then(|h| {
            h.verdict = "starting";
            h.run.take()
        });
        if let Some((w, _)) = run {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(w.pid), Signal::SIGKILL);
            self.reap(w);
        }
    }

    // ---- housekeeping --------------------------------------------------

    fn rotate_logs(&mut self) {
        let running: Vec<String> = self
            .units
            .iter()
            .filter(|(_, u)| matches!(u.phase, Phase::Running { .. } | Phase::Stopping { .. }))
            .map(|(n, _)| n.clone())
            .collect();
        for name in running {
            let log = self.fleet.dir(&name).join("console.log");
            if let Err(e) = self.opts.logs.check(&log) {
                tracing::warn!("{}: rotate: {e}", log.display());
            }
        }
    }

    /// Reaps children the supervisor does not watch (none are expected: a
    /// runtime process that failed after forking leaves its child to the
    /// subreaper). Inits whose pid is not known yet are left alone: they
    /// are reaped through their pidfd once their start completes.
    fn reap_strays(&mut self) {
        if self.starting > 0 {
            return;
        }
        let me = std::process::id();
        let watched: std::collections::HashSet<i32> = self
            .units
            .values()
            .flat_map(|u| match &u.phase {
                Phase::Running { init, .. } | Phase::Stopping { init, .. } => Some(init.pid),
                Phase::Starting(w) => Some(w.pid),
                _ => None,
            })
            .collect();
        let Ok(children) = std::fs::read_to_string(format!("/proc/{me}/task/{me}/children")) else {
            return;
        };
        for pid in children
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            if !watched.contains(&pid) && sys::zombie_exit_code(pid).is_some() {
                let _ = nix::sys::wait::waitpid(
                    nix::unistd::Pid::from_raw(pid),
                    Some(WaitPidFlag::WNOHANG),
                );
            }
        }
    }
}

/// Whether a policy restarts a container that ended with `code` (`None`:
/// it ended while no supervisor watched, which counts as a failure).
fn wants_restart(policy: Restart, code: Option<i32>) -> bool {
    match policy {
        Restart::No => false,
        Restart::Always => true,
        Restart::OnFailure => code != Some(0),
    }
}

/// Whether anything is mounted at or below `dir`.
fn mounted_below(dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return true;
    };
    let dir = dir.to_string_lossy();
    text.lines().any(|l| {
        l.split(' ')
            .nth(4)
            .is_some_and(|m| m == dir || m.starts_with(&format!("{dir}/")))
    })
}

fn log_failures(verb: &str, results: &[&Outcome]) {
    for o in results {
        if let Some(e) = &o.error {
            tracing::warn!("{verb} {}: {e}", o.name);
        }
    }
}
