//! Function URL configs: which function (unqualified or an alias) answers
//! at which URL id, with what authentication, CORS and invoke mode.
//!
//! A config is keyed by (account, function, qualifier), the qualifier being
//! `$LATEST` for an unqualified function (the API refuses an explicit
//! `$LATEST`, as Lambda does, so the two cannot be confused). Its URL id —
//! the 32 lowercase characters Lambda puts before `.lambda-url.` — is drawn
//! once at creation and never changes. A config goes with its function
//! (the table cascades from `functions`); deleting an alias leaves its
//! config in place, as on AWS, where the URL then answers 403.
//!
//! ```
//! use hearth_store::urls::{FunctionUrlStore, NewFunctionUrl};
//! use hearth_store::SqliteRegistry;
//! use hearth_types::arn::NodeIdentity;
//! let registry = SqliteRegistry::open_in_memory(NodeIdentity::new("us-east-1")).unwrap();
//! // No such function: Lambda's "Function does not exist".
//! let new = NewFunctionUrl::new("111111111111", "f", None, "NONE");
//! assert!(registry.create_function_url(&new, 0).is_err());
//! ```

use crate::registry::{Page, Result, StoreError};
use crate::sqlite::SqliteRegistry;
use rand::Rng;
use rusqlite::{params, OptionalExtension, Row, Transaction};
use serde::{Deserialize, Serialize};

/// The qualifier under which an unqualified function's config is stored.
pub const UNQUALIFIED: &str = "$LATEST";

/// Characters of a URL id.
pub const URL_ID_LEN: usize = 32;

/// `Cors` of a function URL config, as Lambda's API shapes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Cors {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_credentials: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_headers: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_methods: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_origins: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expose_headers: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age: Option<u32>,
}

/// One function URL config as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionUrlConfig {
    pub account_id: String,
    pub function_name: String,
    /// An alias name, or [`UNQUALIFIED`].
    pub qualifier: String,
    /// 32 lowercase letters and digits.
    pub url_id: String,
    /// `NONE` or `AWS_IAM`.
    pub auth_type: String,
    pub cors: Option<Cors>,
    /// `BUFFERED` or `RESPONSE_STREAM` as given; `None` if never given
    /// (Lambda then reports `BUFFERED` where the field is listed).
    pub invoke_mode: Option<String>,
    pub created_ms: i64,
    pub last_modified_ms: i64,
}

impl FunctionUrlConfig {
    /// The alias the config names, `None` for the unqualified function.
    pub fn alias(&self) -> Option<&str> {
        (self.qualifier != UNQUALIFIED).then_some(self.qualifier.as_str())
    }
}

/// CreateFunctionUrlConfig's input after validation.
#[derive(Debug, Clone)]
pub struct NewFunctionUrl {
    pub account_id: String,
    pub function_name: String,
    /// An alias name; `None` for the unqualified function.
    pub alias: Option<String>,
    pub auth_type: String,
    pub cors: Option<Cors>,
    pub invoke_mode: Option<String>,
}

impl NewFunctionUrl {
    pub fn new(account: &str, function: &str, alias: Option<&str>, auth_type: &str) -> Self {
        Self {
            account_id: account.to_owned(),
            function_name: function.to_owned(),
            alias: alias.map(str::to_owned),
            auth_type: auth_type.to_owned(),
            cors: None,
            invoke_mode: None,
        }
    }
}

/// UpdateFunctionUrlConfig's input: `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct FunctionUrlPatch {
    pub auth_type: Option<String>,
    pub cors: Option<Cors>,
    pub invoke_mode: Option<String>,
}

