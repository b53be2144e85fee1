//! Lambda's Invoke API: `POST /2015-03-31/functions/{name}/invocations`.

use crate::caller::Caller;
use crate::error::ApiResult;
use crate::request::{resolve, QualifierQuery};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use base64::Engine;
use bytes::Bytes;
use hearth_exec::{InvokeInput, InvokeMode};
use hearth_store::VersionSelector;
use hearth_types::events::{NewEvent, EXECUTION_WINDOW_MAX_S};
use hearth_types::{limits, ErrorKind, LambdaError};

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// Lambda refuses a payload that is not JSON with this error.
fn check_json(payload: &[u8]) -> ApiResult<()> {
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(payload) {
        return Err(LambdaError::new(
            ErrorKind::InvalidRequestContent,
            format!(
                "Could not parse request body into json: Could not parse payload into json: {e}"
            ),
        )
        .into());
    }
    Ok(())
}

/// `X-Hearth-Execution-Window`: seconds, 1–86400.
fn execution_window(headers: &HeaderMap) -> ApiResult<Option<u32>> {
    let Some(raw) = headers.get("x-hearth-execution-window") else {
        return Ok(None);
    };
    raw.to_str()
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .filter(|n| (1..=EXECUTION_WINDOW_MAX_S).contains(n))
        .map(Some)
        .ok_or_else(|| {
            LambdaError::invalid(format!(
                "X-Hearth-Execution-Window must be a whole number of seconds from 1 to {EXECUTION_WINDOW_MAX_S}."
            ))
            .into()
        })
}

/// `X-Amz-Invocation-Type: Event`: checks the function and the payload,
/// stores the event durably, then answers 202 with an empty body.
async fn accept_event(
    state: AppState,
    caller: Caller,
    fref: hearth_types::arn::FunctionRef,
    headers: &HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    if body.len() > limits::ASYNC_PAYLOAD_MAX_BYTES {
        return Err(LambdaError::new(
            ErrorKind::RequestTooLarge,
            format!(
                "{} byte payload is too large for the Event invocation type (limit {} bytes)",
                body.len(),
                limits::ASYNC_PAYLOAD_MAX_BYTES
            ),
        )
        .into());
    }
    let payload = if body.iter().all(u8::is_ascii_whitespace) {
        Bytes::from_static(b"{}")
    } else {
        check_json(&body)?;
        body
    };
    let client_context = client_context(headers)?;
    let window = execution_window(headers)?;
    let account = caller.id().to_owned();
    let name = fref.name.as_str().to_owned();
    let qualifier = fref.qualifier.clone();
    let fr = fref.clone();
    let default_window = state
        .blocking(move |s| {
            let sel = VersionSelector::from_qualifier(qualifier.as_deref());
            let found = match &sel {
                VersionSelector::Alias(a) => s.registry.get_alias(&account, &name, a).map(|_| ()),
                _ => s.registry.get_version(&account, &name, &sel).map(|_| ()),
            };
            if found.is_err() {
                return Err(fr.not_found(&s.node, &account).into());
            }
            let q = qualifier.as_deref().unwrap_or("$LATEST");
            Ok(s.registry
                .get_event_invoke_config(&account, &name, q)?
                .and_then(|c| c.execution_window_seconds))
        })
        .await?;
    let window = window.or(default_window);
    let now = hearth_exec::events::epoch_ms();
    let id = uuid::Uuid::new_v4().to_string();
    let ev = NewEvent {
        id: id.clone(),
        account_id: caller.id().to_owned(),
        function_name: fref.name.as_str().to_owned(),
        qualifier: fref.qualifier.clone(),
        payload: payload.to_vec(),
        client_context,
        received_ms: now,
        not_before_ms: now,
        window_end_ms: window.map(|w| now + i64::from(w) * 1000),
    };
    state
        .events
        .accept(ev)
        .await
        .map_err(|e| LambdaError::service(format!("the event could not be stored: {e}")))?;
    let mut resp = StatusCode::ACCEPTED.into_response();
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-amzn-requestid", v);
    }
    Ok(resp)
}

