//! The fleet's records: one SQLite database under the state directory, in
//! WAL mode, so that a crash at any point leaves a state that the next
//! command reads back whole.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use crate::spec::ContainerSpec;
use crate::FleetError;

/// A container's record.
#[derive(Clone, Debug)]
pub struct Record {
    /// What it is made of.
    pub spec: ContainerSpec,
    /// When `new` made it (RFC 3339).
    pub created_at: String,
    /// `running`, `stopped` or `failed`, as last recorded.
    pub state: String,
    /// The init's pid while running.
    pub pid: Option<i32>,
    /// When it last started.
    pub started_at: Option<String>,
    /// `running` or `stopped`: what the operator asked for last; the
    /// supervisor restarts (by the spec's policy) only what should run.
    pub desired: String,
    /// The exit status of the last run (128 + signal for a signal).
    pub exit_code: Option<i32>,
    /// How often the supervisor restarted it.
    pub restarts: i64,
    /// `starting`, `healthy` or `unhealthy` for a container with a health
    /// command.
    pub health: Option<String>,
    /// A `plinth run` process starting it (pid and start time), recorded
    /// so that a supervisor that starts after a crash waits for it.
    pub op: Option<(i32, u64)>,
}

const COLUMNS: &str =
    "spec, created_at, state, pid, started_at, desired, exit_code, restarts, health, op_pid, op_start";

/// The tables of the bridge addresses (`ipam.rs`) and of the user id
/// ranges (`userns.rs`): one row per container holding one, removed by
/// `rm`; `UNIQUE` keeps two containers from ever holding the same.
pub(crate) const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS leases (
        name TEXT PRIMARY KEY,
        address INTEGER NOT NULL UNIQUE
    );
    CREATE TABLE IF NOT EXISTS platform_states (
        key TEXT PRIMARY KEY,
        packages TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS id_ranges (
        name TEXT PRIMARY KEY,
        host_id INTEGER NOT NULL UNIQUE,
        size INTEGER NOT NULL
    );
";

pub(crate) struct Db {
    conn: Connection,
}

fn db_err(path: &Path) -> impl Fn(rusqlite::Error) -> FleetError + '_ {
    move |e| FleetError::Db(format!("{}: {e}", path.display()))
}

