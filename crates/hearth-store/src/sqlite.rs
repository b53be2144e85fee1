//! The embedded [`Registry`]: one SQLite file in the data directory.
//!
//! - **Durable**: WAL journal with `synchronous=FULL`, so a call that
//!   returned `Ok` has reached the disk and survives `kill -9` and power loss.
//! - **Atomic**: every method is one transaction. Those that check a
//!   precondition and then write (a `RevisionId`, a name that must be free, a
//!   version an alias must point at) take the write lock first
//!   (`BEGIN IMMEDIATE`), so no other writer, in this process or another, can
//!   slip in between the check and the write.
//! - **Versioned schema**: [`MIGRATIONS`] are applied in order inside one
//!   transaction and counted in `PRAGMA user_version`. A shipped migration is
//!   never edited; a change is a new entry at the end.
//!
//! Every query names the caller's account, so one tenant never reaches
//! another's rows: to account B, account A's function simply does not exist.
//!
//! ```
//! use hearth_store::{Registry, SqliteRegistry};
//! use hearth_types::arn::NodeIdentity;
//! let registry = SqliteRegistry::open_in_memory(NodeIdentity::new("us-east-1")).unwrap();
//! let (account, key) = registry.create_account("team-a", false).unwrap();
//! let (found, _) = registry.find_access_key(&key.access_key_id).unwrap().unwrap();
//! assert_eq!(found, account);
//! ```

use crate::registry::{
    AliasSpec, ConfigPatch, NewFunction, Page, Registry, Result, StoreError, VersionSelector,
};
use hearth_types::arn::{NodeIdentity, LATEST};
use hearth_types::capacity::{AccountCapacity, CapacityMode};
use hearth_types::events::EventInvokeConfig;
use hearth_types::function::{
    AccessKey, Account, AccountUsage, Alias, CodeRef, FunctionConfig, Lifecycle,
    ProvisionedConcurrencyConfig, ProvisionedStatus, VersionRecord,
};
use hearth_types::limits::UNRESERVED_CONCURRENCY_MIN;
use hearth_types::LambdaError;
use parking_lot::Mutex;
use rand::Rng;
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction, TransactionBehavior};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a statement waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The schema, one step per entry. `PRAGMA user_version` is the number of
/// entries applied.
///
/// Accounts and functions are not tied by a foreign key: a function row is
/// keyed by the caller's account id, and `delete_account` removes the
/// account's functions itself.
const MIGRATIONS: &[&str] = &[
    // 1: accounts, keys, functions, versions, aliases, tags.
    r#"
    CREATE TABLE accounts (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        admin       INTEGER NOT NULL,
        created_ms  INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE access_keys (
        access_key_id TEXT PRIMARY KEY,
        account_id    TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        secret        TEXT NOT NULL
    ) STRICT;
    CREATE INDEX access_keys_by_account ON access_keys(account_id);

    CREATE TABLE functions (
        account_id           TEXT NOT NULL,
        name                 TEXT NOT NULL,
        created_ms           INTEGER NOT NULL,
        reserved_concurrency INTEGER,
        next_version         INTEGER NOT NULL,
        PRIMARY KEY (account_id, name)
    ) STRICT;

    -- seq orders a function's versions: 0 for $LATEST, n for version n.
    -- source_config_json is $LATEST's configuration when the version was
    -- published (NULL for $LATEST): what makes PublishVersion idempotent.
    CREATE TABLE versions (
        account_id         TEXT NOT NULL,
        function_name      TEXT NOT NULL,
        version            TEXT NOT NULL,
        seq                INTEGER NOT NULL,
        config_json        TEXT NOT NULL,
        source_config_json TEXT,
        code_sha256_hex    TEXT NOT NULL,
        code_size          INTEGER NOT NULL,
        unzipped_size      INTEGER NOT NULL,
        last_modified_ms   INTEGER NOT NULL,
        revision_id        TEXT NOT NULL,
        lifecycle_json     TEXT NOT NULL,
        needs_activation   INTEGER NOT NULL,
        PRIMARY KEY (account_id, function_name, version),
        UNIQUE (account_id, function_name, seq),
        FOREIGN KEY (account_id, function_name)
            REFERENCES functions(account_id, name) ON DELETE CASCADE
    ) STRICT;
    CREATE INDEX versions_needing_activation ON versions(needs_activation)
        WHERE needs_activation = 1;
    CREATE INDEX versions_by_code ON versions(code_sha256_hex);

    CREATE TABLE aliases (
        account_id       TEXT NOT NULL,
        function_name    TEXT NOT NULL,
        name             TEXT NOT NULL,
        function_version TEXT NOT NULL,
        description      TEXT NOT NULL,
        routing_json     TEXT NOT NULL,
        revision_id      TEXT NOT NULL,
        PRIMARY KEY (account_id, function_name, name),
        FOREIGN KEY (account_id, function_name)
            REFERENCES functions(account_id, name) ON DELETE CASCADE
    ) STRICT;

    CREATE TABLE tags (
        account_id    TEXT NOT NULL,
        function_name TEXT NOT NULL,
        key           TEXT NOT NULL,
        value         TEXT NOT NULL,
        PRIMARY KEY (account_id, function_name, key),
        FOREIGN KEY (account_id, function_name)
            REFERENCES functions(account_id, name) ON DELETE CASCADE
    ) STRICT;
    "#,
    // 2: provisioned concurrency configs and account capacity settings.
    r#"
    -- qualifier is a version number or an alias name. A config goes with
    -- its function (cascade); with its version or alias the registry
    -- deletes it in the same transaction.
    CREATE TABLE provisioned_concurrency (
        account_id       TEXT NOT NULL,
        function_name    TEXT NOT NULL,
        qualifier        TEXT NOT NULL,
        requested        INTEGER NOT NULL CHECK (requested >= 1),
        allocated        INTEGER NOT NULL CHECK (allocated >= 0),
        status           TEXT NOT NULL,
        status_reason    TEXT,
        last_modified_ms INTEGER NOT NULL,
        PRIMARY KEY (account_id, function_name, qualifier),
        FOREIGN KEY (account_id, function_name)
            REFERENCES functions(account_id, name) ON DELETE CASCADE
    ) STRICT;

    -- One row per account whose settings were ever put; others have the
    -- defaults. dedicated_json maps profile to count.
    CREATE TABLE account_capacity (
        account_id     TEXT PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
        dedicated_json TEXT NOT NULL,
        policy         TEXT NOT NULL,
        max_wait_ms    INTEGER NOT NULL,
        general_share  REAL NOT NULL
    ) STRICT;
    "#,
    // 3: event-invoke configs (asynchronous invocation).
    r#"
    -- qualifier is $LATEST, a version number or an alias name. A config
    -- goes with its function (cascade); with its version or alias the
    -- registry deletes it in the same transaction. NULL: Lambda's default.
    CREATE TABLE event_invoke_configs (
        account_id                TEXT NOT NULL,
        function_name             TEXT NOT NULL,
        qualifier                 TEXT NOT NULL,
        maximum_retry_attempts    INTEGER,
        maximum_event_age_seconds INTEGER,
        on_success                TEXT,
        on_failure                TEXT,
        execution_window_seconds  INTEGER,
        last_modified_ms          INTEGER NOT NULL,
        PRIMARY KEY (account_id, function_name, qualifier),
        FOREIGN KEY (account_id, function_name)
            REFERENCES functions(account_id, name) ON DELETE CASCADE
    ) STRICT;
    "#,
    // 4: IAM roles, customer managed policies, and what is attached to or
    // embedded in each role (see `iam.rs`).
    r#"
    -- IAM names are unique per account whatever their case, and keep the
    -- case they were created with: NOCASE on every name column.
    -- description NULL: none given (AWS then omits it).
    CREATE TABLE iam_roles (
        account_id           TEXT NOT NULL,
        name                 TEXT NOT NULL COLLATE NOCASE,
        path                 TEXT NOT NULL,
        role_id              TEXT NOT NULL UNIQUE,
        trust_policy         TEXT NOT NULL,
        description          TEXT,
        max_session_duration INTEGER NOT NULL,
        tags_json            TEXT NOT NULL,
        created_ms           INTEGER NOT NULL,
        PRIMARY KEY (account_id, name)
    ) STRICT;

    CREATE TABLE iam_policies (
        account_id  TEXT NOT NULL,
        name        TEXT NOT NULL COLLATE NOCASE,
        path        TEXT NOT NULL,
        policy_id   TEXT NOT NULL UNIQUE,
        document    TEXT NOT NULL,
        description TEXT,
        tags_json   TEXT NOT NULL,
        created_ms  INTEGER NOT NULL,
        updated_ms  INTEGER NOT NULL,
        PRIMARY KEY (account_id, name)
    ) STRICT;

    -- policy_arn is an account policy's ARN as stored, or an AWS managed
    -- policy's; name and path are the ARN's. Deleting an attached policy
    -- is refused, so the ARN always names something that exists.
    CREATE TABLE iam_role_attached_policies (
        account_id  TEXT NOT NULL,
        role_name   TEXT NOT NULL COLLATE NOCASE,
        policy_arn  TEXT NOT NULL,
        policy_name TEXT NOT NULL,
        policy_path TEXT NOT NULL,
        PRIMARY KEY (account_id, role_name, policy_arn),
        FOREIGN KEY (account_id, role_name)
            REFERENCES iam_roles(account_id, name) ON DELETE CASCADE
    ) STRICT;
    CREATE INDEX iam_attachments_by_policy
        ON iam_role_attached_policies(account_id, policy_arn);

    CREATE TABLE iam_role_inline_policies (
        account_id TEXT NOT NULL,
        role_name  TEXT NOT NULL COLLATE NOCASE,
        name       TEXT NOT NULL COLLATE NOCASE,
        document   TEXT NOT NULL,
        PRIMARY KEY (account_id, role_name, name),
        FOREIGN KEY (account_id, role_name)
            REFERENCES iam_roles(account_id, name) ON DELETE CASCADE
    ) STRICT;
    "#,
    // 5: function URL configs (see `urls.rs`).
    r#"
    -- qualifier is an alias name, or $LATEST for the unqualified function.
    -- A config goes with its function (cascade), not with its alias: as on
    -- AWS, an alias's URL outlives the alias and then answers 403.
    -- cors_json NULL: no Cors given; invoke_mode NULL: never given.
    CREATE TABLE function_urls (
        account_id       TEXT NOT NULL,
        function_name    TEXT NOT NULL,
        qualifier        TEXT NOT NULL,
        url_id           TEXT NOT NULL UNIQUE,
        auth_type        TEXT NOT NULL,
        cors_json        TEXT,
        invoke_mode      TEXT,
        created_ms       INTEGER NOT NULL,
        last_modified_ms INTEGER NOT NULL,
        PRIMARY KEY (account_id, function_name, qualifier),
        FOREIGN KEY (account_id, function_name)
            REFERENCES functions(account_id, name) ON DELETE CASCADE
    ) STRICT;
    "#,
    // 6: Lambda layers, their versions and version permissions (see `layers.rs`).
    crate::layers::MIGRATION,
];

/// The registry over one SQLite connection.
///
/// One connection behind a mutex: SQLite serialises writers anyway, and the
/// invoke path reads its configuration from memory, not from here.
pub struct SqliteRegistry {
    conn: Mutex<Connection>,
    node: NodeIdentity,
    /// Committed writes so far ([`Registry::write_epoch`]).
    epoch: std::sync::atomic::AtomicU64,
}

impl fmt::Debug for SqliteRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteRegistry")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl SqliteRegistry {
    /// Opens (or creates) the registry file at `path` and brings its schema
    /// up to date. `node` names the region in the ARNs of error messages.
    ///
    /// A file this call creates is readable by its owner only: it holds the
    /// accounts' secret keys.
    pub fn open(path: &Path, node: NodeIdentity) -> Result<Self> {
        let fresh = !path.exists();
        let conn = Connection::open(path)?;
        if fresh {
            // SQLite creates the file on open; its -wal and -shm files, made
            // at the first write, copy this mode.
            restrict_to_owner(path)?;
        }
        Self::init(conn, node)
    }

    /// A registry that lives and dies with this value (for tests).
    pub fn open_in_memory(node: NodeIdentity) -> Result<Self> {
        Self::init(Connection::open_in_memory()?, node)
    }

    /// The node whose ARNs this registry prints.
    pub fn node(&self) -> &NodeIdentity {
        &self.node
    }

    fn init(mut conn: Connection, node: NodeIdentity) -> Result<Self> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // The pragma answers with the mode in force: "wal" for a file,
        // "memory" for an in-memory database.
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if mode != "wal" && mode != "memory" {
            tracing::warn!(mode, "the registry could not switch to WAL journaling");
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrate(&mut conn, MIGRATIONS, "registry")?;
        Ok(Self {
            conn: Mutex::new(conn),
            node,
            epoch: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Runs `f` in a transaction that holds the write lock from its start.
    /// An error from `f` rolls back everything it wrote.
    pub(crate) fn write<T, E: From<rusqlite::Error>>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        // Under the connection's lock: a reader that sees the new epoch
        // reads after this commit.
        self.epoch
            .fetch_add(1, std::sync::atomic::Ordering::Release);
        Ok(out)
    }

    /// Like [`write`](Self::write), without moving the write epoch: only for
    /// what neither the invoke path nor authentication reads (provisioned
    /// concurrency's status reports).
    fn write_unversioned<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Runs `f` in a read transaction: one consistent snapshot.
    pub(crate) fn read<T, E: From<rusqlite::Error>>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    fn function_arn(&self, account: &str, name: &str) -> String {
        self.node.function_arn(account, name)
    }

    fn qualified_arn(&self, account: &str, name: &str, qualifier: &str) -> String {
        self.node.qualified_arn(account, name, qualifier)
    }

    fn function_not_found(&self, account: &str, name: &str) -> StoreError {
        aws::function_not_found(&self.function_arn(account, name)).into()
    }

    fn qualified_not_found(&self, account: &str, name: &str, qualifier: &str) -> StoreError {
        aws::function_not_found(&self.qualified_arn(account, name, qualifier)).into()
    }

    /// 404 unless the function exists.
    fn require_function(&self, tx: &Transaction<'_>, account: &str, name: &str) -> Result<()> {
        if function_exists(tx, account, name)? {
            Ok(())
        } else {
            Err(self.function_not_found(account, name))
        }
    }

    fn require_latest(
        &self,
        tx: &Transaction<'_>,
        account: &str,
        name: &str,
    ) -> Result<VersionRecord> {
        load_version(tx, account, name, LATEST)?
            .ok_or_else(|| self.function_not_found(account, name))
    }

    /// The checks an alias's targets must pass, in the order AWS applies them.
    fn check_alias_targets(
        &self,
        tx: &Transaction<'_>,
        account: &str,
        function: &str,
        primary: &str,
        routing: &BTreeMap<String, f64>,
    ) -> Result<()> {
        if let Some(extra) = routing.keys().next() {
            if primary == LATEST {
                return Err(aws::routing_on_latest().into());
            }
            if extra == primary {
                return Err(aws::routing_same_version(primary).into());
            }
        }
        for version in std::iter::once(primary).chain(routing.keys().map(String::as_str)) {
            if !version_exists(tx, account, function, version)? {
                return Err(self.qualified_not_found(account, function, version));
            }
        }
        Ok(())
    }

    /// The published version or alias a provisioned-concurrency qualifier
    /// names, or AWS's 404 for each (a missing function reads as a missing
    /// version or alias). The caller has refused `$LATEST` already.
    fn provisioned_target(
        &self,
        tx: &Transaction<'_>,
        account: &str,
        function: &str,
        qualifier: &str,
    ) -> Result<ProvisionedTarget> {
        match VersionSelector::from_qualifier(Some(qualifier)) {
            VersionSelector::Latest => Err(aws::provisioned_needs_published().into()),
            VersionSelector::Version(v) => {
                if version_exists(tx, account, function, &v)? {
                    Ok(ProvisionedTarget::Version)
                } else {
                    Err(self.qualified_not_found(account, function, &v))
                }
            }
            VersionSelector::Alias(a) => load_alias(tx, account, function, &a)?
                .map(ProvisionedTarget::Alias)
                .ok_or_else(|| {
                    aws::cannot_find_alias(&self.qualified_arn(account, function, &a)).into()
                }),
        }
    }
}

/// What a provisioned concurrency config is attached to.
enum ProvisionedTarget {
    Version,
    Alias(Alias),
}

#[cfg(unix)]
pub(crate) fn restrict_to_owner(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
pub(crate) fn restrict_to_owner(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Applies the `migrations` this database (`what`: "registry", "event
/// queue") has not seen yet, all in one transaction: a crash half-way
/// leaves the old schema, never a mix.
pub(crate) fn migrate(conn: &mut Connection, migrations: &[&str], what: &str) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let applied: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let known = migrations.len();
    let applied = usize::try_from(applied)
        .map_err(|_| StoreError::Corrupt(format!("schema version {applied} is negative")))?;
    if applied > known {
        return Err(StoreError::Corrupt(format!(
            "the {what}'s schema is version {applied}, newer than this build knows ({known})"
        )));
    }
    for (i, sql) in migrations.iter().enumerate().skip(applied) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", int(i as u64 + 1)?)?;
        tracing::info!(version = i + 1, "{what} schema migrated");
    }
    tx.commit()?;
    Ok(())
}

/// Lambda's messages for the conditions the registry detects, word for word
/// as AWS returns them (see `shared/lambda/aws-recorded`).
mod aws {
    use hearth_types::{ErrorKind, LambdaError};

    pub fn function_not_found(arn: &str) -> LambdaError {
        LambdaError::not_found(format!("Function not found: {arn}"))
    }

    /// AWS's grammar, not ours.
    pub fn function_exists(name: &str) -> LambdaError {
        LambdaError::conflict(format!("Function already exist: {name}"))
    }

    pub fn revision_mismatch() -> LambdaError {
        LambdaError::new(
            ErrorKind::PreconditionFailed,
            "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id",
        )
    }

    pub fn code_sha256_mismatch(given: &str, current: &str) -> LambdaError {
        LambdaError::invalid(format!(
            "CodeSHA256 ({given}) is different from current CodeSHA256 in $LATEST ({current}). Please try again with the CodeSHA256 in $LATEST."
        ))
    }

    pub fn latest_not_deletable() -> LambdaError {
        LambdaError::invalid("$LATEST version cannot be deleted without deleting the function.")
    }

    pub fn alias_not_deletable() -> LambdaError {
        LambdaError::invalid("Deletion of aliases is not currently supported.")
    }

    pub fn version_in_use(aliases: &[String]) -> LambdaError {
        LambdaError::conflict(format!(
            "Unable to delete version because the following aliases reference it: [{}]",
            aliases.join(", ")
        ))
    }

    pub fn alias_exists(arn: &str) -> LambdaError {
        LambdaError::conflict(format!("Alias already exists: {arn}"))
    }

    /// UpdateAlias's wording.
    pub fn alias_not_found(arn: &str) -> LambdaError {
        LambdaError::not_found(format!("Alias not found: {arn}"))
    }

    /// GetAlias's wording.
    pub fn cannot_find_alias(arn: &str) -> LambdaError {
        LambdaError::not_found(format!("Cannot find alias arn: {arn}"))
    }

    pub fn function_version_missing() -> LambdaError {
        LambdaError::validation(&[
            "Value null at 'functionVersion' failed to satisfy constraint: Member must not be null"
                .to_owned(),
        ])
    }

    pub fn routing_too_many() -> LambdaError {
        LambdaError::invalid("Number of items in AdditionalVersionWeights cannot be greater than 1")
    }

    pub fn routing_same_version(version: &str) -> LambdaError {
        LambdaError::invalid(format!(
            "Invalid function version {version}. Function version {version} is already included in routing configuration."
        ))
    }

    pub fn routing_on_latest() -> LambdaError {
        LambdaError::invalid(
            "$LATEST is not supported for an alias pointing to more than 1 version",
        )
    }

    pub fn routing_keys(map: &str) -> String {
        format!(
            "Value '{map}' at 'routingConfig.additionalVersionWeights' failed to satisfy constraint: Map keys must satisfy constraint: [Member must have length less than or equal to 1024, Member must have length greater than or equal to 1, Member must satisfy regular expression pattern: [0-9]+]"
        )
    }

    pub fn routing_values(map: &str) -> String {
        format!(
            "Value '{map}' at 'routingConfig.additionalVersionWeights' failed to satisfy constraint: Map value must satisfy constraint: [Member must have value less than or equal to 1.0, Member must have value greater than or equal to 0.0, Member must not be null]"
        )
    }

    /// AWS's spacing, leading blank and all.
    pub fn reserved_below_provisioned(n: u32, provisioned: i64) -> LambdaError {
        LambdaError::invalid(format!(
            " ReservedConcurrentExecutions  {n} should not be lower than function's total provisioned concurrency [{provisioned}]."
        ))
    }

    pub fn unreserved_below_minimum(minimum: u32) -> LambdaError {
        LambdaError::invalid(format!(
            "Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [{minimum}]."
        ))
    }

    pub fn provisioned_below_one(n: u32) -> LambdaError {
        LambdaError::validation(&[format!(
            "Value '{n}' at 'provisionedConcurrentExecutions' failed to satisfy constraint: Member must have value greater than or equal to 1"
        )])
    }

    /// PutProvisionedConcurrencyConfig on `$LATEST`.
    pub fn provisioned_on_unpublished() -> LambdaError {
        LambdaError::invalid(
            "Provisioned Concurrency Configs cannot be applied to unpublished function versions.",
        )
    }

    /// Get/DeleteProvisionedConcurrencyConfig on `$LATEST`.
    pub fn provisioned_needs_published() -> LambdaError {
        LambdaError::invalid(
            "The function resource provided must be an alias or a published version.",
        )
    }

    pub fn provisioned_config_not_found() -> LambdaError {
        LambdaError::new(
            ErrorKind::ProvisionedConcurrencyConfigNotFound,
            "No Provisioned Concurrency Config found for this function",
        )
    }

    pub fn alias_on_provisioned_version() -> LambdaError {
        LambdaError::conflict(
            "Alias can't be used for Provisioned Concurrency configuration on an already Provisioned version",
        )
    }

    pub fn version_under_provisioned_alias() -> LambdaError {
        LambdaError::conflict("Version is pointed by a Provisioned Concurrency alias")
    }

    pub fn provisioned_over_reserved() -> LambdaError {
        LambdaError::invalid(
            "Requested Provisioned Concurrency should not be greater than the reservedConcurrentExecution for function",
        )
    }

    pub fn provisioned_over_unreserved(unreserved: i64) -> LambdaError {
        LambdaError::invalid(format!(
            "Specified ConcurrentExecutions for function is greater than account's unreserved concurrency [{unreserved}]."
        ))
    }

    pub fn provisioned_below_minimum(minimum: u32) -> LambdaError {
        LambdaError::invalid(format!(
            "Specified ConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [{minimum}]."
        ))
    }

    /// PutFunctionEventInvokeConfig's and ListFunctionEventInvokeConfigs'
    /// answer for a missing function, version or alias.
    pub fn event_target_not_found() -> LambdaError {
        LambdaError::not_found("The function doesn't exist.")
    }

    pub fn account_not_found() -> LambdaError {
        LambdaError::not_found("Account not found.")
    }

    pub fn invalid_marker(marker: &str) -> LambdaError {
        LambdaError::invalid(format!("Invalid Marker: {marker}"))
    }

    pub fn account_exists(name: &str) -> LambdaError {
        LambdaError::conflict(format!("Account already exists: {name}"))
    }

    pub fn access_key_exists(id: &str) -> LambdaError {
        LambdaError::conflict(format!("Access key already exists: {id}"))
    }
}

// ---- conversions ------------------------------------------------------------

/// A count or size as SQLite stores it.
fn int(x: u64) -> Result<i64> {
    i64::try_from(x)
        .map_err(|_| StoreError::Corrupt(format!("{x} does not fit the registry's integers")))
}

fn uint(x: i64, what: &str) -> Result<u64> {
    u64::try_from(x).map_err(|_| StoreError::Corrupt(format!("{what} is negative: {x}")))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(format!("cannot encode: {e}")))
}

fn from_json<T: serde::de::DeserializeOwned>(json: &str, what: &str) -> Result<T> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn new_revision_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A published version's number; `None` for `$LATEST`, an alias name or junk.
fn version_number(version: &str) -> Option<u64> {
    if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    version.parse().ok()
}

/// Where a version sorts among its function's versions.
fn version_seq(version: &str) -> Result<i64> {
    if version == LATEST {
        return Ok(0);
    }
    let n = version_number(version)
        .ok_or_else(|| StoreError::Corrupt(format!("not a version: {version:?}")))?;
    int(n)
}

/// A weight as Java prints a double, which is how AWS quotes the map.
fn java_double(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "Infinity" } else { "-Infinity" }.to_owned()
    } else if v.fract() == 0.0 && v.abs() < 1e7 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

/// `AdditionalVersionWeights` as AWS's validation layer checks it: keys are
/// version numbers, weights lie in [0, 1], at most one entry.
fn validate_routing(routing: &BTreeMap<String, f64>) -> Result<()> {
    let shown = || {
        let entries: Vec<String> = routing
            .iter()
            .map(|(k, v)| format!("{k}={}", java_double(*v)))
            .collect();
        format!("{{{}}}", entries.join(", "))
    };
    let mut errors = Vec::new();
    if routing
        .keys()
        .any(|k| k.is_empty() || k.len() > 1024 || !k.bytes().all(|b| b.is_ascii_digit()))
    {
        errors.push(aws::routing_keys(&shown()));
    }
    if routing.values().any(|w| !(0.0..=1.0).contains(w)) {
        errors.push(aws::routing_values(&shown()));
    }
    if !errors.is_empty() {
        return Err(LambdaError::validation(&errors).into());
    }
    if routing.len() > 1 {
        return Err(aws::routing_too_many().into());
    }
    Ok(())
}

/// A listing's page: `rows` holds up to one item more than `max`, which
/// tells whether another page follows.
fn page<T>(mut rows: Vec<T>, max: usize, marker_of: impl Fn(&T) -> String) -> Page<T> {
    let next_marker = if rows.len() > max {
        rows.truncate(max);
        rows.last().map(marker_of)
    } else {
        None
    };
    Page {
        items: rows,
        next_marker,
    }
}

/// The largest page a listing returns, whatever is asked (AWS's own cap).
const PAGE_MAX: usize = 10_000;

/// `max_items` kept within 1..=[`PAGE_MAX`].
fn page_size(max_items: usize) -> usize {
    max_items.clamp(1, PAGE_MAX)
}

/// A page size as a SQL `LIMIT` that fetches one extra row.
fn limit_plus_one(max: usize) -> Result<i64> {
    int(max as u64 + 1)
}

/// After an update, `$LATEST` stays `Pending` if it never became active;
/// otherwise it is `Active` with the update in progress.
fn lifecycle_after_update(current: &Lifecycle) -> Lifecycle {
    if current.state == hearth_types::function::FunctionState::Pending {
        current.clone()
    } else {
        Lifecycle::updating()
    }
}

fn check_revision(current: &str, given: Option<&str>) -> Result<()> {
    match given {
        Some(given) if given != current => Err(aws::revision_mismatch().into()),
        _ => Ok(()),
    }
}

// ---- rows -------------------------------------------------------------------

const VERSION_COLUMNS: &str = "account_id, function_name, version, config_json, \
     code_sha256_hex, code_size, unzipped_size, last_modified_ms, revision_id, lifecycle_json";

/// A `versions` row as stored, decoded outside the row callback so that a
/// corrupt record is reported as such rather than as a SQLite error.
struct VersionRow {
    account_id: String,
    function_name: String,
    version: String,
    config_json: String,
    code_sha256_hex: String,
    code_size: i64,
    unzipped_size: i64,
    last_modified_ms: i64,
    revision_id: String,
    lifecycle_json: String,
}

impl VersionRow {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            account_id: r.get(0)?,
            function_name: r.get(1)?,
            version: r.get(2)?,
            config_json: r.get(3)?,
            code_sha256_hex: r.get(4)?,
            code_size: r.get(5)?,
            unzipped_size: r.get(6)?,
            last_modified_ms: r.get(7)?,
            revision_id: r.get(8)?,
            lifecycle_json: r.get(9)?,
        })
    }

    fn decode(self) -> Result<VersionRecord> {
        let what = format!(
            "version {} of {} in account {}",
            self.version, self.function_name, self.account_id
        );
        Ok(VersionRecord {
            config: from_json(&self.config_json, &what)?,
            code: CodeRef {
                sha256_hex: self.code_sha256_hex,
                size: uint(self.code_size, &what)?,
                unzipped_size: uint(self.unzipped_size, &what)?,
            },
            last_modified_ms: self.last_modified_ms,
            revision_id: self.revision_id,
            lifecycle: from_json(&self.lifecycle_json, &what)?,
            account_id: self.account_id,
            function_name: self.function_name,
            version: self.version,
        })
    }
}