/// Function URL configs, per account. Every method names the caller's
/// account, so another account's configs do not exist for it; only
/// [`FunctionUrlStore::function_url_by_id`], which the URL listener uses
/// before it knows whose function answers, looks across accounts.
pub trait FunctionUrlStore {
    /// Creates the config of the function or of one of its aliases. 404
    /// "Function does not exist" if either is missing; 409 if it has one.
    fn create_function_url(&self, new: &NewFunctionUrl, now_ms: i64) -> Result<FunctionUrlConfig>;
    /// The config of the function (`alias` `None`) or of an alias; `None`
    /// if it has none (or the function or alias does not exist).
    fn get_function_url(
        &self,
        account: &str,
        function: &str,
        alias: Option<&str>,
    ) -> Result<Option<FunctionUrlConfig>>;
    /// Changes a config. 404 "Function does not exist" for a missing
    /// function or alias, 404 "The resource you requested does not exist."
    /// for a missing config.
    fn update_function_url(
        &self,
        account: &str,
        function: &str,
        alias: Option<&str>,
        patch: &FunctionUrlPatch,
        now_ms: i64,
    ) -> Result<FunctionUrlConfig>;
    /// Deletes one config; `false` if there was none.
    fn delete_function_url(
        &self,
        account: &str,
        function: &str,
        alias: Option<&str>,
    ) -> Result<bool>;
    /// The function's configs, the unqualified one first, then aliases by
    /// name, paged (the marker is the last qualifier of a page). 404
    /// "Function does not exist" for a missing function.
    fn list_function_urls(
        &self,
        account: &str,
        function: &str,
        marker: Option<&str>,
        max_items: usize,
    ) -> Result<Page<FunctionUrlConfig>>;
    /// The config whose URL id this is, in any account.
    fn function_url_by_id(&self, url_id: &str) -> Result<Option<FunctionUrlConfig>>;
}

/// Lambda's words for what this store refuses.
mod aws {
    use hearth_types::LambdaError;

    pub fn function_does_not_exist() -> LambdaError {
        LambdaError::not_found("Function does not exist")
    }

    pub fn config_not_found() -> LambdaError {
        LambdaError::not_found("The resource you requested does not exist.")
    }

    /// AWS's double space included.
    pub fn config_exists(function_arn: &str) -> LambdaError {
        LambdaError::conflict(format!(
            "Failed to create function url config for [functionArn = {function_arn}]. Error message:  FunctionUrlConfig exists for this Lambda function"
        ))
    }
}

const COLUMNS: &str = "account_id, function_name, qualifier, url_id, auth_type, cors_json, \
     invoke_mode, created_ms, last_modified_ms";

/// A row as stored, decoded outside the row callback.
struct UrlRow {
    account_id: String,
    function_name: String,
    qualifier: String,
    url_id: String,
    auth_type: String,
    cors_json: Option<String>,
    invoke_mode: Option<String>,
    created_ms: i64,
    last_modified_ms: i64,
}

impl UrlRow {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            account_id: r.get(0)?,
            function_name: r.get(1)?,
            qualifier: r.get(2)?,
            url_id: r.get(3)?,
            auth_type: r.get(4)?,
            cors_json: r.get(5)?,
            invoke_mode: r.get(6)?,
            created_ms: r.get(7)?,
            last_modified_ms: r.get(8)?,
        })
    }

    fn decode(self) -> Result<FunctionUrlConfig> {
        let cors = self
            .cors_json
            .map(|j| {
                serde_json::from_str(&j)
                    .map_err(|e| StoreError::Corrupt(format!("function URL CORS: {e}")))
            })
            .transpose()?;
        Ok(FunctionUrlConfig {
            account_id: self.account_id,
            function_name: self.function_name,
            qualifier: self.qualifier,
            url_id: self.url_id,
            auth_type: self.auth_type,
            cors,
            invoke_mode: self.invoke_mode,
            created_ms: self.created_ms,
            last_modified_ms: self.last_modified_ms,
        })
    }
}

fn cors_json(cors: Option<&Cors>) -> Result<Option<String>> {
    cors.map(|c| {
        serde_json::to_string(c).map_err(|e| StoreError::Corrupt(format!("function URL CORS: {e}")))
    })
    .transpose()
}

fn qualifier_of(alias: Option<&str>) -> &str {
    alias.unwrap_or(UNQUALIFIED)
}

