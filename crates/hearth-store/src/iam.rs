//! IAM as Lambda users touch it: roles, customer managed policies, the
//! managed policies attached to a role and the inline policies embedded in
//! it, per account.
//!
//! Hearth keeps these entities and answers for them as IAM does; it does
//! not evaluate policies. Lambda asks one thing of them: whether the role a
//! function names exists in the caller's account ([`IamStore::find_role`]).
//!
//! Names are case-insensitive and keep the case they were created with, as
//! in IAM: `MyRole` and `myrole` are the same role. Every method names the
//! caller's account, so to another account an entity simply does not exist,
//! and every write is one transaction that stores nothing when it fails.
//!
//! ```
//! use hearth_store::iam::{IamStore, NewRole};
//! use hearth_store::SqliteRegistry;
//! use hearth_types::arn::NodeIdentity;
//! let registry = SqliteRegistry::open_in_memory(NodeIdentity::new("us-east-1")).unwrap();
//! let trust = r#"{"Version":"2012-10-17","Statement":[]}"#;
//! let role = registry
//!     .create_role("111111111111", NewRole::new("lambda-role", trust), 0)
//!     .unwrap();
//! assert_eq!(role.arn, "arn:aws:iam::111111111111:role/lambda-role");
//! assert!(registry.find_role("222222222222", "lambda-role").unwrap().is_none());
//! ```

use crate::registry::{Page, StoreError};
use crate::sqlite::SqliteRegistry;
use rand::Rng;
use rusqlite::{params, OptionalExtension, Row, Transaction};
use serde::{Deserialize, Serialize};

/// Roles an account may have (IAM's default quota `RolesPerAccount`).
pub const ROLES_PER_ACCOUNT: u32 = 1000;
/// Customer managed policies an account may have (`PoliciesPerAccount`).
pub const POLICIES_PER_ACCOUNT: u32 = 1500;
/// Managed policies attached to one role (`PoliciesPerRole`).
pub const ATTACHED_POLICIES_PER_ROLE: u32 = 10;
/// Characters of a role's trust policy, whitespace not counted (`ACLSizePerRole`).
pub const TRUST_POLICY_MAX_CHARS: usize = 2048;
/// Characters of a managed policy, whitespace not counted (`PolicySize`).
pub const MANAGED_POLICY_MAX_CHARS: usize = 6144;
/// Characters of all a role's inline policies together, whitespace not counted.
pub const INLINE_POLICIES_MAX_CHARS: usize = 10_240;
/// A role's default `MaxSessionDuration`, seconds.
pub const MAX_SESSION_DURATION_DEFAULT: u32 = 3600;

/// What IAM refuses, in IAM's words (`NoSuchEntity`, `DeleteConflict`, …).
/// The API maps each variant to IAM's error code and status.
#[derive(Debug, thiserror::Error)]
pub enum IamError {
    /// The role, policy or attachment named does not exist in the account.
    #[error("{0}")]
    NoSuchEntity(String),
    /// A role or policy of that name exists already.
    #[error("{0}")]
    EntityAlreadyExists(String),
    /// The entity is still in use (a role with policies, an attached policy).
    #[error("{0}")]
    DeleteConflict(String),
    /// An IAM quota would be exceeded.
    #[error("{0}")]
    LimitExceeded(String),
    /// A policy document that is not a JSON object.
    #[error("{0}")]
    MalformedPolicyDocument(String),
    /// A parameter IAM's model allows but IAM refuses (a malformed ARN).
    #[error("{0}")]
    InvalidInput(String),
    /// A parameter that breaks IAM's model (`ValidationError`).
    #[error("{0}")]
    Validation(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for IamError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Store(e.into())
    }
}

pub type IamResult<T> = Result<T, IamError>;

/// A tag of a role or policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// An IAM role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub account_id: String,
    pub name: String,
    /// `/` or `/…/`.
    pub path: String,
    /// `AROA` and seventeen upper-case letters or digits.
    pub id: String,
    pub arn: String,
    /// The trust policy, JSON as it was given.
    pub assume_role_policy_document: String,
    pub description: Option<String>,
    pub max_session_duration: u32,
    pub tags: Vec<Tag>,
    pub created_ms: i64,
}

/// CreateRole's input, its names already syntactically valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRole {
    pub name: String,
    pub path: String,
    pub assume_role_policy_document: String,
    pub description: Option<String>,
    pub max_session_duration: u32,
    pub tags: Vec<Tag>,
}

impl NewRole {
    /// A role at path `/` with IAM's defaults.
    pub fn new(name: &str, assume_role_policy_document: &str) -> Self {
        Self {
            name: name.to_owned(),
            path: "/".to_owned(),
            assume_role_policy_document: assume_role_policy_document.to_owned(),
            description: None,
            max_session_duration: MAX_SESSION_DURATION_DEFAULT,
            tags: Vec::new(),
        }
    }
}

/// A customer managed policy (one version, `v1`: Hearth keeps no others).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedPolicy {
    pub account_id: String,
    pub name: String,
    pub path: String,
    /// `ANPA` and seventeen upper-case letters or digits.
    pub id: String,
    pub arn: String,
    pub document: String,
    pub description: Option<String>,
    pub tags: Vec<Tag>,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// Roles it is attached to.
    pub attachment_count: u32,
}

/// CreatePolicy's input, its names already syntactically valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPolicy {
    pub name: String,
    pub path: String,
    pub document: String,
    pub description: Option<String>,
    pub tags: Vec<Tag>,
}

/// A managed policy attached to a role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedPolicy {
    pub name: String,
    pub arn: String,
}

/// An inline policy of a role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlinePolicy {
    pub role_name: String,
    pub name: String,
    pub document: String,
}

/// What a policy ARN names: an AWS managed policy (`arn:aws:iam::aws:policy/…`),
/// which Hearth accepts without knowing it since it evaluates no policy, or
/// a customer managed policy of some account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyArn {
    /// The ARN as given.
    pub arn: String,
    /// `aws` or a twelve-digit account id.
    pub owner: String,
    pub path: String,
    pub name: String,
}

impl PolicyArn {
    /// `arn:<partition>:iam::<aws | account>:policy<path><name>`, or IAM's
    /// `InvalidInput` "ARN … is not valid.".
    pub fn parse(arn: &str) -> IamResult<Self> {
        let (owner, kind, path, name) = parse_iam_arn(arn)
            .ok_or_else(|| IamError::InvalidInput(format!("ARN {arn} is not valid.")))?;
        let owner_ok = owner == "aws" || is_account_id(owner);
        if kind != "policy" || !owner_ok || name.len() > 128 || !is_iam_name(name) {
            return Err(IamError::InvalidInput(format!("ARN {arn} is not valid.")));
        }
        Ok(Self {
            arn: arn.to_owned(),
            owner: owner.to_owned(),
            path: path.to_owned(),
            name: name.to_owned(),
        })
    }