/// `X-Amz-Client-Context`: base64 of a JSON object, at most 3583 bytes.
fn client_context(headers: &HeaderMap) -> ApiResult<Option<String>> {
    match header(headers, "x-amz-client-context") {
        None => Ok(None),
        Some(b64) => {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .filter(|s| serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok())
                .ok_or_else(|| {
                    LambdaError::invalid(
                        "Client context must be a valid Base64-encoded JSON object.",
                    )
                })?;
            if raw.len() > 3583 {
                return Err(LambdaError::invalid(
                    "Client context must be at most 3583 bytes once decoded.",
                )
                .into());
            }
            Ok(Some(raw))
        }
    }
}

pub async fn invoke(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let fref = resolve(&state, &caller, &name, q.qualifier.as_deref())?;
    let invocation_type = header(&headers, "x-amz-invocation-type").unwrap_or("RequestResponse");
    let dry_run = match invocation_type {
        "RequestResponse" => false,
        "DryRun" => true,
        "Event" => return accept_event(state, caller, fref, &headers, body).await,
        other => {
            return Err(LambdaError::validation(&[format!(
                "Value '{other}' at 'invocationType' failed to satisfy constraint: Member must satisfy enum value set: [Event, RequestResponse, DryRun]"
            )])
            .into())
        }
    };
    let tail = match header(&headers, "x-amz-log-type") {
        None | Some("None") => false,
        Some("Tail") => true,
        Some(other) => {
            return Err(LambdaError::validation(&[format!(
                "Value '{other}' at 'logType' failed to satisfy constraint: Member must satisfy enum value set: [None, Tail]"
            )])
            .into())
        }
    };
    if body.len() > limits::SYNC_PAYLOAD_MAX_BYTES {
        return Err(LambdaError::new(
            ErrorKind::RequestTooLarge,
            format!(
                "{} byte payload is too large for the RequestResponse invocation type (limit {} bytes)",
                body.len(),
                limits::SYNC_PAYLOAD_MAX_BYTES
            ),
        )
        .into());
    }
    let payload = if body.iter().all(u8::is_ascii_whitespace) {
        Bytes::from_static(b"{}")
    } else {
        check_json(&body)?;
        body
    };
    let client_context = client_context(&headers)?;
    let input = InvokeInput {
        account_id: caller.id().to_owned(),
        function_name: fref.name.as_str().to_owned(),
        qualifier: fref.qualifier.clone(),
        payload,
        tail,
        client_context,
        dry_run,
        request_id: None,
        mode: InvokeMode::Sync,
    };
    // The invocation runs to its end in a task of its own, as on Lambda: a
    // client that hangs up does not cancel it half-way (which would abandon
    // the runtime mid-event and cost the sandbox).
    let executor = state.executor.clone();
    let out = tokio::spawn(async move { executor.invoke(input).await })
        .await
        .map_err(|e| LambdaError::service(format!("the invocation task failed: {e}")))??;
    let log_result = if tail { out.log_result() } else { None };
    let mut resp = if dry_run {
        StatusCode::NO_CONTENT.into_response()
    } else {
        (
            StatusCode::OK,
            [(http::header::CONTENT_TYPE, "application/json")],
            out.body,
        )
            .into_response()
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&out.executed_version) {
        h.insert("x-amz-executed-version", v);
    }
    if !out.placement.is_empty() {
        h.insert(
            "x-hearth-placement",
            HeaderValue::from_static(out.placement),
        );
    }
    if let Some(v) = out
        .usage
        .as_deref()
        .and_then(|u| HeaderValue::from_str(u).ok())
    {
        h.insert("x-hearth-usage", v);
    }
    if out.function_error {
        h.insert(
            "x-amz-function-error",
            HeaderValue::from_static("Unhandled"),
        );
    }
    if let Some(v) = log_result.and_then(|l| HeaderValue::from_str(&l).ok()) {
        h.insert("x-amz-log-result", v);
    }
    if let Ok(v) = HeaderValue::from_str(&out.request_id) {
        h.insert("x-amzn-requestid", v);
    }
    Ok(resp)
}