/// 404 "Function does not exist" unless the function, and the alias if one
/// is named, exist.
fn require_target(
    tx: &Transaction<'_>,
    account: &str,
    function: &str,
    alias: Option<&str>,
) -> Result<()> {
    let exists: bool = match alias {
        None => tx
            .prepare_cached("SELECT 1 FROM functions WHERE account_id = ?1 AND name = ?2")?
            .query_row(params![account, function], |_| Ok(()))
            .optional()?
            .is_some(),
        Some(a) => tx
            .prepare_cached(
                "SELECT 1 FROM aliases WHERE account_id = ?1 AND function_name = ?2 AND name = ?3",
            )?
            .query_row(params![account, function, a], |_| Ok(()))
            .optional()?
            .is_some(),
    };
    if exists {
        Ok(())
    } else {
        Err(aws::function_does_not_exist().into())
    }
}

fn load(
    tx: &Transaction<'_>,
    account: &str,
    function: &str,
    qualifier: &str,
) -> Result<Option<FunctionUrlConfig>> {
    tx.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM function_urls \
         WHERE account_id = ?1 AND function_name = ?2 AND qualifier = ?3"
    ))?
    .query_row(params![account, function, qualifier], UrlRow::from_row)
    .optional()?
    .map(UrlRow::decode)
    .transpose()
}

/// A fresh URL id: 32 of `[a-z0-9]`.
fn random_url_id() -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..URL_ID_LEN)
        .map(|_| char::from(CHARS[rng.gen_range(0..CHARS.len())]))
        .collect()
}

impl FunctionUrlStore for SqliteRegistry {
    fn create_function_url(&self, new: &NewFunctionUrl, now_ms: i64) -> Result<FunctionUrlConfig> {
        let qualifier = qualifier_of(new.alias.as_deref()).to_owned();
        let cors = cors_json(new.cors.as_ref())?;
        let arn = self
            .node()
            .arn(&new.account_id, &new.function_name, new.alias.as_deref());
        self.write(|tx| {
            require_target(
                tx,
                &new.account_id,
                &new.function_name,
                new.alias.as_deref(),
            )?;
            if load(tx, &new.account_id, &new.function_name, &qualifier)?.is_some() {
                return Err(aws::config_exists(&arn).into());
            }
            // 36^32 ids: a collision is as good as impossible, and the
            // UNIQUE constraint would refuse it rather than share a URL.
            let url_id = random_url_id();
            tx.prepare_cached(&format!(
                "INSERT INTO function_urls ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)"
            ))?
            .execute(params![
                new.account_id,
                new.function_name,
                qualifier,
                url_id,
                new.auth_type,
                cors,
                new.invoke_mode,
                now_ms,
            ])?;
            Ok(FunctionUrlConfig {
                account_id: new.account_id.clone(),
                function_name: new.function_name.clone(),
                qualifier: qualifier.clone(),
                url_id,
                auth_type: new.auth_type.clone(),
                cors: new.cors.clone(),
                invoke_mode: new.invoke_mode.clone(),
                created_ms: now_ms,
                last_modified_ms: now_ms,
            })
        })
    }

    fn get_function_url(
        &self,
        account: &str,
        function: &str,
        alias: Option<&str>,
    ) -> Result<Option<FunctionUrlConfig>> {
        self.read(|tx| {
            // A config whose alias is gone is not reachable by name.
            if require_target(tx, account, function, alias).is_err() {
                return Ok(None);
            }
            load(tx, account, function, qualifier_of(alias))
        })
    }

