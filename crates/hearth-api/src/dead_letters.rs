//! Hearth's dead-letter store per function (admin API under `/hearth/v1`):
//! events that failed for good — retries exhausted, too old, or their
//! function gone — kept with their last response, listed by `hearth dlq
//! NAME` and re-queued by `hearth dlq NAME --redrive`.

use crate::caller::Caller;
use crate::error::ApiResult;
use crate::request::resolve;
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use hearth_types::LambdaError;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Debug, Default, Deserialize)]
pub struct DeadLetterQuery {
    #[serde(rename = "Limit")]
    limit: Option<usize>,
}

fn text(b: &[u8]) -> Value {
    json!(String::from_utf8_lossy(b))
}

/// `GET /hearth/v1/functions/{name}/dead-letters`: oldest first.
pub async fn list_dead_letters(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Query<DeadLetterQuery>,
) -> ApiResult<Json<Value>> {
    let fref = resolve(&state, &caller, &name, None)?;
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let letters = state
        .blocking(move |s| {
            s.events
                .queue()
                .dead_letters(caller.id(), fref.name.as_str(), limit)
                .map_err(|e| LambdaError::service(e.to_string()).into())
        })
        .await?;
    let items: Vec<Value> = letters
        .iter()
        .map(|d| {
            json!({
                "RequestId": d.event.id,
                "Qualifier": d.event.qualifier.as_deref().unwrap_or("$LATEST"),
                "Condition": d.condition.as_str(),
                "ApproximateInvokeCount": d.invoke_count,
                "ReceivedAtMs": d.event.received_ms,
                "DeadLetteredAtMs": d.dead_ms,
                "Payload": text(&d.event.payload),
                "Response": d.response.as_deref().map(text),
            })
        })
        .collect();
    Ok(Json(json!({ "DeadLetters": items })))
}

/// `POST /hearth/v1/functions/{name}/dead-letters/redrive`: every dead
/// letter of the function back into the queue as a fresh event.
pub async fn redrive(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let fref = resolve(&state, &caller, &name, None)?;
    let n = state
        .blocking(move |s| {
            s.events
                .queue()
                .redrive(
                    caller.id(),
                    fref.name.as_str(),
                    hearth_exec::events::epoch_ms(),
                )
                .map_err(|e| LambdaError::service(e.to_string()).into())
        })
        .await?;
    state.events.wake();
    Ok(Json(json!({ "Redriven": n })))
}
