//! Lambda layers: versions of a zip that functions merge under `/opt`, and
//! the permissions that let other accounts of the node use a version.
//!
//! A layer is a name in an account; publishing gives it a new version
//! number, never one used before (not even after every version was
//! deleted). A version is immutable: its content sits in the code store,
//! content-addressed like function code, and the row here names its digest.
//! Deleting a version removes the row only: functions that name it keep
//! their copy (their configuration holds the digest), and the code store's
//! sweep keeps content any row still names.
//!
//! Permissions are statements of a version's resource policy, each granting
//! `lambda:GetLayerVersion` to one account of this node or to everyone
//! (`*`). [`LayerStore::layer_access`] answers whether an account may use a
//! version: the owner always may.
//!
//! ```
//! use hearth_store::layers::{LayerAccess, LayerStore, NewLayerVersion};
//! use hearth_store::SqliteRegistry;
//! use hearth_types::arn::NodeIdentity;
//! use hearth_types::function::CodeRef;
//! let registry = SqliteRegistry::open_in_memory(NodeIdentity::new("us-east-1")).unwrap();
//! let code = CodeRef { sha256_hex: "ab".repeat(32), size: 10, unzipped_size: 20 };
//! let v = registry
//!     .publish_layer_version("111111111111", NewLayerVersion::new("deps", code), 0)
//!     .unwrap();
//! assert_eq!(v.version, 1);
//! assert_eq!(v.arn(registry.node()), "arn:aws:lambda:us-east-1:111111111111:layer:deps:1");
//! let access = registry.layer_access("111111111111", "deps", 1, "222222222222").unwrap();
//! assert!(matches!(access, LayerAccess::Denied));
//! ```

use crate::registry::{Page, Result, StoreError};
use crate::sqlite::SqliteRegistry;
use hearth_types::arn::NodeIdentity;
use hearth_types::function::CodeRef;
use hearth_types::{ErrorKind, LambdaError};
use rusqlite::{params, OptionalExtension, Row, Transaction};

/// The registry's migration for layers (appended to its list).
pub(crate) const MIGRATION: &str = r#"
    -- One row per layer name ever published in an account: last_version
    -- keeps numbers from being reused after versions are deleted.
    CREATE TABLE layers (
        account_id   TEXT NOT NULL,
        name         TEXT NOT NULL,
        last_version INTEGER NOT NULL,
        PRIMARY KEY (account_id, name)
    ) STRICT;

    -- license_info NULL: none given (AWS then omits it). policy_revision_id
    -- changes with every change of the version's permissions.
    CREATE TABLE layer_versions (
        account_id                    TEXT NOT NULL,
        name                          TEXT NOT NULL,
        version                       INTEGER NOT NULL,
        description                   TEXT NOT NULL,
        license_info                  TEXT,
        compatible_runtimes_json      TEXT NOT NULL,
        compatible_architectures_json TEXT NOT NULL,
        code_sha256_hex               TEXT NOT NULL,
        code_size                     INTEGER NOT NULL,
        unzipped_size                 INTEGER NOT NULL,
        created_ms                    INTEGER NOT NULL,
        policy_revision_id            TEXT NOT NULL,
        PRIMARY KEY (account_id, name, version),
        FOREIGN KEY (account_id, name)
            REFERENCES layers(account_id, name) ON DELETE CASCADE
    ) STRICT;

    -- principal: an account id or '*'.
    CREATE TABLE layer_version_permissions (
        account_id   TEXT NOT NULL,
        name         TEXT NOT NULL,
        version      INTEGER NOT NULL,
        statement_id TEXT NOT NULL,
        action       TEXT NOT NULL,
        principal    TEXT NOT NULL,
        seq          INTEGER NOT NULL,
        PRIMARY KEY (account_id, name, version, statement_id),
        FOREIGN KEY (account_id, name, version)
            REFERENCES layer_versions(account_id, name, version) ON DELETE CASCADE
    ) STRICT;
    CREATE INDEX layer_permissions_by_principal
        ON layer_version_permissions(principal);
    "#;

