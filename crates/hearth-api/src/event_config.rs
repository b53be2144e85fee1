//! Lambda's event-invoke configuration on
//! `/2019-09-25/functions/{name}/event-invoke-config`: Put (PUT, replaces
//! the whole config), Update (POST, merges), Get, Delete (204) and List
//! (`…/event-invoke-config/list`), per qualifier (`$LATEST` when none).
//!
//! Hearth's extension: `HearthExecutionWindowInSeconds` (1–86400), the
//! default execution window of the function's asynchronous events (see
//! `X-Hearth-Execution-Window` on Invoke).

use crate::caller::Caller;
use crate::error::ApiResult;
use crate::request::{json_body, resolve, PageQuery, QualifierQuery};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use hearth_store::VersionSelector;
use hearth_types::arn::NodeIdentity;
use hearth_types::events::{
    EventInvokeConfig, EXECUTION_WINDOW_MAX_S, MAX_EVENT_AGE_MAX_S, MAX_EVENT_AGE_MIN_S,
    MAX_RETRY_ATTEMPTS_MAX,
};
use hearth_types::{limits, ErrorKind, LambdaError};
use serde::Deserialize;
use serde_json::{json, Map, Value};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DestinationInput {
    destination: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DestinationConfigInput {
    on_success: Option<DestinationInput>,
    on_failure: Option<DestinationInput>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EventInvokeConfigInput {
    maximum_retry_attempts: Option<i64>,
    maximum_event_age_in_seconds: Option<i64>,
    destination_config: Option<DestinationConfigInput>,
    hearth_execution_window_in_seconds: Option<i64>,
}

fn now_ms() -> i64 {
    let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    i64::try_from(nanos / 1_000_000).unwrap_or(i64::MAX)
}

/// The response shape: unset limits are absent, destinations always are
/// objects (`{}` when unset), `LastModified` is epoch seconds.
fn shape(node: &NodeIdentity, c: &EventInvokeConfig) -> Value {
    let mut m = Map::new();
    let dest = |d: &Option<String>| match d {
        Some(arn) => json!({ "Destination": arn }),
        None => json!({}),
    };
    m.insert(
        "DestinationConfig".into(),
        json!({ "OnSuccess": dest(&c.on_success), "OnFailure": dest(&c.on_failure) }),
    );
    m.insert(
        "FunctionArn".into(),
        json!(node.qualified_arn(&c.account_id, &c.function_name, &c.qualifier)),
    );
    m.insert(
        "LastModified".into(),
        json!(c.last_modified_ms as f64 / 1000.0),
    );
    if let Some(n) = c.maximum_retry_attempts {
        m.insert("MaximumRetryAttempts".into(), json!(n));
    }
    if let Some(n) = c.maximum_event_age_seconds {
        m.insert("MaximumEventAgeInSeconds".into(), json!(n));
    }
    if let Some(n) = c.execution_window_seconds {
        m.insert("HearthExecutionWindowInSeconds".into(), json!(n));
    }
    Value::Object(m)
}

fn range_error(value: i64, field: &str, min: i64, max: i64) -> Option<String> {
    if value < min {
        Some(format!(
            "Value '{value}' at '{field}' failed to satisfy constraint: Member must have value greater than or equal to {min}"
        ))
    } else if value > max {
        Some(format!(
            "Value '{value}' at '{field}' failed to satisfy constraint: Member must have value less than or equal to {max}"
        ))
    } else {
        None
    }
}

/// Checks the fields' ranges (every violation at once, as AWS reports).
fn check_ranges(input: &EventInvokeConfigInput) -> ApiResult<()> {
    let mut errors = Vec::new();
    if let Some(n) = input.maximum_retry_attempts {
        errors.extend(range_error(
            n,
            "maximumRetryAttempts",
            0,
            i64::from(MAX_RETRY_ATTEMPTS_MAX),
        ));
    }
    if let Some(n) = input.maximum_event_age_in_seconds {
        errors.extend(range_error(
            n,
            "maximumEventAgeInSeconds",
            i64::from(MAX_EVENT_AGE_MIN_S),
            i64::from(MAX_EVENT_AGE_MAX_S),
        ));
    }
    if let Some(n) = input.hearth_execution_window_in_seconds {
        errors.extend(range_error(
            n,
            "hearthExecutionWindowInSeconds",
            1,
            i64::from(EXECUTION_WINDOW_MAX_S),
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(LambdaError::validation(&errors).into())
    }
}

/// AWS's text for a destination config it cannot use.
fn invalid_config(success: Option<&str>, failure: Option<&str>) -> LambdaError {
    let part = |name: &str, d: Option<&str>| match d {
        Some(arn) => format!("{name}(destination={arn})"),
        None => "null".to_owned(),
    };
    LambdaError::invalid(format!(
        "The provided destination config DestinationConfig(onSuccess={}, onFailure={}) is invalid.",
        part("OnSuccess", success),
        part("OnFailure", failure)
    ))
}

/// Checks each destination: a function ARN on this node and account,
/// existing, and not the function itself; or an existing SQS queue of the
/// account.
fn check_destinations(
    state: &AppState,
    caller: &Caller,
    function: &str,
    success: Option<&str>,
    failure: Option<&str>,
) -> ApiResult<()> {
    for arn in [success, failure].into_iter().flatten() {
        if !arn.starts_with("arn:") {
            return Err(LambdaError::validation(&[format!(
                "Value '{arn}' at 'destinationConfig.{}.destination' failed to satisfy constraint: Member must satisfy regular expression pattern: $|kafka://([^.]([a-zA-Z0-9\\-_.]{{0,248}}))|arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9\\-])+:((eusc-)?[a-z]{{2}}((-gov)|(-iso([a-z]?)))?-[a-z]+-\\d{{1}})?:(\\d{{12}})?:(.*)",
                if Some(arn) == success { "onSuccess" } else { "onFailure" }
            )])
            .into());
        }
        if let Some((region, account, queue)) = hearth_exec::sqs::parse_queue_arn(arn) {
            // A queue of the caller's own account on this node (Hearth has
            // no queue policies to grant another account's).
            let exists = region == state.node.region
                && account == caller.id()
                && state.sqs.store().queue(&account, &queue).is_ok();
            if !exists {
                return Err(
                    LambdaError::invalid(format!("The destination ARN {arn} is invalid.")).into(),
                );
            }
            continue;
        }
        let Some((account, name, qualifier)) = hearth_exec::events::parse_function_arn(arn) else {
            // Another service's ARN (SNS, EventBridge…): this node
            // delivers to functions and SQS queues only.
            return Err(invalid_config(success, failure).into());
        };
        if name == function && account == caller.id() {
            return Err(LambdaError::invalid(
                "You can't specify the function as a destination for itself.",
            )
            .into());
        }
        let region_ok = arn.split(':').nth(3) == Some(state.node.region.as_str());
        let exists = region_ok
            && account == caller.id()
            && state
                .registry
                .get_version(
                    &account,
                    &name,
                    &VersionSelector::from_qualifier(qualifier.as_deref()),
                )
                .is_ok()
            || qualifier.as_deref().is_some_and(|q| {
                region_ok
                    && account == caller.id()
                    && state.registry.get_alias(&account, &name, q).is_ok()
            });
        if !exists {
            return Err(
                LambdaError::invalid(format!("The destination ARN {arn} is invalid.")).into(),
            );
        }
    }
    Ok(())
}

/// The function and qualifier a request names; the function (and the
/// version or alias) must exist.
fn target(
    state: &AppState,
    caller: &Caller,
    name: &str,
    qualifier: Option<&str>,
) -> ApiResult<(String, String)> {
    let fref = resolve(state, caller, name, qualifier)?;
    let function = fref.name.as_str().to_owned();
    let q = fref.qualifier.unwrap_or_else(|| "$LATEST".to_owned());
    let sel = VersionSelector::from_qualifier(Some(&q));
    let found = match &sel {
        VersionSelector::Alias(a) => state.registry.get_alias(caller.id(), &function, a).is_ok(),
        _ => state
            .registry
            .get_version(caller.id(), &function, &sel)
            .is_ok(),
    };
    if !found {
        return Err(
            LambdaError::new(ErrorKind::ResourceNotFound, "The function doesn't exist.").into(),
        );
    }
    Ok((function, q))
}

fn not_found(node: &NodeIdentity, account: &str, function: &str, qualifier: &str) -> LambdaError {
    LambdaError::new(
        ErrorKind::ResourceNotFound,
        format!(
            "The function {} doesn't have an EventInvokeConfig",
            node.qualified_arn(account, function, qualifier)
        ),
    )
}

/// PutFunctionEventInvokeConfig (`merge: false`) and
/// UpdateFunctionEventInvokeConfig (`merge: true`).
async fn put_or_update(
    state: AppState,
    caller: Caller,
    name: String,
    qualifier: Option<String>,
    body: Bytes,
    merge: bool,
) -> ApiResult<Json<Value>> {
    let input: EventInvokeConfigInput = json_body(&body)?;
    check_ranges(&input)?;
    let dest = input.destination_config.as_ref();
    let success = dest
        .and_then(|d| d.on_success.as_ref())
        .and_then(|d| d.destination.clone())
        .filter(|s| !s.is_empty());
    let failure = dest
        .and_then(|d| d.on_failure.as_ref())
        .and_then(|d| d.destination.clone())
        .filter(|s| !s.is_empty());
    if input.maximum_retry_attempts.is_none()
        && input.maximum_event_age_in_seconds.is_none()
        && input.destination_config.is_none()
        && input.hearth_execution_window_in_seconds.is_none()
    {
        return Err(LambdaError::invalid(
            "You must specify at least one of error handling or destination setting.",
        )
        .into());
    }
    let config = state
        .blocking(move |s| {
            let (function, q) = target(s, &caller, &name, qualifier.as_deref())?;
            check_destinations(
                s,
                &caller,
                &function,
                success.as_deref(),
                failure.as_deref(),
            )?;
            let existing = s
                .registry
                .get_event_invoke_config(caller.id(), &function, &q)?;
            if merge && existing.is_none() {
                return Err(not_found(&s.node, caller.id(), &function, &q).into());
            }
            let base = if merge { existing } else { None };
            let dest_given = input.destination_config.is_some();
            let c = EventInvokeConfig {
                account_id: caller.id().to_owned(),
                function_name: function,
                qualifier: q,
                maximum_retry_attempts: input
                    .maximum_retry_attempts
                    .map(|n| n as u32)
                    .or(base.as_ref().and_then(|b| b.maximum_retry_attempts)),
                maximum_event_age_seconds: input
                    .maximum_event_age_in_seconds
                    .map(|n| n as u32)
                    .or(base.as_ref().and_then(|b| b.maximum_event_age_seconds)),
                on_success: if dest_given {
                    success
                } else {
                    base.as_ref().and_then(|b| b.on_success.clone())
                },
                on_failure: if dest_given {
                    failure
                } else {
                    base.as_ref().and_then(|b| b.on_failure.clone())
                },
                execution_window_seconds: input
                    .hearth_execution_window_in_seconds
                    .map(|n| n as u32)
                    .or(base.as_ref().and_then(|b| b.execution_window_seconds)),
                last_modified_ms: now_ms(),
            };
            s.registry.put_event_invoke_config(&c)?;
            Ok(c)
        })
        .await?;
    Ok(Json(shape(&state.node, &config)))
}

pub async fn put_event_invoke_config(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    put_or_update(state, caller, name, q.qualifier, body, false).await
}

pub async fn update_event_invoke_config(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    put_or_update(state, caller, name, q.qualifier, body, true).await
}

pub async fn get_event_invoke_config(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
) -> ApiResult<Json<Value>> {
    let fref = resolve(&state, &caller, &name, q.qualifier.as_deref())?;
    let config = state
        .blocking(move |s| {
            let function = fref.name.as_str().to_owned();
            let q = fref.qualifier.unwrap_or_else(|| "$LATEST".to_owned());
            s.registry
                .get_event_invoke_config(caller.id(), &function, &q)?
                .ok_or_else(|| not_found(&s.node, caller.id(), &function, &q).into())
        })
        .await?;
    Ok(Json(shape(&state.node, &config)))
}

pub async fn delete_event_invoke_config(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
) -> ApiResult<Response> {
    let fref = resolve(&state, &caller, &name, q.qualifier.as_deref())?;
    state
        .blocking(move |s| {
            let function = fref.name.as_str().to_owned();
            let q = fref.qualifier.unwrap_or_else(|| "$LATEST".to_owned());
            if s.registry
                .delete_event_invoke_config(caller.id(), &function, &q)?
            {
                Ok(())
            } else {
                Err(not_found(&s.node, caller.id(), &function, &q).into())
            }
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn list_event_invoke_configs(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Value>> {
    let max = match page.max_items.as_deref() {
        None => limits::LIST_MAX_ITEMS,
        Some(s) => match s.parse::<i64>() {
            Ok(n) if (1..=limits::LIST_MAX_ITEMS as i64).contains(&n) => n as usize,
            Ok(n) => {
                return Err(LambdaError::validation(&[range_error(
                    n,
                    "maxItems",
                    1,
                    limits::LIST_MAX_ITEMS as i64,
                )
                .unwrap_or_default()])
                .into())
            }
            Err(_) => return Err(LambdaError::invalid(format!("Invalid MaxItems: {s}")).into()),
        },
    };
    let fref = resolve(&state, &caller, &name, None)?;
    let all = state
        .blocking(move |s| {
            let function = fref.name.as_str();
            if s.registry
                .get_version(caller.id(), function, &VersionSelector::Latest)
                .is_err()
            {
                return Err(LambdaError::new(
                    ErrorKind::ResourceNotFound,
                    "The function doesn't exist.",
                )
                .into());
            }
            Ok(s.registry
                .list_event_invoke_configs(caller.id(), function)?)
        })
        .await?;
    // Marker: the qualifier to continue after.
    let start = page
        .marker
        .as_deref()
        .and_then(|m| all.iter().position(|c| c.qualifier == m).map(|i| i + 1))
        .unwrap_or(0);
    let items: Vec<Value> = all
        .iter()
        .skip(start)
        .take(max)
        .map(|c| shape(&state.node, c))
        .collect();
    let mut out = json!({ "FunctionEventInvokeConfigs": items });
    if start + max < all.len() {
        if let Some(c) = all.get(start + max - 1) {
            out["NextMarker"] = json!(c.qualifier);
        }
    }
    Ok(Json(out))
}
