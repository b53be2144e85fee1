//! The durable queue behind asynchronous invocation
//! (`X-Amz-Invocation-Type: Event`).
//!
//! An accepted event is committed here before the API answers 202; the
//! dispatcher then takes due events, marks each running (counting the
//! attempt) *before* it starts, and finally completes, reschedules or
//! dead-letters it. Delivery is at least once: an event a crash caught
//! running is simply due again at the next start ([`EventQueue::recover`]),
//! its `invoke_count` telling the function it may have seen it before.
//!
//! [`SqliteEventQueue`] keeps the queue in its own SQLite file beside the
//! registry (WAL, `synchronous=FULL`: an acknowledged event survives
//! `kill -9` and power loss). Acceptance is group-committed: callers that
//! arrive while a commit is in flight share the next transaction and its
//! single fsync, so throughput grows with concurrency instead of being
//! capped at one fsync per event. A broker-backed queue can follow behind
//! the same trait.
//!
//! ```
//! use hearth_store::{EventQueue, SqliteEventQueue};
//! use hearth_types::events::NewEvent;
//! let dir = tempfile::tempdir().unwrap();
//! let queue = SqliteEventQueue::open(&dir.path().join("events.sqlite")).unwrap();
//! queue
//!     .enqueue(NewEvent {
//!         id: "c0ffee".into(),
//!         account_id: "000000000000".into(),
//!         function_name: "hello".into(),
//!         qualifier: None,
//!         payload: b"{}".to_vec(),
//!         client_context: None,
//!         received_ms: 1_000,
//!         not_before_ms: 1_000,
//!         window_end_ms: None,
//!     })
//!     .unwrap();
//! let due = queue.due(1_000, 10).unwrap();
//! assert_eq!(queue.start(&due[0].event.id).unwrap(), 1);
//! queue.complete("c0ffee", None).unwrap();
//! assert_eq!(queue.counts(1_000).unwrap().running, 0);
//! ```

use crate::registry::{Result, StoreError};
use crate::sqlite::{migrate, restrict_to_owner};
use hearth_types::events::{DeadLetter, FailureCondition, NewEvent, QueueCounts, QueuedEvent};
use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;
use std::time::Duration;

/// A queue of events for asynchronous invocation. Every method is atomic;
/// every one that changes the queue has reached the disk when it returns
/// `Ok`.
pub trait EventQueue: Send + Sync + fmt::Debug {
    /// Stores the event durably; returns only once it is committed.
    /// Concurrent callers are group-committed (one transaction, one fsync,
    /// for everyone waiting). An id already queued is an error, not a no-op:
    /// ids are fresh UUIDs, so a repeat means a bug, and silently keeping
    /// the first payload would hide it.
    fn enqueue(&self, ev: NewEvent) -> Result<()>;
    /// At start: every event left running by a previous process becomes
    /// waiting again, keeping its `invoke_count` and its `not_before_ms`
    /// (which had passed when it was started, so it is due now). Returns
    /// how many.
    fn recover(&self) -> Result<u64>;
    /// Waiting events with `not_before_ms <= now_ms`, at most `limit`,
    /// soonest deadline first: `COALESCE(window_end_ms, not_before_ms)`,
    /// then `received_ms`, then id. Events due now without a window thus
    /// come before deferred ones, unless a window is about to close.
    fn due(&self, now_ms: i64, limit: usize) -> Result<Vec<QueuedEvent>>;
    /// The earliest `not_before_ms` among waiting events (the dispatcher
    /// sleeps until then); `None` if none is waiting.
    fn next_due_ms(&self) -> Result<Option<i64>>;
    /// Marks a waiting event running and counts the invocation, durably,
    /// before the attempt starts. Returns the new `invoke_count`;
    /// [`StoreError::EventNotFound`] if it is not waiting.
    fn start(&self, id: &str) -> Result<u32>;
    /// Puts a running event back to waiting after an attempt, not to be
    /// tried before `not_before_ms`, with `attempts` as its new count of
    /// function errors. `ran: false` (throttled, no capacity) means the
    /// function never started: the invocation [`start`](Self::start)
    /// counted is taken back, and a `last_response` of `None` keeps the
    /// previous one. After a run, `last_response` replaces it.
    fn reschedule(
        &self,
        id: &str,
        not_before_ms: i64,
        attempts: u32,
        ran: bool,
        last_response: Option<&[u8]>,
    ) -> Result<()>;
    /// Removes a running event that succeeded and, in the same transaction,
    /// enqueues `follow_up` (its OnSuccess destination's record) if any.
    fn complete(&self, id: &str, follow_up: Option<NewEvent>) -> Result<()>;
    /// Moves an event, running or waiting, to its function's dead letters
    /// with this condition and `response` (`None`: the last function error
    /// recorded by [`reschedule`](Self::reschedule), if any), enqueuing
    /// `follow_up` (its OnFailure destination's record) in the same
    /// transaction.
    ///
    /// `invoke_count` is what the record reports: the times the function
    /// really ran for it (an attempt cut short before the function started
    /// is not one). A function keeps its newest [`DEAD_LETTERS_KEPT`].
    fn dead_letter(
        &self,
        id: &str,
        condition: FailureCondition,
        response: Option<&[u8]>,
        invoke_count: u32,
        now_ms: i64,
        follow_up: Option<NewEvent>,
    ) -> Result<()>;
    /// Drops a deleted function's events, waiting or running (a running
    /// attempt's end then finds nothing to record). Returns how many.
    fn purge_function(&self, account: &str, function: &str) -> Result<u64>;
    /// The function's dead letters, oldest first, at most `limit`.
    fn dead_letters(&self, account: &str, function: &str, limit: usize) -> Result<Vec<DeadLetter>>;
    /// Moves all of a function's dead letters back into the queue as fresh
    /// events (same id; received and due at `now_ms`; no window; no
    /// attempts or invocations). Returns how many.
    fn redrive(&self, account: &str, function: &str, now_ms: i64) -> Result<u64>;
    /// How many events are in each state at `now_ms`: deferred (waiting,
    /// window still open), retrying (waiting for a back-off, not deferred),
    /// ready (the other waiting ones), running, dead letters.
    fn counts(&self, now_ms: i64) -> Result<QueueCounts>;
    /// The oldest waiting or running event's `received_ms` (the event-age
    /// metric); `None` if the queue is empty.
    fn oldest_received_ms(&self) -> Result<Option<i64>>;
}