fn query_versions(
    tx: &Transaction<'_>,
    sql_tail: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<VersionRecord>> {
    let sql = format!("SELECT {VERSION_COLUMNS} FROM versions {sql_tail}");
    let mut stmt = tx.prepare_cached(&sql)?;
    let rows = stmt
        .query_map(params, VersionRow::from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter().map(VersionRow::decode).collect()
}

fn load_version(
    tx: &Transaction<'_>,
    account: &str,
    name: &str,
    version: &str,
) -> Result<Option<VersionRecord>> {
    let sql = format!(
        "SELECT {VERSION_COLUMNS} FROM versions \
         WHERE account_id = ?1 AND function_name = ?2 AND version = ?3"
    );
    tx.prepare_cached(&sql)?
        .query_row(params![account, name, version], VersionRow::from_row)
        .optional()?
        .map(VersionRow::decode)
        .transpose()
}

fn version_exists(tx: &Transaction<'_>, account: &str, name: &str, version: &str) -> Result<bool> {
    Ok(tx
        .prepare_cached(
            "SELECT 1 FROM versions WHERE account_id = ?1 AND function_name = ?2 AND version = ?3",
        )?
        .exists(params![account, name, version])?)
}

/// `$LATEST`'s configuration at the time `version` was published.
fn load_source_config(
    tx: &Transaction<'_>,
    account: &str,
    name: &str,
    version: &str,
) -> Result<Option<FunctionConfig>> {
    let json: Option<Option<String>> = tx
        .prepare_cached(
            "SELECT source_config_json FROM versions \
             WHERE account_id = ?1 AND function_name = ?2 AND version = ?3",
        )?
        .query_row(params![account, name, version], |r| r.get(0))
        .optional()?;
    json.flatten()
        .map(|j| from_json(&j, &format!("source of version {version} of {name}")))
        .transpose()
}

fn insert_version(
    tx: &Transaction<'_>,
    v: &VersionRecord,
    source: Option<&FunctionConfig>,
) -> Result<()> {
    let source_json = source.map(to_json).transpose()?;
    tx.prepare_cached(
        "INSERT INTO versions (account_id, function_name, version, seq, config_json, \
         source_config_json, code_sha256_hex, code_size, unzipped_size, last_modified_ms, \
         revision_id, lifecycle_json, needs_activation) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![
        v.account_id,
        v.function_name,
        v.version,
        version_seq(&v.version)?,
        to_json(&v.config)?,
        source_json,
        v.code.sha256_hex,
        int(v.code.size)?,
        int(v.code.unzipped_size)?,
        v.last_modified_ms,
        v.revision_id,
        to_json(&v.lifecycle)?,
        v.lifecycle.needs_activation(),
    ])?;
    Ok(())
}

/// Writes back everything of a version that can change.
fn save_version(tx: &Transaction<'_>, v: &VersionRecord) -> Result<()> {
    tx.prepare_cached(
        "UPDATE versions SET config_json = ?4, code_sha256_hex = ?5, code_size = ?6, \
         unzipped_size = ?7, last_modified_ms = ?8, revision_id = ?9, lifecycle_json = ?10, \
         needs_activation = ?11 \
         WHERE account_id = ?1 AND function_name = ?2 AND version = ?3",
    )?
    .execute(params![
        v.account_id,
        v.function_name,
        v.version,
        to_json(&v.config)?,
        v.code.sha256_hex,
        int(v.code.size)?,
        int(v.code.unzipped_size)?,
        v.last_modified_ms,
        v.revision_id,
        to_json(&v.lifecycle)?,
        v.lifecycle.needs_activation(),
    ])?;
    Ok(())
}

fn function_exists(tx: &Transaction<'_>, account: &str, name: &str) -> Result<bool> {
    Ok(tx
        .prepare_cached("SELECT 1 FROM functions WHERE account_id = ?1 AND name = ?2")?
        .exists(params![account, name])?)
}

/// The function's `reserved_concurrency`: `None` if the function is absent,
/// `Some(None)` if it has none.
fn reserved_of(tx: &Transaction<'_>, account: &str, name: &str) -> Result<Option<Option<i64>>> {
    Ok(tx
        .prepare_cached(
            "SELECT reserved_concurrency FROM functions WHERE account_id = ?1 AND name = ?2",
        )?
        .query_row(params![account, name], |r| r.get(0))
        .optional()?)
}

/// Publishes `latest` as the next version, or returns the newest version if
/// `latest` has not changed since it was published. `true` if new.
fn publish_latest(
    tx: &Transaction<'_>,
    latest: &VersionRecord,
    description: Option<&str>,
    now_ms: i64,
) -> Result<(VersionRecord, bool)> {
    let (account, name) = (&latest.account_id, &latest.function_name);
    let next: i64 = tx
        .prepare_cached("SELECT next_version FROM functions WHERE account_id = ?1 AND name = ?2")?
        .query_row(params![account, name], |r| r.get(0))?;
    if next > 1 {
        let newest = (next - 1).to_string();
        if let Some(prev) = load_version(tx, account, name, &newest)? {
            let source = load_source_config(tx, account, name, &newest)?;
            if prev.code.sha256_hex == latest.code.sha256_hex
                && source.as_ref() == Some(&latest.config)
            {
                return Ok((prev, false));
            }
        }
    }
    let mut config = latest.config.clone();
    if let Some(d) = description {
        config.description = d.to_owned();
    }
    // A version cut from a `$LATEST` that is still being created or updated
    // starts `Pending` (as AWS reports it) and goes through activation too.
    let lifecycle = if latest.lifecycle.needs_activation() {
        Lifecycle::creating()
    } else {
        latest.lifecycle.clone()
    };
    let version = VersionRecord {
        account_id: account.clone(),
        function_name: name.clone(),
        version: next.to_string(),
        config,
        code: latest.code.clone(),
        last_modified_ms: now_ms,
        revision_id: new_revision_id(),
        lifecycle,
    };
    insert_version(tx, &version, Some(&latest.config))?;
    tx.prepare_cached(
        "UPDATE functions SET next_version = ?3 WHERE account_id = ?1 AND name = ?2",
    )?
    .execute(params![account, name, next + 1])?;
    Ok((version, true))
}

const ALIAS_COLUMNS: &str =
    "account_id, function_name, name, function_version, description, routing_json, revision_id";

struct AliasRow {
    alias: Alias,
    routing_json: String,
}

impl AliasRow {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            alias: Alias {
                account_id: r.get(0)?,
                function_name: r.get(1)?,
                name: r.get(2)?,
                function_version: r.get(3)?,
                description: r.get(4)?,
                routing: BTreeMap::new(),
                revision_id: r.get(6)?,
            },
            routing_json: r.get(5)?,
        })
    }

    fn decode(self) -> Result<Alias> {
        let what = format!(
            "alias {} of {} in account {}",
            self.alias.name, self.alias.function_name, self.alias.account_id
        );
        Ok(Alias {
            routing: from_json(&self.routing_json, &what)?,
            ..self.alias
        })
    }
}

fn query_aliases(
    tx: &Transaction<'_>,
    sql_tail: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<Alias>> {
    let sql = format!("SELECT {ALIAS_COLUMNS} FROM aliases {sql_tail}");
    let mut stmt = tx.prepare_cached(&sql)?;
    let rows = stmt
        .query_map(params, AliasRow::from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter().map(AliasRow::decode).collect()
}

fn load_alias(
    tx: &Transaction<'_>,
    account: &str,
    function: &str,
    alias: &str,
) -> Result<Option<Alias>> {
    Ok(query_aliases(
        tx,
        "WHERE account_id = ?1 AND function_name = ?2 AND name = ?3",
        params![account, function, alias],
    )?
    .pop())
}

fn save_alias(tx: &Transaction<'_>, a: &Alias, insert: bool) -> Result<()> {
    let sql = if insert {
        "INSERT INTO aliases (account_id, function_name, name, function_version, description, \
         routing_json, revision_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
    } else {
        "UPDATE aliases SET function_version = ?4, description = ?5, routing_json = ?6, \
         revision_id = ?7 WHERE account_id = ?1 AND function_name = ?2 AND name = ?3"
    };
    tx.prepare_cached(sql)?.execute(params![
        a.account_id,
        a.function_name,
        a.name,
        a.function_version,
        a.description,
        to_json(&a.routing)?,
        a.revision_id,
    ])?;
    Ok(())
}

fn account_from_row(r: &Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        id: r.get(0)?,
        name: r.get(1)?,
        admin: r.get(2)?,
        created_ms: r.get(3)?,
    })
}

fn account_id_taken(tx: &Transaction<'_>, id: &str) -> Result<bool> {
    Ok(tx
        .prepare_cached("SELECT 1 FROM accounts WHERE id = ?1")?
        .exists([id])?)
}

fn account_name_taken(tx: &Transaction<'_>, name: &str) -> Result<bool> {
    Ok(tx
        .prepare_cached("SELECT 1 FROM accounts WHERE name = ?1")?
        .exists([name])?)
}

fn access_key_taken(tx: &Transaction<'_>, id: &str) -> Result<bool> {
    Ok(tx
        .prepare_cached("SELECT 1 FROM access_keys WHERE access_key_id = ?1")?
        .exists([id])?)
}

fn insert_account(tx: &Transaction<'_>, a: &Account, k: &AccessKey) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO accounts (id, name, admin, created_ms) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![a.id, a.name, a.admin, a.created_ms])?;
    tx.prepare_cached(
        "INSERT INTO access_keys (access_key_id, account_id, secret) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![k.access_key_id, a.id, k.secret_access_key])?;
    Ok(())
}

const PROVISIONED_COLUMNS: &str = "account_id, function_name, qualifier, requested, allocated, \
     status, status_reason, last_modified_ms";

/// A `provisioned_concurrency` row as stored, decoded outside the row callback.
struct ProvisionedRow {
    account_id: String,
    function_name: String,
    qualifier: String,
    requested: i64,
    allocated: i64,
    status: String,
    status_reason: Option<String>,
    last_modified_ms: i64,
}

impl ProvisionedRow {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            account_id: r.get(0)?,
            function_name: r.get(1)?,
            qualifier: r.get(2)?,
            requested: r.get(3)?,
            allocated: r.get(4)?,
            status: r.get(5)?,
            status_reason: r.get(6)?,
            last_modified_ms: r.get(7)?,
        })
    }

    fn decode(self) -> Result<ProvisionedConcurrencyConfig> {
        let what = || {
            format!(
                "provisioned concurrency of {}:{} in account {}",
                self.function_name, self.qualifier, self.account_id
            )
        };
        let count = |n: i64| {
            u32::try_from(n).map_err(|_| StoreError::Corrupt(format!("{}: count {n}", what())))
        };
        let status = ProvisionedStatus::parse(&self.status)
            .ok_or_else(|| StoreError::Corrupt(format!("{}: status {}", what(), self.status)))?;
        Ok(ProvisionedConcurrencyConfig {
            requested: count(self.requested)?,
            allocated: count(self.allocated)?,
            status,
            status_reason: self.status_reason,
            last_modified_ms: self.last_modified_ms,
            account_id: self.account_id,
            function_name: self.function_name,
            qualifier: self.qualifier,
        })
    }
}

