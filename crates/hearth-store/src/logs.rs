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
use std::collections::HashMap;
use std::path::Path;

/// One line of a function's log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LogEvent {
    /// Increases with every event of the node; a cursor for `--follow`.
    pub seq: i64,
    pub timestamp_ms: i64,
    /// The version that wrote it: `$LATEST` or a number (empty for events
    /// stored before versions were recorded).
    pub version: String,
    pub message: String,
}

/// An event to append.
#[derive(Debug, Clone)]
pub struct NewLogEvent {
    pub account_id: String,
    pub function_name: String,
    pub version: String,
    pub timestamp_ms: i64,
    pub message: String,
}

#[derive(Debug)]
pub struct LogStore {
    conn: Mutex<Conn>,
    /// Events kept per function.
    keep: i64,
}

/// The connection and what it appended per function since that function
/// was last trimmed.
#[derive(Debug)]
struct Conn {
    db: Connection,
    since_trim: HashMap<(String, String), i64>,
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS log_events (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id    TEXT NOT NULL,
    function_name TEXT NOT NULL,
    timestamp_ms  INTEGER NOT NULL,
    message       TEXT NOT NULL,
    version       TEXT NOT NULL DEFAULT ''
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
        // Files made before events carried their version gain the column
        // (their old events keep an empty version).
        let has_version = conn
            .prepare("SELECT 1 FROM pragma_table_info('log_events') WHERE name = 'version'")?
            .exists([])?;
        if !has_version {
            conn.execute_batch(
                "ALTER TABLE log_events ADD COLUMN version TEXT NOT NULL DEFAULT ''",
            )?;
        }
        Ok(Self {
            conn: Mutex::new(Conn {
                db: conn,
                since_trim: HashMap::new(),
            }),
            keep: i64::try_from(keep).unwrap_or(i64::MAX),
        })
    }

    /// How many events a function may gain between two trims: a tenth of
    /// what is kept (at least one). A trim walks the function's `keep`
    /// newest entries of the index, so trimming after every batch made the
    /// log writer SQLite's busiest caller on the warm path (issue 16's
    /// profile). A function holds at most `keep + keep / 10` events (the
    /// counts are not kept across restarts, so just after one, up to twice
    /// that margin until its next trim).
    fn trim_every(&self) -> i64 {
        (self.keep / 10).max(1)
    }