/// The schema of the queue's file, one step per entry, counted in
/// `PRAGMA user_version` as the registry's is. A shipped step is never
/// edited; a change is a new entry at the end.
const MIGRATIONS: &[&str] = &[
    // 1: the queue and the dead letters.
    r#"
    -- running: an attempt has been started (and counted in invoke_count).
    -- last_response: the last attempt's function error body.
    CREATE TABLE events (
        id             TEXT PRIMARY KEY,
        account_id     TEXT NOT NULL,
        function_name  TEXT NOT NULL,
        qualifier      TEXT,
        payload        BLOB NOT NULL,
        client_context TEXT,
        received_ms    INTEGER NOT NULL,
        not_before_ms  INTEGER NOT NULL,
        window_end_ms  INTEGER,
        attempts       INTEGER NOT NULL CHECK (attempts >= 0),
        invoke_count   INTEGER NOT NULL CHECK (invoke_count >= 0),
        running        INTEGER NOT NULL CHECK (running IN (0, 1)),
        last_response  BLOB
    ) STRICT;
    -- due(): waiting events in deadline order; the expression and the
    -- WHERE clause match the query's so the planner walks this index.
    CREATE INDEX events_waiting_by_deadline
        ON events (COALESCE(window_end_ms, not_before_ms), received_ms, id)
        WHERE running = 0;
    -- next_due_ms().
    CREATE INDEX events_waiting_by_not_before ON events (not_before_ms)
        WHERE running = 0;
    -- oldest_received_ms().
    CREATE INDEX events_by_received ON events (received_ms);

    -- seq orders dead letters of the same millisecond.
    CREATE TABLE dead_letters (
        seq            INTEGER PRIMARY KEY AUTOINCREMENT,
        id             TEXT NOT NULL UNIQUE,
        account_id     TEXT NOT NULL,
        function_name  TEXT NOT NULL,
        qualifier      TEXT,
        payload        BLOB NOT NULL,
        client_context TEXT,
        received_ms    INTEGER NOT NULL,
        not_before_ms  INTEGER NOT NULL,
        window_end_ms  INTEGER,
        condition      TEXT NOT NULL,
        invoke_count   INTEGER NOT NULL CHECK (invoke_count >= 0),
        response       BLOB,
        dead_ms        INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX dead_letters_by_function
        ON dead_letters (account_id, function_name, dead_ms, seq);
    "#,
];

/// How long the reader waits for a lock (only a checkpoint or another
/// process's write could hold one it needs).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The most writes one transaction takes: bounds a group's latency while
/// still amortising the fsync over hundreds of callers.
const MAX_GROUP: usize = 512;

/// Dead letters kept per function; older ones are dropped.
pub const DEAD_LETTERS_KEPT: usize = 10_000;

/// Writes waiting for the writer beyond those it is committing; callers
/// past this block, which is the back-pressure acceptance should feel.
const WRITE_BACKLOG: usize = 4 * MAX_GROUP;

/// The event columns `NewEvent` is read from, in `event_from_row`'s order.
const EVENT_COLUMNS: &str = "id, account_id, function_name, qualifier, payload, \
    client_context, received_ms, not_before_ms, window_end_ms";

/// The queue in one SQLite file.
///
/// Every write goes through one writer thread owning the only writing
/// connection, which runs whatever is waiting as one transaction: not only
/// acceptance but the dispatcher's `start`/`complete`/… share the group's
/// fsync, and no writer of ours ever waits on another's lock (SQLite's busy
/// handler polls with sleeps of up to 100 ms, which would stall acceptance
/// whenever the dispatcher writes). Each write runs in its own savepoint, so
/// one that fails (an event not in the state it needs) is undone alone and
/// the rest of the group commits. Reads go to a second, query-only
/// connection: in WAL a reader neither blocks the writer nor waits for it,
/// and sees everything committed before its statement starts.
pub struct SqliteEventQueue {
    path: PathBuf,
    /// `None` only while dropping, to stop the writer.
    writes: Option<SyncSender<Box<dyn QueuedWrite>>>,
    writer: Option<JoinHandle<()>>,
    reader: Mutex<Connection>,
    /// Dead letters kept per function ([`DEAD_LETTERS_KEPT`]).
    dead_letters_kept: usize,
}

impl fmt::Debug for SqliteEventQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteEventQueue")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteEventQueue {
    /// Opens (or creates) the queue's file and brings its schema up to date.
    /// A file this call creates is readable by its owner only: payloads are
    /// the tenants' data.
    pub fn open(path: &Path) -> Result<Self> {
        let fresh = !path.exists();
        let mut conn = Connection::open(path)?;
        if fresh {
            restrict_to_owner(path)?;
        }
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if mode != "wal" {
            tracing::warn!(mode, "the event queue could not switch to WAL journaling");
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        migrate(&mut conn, MIGRATIONS, "event queue")?;

        let reader = Connection::open(path)?;
        reader.busy_timeout(BUSY_TIMEOUT)?;
        reader.pragma_update(None, "query_only", "ON")?;

        let (writes, queued) = mpsc::sync_channel(WRITE_BACKLOG);
        let writer = std::thread::Builder::new()
            .name("event-queue-writer".into())
            .spawn(move || run_writer(conn, queued))?;
        Ok(Self {
            path: path.to_owned(),
            writes: Some(writes),
            writer: Some(writer),
            reader: Mutex::new(reader),
            dead_letters_kept: DEAD_LETTERS_KEPT,
        })
    }

    /// Keeps at most `n` dead letters per function (at least 1).
    #[must_use]
    pub fn with_dead_letters_kept(mut self, n: usize) -> Self {
        self.dead_letters_kept = n.max(1);
        self
    }

    /// Runs `op` in the writer's next group and waits until that group has
    /// committed: `op`'s own result if it did, the group's error if not.
    fn write<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (reply, answer) = mpsc::sync_channel(1);
        let pending = Box::new(Pending {
            op: Some(op),
            out: None,
            reply,
        });
        self.writes
            .as_ref()
            .ok_or_else(writer_stopped)?
            .send(pending)
            .map_err(|_| writer_stopped())?;
        answer.recv().map_err(|_| writer_stopped())?
    }
}

