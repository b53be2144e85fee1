//! Lambda's provisioned concurrency operations on
//! `/2019-09-30/functions/{name}/provisioned-concurrency`:
//! Put (202), Get (200), Delete (204), and List (`GET …?List=ALL`, which is
//! how botocore's model tells ListProvisionedConcurrencyConfigs from Get).
//!
//! A config asks for N function-warm sandboxes of one published version (or
//! the version an alias points at) in the account's dedicated sub-pool. The
//! registry records the request as `IN_PROGRESS`; the sandbox supervisor
//! allocates them and reports `READY` through
//! [`hearth_store::Registry::set_provisioned_status`]. It learns of changes
//! through [`CapacityEvents`].

use crate::caller::Caller;
use crate::error::ApiResult;
use crate::request::{json_body, resolve};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use hearth_types::arn::NodeIdentity;
use hearth_types::function::ProvisionedConcurrencyConfig;
use hearth_types::{limits, LambdaError};
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// What the pool manager must hear about, so that it can resize dedicated
/// sub-pools without polling the registry.
///
/// Wiring (once `AppState` carries an `Arc<dyn CapacityEvents>`):
/// - [`CapacityEvents::provisioned_changed`] after a successful
///   [`put_provisioned_concurrency`] or [`delete_provisioned_concurrency`]
///   (here), and after the calls that delete or retarget configs as a side
///   effect: `DeleteFunction` (with or without `Qualifier`), `DeleteAlias`
///   and `UpdateAlias` (`functions.rs`, `aliases.rs`);
/// - [`CapacityEvents::capacity_changed`] after a successful
///   `PUT /hearth/v1/accounts/{id}/capacity` (`capacity.rs`) and after
///   `DELETE /hearth/v1/accounts/{id}` (`admin.rs`).
///
/// Calls are notifications only: the registry is the truth, so an
/// implementation re-reads what it needs and must not block.
pub trait CapacityEvents: Send + Sync + std::fmt::Debug {
    /// The provisioned concurrency configs of `function` in `account` changed.
    fn provisioned_changed(&self, account: &str, function: &str);
    /// The capacity settings of `account` changed (or the account is gone).
    fn capacity_changed(&self, account: &str);
}

/// The supervisor's pool manager re-reads capacity settings and provisioned
/// configurations from the registry and wakes up.
impl CapacityEvents for hearth_exec::Executor {
    fn provisioned_changed(&self, _account: &str, _function: &str) {
        self.reload_capacity();
    }
    fn capacity_changed(&self, _account: &str) {
        self.reload_capacity();
    }
}

/// Hears nothing: a node without a pool manager, and tests.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoCapacityEvents;

impl CapacityEvents for NoCapacityEvents {
    fn provisioned_changed(&self, _account: &str, _function: &str) {}
    fn capacity_changed(&self, _account: &str) {}
}

/// The query of these operations: `Qualifier` for Put/Get/Delete;
/// `List=ALL` with `Marker`/`MaxItems` for List.
#[derive(Debug, Default, Deserialize)]
pub struct ProvisionedQuery {
    #[serde(rename = "Qualifier")]
    qualifier: Option<String>,
    #[serde(rename = "List")]
    list: Option<String>,
    #[serde(rename = "Marker")]
    marker: Option<String>,
    #[serde(rename = "MaxItems")]
    max_items: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutProvisionedInput {
    provisioned_concurrent_executions: Option<i64>,
}

/// The function and the version or alias a request names (`Qualifier` or a
/// qualified name/ARN); AWS requires one.
fn target(
    state: &AppState,
    caller: &Caller,
    name: &str,
    qualifier: Option<&str>,
) -> ApiResult<(String, String)> {
    let fref = resolve(state, caller, name, qualifier)?;
    let qualifier = fref.qualifier.ok_or_else(|| {
        LambdaError::validation(&[
            "Value null at 'qualifier' failed to satisfy constraint: Member must not be null"
                .to_owned(),
        ])
    })?;
    Ok((fref.name.as_str().to_owned(), qualifier))
}

/// `LastModified` as AWS prints it for these configs (ISO 8601, seconds).
fn iso_timestamp(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let fmt =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]+0000");
    t.format(&fmt).unwrap_or_default()
}

/// Put/Get's response body; List's items add the qualified `FunctionArn`.
fn config_shape(c: &ProvisionedConcurrencyConfig, arn: Option<String>) -> Value {
    let mut m = Map::new();
    if let Some(arn) = arn {
        m.insert("FunctionArn".into(), json!(arn));
    }
    m.insert(
        "RequestedProvisionedConcurrentExecutions".into(),
        json!(c.requested),
    );
    // Hearth counts a sandbox once it is function-warm, so what is allocated
    // is available.
    m.insert(
        "AvailableProvisionedConcurrentExecutions".into(),
        json!(c.allocated),
    );
    m.insert(
        "AllocatedProvisionedConcurrentExecutions".into(),
        json!(c.allocated),
    );
    m.insert("Status".into(), json!(c.status.as_str()));
    if let Some(reason) = &c.status_reason {
        m.insert("StatusReason".into(), json!(reason));
    }
    m.insert(
        "LastModified".into(),
        json!(iso_timestamp(c.last_modified_ms)),
    );
    Value::Object(m)
}

fn list_item(node: &NodeIdentity, c: &ProvisionedConcurrencyConfig) -> Value {
    let arn = node.qualified_arn(&c.account_id, &c.function_name, &c.qualifier);
    config_shape(c, Some(arn))
}