impl Db {
    pub fn open(path: &Path) -> Result<Db, FleetError> {
        let err = db_err(path);
        let conn = Connection::open(path).map_err(&err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(&err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(&err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(&err)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS containers (
                name TEXT PRIMARY KEY,
                spec TEXT NOT NULL,
                created_at TEXT NOT NULL,
                state TEXT NOT NULL,
                pid INTEGER,
                started_at TEXT
            );",
        )
        .map_err(&err)?;
        // Columns added after the first release: which manifest made a
        // container (`apply` removes only its own), and the supervisor's.
        for (column, decl) in [
            ("owner", "owner TEXT"),
            ("desired", "desired TEXT NOT NULL DEFAULT 'stopped'"),
            ("exit_code", "exit_code INTEGER"),
            ("restarts", "restarts INTEGER NOT NULL DEFAULT 0"),
            ("health", "health TEXT"),
            ("op_pid", "op_pid INTEGER"),
            ("op_start", "op_start INTEGER"),
            ("platform_state", "platform_state TEXT"),
        ] {
            let has: bool = conn
                .prepare("SELECT 1 FROM pragma_table_info('containers') WHERE name = ?1")
                .and_then(|mut s| s.exists([column]))
                .map_err(&err)?;
            if !has {
                conn.execute_batch(&format!("ALTER TABLE containers ADD COLUMN {decl};"))
                    .map_err(&err)?;
            }
        }
        conn.execute_batch(SCHEMA).map_err(&err)?;
        Ok(Db { conn })
    }

    /// The connection, for the modules that keep tables of their own
    /// (`ipam`, `userns`).
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Record, FleetError>> {
        let spec: String = r.get(0)?;
        let op = match (r.get::<_, Option<i32>>(9)?, r.get::<_, Option<i64>>(10)?) {
            (Some(pid), Some(start)) => Some((pid, start as u64)),
            _ => None,
        };
        let rec = serde_json::from_str::<ContainerSpec>(&spec)
            .map_err(|e| FleetError::Db(format!("a recorded spec does not parse: {e}")));
        Ok(match rec {
            Ok(spec) => Ok(Record {
                spec,
                created_at: r.get(1)?,
                state: r.get(2)?,
                pid: r.get(3)?,
                started_at: r.get(4)?,
                desired: r.get(5)?,
                exit_code: r.get(6)?,
                restarts: r.get(7)?,
                health: r.get(8)?,
                op,
            }),
            Err(e) => Err(e),
        })
    }

    pub fn insert(&self, spec: &ContainerSpec, now: &str) -> Result<bool, FleetError> {
        let text = serde_json::to_string(spec).expect("a spec serializes");
        let n = self
            .conn
            .execute(
                "INSERT OR IGNORE INTO containers (name, spec, created_at, state) VALUES (?1, ?2, ?3, 'stopped')",
                params![spec.name, text, now],
            )
            .map_err(|e| FleetError::Db(e.to_string()))?;
        Ok(n == 1)
    }

    /// The manifest that owns `name`, if any.
    pub fn owner(&self, name: &str) -> Result<Option<String>, FleetError> {
        self.conn
            .query_row(
                "SELECT owner FROM containers WHERE name = ?1",
                params![name],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()
            .map(Option::flatten)
            .map_err(|e| FleetError::Db(e.to_string()))
    }

    pub fn set_owner(&self, name: &str, owner: Option<&str>) -> Result<(), FleetError> {
        self.conn
            .execute(
                "UPDATE containers SET owner = ?2 WHERE name = ?1",
                params![name, owner],
            )
            .map_err(|e| FleetError::Db(e.to_string()))?;
        Ok(())
    }

    pub fn set_spec(&self, spec: &ContainerSpec) -> Result<(), FleetError> {
        let text = serde_json::to_string(spec).expect("a spec serializes");
        self.conn
            .execute(
                "UPDATE containers SET spec = ?2 WHERE name = ?1",
                params![spec.name, text],
            )
            .map_err(|e| FleetError::Db(e.to_string()))?;
        Ok(())
    }

    pub fn get(&self, name: &str) -> Result<Option<Record>, FleetError> {
        let row = self
            .conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM containers WHERE name = ?1"),
                params![name],
                Db::record,
            )
            .optional()
            .map_err(|e| FleetError::Db(e.to_string()))?;
        row.transpose()
    }

    pub fn all(&self) -> Result<Vec<Record>, FleetError> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {COLUMNS} FROM containers ORDER BY name"))
            .map_err(|e| FleetError::Db(e.to_string()))?;
        let rows = stmt
            .query_map([], Db::record)
            .map_err(|e| FleetError::Db(e.to_string()))?;
        rows.map(|r| r.map_err(|e| FleetError::Db(e.to_string()))?)
            .collect()
    }

    pub fn set_state(
        &self,
        name: &str,
        state: &str,
        pid: Option<i32>,
        started_at: Option<&str>,
    ) -> Result<(), FleetError> {
        self.conn
            .execute(
                "UPDATE containers SET state = ?2, pid = ?3, started_at = COALESCE(?4, started_at) WHERE name = ?1",
                params![name, state, pid, started_at],
            )
            .map_err(|e| FleetError::Db(e.to_string()))?;
        Ok(())
    }

    /// What the operator asked for: `running` or `stopped`.
    pub fn set_desired(&self, name: &str, desired: &str) -> Result<(), FleetError> {
        self.exec(
            "UPDATE containers SET desired = ?2 WHERE name = ?1",
            params![name, desired],
        )
    }

    /// How the last run ended.
    pub fn set_exit(&self, name: &str, code: Option<i32>) -> Result<(), FleetError> {
        self.exec(
            "UPDATE containers SET exit_code = ?2 WHERE name = ?1",
            params![name, code],
        )
    }

    /// One more restart by the supervisor.
    pub fn count_restart(&self, name: &str) -> Result<(), FleetError> {
        self.exec(
            "UPDATE containers SET restarts = restarts + 1 WHERE name = ?1",
            params![name],
        )
    }

    /// The health command's verdict (None: no verdict yet, or not running).
    pub fn set_health(&self, name: &str, health: Option<&str>) -> Result<(), FleetError> {
        self.exec(
            "UPDATE containers SET health = ?2 WHERE name = ?1",
            params![name, health],
        )
    }

    /// The `plinth run` process starting `name`, or none.
    pub fn set_op(&self, name: &str, op: Option<(i32, u64)>) -> Result<(), FleetError> {
        self.exec(
            "UPDATE containers SET op_pid = ?2, op_start = ?3 WHERE name = ?1",
            params![name, op.map(|o| o.0), op.map(|o| o.1 as i64)],
        )
    }

    /// Records that `name` started on the platform package state `key`.
    pub fn set_platform_state(
        &self,
        name: &str,
        key: &str,
        packages: &crate::packages::Packages,
    ) -> Result<(), FleetError> {
        let text = serde_json::to_string(packages).expect("packages serialize");
        self.exec(
            "INSERT OR IGNORE INTO platform_states (key, packages) VALUES (?1, ?2)",
            params![key, text],
        )?;
        self.exec(
            "UPDATE containers SET platform_state = ?2 WHERE name = ?1",
            params![name, key],
        )
    }

    /// The platform package state `name` last started on.
    pub fn platform_state(
        &self,
        name: &str,
    ) -> Result<Option<crate::packages::Packages>, FleetError> {
        let text: Option<String> = self
            .conn
            .query_row(
                "SELECT p.packages FROM containers c JOIN platform_states p ON p.key = c.platform_state WHERE c.name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| FleetError::Db(e.to_string()))?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    fn exec(&self, sql: &str, p: impl rusqlite::Params) -> Result<(), FleetError> {
        self.conn
            .execute(sql, p)
            .map_err(|e| FleetError::Db(e.to_string()))?;
        Ok(())
    }

    pub fn remove(&self, name: &str) -> Result<(), FleetError> {
        self.conn
            .execute("DELETE FROM containers WHERE name = ?1", params![name])
            .map_err(|e| FleetError::Db(e.to_string()))?;
        Ok(())
    }
}
