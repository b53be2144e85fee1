//! Each function's recent log events (log group `/aws/lambda/<name>`),
//! in their own SQLite file beside the registry.
//!
//! Logs are not registry state: they live in a separate file with
//! `synchronous=NORMAL` (a crash may lose the last batch, never corrupt the
//! file), are written in batches off the invoke path, and are bounded per
//! function: the oldest events are dropped first (and, for a group with a
//! retention policy, those past it).
//!
//! CloudWatch Logs reads them as the log group `/aws/lambda/<function>`
//! (created by its first event, as Lambda's are) with one stream per
//! sandbox or VM.

use crate::registry::{Result, StoreError};
use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;
use std::ops::Deref;
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
    /// The log stream: one per sandbox or VM, named as Lambda names them
    /// (`2026/12/03/[$LATEST]<32 hex>`).
    pub stream: String,
    pub timestamp_ms: i64,
    pub message: String,
}

/// A function's log group (`/aws/lambda/<function>`), as CloudWatch Logs
/// describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogGroupInfo {
    pub function_name: String,
    pub created_ms: i64,
    /// `PutRetentionPolicy`'s days; `None`: kept until trimmed.
    pub retention_days: Option<u32>,
    /// Bytes of its events' messages.
    pub stored_bytes: i64,
}

/// One log stream of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogStreamInfo {
    pub name: String,
    pub first_event_ms: i64,
    pub last_event_ms: i64,
    pub stored_bytes: i64,
}

/// One event as CloudWatch Logs reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEvent {
    pub seq: i64,
    pub stream: String,
    pub timestamp_ms: i64,
    pub message: String,
}

