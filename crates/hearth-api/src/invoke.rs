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
use hearth_exec::InvokeInput;
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
        "Event" => {
            return Err(LambdaError::invalid(
                "Asynchronous invocation (InvocationType Event) is not available on this Hearth node yet; use RequestResponse.",
            )
            .into())
        }
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
    let client_context = match header(&headers, "x-amz-client-context") {
        None => None,
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
            Some(raw)
        }
    };
    let input = InvokeInput {
        account_id: caller.id().to_owned(),
        function_name: fref.name.as_str().to_owned(),
        qualifier: fref.qualifier.clone(),
        payload,
        tail,
        client_context,
        dry_run,
    };
    // The invocation runs to its end in a task of its own, as on Lambda: a
    // client that hangs up does not cancel it half-way (which would abandon
    // the runtime mid-event and cost the sandbox).
    let executor = state.executor.clone();
    let out = tokio::spawn(async move { executor.invoke(input).await })
        .await
        .map_err(|e| LambdaError::service(format!("the invocation task failed: {e}")))??;
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
    if out.function_error {
        h.insert(
            "x-amz-function-error",
            HeaderValue::from_static("Unhandled"),
        );
    }
    if tail {
        if let Some(v) = out.log_result.and_then(|l| HeaderValue::from_str(&l).ok()) {
            h.insert("x-amz-log-result", v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&out.request_id) {
        h.insert("x-amzn-requestid", v);
    }
    Ok(resp)
}