/// The one action a layer version's policy can grant.
pub const GET_LAYER_VERSION: &str = "lambda:GetLayerVersion";

/// Statements one layer version's policy may hold (its 20 KB policy holds
/// about this many; Hearth counts statements instead of bytes).
pub const PERMISSIONS_PER_VERSION_MAX: usize = 100;

/// One version of a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerVersion {
    pub account_id: String,
    pub name: String,
    pub version: u64,
    pub description: String,
    pub license_info: Option<String>,
    pub compatible_runtimes: Vec<String>,
    pub compatible_architectures: Vec<String>,
    pub code: CodeRef,
    /// Milliseconds since the Unix epoch.
    pub created_ms: i64,
}

impl LayerVersion {
    /// `arn:aws:lambda:<region>:<account>:layer:<name>`.
    pub fn layer_arn(&self, node: &NodeIdentity) -> String {
        layer_arn(node, &self.account_id, &self.name)
    }

    /// The layer ARN with `:<version>`.
    pub fn arn(&self, node: &NodeIdentity) -> String {
        format!("{}:{}", self.layer_arn(node), self.version)
    }

    /// Whether the version declares `runtime` and `architecture` (each
    /// `None`: any). A version that declares no runtimes matches no
    /// runtime filter, as on AWS.
    pub fn matches(&self, filter: &LayerFilter) -> bool {
        let runtime = filter
            .runtime
            .as_ref()
            .is_none_or(|r| self.compatible_runtimes.contains(r));
        let arch = filter
            .architecture
            .as_ref()
            .is_none_or(|a| self.compatible_architectures.contains(a));
        runtime && arch
    }
}

/// `arn:aws:lambda:<region>:<account>:layer:<name>`.
pub fn layer_arn(node: &NodeIdentity, account: &str, name: &str) -> String {
    format!(
        "arn:{}:lambda:{}:{account}:layer:{name}",
        node.partition, node.region
    )
}

/// PublishLayerVersion's input after validation.
#[derive(Debug, Clone)]
pub struct NewLayerVersion {
    pub name: String,
    pub description: String,
    pub license_info: Option<String>,
    pub compatible_runtimes: Vec<String>,
    pub compatible_architectures: Vec<String>,
    pub code: CodeRef,
}

impl NewLayerVersion {
    /// A version of `name` with `code` and nothing else declared.
    pub fn new(name: &str, code: CodeRef) -> Self {
        Self {
            name: name.to_owned(),
            description: String::new(),
            license_info: None,
            compatible_runtimes: Vec::new(),
            compatible_architectures: Vec::new(),
            code,
        }
    }
}

/// ListLayers' and ListLayerVersions' `CompatibleRuntime` and
/// `CompatibleArchitecture`.
#[derive(Debug, Clone, Default)]
pub struct LayerFilter {
    pub runtime: Option<String>,
    pub architecture: Option<String>,
}

/// One statement of a layer version's policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerPermission {
    pub statement_id: String,
    pub action: String,
    /// An account id, or `*`.
    pub principal: String,
}

/// A layer version's resource policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerPolicy {
    /// In the order they were added.
    pub statements: Vec<LayerPermission>,
    pub revision_id: String,
}

/// Whether an account may use a layer version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerAccess {
    /// No such version (or layer).
    Missing,
    /// It exists, and neither belongs to nor is granted to the account.
    Denied,
    /// The account owns it, or its policy grants the account (or everyone).
    Granted(LayerVersion),
}