    pub fn is_aws_managed(&self) -> bool {
        self.owner == "aws"
    }
}

/// What a role ARN names: `arn:<partition>:iam::<account>:role<path><name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleArn {
    pub account_id: String,
    pub path: String,
    pub name: String,
}

impl RoleArn {
    /// `None` unless `arn` is a role ARN of an account.
    pub fn parse(arn: &str) -> Option<Self> {
        let (account, kind, path, name) = parse_iam_arn(arn)?;
        (kind == "role" && is_account_id(account) && name.len() <= 64 && is_iam_name(name)).then(
            || Self {
                account_id: account.to_owned(),
                path: path.to_owned(),
                name: name.to_owned(),
            },
        )
    }
}

/// `arn:<partition>:iam::<owner>:<kind><path><name>` as (owner, kind, path,
/// name), the path from the first `/` through the last.
fn parse_iam_arn(arn: &str) -> Option<(&str, &str, &str, &str)> {
    let rest = arn.strip_prefix("arn:")?;
    let (partition, rest) = rest.split_once(':')?;
    if !partition.starts_with("aws") {
        return None;
    }
    let rest = rest.strip_prefix("iam::")?;
    let (owner, resource) = rest.split_once(':')?;
    let slash = resource.find('/')?;
    let last = resource.rfind('/')?;
    let (kind, path, name) = (
        &resource[..slash],
        &resource[slash..=last],
        &resource[last + 1..],
    );
    (!name.is_empty()).then_some((owner, kind, path, name))
}

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// IAM's name pattern `[\w+=,.@-]+`.
pub fn is_iam_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_alphanumeric() || c == '_' || "+=,.@-".contains(c))
}

/// A policy document's size as IAM counts it: characters, whitespace not counted.
pub fn policy_size(document: &str) -> usize {
    document.chars().filter(|c| !c.is_whitespace()).count()
}

/// A policy document must be a JSON object; Hearth checks nothing more,
/// since it evaluates no policy.
fn check_document(document: &str) -> IamResult<()> {
    match serde_json::from_str::<serde_json::Value>(document) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        Ok(_) => Err(IamError::MalformedPolicyDocument(
            "Syntax errors in policy.".to_owned(),
        )),
        Err(_) => Err(IamError::MalformedPolicyDocument(
            "This policy contains invalid Json".to_owned(),
        )),
    }
}

/// IAM's messages for the conditions the store detects.
mod aws {
    use super::IamError;

    pub fn no_such_role(name: &str) -> IamError {
        IamError::NoSuchEntity(format!("The role with name {name} cannot be found."))
    }

    pub fn role_exists(name: &str) -> IamError {
        IamError::EntityAlreadyExists(format!("Role with name {name} already exists."))
    }

    pub fn policy_not_found(arn: &str) -> IamError {
        IamError::NoSuchEntity(format!("Policy {arn} was not found."))
    }

    pub fn policy_not_attachable(arn: &str) -> IamError {
        IamError::NoSuchEntity(format!("Policy {arn} does not exist or is not attachable."))
    }

    pub fn policy_exists(name: &str) -> IamError {
        IamError::EntityAlreadyExists(format!(
            "A policy called {name} already exists. Duplicate names are not allowed."
        ))
    }

    pub fn no_such_role_policy(name: &str) -> IamError {
        IamError::NoSuchEntity(format!("The role policy with name {name} cannot be found."))
    }

    pub fn role_has_attached_policies() -> IamError {
        IamError::DeleteConflict("Cannot delete entity, must detach all policies first.".into())
    }

    pub fn role_has_inline_policies() -> IamError {
        IamError::DeleteConflict("Cannot delete entity, must delete policies first.".into())
    }

    pub fn policy_attached() -> IamError {
        IamError::DeleteConflict("Cannot delete a policy attached to entities.".into())
    }

    pub fn quota(name: &str, limit: impl std::fmt::Display) -> IamError {
        IamError::LimitExceeded(format!("Cannot exceed quota for {name}: {limit}"))
    }

    pub fn inline_policies_too_large(role: &str, limit: usize) -> IamError {
        IamError::LimitExceeded(format!(
            "Maximum policy size of {limit} bytes exceeded for role {role}"
        ))
    }
}

/// IAM's entities of every account.
///
/// Names passed in are already syntactically valid (the API checks IAM's
/// patterns and lengths); policy documents are checked here, so no
/// malformed one is ever stored. `account` is always the caller's account.
pub trait IamStore {
    /// CreateRole: `EntityAlreadyExists` if the name is taken (whatever its
    /// case), `MalformedPolicyDocument`, `LimitExceeded`.
    fn create_role(&self, account: &str, role: NewRole, now_ms: i64) -> IamResult<Role>;
    /// The role of that name (any case), if any.
    fn find_role(&self, account: &str, name: &str) -> Result<Option<Role>, StoreError>;
    /// GetRole: `NoSuchEntity` if absent.
    fn get_role(&self, account: &str, name: &str) -> IamResult<Role> {
        self.find_role(account, name)?
            .ok_or_else(|| aws::no_such_role(name))
    }
    /// ListRoles: the roles whose path starts with `path_prefix`, ordered by
    /// name, after `marker` (the last name of the previous page).
    fn list_roles(
        &self,
        account: &str,
        path_prefix: &str,
        marker: Option<&str>,
        max_items: usize,
    ) -> IamResult<Page<Role>>;
    /// DeleteRole: `DeleteConflict` while managed policies are attached or
    /// inline policies embedded.
    fn delete_role(&self, account: &str, name: &str) -> IamResult<()>;

    /// AttachRolePolicy: an account policy must exist in `account`; an AWS
    /// managed one is taken on trust. Attaching twice is a no-op.
    fn attach_role_policy(&self, account: &str, role: &str, policy: &PolicyArn) -> IamResult<()>;
    /// DetachRolePolicy: `NoSuchEntity` unless attached.
    fn detach_role_policy(&self, account: &str, role: &str, policy: &PolicyArn) -> IamResult<()>;
    /// ListAttachedRolePolicies, ordered by ARN, after `marker` (an ARN).
    fn list_attached_role_policies(
        &self,
        account: &str,
        role: &str,
        path_prefix: &str,
        marker: Option<&str>,
        max_items: usize,
    ) -> IamResult<Page<AttachedPolicy>>;