/// Which events of a group a read takes: time bounds (`start` inclusive,
/// `end` exclusive, ms), streams, and the retention cut-off.
#[derive(Debug, Clone, Default)]
pub struct EventFilter<'a> {
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    /// Only these streams (empty: all).
    pub streams: &'a [String],
    /// Only streams whose name starts so.
    pub stream_prefix: Option<&'a str>,
    /// Only events after this sequence number (paging forward).
    pub after_seq: Option<i64>,
    /// Only events before this one (paging backward).
    pub before_seq: Option<i64>,
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
CREATE TABLE IF NOT EXISTS log_groups (
    account_id     TEXT NOT NULL,
    function_name  TEXT NOT NULL,
    created_ms     INTEGER NOT NULL,
    retention_days INTEGER,
    PRIMARY KEY (account_id, function_name)
) STRICT;
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
        // And their stream (old events: the stream "", shown as
        // `unknown`).
        let has_stream = conn
            .prepare("SELECT 1 FROM pragma_table_info('log_events') WHERE name = 'stream'")?
            .exists([])?;
        if !has_stream {
            conn.execute_batch(
                "ALTER TABLE log_events ADD COLUMN stream TEXT NOT NULL DEFAULT ''",
            )?;
        }
        conn.execute_batch(
            "CREATE INDEX IF NOT EXISTS log_events_by_stream ON log_events (account_id, function_name, stream, seq);
             INSERT OR IGNORE INTO log_groups (account_id, function_name, created_ms)
               SELECT account_id, function_name, MIN(timestamp_ms) FROM log_events GROUP BY account_id, function_name;",
        )?;
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
                "INSERT INTO log_events (account_id, function_name, version, stream, timestamp_ms, message) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            let mut group = tx.prepare_cached(
                "INSERT OR IGNORE INTO log_groups (account_id, function_name, created_ms) VALUES (?1, ?2, ?3)",
            )?;
            let mut last: Option<(&str, &str)> = None;
            for e in events {
                insert.execute(params![
                    e.account_id,
                    e.function_name,
                    e.version,
                    e.stream,
                    e.timestamp_ms,
                    e.message
                ])?;
                // A group exists from its function's first event on, as
                // Lambda creates it.
                if last != Some((e.account_id.as_str(), e.function_name.as_str())) {
                    group.execute(params![e.account_id, e.function_name, e.timestamp_ms])?;
                    last = Some((e.account_id.as_str(), e.function_name.as_str()));
                }
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
            // Retention: a trimmed group also loses what is past its days.
            let mut expire = tx.prepare_cached(
                "DELETE FROM log_events WHERE account_id = ?1 AND function_name = ?2 AND timestamp_ms < ?3",
            )?;
            for (a, f) in &due {
                if let Some(cut) = Self::retention_cut(tx.deref(), a, f, now_ms())? {
                    expire.execute(params![a, f, cut])?;
                }
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

    /// The oldest timestamp a group's retention keeps, if it has one.
    fn retention_cut(
        db: &Connection,
        account_id: &str,
        function_name: &str,
        now_ms: i64,
    ) -> Result<Option<i64>> {
        let days: Option<Option<i64>> = db
            .prepare_cached(
                "SELECT retention_days FROM log_groups WHERE account_id = ?1 AND function_name = ?2",
            )?
            .query_row(params![account_id, function_name], |r| r.get(0))
            .optional()?;
        Ok(days.flatten().map(|d| now_ms - d * 86_400_000))
    }

    /// The account's log groups whose function name starts with `prefix`,
    /// by name, after the function `after`, at most `limit`.
    pub fn groups(
        &self,
        account_id: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<LogGroupInfo>> {
        let conn = &self.conn.lock().db;
        let mut stmt = conn.prepare_cached(
            "SELECT g.function_name, g.created_ms, g.retention_days,
                    (SELECT COALESCE(SUM(LENGTH(CAST(message AS BLOB))), 0) FROM log_events e
                      WHERE e.account_id = g.account_id AND e.function_name = g.function_name)
             FROM log_groups g
             WHERE g.account_id = ?1 AND substr(g.function_name, 1, length(?2)) = ?2
               AND (?3 IS NULL OR g.function_name > ?3)
             ORDER BY g.function_name LIMIT ?4",
        )?;
        let rows = stmt.query_map(
            params![
                account_id,
                prefix,
                after,
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
            |r| {
                Ok(LogGroupInfo {
                    function_name: r.get(0)?,
                    created_ms: r.get(1)?,
                    retention_days: r
                        .get::<_, Option<i64>>(2)?
                        .and_then(|d| u32::try_from(d).ok()),
                    stored_bytes: r.get(3)?,
                })
            },
        )?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(StoreError::from)
    }

    /// Whether the group exists.
    pub fn group_exists(&self, account_id: &str, function_name: &str) -> Result<bool> {
        let guard = self.conn.lock();
        let exists = guard
            .db
            .prepare_cached(
                "SELECT 1 FROM log_groups WHERE account_id = ?1 AND function_name = ?2",
            )?
            .exists(params![account_id, function_name])?;
        Ok(exists)
    }

    /// A group's streams (whose events are within its retention) that
    /// start with `prefix`, with their first and last event times.
    pub fn streams(
        &self,
        account_id: &str,
        function_name: &str,
        prefix: &str,
    ) -> Result<Vec<LogStreamInfo>> {
        let conn = &self.conn.lock().db;
        let cut = Self::retention_cut(conn, account_id, function_name, now_ms())?;
        let mut stmt = conn.prepare_cached(
            "SELECT stream, MIN(timestamp_ms), MAX(timestamp_ms), SUM(LENGTH(CAST(message AS BLOB)))
             FROM log_events
             WHERE account_id = ?1 AND function_name = ?2 AND substr(stream, 1, length(?3)) = ?3
               AND timestamp_ms >= ?4
             GROUP BY stream ORDER BY stream",
        )?;
        let rows = stmt.query_map(
            params![account_id, function_name, prefix, cut.unwrap_or(i64::MIN)],
            |r| {
                Ok(LogStreamInfo {
                    name: r.get(0)?,
                    first_event_ms: r.get(1)?,
                    last_event_ms: r.get(2)?,
                    stored_bytes: r.get(3)?,
                })
            },
        )?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(StoreError::from)
    }

    /// A group's events that `f` takes (within its retention), oldest
    /// first, or newest first, at most `limit`.
    pub fn events(
        &self,
        account_id: &str,
        function_name: &str,
        f: &EventFilter<'_>,
        newest_first: bool,
        limit: usize,
    ) -> Result<Vec<StreamEvent>> {
        let conn = &self.conn.lock().db;
        let cut = Self::retention_cut(conn, account_id, function_name, now_ms())?;
        let start = f.start_ms.max(cut).unwrap_or(i64::MIN);
        let streams = serde_json::to_string(f.streams).unwrap_or_else(|_| "[]".into());
        let sql = if newest_first {
            "SELECT seq, stream, timestamp_ms, message FROM log_events
             WHERE account_id = ?1 AND function_name = ?2 AND timestamp_ms >= ?3 AND timestamp_ms < ?4
               AND seq > ?5 AND seq < ?6
               AND (?7 = '[]' OR stream IN (SELECT value FROM json_each(?7)))
               AND (?8 IS NULL OR substr(stream, 1, length(?8)) = ?8)
             ORDER BY seq DESC LIMIT ?9"
        } else {
            "SELECT seq, stream, timestamp_ms, message FROM log_events
             WHERE account_id = ?1 AND function_name = ?2 AND timestamp_ms >= ?3 AND timestamp_ms < ?4
               AND seq > ?5 AND seq < ?6
               AND (?7 = '[]' OR stream IN (SELECT value FROM json_each(?7)))
               AND (?8 IS NULL OR substr(stream, 1, length(?8)) = ?8)
             ORDER BY seq LIMIT ?9"
        };
        let mut stmt = conn.prepare_cached(sql)?;
        let rows = stmt.query_map(
            params![
                account_id,
                function_name,
                start,
                f.end_ms.unwrap_or(i64::MAX),
                f.after_seq.unwrap_or(0),
                f.before_seq.unwrap_or(i64::MAX),
                streams,
                f.stream_prefix,
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
            |r| {
                Ok(StreamEvent {
                    seq: r.get(0)?,
                    stream: r.get(1)?,
                    timestamp_ms: r.get(2)?,
                    message: r.get(3)?,
                })
            },
        )?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(StoreError::from)
    }

    /// Sets (or with `None` removes) a group's retention; `false` if the
    /// group does not exist. Events past it are deleted now.
    pub fn set_retention(
        &self,
        account_id: &str,
        function_name: &str,
        days: Option<u32>,
    ) -> Result<bool> {
        let mut guard = self.conn.lock();
        let tx = guard.db.transaction()?;
        let n = tx.execute(
            "UPDATE log_groups SET retention_days = ?3 WHERE account_id = ?1 AND function_name = ?2",
            params![account_id, function_name, days],
        )?;
        if n > 0 {
            if let Some(cut) = Self::retention_cut(&tx, account_id, function_name, now_ms())? {
                tx.execute(
                    "DELETE FROM log_events WHERE account_id = ?1 AND function_name = ?2 AND timestamp_ms < ?3",
                    params![account_id, function_name, cut],
                )?;
            }
        }
        tx.commit()?;
        Ok(n > 0)
    }

    /// Deletes a group and its events; `false` if it did not exist.
    pub fn delete_group(&self, account_id: &str, function_name: &str) -> Result<bool> {
        let mut guard = self.conn.lock();
        guard
            .since_trim
            .remove(&(account_id.to_owned(), function_name.to_owned()));
        let tx = guard.db.transaction()?;
        let n = tx.execute(
            "DELETE FROM log_groups WHERE account_id = ?1 AND function_name = ?2",
            params![account_id, function_name],
        )?;
        tx.execute(
            "DELETE FROM log_events WHERE account_id = ?1 AND function_name = ?2",
            params![account_id, function_name],
        )?;
        tx.commit()?;
        Ok(n > 0)
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
        conn.db.execute(
            "DELETE FROM log_groups WHERE account_id = ?1 AND function_name = ?2",
            params![account_id, function_name],
        )?;
        Ok(())
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(f: &str, m: &str) -> NewLogEvent {
        NewLogEvent {
            account_id: "a".into(),
            function_name: f.into(),
            version: "$LATEST".into(),
            stream: "s1".into(),
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

    fn at(f: &str, stream: &str, ts: i64, m: &str) -> NewLogEvent {
        NewLogEvent {
            account_id: "a".into(),
            function_name: f.into(),
            version: "$LATEST".into(),
            stream: stream.into(),
            timestamp_ms: ts,
            message: m.into(),
        }
    }

    #[test]
    fn groups_streams_events_retention_and_deletion() {
        let s = LogStore::open_in_memory(1000).unwrap();
        let now = now_ms();
        s.append(&[
            at("f", "s1", now - 3 * 86_400_000, "old line"),
            at("f", "s1", now - 10, "one"),
            at("f", "s2", now - 5, "two"),
            at("g", "s9", now, "other"),
        ])
        .unwrap();
        let names: Vec<String> = s
            .groups("a", "", None, 50)
            .unwrap()
            .into_iter()
            .map(|g| g.function_name)
            .collect();
        assert_eq!(names, ["f", "g"]);
        assert_eq!(s.groups("a", "g", None, 50).unwrap().len(), 1);
        assert_eq!(
            s.groups("a", "", Some("f"), 50).unwrap()[0].function_name,
            "g"
        );
        assert!(
            s.groups("b", "", None, 50).unwrap().is_empty(),
            "per account"
        );
        let streams = s.streams("a", "f", "").unwrap();
        assert_eq!(streams.len(), 2);
        assert_eq!(streams[0].first_event_ms, now - 3 * 86_400_000);
        let one = [String::from("s1")];
        let f = EventFilter {
            streams: &one,
            ..EventFilter::default()
        };
        let ev = s.events("a", "f", &f, false, 10).unwrap();
        assert_eq!(
            ev.iter().map(|e| e.message.as_str()).collect::<Vec<_>>(),
            ["old line", "one"]
        );
        let newest = s
            .events("a", "f", &EventFilter::default(), true, 1)
            .unwrap();
        assert_eq!(newest[0].message, "two");
        // Retention: one day drops the old line now, and hides it from reads.
        assert!(s.set_retention("a", "f", Some(1)).unwrap());
        assert!(!s.set_retention("a", "nope", Some(1)).unwrap());
        let ev = s
            .events("a", "f", &EventFilter::default(), false, 10)
            .unwrap();
        assert_eq!(ev.len(), 2);
        assert_eq!(
            s.groups("a", "f", None, 1).unwrap()[0].retention_days,
            Some(1)
        );
        assert!(s.delete_group("a", "f").unwrap());
        assert!(!s.delete_group("a", "f").unwrap());
        assert!(!s.group_exists("a", "f").unwrap());
        assert!(s
            .events("a", "f", &EventFilter::default(), false, 10)
            .unwrap()
            .is_empty());
    }
}