    fn update_function_url(
        &self,
        account: &str,
        function: &str,
        alias: Option<&str>,
        patch: &FunctionUrlPatch,
        now_ms: i64,
    ) -> Result<FunctionUrlConfig> {
        self.write(|tx| {
            require_target(tx, account, function, alias)?;
            let mut cfg = load(tx, account, function, qualifier_of(alias))?
                .ok_or_else(|| StoreError::from(aws::config_not_found()))?;
            if let Some(a) = &patch.auth_type {
                cfg.auth_type = a.clone();
            }
            if let Some(c) = &patch.cors {
                cfg.cors = Some(c.clone());
            }
            if let Some(m) = &patch.invoke_mode {
                cfg.invoke_mode = Some(m.clone());
            }
            cfg.last_modified_ms = now_ms;
            tx.prepare_cached(
                "UPDATE function_urls SET auth_type = ?4, cors_json = ?5, invoke_mode = ?6, \
                 last_modified_ms = ?7 \
                 WHERE account_id = ?1 AND function_name = ?2 AND qualifier = ?3",
            )?
            .execute(params![
                account,
                function,
                cfg.qualifier,
                cfg.auth_type,
                cors_json(cfg.cors.as_ref())?,
                cfg.invoke_mode,
                now_ms,
            ])?;
            Ok(cfg)
        })
    }

    fn delete_function_url(
        &self,
        account: &str,
        function: &str,
        alias: Option<&str>,
    ) -> Result<bool> {
        self.write(|tx| {
            if require_target(tx, account, function, alias).is_err() {
                return Ok(false);
            }
            let n = tx
                .prepare_cached(
                    "DELETE FROM function_urls \
                     WHERE account_id = ?1 AND function_name = ?2 AND qualifier = ?3",
                )?
                .execute(params![account, function, qualifier_of(alias)])?;
            Ok(n > 0)
        })
    }

