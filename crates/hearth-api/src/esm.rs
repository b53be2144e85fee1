//! Lambda's event source mappings for SQS queues, on
//! `/2015-03-31/event-source-mappings/`: Create (202), Get, List (by
//! `EventSourceArn` and/or `FunctionName`, paged), Update (202) and
//! Delete (202). The mappings live in the SQS store; the pollers that
//! follow them are [`hearth_exec::esm::Mappings`].
//!
//! Only SQS queues of the caller's own account are event sources (Hearth
//! has no queue policies); other ARNs are refused as Lambda refuses an
//! event source it cannot read.

use crate::caller::Caller;
use crate::error::ApiResult;
use crate::request::{json_body, resolve};
use crate::state::{AppState, Shared};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use hearth_store::sqs::Mapping;
use hearth_store::VersionSelector;
use hearth_types::{ErrorKind, LambdaError};
use serde::Deserialize;
use serde_json::{json, Value};

/// The largest SQS batch Lambda allows (with a batching window).
const MAX_BATCH: i64 = 10_000;
/// The largest batch without a batching window.
const MAX_BATCH_NO_WINDOW: i64 = 10;
const MAX_WINDOW_S: i64 = 300;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ScalingInput {
    maximum_concurrency: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MappingInput {
    event_source_arn: Option<String>,
    function_name: Option<String>,
    enabled: Option<bool>,
    batch_size: Option<i64>,
    maximum_batching_window_in_seconds: Option<i64>,
    function_response_types: Option<Vec<String>>,
    scaling_config: Option<ScalingInput>,
    /// Stream-only settings: refused for SQS, as Lambda does.
    starting_position: Option<String>,
    /// Refused for SQS, as Lambda does.
    destination_config: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(rename = "EventSourceArn")]
    event_source_arn: Option<String>,
    #[serde(rename = "FunctionName")]
    function_name: Option<String>,
    #[serde(rename = "Marker")]
    marker: Option<String>,
    #[serde(rename = "MaxItems")]
    max_items: Option<String>,
}

fn not_found() -> LambdaError {
    LambdaError::new(
        ErrorKind::ResourceNotFound,
        "The resource you requested does not exist.",
    )
}

fn queue_arn(s: &Shared, m: &Mapping) -> String {
    format!(
        "arn:aws:sqs:{}:{}:{}",
        s.node.region, m.queue_account, m.queue
    )
}

/// `EventSourceMappingConfiguration`, as botocore reads it.
fn shape(s: &Shared, m: &Mapping) -> Value {
    let mut v = json!({
        "UUID": m.uuid,
        "EventSourceMappingArn": format!(
            "arn:aws:lambda:{}:{}:event-source-mapping:{}",
            s.node.region, m.account, m.uuid
        ),
        "BatchSize": m.batch_size,
        "MaximumBatchingWindowInSeconds": m.window_s,
        "EventSourceArn": queue_arn(s, m),
        "FunctionArn": s.node.arn(&m.account, &m.function_name, m.qualifier.as_deref()),
        "LastModified": m.modified_ms as f64 / 1000.0,
        "State": if m.enabled { "Enabled" } else { "Disabled" },
        "StateTransitionReason": "User action",
        "FunctionResponseTypes": if m.report_failures { vec!["ReportBatchItemFailures"] } else { Vec::new() },
    });
    if let Some(c) = m.max_concurrency {
        v["ScalingConfig"] = json!({ "MaximumConcurrency": c });
    }
    v
}

/// The visibility timeout of the mapping's queue, s.
fn queue_visibility(s: &Shared, m: &Mapping) -> ApiResult<u32> {
    Ok(s.sqs
        .store()
        .queue(&m.queue_account, &m.queue)
        .map_err(sqs_store_error)?
        .settings
        .visibility_timeout_s)
}

