//! The registry trait: every control-plane mutation and lookup, each one
//! atomic. Implementations return [`StoreError::Lambda`] for conditions a
//! client caused (not found, conflict, precondition), with Lambda's message.

use hearth_types::capacity::AccountCapacity;
use hearth_types::events::EventInvokeConfig;
use hearth_types::function::{
    AccessKey, Account, AccountUsage, Alias, CodeRef, FunctionConfig, Lifecycle,
    ProvisionedConcurrencyConfig, ProvisionedStatus, VersionRecord,
};
use hearth_types::LambdaError;
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A condition the client caused, in Lambda's words.
    #[error(transparent)]
    Lambda(#[from] LambdaError),
    #[error("the registry database failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the registry's files failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("a stored record is corrupt: {0}")]
    Corrupt(String),
    /// A queue operation named an event that is not in the queue in the
    /// state it needs (already completed, dead-lettered, not started).
    #[error("event {id} is not {state} in the queue")]
    EventNotFound { id: String, state: &'static str },
    /// The event queue's writer could not commit (its message says why), or
    /// has stopped.
    #[error("the event queue failed: {0}")]
    EventQueue(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A page of a listing and the marker of the next page.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_marker: Option<String>,
}

/// Which version a lookup means: `$LATEST`, a number, or an alias resolved
/// to its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionSelector {
    Latest,
    Version(String),
    Alias(String),
}

impl VersionSelector {
    /// `None` and `$LATEST` mean latest; digits a version; anything else an alias.
    pub fn from_qualifier(q: Option<&str>) -> Self {
        match q {
            None | Some("$LATEST") => Self::Latest,
            Some(v) if !v.is_empty() && v.chars().all(|c| c.is_ascii_digit()) => {
                Self::Version(v.to_owned())
            }
            Some(a) => Self::Alias(a.to_owned()),
        }
    }
}

/// CreateFunction's input after validation.
#[derive(Debug, Clone)]
pub struct NewFunction {
    pub name: String,
    pub config: FunctionConfig,
    pub code: CodeRef,
    /// Publish version 1 in the same transaction.
    pub publish: bool,
    pub tags: BTreeMap<String, String>,
}

/// UpdateFunctionConfiguration's input: `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ConfigPatch {
    pub runtime: Option<hearth_types::runtime::Runtime>,
    pub handler: Option<String>,
    pub role: Option<String>,
    pub description: Option<String>,
    pub memory_size: Option<u32>,
    pub timeout: Option<u32>,
    pub environment: Option<BTreeMap<String, String>>,
    pub ephemeral_storage_mb: Option<u32>,
    /// `Some(empty)` removes every layer.
    pub layers: Option<Vec<hearth_types::function::LayerRef>>,
    /// `Some(None)` removes the dead-letter queue.
    pub dead_letter_target: Option<Option<String>>,
}

impl ConfigPatch {
    pub fn apply(&self, c: &mut FunctionConfig) {
        if let Some(v) = &self.runtime {
            c.runtime = v.clone();
        }
        if let Some(v) = &self.handler {
            c.handler = v.clone();
        }
        if let Some(v) = &self.role {
            c.role = v.clone();
        }
        if let Some(v) = &self.description {
            c.description = v.clone();
        }
        if let Some(v) = self.memory_size {
            c.memory_size = v;
        }
        if let Some(v) = self.timeout {
            c.timeout = v;
        }
        if let Some(v) = &self.environment {
            c.environment = Some(v.clone());
        }
        if let Some(v) = self.ephemeral_storage_mb {
            c.ephemeral_storage_mb = v;
        }
        if let Some(v) = &self.layers {
            c.layers = v.clone();
        }
        if let Some(v) = &self.dead_letter_target {
            c.dead_letter_target = v.clone();
        }
    }
}

/// CreateAlias / UpdateAlias input.
#[derive(Debug, Clone, Default)]
pub struct AliasSpec {
    pub function_version: Option<String>,
    pub description: Option<String>,
    /// `Some(empty)` clears the routing config.
    pub routing: Option<BTreeMap<String, f64>>,
}