/// Layers and their versions, per account. Every write is one transaction
/// that stores nothing when it fails.
pub trait LayerStore {
    /// Publishes a new version of `new.name` (creating the layer), numbered
    /// one above every version the layer ever had.
    fn publish_layer_version(
        &self,
        account: &str,
        new: NewLayerVersion,
        now_ms: i64,
    ) -> Result<LayerVersion>;
    /// One version of one of `account`'s layers, `None` if absent.
    fn get_layer_version(
        &self,
        account: &str,
        name: &str,
        version: u64,
    ) -> Result<Option<LayerVersion>>;
    /// A layer's versions matching `filter`, newest first, paged (the
    /// marker is the last version number of a page). A layer without
    /// versions lists nothing.
    fn list_layer_versions(
        &self,
        account: &str,
        name: &str,
        filter: &LayerFilter,
        marker: Option<&str>,
        max_items: usize,
    ) -> Result<Page<LayerVersion>>;
    /// Each layer with a version matching `filter`: its newest such
    /// version, ordered by layer name, paged (the marker is a layer name).
    fn list_layers(
        &self,
        filter: &LayerFilter,
        account: &str,
        marker: Option<&str>,
        max_items: usize,
    ) -> Result<Page<LayerVersion>>;
    /// Deletes one version and its permissions; `false` if there was none
    /// (AWS answers both alike).
    fn delete_layer_version(&self, account: &str, name: &str, version: u64) -> Result<bool>;
    /// AddLayerVersionPermission: 404 for a missing version, 409 for a
    /// statement id in use, 412 for a stale `revision_id`. Returns the
    /// policy's new revision id.
    fn add_layer_permission(
        &self,
        account: &str,
        name: &str,
        version: u64,
        permission: &LayerPermission,
        revision_id: Option<&str>,
    ) -> Result<String>;
    /// RemoveLayerVersionPermission: 404 for a missing version or statement,
    /// 412 for a stale `revision_id`.
    fn remove_layer_permission(
        &self,
        account: &str,
        name: &str,
        version: u64,
        statement_id: &str,
        revision_id: Option<&str>,
    ) -> Result<()>;
    /// GetLayerVersionPolicy: 404 for a missing version; an empty policy
    /// when it has no statements.
    fn layer_policy(&self, account: &str, name: &str, version: u64) -> Result<LayerPolicy>;
    /// Whether `caller` may use `owner`'s version (GetLayerVersion, or a
    /// function naming it).
    fn layer_access(
        &self,
        owner: &str,
        name: &str,
        version: u64,
        caller: &str,
    ) -> Result<LayerAccess>;
}

/// AWS's answer for a layer or version that does not exist.
pub fn not_found() -> LambdaError {
    LambdaError::new(
        ErrorKind::ResourceNotFound,
        "The resource you requested does not exist.",
    )
}

const COLUMNS: &str = "account_id, name, version, description, license_info, \
     compatible_runtimes_json, compatible_architectures_json, code_sha256_hex, code_size, \
     unzipped_size, created_ms";

struct Raw {
    account_id: String,
    name: String,
    version: i64,
    description: String,
    license_info: Option<String>,
    runtimes: String,
    architectures: String,
    sha: String,
    size: i64,
    unzipped: i64,
    created_ms: i64,
}

impl Raw {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            account_id: r.get(0)?,
            name: r.get(1)?,
            version: r.get(2)?,
            description: r.get(3)?,
            license_info: r.get(4)?,
            runtimes: r.get(5)?,
            architectures: r.get(6)?,
            sha: r.get(7)?,
            size: r.get(8)?,
            unzipped: r.get(9)?,
            created_ms: r.get(10)?,
        })
    }

    fn decode(self) -> Result<LayerVersion> {
        let what = format!("layer {}:{}", self.name, self.version);
        let list = |json: &str| {
            serde_json::from_str::<Vec<String>>(json)
                .map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
        };
        let unsigned = |x: i64| {
            u64::try_from(x).map_err(|_| StoreError::Corrupt(format!("{what}: negative {x}")))
        };
        Ok(LayerVersion {
            compatible_runtimes: list(&self.runtimes)?,
            compatible_architectures: list(&self.architectures)?,
            version: unsigned(self.version)?,
            code: CodeRef {
                sha256_hex: self.sha,
                size: unsigned(self.size)?,
                unzipped_size: unsigned(self.unzipped)?,
            },
            account_id: self.account_id,
            name: self.name,
            description: self.description,
            license_info: self.license_info,
            created_ms: self.created_ms,
        })
    }
}