/// The queue's visibility timeout must be at least the function's timeout
/// (else its messages would come back while the function still works on
/// them), as Lambda checks.
fn check_visibility(visibility: u32, function_timeout_s: u32) -> ApiResult<()> {
    if visibility < function_timeout_s {
        return Err(LambdaError::invalid(format!(
            "Queue visibility timeout: {visibility} seconds is less than Function timeout: {function_timeout_s} seconds"
        ))
        .into());
    }
    Ok(())
}

/// Checks the settings a create or update gives, onto `m`.
fn apply_settings(m: &mut Mapping, input: &MappingInput) -> ApiResult<()> {
    if input.destination_config.is_some() {
        return Err(LambdaError::invalid(
            "Unsupported DestinationConfig parameter for given event source mapping type.",
        )
        .into());
    }
    if input.starting_position.is_some() {
        return Err(LambdaError::invalid("Unsupported starting position for arn type: sqs").into());
    }
    if let Some(e) = input.enabled {
        m.enabled = e;
    }
    if let Some(w) = input.maximum_batching_window_in_seconds {
        if !(0..=MAX_WINDOW_S).contains(&w) {
            return Err(LambdaError::validation(&[format!(
                "Value '{w}' at 'maximumBatchingWindowInSeconds' failed to satisfy constraint: Member must have value less than or equal to {MAX_WINDOW_S}"
            )])
            .into());
        }
        m.window_s = w as u32;
    }
    if let Some(b) = input.batch_size {
        if !(1..=MAX_BATCH).contains(&b) {
            return Err(LambdaError::validation(&[format!(
                "Value '{b}' at 'batchSize' failed to satisfy constraint: Member must have value {} {}",
                if b < 1 { "greater than or equal to" } else { "less than or equal to" },
                if b < 1 { 1 } else { MAX_BATCH }
            )])
            .into());
        }
        m.batch_size = b as u32;
    }
    if i64::from(m.batch_size) > MAX_BATCH_NO_WINDOW && m.window_s == 0 {
        return Err(LambdaError::invalid(
            "Maximum batch window in seconds must be greater than 0 if maximum batch size is greater than 10",
        )
        .into());
    }
    if let Some(types) = &input.function_response_types {
        if let Some(bad) = types.iter().find(|t| *t != "ReportBatchItemFailures") {
            return Err(LambdaError::validation(&[format!(
                "Value '[{bad}]' at 'functionResponseTypes' failed to satisfy constraint: Member must satisfy constraint: [Member must satisfy enum value set: [ReportBatchItemFailures]]"
            )])
            .into());
        }
        m.report_failures = !types.is_empty();
    }
    if let Some(sc) = &input.scaling_config {
        m.max_concurrency = match sc.maximum_concurrency {
            None => None,
            Some(c) if (2..=1000).contains(&c) => Some(c as u32),
            Some(c) => {
                return Err(LambdaError::validation(&[format!(
                    "Value '{c}' at 'scalingConfig.maximumConcurrency' failed to satisfy constraint: Member must have value {} {}",
                    if c < 2 { "greater than or equal to" } else { "less than or equal to" },
                    if c < 2 { 2 } else { 1000 }
                )])
                .into())
            }
        };
    }
    Ok(())
}

/// The function (and qualifier) a request names; it must exist.
/// Also its timeout, s, which the queue's visibility timeout must cover.
fn function_of(
    s: &Shared,
    caller: &Caller,
    name: &str,
) -> ApiResult<(String, Option<String>, u32)> {
    let fref = hearth_types::arn::FunctionRef::parse_with_qualifier(name, None)?;
    if !fref.is_for(&s.node, caller.id()) {
        return Err(fref.not_found(&s.node, caller.id()).into());
    }
    let function = fref.name.as_str().to_owned();
    let q = fref.qualifier.filter(|q| q != "$LATEST");
    let version = s.registry.get_version(
        caller.id(),
        &function,
        &VersionSelector::from_qualifier(q.as_deref()),
    );
    match version {
        Ok(v) => Ok((function, q, v.config.timeout)),
        // As Lambda answers CreateEventSourceMapping for a missing function.
        Err(_) => Err(LambdaError::invalid("Function does not exist").into()),
    }
}