fn query_provisioned(
    tx: &Transaction<'_>,
    sql_tail: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<ProvisionedConcurrencyConfig>> {
    let sql = format!("SELECT {PROVISIONED_COLUMNS} FROM provisioned_concurrency {sql_tail}");
    let mut stmt = tx.prepare_cached(&sql)?;
    let rows = stmt
        .query_map(params, ProvisionedRow::from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter().map(ProvisionedRow::decode).collect()
}

fn load_provisioned(
    tx: &Transaction<'_>,
    account: &str,
    function: &str,
    qualifier: &str,
) -> Result<Option<ProvisionedConcurrencyConfig>> {
    Ok(query_provisioned(
        tx,
        "WHERE account_id = ?1 AND function_name = ?2 AND qualifier = ?3",
        params![account, function, qualifier],
    )?
    .pop())
}

fn save_provisioned(tx: &Transaction<'_>, c: &ProvisionedConcurrencyConfig) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO provisioned_concurrency (account_id, function_name, qualifier, requested, \
         allocated, status, status_reason, last_modified_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
         ON CONFLICT (account_id, function_name, qualifier) DO UPDATE SET \
         requested = excluded.requested, allocated = excluded.allocated, \
         status = excluded.status, status_reason = excluded.status_reason, \
         last_modified_ms = excluded.last_modified_ms",
    )?
    .execute(params![
        c.account_id,
        c.function_name,
        c.qualifier,
        c.requested,
        c.allocated,
        c.status.as_str(),
        c.status_reason,
        c.last_modified_ms,
    ])?;
    Ok(())
}

fn delete_provisioned_row(
    tx: &Transaction<'_>,
    account: &str,
    function: &str,
    qualifier: &str,
) -> Result<bool> {
    let deleted = tx
        .prepare_cached(
            "DELETE FROM provisioned_concurrency \
             WHERE account_id = ?1 AND function_name = ?2 AND qualifier = ?3",
        )?
        .execute(params![account, function, qualifier])?;
    Ok(deleted > 0)
}

/// The aliases of `function` that point at `version` (as primary or
/// weighted second version) and have a provisioned concurrency config.
fn provisioned_aliases_of(
    tx: &Transaction<'_>,
    account: &str,
    function: &str,
    version: &str,
) -> Result<Vec<String>> {
    let aliases = query_aliases(
        tx,
        "WHERE account_id = ?1 AND function_name = ?2 AND name IN \
         (SELECT qualifier FROM provisioned_concurrency \
          WHERE account_id = ?1 AND function_name = ?2) ORDER BY name",
        params![account, function],
    )?;
    Ok(aliases
        .into_iter()
        .filter(|a| a.function_version == version || a.routing.contains_key(version))
        .map(|a| a.name)
        .collect())
}

/// Whether any version an alias routes to has a provisioned config of its own.
fn alias_targets_provisioned(tx: &Transaction<'_>, alias: &Alias) -> Result<bool> {
    for version in std::iter::once(&alias.function_version).chain(alias.routing.keys()) {
        if load_provisioned(tx, &alias.account_id, &alias.function_name, version)?.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Provisioned concurrency requested for functions of `account` without a
/// reservation, leaving out one function (`except_function`) or one config
/// (`except_function` + `except_qualifier`).
fn unreserved_provisioned(
    tx: &Transaction<'_>,
    account: &str,
    except_function: Option<&str>,
    except_qualifier: Option<&str>,
) -> Result<i64> {
    Ok(tx
        .prepare_cached(
            "SELECT COALESCE(SUM(p.requested), 0) FROM provisioned_concurrency p \
             JOIN functions f ON f.account_id = p.account_id AND f.name = p.function_name \
             WHERE p.account_id = ?1 AND f.reserved_concurrency IS NULL \
             AND NOT (?2 IS NOT NULL AND p.function_name = ?2 \
                      AND (?3 IS NULL OR p.qualifier = ?3))",
        )?
        .query_row(params![account, except_function, except_qualifier], |r| {
            r.get(0)
        })?)
}

/// Whether raising a function's provisioned concurrency to `requested` fits
/// (see [`Registry::put_provisioned_concurrency`]).
fn check_provisioned_fits(
    tx: &Transaction<'_>,
    account: &str,
    function: &str,
    qualifier: &str,
    requested: u32,
    account_limit: u32,
) -> Result<()> {
    let requested = i64::from(requested);
    let reserved = reserved_of(tx, account, function)?.flatten();
    if let Some(reserved) = reserved {
        // A reserved function's provisioned concurrency comes out of its reservation.
        let same_function: i64 = tx
            .prepare_cached(
                "SELECT COALESCE(SUM(requested), 0) FROM provisioned_concurrency \
                 WHERE account_id = ?1 AND function_name = ?2 AND qualifier != ?3",
            )?
            .query_row(params![account, function, qualifier], |r| r.get(0))?;
        if same_function + requested > reserved {
            return Err(aws::provisioned_over_reserved().into());
        }
        return Ok(());
    }
    let reservations: i64 = tx
        .prepare_cached(
            "SELECT COALESCE(SUM(reserved_concurrency), 0) FROM functions WHERE account_id = ?1",
        )?
        .query_row([account], |r| r.get(0))?;
    let unreserved = i64::from(account_limit)
        - reservations
        - unreserved_provisioned(tx, account, Some(function), Some(qualifier))?;
    if requested > unreserved {
        return Err(aws::provisioned_over_unreserved(unreserved.max(0)).into());
    }
    if unreserved - requested < i64::from(UNRESERVED_CONCURRENCY_MIN) {
        return Err(aws::provisioned_below_minimum(UNRESERVED_CONCURRENCY_MIN).into());
    }
    Ok(())
}

const EVENT_INVOKE_COLUMNS: &str = "account_id, function_name, qualifier, \
    maximum_retry_attempts, maximum_event_age_seconds, on_success, on_failure, \
    execution_window_seconds, last_modified_ms";

/// An `event_invoke_configs` row as stored, decoded outside the row callback.
struct EventInvokeRow {
    account_id: String,
    function_name: String,
    qualifier: String,
    maximum_retry_attempts: Option<i64>,
    maximum_event_age_seconds: Option<i64>,
    on_success: Option<String>,
    on_failure: Option<String>,
    execution_window_seconds: Option<i64>,
    last_modified_ms: i64,
}

impl EventInvokeRow {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            account_id: r.get(0)?,
            function_name: r.get(1)?,
            qualifier: r.get(2)?,
            maximum_retry_attempts: r.get(3)?,
            maximum_event_age_seconds: r.get(4)?,
            on_success: r.get(5)?,
            on_failure: r.get(6)?,
            execution_window_seconds: r.get(7)?,
            last_modified_ms: r.get(8)?,
        })
    }

    fn decode(self) -> Result<EventInvokeConfig> {
        let what = || {
            format!(
                "event-invoke config of {}:{} in account {}",
                self.function_name, self.qualifier, self.account_id
            )
        };
        let count = |n: Option<i64>| {
            n.map(|n| {
                u32::try_from(n).map_err(|_| StoreError::Corrupt(format!("{}: value {n}", what())))
            })
            .transpose()
        };
        Ok(EventInvokeConfig {
            maximum_retry_attempts: count(self.maximum_retry_attempts)?,
            maximum_event_age_seconds: count(self.maximum_event_age_seconds)?,
            execution_window_seconds: count(self.execution_window_seconds)?,
            on_success: self.on_success,
            on_failure: self.on_failure,
            last_modified_ms: self.last_modified_ms,
            account_id: self.account_id,
            function_name: self.function_name,
            qualifier: self.qualifier,
        })
    }
}

