//! SQS standard queues per account, in their own SQLite file beside the
//! registry.
//!
//! Unlike the log store, this file runs with `synchronous=FULL`: a message
//! whose `SendMessage` was acknowledged is on disk, and survives a crash or
//! `kill -9`. Every operation is one transaction.
//!
//! A message is *visible* when its `visible_ms` has passed; receiving it
//! moves `visible_ms` forward by the visibility timeout, counts the receive
//! and gives it a fresh receipt token. Delayed messages are those never
//! received whose `visible_ms` lies ahead. Messages past their queue's
//! retention period are dropped, never delivered.

use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum SqsError {
    #[error("The specified queue does not exist.")]
    NoQueue,
    #[error("A queue already exists with the same name and different attributes.")]
    QueueExists,
    #[error("The message referred to is not in flight.")]
    NotInflight,
    #[error("The message is longer than the queue's MaximumMessageSize of {0} bytes.")]
    TooLarge(u32),
    #[error("the node is shutting down")]
    ShuttingDown,
    #[error("the SQS store failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the SQS store holds unreadable data: {0}")]
    Corrupt(#[from] serde_json::Error),
}

pub type Result<T> = std::result::Result<T, SqsError>;

/// A queue's settable attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSettings {
    pub visibility_timeout_s: u32,
    pub retention_s: u32,
    pub delay_s: u32,
    pub receive_wait_s: u32,
    pub max_message_bytes: u32,
    /// `RedrivePolicy`: where a message goes once received this often
    /// without being deleted.
    pub redrive: Option<Redrive>,
}

/// A queue's dead-letter queue (same account) and the receives a message
/// gets before it moves there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redrive {
    pub dead_letter_queue: String,
    pub max_receive_count: u32,
}

impl Default for QueueSettings {
    /// SQS's defaults.
    fn default() -> Self {
        Self {
            visibility_timeout_s: 30,
            retention_s: 345_600,
            delay_s: 0,
            receive_wait_s: 0,
            max_message_bytes: 262_144,
            redrive: None,
        }
    }
}

/// A queue and its timestamps (seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueInfo {
    pub name: String,
    pub settings: QueueSettings,
    pub created_s: i64,
    pub modified_s: i64,
}

/// How many messages a queue holds, by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    pub visible: i64,
    pub in_flight: i64,
    pub delayed: i64,
}

/// One user message attribute: its data type (`String`, `Number`,
/// `Binary`, or one with a custom suffix) and value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MessageAttribute {
    pub name: String,
    pub data_type: String,
    pub string_value: Option<String>,
    /// Binary values, as given (bytes).
    pub binary_value: Option<Vec<u8>>,
}

/// A message to enqueue.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: String,
    pub body: String,
    pub md5_of_body: String,
    pub md5_of_attributes: Option<String>,
    pub attributes: Vec<MessageAttribute>,
    /// `None`: the queue's own delay.
    pub delay_s: Option<u32>,
}

/// A message as one receive hands it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub id: String,
    /// The token of this receive (part of the receipt handle).
    pub token: String,
    pub body: String,
    pub md5_of_body: String,
    pub md5_of_attributes: Option<String>,
    pub attributes: Vec<MessageAttribute>,
    pub sent_ms: i64,
    pub first_receive_ms: i64,
    pub receive_count: i64,
}

/// The hex MD5 of `data`: SQS's `MD5OfMessageBody` (a checksum, not for
/// security).
pub fn md5_hex(data: &[u8]) -> String {
    use md5::Digest as _;
    hex::encode(md5::Md5::digest(data))
}

/// SQS's digest of message attributes: for each, by name, the length-
/// prefixed (4 bytes, big-endian) name and type, a transport byte (1:
/// string, 2: binary) and the length-prefixed value.
pub fn md5_of_attributes(attrs: &[MessageAttribute]) -> String {
    let mut sorted: Vec<&MessageAttribute> = attrs.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut buf = Vec::new();
    let put = |b: &[u8], buf: &mut Vec<u8>| {
        buf.extend_from_slice(&u32::try_from(b.len()).unwrap_or(u32::MAX).to_be_bytes());
        buf.extend_from_slice(b);
    };
    for a in sorted {
        put(a.name.as_bytes(), &mut buf);
        put(a.data_type.as_bytes(), &mut buf);
        match (&a.string_value, &a.binary_value) {
            (_, Some(bin)) => {
                buf.push(2);
                put(bin, &mut buf);
            }
            (s, None) => {
                buf.push(1);
                put(s.as_deref().unwrap_or("").as_bytes(), &mut buf);
            }
        }
    }
    md5_hex(&buf)
}