fn int(x: u64) -> Result<i64> {
    i64::try_from(x).map_err(|_| LambdaError::invalid(format!("{x} is out of range")).into())
}

fn to_json(list: &[String]) -> Result<String> {
    serde_json::to_string(list).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn new_revision_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn load(
    tx: &Transaction<'_>,
    account: &str,
    name: &str,
    version: u64,
) -> Result<Option<LayerVersion>> {
    let raw = tx
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM layer_versions WHERE account_id = ?1 AND name = ?2 AND version = ?3"
        ))?
        .query_row(params![account, name, int(version)?], Raw::from_row)
        .optional()?;
    raw.map(Raw::decode).transpose()
}

fn revision_of(tx: &Transaction<'_>, account: &str, name: &str, version: u64) -> Result<String> {
    tx.prepare_cached(
        "SELECT policy_revision_id FROM layer_versions \
         WHERE account_id = ?1 AND name = ?2 AND version = ?3",
    )?
    .query_row(params![account, name, int(version)?], |r| r.get(0))
    .optional()?
    .ok_or_else(|| not_found().into())
}

fn check_revision(current: &str, given: Option<&str>) -> Result<()> {
    match given {
        Some(given) if given != current => Err(LambdaError::new(
            ErrorKind::PreconditionFailed,
            "The Revision Id provided does not match the latest Revision Id. Call the GetLayerPolicy API to retrieve the latest Revision Id",
        )
        .into()),
        _ => Ok(()),
    }
}

fn bump_revision(tx: &Transaction<'_>, account: &str, name: &str, version: u64) -> Result<String> {
    let revision = new_revision_id();
    tx.prepare_cached(
        "UPDATE layer_versions SET policy_revision_id = ?4 \
         WHERE account_id = ?1 AND name = ?2 AND version = ?3",
    )?
    .execute(params![account, name, int(version)?, revision])?;
    Ok(revision)
}