    /// Appends a batch in one transaction, and trims each function it
    /// touched that has gained [`LogStore::trim_every`] events since its last
    /// trim back to `keep`.
    pub fn append(&self, events: &[NewLogEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let trim_every = self.trim_every();
        let mut guard = self.conn.lock();
        let Conn { db, since_trim } = &mut *guard;
        let tx = db.transaction()?;
        let mut due = Vec::new();
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO log_events (account_id, function_name, version, timestamp_ms, message) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for e in events {
                insert.execute(params![
                    e.account_id,
                    e.function_name,
                    e.version,
                    e.timestamp_ms,
                    e.message
                ])?;
            }
            for e in events {
                let n = since_trim
                    .entry((e.account_id.clone(), e.function_name.clone()))
                    .or_default();
                *n += 1;
                if *n == trim_every {
                    due.push((e.account_id.as_str(), e.function_name.as_str()));
                }
            }
            let mut trim = tx.prepare_cached(
                "DELETE FROM log_events WHERE account_id = ?1 AND function_name = ?2 AND seq <= (
                    SELECT seq FROM log_events WHERE account_id = ?1 AND function_name = ?2
                    ORDER BY seq DESC LIMIT 1 OFFSET ?3)",
            )?;
            for (a, f) in &due {
                trim.execute(params![a, f, self.keep])?;
            }
        }
        tx.commit()?;
        for (a, f) in due {
            since_trim.remove(&(a.to_owned(), f.to_owned()));
        }
        Ok(())
    }

    /// Events of one function after `after_seq` (oldest first), at most `limit`;
    /// with `tail`, the newest `limit` events instead. With `version`, only
    /// the events that version wrote.
    pub fn read(
        &self,
        account_id: &str,
        function_name: &str,
        version: Option<&str>,
        after_seq: Option<i64>,
        limit: usize,
        tail: bool,
    ) -> Result<Vec<LogEvent>> {
        let conn = &self.conn.lock().db;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // `?5 IS NULL` keeps one statement (and one cached plan) for both.
        let sql = if tail {
            "SELECT seq, timestamp_ms, version, message FROM (
                SELECT seq, timestamp_ms, version, message FROM log_events
                WHERE account_id = ?1 AND function_name = ?2 AND seq > ?3
                  AND (?5 IS NULL OR version = ?5)
                ORDER BY seq DESC LIMIT ?4) ORDER BY seq"
        } else {
            "SELECT seq, timestamp_ms, version, message FROM log_events
             WHERE account_id = ?1 AND function_name = ?2 AND seq > ?3
               AND (?5 IS NULL OR version = ?5)
             ORDER BY seq LIMIT ?4"
        };
        let mut stmt = conn.prepare_cached(sql)?;
        let rows = stmt.query_map(
            params![
                account_id,
                function_name,
                after_seq.unwrap_or(0),
                limit,
                version
            ],
            |r| {
                Ok(LogEvent {
                    seq: r.get(0)?,
                    timestamp_ms: r.get(1)?,
                    version: r.get(2)?,
                    message: r.get(3)?,
                })
            },
        )?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(StoreError::from)
    }

    /// Forgets a function's logs (when the function is deleted).
    pub fn delete_function(&self, account_id: &str, function_name: &str) -> Result<()> {
        let mut conn = self.conn.lock();
        conn.since_trim
            .remove(&(account_id.to_owned(), function_name.to_owned()));
        conn.db.execute(
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
            version: "$LATEST".into(),
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
        let f = s.read("a", "f", None, None, 100, false).unwrap();
        let msgs: Vec<_> = f.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(msgs, ["line 2", "line 3", "line 4"]);
        let after = s.read("a", "f", None, Some(f[1].seq), 100, false).unwrap();
        assert_eq!(after.len(), 1);
        let tail = s.read("a", "f", None, None, 2, true).unwrap();
        assert_eq!(tail[0].message, "line 3");
        assert!(s.read("b", "f", None, None, 100, false).unwrap().is_empty());
        s.delete_function("a", "f").unwrap();
        assert!(s.read("a", "f", None, None, 100, false).unwrap().is_empty());
        assert_eq!(s.read("a", "g", None, None, 100, false).unwrap().len(), 1);
    }

    #[test]
    fn a_function_holds_at_most_a_tenth_more_than_kept() {
        let s = LogStore::open_in_memory(100).unwrap();
        for batch in 0..30 {
            let events: Vec<_> = (0..7).map(|i| ev("f", &format!("{batch}-{i}"))).collect();
            s.append(&events).unwrap();
            let n = s.read("a", "f", None, None, 1_000, false).unwrap().len();
            assert!(n <= 110, "{n} events after batch {batch}");
        }
        // The newest are the ones kept.
        let all = s.read("a", "f", None, None, 1_000, false).unwrap();
        assert_eq!(all.last().unwrap().message, "29-6");
        assert!(all.len() >= 100);
    }

    #[test]
    fn filtered_by_version() {
        let s = LogStore::open_in_memory(100).unwrap();
        let mut one = ev("f", "from 1");
        one.version = "1".into();
        s.append(&[ev("f", "from latest"), one, ev("f", "latest again")])
            .unwrap();
        let only = |v: Option<&str>, tail| {
            s.read("a", "f", v, None, 100, tail)
                .unwrap()
                .into_iter()
                .map(|e| e.message)
                .collect::<Vec<_>>()
        };
        assert_eq!(only(Some("1"), false), ["from 1"]);
        assert_eq!(only(Some("1"), true), ["from 1"]);
        assert_eq!(only(Some("$LATEST"), true), ["from latest", "latest again"]);
        assert_eq!(only(None, false).len(), 3);
        assert!(only(Some("2"), false).is_empty());
    }

    #[test]
    fn a_file_from_before_versions_gains_the_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs.sqlite");
        let old = Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE log_events (seq INTEGER PRIMARY KEY AUTOINCREMENT, account_id TEXT NOT NULL,
             function_name TEXT NOT NULL, timestamp_ms INTEGER NOT NULL, message TEXT NOT NULL) STRICT;
             INSERT INTO log_events (account_id, function_name, timestamp_ms, message) VALUES ('a', 'f', 1, 'old');",
        )
        .unwrap();
        drop(old);
        let s = LogStore::open(&path, 10).unwrap();
        s.append(&[ev("f", "new")]).unwrap();
        let all = s.read("a", "f", None, None, 10, false).unwrap();
        assert_eq!(
            all.iter()
                .map(|e| (e.version.as_str(), e.message.as_str()))
                .collect::<Vec<_>>(),
            [("", "old"), ("$LATEST", "new")]
        );
    }
}
