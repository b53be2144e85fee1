//! `GET /hearth/v1/functions/{name}/logs`: a function's recent log events
//! (what `hearth logs NAME [--follow]` prints).

use crate::caller::Caller;
use crate::error::ApiResult;
use crate::request::resolve;
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Debug, Default, Deserialize)]
pub struct LogsQuery {
    /// Only events after this sequence number (a cursor from a previous answer).
    after: Option<i64>,
    /// At most this many events (default 1000, at most 10000).
    limit: Option<usize>,
}

pub async fn get_logs(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Query<LogsQuery>,
) -> ApiResult<Json<Value>> {
    let fref = resolve(&state, &caller, &name, None)?;
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let events = state
        .blocking(move |s| {
            // The function must exist for this account.
            s.registry.get_version(
                caller.id(),
                fref.name.as_str(),
                &hearth_store::VersionSelector::Latest,
            )?;
            // Without a cursor, the newest events; with one, what follows it.
            Ok(s.logs.read(
                caller.id(),
                fref.name.as_str(),
                q.after,
                limit,
                q.after.is_none(),
            )?)
        })
        .await?;
    let next = events.last().map(|e| e.seq).or(q.after);
    Ok(Json(json!({
        "Events": events.iter().map(|e| json!({
            "Seq": e.seq, "Timestamp": e.timestamp_ms, "Message": e.message,
        })).collect::<Vec<_>>(),
        "NextAfter": next,
    })))
}