/// A receipt handle: the message's queue and id and the receive's token,
/// base64url-encoded. Opaque to clients.
pub fn receipt_handle(account: &str, queue: &str, id: &str, token: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("{account}/{queue}/{id}/{token}"))
}

/// A receipt handle's account, queue, message id and token.
pub fn parse_receipt_handle(handle: &str) -> Option<(String, String, String, String)> {
    use base64::Engine as _;
    let text = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(handle)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())?;
    let mut parts = text.split('/');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some(a), Some(q), Some(id), Some(t), None) => {
            Some((a.to_owned(), q.to_owned(), id.to_owned(), t.to_owned()))
        }
        _ => None,
    }
}

impl NewMessage {
    /// A message with its checksums computed.
    pub fn new(body: String, attributes: Vec<MessageAttribute>, delay_s: Option<u32>) -> Self {
        let md5_of_attributes = (!attributes.is_empty()).then(|| md5_of_attributes(&attributes));
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            md5_of_body: md5_hex(body.as_bytes()),
            body,
            md5_of_attributes,
            attributes,
            delay_s,
        }
    }
}

/// An SQS event source mapping: a queue whose messages a function is
/// invoked with, in batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub uuid: String,
    pub account: String,
    pub function_name: String,
    /// An alias or version; `None`: `$LATEST`.
    pub qualifier: Option<String>,
    pub queue_account: String,
    pub queue: String,
    /// Messages per invocation at most.
    pub batch_size: u32,
    /// How long a batch may gather before the function is invoked, s.
    pub window_s: u32,
    pub enabled: bool,
    /// `FunctionResponseTypes: [ReportBatchItemFailures]`.
    pub report_failures: bool,
    /// `ScalingConfig.MaximumConcurrency`.
    pub max_concurrency: Option<u32>,
    pub modified_ms: i64,
}

const MAPPING_COLUMNS: &str = "uuid, account_id, function_name, qualifier, queue_account, queue, batch_size, window_s, enabled, report_failures, max_concurrency, modified_ms";

fn mapping_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Mapping> {
    Ok(Mapping {
        uuid: r.get(0)?,
        account: r.get(1)?,
        function_name: r.get(2)?,
        qualifier: r.get(3)?,
        queue_account: r.get(4)?,
        queue: r.get(5)?,
        batch_size: r.get(6)?,
        window_s: r.get(7)?,
        enabled: r.get(8)?,
        report_failures: r.get(9)?,
        max_concurrency: r.get(10)?,
        modified_ms: r.get(11)?,
    })
}

