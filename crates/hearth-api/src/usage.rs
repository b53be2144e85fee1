//! `GET /hearth/v1/usage?account=…&function=…&since=…`: usage totals per
//! account and function (invocations, µs of guest CPU and wall time,
//! GB-µs). An account sees only its own; an admin sees every account's, or
//! one account's with `account`.

use crate::caller::Caller;
use crate::error::ApiResult;
use crate::state::AppState;
use axum::extract::{Query, State};
use axum::{Extension, Json};
use hearth_types::{ErrorKind, LambdaError};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Debug, Default, Deserialize)]
pub struct UsageParams {
    /// One account (admins; others may name only their own).
    account: Option<String>,
    /// One function.
    function: Option<String>,
    /// Milliseconds since the epoch; totals count from the start of its
    /// minute (default: everything).
    since: Option<i64>,
}

pub async fn get_usage(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<UsageParams>,
) -> ApiResult<Json<Value>> {
    let account = match (&q.account, caller.account.admin) {
        (Some(a), true) => Some(a.clone()),
        (None, true) => None,
        (Some(a), false) if a != caller.id() => {
            return Err(LambdaError::new(
                ErrorKind::AccessDenied,
                format!(
                    "Account {} may see only its own usage, not account {a}'s.",
                    caller.id()
                ),
            )
            .into())
        }
        (_, false) => Some(caller.id().to_owned()),
    };
    if q.since.is_some_and(|s| s < 0) {
        return Err(
            LambdaError::invalid("since must be milliseconds since the epoch, 0 or more.").into(),
        );
    }
    let since_ms = q.since.unwrap_or(0);
    let function = q.function.clone();
    let totals = state
        .blocking(move |s| {
            Ok(s.usage.totals(&hearth_store::UsageQuery {
                account_id: account.as_deref(),
                function_name: function.as_deref(),
                since_ms,
            })?)
        })
        .await?;
    Ok(Json(json!({
        "Since": since_ms,
        "Usage": totals,
        "BatchWindowMs": hearth_exec::usage::WINDOW.as_millis() as u64,
    })))
}
