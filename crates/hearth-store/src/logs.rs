//! Each function's recent log events (log group `/aws/lambda/<name>`),
//! in their own SQLite file beside the registry.
//!
//! Logs are not registry state: they live in a separate file with
//! `synchronous=NORMAL` (a crash may lose the last batch, never corrupt the
//! file), are written in batches off the invoke path, and are bounded per
//! function: the oldest events are dropped first.

use crate::registry::{Result, StoreError};
use parking_lot::Mutex;
use rusqlite::{params, Connection};
use std::path::Path;

/// One line of a function's log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LogEvent {
    /// Increases with every event of the node; a cursor for `--follow`.
    pub seq: i64,
    pub timestamp_ms: i64,
    pub message: String,
}

/// An event to append.
#[derive(Debug, Clone)]
pub struct NewLogEvent {
    pub account_id: String,
    pub function_name: String,
    pub timestamp_ms: i64,
    pub message: String,
}

#[derive(Debug)]
pub struct LogStore {
    conn: Mutex<Connection>,
    /// Events kept per function.
    keep: i64,
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS log_events (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id    TEXT NOT NULL,
    function_name TEXT NOT NULL,
    timestamp_ms  INTEGER NOT NULL,
    message       TEXT NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS log_events_by_function ON log_events (account_id, function_name, seq);
"#;

impl LogStore {
    /// Opens (creating) the log file; `keep` events are kept per function.
    pub fn open(path: &Path, keep: usize) -> Result<Self> {
        Self::init(Connection::open(path)?, keep)
    }

    pub fn open_in_memory(keep: usize) -> Result<Self> {
        Self::init(Connection::open_in_memory()?, keep)
    }

    fn init(conn: Connection, keep: usize) -> Result<Self> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let _: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self {
            conn: Mutex::new(conn),
            keep: i64::try_from(keep).unwrap_or(i64::MAX),
        })
    }

    /// Appends a batch in one transaction and trims every function it touched.
    pub fn append(&self, events: &[NewLogEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO log_events (account_id, function_name, timestamp_ms, message) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for e in events {
                insert.execute(params![
                    e.account_id,
                    e.function_name,
                    e.timestamp_ms,
                    e.message
                ])?;
            }
            let mut touched: Vec<(&str, &str)> = events
                .iter()
                .map(|e| (e.account_id.as_str(), e.function_name.as_str()))
                .collect();
            touched.sort_unstable();
            touched.dedup();
            let mut trim = tx.prepare_cached(
                "DELETE FROM log_events WHERE account_id = ?1 AND function_name = ?2 AND seq <= (
                    SELECT seq FROM log_events WHERE account_id = ?1 AND function_name = ?2
                    ORDER BY seq DESC LIMIT 1 OFFSET ?3)",
            )?;
            for (a, f) in touched {
                trim.execute(params![a, f, self.keep])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Events of one function after `after_seq` (oldest first), at most `limit`;
    /// with `tail`, the newest `limit` events instead.
    pub fn read(
        &self,
        account_id: &str,
        function_name: &str,
        after_seq: Option<i64>,
        limit: usize,
        tail: bool,
    ) -> Result<Vec<LogEvent>> {
        let conn = self.conn.lock();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = if tail {
            "SELECT seq, timestamp_ms, message FROM (
                SELECT seq, timestamp_ms, message FROM log_events
                WHERE account_id = ?1 AND function_name = ?2 AND seq > ?3
                ORDER BY seq DESC LIMIT ?4) ORDER BY seq"
        } else {
            "SELECT seq, timestamp_ms, message FROM log_events
             WHERE account_id = ?1 AND function_name = ?2 AND seq > ?3
             ORDER BY seq LIMIT ?4"
        };
        let mut stmt = conn.prepare_cached(sql)?;
        let rows = stmt.query_map(
            params![account_id, function_name, after_seq.unwrap_or(0), limit],
            |r| {
                Ok(LogEvent {
                    seq: r.get(0)?,
                    timestamp_ms: r.get(1)?,
                    message: r.get(2)?,
                })
            },
        )?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(StoreError::from)
    }

    /// Forgets a function's logs (when the function is deleted).
    pub fn delete_function(&self, account_id: &str, function_name: &str) -> Result<()> {
        self.conn.lock().execute(
            "DELETE FROM log_events WHERE account_id = ?1 AND function_name = ?2",
            params![account_id, function_name],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(f: &str, m: &str) -> NewLogEvent {
        NewLogEvent {
            account_id: "a".into(),
            function_name: f.into(),
            timestamp_ms: 1,
            message: m.into(),
        }
    }

    #[test]
    fn bounded_per_function_and_isolated() {
        let s = LogStore::open_in_memory(3).unwrap();
        let batch: Vec<_> = (0..5).map(|i| ev("f", &format!("line {i}"))).collect();
        s.append(&batch).unwrap();
        s.append(&[ev("g", "other")]).unwrap();
        let f = s.read("a", "f", None, 100, false).unwrap();
        let msgs: Vec<_> = f.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(msgs, ["line 2", "line 3", "line 4"]);
        let after = s.read("a", "f", Some(f[1].seq), 100, false).unwrap();
        assert_eq!(after.len(), 1);
        let tail = s.read("a", "f", None, 2, true).unwrap();
        assert_eq!(tail[0].message, "line 3");
        assert!(s.read("b", "f", None, 100, false).unwrap().is_empty());
        s.delete_function("a", "f").unwrap();
        assert!(s.read("a", "f", None, 100, false).unwrap().is_empty());
        assert_eq!(s.read("a", "g", None, 100, false).unwrap().len(), 1);
    }
}