impl Drop for SqliteEventQueue {
    fn drop(&mut self) {
        // Closing the channel lets the writer finish what is queued and stop;
        // joining it closes the file before a reopen in the same process.
        self.writes = None;
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                tracing::error!("the event queue's writer panicked");
            }
        }
    }
}

fn writer_stopped() -> StoreError {
    StoreError::EventQueue("its writer thread has stopped".into())
}

/// A write waiting for the writer thread.
trait QueuedWrite: Send {
    /// Runs the write inside the group's transaction, in a savepoint of its
    /// own. `Err` means the transaction itself is broken (the savepoint
    /// could not be opened or undone): the group must not commit.
    fn apply(&mut self, conn: &Connection) -> Result<()>;
    /// Tells the caller: its own result if the group committed, otherwise
    /// why the group failed.
    fn answer(self: Box<Self>, group: Result<(), &StoreError>);
}

struct Pending<T, F> {
    op: Option<F>,
    out: Option<Result<T>>,
    reply: SyncSender<Result<T>>,
}

impl<T, F> QueuedWrite for Pending<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<T> + Send,
{
    fn apply(&mut self, conn: &Connection) -> Result<()> {
        let Some(op) = self.op.take() else {
            return Ok(());
        };
        conn.prepare_cached("SAVEPOINT write")?.execute([])?;
        let out = op(conn);
        if out.is_ok() {
            conn.prepare_cached("RELEASE write")?.execute([])?;
        } else {
            conn.prepare_cached("ROLLBACK TO write")?.execute([])?;
            conn.prepare_cached("RELEASE write")?.execute([])?;
        }
        self.out = Some(out);
        Ok(())
    }

    fn answer(self: Box<Self>, group: Result<(), &StoreError>) {
        let out = match (group, self.out) {
            (Ok(()), Some(out)) => out,
            (Err(e), _) => Err(StoreError::EventQueue(format!(
                "the write was not committed: {e}"
            ))),
            (Ok(()), None) => Err(StoreError::EventQueue("the write was never run".into())),
        };
        // The caller waits on the other end; if it has gone, nobody is left
        // to tell.
        let _ = self.reply.send(out);
    }
}

/// The writer thread: takes everything waiting (up to [`MAX_GROUP`]), runs
/// it as one transaction, commits once, then answers every caller. Stops
/// when the queue is dropped.
fn run_writer(conn: Connection, queued: Receiver<Box<dyn QueuedWrite>>) {
    while let Ok(first) = queued.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            let Ok(w) = queued.try_recv() else { break };
            group.push(w);
        }
        let outcome = commit_group(&conn, &mut group);
        if let Err(e) = &outcome {
            tracing::error!(error = %e, writes = group.len(), "event queue commit failed");
        }
        for w in group {
            w.answer(outcome.as_ref().map(|_| ()));
        }
    }
}

fn commit_group(conn: &Connection, group: &mut [Box<dyn QueuedWrite>]) -> Result<()> {
    conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
    let applied = group.iter_mut().try_for_each(|w| {
        w.apply(conn)?;
        // SQLite rolls the whole transaction back by itself after some
        // errors (a full disk, I/O); later writes would then run, and
        // commit, on their own. Stop instead and fail the group.
        if conn.is_autocommit() {
            return Err(StoreError::EventQueue(
                "SQLite rolled the transaction back".into(),
            ));
        }
        Ok(())
    });
    let committed = applied.and_then(|()| Ok(conn.prepare_cached("COMMIT")?.execute([])?));
    if committed.is_err() && !conn.is_autocommit() {
        if let Err(e) = conn.execute_batch("ROLLBACK") {
            tracing::error!(error = %e, "event queue rollback failed");
        }
    }
    committed.map(|_| ())
}

// ---- rows ---------------------------------------------------------------------

fn int(x: usize) -> i64 {
    i64::try_from(x).unwrap_or(i64::MAX)
}

fn count(n: i64, id: &str, what: &str) -> Result<u32> {
    u32::try_from(n).map_err(|_| StoreError::Corrupt(format!("event {id}: {what} {n}")))
}

/// Reads `EVENT_COLUMNS` starting at column 0.
fn event_from_row(r: &Row<'_>) -> rusqlite::Result<NewEvent> {
    Ok(NewEvent {
        id: r.get(0)?,
        account_id: r.get(1)?,
        function_name: r.get(2)?,
        qualifier: r.get(3)?,
        payload: r.get(4)?,
        client_context: r.get(5)?,
        received_ms: r.get(6)?,
        not_before_ms: r.get(7)?,
        window_end_ms: r.get(8)?,
    })
}