fn now_ms() -> i64 {
    hearth_exec::events::epoch_ms()
}

fn sqs_store_error(e: hearth_store::SqsError) -> LambdaError {
    tracing::error!(error = %e, "SQS store failed");
    LambdaError::new(ErrorKind::Service, "The SQS store failed.")
}

pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult<Response> {
    let input: MappingInput = json_body(&body)?;
    let source = input
        .event_source_arn
        .clone()
        .ok_or_else(|| LambdaError::invalid("Unrecognized event source."))?;
    let name = input.function_name.clone().ok_or_else(|| {
        LambdaError::validation(&[
            "Value null at 'functionName' failed to satisfy constraint: Member must not be null"
                .to_owned(),
        ])
    })?;
    let account = caller.id().to_owned();
    let (uuid, view) = state
        .blocking(move |s| {
            let Some((region, queue_account, queue)) = hearth_exec::sqs::parse_queue_arn(&source)
            else {
                return Err(LambdaError::invalid(format!(
                    "Unrecognized event source, must be kafka or one of: DynamoDB, Kinesis, SQS, DocumentDB, MQ (got {source}). Hearth maps SQS queues only."
                ))
                .into());
            };
            let (function, qualifier, timeout) = function_of(s, &caller, &name)?;
            if region != s.node.region
                || queue_account != caller.id()
                || s.sqs.store().queue(&queue_account, &queue).is_err()
            {
                return Err(LambdaError::invalid(format!(
                    "Error occurred while ReceiveMessage. SQS Error Code: AWS.SimpleQueueService.NonExistentQueue. SQS Error Message: The specified queue does not exist ({source})."
                ))
                .into());
            }
            let mut m = Mapping {
                uuid: uuid::Uuid::new_v4().to_string(),
                account: caller.id().to_owned(),
                function_name: function,
                qualifier,
                queue_account,
                queue,
                batch_size: 10,
                window_s: 0,
                enabled: true,
                report_failures: false,
                max_concurrency: None,
                modified_ms: now_ms(),
            };
            apply_settings(&mut m, &input)?;
            check_visibility(queue_visibility(s, &m)?, timeout)?;
            if let Some(existing) = s.sqs.store().insert_mapping(&m).map_err(sqs_store_error)? {
                return Err(LambdaError::new(
                    ErrorKind::ResourceConflict,
                    format!(
                        "An event source mapping with SQS arn (\" {source} \") and function (\" {} \") already exists. Please update or delete the existing mapping with UUID {existing}",
                        m.function_name
                    ),
                )
                .into());
            }
            let mut view = shape(s, &m);
            view["State"] = json!("Creating");
            Ok((m.uuid, view))
        })
        .await?;
    state.mappings.refresh(&account, &uuid);
    Ok((StatusCode::ACCEPTED, Json(view)).into_response())
}

pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(uuid): Path<String>,
) -> ApiResult<Json<Value>> {
    let view = state
        .blocking(move |s| {
            let m = s
                .sqs
                .store()
                .mapping(caller.id(), &uuid)
                .map_err(sqs_store_error)?
                .ok_or_else(not_found)?;
            Ok(shape(s, &m))
        })
        .await?;
    Ok(Json(view))
}