    /// PutRolePolicy: creates or replaces an inline policy.
    fn put_role_policy(
        &self,
        account: &str,
        role: &str,
        name: &str,
        document: &str,
    ) -> IamResult<()>;
    /// GetRolePolicy.
    fn get_role_policy(&self, account: &str, role: &str, name: &str) -> IamResult<InlinePolicy>;
    /// DeleteRolePolicy: `NoSuchEntity` if absent.
    fn delete_role_policy(&self, account: &str, role: &str, name: &str) -> IamResult<()>;
    /// ListRolePolicies: inline policy names ordered by name, after `marker`.
    fn list_role_policies(
        &self,
        account: &str,
        role: &str,
        marker: Option<&str>,
        max_items: usize,
    ) -> IamResult<Page<String>>;

    /// CreatePolicy: names are unique per account whatever the path.
    fn create_policy(
        &self,
        account: &str,
        policy: NewPolicy,
        now_ms: i64,
    ) -> IamResult<ManagedPolicy>;
    /// GetPolicy of an account policy (`NoSuchEntity` for another
    /// account's, and for AWS managed ones, which Hearth does not know).
    fn get_policy(&self, account: &str, arn: &PolicyArn) -> IamResult<ManagedPolicy>;
    /// DeletePolicy: `DeleteConflict` while attached.
    fn delete_policy(&self, account: &str, arn: &PolicyArn) -> IamResult<()>;
}

/// Removes every IAM entity of an account (part of deleting the account).
pub(crate) fn delete_account_entities(tx: &Transaction<'_>, account: &str) -> rusqlite::Result<()> {
    // Attached and inline policies go with their roles (cascade).
    tx.prepare_cached("DELETE FROM iam_roles WHERE account_id = ?1")?
        .execute([account])?;
    tx.prepare_cached("DELETE FROM iam_policies WHERE account_id = ?1")?
        .execute([account])?;
    Ok(())
}

// ---- rows ---------------------------------------------------------------

const ROLE_COLUMNS: &str = "account_id, name, path, role_id, trust_policy, description, \
     max_session_duration, tags_json, created_ms";

/// A role as stored, before its JSON and ARN are made.
struct RoleRow {
    account_id: String,
    name: String,
    path: String,
    id: String,
    trust_policy: String,
    description: Option<String>,
    max_session_duration: i64,
    tags_json: String,
    created_ms: i64,
}

impl RoleRow {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            account_id: r.get(0)?,
            name: r.get(1)?,
            path: r.get(2)?,
            id: r.get(3)?,
            trust_policy: r.get(4)?,
            description: r.get(5)?,
            max_session_duration: r.get(6)?,
            tags_json: r.get(7)?,
            created_ms: r.get(8)?,
        })
    }

    fn decode(self, partition: &str) -> Result<Role, StoreError> {
        Ok(Role {
            arn: format!(
                "arn:{partition}:iam::{}:role{}{}",
                self.account_id, self.path, self.name
            ),
            max_session_duration: u32::try_from(self.max_session_duration).map_err(|_| {
                StoreError::Corrupt(format!("role {} has a bad session duration", self.name))
            })?,
            tags: decode_tags(&self.tags_json)?,
            account_id: self.account_id,
            name: self.name,
            path: self.path,
            id: self.id,
            assume_role_policy_document: self.trust_policy,
            description: self.description,
            created_ms: self.created_ms,
        })
    }
}

const POLICY_COLUMNS: &str = "p.account_id, p.name, p.path, p.policy_id, p.document, \
     p.description, p.tags_json, p.created_ms, p.updated_ms";

fn policy_from_row(r: &Row<'_>) -> rusqlite::Result<(ManagedPolicy, String)> {
    let account_id: String = r.get(0)?;
    let name: String = r.get(1)?;
    let path: String = r.get(2)?;
    let policy = ManagedPolicy {
        arn: String::new(),
        id: r.get(3)?,
        document: r.get(4)?,
        description: r.get(5)?,
        tags: Vec::new(),
        created_ms: r.get(7)?,
        updated_ms: r.get(8)?,
        attachment_count: 0,
        account_id,
        name,
        path,
    };
    Ok((policy, r.get(6)?))
}

fn encode_tags(tags: &[Tag]) -> Result<String, StoreError> {
    serde_json::to_string(tags).map_err(|e| StoreError::Corrupt(format!("tags: {e}")))
}

fn decode_tags(json: &str) -> Result<Vec<Tag>, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("stored tags: {e}")))
}

/// `prefix` and seventeen upper-case letters or digits, like IAM's unique ids.
fn random_id(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::thread_rng();
    let tail: String = (0..17)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect();
    format!("{prefix}{tail}")
}

fn count(tx: &Transaction<'_>, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<u32> {
    tx.prepare_cached(sql)?.query_row(params, |r| r.get(0))
}

/// A page size as a SQL `LIMIT` that fetches one extra row.
fn limit_plus_one(max_items: usize) -> i64 {
    i64::try_from(max_items.saturating_add(1)).unwrap_or(i64::MAX)
}

fn page<T>(mut rows: Vec<T>, max_items: usize, marker_of: impl Fn(&T) -> String) -> Page<T> {
    let next_marker = if rows.len() > max_items {
        rows.truncate(max_items);
        rows.last().map(marker_of)
    } else {
        None
    };
    Page {
        items: rows,
        next_marker,
    }
}

impl SqliteRegistry {
    fn partition(&self) -> &str {
        &self.node().partition
    }

    fn policy_arn(&self, account: &str, path: &str, name: &str) -> String {
        format!("arn:{}:iam::{account}:policy{path}{name}", self.partition())
    }

    /// The stored role's exact name (its creation case), or `NoSuchEntity`.
    fn role_name_in(&self, tx: &Transaction<'_>, account: &str, name: &str) -> IamResult<String> {
        tx.prepare_cached("SELECT name FROM iam_roles WHERE account_id = ?1 AND name = ?2")?
            .query_row(params![account, name], |r| r.get(0))
            .optional()?
            .ok_or_else(|| aws::no_such_role(name))
    }

    /// The account policy an ARN names, if it is the caller's and exists
    /// at exactly that path.
    fn load_policy(
        &self,
        tx: &Transaction<'_>,
        account: &str,
        arn: &PolicyArn,
    ) -> IamResult<Option<ManagedPolicy>> {
        if arn.owner != account {
            return Ok(None);
        }
        let found = tx
            .prepare_cached(&format!(
                "SELECT {POLICY_COLUMNS} FROM iam_policies p \
                 WHERE p.account_id = ?1 AND p.name = ?2"
            ))?
            .query_row(params![account, arn.name], policy_from_row)
            .optional()?;
        let Some((mut policy, tags_json)) = found.filter(|(p, _)| p.path == arn.path) else {
            return Ok(None);
        };
        policy.arn = self.policy_arn(account, &policy.path, &policy.name);
        policy.tags = decode_tags(&tags_json)?;
        policy.attachment_count = count(
            tx,
            "SELECT COUNT(*) FROM iam_role_attached_policies \
             WHERE account_id = ?1 AND policy_arn = ?2",
            params![account, policy.arn],
        )?;
        Ok(Some(policy))
    }
}