    fn list_function_urls(
        &self,
        account: &str,
        function: &str,
        marker: Option<&str>,
        max_items: usize,
    ) -> Result<Page<FunctionUrlConfig>> {
        let max = max_items.clamp(1, 10_000);
        let limit = i64::try_from(max + 1).unwrap_or(i64::MAX);
        let rows = self.read(|tx| {
            require_target(tx, account, function, None)?;
            // `$` sorts before every character an alias may contain, so the
            // unqualified config comes first.
            let rows = tx
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM function_urls \
                     WHERE account_id = ?1 AND function_name = ?2 \
                       AND (?3 IS NULL OR qualifier > ?3) \
                     ORDER BY qualifier LIMIT ?4"
                ))?
                .query_map(params![account, function, marker, limit], UrlRow::from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok::<_, StoreError>(rows)
        })?;
        let mut items = rows
            .into_iter()
            .map(UrlRow::decode)
            .collect::<Result<Vec<_>>>()?;
        let next_marker = if items.len() > max {
            items.truncate(max);
            items.last().map(|c| c.qualifier.clone())
        } else {
            None
        };
        Ok(Page { items, next_marker })
    }

    fn function_url_by_id(&self, url_id: &str) -> Result<Option<FunctionUrlConfig>> {
        self.read(|tx| {
            tx.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM function_urls WHERE url_id = ?1"
            ))?
            .query_row([url_id], UrlRow::from_row)
            .optional()?
            .map(UrlRow::decode)
            .transpose()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{AliasSpec, NewFunction};
    use crate::Registry;
    use hearth_types::arn::NodeIdentity;
    use hearth_types::function::CodeRef;
    use hearth_types::ErrorKind;

    const A: &str = "111111111111";
    const B: &str = "222222222222";

    fn registry_with_function() -> SqliteRegistry {
        let r = SqliteRegistry::open_in_memory(NodeIdentity::new("us-east-1")).unwrap();
        for account in [A, B] {
            let f = NewFunction {
                name: "f".into(),
                // From JSON, so fields other work adds keep their defaults.
                config: serde_json::from_value(serde_json::json!({
                    "runtime": "python3.12", "handler": "app.handler",
                    "role": "arn:aws:iam::111111111111:role/r", "description": "",
                    "memory_size": 128, "timeout": 3, "ephemeral_storage_mb": 512,
                    "architectures": ["x86_64"],
                }))
                .unwrap(),
                code: CodeRef {
                    sha256_hex: hex::encode([1u8; 32]),
                    size: 1000,
                    unzipped_size: 5000,
                },
                publish: true,
                tags: Default::default(),
            };
            r.create_function(account, f, 1).unwrap();
        }
        r.create_alias(
            A,
            "f",
            "live",
            &AliasSpec {
                function_version: Some("1".into()),
                ..Default::default()
            },
        )
        .unwrap();
        r
    }

    fn kind(e: StoreError) -> ErrorKind {
        match e {
            StoreError::Lambda(l) => l.kind,
            other => panic!("not a Lambda error: {other}"),
        }
    }

    #[test]
    fn create_get_update_delete() {
        let r = registry_with_function();
        let mut new = NewFunctionUrl::new(A, "f", None, "NONE");
        new.cors = Some(Cors {
            allow_origins: Some(vec!["*".into()]),
            ..Default::default()
        });
        let c = r.create_function_url(&new, 10).unwrap();
        assert_eq!(c.url_id.len(), URL_ID_LEN);
        assert!(c
            .url_id
            .chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit()));
        assert_eq!(r.get_function_url(A, "f", None).unwrap(), Some(c.clone()));
        assert_eq!(r.function_url_by_id(&c.url_id).unwrap(), Some(c.clone()));
        // Another account's function of the same name has none.
        assert_eq!(r.get_function_url(B, "f", None).unwrap(), None);
        assert_eq!(
            kind(r.create_function_url(&new, 11).unwrap_err()),
            ErrorKind::ResourceConflict
        );
        let patch = FunctionUrlPatch {
            auth_type: Some("AWS_IAM".into()),
            ..Default::default()
        };
        let u = r.update_function_url(A, "f", None, &patch, 20).unwrap();
        assert_eq!(u.auth_type, "AWS_IAM");
        assert_eq!(u.cors, c.cors, "fields not given are kept");
        assert_eq!((u.created_ms, u.last_modified_ms), (10, 20));
        assert_eq!(u.url_id, c.url_id);
        assert!(r.delete_function_url(A, "f", None).unwrap());
        assert!(!r.delete_function_url(A, "f", None).unwrap());
        assert_eq!(r.function_url_by_id(&c.url_id).unwrap(), None);
        assert_eq!(
            kind(r.update_function_url(A, "f", None, &patch, 30).unwrap_err()),
            ErrorKind::ResourceNotFound
        );
    }

    #[test]
    fn targets_must_exist_and_configs_go_with_their_function() {
        let r = registry_with_function();
        for (f, alias) in [("g", None), ("f", Some("nope"))] {
            let e = r
                .create_function_url(&NewFunctionUrl::new(A, f, alias, "NONE"), 1)
                .unwrap_err();
            assert_eq!(kind(e), ErrorKind::ResourceNotFound);
        }
        let plain = r
            .create_function_url(&NewFunctionUrl::new(A, "f", None, "NONE"), 1)
            .unwrap();
        let live = r
            .create_function_url(&NewFunctionUrl::new(A, "f", Some("live"), "NONE"), 2)
            .unwrap();
        assert_ne!(plain.url_id, live.url_id);
        let page = r.list_function_urls(A, "f", None, 1).unwrap();
        assert_eq!(page.items, vec![plain.clone()]);
        let rest = r
            .list_function_urls(A, "f", page.next_marker.as_deref(), 1)
            .unwrap();
        assert_eq!(rest.items, vec![live.clone()]);
        assert_eq!(rest.next_marker, None);
        // An alias's deletion leaves its config (its URL answers 403).
        r.delete_alias(A, "f", "live").unwrap();
        assert_eq!(r.get_function_url(A, "f", Some("live")).unwrap(), None);
        assert!(r.function_url_by_id(&live.url_id).unwrap().is_some());
        r.delete_function(A, "f").unwrap();
        assert_eq!(r.function_url_by_id(&plain.url_id).unwrap(), None);
        assert_eq!(r.function_url_by_id(&live.url_id).unwrap(), None);
        assert_eq!(
            kind(r.list_function_urls(A, "f", None, 50).unwrap_err()),
            ErrorKind::ResourceNotFound
        );
    }
}
