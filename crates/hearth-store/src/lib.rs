//! Hearth's durable state.
//!
//! - [`Registry`]: accounts, access keys, functions, versions, aliases and
//!   concurrency settings, event-invoke configs. [`SqliteRegistry`] is the
//!   embedded implementation (one SQLite file, migrations versioned in
//!   code); an etcd-backed one can follow behind the same trait.
//! - [`CodeStore`]: code zips stored content-addressed by SHA-256, and their
//!   unpacked trees, written atomically *before* the registry row that names
//!   them commits. A crash leaves either the old state or the new one, never a
//!   row without its blob.
//! - [`IamStore`]: IAM's roles and managed policies per account, which
//!   Hearth keeps and lists but does not evaluate; Lambda asks only whether
//!   a function's role exists. Every [`Registry`] is one.
//! - [`EventQueue`]: events accepted for asynchronous invocation, their
//!   retries and dead letters. [`SqliteEventQueue`] keeps them in a file of
//!   their own, group-committing acceptances.
//!
//! - [`SqsStore`]: SQS standard queues and their messages, in a file of
//!   their own written with `synchronous=FULL`.
//!
//! Every operation that checks a precondition (a `RevisionId`, an existing
//! name, a published version) does it inside the same transaction that
//! writes, so concurrent requests cannot interleave between check and write.

pub mod code;
pub mod events;
pub mod iam;
pub mod layers;
pub mod logs;
pub mod registry;
pub mod sqlite;
pub mod sqs;
pub mod urls;
pub mod usage;

pub use code::{CodeError, CodeStore, StagedCode};
pub use events::{EventQueue, SqliteEventQueue};
pub use iam::{IamError, IamStore};
pub use layers::LayerStore;
pub use logs::{LogEvent, LogStore, NewLogEvent};
pub use registry::{
    AliasSpec, ConfigPatch, NewFunction, Page, Registry, StoreError, VersionSelector,
};
pub use sqlite::SqliteRegistry;
pub use sqs::{SqsError, SqsStore};
pub use urls::FunctionUrlStore;
pub use usage::{UsageDelta, UsageQuery, UsageStore, UsageTotals};
