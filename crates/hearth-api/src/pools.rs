//! Observability of capacity: `GET /metrics` (Prometheus text format) and
//! `GET /hearth/v1/pools` (admins: every pool's size, target and forecast).

use crate::caller::Caller;
use crate::error::ApiResult;
use crate::state::AppState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::Value;

pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.executor.metrics().render(),
    )
        .into_response()
}

pub async fn pools(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<Value>> {
    crate::admin::require_admin(&caller, "see the node's pools")?;
    Ok(Json(state.executor.pools_snapshot()))
}
