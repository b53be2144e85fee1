//! `GET /hearth/v1/functions/{name}/logs`: a function's recent log events
//! (what `hearth logs NAME[:QUALIFIER] [--follow]` prints). `NAME:QUALIFIER`
//! (or `?Qualifier=`) keeps the lines that version wrote: `$LATEST`, a
//! version number, or an alias's version (and its weighted additional
//! version, if it routes to one).

use crate::caller::Caller;
use crate::error::ApiResult;
use crate::request::resolve;
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use hearth_store::VersionSelector;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Debug, Default, Deserialize)]
pub struct LogsQuery {
    /// Only events after this sequence number (a cursor from a previous answer).
    after: Option<i64>,
    /// At most this many events (default 1000, at most 10000).
    limit: Option<usize>,
    #[serde(rename = "Qualifier")]
    qualifier: Option<String>,
}

pub async fn get_logs(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Query<LogsQuery>,
) -> ApiResult<Json<Value>> {
    let fref = resolve(&state, &caller, &name, q.qualifier.as_deref())?;
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    // Every line of an invocation that has answered is readable now.
    state.executor.flush_logs().await;
    let events = state
        .blocking(move |s| {
            let name = fref.name.as_str();
            // The function (and the qualifier) must exist for this account.
            let sel = VersionSelector::from_qualifier(fref.qualifier.as_deref());
            let version = s.registry.get_version(caller.id(), name, &sel)?;
            let versions: Vec<Option<String>> = match (&sel, &fref.qualifier) {
                (_, None) => vec![None],
                (VersionSelector::Alias(a), _) => {
                    let alias = s.registry.get_alias(caller.id(), name, a)?;
                    std::iter::once(alias.function_version)
                        .chain(alias.routing.into_keys())
                        .map(Some)
                        .collect()
                }
                _ => vec![Some(version.version)],
            };
            // Without a cursor, the newest events; with one, what follows it.
            let mut events = Vec::new();
            for v in &versions {
                events.extend(s.logs.read(
                    caller.id(),
                    name,
                    v.as_deref(),
                    q.after,
                    limit,
                    q.after.is_none(),
                )?);
            }
            if versions.len() > 1 {
                events.sort_by_key(|e| e.seq);
                if q.after.is_none() {
                    let extra = events.len().saturating_sub(limit);
                    events.drain(..extra);
                } else {
                    events.truncate(limit);
                }
            }
            Ok(events)
        })
        .await?;
    let next = events.last().map(|e| e.seq).or(q.after);
    Ok(Json(json!({
        "Events": events.iter().map(|e| json!({
            "Seq": e.seq, "Timestamp": e.timestamp_ms, "Version": e.version, "Message": e.message,
        })).collect::<Vec<_>>(),
        "NextAfter": next,
    })))
}