fn statements(
    tx: &Transaction<'_>,
    account: &str,
    name: &str,
    version: u64,
) -> Result<Vec<LayerPermission>> {
    let rows = tx
        .prepare_cached(
            "SELECT statement_id, action, principal FROM layer_version_permissions \
             WHERE account_id = ?1 AND name = ?2 AND version = ?3 ORDER BY seq",
        )?
        .query_map(params![account, name, int(version)?], |r| {
            Ok(LayerPermission {
                statement_id: r.get(0)?,
                action: r.get(1)?,
                principal: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

impl LayerStore for SqliteRegistry {
    fn publish_layer_version(
        &self,
        account: &str,
        new: NewLayerVersion,
        now_ms: i64,
    ) -> Result<LayerVersion> {
        self.write(|tx| {
            let last: Option<i64> = tx
                .prepare_cached(
                    "SELECT last_version FROM layers WHERE account_id = ?1 AND name = ?2",
                )?
                .query_row(params![account, new.name], |r| r.get(0))
                .optional()?;
            let version = last.unwrap_or(0) + 1;
            tx.prepare_cached(
                "INSERT INTO layers (account_id, name, last_version) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (account_id, name) DO UPDATE SET last_version = excluded.last_version",
            )?
            .execute(params![account, new.name, version])?;
            tx.prepare_cached(&format!(
                "INSERT INTO layer_versions ({COLUMNS}, policy_revision_id) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
            ))?
            .execute(params![
                account,
                new.name,
                version,
                new.description,
                new.license_info,
                to_json(&new.compatible_runtimes)?,
                to_json(&new.compatible_architectures)?,
                new.code.sha256_hex,
                int(new.code.size)?,
                int(new.code.unzipped_size)?,
                now_ms,
                new_revision_id(),
            ])?;
            Ok(LayerVersion {
                account_id: account.to_owned(),
                name: new.name,
                version: version as u64,
                description: new.description,
                license_info: new.license_info,
                compatible_runtimes: new.compatible_runtimes,
                compatible_architectures: new.compatible_architectures,
                code: new.code,
                created_ms: now_ms,
            })
        })
    }

    fn get_layer_version(
        &self,
        account: &str,
        name: &str,
        version: u64,
    ) -> Result<Option<LayerVersion>> {
        self.read(|tx| load(tx, account, name, version))
    }

    fn list_layer_versions(
        &self,
        account: &str,
        name: &str,
        filter: &LayerFilter,
        marker: Option<&str>,
        max_items: usize,
    ) -> Result<Page<LayerVersion>> {
        let below = match marker {
            None => i64::MAX,
            Some(m) => m.parse::<i64>().map_err(|_| {
                StoreError::from(LambdaError::invalid(format!(
                    "The marker {m} is not valid."
                )))
            })?,
        };
        let all = self.read(|tx| {
            tx.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM layer_versions \
                 WHERE account_id = ?1 AND name = ?2 AND version < ?3 ORDER BY version DESC"
            ))?
            .query_map(params![account, name, below], Raw::from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(StoreError::from)
        })?;
        let mut items = Vec::new();
        let mut next_marker = None;
        for raw in all {
            let v = raw.decode()?;
            if !v.matches(filter) {
                continue;
            }
            if items.len() == max_items.max(1) {
                next_marker = items.last().map(|l: &LayerVersion| l.version.to_string());
                break;
            }
            items.push(v);
        }
        Ok(Page { items, next_marker })
    }

    fn list_layers(
        &self,
        filter: &LayerFilter,
        account: &str,
        marker: Option<&str>,
        max_items: usize,
    ) -> Result<Page<LayerVersion>> {
        let all = self.read(|tx| {
            tx.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM layer_versions \
                 WHERE account_id = ?1 AND name > ?2 ORDER BY name, version DESC"
            ))?
            .query_map(params![account, marker.unwrap_or("")], Raw::from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(StoreError::from)
        })?;
        let mut items: Vec<LayerVersion> = Vec::new();
        let mut next_marker = None;
        for raw in all {
            if items.last().is_some_and(|l| l.name == raw.name) {
                continue; // this layer's newest match is in already
            }
            let v = raw.decode()?;
            if !v.matches(filter) {
                continue;
            }
            if items.len() == max_items.max(1) {
                next_marker = items.last().map(|l| l.name.clone());
                break;
            }
            items.push(v);
        }
        Ok(Page { items, next_marker })
    }

    fn delete_layer_version(&self, account: &str, name: &str, version: u64) -> Result<bool> {
        self.write(|tx| {
            let n = tx
                .prepare_cached(
                    "DELETE FROM layer_versions WHERE account_id = ?1 AND name = ?2 AND version = ?3",
                )?
                .execute(params![account, name, int(version)?])?;
            Ok(n > 0)
        })
    }

    fn add_layer_permission(
        &self,
        account: &str,
        name: &str,
        version: u64,
        p: &LayerPermission,
        revision_id: Option<&str>,
    ) -> Result<String> {
        self.write(|tx| {
            let current = revision_of(tx, account, name, version)?;
            check_revision(&current, revision_id)?;
            let existing = statements(tx, account, name, version)?;
            if existing.iter().any(|s| s.statement_id == p.statement_id) {
                return Err(LambdaError::new(
                    ErrorKind::ResourceConflict,
                    format!(
                        "The statement id ({}) provided already exists. Please provide a new statement id, or remove the existing statement.",
                        p.statement_id
                    ),
                )
                .into());
            }
            if existing.len() >= PERMISSIONS_PER_VERSION_MAX {
                return Err(LambdaError::new(
                    ErrorKind::InvalidParameterValue,
                    "The final policy size is bigger than the limit.",
                )
                .into());
            }
            if p.principal != "*" {
                let known: bool = tx
                    .prepare_cached("SELECT EXISTS (SELECT 1 FROM accounts WHERE id = ?1)")?
                    .query_row(params![p.principal], |r| r.get(0))?;
                if !known {
                    return Err(LambdaError::invalid(format!(
                        "The principal {} is not an account of this Hearth node.",
                        p.principal
                    ))
                    .into());
                }
            }
            let seq: i64 = tx
                .prepare_cached(
                    "SELECT COALESCE(MAX(seq), 0) + 1 FROM layer_version_permissions \
                     WHERE account_id = ?1 AND name = ?2 AND version = ?3",
                )?
                .query_row(params![account, name, int(version)?], |r| r.get(0))?;
            tx.prepare_cached(
                "INSERT INTO layer_version_permissions \
                 (account_id, name, version, statement_id, action, principal, seq) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                account,
                name,
                int(version)?,
                p.statement_id,
                p.action,
                p.principal,
                seq
            ])?;
            bump_revision(tx, account, name, version)
        })
    }

    fn remove_layer_permission(
        &self,
        account: &str,
        name: &str,
        version: u64,
        statement_id: &str,
        revision_id: Option<&str>,
    ) -> Result<()> {
        self.write(|tx| {
            let current = revision_of(tx, account, name, version)?;
            check_revision(&current, revision_id)?;
            let n = tx
                .prepare_cached(
                    "DELETE FROM layer_version_permissions \
                     WHERE account_id = ?1 AND name = ?2 AND version = ?3 AND statement_id = ?4",
                )?
                .execute(params![account, name, int(version)?, statement_id])?;
            if n == 0 {
                return Err(LambdaError::new(
                    ErrorKind::ResourceNotFound,
                    format!("Statement {statement_id} is not found in resource policy."),
                )
                .into());
            }
            bump_revision(tx, account, name, version)?;
            Ok(())
        })
    }

    fn layer_policy(&self, account: &str, name: &str, version: u64) -> Result<LayerPolicy> {
        self.read(|tx| {
            let revision_id = revision_of(tx, account, name, version)?;
            Ok(LayerPolicy {
                statements: statements(tx, account, name, version)?,
                revision_id,
            })
        })
    }

    fn layer_access(
        &self,
        owner: &str,
        name: &str,
        version: u64,
        caller: &str,
    ) -> Result<LayerAccess> {
        self.read(|tx| {
            let Some(v) = load(tx, owner, name, version)? else {
                return Ok(LayerAccess::Missing);
            };
            if owner == caller {
                return Ok(LayerAccess::Granted(v));
            }
            let granted = statements(tx, owner, name, version)?.iter().any(|s| {
                s.action == GET_LAYER_VERSION && (s.principal == "*" || s.principal == caller)
            });
            Ok(if granted {
                LayerAccess::Granted(v)
            } else {
                LayerAccess::Denied
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Registry;

    const A: &str = "111111111111";
    const B: &str = "222222222222";

    fn registry() -> SqliteRegistry {
        let r = SqliteRegistry::open_in_memory(NodeIdentity::new("us-east-1")).unwrap();
        for (id, name) in [(A, "a"), (B, "b")] {
            let account = hearth_types::function::Account {
                id: id.into(),
                name: name.into(),
                admin: false,
                created_ms: 0,
            };
            let key = hearth_types::function::AccessKey {
                account_id: id.into(),
                access_key_id: format!("AKIA{id}"),
                secret_access_key: "s".into(),
            };
            r.ensure_account(&account, &key).unwrap();
        }
        r
    }

    fn code(seed: u8) -> CodeRef {
        CodeRef {
            sha256_hex: format!("{seed:02x}").repeat(32),
            size: 100 + u64::from(seed),
            unzipped_size: 1000,
        }
    }

    fn publish(r: &SqliteRegistry, name: &str, seed: u8, runtimes: &[&str]) -> LayerVersion {
        let mut n = NewLayerVersion::new(name, code(seed));
        n.compatible_runtimes = runtimes.iter().map(|s| s.to_string()).collect();
        r.publish_layer_version(A, n, 1000).unwrap()
    }

    fn grant(principal: &str, sid: &str) -> LayerPermission {
        LayerPermission {
            statement_id: sid.into(),
            action: GET_LAYER_VERSION.into(),
            principal: principal.into(),
        }
    }

    #[test]
    fn versions_count_up_and_are_never_reused() {
        let r = registry();
        assert_eq!(publish(&r, "x", 1, &[]).version, 1);
        assert_eq!(publish(&r, "x", 2, &[]).version, 2);
        assert_eq!(publish(&r, "y", 3, &[]).version, 1);
        assert!(r.delete_layer_version(A, "x", 2).unwrap());
        assert!(r.delete_layer_version(A, "x", 1).unwrap());
        assert!(!r.delete_layer_version(A, "x", 1).unwrap());
        assert_eq!(publish(&r, "x", 4, &[]).version, 3);
        let got = r.get_layer_version(A, "x", 3).unwrap().unwrap();
        assert_eq!(got.code, code(4));
        assert!(r.get_layer_version(A, "x", 1).unwrap().is_none());
        // Another account's layer of the same name is another layer.
        assert!(r.get_layer_version(B, "x", 3).unwrap().is_none());
    }

    #[test]
    fn listings_filter_and_page() {
        let r = registry();
        publish(&r, "a", 1, &["python3.12"]);
        publish(&r, "a", 2, &["nodejs20.x"]);
        publish(&r, "a", 3, &["python3.12", "nodejs20.x"]);
        publish(&r, "b", 4, &["python3.12"]);
        publish(&r, "c", 5, &["nodejs20.x"]);

        let all = LayerFilter::default();
        let p = r.list_layer_versions(A, "a", &all, None, 2).unwrap();
        let versions: Vec<u64> = p.items.iter().map(|v| v.version).collect();
        assert_eq!(versions, [3, 2]);
        assert_eq!(p.next_marker.as_deref(), Some("2"));
        let p = r.list_layer_versions(A, "a", &all, Some("2"), 2).unwrap();
        assert_eq!(p.items.iter().map(|v| v.version).collect::<Vec<_>>(), [1]);
        assert_eq!(p.next_marker, None);

        let py = LayerFilter {
            runtime: Some("python3.12".into()),
            architecture: None,
        };
        let p = r.list_layer_versions(A, "a", &py, None, 50).unwrap();
        assert_eq!(
            p.items.iter().map(|v| v.version).collect::<Vec<_>>(),
            [3, 1]
        );

        let node = LayerFilter {
            runtime: Some("nodejs20.x".into()),
            architecture: None,
        };
        let p = r.list_layers(&node, A, None, 1).unwrap();
        assert_eq!(p.items[0].name, "a");
        assert_eq!(p.items[0].version, 3);
        assert_eq!(p.next_marker.as_deref(), Some("a"));
        let p = r.list_layers(&node, A, Some("a"), 1).unwrap();
        assert_eq!((p.items[0].name.as_str(), p.items[0].version), ("c", 1));
        assert_eq!(p.next_marker, None);
        // Layer b has no Node.js version: not listed.
        let names: Vec<String> = r
            .list_layers(&node, A, None, 50)
            .unwrap()
            .items
            .into_iter()
            .map(|v| v.name)
            .collect();
        assert_eq!(names, ["a", "c"]);
        assert!(r.list_layers(&all, B, None, 50).unwrap().items.is_empty());
    }

    #[test]
    fn permissions_grant_other_accounts() {
        let r = registry();
        publish(&r, "x", 1, &[]);
        assert_eq!(r.layer_access(A, "x", 9, B).unwrap(), LayerAccess::Missing);
        assert_eq!(r.layer_access(A, "x", 1, B).unwrap(), LayerAccess::Denied);
        assert!(matches!(
            r.layer_access(A, "x", 1, A).unwrap(),
            LayerAccess::Granted(_)
        ));

        let before = r.layer_policy(A, "x", 1).unwrap();
        assert!(before.statements.is_empty());
        let rev = r
            .add_layer_permission(A, "x", 1, &grant(B, "b"), None)
            .unwrap();
        assert_ne!(rev, before.revision_id);
        assert!(matches!(
            r.layer_access(A, "x", 1, B).unwrap(),
            LayerAccess::Granted(_)
        ));

        // A duplicate statement id, a stale revision, an unknown account.
        let e = r
            .add_layer_permission(A, "x", 1, &grant("*", "b"), None)
            .unwrap_err();
        assert!(e.to_string().contains("already exists"), "{e}");
        let e = r
            .add_layer_permission(A, "x", 1, &grant("*", "all"), Some(&before.revision_id))
            .unwrap_err();
        assert!(
            matches!(e, StoreError::Lambda(ref l) if l.kind == ErrorKind::PreconditionFailed),
            "{e}"
        );
        let e = r
            .add_layer_permission(A, "x", 1, &grant("333333333333", "c"), None)
            .unwrap_err();
        assert!(e.to_string().contains("not an account"), "{e}");
        let e = r
            .add_layer_permission(A, "x", 2, &grant(B, "c"), None)
            .unwrap_err();
        assert!(
            matches!(e, StoreError::Lambda(ref l) if l.kind == ErrorKind::ResourceNotFound),
            "{e}"
        );

        r.remove_layer_permission(A, "x", 1, "b", Some(&rev))
            .unwrap();
        assert_eq!(r.layer_access(A, "x", 1, B).unwrap(), LayerAccess::Denied);
        let e = r.remove_layer_permission(A, "x", 1, "b", None).unwrap_err();
        assert!(e.to_string().contains("not found"), "{e}");

        r.add_layer_permission(A, "x", 1, &grant("*", "all"), None)
            .unwrap();
        assert!(matches!(
            r.layer_access(A, "x", 1, B).unwrap(),
            LayerAccess::Granted(_)
        ));
        // Deleting the version takes its policy along.
        r.delete_layer_version(A, "x", 1).unwrap();
        assert_eq!(r.layer_access(A, "x", 1, B).unwrap(), LayerAccess::Missing);
    }

    #[test]
    fn content_stays_referenced_while_a_function_names_it() {
        use hearth_types::function::LayerRef;
        let r = registry();
        let v = publish(&r, "x", 7, &[]);
        assert!(r.referenced_code().unwrap().contains(&code(7).sha256_hex));
        let mut config = hearth_types::function::FunctionConfig {
            runtime: hearth_types::runtime::Runtime::parse("python3.12").unwrap(),
            handler: "app.handler".into(),
            role: format!("arn:aws:iam::{A}:role/r"),
            description: String::new(),
            memory_size: 128,
            timeout: 3,
            environment: None,
            ephemeral_storage_mb: 512,
            architectures: vec!["x86_64".into()],
            layers: Vec::new(),
            dead_letter_target: None,
        };
        config.layers = vec![LayerRef {
            arn: v.arn(r.node()),
            code: v.code.clone(),
        }];
        r.create_function(
            A,
            crate::NewFunction {
                name: "f".into(),
                config,
                code: code(1),
                publish: false,
                tags: Default::default(),
            },
            0,
        )
        .unwrap();
        r.delete_layer_version(A, "x", 1).unwrap();
        let referenced = r.referenced_code().unwrap();
        assert_eq!(referenced, vec![code(1).sha256_hex, code(7).sha256_hex]);
        r.delete_function(A, "f").unwrap();
        assert!(r.referenced_code().unwrap().is_empty());
    }
}