fn insert_event(conn: &Connection, ev: &NewEvent) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO events (id, account_id, function_name, qualifier, payload, client_context, \
         received_ms, not_before_ms, window_end_ms, attempts, invoke_count, running) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0, 0, 0)",
    )?
    .execute(params![
        ev.id,
        ev.account_id,
        ev.function_name,
        ev.qualifier,
        ev.payload,
        ev.client_context,
        ev.received_ms,
        ev.not_before_ms,
        ev.window_end_ms,
    ])?;
    Ok(())
}

/// `due()`'s query. The unary `+` keeps the planner off the not-before
/// index (which would sort every due event to return a few): it walks
/// `events_waiting_by_deadline` in order instead and stops after `?2` rows.
fn due_sql() -> String {
    format!(
        "SELECT {EVENT_COLUMNS}, attempts, invoke_count, last_response FROM events \
         WHERE running = 0 AND +not_before_ms <= ?1 \
         ORDER BY COALESCE(window_end_ms, not_before_ms), received_ms, id LIMIT ?2"
    )
}

fn not_found(id: &str, state: &'static str) -> StoreError {
    StoreError::EventNotFound {
        id: id.to_owned(),
        state,
    }
}

impl EventQueue for SqliteEventQueue {
    fn enqueue(&self, ev: NewEvent) -> Result<()> {
        self.write(move |conn| insert_event(conn, &ev))
    }

    fn recover(&self) -> Result<u64> {
        self.write(|conn| {
            let n = conn
                .prepare_cached("UPDATE events SET running = 0 WHERE running = 1")?
                .execute([])?;
            Ok(n as u64)
        })
    }

