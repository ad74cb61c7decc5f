//! Addresses of bridge containers: the bridge's IPv4 subnet (its first
//! host address is the gateway, on the bridge) and one lease per
//! container in the fleet database's `leases` table.
//!
//! A lease is taken in an `IMMEDIATE` transaction (the database's write
//! lock, held across processes) and the address column is `UNIQUE`, so
//! concurrent starts from separate processes never share an address. A
//! container keeps its lease across stops and restarts; `rm` frees it.

use std::net::Ipv4Addr;

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use serde::{Deserialize, Serialize};

use crate::FleetError;

/// An IPv4 network: an address with its host bits clear and a prefix
/// length from 8 to 30.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    network: Ipv4Addr,
    prefix: u8,
}

impl Subnet {
    /// `A.B.C.D/N`, as in `PLINTH_BRIDGE_SUBNET`.
    pub fn parse(s: &str) -> Result<Subnet, FleetError> {
        let bad = |why: &str| FleetError::Invalid(format!("subnet {s}: {why}"));
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| bad("expected ADDRESS/PREFIX, like 10.77.0.0/16"))?;
        let network: Ipv4Addr = addr.parse().map_err(|_| bad("not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| bad("the prefix is not a number"))?;
        if !(8..=30).contains(&prefix) {
            return Err(bad("the prefix must be 8 to 30"));
        }
        let n = Subnet { network, prefix };
        if u32::from(network) & !n.mask() != 0 {
            return Err(bad(&format!(
                "host bits are set (the network is {}/{prefix})",
                Ipv4Addr::from(u32::from(network) & n.mask())
            )));
        }
        Ok(n)
    }

    fn mask(&self) -> u32 {
        u32::MAX << (32 - self.prefix)
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The gateway: the first host address, the bridge's own.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    /// The addresses a container may lease: after the gateway, before the
    /// broadcast address.
    fn hosts(&self) -> (u32, u32) {
        let first = u32::from(self.network) + 2;
        let last = (u32::from(self.network) | !self.mask()) - 1;
        (first, last)
    }

    /// Whether `a` is one of the subnet's container addresses.
    fn holds(&self, a: Ipv4Addr) -> bool {
        let (first, last) = self.hosts();
        (first..=last).contains(&u32::from(a))
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

fn db(e: rusqlite::Error) -> FleetError {
    FleetError::Db(format!("leases: {e}"))
}

/// The address of `name`'s lease in `subnet`: the one it holds, or the
/// lowest free one.
pub(crate) fn lease(
    conn: &Connection,
    name: &str,
    subnet: &Subnet,
) -> Result<Ipv4Addr, FleetError> {
    // A restart keeps its lease: read it without taking the write lock.
    if let Some(a) = held(conn, name)?.filter(|a| subnet.holds(*a)) {
        return Ok(a);
    }
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate).map_err(db)?;
    let held: Option<u32> = tx
        .query_row(
            "SELECT address FROM leases WHERE name = ?1",
            params![name],
            |r| r.get(0),
        )
        .optional()
        .map_err(db)?;
    if let Some(a) = held.map(Ipv4Addr::from).filter(|a| subnet.holds(*a)) {
        tx.commit().map_err(db)?;
        return Ok(a);
    }
    let (first, last) = subnet.hosts();
    let mut free = first;
    {
        let mut stmt = tx
            .prepare("SELECT address FROM leases WHERE address BETWEEN ?1 AND ?2 ORDER BY address")
            .map_err(db)?;
        let used = stmt
            .query_map(params![first, last], |r| r.get::<_, u32>(0))
            .map_err(db)?;
        for a in used {
            let a = a.map_err(db)?;
            if a > free {
                break;
            }
            free = a + 1;
        }
    }
    if free > last {
        return Err(FleetError::Invalid(format!(
            "{name}: no free address left in {subnet}"
        )));
    }
    tx.execute(
        "INSERT INTO leases (name, address) VALUES (?1, ?2)
         ON CONFLICT(name) DO UPDATE SET address = excluded.address",
        params![name, free],
    )
    .map_err(db)?;
    tx.commit().map_err(db)?;
    Ok(Ipv4Addr::from(free))
}

/// The address `name` holds, if any.
pub(crate) fn held(conn: &Connection, name: &str) -> Result<Option<Ipv4Addr>, FleetError> {
    conn.query_row(
        "SELECT address FROM leases WHERE name = ?1",
        params![name],
        |r| r.get::<_, u32>(0),
    )
    .optional()
    .map(|a| a.map(Ipv4Addr::from))
    .map_err(db)
}

/// Frees `name`'s lease.
pub(crate) fn release(conn: &Connection, name: &str) -> Result<(), FleetError> {
    conn.execute("DELETE FROM leases WHERE name = ?1", params![name])
        .map(drop)
        .map_err(db)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets() {
        let s = Subnet::parse("10.77.0.0/16").unwrap();
        assert_eq!(s.gateway(), Ipv4Addr::new(10, 77, 0, 1));
        assert_eq!(
            s.hosts(),
            (
                u32::from(Ipv4Addr::new(10, 77, 0, 2)),
                u32::from(Ipv4Addr::new(10, 77, 255, 254))
            )
        );
        assert_eq!(s.to_string(), "10.77.0.0/16");
        for (bad, msg) in [
            ("10.77.0.0", "expected ADDRESS/PREFIX"),
            (
                "10.77.0.1/16",
                "host bits are set (the network is 10.77.0.0/16)",
            ),
            ("10.77.0.0/31", "the prefix must be 8 to 30"),
            ("10.77.0/16", "not an IPv4 address"),
            ("10.77.0.0/x", "not a number"),
        ] {
            let e = Subnet::parse(bad).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("subnet {bad}: ")) && e.contains(msg),
                "{e}"
            );
        }
    }

    fn open(path: &std::path::Path) -> Connection {
        let c = Connection::open(path).unwrap();
        c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
        c.execute_batch(crate::db::SCHEMA).unwrap();
        c
    }

    #[test]
    fn leases_are_kept_freed_and_never_shared() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.db");
        let c = open(&path);
        c.pragma_update(None, "journal_mode", "WAL").unwrap();
        let s = Subnet::parse("10.1.2.0/29").unwrap(); // .2 to .6
        assert_eq!(lease(&c, "a", &s).unwrap(), Ipv4Addr::new(10, 1, 2, 2));
        assert_eq!(lease(&c, "b", &s).unwrap(), Ipv4Addr::new(10, 1, 2, 3));
        assert_eq!(lease(&c, "a", &s).unwrap(), Ipv4Addr::new(10, 1, 2, 2));
        release(&c, "a").unwrap();
        assert_eq!(held(&c, "a").unwrap(), None);
        assert_eq!(lease(&c, "c", &s).unwrap(), Ipv4Addr::new(10, 1, 2, 2));
        for n in ["d", "e", "f"] {
            lease(&c, n, &s).unwrap();
        }
        let e = lease(&c, "g", &s).unwrap_err().to_string();
        assert!(e.contains("g: no free address left in 10.1.2.0/29"), "{e}");
        // Another subnet: the lease moves.
        let t = Subnet::parse("10.1.3.0/24").unwrap();
        assert_eq!(lease(&c, "b", &t).unwrap(), Ipv4Addr::new(10, 1, 3, 2));
        assert_eq!(lease(&c, "g", &s).unwrap(), Ipv4Addr::new(10, 1, 2, 3));

        // Eight threads with their own connections, as separate processes
        // would: 8 x 20 leases, all distinct.
        let big = Subnet::parse("10.2.0.0/16").unwrap();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let c = open(&path);
                    (0..20)
                        .map(|i| lease(&c, &format!("t{t}-{i}"), &big).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let all: Vec<Ipv4Addr> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        let distinct: std::collections::HashSet<_> = all.iter().collect();
        assert_eq!(distinct.len(), 160);
    }
}