impl IamStore for SqliteRegistry {
    fn create_role(&self, account: &str, role: NewRole, now_ms: i64) -> IamResult<Role> {
        check_document(&role.assume_role_policy_document)?;
        if policy_size(&role.assume_role_policy_document) > TRUST_POLICY_MAX_CHARS {
            return Err(aws::quota("ACLSizePerRole", TRUST_POLICY_MAX_CHARS));
        }
        let tags_json = encode_tags(&role.tags)?;
        let id = random_id("AROA");
        self.write(|tx| {
            let taken = count(
                tx,
                "SELECT COUNT(*) FROM iam_roles WHERE account_id = ?1 AND name = ?2",
                params![account, role.name],
            )?;
            if taken > 0 {
                return Err(aws::role_exists(&role.name));
            }
            let roles = count(
                tx,
                "SELECT COUNT(*) FROM iam_roles WHERE account_id = ?1",
                [account],
            )?;
            if roles >= ROLES_PER_ACCOUNT {
                return Err(aws::quota("RolesPerAccount", ROLES_PER_ACCOUNT));
            }
            tx.prepare_cached(&format!(
                "INSERT INTO iam_roles ({ROLE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
            ))?
            .execute(params![
                account,
                role.name,
                role.path,
                id,
                role.assume_role_policy_document,
                role.description,
                role.max_session_duration,
                tags_json,
                now_ms,
            ])?;
            Ok(())
        })?;
        Ok(Role {
            account_id: account.to_owned(),
            arn: format!(
                "arn:{}:iam::{account}:role{}{}",
                self.partition(),
                role.path,
                role.name
            ),
            name: role.name,
            path: role.path,
            id,
            assume_role_policy_document: role.assume_role_policy_document,
            description: role.description,
            max_session_duration: role.max_session_duration,
            tags: role.tags,
            created_ms: now_ms,
        })
    }

    fn find_role(&self, account: &str, name: &str) -> Result<Option<Role>, StoreError> {
        let row = self.read(|tx| {
            tx.prepare_cached(&format!(
                "SELECT {ROLE_COLUMNS} FROM iam_roles WHERE account_id = ?1 AND name = ?2"
            ))?
            .query_row(params![account, name], RoleRow::from_row)
            .optional()
        })?;
        row.map(|r| r.decode(self.partition())).transpose()
    }