/// Accounts, functions, versions, aliases and concurrency settings, and
/// (through [`IamStore`](crate::iam::IamStore)) each account's IAM roles
/// and policies.
///
/// [`write_epoch`](Registry::write_epoch) increases with every committed
/// write, so a reader may keep what it read at one epoch (the invoke path
/// does) until the epoch moves.
///
/// Names passed in are already syntactically valid; `account` is always the
/// caller's account id, so a tenant can only ever reach its own rows.
pub trait Registry:
    crate::iam::IamStore
    + crate::urls::FunctionUrlStore
    + crate::layers::LayerStore
    + Send
    + Sync
    + std::fmt::Debug
{
    /// Increases with every committed write of this process.
    fn write_epoch(&self) -> u64;

    // ---- accounts -------------------------------------------------------
    /// Creates an account with a fresh id and key pair.
    fn create_account(&self, name: &str, admin: bool) -> Result<(Account, AccessKey)>;
    /// Creates the account with exactly this id and key if absent (the dev
    /// account of the embedded default); leaves an existing one alone.
    fn ensure_account(&self, account: &Account, key: &AccessKey) -> Result<()>;
    fn list_accounts(&self) -> Result<Vec<Account>>;
    /// Deletes an account with its keys and all its functions. `false` if absent.
    fn delete_account(&self, account_id: &str) -> Result<bool>;
    /// The account and secret of an access key.
    fn find_access_key(&self, access_key_id: &str) -> Result<Option<(Account, AccessKey)>>;

    // ---- functions ------------------------------------------------------
    /// Creates `$LATEST` (and version 1 if `publish`). 409 if the name exists.
    /// Returns `$LATEST` and the published version, if any.
    fn create_function(
        &self,
        account: &str,
        f: NewFunction,
        now_ms: i64,
    ) -> Result<(VersionRecord, Option<VersionRecord>)>;
    /// One version; an alias resolves to the version it points at.
    fn get_version(&self, account: &str, name: &str, v: &VersionSelector) -> Result<VersionRecord>;
    /// `$LATEST` of every function, ordered by name, paged.
    fn list_functions(
        &self,
        account: &str,
        marker: Option<&str>,
        max_items: usize,
    ) -> Result<Page<VersionRecord>>;
    /// Replaces `$LATEST`'s code. Checks `revision_id` if given. Publishes if asked.
    fn update_code(
        &self,
        account: &str,
        name: &str,
        code: CodeRef,
        revision_id: Option<&str>,
        publish: bool,
        now_ms: i64,
    ) -> Result<(VersionRecord, Option<VersionRecord>)>;
    /// Patches `$LATEST`'s configuration. Checks `revision_id` if given.
    fn update_config(
        &self,
        account: &str,
        name: &str,
        patch: &ConfigPatch,
        revision_id: Option<&str>,
        now_ms: i64,
    ) -> Result<VersionRecord>;
    /// Records the outcome of activation (Pending → Active, InProgress →
    /// Successful) unless the version changed meanwhile (`revision_id`).
    /// Returns the new record, or `None` if the revision moved on.
    fn set_lifecycle(
        &self,
        account: &str,
        name: &str,
        version: &str,
        revision_id: &str,
        lifecycle: &Lifecycle,
    ) -> Result<Option<VersionRecord>>;
    /// Every version of every account whose activation has not completed
    /// (for the restart path).
    fn pending_activations(&self) -> Result<Vec<VersionRecord>>;
    /// Deletes the whole function: versions, aliases, concurrency settings
    /// (reserved and provisioned), event-invoke configs.
    fn delete_function(&self, account: &str, name: &str) -> Result<()>;
    /// Deletes one published version, its provisioned concurrency config and
    /// its event-invoke config.
    /// 400 for `$LATEST`, 409 if an alias points at it.
    fn delete_version(&self, account: &str, name: &str, version: &str) -> Result<()>;
    /// Publishes `$LATEST` as a new version, or returns the newest version if
    /// `$LATEST` has not changed since (code digest and configuration).
    fn publish_version(
        &self,
        account: &str,
        name: &str,
        code_sha256: Option<&str>,
        description: Option<&str>,
        revision_id: Option<&str>,
        now_ms: i64,
    ) -> Result<VersionRecord>;
    /// `$LATEST` then every published version in ascending order, paged.
    fn list_versions(
        &self,
        account: &str,
        name: &str,
        marker: Option<&str>,
        max_items: usize,
    ) -> Result<Page<VersionRecord>>;
    /// The function's tags.
    fn tags(&self, account: &str, name: &str) -> Result<BTreeMap<String, String>>;
    /// Adds or replaces tags (`TagResource`); more than `limit` in all is
    /// Lambda's "Number of tags exceeds resource tag limit." and changes
    /// nothing.
    fn tag_function(
        &self,
        account: &str,
        name: &str,
        tags: &BTreeMap<String, String>,
        limit: usize,
    ) -> Result<()>;
    /// Removes tags by key (`UntagResource`); absent keys are ignored.
    fn untag_function(&self, account: &str, name: &str, keys: &[String]) -> Result<()>;
    /// Every function carrying the tag `key`: (account, function, value).
    fn tagged(&self, key: &str) -> Result<Vec<(String, String, String)>>;

    // ---- aliases --------------------------------------------------------
    fn create_alias(
        &self,
        account: &str,
        function: &str,
        alias: &str,
        spec: &AliasSpec,
    ) -> Result<Alias>;
    fn get_alias(&self, account: &str, function: &str, alias: &str) -> Result<Alias>;
    /// Changes an alias. Re-pointing an alias that has a provisioned
    /// concurrency config puts it back `IN_PROGRESS` (its allocation stands,
    /// as on AWS, until the supervisor reports on the new version); 409 if
    /// the new version has a config of its own.
    fn update_alias(
        &self,
        account: &str,
        function: &str,
        alias: &str,
        spec: &AliasSpec,
        revision_id: Option<&str>,
    ) -> Result<Alias>;
    /// Deletes an alias, its provisioned concurrency config and its
    /// event-invoke config.
    fn delete_alias(&self, account: &str, function: &str, alias: &str) -> Result<()>;
    /// Aliases ordered by name; with `function_version`, only those pointing at it.
    fn list_aliases(
        &self,
        account: &str,
        function: &str,
        function_version: Option<&str>,
        marker: Option<&str>,
        max_items: usize,
    ) -> Result<Page<Alias>>;

    // ---- concurrency ----------------------------------------------------
    /// Sets reserved concurrency. Fails (400) below the function's own total
    /// provisioned concurrency, or if it would leave the account less than
    /// the unreserved minimum of `account_limit` (other functions'
    /// reservations and the provisioned concurrency of functions without one
    /// count against it).
    fn put_reserved_concurrency(
        &self,
        account: &str,
        name: &str,
        n: u32,
        account_limit: u32,
    ) -> Result<()>;
    fn get_reserved_concurrency(&self, account: &str, name: &str) -> Result<Option<u32>>;
    fn delete_reserved_concurrency(&self, account: &str, name: &str) -> Result<()>;

    /// Totals for GetAccountSettings.
    fn account_usage(&self, account: &str) -> Result<AccountUsage>;

    // ---- provisioned concurrency ------------------------------------------
    /// PutProvisionedConcurrencyConfig: creates or replaces the config of a
    /// published version or an alias, checked as AWS checks it:
    ///
    /// - `requested` ≥ 1 (400 `ValidationException`); `$LATEST`, or an alias
    ///   pointing at it, is refused (400);
    /// - the version or alias must exist (404, AWS's wording for each);
    /// - an alias and a version it points at cannot both have a config (409);
    /// - raising it must fit: within the function's reserved concurrency if
    ///   it has one, otherwise within the account's unreserved concurrency
    ///   (`account_limit` minus reservations minus other provisioned
    ///   concurrency) while keeping the unreserved minimum (400).
    ///
    /// A new config starts `IN_PROGRESS` with nothing allocated; a changed
    /// one goes back to `IN_PROGRESS` with its allocation as it stands.
    fn put_provisioned_concurrency(
        &self,
        account: &str,
        function: &str,
        qualifier: &str,
        requested: u32,
        account_limit: u32,
        now_ms: i64,
    ) -> Result<ProvisionedConcurrencyConfig>;
    /// GetProvisionedConcurrencyConfig: 404 `ResourceNotFoundException` if the
    /// version or alias is missing, 404
    /// `ProvisionedConcurrencyConfigNotFoundException` if it has no config.
    fn get_provisioned_concurrency(
        &self,
        account: &str,
        function: &str,
        qualifier: &str,
    ) -> Result<ProvisionedConcurrencyConfig>;
    /// DeleteProvisionedConcurrencyConfig: 404 if the version or alias is
    /// missing; deleting an absent config succeeds (`false`), as on AWS.
    fn delete_provisioned_concurrency(
        &self,
        account: &str,
        function: &str,
        qualifier: &str,
    ) -> Result<bool>;
    /// ListProvisionedConcurrencyConfigs: the function's configs ordered by
    /// qualifier, paged (the marker is the last qualifier of a page).
    fn list_provisioned_concurrency(
        &self,
        account: &str,
        function: &str,
        marker: Option<&str>,
        max_items: usize,
    ) -> Result<Page<ProvisionedConcurrencyConfig>>;
    /// The sandbox supervisor's report: how many function-warm sandboxes
    /// exist for the config, and its status. `READY` below the requested
    /// count (a report about an earlier, smaller request) is recorded as
    /// `IN_PROGRESS`. `None` if the config is gone meanwhile.
    fn set_provisioned_status(
        &self,
        account: &str,
        function: &str,
        qualifier: &str,
        allocated: u32,
        status: ProvisionedStatus,
        reason: Option<&str>,
    ) -> Result<Option<ProvisionedConcurrencyConfig>>;
    /// Every config of every account (for the pool manager at start),
    /// ordered by account, function, qualifier.
    fn all_provisioned_concurrency(&self) -> Result<Vec<ProvisionedConcurrencyConfig>>;

    // ---- asynchronous invocation ------------------------------------------
    /// PutFunctionEventInvokeConfig: creates or replaces, whole, the config
    /// of `$LATEST`, a published version or an alias (the API merges fields
    /// for UpdateFunctionEventInvokeConfig). 404 "The function doesn't
    /// exist." if the function or the qualifier is missing. A config goes
    /// with what it names: its function, version or alias.
    fn put_event_invoke_config(&self, cfg: &EventInvokeConfig) -> Result<()>;
    /// The config of one qualifier, `None` if it has none (or the function
    /// does not exist: AWS answers both alike).
    fn get_event_invoke_config(
        &self,
        account: &str,
        function: &str,
        qualifier: &str,
    ) -> Result<Option<EventInvokeConfig>>;
    /// Every qualifier's config of a function: `$LATEST` first, then
    /// versions in numeric order, then aliases by name. 404 "The function
    /// doesn't exist." for a missing function.
    fn list_event_invoke_configs(
        &self,
        account: &str,
        function: &str,
    ) -> Result<Vec<EventInvokeConfig>>;
    /// Deletes one qualifier's config; `false` if there was none.
    fn delete_event_invoke_config(
        &self,
        account: &str,
        function: &str,
        qualifier: &str,
    ) -> Result<bool>;

    // ---- account capacity -------------------------------------------------
    /// The account's capacity settings, defaults if never set. 404 for an
    /// unknown account.
    fn get_account_capacity(&self, account: &str) -> Result<AccountCapacity>;
    /// Replaces the account's capacity settings after validating them (400);
    /// 404 for an unknown account.
    fn put_account_capacity(&self, capacity: &AccountCapacity) -> Result<AccountCapacity>;
    /// The capacity settings of every account (defaults where never set),
    /// ordered by account id.
    fn all_account_capacity(&self) -> Result<Vec<AccountCapacity>>;

    // ---- integrity ------------------------------------------------------
    /// Digest of every code package a row refers to (for blob GC and checks).
    fn referenced_code(&self) -> Result<Vec<String>>;
    /// SQLite's `PRAGMA integrity_check` plus foreign-key check: `Ok` if clean.
    fn integrity_check(&self) -> Result<()>;
}