pub async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(uuid): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let input: MappingInput = json_body(&body)?;
    let account = caller.id().to_owned();
    let id = uuid.clone();
    let view = state
        .blocking(move |s| {
            // The function named (checked outside the store's transaction:
            // it lives in the registry).
            let function = input
                .function_name
                .as_deref()
                .map(|n| function_of(s, &caller, n))
                .transpose()?;
            // The queue (fixed for a mapping) and the function decide the
            // visibility check: read before the store's transaction, which
            // must not call back into the store.
            let current = s
                .sqs
                .store()
                .mapping(caller.id(), &id)
                .map_err(sqs_store_error)?
                .ok_or_else(not_found)?;
            let visibility = queue_visibility(s, &current)?;
            let timeout = match &function {
                Some((_, _, t)) => *t,
                None => function_of(
                    s,
                    &caller,
                    &s.node.arn(
                        caller.id(),
                        &current.function_name,
                        current.qualifier.as_deref(),
                    ),
                )
                .map_or(0, |f| f.2),
            };
            let changed = s
                .sqs
                .store()
                .modify_mapping(caller.id(), &id, |m| -> ApiResult<()> {
                    if let Some((name, qualifier, _)) = &function {
                        m.function_name.clone_from(name);
                        m.qualifier.clone_from(qualifier);
                    }
                    apply_settings(m, &input)?;
                    check_visibility(visibility, timeout)?;
                    m.modified_ms = now_ms();
                    Ok(())
                })
                .map_err(sqs_store_error)?
                .ok_or_else(not_found)??;
            let mut view = shape(s, &changed);
            view["State"] = json!("Updating");
            Ok(view)
        })
        .await?;
    state.mappings.refresh(&account, &uuid);
    Ok((StatusCode::ACCEPTED, Json(view)).into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(uuid): Path<String>,
) -> ApiResult<Response> {
    let account = caller.id().to_owned();
    let id = uuid.clone();
    let view = state
        .blocking(move |s| {
            let m = s
                .sqs
                .store()
                .delete_mapping(caller.id(), &id)
                .map_err(sqs_store_error)?
                .ok_or_else(not_found)?;
            let mut view = shape(s, &m);
            view["State"] = json!("Deleting");
            Ok(view)
        })
        .await?;
    state.mappings.refresh(&account, &uuid);
    Ok((StatusCode::ACCEPTED, Json(view)).into_response())
}

pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let max = match q.max_items.as_deref() {
        None => 100,
        Some(n) => match n.parse::<usize>() {
            Ok(n) if (1..=10_000).contains(&n) => n,
            _ => {
                return Err(LambdaError::validation(&[format!(
                    "Value '{n}' at 'maxItems' failed to satisfy constraint: Member must have value between 1 and 10000"
                )])
                .into())
            }
        },
    };
    if let Some(name) = &q.function_name {
        resolve(&state, &caller, name, None)?;
    }
    let view = state
        .blocking(move |s| {
            let function = q
                .function_name
                .as_deref()
                .map(|n| function_of(s, &caller, n))
                .transpose()?
                .map(|(f, q, _)| (f, q));
            let all = s
                .sqs
                .store()
                .mappings(Some(caller.id()))
                .map_err(sqs_store_error)?;
            let mut items: Vec<&Mapping> = all
                .iter()
                .filter(|m| {
                    q.event_source_arn
                        .as_deref()
                        .is_none_or(|a| a == queue_arn(s, m))
                        && function.as_ref().is_none_or(|(f, qual)| {
                            m.function_name == *f && (qual.is_none() || m.qualifier == *qual)
                        })
                })
                .collect();
            items.sort_by(|a, b| a.uuid.cmp(&b.uuid));
            let start = match q.marker.as_deref() {
                None => 0,
                Some(marker) => items
                    .iter()
                    .position(|m| m.uuid.as_str() > marker)
                    .unwrap_or(items.len()),
            };
            let page: Vec<Value> = items[start..]
                .iter()
                .take(max)
                .map(|m| shape(s, m))
                .collect();
            let mut out = json!({ "EventSourceMappings": page });
            if start + max < items.len() {
                out["NextMarker"] = json!(items[start + max - 1].uuid);
            }
            Ok(out)
        })
        .await?;
    Ok(Json(view))
}