    fn list_roles(
        &self,
        account: &str,
        path_prefix: &str,
        marker: Option<&str>,
        max_items: usize,
    ) -> IamResult<Page<Role>> {
        let rows = self.read(|tx| {
            tx.prepare_cached(&format!(
                "SELECT {ROLE_COLUMNS} FROM iam_roles \
                 WHERE account_id = ?1 AND substr(path, 1, length(?2)) = ?2 \
                   AND (?3 IS NULL OR name > ?3) \
                 ORDER BY name LIMIT ?4"
            ))?
            .query_map(
                params![account, path_prefix, marker, limit_plus_one(max_items)],
                RoleRow::from_row,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()
        })?;
        let roles = rows
            .into_iter()
            .map(|r| r.decode(self.partition()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(page(roles, max_items, |r| r.name.clone()))
    }

    fn delete_role(&self, account: &str, name: &str) -> IamResult<()> {
        self.write(|tx| {
            let name = self.role_name_in(tx, account, name)?;
            let attached = count(
                tx,
                "SELECT COUNT(*) FROM iam_role_attached_policies \
                 WHERE account_id = ?1 AND role_name = ?2",
                params![account, name],
            )?;
            if attached > 0 {
                return Err(aws::role_has_attached_policies());
            }
            let inline = count(
                tx,
                "SELECT COUNT(*) FROM iam_role_inline_policies \
                 WHERE account_id = ?1 AND role_name = ?2",
                params![account, name],
            )?;
            if inline > 0 {
                return Err(aws::role_has_inline_policies());
            }
            tx.prepare_cached("DELETE FROM iam_roles WHERE account_id = ?1 AND name = ?2")?
                .execute(params![account, name])?;
            Ok(())
        })
    }

    fn attach_role_policy(&self, account: &str, role: &str, policy: &PolicyArn) -> IamResult<()> {
        self.write(|tx| {
            let role = self.role_name_in(tx, account, role)?;
            let (arn, name, path) = if policy.is_aws_managed() {
                (policy.arn.clone(), policy.name.clone(), policy.path.clone())
            } else {
                let p = self
                    .load_policy(tx, account, policy)?
                    .ok_or_else(|| aws::policy_not_attachable(&policy.arn))?;
                (p.arn, p.name, p.path)
            };
            let attached = count(
                tx,
                "SELECT COUNT(*) FROM iam_role_attached_policies \
                 WHERE account_id = ?1 AND role_name = ?2 AND policy_arn = ?3",
                params![account, role, arn],
            )?;
            if attached > 0 {
                return Ok(());
            }
            let on_role = count(
                tx,
                "SELECT COUNT(*) FROM iam_role_attached_policies \
                 WHERE account_id = ?1 AND role_name = ?2",
                params![account, role],
            )?;
            if on_role >= ATTACHED_POLICIES_PER_ROLE {
                return Err(aws::quota("PoliciesPerRole", ATTACHED_POLICIES_PER_ROLE));
            }
            tx.prepare_cached(
                "INSERT INTO iam_role_attached_policies \
                 (account_id, role_name, policy_arn, policy_name, policy_path) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![account, role, arn, name, path])?;
            Ok(())
        })
    }

    fn detach_role_policy(&self, account: &str, role: &str, policy: &PolicyArn) -> IamResult<()> {
        self.write(|tx| {
            let role = self.role_name_in(tx, account, role)?;
            // An account policy's attachment row holds its ARN as stored.
            let arn = match self.load_policy(tx, account, policy)? {
                Some(p) => p.arn,
                None => policy.arn.clone(),
            };
            let deleted = tx
                .prepare_cached(
                    "DELETE FROM iam_role_attached_policies \
                     WHERE account_id = ?1 AND role_name = ?2 AND policy_arn = ?3",
                )?
                .execute(params![account, role, arn])?;
            if deleted == 0 {
                return Err(aws::policy_not_found(&policy.arn));
            }
            Ok(())
        })
    }

    fn list_attached_role_policies(
        &self,
        account: &str,
        role: &str,
        path_prefix: &str,
        marker: Option<&str>,
        max_items: usize,
    ) -> IamResult<Page<AttachedPolicy>> {
        let rows = self.read(|tx| {
            let role = self.role_name_in(tx, account, role)?;
            let rows = tx
                .prepare_cached(
                    "SELECT policy_name, policy_arn FROM iam_role_attached_policies \
                     WHERE account_id = ?1 AND role_name = ?2 \
                       AND substr(policy_path, 1, length(?3)) = ?3 \
                       AND (?4 IS NULL OR policy_arn > ?4) \
                     ORDER BY policy_arn LIMIT ?5",
                )?
                .query_map(
                    params![
                        account,
                        role,
                        path_prefix,
                        marker,
                        limit_plus_one(max_items)
                    ],
                    |r| {
                        Ok(AttachedPolicy {
                            name: r.get(0)?,
                            arn: r.get(1)?,
                        })
                    },
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok::<_, IamError>(rows)
        })?;
        Ok(page(rows, max_items, |p| p.arn.clone()))
    }

    fn put_role_policy(
        &self,
        account: &str,
        role: &str,
        name: &str,
        document: &str,
    ) -> IamResult<()> {
        check_document(document)?;
        self.write(|tx| {
            let role = self.role_name_in(tx, account, role)?;
            let others = tx
                .prepare_cached(
                    "SELECT document FROM iam_role_inline_policies \
                     WHERE account_id = ?1 AND role_name = ?2 AND name <> ?3",
                )?
                .query_map(params![account, role, name], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let total = others.iter().map(|d| policy_size(d)).sum::<usize>() + policy_size(document);
            if total > INLINE_POLICIES_MAX_CHARS {
                return Err(aws::inline_policies_too_large(
                    &role,
                    INLINE_POLICIES_MAX_CHARS,
                ));
            }
            // A replaced policy keeps the name it was first put with, as in IAM.
            tx.prepare_cached(
                "INSERT INTO iam_role_inline_policies (account_id, role_name, name, document) \
                 VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (account_id, role_name, name) DO UPDATE SET document = excluded.document",
            )?
            .execute(params![account, role, name, document])?;
            Ok(())
        })
    }

    fn get_role_policy(&self, account: &str, role: &str, name: &str) -> IamResult<InlinePolicy> {
        self.read(|tx| {
            let role = self.role_name_in(tx, account, role)?;
            tx.prepare_cached(
                "SELECT name, document FROM iam_role_inline_policies \
                 WHERE account_id = ?1 AND role_name = ?2 AND name = ?3",
            )?
            .query_row(params![account, role, name], |r| {
                Ok(InlinePolicy {
                    role_name: role.clone(),
                    name: r.get(0)?,
                    document: r.get(1)?,
                })
            })
            .optional()?
            .ok_or_else(|| aws::no_such_role_policy(name))
        })
    }

    fn delete_role_policy(&self, account: &str, role: &str, name: &str) -> IamResult<()> {
        self.write(|tx| {
            let role = self.role_name_in(tx, account, role)?;
            let deleted = tx
                .prepare_cached(
                    "DELETE FROM iam_role_inline_policies \
                     WHERE account_id = ?1 AND role_name = ?2 AND name = ?3",
                )?
                .execute(params![account, role, name])?;
            if deleted == 0 {
                return Err(aws::no_such_role_policy(name));
            }
            Ok(())
        })
    }

    fn list_role_policies(
        &self,
        account: &str,
        role: &str,
        marker: Option<&str>,
        max_items: usize,
    ) -> IamResult<Page<String>> {
        let names = self.read(|tx| {
            let role = self.role_name_in(tx, account, role)?;
            let names = tx
                .prepare_cached(
                    "SELECT name FROM iam_role_inline_policies \
                     WHERE account_id = ?1 AND role_name = ?2 AND (?3 IS NULL OR name > ?3) \
                     ORDER BY name LIMIT ?4",
                )?
                .query_map(
                    params![account, role, marker, limit_plus_one(max_items)],
                    |r| r.get(0),
                )?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            Ok::<_, IamError>(names)
        })?;
        Ok(page(names, max_items, Clone::clone))
    }

    fn create_policy(
        &self,
        account: &str,
        policy: NewPolicy,
        now_ms: i64,
    ) -> IamResult<ManagedPolicy> {
        check_document(&policy.document)?;
        if policy_size(&policy.document) > MANAGED_POLICY_MAX_CHARS {
            return Err(aws::quota("PolicySize", MANAGED_POLICY_MAX_CHARS));
        }
        let tags_json = encode_tags(&policy.tags)?;
        let id = random_id("ANPA");
        self.write(|tx| {
            let taken = count(
                tx,
                "SELECT COUNT(*) FROM iam_policies WHERE account_id = ?1 AND name = ?2",
                params![account, policy.name],
            )?;
            if taken > 0 {
                return Err(aws::policy_exists(&policy.name));
            }
            let policies = count(
                tx,
                "SELECT COUNT(*) FROM iam_policies WHERE account_id = ?1",
                [account],
            )?;
            if policies >= POLICIES_PER_ACCOUNT {
                return Err(aws::quota("PoliciesPerAccount", POLICIES_PER_ACCOUNT));
            }
            tx.prepare_cached(
                "INSERT INTO iam_policies (account_id, name, path, policy_id, document, \
                 description, tags_json, created_ms, updated_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
            )?
            .execute(params![
                account,
                policy.name,
                policy.path,
                id,
                policy.document,
                policy.description,
                tags_json,
                now_ms,
            ])?;
            Ok(())
        })?;
        Ok(ManagedPolicy {
            account_id: account.to_owned(),
            arn: self.policy_arn(account, &policy.path, &policy.name),
            name: policy.name,
            path: policy.path,
            id,
            document: policy.document,
            description: policy.description,
            tags: policy.tags,
            created_ms: now_ms,
            updated_ms: now_ms,
            attachment_count: 0,
        })
    }

    fn get_policy(&self, account: &str, arn: &PolicyArn) -> IamResult<ManagedPolicy> {
        self.read(|tx| {
            self.load_policy(tx, account, arn)?
                .ok_or_else(|| aws::policy_not_found(&arn.arn))
        })
    }

    fn delete_policy(&self, account: &str, arn: &PolicyArn) -> IamResult<()> {
        self.write(|tx| {
            let policy = self
                .load_policy(tx, account, arn)?
                .ok_or_else(|| aws::policy_not_found(&arn.arn))?;
            if policy.attachment_count > 0 {
                return Err(aws::policy_attached());
            }
            tx.prepare_cached("DELETE FROM iam_policies WHERE account_id = ?1 AND name = ?2")?
                .execute(params![account, policy.name])?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Registry;
    use hearth_types::arn::NodeIdentity;

    const A: &str = "111111111111";
    const B: &str = "222222222222";
    const TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    const DOC: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"logs:*","Resource":"*"}]}"#;
    const BASIC: &str = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole";

    fn registry() -> SqliteRegistry {
        SqliteRegistry::open_in_memory(NodeIdentity::new("us-east-1")).unwrap()
    }

    fn role(r: &SqliteRegistry, account: &str, name: &str) -> Role {
        r.create_role(account, NewRole::new(name, TRUST), 1_000)
            .unwrap()
    }

    fn policy(r: &SqliteRegistry, account: &str, name: &str, path: &str) -> ManagedPolicy {
        let p = NewPolicy {
            name: name.into(),
            path: path.into(),
            document: DOC.into(),
            description: None,
            tags: Vec::new(),
        };
        r.create_policy(account, p, 2_000).unwrap()
    }

    fn arn(s: &str) -> PolicyArn {
        PolicyArn::parse(s).unwrap()
    }

    #[track_caller]
    fn assert_iam<T: std::fmt::Debug>(result: IamResult<T>, expected: &str, message: &str) {
        let e = result.unwrap_err();
        let kind = match &e {
            IamError::NoSuchEntity(_) => "NoSuchEntity",
            IamError::EntityAlreadyExists(_) => "EntityAlreadyExists",
            IamError::DeleteConflict(_) => "DeleteConflict",
            IamError::LimitExceeded(_) => "LimitExceeded",
            IamError::MalformedPolicyDocument(_) => "MalformedPolicyDocument",
            IamError::InvalidInput(_) => "InvalidInput",
            IamError::Validation(_) => "Validation",
            IamError::Store(_) => "Store",
        };
        assert_eq!((kind, e.to_string().as_str()), (expected, message));
    }

    fn names(page: &Page<Role>) -> Vec<&str> {
        page.items.iter().map(|r| r.name.as_str()).collect()
    }

    #[test]
    fn roles_round_trip_with_their_fields() {
        let r = registry();
        let new = NewRole {
            name: "Deployer".into(),
            path: "/service/".into(),
            assume_role_policy_document: TRUST.into(),
            description: Some("deploys".into()),
            max_session_duration: 7200,
            tags: vec![Tag {
                key: "team".into(),
                value: "a".into(),
            }],
        };
        let created = r.create_role(A, new, 1_234).unwrap();
        assert_eq!(
            created.arn,
            "arn:aws:iam::111111111111:role/service/Deployer"
        );
        assert!(created.id.starts_with("AROA") && created.id.len() == 21);
        assert!(created.id[4..]
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()));
        // Names are case-insensitive and keep their creation case.
        let got = r.get_role(A, "deployer").unwrap();
        assert_eq!(got, created);
        assert_eq!(got.created_ms, 1_234);
        assert_eq!(
            got.tags,
            vec![Tag {
                key: "team".into(),
                value: "a".into()
            }]
        );
        assert_iam(
            r.create_role(A, NewRole::new("DEPLOYER", TRUST), 0),
            "EntityAlreadyExists",
            "Role with name DEPLOYER already exists.",
        );
        r.delete_role(A, "DEPLOYER").unwrap();
        assert_iam(
            r.get_role(A, "Deployer"),
            "NoSuchEntity",
            "The role with name Deployer cannot be found.",
        );
        assert_iam(
            r.delete_role(A, "Deployer"),
            "NoSuchEntity",
            "The role with name Deployer cannot be found.",
        );
    }

    #[test]
    fn malformed_trust_policies_store_nothing() {
        let r = registry();
        for (doc, message) in [
            ("{not json", "This policy contains invalid Json"),
            ("[1, 2]", "Syntax errors in policy."),
        ] {
            assert_iam(
                r.create_role(A, NewRole::new("r", doc), 0),
                "MalformedPolicyDocument",
                message,
            );
        }
        let big = format!(r#"{{"Sid":"{}"}}"#, "x".repeat(TRUST_POLICY_MAX_CHARS));
        assert_iam(
            r.create_role(A, NewRole::new("r", &big), 0),
            "LimitExceeded",
            "Cannot exceed quota for ACLSizePerRole: 2048",
        );
        // Whitespace does not count.
        let spaced = format!(r#"{{"Sid":"x"{}}}"#, " ".repeat(TRUST_POLICY_MAX_CHARS));
        role(&r, B, "spaced");
        r.delete_role(B, "spaced").unwrap();
        r.create_role(B, NewRole::new("spaced", &spaced), 0)
            .unwrap();
        assert_eq!(r.find_role(A, "r").unwrap(), None);
        assert!(r.list_roles(A, "/", None, 100).unwrap().items.is_empty());
    }

    #[test]
    fn roles_list_by_name_in_pages_filtered_by_path() {
        let r = registry();
        for (name, path) in [
            ("e", "/"),
            ("b", "/app/"),
            ("D", "/app/x/"),
            ("a", "/"),
            ("c", "/ops/"),
        ] {
            let mut new = NewRole::new(name, TRUST);
            new.path = path.into();
            r.create_role(A, new, 0).unwrap();
        }
        role(&r, B, "other");
        let first = r.list_roles(A, "/", None, 2).unwrap();
        assert_eq!(
            (names(&first), first.next_marker.as_deref()),
            (vec!["a", "b"], Some("b"))
        );
        let second = r.list_roles(A, "/", Some("b"), 2).unwrap();
        assert_eq!(names(&second), vec!["c", "D"]);
        let last = r
            .list_roles(A, "/", second.next_marker.as_deref(), 2)
            .unwrap();
        assert_eq!(
            (names(&last), last.next_marker.as_deref()),
            (vec!["e"], None)
        );
        assert_eq!(
            names(&r.list_roles(A, "/app/", None, 100).unwrap()),
            vec!["b", "D"]
        );
        assert_eq!(
            names(&r.list_roles(A, "/app/x", None, 100).unwrap()),
            vec!["D"]
        );
        assert!(r
            .list_roles(A, "/none/", None, 100)
            .unwrap()
            .items
            .is_empty());
        // `_` and `%` are not wildcards.
        assert!(r
            .list_roles(A, "/ap_/", None, 100)
            .unwrap()
            .items
            .is_empty());
        assert!(r.list_roles(A, "/%", None, 100).unwrap().items.is_empty());
    }

    #[test]
    fn managed_policies_attach_detach_and_count_their_attachments() {
        let r = registry();
        role(&r, A, "fn-role");
        let p = policy(&r, A, "Logs", "/team/");
        assert_eq!(p.arn, "arn:aws:iam::111111111111:policy/team/Logs");
        assert!(p.id.starts_with("ANPA") && p.id.len() == 21);
        r.attach_role_policy(A, "FN-ROLE", &arn(&p.arn)).unwrap();
        r.attach_role_policy(A, "fn-role", &arn(&p.arn)).unwrap(); // idempotent
        r.attach_role_policy(A, "fn-role", &arn(BASIC)).unwrap();
        assert_eq!(r.get_policy(A, &arn(&p.arn)).unwrap().attachment_count, 1);
        let attached = r
            .list_attached_role_policies(A, "fn-role", "/", None, 100)
            .unwrap();
        assert_eq!(
            attached.items,
            vec![
                AttachedPolicy {
                    name: "Logs".into(),
                    arn: p.arn.clone()
                },
                AttachedPolicy {
                    name: "AWSLambdaBasicExecutionRole".into(),
                    arn: BASIC.into()
                },
            ]
        );
        let team = r
            .list_attached_role_policies(A, "fn-role", "/team/", None, 100)
            .unwrap();
        assert_eq!(team.items.len(), 1);
        let paged = r
            .list_attached_role_policies(A, "fn-role", "/", None, 1)
            .unwrap();
        assert_eq!(paged.next_marker.as_deref(), Some(p.arn.as_str()));
        let rest = r
            .list_attached_role_policies(A, "fn-role", "/", Some(&p.arn), 1)
            .unwrap();
        assert_eq!(
            (rest.items[0].arn.as_str(), rest.next_marker),
            (BASIC, None)
        );

        assert_iam(
            r.delete_policy(A, &arn(&p.arn)),
            "DeleteConflict",
            "Cannot delete a policy attached to entities.",
        );
        assert_iam(
            r.delete_role(A, "fn-role"),
            "DeleteConflict",
            "Cannot delete entity, must detach all policies first.",
        );
        r.detach_role_policy(A, "fn-role", &arn(&p.arn)).unwrap();
        assert_iam(
            r.detach_role_policy(A, "fn-role", &arn(&p.arn)),
            "NoSuchEntity",
            "Policy arn:aws:iam::111111111111:policy/team/Logs was not found.",
        );
        r.detach_role_policy(A, "fn-role", &arn(BASIC)).unwrap();
        r.delete_policy(A, &arn(&p.arn)).unwrap();
        assert_iam(
            r.get_policy(A, &arn(&p.arn)),
            "NoSuchEntity",
            "Policy arn:aws:iam::111111111111:policy/team/Logs was not found.",
        );
        r.delete_role(A, "fn-role").unwrap();
    }

    #[test]
    fn account_policies_must_exist_where_named() {
        let r = registry();
        role(&r, A, "fn-role");
        let p = policy(&r, A, "Logs", "/");
        for missing in [
            "arn:aws:iam::111111111111:policy/Nope",
            "arn:aws:iam::111111111111:policy/other/Logs",
        ] {
            assert_iam(
                r.attach_role_policy(A, "fn-role", &arn(missing)),
                "NoSuchEntity",
                &format!("Policy {missing} does not exist or is not attachable."),
            );
        }
        assert_iam(
            r.attach_role_policy(A, "nobody", &arn(&p.arn)),
            "NoSuchEntity",
            "The role with name nobody cannot be found.",
        );
        assert_iam(
            r.create_policy(
                A,
                NewPolicy {
                    name: "LOGS".into(),
                    path: "/elsewhere/".into(),
                    document: DOC.into(),
                    description: None,
                    tags: Vec::new(),
                },
                0,
            ),
            "EntityAlreadyExists",
            "A policy called LOGS already exists. Duplicate names are not allowed.",
        );
        assert_iam(
            r.create_policy(
                A,
                NewPolicy {
                    name: "bad".into(),
                    path: "/".into(),
                    document: "nope".into(),
                    description: None,
                    tags: Vec::new(),
                },
                0,
            ),
            "MalformedPolicyDocument",
            "This policy contains invalid Json",
        );
        assert_iam(
            r.get_policy(A, &arn(BASIC)),
            "NoSuchEntity",
            &format!("Policy {BASIC} was not found."),
        );
    }

    #[test]
    fn another_account_sees_nothing() {
        let r = registry();
        role(&r, A, "fn-role");
        let p = policy(&r, A, "Logs", "/");
        r.put_role_policy(A, "fn-role", "inline", DOC).unwrap();
        role(&r, B, "b-role");
        assert_eq!(r.find_role(B, "fn-role").unwrap(), None);
        assert!(r
            .list_roles(B, "/", None, 100)
            .unwrap()
            .items
            .iter()
            .all(|x| x.account_id == B));
        assert_iam(
            r.delete_role(B, "fn-role"),
            "NoSuchEntity",
            "The role with name fn-role cannot be found.",
        );
        assert_iam(
            r.get_policy(B, &arn(&p.arn)),
            "NoSuchEntity",
            &format!("Policy {} was not found.", p.arn),
        );
        assert_iam(
            r.delete_policy(B, &arn(&p.arn)),
            "NoSuchEntity",
            &format!("Policy {} was not found.", p.arn),
        );
        assert_iam(
            r.attach_role_policy(B, "b-role", &arn(&p.arn)),
            "NoSuchEntity",
            &format!("Policy {} does not exist or is not attachable.", p.arn),
        );
        assert_iam(
            r.get_role_policy(B, "fn-role", "inline"),
            "NoSuchEntity",
            "The role with name fn-role cannot be found.",
        );
        // A's own entities are untouched.
        assert_eq!(
            r.get_role_policy(A, "fn-role", "inline").unwrap().document,
            DOC
        );
        assert!(r.get_policy(A, &arn(&p.arn)).is_ok());
    }

    #[test]
    fn inline_policies_are_put_replaced_and_deleted() {
        let r = registry();
        role(&r, A, "fn-role");
        r.put_role_policy(A, "fn-role", "Logs", DOC).unwrap();
        r.put_role_policy(A, "fn-role", "LOGS", "{}").unwrap();
        r.put_role_policy(A, "FN-ROLE", "alpha", DOC).unwrap();
        let got = r.get_role_policy(A, "fn-role", "logs").unwrap();
        assert_eq!(
            got,
            InlinePolicy {
                role_name: "fn-role".into(),
                name: "Logs".into(),
                document: "{}".into()
            }
        );
        let first = r.list_role_policies(A, "fn-role", None, 1).unwrap();
        assert_eq!(
            (first.items, first.next_marker.as_deref()),
            (vec!["alpha".to_owned()], Some("alpha"))
        );
        let rest = r
            .list_role_policies(A, "fn-role", Some("alpha"), 1)
            .unwrap();
        assert_eq!(
            (rest.items, rest.next_marker),
            (vec!["Logs".to_owned()], None)
        );
        assert_iam(
            r.put_role_policy(A, "fn-role", "bad", "{"),
            "MalformedPolicyDocument",
            "This policy contains invalid Json",
        );
        assert_iam(
            r.delete_role(A, "fn-role"),
            "DeleteConflict",
            "Cannot delete entity, must delete policies first.",
        );
        r.delete_role_policy(A, "fn-role", "LOGS").unwrap();
        assert_iam(
            r.delete_role_policy(A, "fn-role", "Logs"),
            "NoSuchEntity",
            "The role policy with name Logs cannot be found.",
        );
        r.delete_role_policy(A, "fn-role", "alpha").unwrap();
        r.delete_role(A, "fn-role").unwrap();
    }

    #[test]
    fn quotas_refuse_and_store_nothing() {
        let r = registry();
        role(&r, A, "fn-role");
        for i in 0..ATTACHED_POLICIES_PER_ROLE {
            let a = format!("arn:aws:iam::aws:policy/P{i}");
            r.attach_role_policy(A, "fn-role", &arn(&a)).unwrap();
        }
        assert_iam(
            r.attach_role_policy(A, "fn-role", &arn("arn:aws:iam::aws:policy/OneTooMany")),
            "LimitExceeded",
            "Cannot exceed quota for PoliciesPerRole: 10",
        );
        let listed = r
            .list_attached_role_policies(A, "fn-role", "/", None, 100)
            .unwrap();
        assert_eq!(listed.items.len(), 10);

        let half = format!(
            r#"{{"Sid":"{}"}}"#,
            "x".repeat(INLINE_POLICIES_MAX_CHARS / 2)
        );
        r.put_role_policy(A, "fn-role", "one", &half).unwrap();
        // Replacing a policy does not count it twice.
        r.put_role_policy(A, "fn-role", "one", &half).unwrap();
        assert_iam(
            r.put_role_policy(A, "fn-role", "two", &half),
            "LimitExceeded",
            "Maximum policy size of 10240 bytes exceeded for role fn-role",
        );
        assert_eq!(
            r.list_role_policies(A, "fn-role", None, 100).unwrap().items,
            vec!["one"]
        );

        let big = format!(r#"{{"Sid":"{}"}}"#, "x".repeat(MANAGED_POLICY_MAX_CHARS));
        assert_iam(
            r.create_policy(
                A,
                NewPolicy {
                    name: "big".into(),
                    path: "/".into(),
                    document: big,
                    description: None,
                    tags: Vec::new(),
                },
                0,
            ),
            "LimitExceeded",
            "Cannot exceed quota for PolicySize: 6144",
        );
    }

    #[test]
    fn deleting_an_account_takes_its_iam_entities() {
        let r = registry();
        let (gone, _) = r.create_account("gone", false).unwrap();
        let (kept, _) = r.create_account("kept", false).unwrap();
        for account in [&gone.id, &kept.id] {
            role(&r, account, "fn-role");
            let p = policy(&r, account, "Logs", "/");
            r.attach_role_policy(account, "fn-role", &arn(&p.arn))
                .unwrap();
            r.put_role_policy(account, "fn-role", "inline", DOC)
                .unwrap();
        }
        assert!(r.delete_account(&gone.id).unwrap());
        assert_eq!(r.find_role(&gone.id, "fn-role").unwrap(), None);
        let gone_policy = format!("arn:aws:iam::{}:policy/Logs", gone.id);
        assert!(r.get_policy(&gone.id, &arn(&gone_policy)).is_err());
        assert!(r.find_role(&kept.id, "fn-role").unwrap().is_some());
        let kept_policy = format!("arn:aws:iam::{}:policy/Logs", kept.id);
        assert_eq!(
            r.get_policy(&kept.id, &arn(&kept_policy))
                .unwrap()
                .attachment_count,
            1
        );
        r.integrity_check().unwrap();
        let leftovers: i64 = r
            .read(|tx| {
                tx.query_row(
                    "SELECT (SELECT COUNT(*) FROM iam_role_attached_policies WHERE account_id = ?1) \
                          + (SELECT COUNT(*) FROM iam_role_inline_policies WHERE account_id = ?1)",
                    [&gone.id],
                    |row| row.get(0),
                )
            })
            .unwrap();
        assert_eq!(leftovers, 0);
    }

    #[test]
    fn roles_survive_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.db");
        let created = {
            let r = SqliteRegistry::open(&path, NodeIdentity::new("us-east-1")).unwrap();
            let created = role(&r, A, "durable");
            r.put_role_policy(A, "durable", "inline", DOC).unwrap();
            created
        };
        let r = SqliteRegistry::open(&path, NodeIdentity::new("us-east-1")).unwrap();
        assert_eq!(r.get_role(A, "durable").unwrap(), created);
        assert_eq!(
            r.get_role_policy(A, "durable", "inline").unwrap().document,
            DOC
        );
    }

    #[test]
    fn arns_parse_as_iam_writes_them() {
        assert_eq!(
            PolicyArn::parse(BASIC).unwrap(),
            PolicyArn {
                arn: BASIC.into(),
                owner: "aws".into(),
                path: "/service-role/".into(),
                name: "AWSLambdaBasicExecutionRole".into(),
            }
        );
        assert!(!PolicyArn::parse("arn:aws:iam::111111111111:policy/x")
            .unwrap()
            .is_aws_managed());
        for bad in [
            "",
            "arn:aws:iam::aws:policy/",
            "arn:aws:iam::aws:policy",
            "arn:aws:iam::12345:policy/x",
            "arn:aws:iam::111111111111:role/x",
            "arn:aws:s3:::bucket/x",
            "arn:aws:iam::aws:policy/a b",
        ] {
            assert_iam(
                PolicyArn::parse(bad),
                "InvalidInput",
                &format!("ARN {bad} is not valid."),
            );
        }
        assert_eq!(
            RoleArn::parse("arn:aws:iam::111111111111:role/a/b/name"),
            Some(RoleArn {
                account_id: A.into(),
                path: "/a/b/".into(),
                name: "name".into(),
            })
        );
        assert_eq!(
            RoleArn::parse("arn:aws:iam::111111111111:role/r")
                .unwrap()
                .path,
            "/"
        );
        for bad in [
            "arn:aws:iam::111111111111:rolex",
            "arn:aws:iam::111111111111:role/",
            "arn:aws:iam::aws:role/x",
            "arn:aws:iam::111111111111:policy/x",
            "r1",
        ] {
            assert_eq!(RoleArn::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn policy_sizes_do_not_count_whitespace() {
        assert_eq!(policy_size("{ \"a\" :\n\t1 }"), 7);
        assert!(is_iam_name("a+=,.@-_Z9"));
        assert!(!is_iam_name("a b") && !is_iam_name("") && !is_iam_name("a/b"));
    }
}
