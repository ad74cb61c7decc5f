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
}

/// A row as stored: spec, created_at, state, pid, started_at.
type Row = (String, String, String, Option<i32>, Option<String>);

/// The tables of the bridge addresses (`ipam.rs`) and of the user id
/// ranges (`userns.rs`): one row per container holding one, removed by
/// `rm`; `UNIQUE` keeps two containers from ever holding the same.
pub(crate) const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS leases (
        name TEXT PRIMARY KEY,
        address INTEGER NOT NULL UNIQUE
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
        // Which manifest made a container (`apply` removes only its own).
        let has_owner: bool = conn
            .prepare("SELECT 1 FROM pragma_table_info('containers') WHERE name = 'owner'")
            .and_then(|mut s| s.exists([]))
            .map_err(&err)?;
        if !has_owner {
            conn.execute_batch("ALTER TABLE containers ADD COLUMN owner TEXT;")
                .map_err(&err)?;
        }
        conn.execute_batch(SCHEMA).map_err(&err)?;
        Ok(Db { conn })
    }

    /// The connection, for the modules that keep tables of their own
    /// (`ipam`, `userns`).
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    }

    fn record((spec, created_at, state, pid, started_at): Row) -> Result<Record, FleetError> {
        let spec: ContainerSpec = serde_json::from_str(&spec)
            .map_err(|e| FleetError::Db(format!("a recorded spec does not parse: {e}")))?;
        Ok(Record {
            spec,
            created_at,
            state,
            pid,
            started_at,
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
                "SELECT spec, created_at, state, pid, started_at FROM containers WHERE name = ?1",
                params![name],
                Db::row,
            )
            .optional()
            .map_err(|e| FleetError::Db(e.to_string()))?;
        row.map(Db::record).transpose()
    }

    pub fn all(&self) -> Result<Vec<Record>, FleetError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT spec, created_at, state, pid, started_at FROM containers ORDER BY name",
            )
            .map_err(|e| FleetError::Db(e.to_string()))?;
        let rows = stmt
            .query_map([], Db::row)
            .map_err(|e| FleetError::Db(e.to_string()))?;
        rows.map(|r| Db::record(r.map_err(|e| FleetError::Db(e.to_string()))?))
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

    pub fn remove(&self, name: &str) -> Result<(), FleetError> {
        self.conn
            .execute("DELETE FROM containers WHERE name = ?1", params![name])
            .map_err(|e| FleetError::Db(e.to_string()))?;
        Ok(())
    }
}