/// `MaxItems` of ListProvisionedConcurrencyConfigs: 1..=50.
fn max_items(q: &ProvisionedQuery) -> ApiResult<usize> {
    match q.max_items.as_deref() {
        None => Ok(limits::LIST_MAX_ITEMS),
        Some(s) => match s.parse::<i64>() {
            Ok(n) if (1..=limits::LIST_MAX_ITEMS as i64).contains(&n) => Ok(n as usize),
            Ok(n) if n > limits::LIST_MAX_ITEMS as i64 => Err(LambdaError::validation(&[format!(
                "Value '{s}' at 'maxItems' failed to satisfy constraint: Member must have value less than or equal to {}",
                limits::LIST_MAX_ITEMS
            )])
            .into()),
            _ => Err(LambdaError::validation(&[format!(
                "Value '{s}' at 'maxItems' failed to satisfy constraint: Member must have value greater than or equal to 1"
            )])
            .into()),
        },
    }
}

fn now_ms() -> i64 {
    let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    i64::try_from(nanos / 1_000_000).unwrap_or(i64::MAX)
}

/// PutProvisionedConcurrencyConfig.
pub async fn put_provisioned_concurrency(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Query<ProvisionedQuery>,
    body: Bytes,
) -> ApiResult<Response> {
    let input: PutProvisionedInput = json_body(&body)?;
    let requested = match input.provisioned_concurrent_executions {
        Some(n) if n >= 1 => u32::try_from(n).unwrap_or(u32::MAX),
        Some(n) => {
            return Err(LambdaError::validation(&[format!(
                "Value '{n}' at 'provisionedConcurrentExecutions' failed to satisfy constraint: Member must have value greater than or equal to 1"
            )])
            .into())
        }
        None => {
            return Err(LambdaError::validation(&[
                "Value null at 'provisionedConcurrentExecutions' failed to satisfy constraint: Member must not be null"
                    .to_owned(),
            ])
            .into())
        }
    };
    let (function, qualifier) = target(&state, &caller, &name, q.qualifier.as_deref())?;
    let limit = state.settings.account_concurrency;
    let config = state
        .blocking(move |s| {
            let c = s.registry.put_provisioned_concurrency(
                caller.id(),
                &function,
                &qualifier,
                requested,
                limit,
                now_ms(),
            )?;
            s.executor.provisioned_changed(caller.id(), &function);
            Ok(c)
        })
        .await?;
    Ok((StatusCode::ACCEPTED, Json(config_shape(&config, None))).into_response())
}

/// GetProvisionedConcurrencyConfig, or ListProvisionedConcurrencyConfigs
/// when the query carries `List`.
pub async fn get_provisioned_concurrency(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Query<ProvisionedQuery>,
) -> ApiResult<Json<Value>> {
    if q.list.is_some() {
        return list_provisioned_concurrency(state, caller, name, q).await;
    }
    let (function, qualifier) = target(&state, &caller, &name, q.qualifier.as_deref())?;
    let config = state
        .blocking(move |s| {
            Ok(s.registry
                .get_provisioned_concurrency(caller.id(), &function, &qualifier)?)
        })
        .await?;
    Ok(Json(config_shape(&config, None)))
}

async fn list_provisioned_concurrency(
    state: AppState,
    caller: Caller,
    name: String,
    q: ProvisionedQuery,
) -> ApiResult<Json<Value>> {
    let fref = resolve(&state, &caller, &name, None)?;
    let max = max_items(&q)?;
    let page = state
        .blocking(move |s| {
            Ok(s.registry.list_provisioned_concurrency(
                caller.id(),
                fref.name.as_str(),
                q.marker.as_deref(),
                max,
            )?)
        })
        .await?;
    let items: Vec<Value> = page
        .items
        .iter()
        .map(|c| list_item(&state.node, c))
        .collect();
    let mut out = json!({ "ProvisionedConcurrencyConfigs": items });
    if let Some(m) = page.next_marker {
        out["NextMarker"] = json!(m);
    }
    Ok(Json(out))
}

/// DeleteProvisionedConcurrencyConfig.
pub async fn delete_provisioned_concurrency(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Query<ProvisionedQuery>,
) -> ApiResult<StatusCode> {
    let (function, qualifier) = target(&state, &caller, &name, q.qualifier.as_deref())?;
    state
        .blocking(move |s| {
            s.registry
                .delete_provisioned_concurrency(caller.id(), &function, &qualifier)?;
            s.executor.provisioned_changed(caller.id(), &function);
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_types::function::ProvisionedStatus;

    #[test]
    fn last_modified_is_iso_8601_in_seconds() {
        assert_eq!(iso_timestamp(0), "1970-01-01T00:00:00+0000");
        assert_eq!(iso_timestamp(1_767_225_600_999), "2026-01-01T00:00:00+0000");
    }

    #[test]
    fn shapes_match_the_recordings() {
        let mut c = ProvisionedConcurrencyConfig {
            account_id: "000000000000".into(),
            function_name: "f".into(),
            qualifier: "live".into(),
            requested: 1,
            allocated: 0,
            status: ProvisionedStatus::InProgress,
            status_reason: None,
            last_modified_ms: 0,
        };
        assert_eq!(
            config_shape(&c, None),
            json!({
                "RequestedProvisionedConcurrentExecutions": 1,
                "AvailableProvisionedConcurrentExecutions": 0,
                "AllocatedProvisionedConcurrentExecutions": 0,
                "Status": "IN_PROGRESS",
                "LastModified": "1970-01-01T00:00:00+0000",
            })
        );
        c.status = ProvisionedStatus::Failed;
        c.status_reason = Some("no capacity".into());
        let item = list_item(&NodeIdentity::new("us-east-1"), &c);
        assert_eq!(
            item["FunctionArn"],
            "arn:aws:lambda:us-east-1:000000000000:function:f:live"
        );
        assert_eq!(item["Status"], "FAILED");
        assert_eq!(item["StatusReason"], "no capacity");
    }
}