#[derive(Debug)]
pub struct SqsStore {
    db: Mutex<Connection>,
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS queues (
    account_id    TEXT NOT NULL,
    name          TEXT NOT NULL,
    visibility_s  INTEGER NOT NULL,
    retention_s   INTEGER NOT NULL,
    delay_s       INTEGER NOT NULL,
    wait_s        INTEGER NOT NULL,
    max_bytes     INTEGER NOT NULL,
    dlq           TEXT,
    max_receives  INTEGER NOT NULL DEFAULT 0,
    created_s     INTEGER NOT NULL,
    modified_s    INTEGER NOT NULL,
    PRIMARY KEY (account_id, name)
) STRICT;
CREATE TABLE IF NOT EXISTS messages (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id       TEXT NOT NULL,
    queue            TEXT NOT NULL,
    id               TEXT NOT NULL,
    body             TEXT NOT NULL,
    md5_body         TEXT NOT NULL,
    md5_attrs        TEXT,
    attrs            TEXT NOT NULL,
    sent_ms          INTEGER NOT NULL,
    expires_ms       INTEGER NOT NULL,
    visible_ms       INTEGER NOT NULL,
    receive_count    INTEGER NOT NULL DEFAULT 0,
    first_receive_ms INTEGER NOT NULL DEFAULT 0,
    token            TEXT NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX IF NOT EXISTS messages_by_queue ON messages (account_id, queue, visible_ms, seq);
CREATE UNIQUE INDEX IF NOT EXISTS messages_by_id ON messages (account_id, queue, id);
CREATE TABLE IF NOT EXISTS mappings (
    uuid           TEXT PRIMARY KEY,
    account_id     TEXT NOT NULL,
    function_name  TEXT NOT NULL,
    qualifier      TEXT,
    queue_account  TEXT NOT NULL,
    queue          TEXT NOT NULL,
    batch_size     INTEGER NOT NULL,
    window_s       INTEGER NOT NULL,
    enabled        INTEGER NOT NULL,
    report_failures INTEGER NOT NULL,
    max_concurrency INTEGER,
    modified_ms    INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS mappings_by_account ON mappings (account_id, function_name);
"#;

fn redrive_columns(s: &QueueSettings) -> (Option<&str>, u32) {
    s.redrive.as_ref().map_or((None, 0), |r| {
        (Some(r.dead_letter_queue.as_str()), r.max_receive_count)
    })
}

/// The columns [`settings_of`] reads, in its order.
const SETTINGS_COLUMNS: &str =
    "visibility_s, retention_s, delay_s, wait_s, max_bytes, dlq, max_receives";

fn settings_of(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<QueueSettings> {
    let dlq: Option<String> = r.get(at + 5)?;
    let max_receives: u32 = r.get(at + 6)?;
    Ok(QueueSettings {
        visibility_timeout_s: r.get(at)?,
        retention_s: r.get(at + 1)?,
        delay_s: r.get(at + 2)?,
        receive_wait_s: r.get(at + 3)?,
        max_message_bytes: r.get(at + 4)?,
        redrive: dlq.map(|d| Redrive {
            dead_letter_queue: d,
            max_receive_count: max_receives,
        }),
    })
}

impl SqsStore {
    /// Opens (creating) the queue file.
    pub fn open(path: &Path) -> Result<Self> {
        Self::init(Connection::open(path)?)
    }

    pub fn open_in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let _: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        // An acknowledged send must survive a crash.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self {
            db: Mutex::new(conn),
        })
    }

    /// Creates a queue; an existing one with the same settings is answered
    /// as created (SQS's idempotence), with others [`SqsError::QueueExists`].
    pub fn create_queue(
        &self,
        account: &str,
        name: &str,
        settings: QueueSettings,
        now_s: i64,
    ) -> Result<()> {
        let mut db = self.db.lock();
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let existing = tx
            .query_row(
                &format!(
                    "SELECT {SETTINGS_COLUMNS} FROM queues WHERE account_id = ?1 AND name = ?2"
                ),
                params![account, name],
                |r| settings_of(r, 0),
            )
            .optional()?;
        match existing {
            Some(s) if s == settings => return Ok(()),
            Some(_) => return Err(SqsError::QueueExists),
            None => {}
        }
        let (dlq, max_receives) = redrive_columns(&settings);
        tx.execute(
            &format!("INSERT INTO queues (account_id, name, {SETTINGS_COLUMNS}, created_s, modified_s) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)"),
            params![
                account,
                name,
                settings.visibility_timeout_s,
                settings.retention_s,
                settings.delay_s,
                settings.receive_wait_s,
                settings.max_message_bytes,
                dlq,
                max_receives,
                now_s
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Changes a queue's settings (SetQueueAttributes).
    pub fn set_settings(
        &self,
        account: &str,
        name: &str,
        settings: QueueSettings,
        now_s: i64,
    ) -> Result<()> {
        let db = self.db.lock();
        let (dlq, max_receives) = redrive_columns(&settings);
        let n = db.execute(
            "UPDATE queues SET visibility_s = ?3, retention_s = ?4, delay_s = ?5, wait_s = ?6, max_bytes = ?7, dlq = ?8, max_receives = ?9, modified_s = ?10
             WHERE account_id = ?1 AND name = ?2",
            params![
                account,
                name,
                settings.visibility_timeout_s,
                settings.retention_s,
                settings.delay_s,
                settings.receive_wait_s,
                settings.max_message_bytes,
                dlq,
                max_receives,
                now_s
            ],
        )?;
        if n == 0 {
            return Err(SqsError::NoQueue);
        }
        Ok(())
    }

    pub fn queue(&self, account: &str, name: &str) -> Result<QueueInfo> {
        let db = self.db.lock();
        Self::queue_in(&db, account, name)
    }

    fn queue_in(db: &Connection, account: &str, name: &str) -> Result<QueueInfo> {
        db.query_row(
            &format!("SELECT name, created_s, modified_s, {SETTINGS_COLUMNS} FROM queues WHERE account_id = ?1 AND name = ?2"),
            params![account, name],
            |r| {
                Ok(QueueInfo {
                    name: r.get(0)?,
                    created_s: r.get(1)?,
                    modified_s: r.get(2)?,
                    settings: settings_of(r, 3)?,
                })
            },
        )
        .optional()?
        .ok_or(SqsError::NoQueue)
    }

    /// The account's queue names starting with `prefix`, in name order,
    /// after `after` (paging), at most `limit`.
    pub fn list_queues(
        &self,
        account: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        let db = self.db.lock();
        let mut st = db.prepare_cached(
            "SELECT name FROM queues WHERE account_id = ?1 AND substr(name, 1, length(?2)) = ?2 AND name > ?3 ORDER BY name LIMIT ?4",
        )?;
        let rows = st.query_map(
            params![
                account,
                prefix,
                after.unwrap_or(""),
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
            |r| r.get(0),
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Deletes a queue and its messages.
    pub fn delete_queue(&self, account: &str, name: &str) -> Result<()> {
        let mut db = self.db.lock();
        let tx = db.transaction()?;
        if tx.execute(
            "DELETE FROM queues WHERE account_id = ?1 AND name = ?2",
            params![account, name],
        )? == 0
        {
            return Err(SqsError::NoQueue);
        }
        tx.execute(
            "DELETE FROM messages WHERE account_id = ?1 AND queue = ?2",
            params![account, name],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Deletes every message of a queue.
    pub fn purge(&self, account: &str, name: &str) -> Result<()> {
        let mut db = self.db.lock();
        let tx = db.transaction()?;
        Self::queue_in(&tx, account, name)?;
        tx.execute(
            "DELETE FROM messages WHERE account_id = ?1 AND queue = ?2",
            params![account, name],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// How many unexpired messages the queue holds, by state.
    pub fn counts(&self, account: &str, name: &str, now_ms: i64) -> Result<QueueCounts> {
        let db = self.db.lock();
        Self::queue_in(&db, account, name)?;
        Ok(db.query_row(
            "SELECT
               COALESCE(SUM(visible_ms <= ?3), 0),
               COALESCE(SUM(visible_ms > ?3 AND receive_count > 0), 0),
               COALESCE(SUM(visible_ms > ?3 AND receive_count = 0), 0)
             FROM messages WHERE account_id = ?1 AND queue = ?2 AND expires_ms > ?3",
            params![account, name, now_ms],
            |r| {
                Ok(QueueCounts {
                    visible: r.get(0)?,
                    in_flight: r.get(1)?,
                    delayed: r.get(2)?,
                })
            },
        )?)
    }

    /// Enqueues messages in one transaction, on disk when this returns.
    pub fn send(&self, account: &str, name: &str, msgs: &[NewMessage], now_ms: i64) -> Result<()> {
        let mut db = self.db.lock();
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let q = Self::queue_in(&tx, account, name)?;
        if msgs
            .iter()
            .any(|m| m.body.len() > q.settings.max_message_bytes as usize)
        {
            return Err(SqsError::TooLarge(q.settings.max_message_bytes));
        }
        {
            let mut ins = tx.prepare_cached(
                "INSERT INTO messages (account_id, queue, id, body, md5_body, md5_attrs, attrs, sent_ms, expires_ms, visible_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?;
            for m in msgs {
                let delay = i64::from(m.delay_s.unwrap_or(q.settings.delay_s));
                ins.execute(params![
                    account,
                    name,
                    m.id,
                    m.body,
                    m.md5_of_body,
                    m.md5_of_attributes,
                    serde_json::to_string(&m.attributes)?,
                    now_ms,
                    now_ms + i64::from(q.settings.retention_s) * 1000,
                    now_ms + delay * 1000,
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Takes up to `max` visible messages, oldest first, and hides each for
    /// `visibility_s` (the queue's timeout when `None`). Drops the queue's
    /// expired messages on the way.
    pub fn receive(
        &self,
        account: &str,
        name: &str,
        max: usize,
        visibility_s: Option<u32>,
        now_ms: i64,
    ) -> Result<Vec<Received>> {
        let mut db = self.db.lock();
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let q = Self::queue_in(&tx, account, name)?;
        tx.execute(
            "DELETE FROM messages WHERE account_id = ?1 AND queue = ?2 AND expires_ms <= ?3",
            params![account, name, now_ms],
        )?;
        if let Some(r) = &q.settings.redrive {
            Self::redrive(&tx, account, name, r, now_ms)?;
        }
        let hide = i64::from(visibility_s.unwrap_or(q.settings.visibility_timeout_s)) * 1000;
        let mut out = Vec::new();
        {
            let mut pick = tx.prepare_cached(
                "SELECT seq, id, body, md5_body, md5_attrs, attrs, sent_ms, first_receive_ms, receive_count
                 FROM messages WHERE account_id = ?1 AND queue = ?2 AND visible_ms <= ?3
                 ORDER BY seq LIMIT ?4",
            )?;
            let rows = pick.query_map(
                params![
                    account,
                    name,
                    now_ms,
                    i64::try_from(max).unwrap_or(i64::MAX)
                ],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, i64>(6)?,
                        r.get::<_, i64>(7)?,
                        r.get::<_, i64>(8)?,
                    ))
                },
            )?;
            let picked = rows.collect::<rusqlite::Result<Vec<_>>>()?;
            let mut update = tx.prepare_cached(
                "UPDATE messages SET visible_ms = ?2, receive_count = ?3, first_receive_ms = ?4, token = ?5 WHERE seq = ?1",
            )?;
            for (seq, id, body, md5_body, md5_attrs, attrs, sent_ms, first, count) in picked {
                let token = uuid::Uuid::new_v4().simple().to_string();
                let first = if count == 0 { now_ms } else { first };
                update.execute(params![seq, now_ms + hide, count + 1, first, token])?;
                out.push(Received {
                    id,
                    token,
                    body,
                    md5_of_body: md5_body,
                    md5_of_attributes: md5_attrs,
                    attributes: serde_json::from_str(&attrs)?,
                    sent_ms,
                    first_receive_ms: first,
                    receive_count: count + 1,
                });
            }
        }
        tx.commit()?;
        Ok(out)
    }

    /// Moves the queue's visible messages already received
    /// `max_receive_count` times to its dead-letter queue (if that still
    /// exists), as unreceived messages keeping their send time: SQS's
    /// redrive, done when the queue is next received from.
    fn redrive(tx: &Connection, account: &str, name: &str, r: &Redrive, now_ms: i64) -> Result<()> {
        let Ok(dlq) = Self::queue_in(tx, account, &r.dead_letter_queue) else {
            return Ok(());
        };
        let moved = tx.execute(
            "INSERT OR IGNORE INTO messages (account_id, queue, id, body, md5_body, md5_attrs, attrs, sent_ms, expires_ms, visible_ms)
             SELECT account_id, ?3, id, body, md5_body, md5_attrs, attrs, sent_ms, sent_ms + ?4, ?5
             FROM messages WHERE account_id = ?1 AND queue = ?2 AND visible_ms <= ?5 AND receive_count >= ?6 AND expires_ms > ?5
             ORDER BY seq",
            params![
                account,
                name,
                dlq.name,
                i64::from(dlq.settings.retention_s) * 1000,
                now_ms,
                r.max_receive_count
            ],
        )?;
        if moved > 0 {
            tx.execute(
                "DELETE FROM messages WHERE account_id = ?1 AND queue = ?2 AND visible_ms <= ?3 AND receive_count >= ?4",
                params![account, name, now_ms, r.max_receive_count],
            )?;
        }
        Ok(())
    }

    /// Deletes a message by id (a receipt handle's). A message already
    /// gone is no error, as in SQS.
    pub fn delete_message(&self, account: &str, name: &str, id: &str) -> Result<()> {
        let mut db = self.db.lock();
        let tx = db.transaction()?;
        Self::queue_in(&tx, account, name)?;
        tx.execute(
            "DELETE FROM messages WHERE account_id = ?1 AND queue = ?2 AND id = ?3",
            params![account, name, id],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Sets an in-flight message's visibility timeout to `timeout_s` from
    /// now; [`SqsError::NotInflight`] if it is not in flight under `token`.
    pub fn change_visibility(
        &self,
        account: &str,
        name: &str,
        id: &str,
        token: &str,
        timeout_s: u32,
        now_ms: i64,
    ) -> Result<()> {
        let mut db = self.db.lock();
        let tx = db.transaction()?;
        Self::queue_in(&tx, account, name)?;
        let n = tx.execute(
            "UPDATE messages SET visible_ms = ?5 WHERE account_id = ?1 AND queue = ?2 AND id = ?3
               AND token = ?4 AND receive_count > 0 AND visible_ms > ?6 AND expires_ms > ?6",
            params![
                account,
                name,
                id,
                token,
                now_ms + i64::from(timeout_s) * 1000,
                now_ms
            ],
        )?;
        if n == 0 {
            return Err(SqsError::NotInflight);
        }
        tx.commit()?;
        Ok(())
    }

    /// Deletes messages by id, in one transaction.
    pub fn delete_messages(&self, account: &str, name: &str, ids: &[String]) -> Result<()> {
        let mut db = self.db.lock();
        let tx = db.transaction()?;
        {
            let mut del = tx.prepare_cached(
                "DELETE FROM messages WHERE account_id = ?1 AND queue = ?2 AND id = ?3",
            )?;
            for id in ids {
                del.execute(params![account, name, id])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Stores a new mapping unless one of the same account already maps
    /// the same queue to the same function (and qualifier): then returns
    /// that one's uuid and stores nothing. One transaction.
    pub fn insert_mapping(&self, m: &Mapping) -> Result<Option<String>> {
        let mut db = self.db.lock();
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let existing: Option<String> = tx
            .query_row(
                "SELECT uuid FROM mappings WHERE account_id = ?1 AND queue_account = ?2 AND queue = ?3
                   AND function_name = ?4 AND qualifier IS ?5",
                params![m.account, m.queue_account, m.queue, m.function_name, m.qualifier],
                |r| r.get(0),
            )
            .optional()?;
        if existing.is_some() {
            return Ok(existing);
        }
        Self::write_mapping(&tx, m)?;
        tx.commit()?;
        Ok(None)
    }

    /// Changes a mapping of the account in one transaction: `change` sees
    /// the stored mapping and may refuse (nothing is written then). It runs
    /// under the store's lock, so it must not call the store itself.
    /// `Ok(None)`: no such mapping.
    pub fn modify_mapping<E>(
        &self,
        account: &str,
        uuid: &str,
        change: impl FnOnce(&mut Mapping) -> std::result::Result<(), E>,
    ) -> Result<Option<std::result::Result<Mapping, E>>> {
        let mut db = self.db.lock();
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let Some(mut m) = tx
            .query_row(
                &format!(
                    "SELECT {MAPPING_COLUMNS} FROM mappings WHERE uuid = ?1 AND account_id = ?2"
                ),
                params![uuid, account],
                mapping_of,
            )
            .optional()?
        else {
            return Ok(None);
        };
        if let Err(e) = change(&mut m) {
            return Ok(Some(Err(e)));
        }
        Self::write_mapping(&tx, &m)?;
        tx.commit()?;
        Ok(Some(Ok(m)))
    }

    fn write_mapping(db: &Connection, m: &Mapping) -> Result<()> {
        db.execute(
            &format!("INSERT OR REPLACE INTO mappings ({MAPPING_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"),
            params![
                m.uuid,
                m.account,
                m.function_name,
                m.qualifier,
                m.queue_account,
                m.queue,
                m.batch_size,
                m.window_s,
                m.enabled,
                m.report_failures,
                m.max_concurrency,
                m.modified_ms
            ],
        )?;
        Ok(())
    }

    /// A mapping of the account, if it exists.
    pub fn mapping(&self, account: &str, uuid: &str) -> Result<Option<Mapping>> {
        let db = self.db.lock();
        Ok(db
            .query_row(
                &format!(
                    "SELECT {MAPPING_COLUMNS} FROM mappings WHERE uuid = ?1 AND account_id = ?2"
                ),
                params![uuid, account],
                mapping_of,
            )
            .optional()?)
    }

    /// Every mapping on the node (`account`: `None`) or of one account, in
    /// uuid order.
    pub fn mappings(&self, account: Option<&str>) -> Result<Vec<Mapping>> {
        let db = self.db.lock();
        let mut st = db.prepare_cached(&format!(
            "SELECT {MAPPING_COLUMNS} FROM mappings WHERE ?1 IS NULL OR account_id = ?1 ORDER BY uuid"
        ))?;
        let rows = st.query_map(params![account], mapping_of)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Deletes a mapping; what it was, if it existed.
    pub fn delete_mapping(&self, account: &str, uuid: &str) -> Result<Option<Mapping>> {
        let mut db = self.db.lock();
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let m = tx
            .query_row(
                &format!(
                    "SELECT {MAPPING_COLUMNS} FROM mappings WHERE uuid = ?1 AND account_id = ?2"
                ),
                params![uuid, account],
                mapping_of,
            )
            .optional()?;
        if m.is_some() {
            tx.execute(
                "DELETE FROM mappings WHERE uuid = ?1 AND account_id = ?2",
                params![uuid, account],
            )?;
            tx.commit()?;
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: &str, body: &str) -> NewMessage {
        NewMessage {
            id: id.to_owned(),
            body: body.to_owned(),
            md5_of_body: String::new(),
            md5_of_attributes: None,
            attributes: Vec::new(),
            delay_s: None,
        }
    }

    #[test]
    fn mappings_are_per_account() {
        let s = SqsStore::open_in_memory().unwrap();
        let m = Mapping {
            uuid: "u1".into(),
            account: "111111111111".into(),
            function_name: "f".into(),
            qualifier: None,
            queue_account: "111111111111".into(),
            queue: "q".into(),
            batch_size: 10,
            window_s: 0,
            enabled: true,
            report_failures: true,
            max_concurrency: Some(2),
            modified_ms: 5,
        };
        assert_eq!(s.insert_mapping(&m).unwrap(), None);
        assert_eq!(s.mapping("111111111111", "u1").unwrap(), Some(m.clone()));
        assert_eq!(s.mapping("222222222222", "u1").unwrap(), None);
        assert_eq!(s.mappings(None).unwrap(), vec![m.clone()]);
        assert!(s.mappings(Some("222222222222")).unwrap().is_empty());
        let twin = Mapping {
            uuid: "u2".into(),
            ..m.clone()
        };
        assert_eq!(s.insert_mapping(&twin).unwrap(), Some("u1".into()));
        assert_eq!(s.mappings(None).unwrap().len(), 1);
        let off = s
            .modify_mapping("111111111111", "u1", |m| {
                m.enabled = false;
                Ok::<(), ()>(())
            })
            .unwrap();
        assert!(matches!(off, Some(Ok(ref x)) if !x.enabled));
        assert!(!s.mapping("111111111111", "u1").unwrap().unwrap().enabled);
        let refused = s
            .modify_mapping("111111111111", "u1", |m| {
                m.enabled = true;
                Err("no")
            })
            .unwrap();
        assert!(matches!(refused, Some(Err("no"))));
        assert!(!s.mapping("111111111111", "u1").unwrap().unwrap().enabled);
        assert!(s
            .modify_mapping("222222222222", "u1", |_| Ok::<(), ()>(()))
            .unwrap()
            .is_none());
        assert!(s.delete_mapping("222222222222", "u1").unwrap().is_none());
        assert!(s.delete_mapping("111111111111", "u1").unwrap().is_some());
        assert!(s.mappings(None).unwrap().is_empty());
    }

    #[test]
    fn md5_matches_rfc_1321() {
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(
            md5_hex(b"The quick brown fox jumps over the lazy dog"),
            "9e107d9d372bb6826bd81d3542a419d6"
        );
    }

    #[test]
    fn receipt_handles_round_trip() {
        let h = receipt_handle("123456789012", "q", "id-1", "tok");
        assert_eq!(
            parse_receipt_handle(&h),
            Some((
                "123456789012".into(),
                "q".into(),
                "id-1".into(),
                "tok".into()
            ))
        );
        assert_eq!(parse_receipt_handle("bogus"), None);
    }

    #[test]
    fn create_is_idempotent_only_with_the_same_settings() {
        let s = SqsStore::open_in_memory().unwrap();
        s.create_queue("a", "q", QueueSettings::default(), 1)
            .unwrap();
        s.create_queue("a", "q", QueueSettings::default(), 2)
            .unwrap();
        let other = QueueSettings {
            delay_s: 5,
            ..QueueSettings::default()
        };
        assert!(matches!(
            s.create_queue("a", "q", other, 3),
            Err(SqsError::QueueExists)
        ));
        assert!(matches!(s.queue("b", "q"), Err(SqsError::NoQueue)));
        assert_eq!(s.list_queues("a", "", None, 10).unwrap(), vec!["q"]);
    }

    #[test]
    fn visibility_and_redelivery() {
        let s = SqsStore::open_in_memory().unwrap();
        s.create_queue("a", "q", QueueSettings::default(), 0)
            .unwrap();
        s.send("a", "q", &[msg("m1", "x"), msg("m2", "y")], 1000)
            .unwrap();
        let got = s.receive("a", "q", 1, Some(10), 1000).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].id, "m1");
        let c = s.counts("a", "q", 1000).unwrap();
        assert_eq!((c.visible, c.in_flight), (1, 1));
        // Hidden until its timeout passes, then back with a second count.
        let again = s.receive("a", "q", 10, Some(10), 2000).unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].id, "m2");
        let later = s.receive("a", "q", 10, None, 11_000).unwrap();
        assert_eq!(later[0].id, "m1");
        assert_eq!(later[0].receive_count, 2);
        assert!(matches!(
            s.change_visibility("a", "q", "m1", &got[0].token, 5, 11_000),
            Err(SqsError::NotInflight)
        ));
        s.change_visibility("a", "q", "m1", &later[0].token, 0, 11_000)
            .unwrap();
        s.delete_message("a", "q", "m1").unwrap();
        s.delete_message("a", "q", "m2").unwrap();
        assert_eq!(s.counts("a", "q", 100_000).unwrap(), QueueCounts::default());
    }

    #[test]
    fn redrive_moves_messages_received_too_often() {
        let s = SqsStore::open_in_memory().unwrap();
        s.create_queue("a", "dlq", QueueSettings::default(), 0)
            .unwrap();
        let src = QueueSettings {
            redrive: Some(Redrive {
                dead_letter_queue: "dlq".into(),
                max_receive_count: 2,
            }),
            ..QueueSettings::default()
        };
        s.create_queue("a", "q", src, 0).unwrap();
        s.send("a", "q", &[msg("m1", "x")], 1000).unwrap();
        assert_eq!(s.receive("a", "q", 1, Some(1), 1000).unwrap().len(), 1);
        assert_eq!(s.receive("a", "q", 1, Some(1), 3000).unwrap().len(), 1);
        // Received twice and not deleted: the next receive moves it.
        assert!(s.receive("a", "q", 1, Some(1), 5000).unwrap().is_empty());
        let moved = s.receive("a", "dlq", 10, None, 5000).unwrap();
        assert_eq!(moved.len(), 1);
        assert_eq!((moved[0].id.as_str(), moved[0].body.as_str()), ("m1", "x"));
        assert_eq!((moved[0].receive_count, moved[0].sent_ms), (1, 1000));
        assert_eq!(s.counts("a", "q", 5000).unwrap(), QueueCounts::default());
    }

    #[test]
    fn expired_messages_are_never_delivered() {
        let s = SqsStore::open_in_memory().unwrap();
        let short = QueueSettings {
            retention_s: 60,
            ..QueueSettings::default()
        };
        s.create_queue("a", "q", short, 0).unwrap();
        s.send("a", "q", &[msg("m1", "x")], 0).unwrap();
        assert!(s.receive("a", "q", 10, None, 60_000).unwrap().is_empty());
    }
}
