//! Reserved concurrency and GetAccountSettings.

use crate::caller::Caller;
use crate::error::ApiResult;
use crate::request::{json_body, resolve};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use bytes::Bytes;
use hearth_types::{limits, LambdaError};
use serde::Deserialize;
use serde_json::{json, Value};

/// Reserved concurrency belongs to the function, never to a version or alias.
fn unqualified(
    state: &AppState,
    caller: &Caller,
    name: &str,
) -> ApiResult<hearth_types::arn::FunctionRef> {
    let fref = resolve(state, caller, name, None)?;
    if fref.qualifier.is_some() {
        return Err(LambdaError::invalid(
            "This operation is permitted on Lambda functions only. Aliases and versions do not support this operation. Please specify either a function name or an unqualified function ARN.",
        )
        .into());
    }
    Ok(fref)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutConcurrencyInput {
    reserved_concurrent_executions: Option<i64>,
}

pub async fn put_function_concurrency(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let input: PutConcurrencyInput = json_body(&body)?;
    let fref = unqualified(&state, &caller, &name)?;
    let n = match input.reserved_concurrent_executions {
        Some(n) if n >= 0 => u32::try_from(n).unwrap_or(u32::MAX),
        Some(n) => {
            return Err(LambdaError::validation(&[format!(
                "Value '{n}' at 'reservedConcurrentExecutions' failed to satisfy constraint: Member must have value greater than or equal to 0"
            )])
            .into())
        }
        None => {
            return Err(
                LambdaError::invalid("ReservedConcurrentExecutions is a required parameter.").into(),
            )
        }
    };
    let limit = state.settings.account_concurrency;
    state
        .blocking(move |s| {
            Ok(s.registry
                .put_reserved_concurrency(caller.id(), fref.name.as_str(), n, limit)?)
        })
        .await?;
    Ok(Json(json!({ "ReservedConcurrentExecutions": n })))
}

pub async fn get_function_concurrency(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let fref = unqualified(&state, &caller, &name)?;
    let n = state
        .blocking(move |s| {
            Ok(s.registry
                .get_reserved_concurrency(caller.id(), fref.name.as_str())?)
        })
        .await?;
    Ok(Json(match n {
        Some(n) => json!({ "ReservedConcurrentExecutions": n }),
        None => json!({}),
    }))
}

pub async fn delete_function_concurrency(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let fref = unqualified(&state, &caller, &name)?;
    state
        .blocking(move |s| {
            Ok(s.registry
                .delete_reserved_concurrency(caller.id(), fref.name.as_str())?)
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn get_account_settings(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<Value>> {
    let usage = state
        .blocking(move |s| Ok(s.registry.account_usage(caller.id())?))
        .await?;
    let limit = u64::from(state.settings.account_concurrency);
    Ok(Json(json!({
        "AccountLimit": {
            "TotalCodeSize": limits::TOTAL_CODE_SIZE_LIMIT,
            "CodeSizeUnzipped": limits::UNZIPPED_MAX_BYTES,
            "CodeSizeZipped": limits::ZIP_MAX_BYTES,
            "ConcurrentExecutions": limit,
            "UnreservedConcurrentExecutions": limit.saturating_sub(usage.reserved_concurrency),
        },
        "AccountUsage": {
            "TotalCodeSize": usage.total_code_size,
            "FunctionCount": usage.function_count,
        },
    })))
}