fn query_event_invoke(
    tx: &Transaction<'_>,
    sql_tail: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<EventInvokeConfig>> {
    let sql = format!("SELECT {EVENT_INVOKE_COLUMNS} FROM event_invoke_configs {sql_tail}");
    let mut stmt = tx.prepare_cached(&sql)?;
    let rows = stmt
        .query_map(params, EventInvokeRow::from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter().map(EventInvokeRow::decode).collect()
}

fn delete_event_invoke_row(
    tx: &Transaction<'_>,
    account: &str,
    function: &str,
    qualifier: &str,
) -> Result<bool> {
    let deleted = tx
        .prepare_cached(
            "DELETE FROM event_invoke_configs \
             WHERE account_id = ?1 AND function_name = ?2 AND qualifier = ?3",
        )?
        .execute(params![account, function, qualifier])?;
    Ok(deleted > 0)
}

/// Where a qualifier sorts among a function's event-invoke configs:
/// `$LATEST`, then versions by number, then aliases by name.
fn qualifier_order(qualifier: &str) -> (u8, u64, &str) {
    match VersionSelector::from_qualifier(Some(qualifier)) {
        VersionSelector::Latest => (0, 0, qualifier),
        // A number too long for u64 sorts after the others, by its text.
        VersionSelector::Version(_) => {
            (1, version_number(qualifier).unwrap_or(u64::MAX), qualifier)
        }
        VersionSelector::Alias(_) => (2, 0, qualifier),
    }
}

fn capacity_from_row(r: &Row<'_>) -> rusqlite::Result<CapacityRow> {
    Ok(CapacityRow {
        account_id: r.get(0)?,
        dedicated_json: r.get(1)?,
        policy: r.get(2)?,
        max_wait_ms: r.get(3)?,
        general_share: r.get(4)?,
    })
}

/// An `accounts` row joined with its `account_capacity` row, if any.
struct CapacityRow {
    account_id: String,
    dedicated_json: Option<String>,
    policy: Option<String>,
    max_wait_ms: Option<i64>,
    general_share: Option<f64>,
}

impl CapacityRow {
    fn decode(self) -> Result<AccountCapacity> {
        let what = format!("capacity of account {}", self.account_id);
        let (Some(dedicated), Some(policy), Some(max_wait_ms), Some(general_share)) = (
            self.dedicated_json,
            self.policy,
            self.max_wait_ms,
            self.general_share,
        ) else {
            return Ok(AccountCapacity::defaults(self.account_id));
        };
        Ok(AccountCapacity {
            dedicated: from_json(&dedicated, &what)?,
            policy: CapacityMode::parse(&policy)
                .ok_or_else(|| StoreError::Corrupt(format!("{what}: policy {policy}")))?,
            max_wait_ms: u32::try_from(max_wait_ms)
                .map_err(|_| StoreError::Corrupt(format!("{what}: max wait {max_wait_ms}")))?,
            general_share,
            account_id: self.account_id,
        })
    }
}

const CAPACITY_SELECT: &str = "SELECT a.id, c.dedicated_json, c.policy, c.max_wait_ms, \
     c.general_share FROM accounts a LEFT JOIN account_capacity c ON c.account_id = a.id";

// ---- fresh credentials --------------------------------------------------------

/// Twelve decimal digits, like an AWS account id.
fn random_account_id(rng: &mut impl Rng) -> String {
    (0..12)
        .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
        .collect()
}

/// `HKIA` and sixteen upper-case letters or digits (AWS's own start `AKIA`).
fn random_access_key_id(rng: &mut impl Rng) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let tail: String = (0..16)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect();
    format!("HKIA{tail}")
}

/// Forty letters and digits (about 238 bits).
fn random_secret(rng: &mut impl Rng) -> String {
    (0..40)
        .map(|_| char::from(rng.sample(rand::distributions::Alphanumeric)))
        .collect()
}

impl Registry for SqliteRegistry {
    fn write_epoch(&self) -> u64 {
        self.epoch.load(std::sync::atomic::Ordering::Acquire)
    }

    // ---- accounts -------------------------------------------------------

    fn create_account(&self, name: &str, admin: bool) -> Result<(Account, AccessKey)> {
        let created_ms = now_ms();
        self.write(|tx| {
            if account_name_taken(tx, name)? {
                return Err(aws::account_exists(name).into());
            }
            let mut rng = rand::thread_rng();
            let id = loop {
                let id = random_account_id(&mut rng);
                if !account_id_taken(tx, &id)? {
                    break id;
                }
            };
            let access_key_id = loop {
                let key = random_access_key_id(&mut rng);
                if !access_key_taken(tx, &key)? {
                    break key;
                }
            };
            let account = Account {
                id,
                name: name.to_owned(),
                admin,
                created_ms,
            };
            let key = AccessKey {
                account_id: account.id.clone(),
                access_key_id,
                secret_access_key: random_secret(&mut rng),
            };
            insert_account(tx, &account, &key)?;
            Ok((account, key))
        })
    }

    fn ensure_account(&self, account: &Account, key: &AccessKey) -> Result<()> {
        if key.account_id != account.id {
            return Err(LambdaError::invalid(format!(
                "Access key {} belongs to account {}, not {}",
                key.access_key_id, key.account_id, account.id
            ))
            .into());
        }
        self.write(|tx| {
            if account_id_taken(tx, &account.id)? {
                return Ok(());
            }
            if account_name_taken(tx, &account.name)? {
                return Err(aws::account_exists(&account.name).into());
            }
            if access_key_taken(tx, &key.access_key_id)? {
                return Err(aws::access_key_exists(&key.access_key_id).into());
            }
            insert_account(tx, account, key)
        })
    }

    fn list_accounts(&self) -> Result<Vec<Account>> {
        self.read(|tx| {
            let mut stmt = tx.prepare_cached(
                "SELECT id, name, admin, created_ms FROM accounts ORDER BY created_ms, id",
            )?;
            let accounts = stmt
                .query_map([], account_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(accounts)
        })
    }

    fn delete_account(&self, account_id: &str) -> Result<bool> {
        self.write(|tx| {
            // Versions, aliases and tags go with their functions (cascade),
            // keys with their account, a role's policies with the role.
            tx.prepare_cached("DELETE FROM functions WHERE account_id = ?1")?
                .execute([account_id])?;
            crate::iam::delete_account_entities(tx, account_id)?;
            let deleted = tx
                .prepare_cached("DELETE FROM accounts WHERE id = ?1")?
                .execute([account_id])?;
            Ok(deleted > 0)
        })
    }

    fn find_access_key(&self, access_key_id: &str) -> Result<Option<(Account, AccessKey)>> {
        self.read(|tx| {
            let found = tx
                .prepare_cached(
                    "SELECT a.id, a.name, a.admin, a.created_ms, k.secret \
                     FROM access_keys k JOIN accounts a ON a.id = k.account_id \
                     WHERE k.access_key_id = ?1",
                )?
                .query_row([access_key_id], |r| {
                    let account = account_from_row(r)?;
                    let key = AccessKey {
                        account_id: account.id.clone(),
                        access_key_id: access_key_id.to_owned(),
                        secret_access_key: r.get(4)?,
                    };
                    Ok((account, key))
                })
                .optional()?;
            Ok(found)
        })
    }

    // ---- functions ------------------------------------------------------

    fn create_function(
        &self,
        account: &str,
        f: NewFunction,
        now_ms: i64,
    ) -> Result<(VersionRecord, Option<VersionRecord>)> {
        self.write(|tx| {
            if function_exists(tx, account, &f.name)? {
                return Err(aws::function_exists(&f.name).into());
            }
            tx.prepare_cached(
                "INSERT INTO functions (account_id, name, created_ms, reserved_concurrency, \
                 next_version) VALUES (?1, ?2, ?3, NULL, 1)",
            )?
            .execute(params![account, f.name, now_ms])?;
            let latest = VersionRecord {
                account_id: account.to_owned(),
                function_name: f.name.clone(),
                version: LATEST.to_owned(),
                config: f.config,
                code: f.code,
                last_modified_ms: now_ms,
                revision_id: new_revision_id(),
                lifecycle: Lifecycle::creating(),
            };
            insert_version(tx, &latest, None)?;
            let mut insert_tag = tx.prepare_cached(
                "INSERT INTO tags (account_id, function_name, key, value) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for (k, v) in &f.tags {
                insert_tag.execute(params![account, f.name, k, v])?;
            }
            let published = if f.publish {
                Some(publish_latest(tx, &latest, None, now_ms)?.0)
            } else {
                None
            };
            Ok((latest, published))
        })
    }

    fn get_version(&self, account: &str, name: &str, v: &VersionSelector) -> Result<VersionRecord> {
        self.read(|tx| match v {
            VersionSelector::Latest => self.require_latest(tx, account, name),
            VersionSelector::Version(version) => load_version(tx, account, name, version)?
                .ok_or_else(|| self.qualified_not_found(account, name, version)),
            VersionSelector::Alias(alias) => {
                let target = load_alias(tx, account, name, alias)?
                    .ok_or_else(|| self.qualified_not_found(account, name, alias))?;
                load_version(tx, account, name, &target.function_version)?
                    .ok_or_else(|| self.qualified_not_found(account, name, alias))
            }
        })
    }

    fn list_functions(
        &self,
        account: &str,
        marker: Option<&str>,
        max_items: usize,
    ) -> Result<Page<VersionRecord>> {
        let max = page_size(max_items);
        self.read(|tx| {
            let rows = query_versions(
                tx,
                "WHERE account_id = ?1 AND version = '$LATEST' AND function_name > ?2 \
                 ORDER BY function_name LIMIT ?3",
                params![account, marker.unwrap_or(""), limit_plus_one(max)?],
            )?;
            Ok(page(rows, max, |v| v.function_name.clone()))
        })
    }

    fn update_code(
        &self,
        account: &str,
        name: &str,
        code: CodeRef,
        revision_id: Option<&str>,
        publish: bool,
        now_ms: i64,
    ) -> Result<(VersionRecord, Option<VersionRecord>)> {
        self.write(|tx| {
            let mut latest = self.require_latest(tx, account, name)?;
            check_revision(&latest.revision_id, revision_id)?;
            latest.code = code;
            latest.last_modified_ms = now_ms;
            latest.revision_id = new_revision_id();
            latest.lifecycle = lifecycle_after_update(&latest.lifecycle);
            save_version(tx, &latest)?;
            let published = if publish {
                Some(publish_latest(tx, &latest, None, now_ms)?.0)
            } else {
                None
            };
            Ok((latest, published))
        })
    }

    fn update_config(
        &self,
        account: &str,
        name: &str,
        patch: &ConfigPatch,
        revision_id: Option<&str>,
        now_ms: i64,
    ) -> Result<VersionRecord> {
        self.write(|tx| {
            let mut latest = self.require_latest(tx, account, name)?;
            check_revision(&latest.revision_id, revision_id)?;
            patch.apply(&mut latest.config);
            latest.last_modified_ms = now_ms;
            latest.revision_id = new_revision_id();
            latest.lifecycle = lifecycle_after_update(&latest.lifecycle);
            save_version(tx, &latest)?;
            Ok(latest)
        })
    }

    fn set_lifecycle(
        &self,
        account: &str,
        name: &str,
        version: &str,
        revision_id: &str,
        lifecycle: &Lifecycle,
    ) -> Result<Option<VersionRecord>> {
        self.write(|tx| {
            let Some(mut record) = load_version(tx, account, name, version)? else {
                return Ok(None);
            };
            if record.revision_id != revision_id {
                return Ok(None);
            }
            if record.lifecycle == *lifecycle {
                return Ok(Some(record));
            }
            // AWS gives a version a new RevisionId when its state changes.
            record.lifecycle = lifecycle.clone();
            record.revision_id = new_revision_id();
            save_version(tx, &record)?;
            Ok(Some(record))
        })
    }

    fn pending_activations(&self) -> Result<Vec<VersionRecord>> {
        self.read(|tx| {
            let rows = query_versions(
                tx,
                "WHERE needs_activation = 1 ORDER BY account_id, function_name, seq",
                [],
            )?;
            Ok(rows
                .into_iter()
                .filter(|v| v.lifecycle.needs_activation())
                .collect())
        })
    }

    fn delete_function(&self, account: &str, name: &str) -> Result<()> {
        self.write(|tx| {
            let deleted = tx
                .prepare_cached("DELETE FROM functions WHERE account_id = ?1 AND name = ?2")?
                .execute(params![account, name])?;
            if deleted == 0 {
                return Err(self.function_not_found(account, name));
            }
            Ok(())
        })
    }

    fn delete_version(&self, account: &str, name: &str, version: &str) -> Result<()> {
        if version == LATEST {
            return Err(aws::latest_not_deletable().into());
        }
        if version_number(version).is_none() {
            return Err(aws::alias_not_deletable().into());
        }
        self.write(|tx| {
            self.require_function(tx, account, name)?;
            let referencing: Vec<String> = query_aliases(
                tx,
                "WHERE account_id = ?1 AND function_name = ?2 ORDER BY name",
                params![account, name],
            )?
            .into_iter()
            .filter(|a| a.function_version == version || a.routing.contains_key(version))
            .map(|a| a.name)
            .collect();
            if !referencing.is_empty() {
                return Err(aws::version_in_use(&referencing).into());
            }
            // Deleting a version that does not exist succeeds, as on AWS.
            tx.prepare_cached(
                "DELETE FROM versions WHERE account_id = ?1 AND function_name = ?2 AND version = ?3",
            )?
            .execute(params![account, name, version])?;
            delete_provisioned_row(tx, account, name, version)?;
            delete_event_invoke_row(tx, account, name, version)?;
            Ok(())
        })
    }

    fn publish_version(
        &self,
        account: &str,
        name: &str,
        code_sha256: Option<&str>,
        description: Option<&str>,
        revision_id: Option<&str>,
        now_ms: i64,
    ) -> Result<VersionRecord> {
        self.write(|tx| {
            let mut latest = self.require_latest(tx, account, name)?;
            check_revision(&latest.revision_id, revision_id)?;
            if let Some(given) = code_sha256 {
                let current = latest.code.code_sha256();
                if given != current {
                    return Err(aws::code_sha256_mismatch(given, &current).into());
                }
            }
            let (version, created) = publish_latest(tx, &latest, description, now_ms)?;
            // AWS moves `$LATEST`'s RevisionId when a version is cut from it.
            // Not while it awaits activation: that step holds the revision it
            // saw and must still find it.
            if created && !latest.lifecycle.needs_activation() {
                latest.revision_id = new_revision_id();
                save_version(tx, &latest)?;
            }
            Ok(version)
        })
    }

    fn list_versions(
        &self,
        account: &str,
        name: &str,
        marker: Option<&str>,
        max_items: usize,
    ) -> Result<Page<VersionRecord>> {
        let max = page_size(max_items);
        let after = match marker {
            None => -1,
            Some(m) => version_seq(m).map_err(|_| aws::invalid_marker(m))?,
        };
        self.read(|tx| {
            self.require_function(tx, account, name)?;
            let rows = query_versions(
                tx,
                "WHERE account_id = ?1 AND function_name = ?2 AND seq > ?3 ORDER BY seq LIMIT ?4",
                params![account, name, after, limit_plus_one(max)?],
            )?;
            Ok(page(rows, max, |v| v.version.clone()))
        })
    }

    fn tag_function(
        &self,
        account: &str,
        name: &str,
        tags: &BTreeMap<String, String>,
        limit: usize,
    ) -> Result<()> {
        self.write(|tx| {
            self.require_function(tx, account, name)?;
            let mut stmt = tx.prepare_cached(
                "SELECT key FROM tags WHERE account_id = ?1 AND function_name = ?2",
            )?;
            let mut keys = stmt
                .query_map(params![account, name], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<std::collections::BTreeSet<String>>>()?;
            keys.extend(tags.keys().cloned());
            if keys.len() > limit {
                return Err(
                    LambdaError::invalid("Number of tags exceeds resource tag limit.").into(),
                );
            }
            let mut put = tx.prepare_cached(
                "INSERT INTO tags (account_id, function_name, key, value) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (account_id, function_name, key) DO UPDATE SET value = excluded.value",
            )?;
            for (k, v) in tags {
                put.execute(params![account, name, k, v])?;
            }
            Ok(())
        })
    }

    fn untag_function(&self, account: &str, name: &str, keys: &[String]) -> Result<()> {
        self.write(|tx| {
            self.require_function(tx, account, name)?;
            let mut del = tx.prepare_cached(
                "DELETE FROM tags WHERE account_id = ?1 AND function_name = ?2 AND key = ?3",
            )?;
            for k in keys {
                del.execute(params![account, name, k])?;
            }
            Ok(())
        })
    }

    fn tagged(&self, key: &str) -> Result<Vec<(String, String, String)>> {
        self.read(|tx| {
            let mut stmt = tx.prepare_cached(
                "SELECT account_id, function_name, value FROM tags WHERE key = ?1",
            )?;
            let rows = stmt
                .query_map(params![key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    fn tags(&self, account: &str, name: &str) -> Result<BTreeMap<String, String>> {
        self.read(|tx| {
            self.require_function(tx, account, name)?;
            let mut stmt = tx.prepare_cached(
                "SELECT key, value FROM tags WHERE account_id = ?1 AND function_name = ?2",
            )?;
            let tags = stmt
                .query_map(params![account, name], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<BTreeMap<String, String>>>()?;
            Ok(tags)
        })
    }

    // ---- aliases --------------------------------------------------------

    fn create_alias(
        &self,
        account: &str,
        function: &str,
        alias: &str,
        spec: &AliasSpec,
    ) -> Result<Alias> {
        let primary = spec
            .function_version
            .as_deref()
            .ok_or_else(aws::function_version_missing)?;
        let routing = spec.routing.clone().unwrap_or_default();
        validate_routing(&routing)?;
        self.write(|tx| {
            self.check_alias_targets(tx, account, function, primary, &routing)?;
            if load_alias(tx, account, function, alias)?.is_some() {
                return Err(
                    aws::alias_exists(&self.qualified_arn(account, function, alias)).into(),
                );
            }
            let created = Alias {
                account_id: account.to_owned(),
                function_name: function.to_owned(),
                name: alias.to_owned(),
                function_version: primary.to_owned(),
                description: spec.description.clone().unwrap_or_default(),
                routing,
                revision_id: new_revision_id(),
            };
            save_alias(tx, &created, true)?;
            Ok(created)
        })
    }

    fn get_alias(&self, account: &str, function: &str, alias: &str) -> Result<Alias> {
        self.read(|tx| {
            self.require_function(tx, account, function)?;
            load_alias(tx, account, function, alias)?.ok_or_else(|| {
                aws::cannot_find_alias(&self.qualified_arn(account, function, alias)).into()
            })
        })
    }

    fn update_alias(
        &self,
        account: &str,
        function: &str,
        alias: &str,
        spec: &AliasSpec,
        revision_id: Option<&str>,
    ) -> Result<Alias> {
        if let Some(routing) = &spec.routing {
            validate_routing(routing)?;
        }
        self.write(|tx| {
            self.require_function(tx, account, function)?;
            let mut updated = load_alias(tx, account, function, alias)?.ok_or_else(|| {
                StoreError::from(aws::alias_not_found(
                    &self.qualified_arn(account, function, alias),
                ))
            })?;
            check_revision(&updated.revision_id, revision_id)?;
            let before = (updated.function_version.clone(), updated.routing.clone());
            if let Some(v) = &spec.function_version {
                updated.function_version = v.clone();
            }
            if let Some(d) = &spec.description {
                updated.description = d.clone();
            }
            if let Some(r) = &spec.routing {
                updated.routing = r.clone();
            }
            self.check_alias_targets(
                tx,
                account,
                function,
                &updated.function_version,
                &updated.routing,
            )?;
            let retargeted = before != (updated.function_version.clone(), updated.routing.clone());
            if retargeted {
                if let Some(mut provisioned) = load_provisioned(tx, account, function, alias)? {
                    if updated.function_version == LATEST {
                        return Err(aws::provisioned_on_unpublished().into());
                    }
                    if alias_targets_provisioned(tx, &updated)? {
                        return Err(aws::alias_on_provisioned_version().into());
                    }
                    // As on AWS, the old version's warm sandboxes still count
                    // as allocated while the new version's are prepared.
                    provisioned.status = ProvisionedStatus::InProgress;
                    provisioned.status_reason = None;
                    save_provisioned(tx, &provisioned)?;
                }
            }
            updated.revision_id = new_revision_id();
            save_alias(tx, &updated, false)?;
            Ok(updated)
        })
    }

    fn delete_alias(&self, account: &str, function: &str, alias: &str) -> Result<()> {
        self.write(|tx| {
            self.require_function(tx, account, function)?;
            // Deleting an alias that does not exist succeeds, as on AWS.
            tx.prepare_cached(
                "DELETE FROM aliases WHERE account_id = ?1 AND function_name = ?2 AND name = ?3",
            )?
            .execute(params![account, function, alias])?;
            delete_provisioned_row(tx, account, function, alias)?;
            delete_event_invoke_row(tx, account, function, alias)?;
            Ok(())
        })
    }

    fn list_aliases(
        &self,
        account: &str,
        function: &str,
        function_version: Option<&str>,
        marker: Option<&str>,
        max_items: usize,
    ) -> Result<Page<Alias>> {
        let max = page_size(max_items);
        self.read(|tx| {
            self.require_function(tx, account, function)?;
            let rows = query_aliases(
                tx,
                "WHERE account_id = ?1 AND function_name = ?2 AND name > ?3 \
                 AND (?4 IS NULL OR function_version = ?4) ORDER BY name LIMIT ?5",
                params![
                    account,
                    function,
                    marker.unwrap_or(""),
                    function_version,
                    limit_plus_one(max)?
                ],
            )?;
            Ok(page(rows, max, |a| a.name.clone()))
        })
    }

    // ---- concurrency ----------------------------------------------------

    fn put_reserved_concurrency(
        &self,
        account: &str,
        name: &str,
        n: u32,
        account_limit: u32,
    ) -> Result<()> {
        self.write(|tx| {
            let current = reserved_of(tx, account, name)?
                .ok_or_else(|| self.qualified_not_found(account, name, LATEST))?;
            let provisioned: i64 = tx
                .prepare_cached(
                    "SELECT COALESCE(SUM(requested), 0) FROM provisioned_concurrency \
                     WHERE account_id = ?1 AND function_name = ?2",
                )?
                .query_row(params![account, name], |r| r.get(0))?;
            if i64::from(n) < provisioned {
                return Err(aws::reserved_below_provisioned(n, provisioned).into());
            }
            let others: i64 = tx
                .prepare_cached(
                    "SELECT COALESCE(SUM(reserved_concurrency), 0) FROM functions \
                     WHERE account_id = ?1 AND name != ?2",
                )?
                .query_row(params![account, name], |r| r.get(0))?;
            // Provisioned concurrency of functions without a reservation
            // comes out of the unreserved pool too.
            let others = others + unreserved_provisioned(tx, account, Some(name), None)?;
            let unreserved = i64::from(account_limit) - others - i64::from(n);
            // Lowering a reservation only ever frees capacity, so it is
            // allowed even where the account is already short.
            if i64::from(n) > current.unwrap_or(0)
                && unreserved < i64::from(UNRESERVED_CONCURRENCY_MIN)
            {
                return Err(aws::unreserved_below_minimum(UNRESERVED_CONCURRENCY_MIN).into());
            }
            tx.prepare_cached(
                "UPDATE functions SET reserved_concurrency = ?3 WHERE account_id = ?1 AND name = ?2",
            )?
            .execute(params![account, name, n])?;
            Ok(())
        })
    }

    fn get_reserved_concurrency(&self, account: &str, name: &str) -> Result<Option<u32>> {
        self.read(|tx| {
            let current = reserved_of(tx, account, name)?
                .ok_or_else(|| self.function_not_found(account, name))?;
            current
                .map(|n| {
                    u32::try_from(n).map_err(|_| {
                        StoreError::Corrupt(format!("reserved concurrency of {name} is {n}"))
                    })
                })
                .transpose()
        })
    }

    fn delete_reserved_concurrency(&self, account: &str, name: &str) -> Result<()> {
        self.write(|tx| {
            let updated = tx
                .prepare_cached(
                    "UPDATE functions SET reserved_concurrency = NULL \
                     WHERE account_id = ?1 AND name = ?2",
                )?
                .execute(params![account, name])?;
            if updated == 0 {
                return Err(self.function_not_found(account, name));
            }
            Ok(())
        })
    }

    fn account_usage(&self, account: &str) -> Result<AccountUsage> {
        self.read(|tx| {
            let total_code_size: i64 = tx
                .prepare_cached(
                    "SELECT COALESCE(SUM(code_size), 0) FROM versions WHERE account_id = ?1",
                )?
                .query_row([account], |r| r.get(0))?;
            let (function_count, reserved): (i64, i64) = tx
                .prepare_cached(
                    "SELECT COUNT(*), COALESCE(SUM(reserved_concurrency), 0) FROM functions \
                     WHERE account_id = ?1",
                )?
                .query_row([account], |r| Ok((r.get(0)?, r.get(1)?)))?;
            let provisioned = unreserved_provisioned(tx, account, None, None)?;
            Ok(AccountUsage {
                total_code_size: uint(total_code_size, "total code size")?,
                function_count: uint(function_count, "function count")?,
                reserved_concurrency: uint(reserved, "reserved concurrency")?,
                unreserved_provisioned_concurrency: uint(provisioned, "provisioned concurrency")?,
            })
        })
    }

    // ---- provisioned concurrency ------------------------------------------

    fn put_provisioned_concurrency(
        &self,
        account: &str,
        function: &str,
        qualifier: &str,
        requested: u32,
        account_limit: u32,
        now_ms: i64,
    ) -> Result<ProvisionedConcurrencyConfig> {
        if requested < 1 {
            return Err(aws::provisioned_below_one(requested).into());
        }
        if qualifier == LATEST {
            return Err(aws::provisioned_on_unpublished().into());
        }
        self.write(|tx| {
            match self.provisioned_target(tx, account, function, qualifier)? {
                ProvisionedTarget::Alias(alias) => {
                    if alias.function_version == LATEST {
                        return Err(aws::provisioned_on_unpublished().into());
                    }
                    if alias_targets_provisioned(tx, &alias)? {
                        return Err(aws::alias_on_provisioned_version().into());
                    }
                }
                ProvisionedTarget::Version => {
                    if !provisioned_aliases_of(tx, account, function, qualifier)?.is_empty() {
                        return Err(aws::version_under_provisioned_alias().into());
                    }
                }
            }
            let current = load_provisioned(tx, account, function, qualifier)?;
            // Lowering, or putting the same count again, never takes capacity.
            if current.as_ref().is_none_or(|c| requested > c.requested) {
                check_provisioned_fits(tx, account, function, qualifier, requested, account_limit)?;
            }
            let config = match current {
                Some(mut c) => {
                    let settled = c.status == ProvisionedStatus::Ready && c.allocated == requested;
                    c.requested = requested;
                    if !settled {
                        c.status = ProvisionedStatus::InProgress;
                        c.status_reason = None;
                    }
                    c.last_modified_ms = now_ms;
                    c
                }
                None => ProvisionedConcurrencyConfig {
                    account_id: account.to_owned(),
                    function_name: function.to_owned(),
                    qualifier: qualifier.to_owned(),
                    requested,
                    allocated: 0,
                    status: ProvisionedStatus::InProgress,
                    status_reason: None,
                    last_modified_ms: now_ms,
                },
            };
            save_provisioned(tx, &config)?;
            Ok(config)
        })
    }

    fn get_provisioned_concurrency(
        &self,
        account: &str,
        function: &str,
        qualifier: &str,
    ) -> Result<ProvisionedConcurrencyConfig> {
        if qualifier == LATEST {
            return Err(aws::provisioned_needs_published().into());
        }
        self.read(|tx| {
            self.provisioned_target(tx, account, function, qualifier)?;
            load_provisioned(tx, account, function, qualifier)?
                .ok_or_else(|| aws::provisioned_config_not_found().into())
        })
    }

    fn delete_provisioned_concurrency(
        &self,
        account: &str,
        function: &str,
        qualifier: &str,
    ) -> Result<bool> {
        if qualifier == LATEST {
            return Err(aws::provisioned_needs_published().into());
        }
        self.write(|tx| {
            self.provisioned_target(tx, account, function, qualifier)?;
            delete_provisioned_row(tx, account, function, qualifier)
        })
    }

    fn list_provisioned_concurrency(
        &self,
        account: &str,
        function: &str,
        marker: Option<&str>,
        max_items: usize,
    ) -> Result<Page<ProvisionedConcurrencyConfig>> {
        let max = page_size(max_items);
        self.read(|tx| {
            self.require_function(tx, account, function)?;
            let rows = query_provisioned(
                tx,
                "WHERE account_id = ?1 AND function_name = ?2 AND qualifier > ?3 \
                 ORDER BY qualifier LIMIT ?4",
                params![
                    account,
                    function,
                    marker.unwrap_or(""),
                    limit_plus_one(max)?
                ],
            )?;
            Ok(page(rows, max, |c| c.qualifier.clone()))
        })
    }

    fn set_provisioned_status(
        &self,
        account: &str,
        function: &str,
        qualifier: &str,
        allocated: u32,
        status: ProvisionedStatus,
        reason: Option<&str>,
    ) -> Result<Option<ProvisionedConcurrencyConfig>> {
        self.write_unversioned(|tx| {
            let Some(mut config) = load_provisioned(tx, account, function, qualifier)? else {
                return Ok(None);
            };
            config.allocated = allocated;
            config.status = if status == ProvisionedStatus::Ready && allocated < config.requested {
                ProvisionedStatus::InProgress
            } else {
                status
            };
            config.status_reason = reason.map(str::to_owned);
            save_provisioned(tx, &config)?;
            Ok(Some(config))
        })
    }

    fn all_provisioned_concurrency(&self) -> Result<Vec<ProvisionedConcurrencyConfig>> {
        self.read(|tx| query_provisioned(tx, "ORDER BY account_id, function_name, qualifier", []))
    }

    // ---- asynchronous invocation ------------------------------------------

    fn put_event_invoke_config(&self, cfg: &EventInvokeConfig) -> Result<()> {
        let (account, function) = (cfg.account_id.as_str(), cfg.function_name.as_str());
        self.write(|tx| {
            let exists = match VersionSelector::from_qualifier(Some(&cfg.qualifier)) {
                VersionSelector::Latest => function_exists(tx, account, function)?,
                VersionSelector::Version(v) => version_exists(tx, account, function, &v)?,
                VersionSelector::Alias(a) => load_alias(tx, account, function, &a)?.is_some(),
            };
            if !exists {
                return Err(aws::event_target_not_found().into());
            }
            tx.prepare_cached(
                "INSERT INTO event_invoke_configs (account_id, function_name, qualifier, \
                 maximum_retry_attempts, maximum_event_age_seconds, on_success, on_failure, \
                 execution_window_seconds, last_modified_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
                 ON CONFLICT (account_id, function_name, qualifier) DO UPDATE SET \
                 maximum_retry_attempts = excluded.maximum_retry_attempts, \
                 maximum_event_age_seconds = excluded.maximum_event_age_seconds, \
                 on_success = excluded.on_success, on_failure = excluded.on_failure, \
                 execution_window_seconds = excluded.execution_window_seconds, \
                 last_modified_ms = excluded.last_modified_ms",
            )?
            .execute(params![
                account,
                function,
                cfg.qualifier,
                cfg.maximum_retry_attempts,
                cfg.maximum_event_age_seconds,
                cfg.on_success,
                cfg.on_failure,
                cfg.execution_window_seconds,
                cfg.last_modified_ms,
            ])?;
            Ok(())
        })
    }

    fn get_event_invoke_config(
        &self,
        account: &str,
        function: &str,
        qualifier: &str,
    ) -> Result<Option<EventInvokeConfig>> {
        self.read(|tx| {
            Ok(query_event_invoke(
                tx,
                "WHERE account_id = ?1 AND function_name = ?2 AND qualifier = ?3",
                params![account, function, qualifier],
            )?
            .pop())
        })
    }

    fn list_event_invoke_configs(
        &self,
        account: &str,
        function: &str,
    ) -> Result<Vec<EventInvokeConfig>> {
        let mut configs = self.read(|tx| {
            if !function_exists(tx, account, function)? {
                return Err(aws::event_target_not_found().into());
            }
            query_event_invoke(
                tx,
                "WHERE account_id = ?1 AND function_name = ?2",
                params![account, function],
            )
        })?;
        configs.sort_by(|a, b| qualifier_order(&a.qualifier).cmp(&qualifier_order(&b.qualifier)));
        Ok(configs)
    }

    fn delete_event_invoke_config(
        &self,
        account: &str,
        function: &str,
        qualifier: &str,
    ) -> Result<bool> {
        self.write(|tx| delete_event_invoke_row(tx, account, function, qualifier))
    }

    // ---- account capacity -------------------------------------------------

    fn get_account_capacity(&self, account: &str) -> Result<AccountCapacity> {
        self.read(|tx| {
            let sql = format!("{CAPACITY_SELECT} WHERE a.id = ?1");
            tx.prepare_cached(&sql)?
                .query_row([account], capacity_from_row)
                .optional()?
                .ok_or_else(|| StoreError::from(aws::account_not_found()))?
                .decode()
        })
    }

    fn put_account_capacity(&self, capacity: &AccountCapacity) -> Result<AccountCapacity> {
        capacity.validate()?;
        let dedicated = to_json(&capacity.dedicated)?;
        self.write(|tx| {
            if !account_id_taken(tx, &capacity.account_id)? {
                return Err(aws::account_not_found().into());
            }
            tx.prepare_cached(
                "INSERT INTO account_capacity (account_id, dedicated_json, policy, max_wait_ms, \
                 general_share) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (account_id) DO UPDATE SET dedicated_json = excluded.dedicated_json, \
                 policy = excluded.policy, max_wait_ms = excluded.max_wait_ms, \
                 general_share = excluded.general_share",
            )?
            .execute(params![
                capacity.account_id,
                dedicated,
                capacity.policy.as_str(),
                capacity.max_wait_ms,
                capacity.general_share,
            ])?;
            Ok(capacity.clone())
        })
    }

    fn all_account_capacity(&self) -> Result<Vec<AccountCapacity>> {
        self.read(|tx| {
            let sql = format!("{CAPACITY_SELECT} ORDER BY a.id");
            let rows = tx
                .prepare_cached(&sql)?
                .query_map([], capacity_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter().map(CapacityRow::decode).collect()
        })
    }

    // ---- integrity ------------------------------------------------------

    fn referenced_code(&self) -> Result<Vec<String>> {
        self.read(|tx| {
            // Function code, the layer versions that exist, and the layer
            // content functions keep after its layer version was deleted.
            let mut stmt = tx.prepare_cached(
                "SELECT code_sha256_hex FROM versions \
                 UNION SELECT code_sha256_hex FROM layer_versions \
                 UNION SELECT json_extract(l.value, '$.code.sha256_hex') \
                   FROM versions, json_each(versions.config_json, '$.layers') AS l \
                 ORDER BY 1",
            )?;
            let digests = stmt
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            Ok(digests)
        })
    }

    fn integrity_check(&self) -> Result<()> {
        let conn = self.conn.lock();
        let report = conn
            .prepare("PRAGMA integrity_check")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        if report != ["ok"] {
            return Err(StoreError::Corrupt(report.join("; ")));
        }
        let dangling = conn
            .prepare("PRAGMA foreign_key_check")?
            .query_map([], |r| {
                let table: String = r.get(0)?;
                let rowid: Option<i64> = r.get(1)?;
                let parent: String = r.get(2)?;
                Ok(format!(
                    "a row of {table} (rowid {}) names a missing {parent}",
                    rowid.map_or_else(|| "-".to_owned(), |id| id.to_string())
                ))
            })?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        if !dangling.is_empty() {
            return Err(StoreError::Corrupt(dangling.join("; ")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_types::function::{FunctionState, UpdateStatus};
    use hearth_types::runtime::Runtime;
    use hearth_types::ErrorKind;
    use std::sync::{Arc, Barrier};

    const A: &str = "111111111111";
    const B: &str = "222222222222";
    const T0: i64 = 1_700_000_000_000;
    const REVISION_MISMATCH: &str = "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id";

    fn node() -> NodeIdentity {
        NodeIdentity::new("us-east-1")
    }

    fn registry() -> SqliteRegistry {
        SqliteRegistry::open_in_memory(node()).unwrap()
    }

    fn arn(account: &str, rest: &str) -> String {
        format!("arn:aws:lambda:us-east-1:{account}:function:{rest}")
    }

    fn config() -> FunctionConfig {
        FunctionConfig {
            runtime: Runtime::parse("python3.12").unwrap(),
            handler: "index.handler".into(),
            role: "arn:aws:iam::111111111111:role/r".into(),
            description: String::new(),
            memory_size: 128,
            timeout: 3,
            environment: None,
            ephemeral_storage_mb: 512,
            architectures: vec!["x86_64".into()],
            layers: Vec::new(),
            dead_letter_target: None,
        }
    }

    fn code(seed: u8) -> CodeRef {
        CodeRef {
            sha256_hex: hex::encode([seed; 32]),
            size: 1000 + u64::from(seed),
            unzipped_size: 5000,
        }
    }

    fn new_function(name: &str, publish: bool) -> NewFunction {
        NewFunction {
            name: name.into(),
            config: config(),
            code: code(1),
            publish,
            tags: BTreeMap::new(),
        }
    }

    fn create(r: &SqliteRegistry, account: &str, name: &str) -> VersionRecord {
        r.create_function(account, new_function(name, false), T0)
            .unwrap()
            .0
    }

    /// Creates a function and completes its activation, as the activator would.
    fn create_active(r: &SqliteRegistry, account: &str, name: &str) -> VersionRecord {
        let latest = create(r, account, name);
        activate(r, &latest)
    }

    fn activate(r: &SqliteRegistry, v: &VersionRecord) -> VersionRecord {
        r.set_lifecycle(
            &v.account_id,
            &v.function_name,
            &v.version,
            &v.revision_id,
            &Lifecycle::active(),
        )
        .unwrap()
        .unwrap()
    }

    fn latest(r: &SqliteRegistry, account: &str, name: &str) -> VersionRecord {
        r.get_version(account, name, &VersionSelector::Latest)
            .unwrap()
    }

    #[track_caller]
    fn lambda(result: Result<impl fmt::Debug>) -> LambdaError {
        match result {
            Err(StoreError::Lambda(e)) => e,
            other => panic!("expected a Lambda error, got {other:?}"),
        }
    }

    #[track_caller]
    fn assert_err<T: fmt::Debug>(result: Result<T>, kind: ErrorKind, message: &str) {
        let e = lambda(result);
        assert_eq!((e.kind, e.message.as_str()), (kind, message));
    }

    fn alias_spec(version: &str, routing: &[(&str, f64)]) -> AliasSpec {
        AliasSpec {
            function_version: Some(version.into()),
            description: None,
            routing: Some(routing.iter().map(|(k, v)| ((*k).into(), *v)).collect()),
        }
    }

    fn user_version(r: &SqliteRegistry) -> i64 {
        r.conn
            .lock()
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap()
    }

    // ---- schema ---------------------------------------------------------

    #[test]
    fn migrations_apply_once_and_rerun_idempotently_on_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.db");
        let expected = i64::try_from(MIGRATIONS.len()).unwrap();
        {
            let r = SqliteRegistry::open(&path, node()).unwrap();
            assert_eq!(user_version(&r), expected);
            let mode: String = r
                .conn
                .lock()
                .query_row("PRAGMA journal_mode", [], |row| row.get(0))
                .unwrap();
            assert_eq!(mode, "wal");
            let sync: i64 = r
                .conn
                .lock()
                .query_row("PRAGMA synchronous", [], |row| row.get(0))
                .unwrap();
            assert_eq!(sync, 2, "synchronous=FULL");
            r.create_account("team", false).unwrap();
            create(&r, A, "f");
        }
        let r = SqliteRegistry::open(&path, node()).unwrap();
        assert_eq!(user_version(&r), expected);
        assert_eq!(r.list_accounts().unwrap().len(), 1);
        assert_eq!(latest(&r, A, "f").function_name, "f");
        r.integrity_check().unwrap();
        // A third open of the same file is just as quiet.
        drop(r);
        let r = SqliteRegistry::open(&path, node()).unwrap();
        assert_eq!(user_version(&r), expected);
    }

    #[cfg(unix)]
    #[test]
    fn a_new_file_is_private_to_its_owner() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.db");
        let r = SqliteRegistry::open(&path, node()).unwrap();
        r.create_account("team", false).unwrap();
        for file in ["registry.db", "registry.db-wal"] {
            let mode = std::fs::metadata(dir.path().join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "user_version", 99).unwrap();
        }
        match SqliteRegistry::open(&path, node()) {
            Err(StoreError::Corrupt(m)) => assert!(m.contains("newer"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    // ---- accounts -------------------------------------------------------

    #[test]
    fn accounts_get_fresh_ids_and_keys() {
        let r = registry();
        let (account, key) = r.create_account("team-a", true).unwrap();
        assert_eq!(account.id.len(), 12);
        assert!(account.id.bytes().all(|b| b.is_ascii_digit()));
        assert!(account.admin && account.name == "team-a");
        assert_eq!(key.account_id, account.id);
        assert_eq!(key.access_key_id.len(), 20);
        assert!(key.access_key_id.starts_with("HKIA"));
        assert!(key.access_key_id[4..]
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
        assert_eq!(key.secret_access_key.len(), 40);
        assert!(key
            .secret_access_key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric()));

        let (other, other_key) = r.create_account("team-b", false).unwrap();
        assert_ne!(other.id, account.id);
        assert_ne!(other_key.access_key_id, key.access_key_id);
        assert_ne!(other_key.secret_access_key, key.secret_access_key);

        assert_err(
            r.create_account("team-a", false),
            ErrorKind::ResourceConflict,
            "Account already exists: team-a",
        );
        assert_eq!(
            r.find_access_key(&key.access_key_id).unwrap(),
            Some((account.clone(), key.clone()))
        );
        assert_eq!(r.find_access_key("HKIANOSUCHKEY0000000").unwrap(), None);
        let names: Vec<String> = r
            .list_accounts()
            .unwrap()
            .into_iter()
            .map(|a| a.name)
            .collect();
        assert_eq!(names.len(), 2);
        assert!(names.contains(&"team-a".to_owned()) && names.contains(&"team-b".to_owned()));
    }

    #[test]
    fn ensure_account_is_idempotent() {
        let r = registry();
        let account = Account {
            id: "000000000000".into(),
            name: "default".into(),
            admin: true,
            created_ms: T0,
        };
        let key = AccessKey {
            account_id: account.id.clone(),
            access_key_id: "test".into(),
            secret_access_key: "test".into(),
        };
        r.ensure_account(&account, &key).unwrap();
        r.ensure_account(&account, &key).unwrap();
        assert_eq!(r.list_accounts().unwrap(), vec![account.clone()]);
        assert_eq!(
            r.find_access_key("test").unwrap(),
            Some((account.clone(), key))
        );
        // The same name under another id is a conflict, not a silent merge.
        let clash = Account {
            id: "999999999999".into(),
            ..account
        };
        let clash_key = AccessKey {
            account_id: clash.id.clone(),
            access_key_id: "other".into(),
            secret_access_key: "x".into(),
        };
        assert_err(
            r.ensure_account(&clash, &clash_key),
            ErrorKind::ResourceConflict,
            "Account already exists: default",
        );
    }

    #[test]
    fn deleting_an_account_takes_its_keys_and_functions() {
        let r = registry();
        let (account, key) = r.create_account("gone", false).unwrap();
        let (keeper, _) = r.create_account("kept", false).unwrap();
        create(&r, &account.id, "f");
        create(&r, &keeper.id, "f");
        r.create_alias(&account.id, "f", "live", &alias_spec("$LATEST", &[]))
            .unwrap();
        assert!(r.delete_account(&account.id).unwrap());
        assert!(!r.delete_account(&account.id).unwrap());
        assert_eq!(r.find_access_key(&key.access_key_id).unwrap(), None);
        assert_eq!(
            lambda(r.get_version(&account.id, "f", &VersionSelector::Latest)).kind,
            ErrorKind::ResourceNotFound
        );
        assert_eq!(latest(&r, &keeper.id, "f").account_id, keeper.id);
        r.integrity_check().unwrap();
    }

    // ---- functions ------------------------------------------------------

    #[test]
    fn create_function_makes_a_pending_latest() {
        let r = registry();
        let mut f = new_function("f", false);
        f.tags.insert("team".into(), "a".into());
        let (v, published) = r.create_function(A, f, T0).unwrap();
        assert!(published.is_none());
        assert_eq!(v.version, "$LATEST");
        assert_eq!(v.lifecycle, Lifecycle::creating());
        assert_eq!(v.last_modified_ms, T0);
        assert_eq!(
            uuid::Uuid::parse_str(&v.revision_id)
                .unwrap()
                .get_version_num(),
            4
        );
        assert_eq!(latest(&r, A, "f"), v);
        assert_eq!(
            r.tags(A, "f").unwrap(),
            BTreeMap::from([("team".to_owned(), "a".to_owned())])
        );
        assert_err(
            r.create_function(A, new_function("f", false), T0),
            ErrorKind::ResourceConflict,
            "Function already exist: f",
        );
        // The same name in another account is another function.
        create(&r, B, "f");
    }

    #[test]
    fn create_with_publish_makes_version_one() {
        let r = registry();
        let (latest_v, v1) = r.create_function(A, new_function("f", true), T0).unwrap();
        let v1 = v1.unwrap();
        assert_eq!(v1.version, "1");
        assert_eq!(
            (v1.config.clone(), v1.code.clone()),
            (latest_v.config.clone(), latest_v.code.clone())
        );
        assert_ne!(v1.revision_id, latest_v.revision_id);
        assert_eq!(v1.lifecycle.state, FunctionState::Pending);
        // Both await activation; the next publish makes version 2.
        assert_eq!(r.pending_activations().unwrap().len(), 2);
        r.update_config(
            A,
            "f",
            &ConfigPatch {
                timeout: Some(9),
                ..Default::default()
            },
            None,
            T0 + 1,
        )
        .unwrap();
        assert_eq!(
            r.publish_version(A, "f", None, None, None, T0 + 2)
                .unwrap()
                .version,
            "2"
        );
    }

    #[test]
    fn get_version_resolves_numbers_and_aliases() {
        let r = registry();
        create_active(&r, A, "f");
        let v1 = r.publish_version(A, "f", None, None, None, T0).unwrap();
        r.create_alias(A, "f", "live", &alias_spec("1", &[]))
            .unwrap();
        assert_eq!(
            r.get_version(A, "f", &VersionSelector::Version("1".into()))
                .unwrap(),
            v1
        );
        assert_eq!(
            r.get_version(A, "f", &VersionSelector::Alias("live".into()))
                .unwrap(),
            v1
        );
        assert_err(
            r.get_version(A, "f", &VersionSelector::Version("1221".into())),
            ErrorKind::ResourceNotFound,
            &format!("Function not found: {}", arn(A, "f:1221")),
        );
        assert_err(
            r.get_version(A, "f", &VersionSelector::Alias("aliasdoesnotexist".into())),
            ErrorKind::ResourceNotFound,
            &format!("Function not found: {}", arn(A, "f:aliasdoesnotexist")),
        );
        assert_err(
            r.get_version(A, "nope", &VersionSelector::Latest),
            ErrorKind::ResourceNotFound,
            &format!("Function not found: {}", arn(A, "nope")),
        );
    }

    #[test]
    fn accounts_are_isolated() {
        let r = registry();
        create_active(&r, A, "f");
        r.publish_version(A, "f", None, None, None, T0).unwrap();
        r.create_alias(A, "f", "live", &alias_spec("1", &[]))
            .unwrap();
        let not_found = format!("Function not found: {}", arn(B, "f"));
        let nf = ErrorKind::ResourceNotFound;
        assert_err(
            r.get_version(B, "f", &VersionSelector::Latest),
            nf,
            &not_found,
        );
        assert_err(
            r.update_code(B, "f", code(2), None, false, T0),
            nf,
            &not_found,
        );
        assert_err(
            r.update_config(B, "f", &ConfigPatch::default(), None, T0),
            nf,
            &not_found,
        );
        assert_err(
            r.publish_version(B, "f", None, None, None, T0),
            nf,
            &not_found,
        );
        assert_err(r.list_versions(B, "f", None, 10), nf, &not_found);
        assert_err(r.tags(B, "f"), nf, &not_found);
        assert_err(r.get_alias(B, "f", "live"), nf, &not_found);
        assert_err(
            r.update_alias(B, "f", "live", &AliasSpec::default(), None),
            nf,
            &not_found,
        );
        assert_err(r.delete_alias(B, "f", "live"), nf, &not_found);
        assert_err(r.list_aliases(B, "f", None, None, 10), nf, &not_found);
        assert_err(r.delete_version(B, "f", "1"), nf, &not_found);
        assert_err(r.get_reserved_concurrency(B, "f"), nf, &not_found);
        assert_err(r.delete_reserved_concurrency(B, "f"), nf, &not_found);
        assert_err(r.delete_function(B, "f"), nf, &not_found);
        assert_eq!(lambda(r.put_reserved_concurrency(B, "f", 5, 1000)).kind, nf);
        assert!(r.list_functions(B, None, 50).unwrap().items.is_empty());
        assert_eq!(r.account_usage(B).unwrap(), AccountUsage::default());
        assert_eq!(
            r.set_lifecycle(B, "f", "$LATEST", "x", &Lifecycle::active())
                .unwrap(),
            None
        );
        // A's function is untouched.
        assert_eq!(r.list_versions(A, "f", None, 10).unwrap().items.len(), 2);
        assert_eq!(r.get_alias(A, "f", "live").unwrap().function_version, "1");
    }

    #[test]
    fn list_functions_pages_by_name() {
        let r = registry();
        for name in ["e", "c", "a", "d", "b"] {
            create(&r, A, name);
        }
        create(&r, B, "zz");
        let mut seen = Vec::new();
        let mut marker: Option<String> = None;
        let mut pages = 0;
        loop {
            let page = r.list_functions(A, marker.as_deref(), 2).unwrap();
            pages += 1;
            assert!(page.items.len() <= 2);
            assert!(page.items.iter().all(|v| v.version == "$LATEST"));
            seen.extend(page.items.iter().map(|v| v.function_name.clone()));
            match page.next_marker {
                Some(m) => marker = Some(m),
                None => break,
            }
        }
        assert_eq!(seen, ["a", "b", "c", "d", "e"]);
        assert_eq!(pages, 3);
        // An exact fit has no next page.
        assert_eq!(r.list_functions(A, None, 5).unwrap().next_marker, None);
        // Published versions are not listed.
        r.publish_version(A, "a", None, None, None, T0).unwrap();
        assert_eq!(r.list_functions(A, None, 50).unwrap().items.len(), 5);
    }

    #[test]
    fn updates_check_the_revision_and_move_it() {
        let r = registry();
        let active = create_active(&r, A, "f");
        assert_err(
            r.update_code(A, "f", code(2), Some("wrong"), false, T0 + 1),
            ErrorKind::PreconditionFailed,
            REVISION_MISMATCH,
        );
        assert_err(
            r.update_config(A, "f", &ConfigPatch::default(), Some("wrong"), T0 + 1),
            ErrorKind::PreconditionFailed,
            REVISION_MISMATCH,
        );
        assert_eq!(
            latest(&r, A, "f"),
            active,
            "a refused update changes nothing"
        );

        let (updated, published) = r
            .update_code(A, "f", code(2), Some(&active.revision_id), false, T0 + 1)
            .unwrap();
        assert!(published.is_none());
        assert_eq!(updated.code, code(2));
        assert_eq!(updated.last_modified_ms, T0 + 1);
        assert_ne!(updated.revision_id, active.revision_id);
        assert_eq!(updated.lifecycle, Lifecycle::updating());
        assert_eq!(latest(&r, A, "f"), updated);

        let patch = ConfigPatch {
            description: Some("new".into()),
            memory_size: Some(256),
            environment: Some(BTreeMap::from([("K".to_owned(), "V".to_owned())])),
            ..Default::default()
        };
        let configured = r
            .update_config(A, "f", &patch, Some(&updated.revision_id), T0 + 2)
            .unwrap();
        assert_eq!(configured.config.description, "new");
        assert_eq!(configured.config.memory_size, 256);
        assert_eq!(configured.config.timeout, 3);
        assert_eq!(configured.config.environment.as_ref().unwrap()["K"], "V");
        assert_eq!(configured.code, code(2));
        assert_ne!(configured.revision_id, updated.revision_id);
        assert_eq!(
            configured.lifecycle.last_update_status,
            Some(UpdateStatus::InProgress)
        );
    }

    #[test]
    fn updating_a_pending_function_keeps_it_pending() {
        let r = registry();
        create(&r, A, "f");
        let (v, _) = r.update_code(A, "f", code(2), None, false, T0).unwrap();
        assert_eq!(v.lifecycle, Lifecycle::creating());
        let v = r
            .update_config(A, "f", &ConfigPatch::default(), None, T0)
            .unwrap();
        assert_eq!(v.lifecycle.state, FunctionState::Pending);
    }

    #[test]
    fn update_code_can_publish_in_the_same_transaction() {
        let r = registry();
        create_active(&r, A, "f");
        let (updated, v1) = r.update_code(A, "f", code(2), None, true, T0 + 5).unwrap();
        let v1 = v1.unwrap();
        assert_eq!(v1.version, "1");
        assert_eq!(v1.code, code(2));
        assert_eq!(v1.last_modified_ms, T0 + 5);
        // As AWS reports it: the version is Pending while $LATEST updates.
        assert_eq!(v1.lifecycle, Lifecycle::creating());
        assert_eq!(updated.lifecycle, Lifecycle::updating());
        assert_eq!(latest(&r, A, "f"), updated);
        // Publishing the same code again returns that version.
        let (_, again) = r.update_code(A, "f", code(2), None, true, T0 + 6).unwrap();
        assert_eq!(again.unwrap(), v1);
    }

    #[test]
    fn set_lifecycle_applies_only_to_the_revision_it_saw() {
        let r = registry();
        let created = create(&r, A, "f");
        assert_eq!(r.pending_activations().unwrap(), vec![created.clone()]);

        let active = r
            .set_lifecycle(
                A,
                "f",
                "$LATEST",
                &created.revision_id,
                &Lifecycle::active(),
            )
            .unwrap()
            .unwrap();
        assert_eq!(active.lifecycle, Lifecycle::active());
        assert_ne!(
            active.revision_id, created.revision_id,
            "AWS moves the RevisionId"
        );
        assert_eq!(latest(&r, A, "f"), active);
        assert!(r.pending_activations().unwrap().is_empty());

        // A stale activation (the function changed meanwhile) is dropped.
        let (updated, _) = r.update_code(A, "f", code(2), None, false, T0).unwrap();
        assert_eq!(
            r.set_lifecycle(A, "f", "$LATEST", &active.revision_id, &Lifecycle::active())
                .unwrap(),
            None
        );
        assert_eq!(latest(&r, A, "f"), updated);
        assert_eq!(r.pending_activations().unwrap(), vec![updated.clone()]);
        // Setting the state it already has changes nothing.
        let same = r
            .set_lifecycle(A, "f", "$LATEST", &updated.revision_id, &updated.lifecycle)
            .unwrap()
            .unwrap();
        assert_eq!(same, updated);
        // Unknown versions and functions: nothing to do.
        assert_eq!(
            r.set_lifecycle(A, "f", "7", &updated.revision_id, &Lifecycle::active())
                .unwrap(),
            None
        );
        assert_eq!(
            r.set_lifecycle(A, "g", "$LATEST", "x", &Lifecycle::active())
                .unwrap(),
            None
        );
    }

    #[test]
    fn pending_activations_span_accounts() {
        let r = registry();
        create(&r, A, "f");
        create_active(&r, A, "g");
        r.create_function(B, new_function("h", true), T0).unwrap();
        let pending: Vec<(String, String, String)> = r
            .pending_activations()
            .unwrap()
            .into_iter()
            .map(|v| (v.account_id, v.function_name, v.version))
            .collect();
        assert_eq!(
            pending,
            [
                (A.into(), "f".into(), "$LATEST".into()),
                (B.into(), "h".into(), "$LATEST".into()),
                (B.into(), "h".into(), "1".into()),
            ]
        );
    }

    #[test]
    fn publish_version_checks_revision_and_digest() {
        let r = registry();
        let active = create_active(&r, A, "f");
        assert_err(
            r.publish_version(A, "f", None, None, Some("wrong"), T0),
            ErrorKind::PreconditionFailed,
            REVISION_MISMATCH,
        );
        let current = code(1).code_sha256();
        assert_err(
            r.publish_version(A, "f", Some("somenonexistentsha256"), None, None, T0),
            ErrorKind::InvalidParameterValue,
            &format!("CodeSHA256 (somenonexistentsha256) is different from current CodeSHA256 in $LATEST ({current}). Please try again with the CodeSHA256 in $LATEST."),
        );
        assert_eq!(r.list_versions(A, "f", None, 50).unwrap().items.len(), 1);

        let v1 = r
            .publish_version(
                A,
                "f",
                Some(&current),
                Some("first"),
                Some(&active.revision_id),
                T0 + 3,
            )
            .unwrap();
        assert_eq!(v1.version, "1");
        assert_eq!(v1.config.description, "first");
        assert_eq!(v1.last_modified_ms, T0 + 3);
        // Cut from an active $LATEST, the version is active at once, keeps
        // its own RevisionId, and $LATEST's RevisionId moves.
        assert_eq!(v1.lifecycle, Lifecycle::active());
        let after = latest(&r, A, "f");
        assert_ne!(after.revision_id, active.revision_id);
        assert_ne!(after.revision_id, v1.revision_id);
        assert_eq!(
            after.config.description, "",
            "$LATEST keeps its description"
        );
        assert_err(
            r.publish_version(A, "f", None, None, Some(&active.revision_id), T0),
            ErrorKind::PreconditionFailed,
            REVISION_MISMATCH,
        );
    }

    #[test]
    fn publish_version_is_idempotent_until_latest_changes() {
        let r = registry();
        create_active(&r, A, "f");
        let v1 = r
            .publish_version(A, "f", None, Some("one"), None, T0)
            .unwrap();
        let rev = latest(&r, A, "f").revision_id;
        // Nothing changed: the same version comes back, whatever the description.
        assert_eq!(
            r.publish_version(A, "f", None, None, None, T0 + 1).unwrap(),
            v1
        );
        assert_eq!(
            r.publish_version(A, "f", None, Some("other"), None, T0 + 1)
                .unwrap(),
            v1
        );
        assert_eq!(
            latest(&r, A, "f").revision_id,
            rev,
            "no new version, no new revision"
        );

        // A redundant update of $LATEST (same config) still publishes nothing new.
        let v = r
            .update_config(A, "f", &ConfigPatch::default(), None, T0 + 2)
            .unwrap();
        activate(&r, &v);
        assert_eq!(
            r.publish_version(A, "f", None, None, None, T0 + 3).unwrap(),
            v1
        );

        // A description change on $LATEST is a change.
        let patch = ConfigPatch {
            description: Some("second".into()),
            ..Default::default()
        };
        let v = r.update_config(A, "f", &patch, None, T0 + 4).unwrap();
        activate(&r, &v);
        let v2 = r.publish_version(A, "f", None, None, None, T0 + 5).unwrap();
        assert_eq!(v2.version, "2");
        assert_eq!(v2.config.description, "second");

        // So is new code.
        r.update_code(A, "f", code(3), None, false, T0 + 6).unwrap();
        let v3 = r.publish_version(A, "f", None, None, None, T0 + 7).unwrap();
        assert_eq!(v3.version, "3");
        assert_eq!(
            v3.lifecycle,
            Lifecycle::creating(),
            "cut from an updating $LATEST"
        );

        // Numbers are never reused, even after the newest version is deleted.
        r.delete_version(A, "f", "3").unwrap();
        let v4 = r.publish_version(A, "f", None, None, None, T0 + 8).unwrap();
        assert_eq!(v4.version, "4");
    }

    #[test]
    fn publishing_a_pending_latest_keeps_its_revision_for_activation() {
        let r = registry();
        let created = create(&r, A, "f");
        let v1 = r.publish_version(A, "f", None, None, None, T0).unwrap();
        assert_eq!(v1.lifecycle, Lifecycle::creating());
        assert_eq!(latest(&r, A, "f").revision_id, created.revision_id);
        activate(&r, &created);
        activate(&r, &v1);
        assert!(r.pending_activations().unwrap().is_empty());
    }

    #[test]
    fn list_versions_orders_latest_then_numbers_and_pages() {
        let r = registry();
        create(&r, A, "f");
        for i in 0..11u8 {
            r.update_code(A, "f", code(10 + i), None, true, T0).unwrap();
        }
        let mut seen = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = r.list_versions(A, "f", marker.as_deref(), 4).unwrap();
            seen.extend(page.items.into_iter().map(|v| v.version));
            match page.next_marker {
                Some(m) => marker = Some(m),
                None => break,
            }
        }
        let expected: Vec<String> = std::iter::once("$LATEST".to_owned())
            .chain((1..=11).map(|n: u32| n.to_string()))
            .collect();
        assert_eq!(seen, expected);
        let after_latest = r.list_versions(A, "f", Some("$LATEST"), 1).unwrap();
        assert_eq!(after_latest.items[0].version, "1");
        assert_eq!(after_latest.next_marker.as_deref(), Some("1"));
        assert_eq!(
            lambda(r.list_versions(A, "f", Some("bogus"), 4)).kind,
            ErrorKind::InvalidParameterValue
        );
    }

    #[test]
    fn delete_function_removes_everything() {
        let r = registry();
        let mut f = new_function("f", true);
        f.tags.insert("k".into(), "v".into());
        r.create_function(A, f, T0).unwrap();
        r.create_alias(A, "f", "live", &alias_spec("1", &[]))
            .unwrap();
        r.put_reserved_concurrency(A, "f", 10, 1000).unwrap();
        r.delete_function(A, "f").unwrap();
        let nf = format!("Function not found: {}", arn(A, "f"));
        assert_err(r.delete_function(A, "f"), ErrorKind::ResourceNotFound, &nf);
        assert_err(r.tags(A, "f"), ErrorKind::ResourceNotFound, &nf);
        assert!(r.referenced_code().unwrap().is_empty());
        assert!(r.pending_activations().unwrap().is_empty());
        assert_eq!(r.account_usage(A).unwrap(), AccountUsage::default());
        let count: i64 = r
            .conn
            .lock()
            .query_row(
                "SELECT (SELECT COUNT(*) FROM versions) + (SELECT COUNT(*) FROM aliases) \
                 + (SELECT COUNT(*) FROM tags)",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(count, 0);
        // The name is free again.
        create(&r, A, "f");
        r.integrity_check().unwrap();
    }

    #[test]
    fn delete_version_rules() {
        let r = registry();
        r.create_function(A, new_function("f", true), T0).unwrap();
        r.update_code(A, "f", code(2), None, true, T0).unwrap();
        r.update_code(A, "f", code(3), None, true, T0).unwrap();
        r.create_alias(A, "f", "live", &alias_spec("1", &[("2", 0.1)]))
            .unwrap();
        r.create_alias(A, "f", "beta", &alias_spec("1", &[]))
            .unwrap();

        assert_err(
            r.delete_version(A, "f", "$LATEST"),
            ErrorKind::InvalidParameterValue,
            "$LATEST version cannot be deleted without deleting the function.",
        );
        assert_err(
            r.delete_version(A, "f", "live"),
            ErrorKind::InvalidParameterValue,
            "Deletion of aliases is not currently supported.",
        );
        assert_err(
            r.delete_version(A, "f", "1"),
            ErrorKind::ResourceConflict,
            "Unable to delete version because the following aliases reference it: [beta, live]",
        );
        assert_err(
            r.delete_version(A, "f", "2"),
            ErrorKind::ResourceConflict,
            "Unable to delete version because the following aliases reference it: [live]",
        );
        assert_err(
            r.delete_version(A, "nope", "1"),
            ErrorKind::ResourceNotFound,
            &format!("Function not found: {}", arn(A, "nope")),
        );
        r.delete_version(A, "f", "3").unwrap();
        // Absent versions delete quietly, as on AWS.
        r.delete_version(A, "f", "3").unwrap();
        r.delete_version(A, "f", "1233").unwrap();
        let versions: Vec<String> = r
            .list_versions(A, "f", None, 50)
            .unwrap()
            .items
            .into_iter()
            .map(|v| v.version)
            .collect();
        assert_eq!(versions, ["$LATEST", "1", "2"]);
    }

    // ---- aliases --------------------------------------------------------

    /// A function with versions 1 and 2, both active.
    fn two_versions(r: &SqliteRegistry) {
        create_active(r, A, "f");
        r.publish_version(A, "f", None, None, None, T0).unwrap();
        let v = r
            .update_config(
                A,
                "f",
                &ConfigPatch {
                    timeout: Some(10),
                    ..Default::default()
                },
                None,
                T0,
            )
            .unwrap();
        activate(r, &v);
        r.publish_version(A, "f", None, None, None, T0).unwrap();
    }

    #[test]
    fn alias_lifecycle() {
        let r = registry();
        two_versions(&r);
        let spec = AliasSpec {
            function_version: Some("1".into()),
            description: Some("custom-alias".into()),
            routing: None,
        };
        let created = r.create_alias(A, "f", "live", &spec).unwrap();
        assert_eq!(created.function_version, "1");
        assert_eq!(created.description, "custom-alias");
        assert!(created.routing.is_empty());
        assert_eq!(r.get_alias(A, "f", "live").unwrap(), created);
        assert_err(
            r.create_alias(A, "f", "live", &spec),
            ErrorKind::ResourceConflict,
            &format!("Alias already exists: {}", arn(A, "f:live")),
        );

        assert_err(
            r.update_alias(A, "f", "live", &alias_spec("2", &[]), Some("wrong")),
            ErrorKind::PreconditionFailed,
            REVISION_MISMATCH,
        );
        let updated = r
            .update_alias(
                A,
                "f",
                "live",
                &AliasSpec {
                    function_version: Some("2".into()),
                    ..Default::default()
                },
                Some(&created.revision_id),
            )
            .unwrap();
        assert_eq!(updated.function_version, "2");
        assert_eq!(updated.description, "custom-alias", "untouched fields stay");
        assert_ne!(updated.revision_id, created.revision_id);
        let weighted = r
            .update_alias(A, "f", "live", &alias_spec("2", &[("1", 0.25)]), None)
            .unwrap();
        assert_eq!(weighted.routing, BTreeMap::from([("1".to_owned(), 0.25)]));
        assert_eq!(r.get_alias(A, "f", "live").unwrap(), weighted);
        let cleared = r
            .update_alias(A, "f", "live", &alias_spec("2", &[]), None)
            .unwrap();
        assert!(cleared.routing.is_empty());
        // The alias resolves to its version.
        assert_eq!(
            r.get_version(A, "f", &VersionSelector::Alias("live".into()))
                .unwrap()
                .version,
            "2"
        );

        assert_err(
            r.get_alias(A, "f", "non-existent"),
            ErrorKind::ResourceNotFound,
            &format!("Cannot find alias arn: {}", arn(A, "f:non-existent")),
        );
        assert_err(
            r.update_alias(A, "f", "non-existent", &alias_spec("1", &[]), None),
            ErrorKind::ResourceNotFound,
            &format!("Alias not found: {}", arn(A, "f:non-existent")),
        );
        r.delete_alias(A, "f", "live").unwrap();
        // Deleting an absent alias succeeds, as on AWS.
        r.delete_alias(A, "f", "live").unwrap();
        assert_eq!(
            lambda(r.get_alias(A, "f", "live")).kind,
            ErrorKind::ResourceNotFound
        );
    }

    #[test]
    fn alias_routing_is_validated_as_aws_does() {
        let r = registry();
        two_versions(&r);
        // (FunctionVersion, AdditionalVersionWeights, error kind, message)
        type Case = (&'static str, Vec<(&'static str, f64)>, ErrorKind, String);
        let cases: Vec<Case> = vec![
            (
                "1",
                vec![("1", 0.8), ("2", 0.2)],
                ErrorKind::InvalidParameterValue,
                "Number of items in AdditionalVersionWeights cannot be greater than 1".into(),
            ),
            (
                "1",
                vec![("2", 2.0)],
                ErrorKind::Validation,
                "1 validation error detected: Value '{2=2.0}' at 'routingConfig.additionalVersionWeights' failed to satisfy constraint: Map value must satisfy constraint: [Member must have value less than or equal to 1.0, Member must have value greater than or equal to 0.0, Member must not be null]".into(),
            ),
            (
                "1",
                vec![("2", -1.0)],
                ErrorKind::Validation,
                "1 validation error detected: Value '{2=-1.0}' at 'routingConfig.additionalVersionWeights' failed to satisfy constraint: Map value must satisfy constraint: [Member must have value less than or equal to 1.0, Member must have value greater than or equal to 0.0, Member must not be null]".into(),
            ),
            (
                "1",
                vec![("1", 0.5)],
                ErrorKind::InvalidParameterValue,
                "Invalid function version 1. Function version 1 is already included in routing configuration.".into(),
            ),
            (
                "10",
                vec![("2", 0.5)],
                ErrorKind::ResourceNotFound,
                format!("Function not found: {}", arn(A, "f:10")),
            ),
            (
                "1",
                vec![("10", 0.5)],
                ErrorKind::ResourceNotFound,
                format!("Function not found: {}", arn(A, "f:10")),
            ),
            (
                "$LATEST",
                vec![("1", 0.5)],
                ErrorKind::InvalidParameterValue,
                "$LATEST is not supported for an alias pointing to more than 1 version".into(),
            ),
            (
                "1",
                vec![("$LATEST", 0.5)],
                ErrorKind::Validation,
                "1 validation error detected: Value '{$LATEST=0.5}' at 'routingConfig.additionalVersionWeights' failed to satisfy constraint: Map keys must satisfy constraint: [Member must have length less than or equal to 1024, Member must have length greater than or equal to 1, Member must satisfy regular expression pattern: [0-9]+]".into(),
            ),
        ];
        for (primary, routing, kind, message) in &cases {
            let spec = alias_spec(primary, routing);
            assert_err(r.create_alias(A, "f", "custom", &spec), *kind, message);
        }
        // UpdateAlias applies the same rules.
        r.create_alias(A, "f", "custom", &alias_spec("$LATEST", &[]))
            .unwrap();
        for (primary, routing, kind, message) in &cases {
            let spec = alias_spec(primary, routing);
            assert_err(
                r.update_alias(A, "f", "custom", &spec, None),
                *kind,
                message,
            );
        }
        assert_eq!(
            r.get_alias(A, "f", "custom").unwrap().function_version,
            "$LATEST"
        );

        // The function itself missing names the version asked for.
        assert_err(
            r.create_alias(A, "f-unknown", "custom", &alias_spec("1", &[("2", 0.5)])),
            ErrorKind::ResourceNotFound,
            &format!("Function not found: {}", arn(A, "f-unknown:1")),
        );
        // Empty routing, and the boundary weights, are fine.
        r.create_alias(A, "f", "empty", &alias_spec("1", &[]))
            .unwrap();
        r.create_alias(A, "f", "zero", &alias_spec("1", &[("2", 0.0)]))
            .unwrap();
        r.create_alias(A, "f", "one", &alias_spec("1", &[("2", 1.0)]))
            .unwrap();
        let missing = AliasSpec {
            function_version: None,
            ..Default::default()
        };
        assert_eq!(
            lambda(r.create_alias(A, "f", "x", &missing)).kind,
            ErrorKind::Validation
        );
    }

    #[test]
    fn list_aliases_filters_and_pages() {
        let r = registry();
        two_versions(&r);
        for (name, version) in [
            ("d", "1"),
            ("b", "2"),
            ("a", "1"),
            ("c", "1"),
            ("e", "$LATEST"),
        ] {
            r.create_alias(A, "f", name, &alias_spec(version, &[]))
                .unwrap();
        }
        let mut seen = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = r.list_aliases(A, "f", None, marker.as_deref(), 2).unwrap();
            seen.extend(page.items.into_iter().map(|a| a.name));
            match page.next_marker {
                Some(m) => marker = Some(m),
                None => break,
            }
        }
        assert_eq!(seen, ["a", "b", "c", "d", "e"]);
        let for_one: Vec<String> = r
            .list_aliases(A, "f", Some("1"), None, 50)
            .unwrap()
            .items
            .into_iter()
            .map(|a| a.name)
            .collect();
        assert_eq!(for_one, ["a", "c", "d"]);
        let paged = r.list_aliases(A, "f", Some("1"), Some("a"), 1).unwrap();
        assert_eq!(paged.items[0].name, "c");
        assert_eq!(paged.next_marker.as_deref(), Some("c"));
    }

    // ---- concurrency ----------------------------------------------------

    #[test]
    fn reserved_concurrency_round_trip() {
        let r = registry();
        create(&r, A, "f");
        assert_eq!(r.get_reserved_concurrency(A, "f").unwrap(), None);
        r.put_reserved_concurrency(A, "f", 0, 1000).unwrap();
        assert_eq!(r.get_reserved_concurrency(A, "f").unwrap(), Some(0));
        r.put_reserved_concurrency(A, "f", 1, 1000).unwrap();
        assert_eq!(r.get_reserved_concurrency(A, "f").unwrap(), Some(1));
        r.delete_reserved_concurrency(A, "f").unwrap();
        assert_eq!(r.get_reserved_concurrency(A, "f").unwrap(), None);
        r.delete_reserved_concurrency(A, "f").unwrap();

        assert_err(
            r.put_reserved_concurrency(A, "doesnotexist", 1, 1000),
            ErrorKind::ResourceNotFound,
            &format!("Function not found: {}", arn(A, "doesnotexist:$LATEST")),
        );
        let nf = format!("Function not found: {}", arn(A, "doesnotexist"));
        assert_err(
            r.get_reserved_concurrency(A, "doesnotexist"),
            ErrorKind::ResourceNotFound,
            &nf,
        );
        assert_err(
            r.delete_reserved_concurrency(A, "doesnotexist"),
            ErrorKind::ResourceNotFound,
            &nf,
        );
    }

    #[test]
    fn reserved_concurrency_keeps_the_unreserved_minimum() {
        let r = registry();
        for name in ["f", "g", "h"] {
            create(&r, A, name);
        }
        create(&r, B, "f");
        let below = "Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [100].";
        assert_err(
            r.put_reserved_concurrency(A, "f", 1001, 1000),
            ErrorKind::InvalidParameterValue,
            below,
        );
        assert_err(
            r.put_reserved_concurrency(A, "f", 901, 1000),
            ErrorKind::InvalidParameterValue,
            below,
        );
        r.put_reserved_concurrency(A, "f", 500, 1000).unwrap();
        r.put_reserved_concurrency(A, "g", 400, 1000).unwrap();
        assert_err(
            r.put_reserved_concurrency(A, "h", 1, 1000),
            ErrorKind::InvalidParameterValue,
            below,
        );
        // A function's own reservation is replaced, not added to.
        r.put_reserved_concurrency(A, "f", 500, 1000).unwrap();
        r.put_reserved_concurrency(A, "f", 400, 1000).unwrap();
        r.put_reserved_concurrency(A, "h", 100, 1000).unwrap();
        // Another account's reservations do not count.
        r.put_reserved_concurrency(B, "f", 900, 1000).unwrap();
        // Lowering is always allowed, even when the limit shrank meanwhile.
        r.put_reserved_concurrency(A, "g", 300, 500).unwrap();
        assert_eq!(r.account_usage(A).unwrap().reserved_concurrency, 800);
    }

    #[test]
    fn account_usage_counts_every_version() {
        let r = registry();
        r.create_function(A, new_function("f", true), T0).unwrap();
        create(&r, A, "g");
        r.put_reserved_concurrency(A, "g", 7, 1000).unwrap();
        create(&r, B, "h");
        let one = code(1).size;
        assert_eq!(
            r.account_usage(A).unwrap(),
            AccountUsage {
                total_code_size: 3 * one,
                function_count: 2,
                reserved_concurrency: 7,
                unreserved_provisioned_concurrency: 0,
            }
        );
    }

    // ---- integrity ------------------------------------------------------

    #[test]
    fn referenced_code_lists_distinct_digests() {
        let r = registry();
        r.create_function(A, new_function("f", true), T0).unwrap();
        r.update_code(A, "f", code(2), None, false, T0).unwrap();
        create(&r, B, "g");
        assert_eq!(
            r.referenced_code().unwrap(),
            vec![code(1).sha256_hex, code(2).sha256_hex]
        );
    }

    #[test]
    fn integrity_check_reports_dangling_rows() {
        let r = registry();
        create(&r, A, "f");
        r.integrity_check().unwrap();
        {
            let conn = r.conn.lock();
            conn.pragma_update(None, "foreign_keys", "OFF").unwrap();
            conn.execute("DELETE FROM functions", []).unwrap();
            conn.pragma_update(None, "foreign_keys", "ON").unwrap();
        }
        match r.integrity_check() {
            Err(StoreError::Corrupt(m)) => assert!(m.contains("versions"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn corrupt_records_are_reported_as_corrupt() {
        let r = registry();
        create(&r, A, "f");
        r.conn
            .lock()
            .execute("UPDATE versions SET config_json = 'nonsense'", [])
            .unwrap();
        match r.get_version(A, "f", &VersionSelector::Latest) {
            Err(StoreError::Corrupt(m)) => assert!(m.contains("$LATEST of f"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn racing_writers_cannot_both_pass_a_revision_check() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.db");
        let first = Arc::new(SqliteRegistry::open(&path, node()).unwrap());
        let rev = create_active(&first, A, "f").revision_id;
        // Two connections to one file: only SQLite's locking separates them.
        let second = Arc::new(SqliteRegistry::open(&path, node()).unwrap());
        let barrier = Arc::new(Barrier::new(2));
        let handles: Vec<_> = [first.clone(), second]
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let (barrier, rev) = (barrier.clone(), rev.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    let patch = ConfigPatch {
                        description: Some(format!("writer {i}")),
                        ..Default::default()
                    };
                    r.update_config(A, "f", &patch, Some(&rev), T0).is_ok()
                })
            })
            .collect();
        let wins = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|ok| *ok)
            .count();
        assert_eq!(wins, 1);
        assert!(latest(&first, A, "f")
            .config
            .description
            .starts_with("writer "));
    }

    // ---- provisioned concurrency ------------------------------------------

    const LIMIT: u32 = 1000;

    /// `f` with versions 1 and 2, an alias `live` → 1.
    fn provisioned_fixture(r: &SqliteRegistry) {
        two_versions(r);
        r.create_alias(A, "f", "live", &alias_spec("1", &[]))
            .unwrap();
    }

    fn put_pc(
        r: &SqliteRegistry,
        function: &str,
        qualifier: &str,
        n: u32,
    ) -> Result<ProvisionedConcurrencyConfig> {
        r.put_provisioned_concurrency(A, function, qualifier, n, LIMIT, T0)
    }

    const PC_NOT_FOUND: &str = "No Provisioned Concurrency Config found for this function";
    const NOT_PUBLISHED: &str =
        "The function resource provided must be an alias or a published version.";
    const UNPUBLISHED: &str =
        "Provisioned Concurrency Configs cannot be applied to unpublished function versions.";

    #[test]
    fn provisioned_lifecycle_as_recorded() {
        let r = registry();
        provisioned_fixture(&r);
        let put = put_pc(&r, "f", "1", 1).unwrap();
        assert_eq!(
            put,
            ProvisionedConcurrencyConfig {
                account_id: A.into(),
                function_name: "f".into(),
                qualifier: "1".into(),
                requested: 1,
                allocated: 0,
                status: ProvisionedStatus::InProgress,
                status_reason: None,
                last_modified_ms: T0,
            }
        );
        assert_eq!(r.get_provisioned_concurrency(A, "f", "1").unwrap(), put);
        assert_err(
            put_pc(&r, "f", "live", 1),
            ErrorKind::ResourceConflict,
            "Alias can't be used for Provisioned Concurrency configuration on an already Provisioned version",
        );
        assert!(r.delete_provisioned_concurrency(A, "f", "1").unwrap());
        assert_err(
            r.get_provisioned_concurrency(A, "f", "1"),
            ErrorKind::ProvisionedConcurrencyConfigNotFound,
            PC_NOT_FOUND,
        );
        let on_alias = put_pc(&r, "f", "live", 1).unwrap();
        assert_eq!(on_alias.qualifier, "live");
        assert_err(
            put_pc(&r, "f", "1", 1),
            ErrorKind::ResourceConflict,
            "Version is pointed by a Provisioned Concurrency alias",
        );
        // The other version is free.
        put_pc(&r, "f", "2", 1).unwrap();
        r.delete_alias(A, "f", "live").unwrap();
        assert_err(
            r.get_provisioned_concurrency(A, "f", "live"),
            ErrorKind::ResourceNotFound,
            &format!("Cannot find alias arn: {}", arn(A, "f:live")),
        );
        let left: Vec<String> = r
            .list_provisioned_concurrency(A, "f", None, 50)
            .unwrap()
            .items
            .into_iter()
            .map(|c| c.qualifier)
            .collect();
        assert_eq!(left, ["2"]);
        r.delete_provisioned_concurrency(A, "f", "2").unwrap();
        assert!(r
            .list_provisioned_concurrency(A, "f", None, 50)
            .unwrap()
            .items
            .is_empty());
    }

    #[test]
    fn provisioned_errors_as_recorded() {
        let r = registry();
        provisioned_fixture(&r);
        let alias_nf =
            |f: &str, q: &str| format!("Cannot find alias arn: {}", arn(A, &format!("{f}:{q}")));
        let fn_nf = |rest: &str| format!("Function not found: {}", arn(A, rest));

        // Get.
        assert_err(
            r.get_provisioned_concurrency(A, "f", "1"),
            ErrorKind::ProvisionedConcurrencyConfigNotFound,
            PC_NOT_FOUND,
        );
        assert_err(
            r.get_provisioned_concurrency(A, "doesnotexist", "noalias"),
            ErrorKind::ResourceNotFound,
            &alias_nf("doesnotexist", "noalias"),
        );
        assert_err(
            r.get_provisioned_concurrency(A, "f", "noalias"),
            ErrorKind::ResourceNotFound,
            &alias_nf("f", "noalias"),
        );
        assert_err(
            r.get_provisioned_concurrency(A, "f", "10"),
            ErrorKind::ResourceNotFound,
            &fn_nf("f:10"),
        );
        assert_err(
            r.get_provisioned_concurrency(A, "f", "$LATEST"),
            ErrorKind::InvalidParameterValue,
            NOT_PUBLISHED,
        );
        // List.
        assert!(r
            .list_provisioned_concurrency(A, "f", None, 50)
            .unwrap()
            .items
            .is_empty());
        assert_err(
            r.list_provisioned_concurrency(A, "doesnotexist", None, 50),
            ErrorKind::ResourceNotFound,
            &fn_nf("doesnotexist"),
        );
        // Delete.
        assert_err(
            r.delete_provisioned_concurrency(A, "doesnotexist", "1"),
            ErrorKind::ResourceNotFound,
            &fn_nf("doesnotexist:1"),
        );
        assert_err(
            r.delete_provisioned_concurrency(A, "f", "noalias"),
            ErrorKind::ResourceNotFound,
            &alias_nf("f", "noalias"),
        );
        assert_err(
            r.delete_provisioned_concurrency(A, "f", "10"),
            ErrorKind::ResourceNotFound,
            &fn_nf("f:10"),
        );
        assert_err(
            r.delete_provisioned_concurrency(A, "f", "$LATEST"),
            ErrorKind::InvalidParameterValue,
            NOT_PUBLISHED,
        );
        assert!(!r.delete_provisioned_concurrency(A, "f", "1").unwrap());
        // Put.
        assert_err(
            put_pc(&r, "f", "1", 0),
            ErrorKind::Validation,
            "1 validation error detected: Value '0' at 'provisionedConcurrentExecutions' failed to satisfy constraint: Member must have value greater than or equal to 1",
        );
        assert_err(
            put_pc(&r, "doesnotexist", "noalias", 1),
            ErrorKind::ResourceNotFound,
            &alias_nf("doesnotexist", "noalias"),
        );
        assert_err(
            put_pc(&r, "doesnotexist", "1", 1),
            ErrorKind::ResourceNotFound,
            &fn_nf("doesnotexist:1"),
        );
        assert_err(
            put_pc(&r, "f", "doesnotexist", 1),
            ErrorKind::ResourceNotFound,
            &alias_nf("f", "doesnotexist"),
        );
        assert_err(
            put_pc(&r, "f", "10", 1),
            ErrorKind::ResourceNotFound,
            &fn_nf("f:10"),
        );
        assert_err(
            put_pc(&r, "f", "$LATEST", 1),
            ErrorKind::InvalidParameterValue,
            UNPUBLISHED,
        );
        // An alias of $LATEST is no published version either.
        r.create_alias(A, "f", "head", &alias_spec("$LATEST", &[]))
            .unwrap();
        assert_err(
            put_pc(&r, "f", "head", 1),
            ErrorKind::InvalidParameterValue,
            UNPUBLISHED,
        );
        // Another account's function does not exist for this one.
        assert_err(
            r.put_provisioned_concurrency(B, "f", "1", 1, LIMIT, T0),
            ErrorKind::ResourceNotFound,
            &format!("Function not found: {}", arn(B, "f:1")),
        );
        assert!(r.all_provisioned_concurrency().unwrap().is_empty());
    }

    #[test]
    fn weighted_aliases_conflict_with_both_versions() {
        let r = registry();
        two_versions(&r);
        r.create_alias(A, "f", "canary", &alias_spec("1", &[("2", 0.1)]))
            .unwrap();
        put_pc(&r, "f", "canary", 2).unwrap();
        for v in ["1", "2"] {
            assert_eq!(
                lambda(put_pc(&r, "f", v, 1)).kind,
                ErrorKind::ResourceConflict
            );
        }
        r.delete_provisioned_concurrency(A, "f", "canary").unwrap();
        put_pc(&r, "f", "2", 1).unwrap();
        assert_eq!(
            lambda(put_pc(&r, "f", "canary", 1)).message,
            "Alias can't be used for Provisioned Concurrency configuration on an already Provisioned version"
        );
    }

    #[test]
    fn provisioned_concurrency_limits_as_recorded() {
        let r = registry();
        two_versions(&r);
        assert_err(
            put_pc(&r, "f", "1", LIMIT + 1),
            ErrorKind::InvalidParameterValue,
            "Specified ConcurrentExecutions for function is greater than account's unreserved concurrency [1000].",
        );
        let below = "Specified ConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [100].";
        assert_err(
            put_pc(&r, "f", "1", LIMIT),
            ErrorKind::InvalidParameterValue,
            below,
        );
        put_pc(&r, "f", "1", 800).unwrap();
        // Provisioned concurrency counts against reservations, and the reverse.
        create(&r, A, "g");
        r.publish_version(A, "g", None, None, None, T0).unwrap();
        assert_err(
            r.put_reserved_concurrency(A, "g", 101, LIMIT),
            ErrorKind::InvalidParameterValue,
            "Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [100].",
        );
        r.put_reserved_concurrency(A, "g", 100, LIMIT).unwrap();
        assert_err(
            put_pc(&r, "f", "2", 1),
            ErrorKind::InvalidParameterValue,
            below,
        );
        // A reserved function's provisioned concurrency comes out of its reservation.
        r.update_code(A, "g", code(2), None, true, T0).unwrap();
        put_pc(&r, "g", "1", 60).unwrap();
        assert_err(
            put_pc(&r, "g", "2", 41),
            ErrorKind::InvalidParameterValue,
            "Requested Provisioned Concurrency should not be greater than the reservedConcurrentExecution for function",
        );
        put_pc(&r, "g", "2", 40).unwrap();
        assert_err(
            r.put_reserved_concurrency(A, "g", 99, LIMIT),
            ErrorKind::InvalidParameterValue,
            " ReservedConcurrentExecutions  99 should not be lower than function's total provisioned concurrency [100].",
        );
        r.put_reserved_concurrency(A, "g", 100, LIMIT).unwrap();
        let usage = r.account_usage(A).unwrap();
        assert_eq!(
            (
                usage.reserved_concurrency,
                usage.unreserved_provisioned_concurrency
            ),
            (100, 800)
        );
        // A config's own current value is not counted twice.
        put_pc(&r, "f", "1", 800).unwrap();
        put_pc(&r, "f", "1", 700).unwrap();
        put_pc(&r, "f", "1", 800).unwrap();
        assert_err(
            put_pc(&r, "f", "1", 801),
            ErrorKind::InvalidParameterValue,
            below,
        );
        // Lowering is always allowed, even once the limit shrank.
        r.put_provisioned_concurrency(A, "f", "1", 700, 500, T0)
            .unwrap();
        // Another account's configs do not count.
        create(&r, B, "f");
        r.publish_version(B, "f", None, None, None, T0).unwrap();
        r.put_provisioned_concurrency(B, "f", "1", 900, LIMIT, T0)
            .unwrap();
    }

    #[test]
    fn provisioned_status_reports() {
        let r = registry();
        provisioned_fixture(&r);
        put_pc(&r, "f", "1", 2).unwrap();
        let one = r
            .set_provisioned_status(A, "f", "1", 1, ProvisionedStatus::InProgress, None)
            .unwrap()
            .unwrap();
        assert_eq!(
            (one.allocated, one.status),
            (1, ProvisionedStatus::InProgress)
        );
        // READY below the requested count is a stale report.
        let stale = r
            .set_provisioned_status(A, "f", "1", 1, ProvisionedStatus::Ready, None)
            .unwrap()
            .unwrap();
        assert_eq!(stale.status, ProvisionedStatus::InProgress);
        let ready = r
            .set_provisioned_status(A, "f", "1", 2, ProvisionedStatus::Ready, None)
            .unwrap()
            .unwrap();
        assert_eq!(ready.status, ProvisionedStatus::Ready);
        assert_eq!(
            ready.last_modified_ms, T0,
            "reports leave LastModified alone"
        );
        assert_eq!(r.get_provisioned_concurrency(A, "f", "1").unwrap(), ready);
        // Putting the same count again keeps it ready; a new count does not.
        let same = r
            .put_provisioned_concurrency(A, "f", "1", 2, LIMIT, T0 + 5)
            .unwrap();
        assert_eq!(
            (same.status, same.allocated, same.last_modified_ms),
            (ProvisionedStatus::Ready, 2, T0 + 5)
        );
        let more = put_pc(&r, "f", "1", 3).unwrap();
        assert_eq!(
            (more.status, more.allocated, more.requested),
            (ProvisionedStatus::InProgress, 2, 3)
        );
        let failed = r
            .set_provisioned_status(
                A,
                "f",
                "1",
                2,
                ProvisionedStatus::Failed,
                Some("the node's memory budget is exhausted"),
            )
            .unwrap()
            .unwrap();
        assert_eq!(failed.status, ProvisionedStatus::Failed);
        assert_eq!(
            failed.status_reason.as_deref(),
            Some("the node's memory budget is exhausted")
        );
        // A new put clears the failure.
        let retried = put_pc(&r, "f", "1", 3).unwrap();
        assert_eq!(
            (retried.status, retried.status_reason),
            (ProvisionedStatus::InProgress, None)
        );
        assert_eq!(
            r.set_provisioned_status(A, "f", "2", 1, ProvisionedStatus::Ready, None)
                .unwrap(),
            None,
            "no config, nothing recorded"
        );
        assert!(matches!(
            r.get_provisioned_concurrency(A, "f", "2"),
            Err(StoreError::Lambda(LambdaError {
                kind: ErrorKind::ProvisionedConcurrencyConfigNotFound,
                ..
            }))
        ));
    }

    #[test]
    fn all_provisioned_concurrency_spans_accounts() {
        let r = registry();
        for account in [B, A] {
            r.create_function(account, new_function("f", true), T0)
                .unwrap();
            r.put_provisioned_concurrency(account, "f", "1", 2, LIMIT, T0)
                .unwrap();
        }
        r.create_alias(A, "f", "a", &alias_spec("$LATEST", &[]))
            .unwrap();
        create(&r, A, "e");
        r.publish_version(A, "e", None, None, None, T0).unwrap();
        put_pc(&r, "e", "1", 1).unwrap();
        let all: Vec<(String, String, String)> = r
            .all_provisioned_concurrency()
            .unwrap()
            .into_iter()
            .map(|c| (c.account_id, c.function_name, c.qualifier))
            .collect();
        assert_eq!(
            all,
            [
                (A.into(), "e".into(), "1".into()),
                (A.into(), "f".into(), "1".into()),
                (B.into(), "f".into(), "1".into()),
            ]
        );
    }

    #[test]
    fn list_provisioned_pages_by_qualifier() {
        let r = registry();
        two_versions(&r);
        for alias in ["b", "a"] {
            r.create_alias(A, "f", alias, &alias_spec("2", &[]))
                .unwrap();
        }
        put_pc(&r, "f", "1", 1).unwrap();
        put_pc(&r, "f", "a", 1).unwrap();
        put_pc(&r, "f", "b", 1).unwrap();
        let mut seen = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = r
                .list_provisioned_concurrency(A, "f", marker.as_deref(), 2)
                .unwrap();
            assert!(page.items.len() <= 2);
            seen.extend(page.items.into_iter().map(|c| c.qualifier));
            match page.next_marker {
                Some(m) => marker = Some(m),
                None => break,
            }
        }
        assert_eq!(seen, ["1", "a", "b"]);
    }

    #[test]
    fn provisioned_configs_go_with_what_they_name() {
        let r = registry();
        provisioned_fixture(&r);
        r.create_alias(A, "f", "other", &alias_spec("2", &[]))
            .unwrap();
        put_pc(&r, "f", "live", 1).unwrap();
        r.set_provisioned_status(A, "f", "live", 1, ProvisionedStatus::Ready, None)
            .unwrap();
        // Re-pointing the alias puts it back in progress; what is allocated stands.
        let moved = r
            .update_alias(
                A,
                "f",
                "live",
                &AliasSpec {
                    function_version: Some("2".into()),
                    ..Default::default()
                },
                None,
            )
            .unwrap();
        assert_eq!(moved.function_version, "2");
        let pc = r.get_provisioned_concurrency(A, "f", "live").unwrap();
        assert_eq!(
            (pc.status, pc.allocated),
            (ProvisionedStatus::InProgress, 1)
        );
        // A change that keeps the target leaves the allocation alone.
        r.set_provisioned_status(A, "f", "live", 1, ProvisionedStatus::Ready, None)
            .unwrap();
        r.update_alias(
            A,
            "f",
            "live",
            &AliasSpec {
                description: Some("d".into()),
                ..Default::default()
            },
            None,
        )
        .unwrap();
        assert_eq!(
            r.get_provisioned_concurrency(A, "f", "live")
                .unwrap()
                .status,
            ProvisionedStatus::Ready
        );
        // Not onto a provisioned version, nor onto $LATEST.
        r.update_alias(A, "f", "other", &alias_spec("1", &[]), None)
            .unwrap();
        put_pc(&r, "f", "1", 1).unwrap();
        assert_err(
            r.update_alias(A, "f", "live", &alias_spec("1", &[]), None),
            ErrorKind::ResourceConflict,
            "Alias can't be used for Provisioned Concurrency configuration on an already Provisioned version",
        );
        assert_err(
            r.update_alias(A, "f", "live", &alias_spec("$LATEST", &[]), None),
            ErrorKind::InvalidParameterValue,
            UNPUBLISHED,
        );
        assert_eq!(r.get_alias(A, "f", "live").unwrap().function_version, "2");

        // A version's config goes with the version.
        r.update_alias(A, "f", "other", &alias_spec("2", &[]), None)
            .unwrap();
        r.delete_version(A, "f", "1").unwrap();
        assert_eq!(
            lambda(r.get_provisioned_concurrency(A, "f", "1")).kind,
            ErrorKind::ResourceNotFound
        );
        // The whole function takes the rest.
        assert_eq!(r.all_provisioned_concurrency().unwrap().len(), 1);
        r.delete_function(A, "f").unwrap();
        assert!(r.all_provisioned_concurrency().unwrap().is_empty());
        // Re-creating the function finds nothing left over.
        r.create_function(A, new_function("f", true), T0).unwrap();
        r.create_alias(A, "f", "live", &alias_spec("1", &[]))
            .unwrap();
        assert_eq!(
            lambda(r.get_provisioned_concurrency(A, "f", "live")).kind,
            ErrorKind::ProvisionedConcurrencyConfigNotFound
        );
        r.integrity_check().unwrap();
    }

    #[test]
    fn deleting_an_account_takes_its_provisioned_and_capacity_settings() {
        let r = registry();
        let (account, _) = r.create_account("gone", false).unwrap();
        r.create_function(&account.id, new_function("f", true), T0)
            .unwrap();
        r.put_provisioned_concurrency(&account.id, "f", "1", 1, LIMIT, T0)
            .unwrap();
        let mut c = AccountCapacity::defaults(&account.id);
        c.policy = CapacityMode::Reject;
        r.put_account_capacity(&c).unwrap();
        assert!(r.delete_account(&account.id).unwrap());
        assert!(r.all_provisioned_concurrency().unwrap().is_empty());
        assert!(r.all_account_capacity().unwrap().is_empty());
        let rows: i64 = r
            .conn
            .lock()
            .query_row("SELECT COUNT(*) FROM account_capacity", [], |row| {
                row.get(0)
            })
            .unwrap();
        assert_eq!(rows, 0);
        r.integrity_check().unwrap();
    }

    // ---- event-invoke configs ---------------------------------------------

    const NO_FUNCTION: &str = "The function doesn't exist.";

    fn eic(account: &str, function: &str, qualifier: &str) -> EventInvokeConfig {
        EventInvokeConfig {
            account_id: account.into(),
            function_name: function.into(),
            qualifier: qualifier.into(),
            maximum_retry_attempts: Some(1),
            maximum_event_age_seconds: Some(120),
            on_success: Some(arn(account, "ok")),
            on_failure: Some(arn(account, "failed")),
            execution_window_seconds: Some(3600),
            last_modified_ms: T0,
        }
    }

    /// Publishes versions until `f` has `n` of them.
    fn publish_versions(r: &SqliteRegistry, n: u32) {
        for i in 0..n {
            let v = r
                .update_config(
                    A,
                    "f",
                    &ConfigPatch {
                        timeout: Some(10 + i),
                        ..Default::default()
                    },
                    None,
                    T0,
                )
                .unwrap();
            activate(r, &v);
            r.publish_version(A, "f", None, None, None, T0).unwrap();
        }
    }

    #[test]
    fn event_invoke_configs_round_trip_and_are_replaced_whole() {
        let r = registry();
        create_active(&r, A, "f");
        assert_eq!(r.get_event_invoke_config(A, "f", LATEST).unwrap(), None);
        let full = eic(A, "f", LATEST);
        r.put_event_invoke_config(&full).unwrap();
        assert_eq!(
            r.get_event_invoke_config(A, "f", LATEST).unwrap(),
            Some(full.clone())
        );
        // A second put replaces every field, unset ones included.
        let sparse = EventInvokeConfig {
            maximum_retry_attempts: Some(0),
            maximum_event_age_seconds: None,
            on_success: None,
            on_failure: None,
            execution_window_seconds: None,
            last_modified_ms: T0 + 1,
            ..full.clone()
        };
        r.put_event_invoke_config(&sparse).unwrap();
        assert_eq!(
            r.get_event_invoke_config(A, "f", LATEST).unwrap(),
            Some(sparse)
        );
        // Another account, another function, another qualifier: none.
        assert_eq!(r.get_event_invoke_config(B, "f", LATEST).unwrap(), None);
        assert_eq!(r.get_event_invoke_config(A, "g", LATEST).unwrap(), None);
        assert_eq!(r.get_event_invoke_config(A, "f", "1").unwrap(), None);
    }

    #[test]
    fn event_invoke_configs_need_what_they_name() {
        let r = registry();
        create_active(&r, A, "f");
        for (account, function, qualifier) in [
            (A, "g", LATEST),
            (B, "f", LATEST),
            (A, "f", "1"),
            (A, "f", "live"),
        ] {
            assert_err(
                r.put_event_invoke_config(&eic(account, function, qualifier)),
                ErrorKind::ResourceNotFound,
                NO_FUNCTION,
            );
        }
        assert_err(
            r.list_event_invoke_configs(A, "g"),
            ErrorKind::ResourceNotFound,
            NO_FUNCTION,
        );
        assert!(r.list_event_invoke_configs(A, "f").unwrap().is_empty());
        assert!(!r.delete_event_invoke_config(A, "g", LATEST).unwrap());
    }

    #[test]
    fn event_invoke_configs_list_latest_then_versions_then_aliases() {
        let r = registry();
        create_active(&r, A, "f");
        publish_versions(&r, 10);
        for alias in ["live", "beta"] {
            r.create_alias(A, "f", alias, &alias_spec("1", &[]))
                .unwrap();
        }
        create_active(&r, A, "other");
        r.put_event_invoke_config(&eic(A, "other", LATEST)).unwrap();
        for q in ["live", "10", LATEST, "2", "beta", "1"] {
            r.put_event_invoke_config(&eic(A, "f", q)).unwrap();
        }
        let listed: Vec<String> = r
            .list_event_invoke_configs(A, "f")
            .unwrap()
            .into_iter()
            .map(|c| c.qualifier)
            .collect();
        assert_eq!(listed, [LATEST, "1", "2", "10", "beta", "live"]);

        assert!(r.delete_event_invoke_config(A, "f", "2").unwrap());
        assert!(!r.delete_event_invoke_config(A, "f", "2").unwrap());
        assert_eq!(r.get_event_invoke_config(A, "f", "2").unwrap(), None);
        assert_eq!(r.list_event_invoke_configs(A, "f").unwrap().len(), 5);
        assert_eq!(r.list_event_invoke_configs(A, "other").unwrap().len(), 1);
    }

    #[test]
    fn event_invoke_configs_go_with_what_they_name() {
        let r = registry();
        provisioned_fixture(&r);
        for q in [LATEST, "1", "2", "live"] {
            r.put_event_invoke_config(&eic(A, "f", q)).unwrap();
        }
        r.delete_version(A, "f", "2").unwrap();
        assert_eq!(r.get_event_invoke_config(A, "f", "2").unwrap(), None);
        r.delete_alias(A, "f", "live").unwrap();
        assert_eq!(r.get_event_invoke_config(A, "f", "live").unwrap(), None);
        let left: Vec<String> = r
            .list_event_invoke_configs(A, "f")
            .unwrap()
            .into_iter()
            .map(|c| c.qualifier)
            .collect();
        assert_eq!(left, [LATEST, "1"]);
        // A re-created alias or version of the same name starts without one.
        r.create_alias(A, "f", "live", &alias_spec("1", &[]))
            .unwrap();
        assert_eq!(r.get_event_invoke_config(A, "f", "live").unwrap(), None);

        r.delete_function(A, "f").unwrap();
        r.create_function(A, new_function("f", true), T0).unwrap();
        assert!(r.list_event_invoke_configs(A, "f").unwrap().is_empty());
        r.integrity_check().unwrap();

        let (account, _) = r.create_account("gone", false).unwrap();
        create_active(&r, &account.id, "f");
        r.put_event_invoke_config(&eic(&account.id, "f", LATEST))
            .unwrap();
        assert!(r.delete_account(&account.id).unwrap());
        let rows: i64 = r
            .conn
            .lock()
            .query_row(
                "SELECT COUNT(*) FROM event_invoke_configs WHERE account_id = ?1",
                [&account.id],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(rows, 0);
        r.integrity_check().unwrap();
    }

    // ---- account capacity -------------------------------------------------

    #[test]
    fn account_capacity_round_trip() {
        let r = registry();
        let (team, _) = r.create_account("team", false).unwrap();
        let (other, _) = r.create_account("other", false).unwrap();
        assert_eq!(
            r.get_account_capacity(&team.id).unwrap(),
            AccountCapacity::defaults(&team.id)
        );
        let mut c = AccountCapacity::defaults(&team.id);
        c.dedicated.insert("python:256".into(), 4);
        c.dedicated.insert("nodejs20.x:128".into(), 0);
        c.policy = CapacityMode::Wait;
        c.max_wait_ms = 2500;
        c.general_share = 0.25;
        assert_eq!(r.put_account_capacity(&c).unwrap(), c);
        assert_eq!(r.get_account_capacity(&team.id).unwrap(), c);
        // A second put replaces the first.
        let mut d = AccountCapacity::defaults(&team.id);
        d.policy = CapacityMode::Reject;
        r.put_account_capacity(&d).unwrap();
        assert_eq!(r.get_account_capacity(&team.id).unwrap(), d);
        r.put_account_capacity(&c).unwrap();

        let mut all = r.all_account_capacity().unwrap();
        all.sort_by(|x, y| x.account_id.cmp(&y.account_id));
        let mut expected = vec![c.clone(), AccountCapacity::defaults(&other.id)];
        expected.sort_by(|x, y| x.account_id.cmp(&y.account_id));
        assert_eq!(all, expected);

        // Unknown accounts, and invalid settings, are refused.
        assert_err(
            r.get_account_capacity("999999999999"),
            ErrorKind::ResourceNotFound,
            "Account not found.",
        );
        assert_err(
            r.put_account_capacity(&AccountCapacity::defaults("999999999999")),
            ErrorKind::ResourceNotFound,
            "Account not found.",
        );
        let mut bad = c.clone();
        bad.general_share = 0.0;
        assert_eq!(
            lambda(r.put_account_capacity(&bad)).kind,
            ErrorKind::InvalidParameterValue
        );
        let mut bad = c.clone();
        bad.dedicated.insert("python:100".into(), 1);
        assert_err(
            r.put_account_capacity(&bad),
            ErrorKind::InvalidParameterValue,
            &hearth_types::capacity::Profile::malformed_message("python:100"),
        );
        assert_eq!(r.get_account_capacity(&team.id).unwrap(), c);
    }

    #[test]
    fn a_version_one_registry_is_migrated_with_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.db");
        {
            // The schema as the first release shipped it, with a function in it.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
        }
        {
            let mut conn = Connection::open(&path).unwrap();
            let tx = conn.transaction().unwrap();
            tx.execute(
                "INSERT INTO functions (account_id, name, created_ms, reserved_concurrency, \
                 next_version) VALUES (?1, 'f', 0, NULL, 1)",
                [A],
            )
            .unwrap();
            tx.commit().unwrap();
        }
        let r = SqliteRegistry::open(&path, node()).unwrap();
        assert_eq!(user_version(&r), i64::try_from(MIGRATIONS.len()).unwrap());
        assert!(r
            .list_provisioned_concurrency(A, "f", None, 50)
            .unwrap()
            .items
            .is_empty());
        r.integrity_check().unwrap();
    }

    #[test]
    fn a_version_two_registry_is_migrated_with_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.db");
        {
            // The schema as it stood before event-invoke configs, with a
            // function and a provisioned concurrency config in it.
            let mut conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.execute_batch(MIGRATIONS[1]).unwrap();
            conn.pragma_update(None, "user_version", 2).unwrap();
            let tx = conn.transaction().unwrap();
            tx.execute(
                "INSERT INTO functions (account_id, name, created_ms, reserved_concurrency, \
                 next_version) VALUES (?1, 'f', 0, NULL, 1)",
                [A],
            )
            .unwrap();
            tx.execute(
                "INSERT INTO provisioned_concurrency (account_id, function_name, qualifier, \
                 requested, allocated, status, status_reason, last_modified_ms) \
                 VALUES (?1, 'f', 'live', 2, 0, 'IN_PROGRESS', NULL, 0)",
                [A],
            )
            .unwrap();
            tx.commit().unwrap();
        }
        let r = SqliteRegistry::open(&path, node()).unwrap();
        assert_eq!(user_version(&r), i64::try_from(MIGRATIONS.len()).unwrap());
        assert_eq!(r.all_provisioned_concurrency().unwrap().len(), 1);
        assert!(r.list_event_invoke_configs(A, "f").unwrap().is_empty());
        r.put_event_invoke_config(&eic(A, "f", LATEST)).unwrap();
        assert_eq!(
            r.get_event_invoke_config(A, "f", LATEST).unwrap(),
            Some(eic(A, "f", LATEST))
        );
        r.integrity_check().unwrap();
    }

    #[test]
    fn java_doubles() {
        assert_eq!(java_double(2.0), "2.0");
        assert_eq!(java_double(-1.0), "-1.0");
        assert_eq!(java_double(0.5), "0.5");
        assert_eq!(java_double(f64::NAN), "NaN");
    }
}