    fn due(&self, now_ms: i64, limit: usize) -> Result<Vec<QueuedEvent>> {
        let conn = self.reader.lock();
        let sql = due_sql();
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt
            .query_map(params![now_ms, int(limit)], |r| {
                Ok((
                    event_from_row(r)?,
                    r.get::<_, i64>(9)?,
                    r.get::<_, i64>(10)?,
                    r.get::<_, Option<Vec<u8>>>(11)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter()
            .map(|(event, attempts, invoke_count, last_response)| {
                Ok(QueuedEvent {
                    attempts: count(attempts, &event.id, "attempts")?,
                    invoke_count: count(invoke_count, &event.id, "invoke count")?,
                    running: false,
                    last_response,
                    event,
                })
            })
            .collect()
    }

    fn next_due_ms(&self) -> Result<Option<i64>> {
        Ok(self
            .reader
            .lock()
            .prepare_cached("SELECT MIN(not_before_ms) FROM events WHERE running = 0")?
            .query_row([], |r| r.get(0))?)
    }

    fn start(&self, id: &str) -> Result<u32> {
        let id = id.to_owned();
        self.write(move |conn| {
            let n: Option<i64> = conn
                .prepare_cached(
                    "UPDATE events SET running = 1, invoke_count = invoke_count + 1 \
                     WHERE id = ?1 AND running = 0 RETURNING invoke_count",
                )?
                .query_row([&id], |r| r.get(0))
                .optional()?;
            let n = n.ok_or_else(|| not_found(&id, "waiting"))?;
            count(n, &id, "invoke count")
        })
    }

    fn reschedule(
        &self,
        id: &str,
        not_before_ms: i64,
        attempts: u32,
        ran: bool,
        last_response: Option<&[u8]>,
    ) -> Result<()> {
        let id = id.to_owned();
        let last_response = last_response.map(<[u8]>::to_vec);
        self.write(move |conn| {
            let n = conn
                .prepare_cached(
                    "UPDATE events SET running = 0, not_before_ms = ?2, attempts = ?3, \
                     invoke_count = CASE WHEN ?4 THEN invoke_count ELSE MAX(invoke_count - 1, 0) END, \
                     last_response = CASE WHEN ?4 THEN ?5 ELSE COALESCE(?5, last_response) END \
                     WHERE id = ?1 AND running = 1",
                )?
                .execute(params![id, not_before_ms, attempts, ran, last_response])?;
            if n == 0 {
                return Err(not_found(&id, "running"));
            }
            Ok(())
        })
    }

    fn complete(&self, id: &str, follow_up: Option<NewEvent>) -> Result<()> {
        let id = id.to_owned();
        self.write(move |conn| {
            let n = conn
                .prepare_cached("DELETE FROM events WHERE id = ?1 AND running = 1")?
                .execute([&id])?;
            if n == 0 {
                return Err(not_found(&id, "running"));
            }
            if let Some(ev) = &follow_up {
                insert_event(conn, ev)?;
            }
            Ok(())
        })
    }

    fn dead_letter(
        &self,
        id: &str,
        condition: FailureCondition,
        response: Option<&[u8]>,
        invoke_count: u32,
        now_ms: i64,
        follow_up: Option<NewEvent>,
    ) -> Result<()> {
        let id = id.to_owned();
        let response = response.map(<[u8]>::to_vec);
        let kept = self.dead_letters_kept;
        self.write(move |conn| {
            let owner: (String, String) = match conn
                .prepare_cached("SELECT account_id, function_name FROM events WHERE id = ?1")?
                .query_row([&id], |r| Ok((r.get(0)?, r.get(1)?)))
            {
                Ok(o) => o,
                Err(rusqlite::Error::QueryReturnedNoRows) => return Err(not_found(&id, "queued")),
                Err(e) => return Err(e.into()),
            };
            let sql = format!(
                "INSERT INTO dead_letters ({EVENT_COLUMNS}, condition, invoke_count, response, \
                 dead_ms) SELECT {EVENT_COLUMNS}, ?2, ?5, COALESCE(?3, last_response), \
                 ?4 FROM events WHERE id = ?1"
            );
            let n = conn.prepare_cached(&sql)?.execute(params![
                id,
                condition.as_str(),
                response,
                now_ms,
                invoke_count
            ])?;
            if n == 0 {
                return Err(not_found(&id, "queued"));
            }
            conn.prepare_cached("DELETE FROM events WHERE id = ?1")?
                .execute([&id])?;
            // Bounded: the function keeps its newest dead letters.
            conn.prepare_cached(
                "DELETE FROM dead_letters WHERE account_id = ?1 AND function_name = ?2 \
                 AND seq <= (SELECT seq FROM dead_letters WHERE account_id = ?1 \
                 AND function_name = ?2 ORDER BY seq DESC LIMIT 1 OFFSET ?3)",
            )?
            .execute(params![owner.0, owner.1, int(kept)])?;
            if let Some(ev) = &follow_up {
                insert_event(conn, ev)?;
            }
            Ok(())
        })
    }

    fn purge_function(&self, account: &str, function: &str) -> Result<u64> {
        let (account, function) = (account.to_owned(), function.to_owned());
        self.write(move |conn| {
            let n = conn
                .prepare_cached("DELETE FROM events WHERE account_id = ?1 AND function_name = ?2")?
                .execute(params![account, function])?;
            Ok(n as u64)
        })
    }

    fn dead_letters(&self, account: &str, function: &str, limit: usize) -> Result<Vec<DeadLetter>> {
        let conn = self.reader.lock();
        let sql = format!(
            "SELECT {EVENT_COLUMNS}, condition, invoke_count, response, dead_ms FROM dead_letters \
             WHERE account_id = ?1 AND function_name = ?2 ORDER BY dead_ms, seq LIMIT ?3"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt
            .query_map(params![account, function, int(limit)], |r| {
                Ok((
                    event_from_row(r)?,
                    r.get::<_, String>(9)?,
                    r.get::<_, i64>(10)?,
                    r.get::<_, Option<Vec<u8>>>(11)?,
                    r.get::<_, i64>(12)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter()
            .map(|(event, condition, invoke_count, response, dead_ms)| {
                Ok(DeadLetter {
                    condition: FailureCondition::parse(&condition).ok_or_else(|| {
                        StoreError::Corrupt(format!("event {}: condition {condition}", event.id))
                    })?,
                    invoke_count: count(invoke_count, &event.id, "invoke count")?,
                    response,
                    dead_ms,
                    event,
                })
            })
            .collect()
    }

    fn redrive(&self, account: &str, function: &str, now_ms: i64) -> Result<u64> {
        let (account, function) = (account.to_owned(), function.to_owned());
        self.write(move |conn| {
            let n = conn
                .prepare_cached(
                    "INSERT INTO events (id, account_id, function_name, qualifier, payload, \
                     client_context, received_ms, not_before_ms, window_end_ms, attempts, \
                     invoke_count, running) \
                     SELECT id, account_id, function_name, qualifier, payload, client_context, \
                     ?3, ?3, NULL, 0, 0, 0 FROM dead_letters \
                     WHERE account_id = ?1 AND function_name = ?2 ORDER BY dead_ms, seq",
                )?
                .execute(params![account, function, now_ms])?;
            conn.prepare_cached(
                "DELETE FROM dead_letters WHERE account_id = ?1 AND function_name = ?2",
            )?
            .execute(params![account, function])?;
            Ok(n as u64)
        })
    }

    fn counts(&self, now_ms: i64) -> Result<QueueCounts> {
        let conn = self.reader.lock();
        // One statement: one snapshot of both tables.
        let (ready, retrying, deferred, running, dead_letters): (i64, i64, i64, i64, i64) = conn
            .prepare_cached(
                "SELECT \
                 COALESCE(SUM(running = 0 AND not_before_ms <= ?1 \
                     AND (window_end_ms IS NULL OR window_end_ms <= ?1)), 0), \
                 COALESCE(SUM(running = 0 AND not_before_ms > ?1 \
                     AND (window_end_ms IS NULL OR window_end_ms <= ?1)), 0), \
                 COALESCE(SUM(running = 0 AND window_end_ms > ?1), 0), \
                 COALESCE(SUM(running = 1), 0), \
                 (SELECT COUNT(*) FROM dead_letters) \
                 FROM events",
            )?
            .query_row([now_ms], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?;
        let n = |x: i64| {
            u64::try_from(x).map_err(|_| StoreError::Corrupt(format!("negative count {x}")))
        };
        Ok(QueueCounts {
            ready: n(ready)?,
            retrying: n(retrying)?,
            deferred: n(deferred)?,
            running: n(running)?,
            dead_letters: n(dead_letters)?,
        })
    }

    fn oldest_received_ms(&self) -> Result<Option<i64>> {
        Ok(self
            .reader
            .lock()
            .prepare_cached("SELECT MIN(received_ms) FROM events")?
            .query_row([], |r| r.get(0))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const T0: i64 = 1_700_000_000_000;

    fn ev(id: &str, received_ms: i64, not_before_ms: i64, window_end_ms: Option<i64>) -> NewEvent {
        NewEvent {
            id: id.into(),
            account_id: "111111111111".into(),
            function_name: "f".into(),
            qualifier: Some("live".into()),
            payload: format!(r#"{{"id":"{id}"}}"#).into_bytes(),
            client_context: Some("ctx".into()),
            received_ms,
            not_before_ms,
            window_end_ms,
        }
    }

    fn now(id: &str) -> NewEvent {
        ev(id, T0, T0, None)
    }

    fn open(dir: &tempfile::TempDir) -> SqliteEventQueue {
        SqliteEventQueue::open(&dir.path().join("events.sqlite")).unwrap()
    }

    fn ids(events: &[QueuedEvent]) -> Vec<&str> {
        events.iter().map(|e| e.event.id.as_str()).collect()
    }

    #[track_caller]
    fn assert_not_found<T: fmt::Debug>(result: Result<T>, state: &str) {
        match result {
            Err(StoreError::EventNotFound { state: s, .. }) => assert_eq!(s, state),
            other => panic!("expected EventNotFound, got {other:?}"),
        }
    }

    #[test]
    fn opens_durable_and_versioned_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        {
            let q = open(&dir);
            let r = q.reader.lock();
            let mode: String = r
                .query_row("PRAGMA journal_mode", [], |x| x.get(0))
                .unwrap();
            assert_eq!(mode, "wal");
            let version: i64 = r
                .query_row("PRAGMA user_version", [], |x| x.get(0))
                .unwrap();
            assert_eq!(version, int(MIGRATIONS.len()));
        }
        let q = open(&dir);
        q.enqueue(now("a")).unwrap();
        // The writer's connection is the one whose durability matters.
        let sync: i64 = q
            .write(|c| Ok(c.query_row("PRAGMA synchronous", [], |x| x.get(0))?))
            .unwrap();
        assert_eq!(sync, 2, "synchronous=FULL");
    }

    #[test]
    fn due_is_in_deadline_order() {
        let dir = tempfile::tempdir().unwrap();
        let q = open(&dir);
        let now_ms = T0 + 1_000;
        // Deferred for an hour: its deadline is far off.
        q.enqueue(ev("deferred-long", T0, T0, Some(T0 + 3_600_000)))
            .unwrap();
        // Due now, no window: its deadline is its not-before.
        q.enqueue(ev("plain-late", T0 + 500, T0 + 500, None))
            .unwrap();
        q.enqueue(ev("plain-early", T0 + 100, T0 + 100, None))
            .unwrap();
        // Deferred, but the window closes before the plain ones' deadlines.
        q.enqueue(ev(
            "deferred-closing",
            T0 - 60_000,
            T0 - 60_000,
            Some(T0 + 50),
        ))
        .unwrap();
        // Same deadline: received first goes first, then by id.
        q.enqueue(ev("tie-b", T0 + 100, T0 + 200, None)).unwrap();
        q.enqueue(ev("tie-a", T0 + 100, T0 + 200, None)).unwrap();
        q.enqueue(ev("tie-0", T0 + 50, T0 + 200, None)).unwrap();
        // Not due yet (a retry's back-off).
        q.enqueue(ev("later", T0, T0 + 5_000, None)).unwrap();

        let due = q.due(now_ms, 100).unwrap();
        assert_eq!(
            ids(&due),
            [
                "deferred-closing",
                "plain-early",
                "tie-0",
                "tie-a",
                "tie-b",
                "plain-late",
                "deferred-long"
            ]
        );
        assert_eq!(due[1].event, ev("plain-early", T0 + 100, T0 + 100, None));
        assert_eq!(
            (due[1].attempts, due[1].invoke_count, due[1].running),
            (0, 0, false)
        );
        assert_eq!(
            ids(&q.due(now_ms, 2).unwrap()),
            ["deferred-closing", "plain-early"]
        );
        assert_eq!(q.next_due_ms().unwrap(), Some(T0 - 60_000));
        assert_eq!(q.oldest_received_ms().unwrap(), Some(T0 - 60_000));
        assert!(q.due(T0 - 60_001, 100).unwrap().is_empty());
    }

    #[test]
    fn due_walks_the_deadline_index() {
        let dir = tempfile::tempdir().unwrap();
        let q = open(&dir);
        let plan: Vec<String> = q
            .reader
            .lock()
            .prepare(&format!("EXPLAIN QUERY PLAN {}", due_sql()))
            .unwrap()
            .query_map(params![T0, 10], |r| r.get(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(plan, ["SCAN events USING INDEX events_waiting_by_deadline"]);
    }

    #[test]
    fn an_empty_queue_has_nothing_due() {
        let dir = tempfile::tempdir().unwrap();
        let q = open(&dir);
        assert!(q.due(T0, 10).unwrap().is_empty());
        assert_eq!(q.next_due_ms().unwrap(), None);
        assert_eq!(q.oldest_received_ms().unwrap(), None);
        assert_eq!(q.counts(T0).unwrap(), QueueCounts::default());
        assert_eq!(q.recover().unwrap(), 0);
    }

    #[test]
    fn a_repeated_id_is_refused_and_the_first_kept() {
        let dir = tempfile::tempdir().unwrap();
        let q = open(&dir);
        q.enqueue(now("a")).unwrap();
        let mut again = now("a");
        again.payload = b"{}".to_vec();
        assert!(matches!(q.enqueue(again), Err(StoreError::Sqlite(_))));
        assert_eq!(q.due(T0, 10).unwrap()[0].event, now("a"));
    }

    #[test]
    fn start_counts_the_invocation_and_takes_it_off_due() {
        let dir = tempfile::tempdir().unwrap();
        let q = open(&dir);
        q.enqueue(now("a")).unwrap();
        q.enqueue(now("b")).unwrap();
        assert_eq!(q.start("a").unwrap(), 1);
        assert_eq!(ids(&q.due(T0, 10).unwrap()), ["b"]);
        assert_not_found(q.start("a"), "waiting");
        assert_not_found(q.start("missing"), "waiting");
        // Only running events can be rescheduled or completed.
        assert_not_found(q.reschedule("b", T0, 0, true, None), "running");
        assert_not_found(q.complete("b", None), "running");

        // A function error: retried after a back-off, the error kept.
        q.reschedule("a", T0 + 60_000, 1, true, Some(b"boom"))
            .unwrap();
        assert!(q
            .due(T0 + 59_999, 10)
            .unwrap()
            .iter()
            .all(|e| e.event.id != "a"));
        assert_eq!(q.next_due_ms().unwrap(), Some(T0));
        let due = q.due(T0 + 60_000, 10).unwrap();
        assert_eq!(ids(&due), ["b", "a"]);
        let a = &due[1];
        assert_eq!((a.attempts, a.invoke_count), (1, 1));
        assert_eq!(a.last_response.as_deref(), Some(&b"boom"[..]));
        assert_eq!(q.start("a").unwrap(), 2);
    }

    #[test]
    fn a_reschedule_that_did_not_run_gives_the_invocation_back() {
        let dir = tempfile::tempdir().unwrap();
        let q = open(&dir);
        q.enqueue(now("a")).unwrap();
        q.start("a").unwrap();
        q.reschedule("a", T0, 1, true, Some(b"first error"))
            .unwrap();
        assert_eq!(q.start("a").unwrap(), 2);
        // Throttled: the function never started.
        q.reschedule("a", T0 + 10, 1, false, None).unwrap();
        let a = q.due(T0 + 10, 10).unwrap().remove(0);
        assert_eq!((a.attempts, a.invoke_count), (1, 1));
        assert_eq!(a.last_response.as_deref(), Some(&b"first error"[..]));
        assert_eq!(q.start("a").unwrap(), 2);
        // A run without an error body clears the old one.
        q.reschedule("a", T0 + 20, 2, true, None).unwrap();
        let a = q.due(T0 + 20, 10).unwrap().remove(0);
        assert_eq!((a.attempts, a.invoke_count, a.last_response), (2, 2, None));
    }

    #[test]
    fn complete_removes_the_event_and_enqueues_its_follow_up_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let q = open(&dir);
        q.enqueue(now("a")).unwrap();
        q.enqueue(now("taken")).unwrap();
        q.start("a").unwrap();
        let mut record = now("a-success");
        record.function_name = "on-success".into();
        q.complete("a", Some(record.clone())).unwrap();
        let due = q.due(T0, 10).unwrap();
        assert_eq!(ids(&due), ["a-success", "taken"]);
        assert_eq!(due[0].event, record);
        assert_not_found(q.complete("a", None), "running");

        // A follow-up that cannot be stored leaves the event running.
        q.start("a-success").unwrap();
        assert!(q.complete("a-success", Some(now("taken"))).is_err());
        assert_eq!(q.counts(T0).unwrap().running, 1);
        q.complete("a-success", None).unwrap();
        assert_eq!(ids(&q.due(T0, 10).unwrap()), ["taken"]);
    }

    #[test]
    fn dead_letters_keep_the_story_and_redrive_as_fresh_events() {
        let dir = tempfile::tempdir().unwrap();
        let q = open(&dir);
        let windowed = ev("b", T0, T0, Some(T0 + 3_600_000));
        q.enqueue(now("a")).unwrap();
        q.enqueue(windowed.clone()).unwrap();
        q.enqueue(now("c")).unwrap();
        // "a" ran three times and failed each time.
        for attempt in 1..=3 {
            assert_eq!(q.start("a").unwrap(), attempt);
            if attempt < 3 {
                q.reschedule("a", T0, attempt, true, Some(b"err")).unwrap();
            }
        }
        let mut record = now("a-failure");
        record.function_name = "on-failure".into();
        q.dead_letter(
            "a",
            FailureCondition::RetriesExhausted,
            Some(b"last err"),
            3,
            T0 + 5,
            Some(record.clone()),
        )
        .unwrap();
        // "b" aged out while waiting: the recorded error stands in.
        q.start("b").unwrap();
        q.reschedule("b", T0, 1, true, Some(b"b err")).unwrap();
        q.dead_letter(
            "b",
            FailureCondition::EventAgeExceeded,
            None,
            1,
            T0 + 9,
            None,
        )
        .unwrap();
        assert_not_found(
            q.dead_letter("b", FailureCondition::EventAgeExceeded, None, 1, T0, None),
            "queued",
        );

        assert_eq!(ids(&q.due(T0, 10).unwrap()), ["a-failure", "c"]);
        let dead = q.dead_letters("111111111111", "f", 10).unwrap();
        assert_eq!(dead.len(), 2);
        assert_eq!(
            dead[0],
            DeadLetter {
                event: now("a"),
                condition: FailureCondition::RetriesExhausted,
                invoke_count: 3,
                response: Some(b"last err".to_vec()),
                dead_ms: T0 + 5,
            }
        );
        assert_eq!(dead[1].event, windowed);
        assert_eq!(dead[1].condition, FailureCondition::EventAgeExceeded);
        assert_eq!(dead[1].response.as_deref(), Some(&b"b err"[..]));
        assert_eq!(q.dead_letters("111111111111", "f", 1).unwrap().len(), 1);
        assert!(q.dead_letters("111111111111", "g", 10).unwrap().is_empty());
        assert!(q.dead_letters("222222222222", "f", 10).unwrap().is_empty());
        assert_eq!(q.counts(T0).unwrap().dead_letters, 2);

        let later = T0 + 100_000;
        assert_eq!(q.redrive("111111111111", "f", later).unwrap(), 2);
        assert_eq!(q.redrive("111111111111", "f", later).unwrap(), 0);
        assert!(q.dead_letters("111111111111", "f", 10).unwrap().is_empty());
        let due = q.due(later, 10).unwrap();
        assert_eq!(ids(&due), ["a-failure", "c", "a", "b"]);
        let b = &due[3];
        assert_eq!(b.event, ev("b", later, later, None));
        assert_eq!(
            (b.attempts, b.invoke_count, b.last_response.clone()),
            (0, 0, None)
        );
    }

    #[test]
    fn recover_makes_running_events_due_again_with_their_count() {
        let dir = tempfile::tempdir().unwrap();
        {
            let q = open(&dir);
            q.enqueue(now("a")).unwrap();
            q.enqueue(now("b")).unwrap();
            q.start("a").unwrap();
            q.reschedule("a", T0, 0, true, None).unwrap();
            assert_eq!(q.start("a").unwrap(), 2);
            // The process dies with "a" running.
        }
        let q = open(&dir);
        assert_eq!(ids(&q.due(T0, 10).unwrap()), ["b"]);
        assert_eq!(q.counts(T0).unwrap().running, 1);
        assert_eq!(q.recover().unwrap(), 1);
        let due = q.due(T0, 10).unwrap();
        assert_eq!(ids(&due), ["a", "b"]);
        assert_eq!(due[0].invoke_count, 2);
        assert_eq!(q.start("a").unwrap(), 3);
        assert_eq!(q.recover().unwrap(), 1);
        assert_eq!(q.recover().unwrap(), 0);
    }

    #[test]
    fn counts_sort_events_by_state_at_a_given_time() {
        let dir = tempfile::tempdir().unwrap();
        let q = open(&dir);
        let at = T0 + 1_000;
        q.enqueue(ev("ready", T0, T0, None)).unwrap();
        q.enqueue(ev("window-closed", T0, T0, Some(at))).unwrap();
        q.enqueue(ev("deferred", T0, T0, Some(at + 1))).unwrap();
        q.enqueue(ev("deferred-and-backing-off", T0, at + 10, Some(at + 100)))
            .unwrap();
        q.enqueue(ev("retrying", T0, at + 1, None)).unwrap();
        q.enqueue(ev("running", T0, T0, None)).unwrap();
        q.enqueue(ev("dead", T0, T0, None)).unwrap();
        q.start("running").unwrap();
        q.dead_letter(
            "dead",
            FailureCondition::FunctionNotFound,
            None,
            0,
            at,
            None,
        )
        .unwrap();
        assert_eq!(
            q.counts(at).unwrap(),
            QueueCounts {
                ready: 2,
                retrying: 1,
                deferred: 2,
                running: 1,
                dead_letters: 1,
            }
        );
        // Later every window has closed and every back-off passed.
        assert_eq!(
            q.counts(at + 1_000).unwrap(),
            QueueCounts {
                ready: 5,
                retrying: 0,
                deferred: 0,
                running: 1,
                dead_letters: 1,
            }
        );
    }

    #[test]
    fn concurrent_enqueues_are_all_stored() {
        let dir = tempfile::tempdir().unwrap();
        let q = Arc::new(open(&dir));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let q = Arc::clone(&q);
                std::thread::spawn(move || {
                    for i in 0..50 {
                        q.enqueue(now(&format!("{t}-{i}"))).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(q.due(T0, 1_000).unwrap().len(), 400);
        drop(q);
        let q = open(&dir);
        assert_eq!(q.counts(T0).unwrap().ready, 400);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.sqlite");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        match SqliteEventQueue::open(&path) {
            Err(StoreError::Corrupt(m)) => assert!(m.contains("event queue"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    /// `cargo test -p hearth-store --release -- --ignored --nocapture enqueue_throughput`
    #[test]
    #[ignore = "a measurement, not a check"]
    fn enqueue_throughput() {
        let dir = tempfile::tempdir().unwrap();
        let q = Arc::new(open(&dir));
        let per_thread = 500;
        let mut baseline = None;
        for threads in [1, 8, 64] {
            let start = std::time::Instant::now();
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let q = Arc::clone(&q);
                    std::thread::spawn(move || {
                        for i in 0..per_thread {
                            q.enqueue(now(&format!("{threads}-{t}-{i}"))).unwrap();
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap();
            }
            let rate = f64::from(threads * per_thread) / start.elapsed().as_secs_f64();
            let base = *baseline.get_or_insert(rate);
            println!(
                "{threads:>3} threads: {rate:>9.0} enqueues/s ({:.1}x one thread)",
                rate / base
            );
        }
    }

    #[test]
    fn a_deleted_functions_waiting_events_are_purged_and_dead_letters_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let q = open(&dir).with_dead_letters_kept(2);
        q.enqueue(ev("w1", T0, T0, None)).unwrap();
        q.enqueue(ev("w2", T0, T0, None)).unwrap();
        q.enqueue(ev("run", T0, T0, None)).unwrap();
        q.start("run").unwrap();
        assert_eq!(q.purge_function("111111111111", "f").unwrap(), 3);
        assert!(q.due(T0, 10).unwrap().is_empty());
        // The running one's end finds nothing to record.
        assert_not_found(q.complete("run", None), "running");
        // Dead letters: the newest (here 2) stay.
        for i in 0..3 {
            let id = format!("d{i}");
            q.enqueue(ev(&id, T0, T0, None)).unwrap();
            q.dead_letter(
                &id,
                FailureCondition::RetriesExhausted,
                None,
                0,
                T0 + i,
                None,
            )
            .unwrap();
        }
        let kept = q.dead_letters("111111111111", "f", 10).unwrap();
        let kept: Vec<&str> = kept.iter().map(|d| d.event.id.as_str()).collect();
        assert_eq!(kept, ["d1", "d2"]);
    }
}
