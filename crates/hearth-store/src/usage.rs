//! Usage totals per account and function: invocations, µs of guest CPU and
//! wall time, and GB-µs, in their own SQLite file (`usage.sqlite`).
//!
//! The supervisor adds invocations in batches (one transaction per batch
//! window, see `hearth_exec::usage`); the totals are kept per minute, so a
//! query's `since` counts from the start of its minute. A crash or
//! `kill -9` of the node loses at most the batch that was not yet written;
//! what was written survives (WAL; `synchronous=NORMAL` loses nothing when
//! only the process dies).

use crate::registry::Result;
use parking_lot::Mutex;
use rusqlite::{params, Connection};
use std::path::Path;

/// Figures to add for one function in one minute.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UsageDelta {
    pub account_id: String,
    pub function_name: String,
    /// Milliseconds since the epoch (bucketed by minute).
    pub timestamp_ms: i64,
    pub invocations: u64,
    pub guest_cpu_us: f64,
    pub guest_wall_us: f64,
    pub gb_us: f64,
}

/// One function's totals.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct UsageTotals {
    pub account_id: String,
    pub function_name: String,
    pub invocations: u64,
    pub guest_cpu_us: f64,
    pub guest_wall_us: f64,
    #[serde(rename = "GbUs")]
    pub gb_us: f64,
}

/// What to total.
#[derive(Debug, Clone, Default)]
pub struct UsageQuery<'a> {
    pub account_id: Option<&'a str>,
    pub function_name: Option<&'a str>,
    /// Milliseconds since the epoch; 0 for everything.
    pub since_ms: i64,
}

#[derive(Debug)]
pub struct UsageStore {
    conn: Mutex<Connection>,
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS usage (
    account_id    TEXT NOT NULL,
    function_name TEXT NOT NULL,
    minute        INTEGER NOT NULL,
    invocations   INTEGER NOT NULL,
    guest_cpu_us  REAL NOT NULL,
    guest_wall_us REAL NOT NULL,
    gb_us         REAL NOT NULL,
    PRIMARY KEY (account_id, function_name, minute)
) STRICT;
"#;

impl UsageStore {
    pub fn open(path: &Path) -> Result<Self> {
        Self::init(Connection::open(path)?)
    }

    pub fn open_in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let _: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    /// Adds a batch in one transaction.
    pub fn add(&self, deltas: &[UsageDelta]) -> Result<()> {
        if deltas.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        {
            let mut up = tx.prepare_cached(
                "INSERT INTO usage (account_id, function_name, minute, invocations, guest_cpu_us, guest_wall_us, gb_us)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (account_id, function_name, minute) DO UPDATE SET
                   invocations = invocations + excluded.invocations,
                   guest_cpu_us = guest_cpu_us + excluded.guest_cpu_us,
                   guest_wall_us = guest_wall_us + excluded.guest_wall_us,
                   gb_us = gb_us + excluded.gb_us",
            )?;
            for d in deltas {
                up.execute(params![
                    d.account_id,
                    d.function_name,
                    d.timestamp_ms.div_euclid(60_000),
                    i64::try_from(d.invocations).unwrap_or(i64::MAX),
                    d.guest_cpu_us,
                    d.guest_wall_us,
                    d.gb_us,
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Totals per (account, function), ordered by account then function.
    pub fn totals(&self, q: &UsageQuery<'_>) -> Result<Vec<UsageTotals>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT account_id, function_name, SUM(invocations), SUM(guest_cpu_us), SUM(guest_wall_us), SUM(gb_us)
             FROM usage
             WHERE minute >= ?1 AND (?2 IS NULL OR account_id = ?2) AND (?3 IS NULL OR function_name = ?3)
             GROUP BY account_id, function_name
             ORDER BY account_id, function_name",
        )?;
        let rows = stmt.query_map(
            params![q.since_ms.div_euclid(60_000), q.account_id, q.function_name],
            |r| {
                Ok(UsageTotals {
                    account_id: r.get(0)?,
                    function_name: r.get(1)?,
                    invocations: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                    guest_cpu_us: r.get(3)?,
                    guest_wall_us: r.get(4)?,
                    gb_us: r.get(5)?,
                })
            },
        )?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delta(account: &str, function: &str, ts: i64, cpu: f64) -> UsageDelta {
        UsageDelta {
            account_id: account.into(),
            function_name: function.into(),
            timestamp_ms: ts,
            invocations: 1,
            guest_cpu_us: cpu,
            guest_wall_us: cpu * 2.0,
            gb_us: cpu / 8.0,
        }
    }

    #[test]
    fn batches_add_up_per_function_and_account() {
        let s = UsageStore::open_in_memory().unwrap();
        s.add(&[
            delta("a", "f", 60_000, 10.0),
            delta("a", "f", 61_000, 5.5),
            delta("a", "g", 120_000, 1.0),
            delta("b", "f", 0, 3.0),
        ])
        .unwrap();
        s.add(&[delta("a", "f", 180_000, 4.5)]).unwrap();
        let all = s.totals(&UsageQuery::default()).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].function_name, "f");
        assert_eq!(all[0].invocations, 3);
        assert_eq!(all[0].guest_cpu_us, 20.0);
        assert_eq!(all[0].guest_wall_us, 40.0);
        assert_eq!(all[0].gb_us, 2.5);
        let a = s
            .totals(&UsageQuery {
                account_id: Some("a"),
                function_name: Some("f"),
                since_ms: 90_000,
            })
            .unwrap();
        // `since` counts from the start of its minute.
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].invocations, 3);
        let later = s
            .totals(&UsageQuery {
                account_id: Some("a"),
                function_name: None,
                since_ms: 120_000,
            })
            .unwrap();
        assert_eq!(
            later
                .iter()
                .map(|t| (t.function_name.as_str(), t.invocations))
                .collect::<Vec<_>>(),
            [("f", 1), ("g", 1)]
        );
        assert!(s
            .totals(&UsageQuery {
                account_id: Some("c"),
                ..UsageQuery::default()
            })
            .unwrap()
            .is_empty());
    }

    #[test]
    fn totals_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.sqlite");
        UsageStore::open(&path)
            .unwrap()
            .add(&[delta("a", "f", 0, 1.0)])
            .unwrap();
        let s = UsageStore::open(&path).unwrap();
        assert_eq!(s.totals(&UsageQuery::default()).unwrap()[0].invocations, 1);
    }
}
