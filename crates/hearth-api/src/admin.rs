//! Hearth's own API under `/hearth/v1/`: health, accounts (admins only),
//! and the runtime catalog.

use crate::caller::Caller;
use crate::error::ApiResult;
use crate::request::json_body;
use crate::shapes::lambda_timestamp;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use hearth_types::{ErrorKind, LambdaError};
use serde::Deserialize;
use serde_json::{json, Value};

pub async fn health() -> Json<Value> {
    Json(json!({"Status": "ok"}))
}

/// Refuses a caller that is not an admin account; `what` completes
/// "only admins may …".
pub(crate) fn require_admin(caller: &Caller, what: &str) -> ApiResult<()> {
    if caller.account.admin {
        Ok(())
    } else {
        Err(LambdaError::new(
            ErrorKind::AccessDenied,
            format!(
                "Account {} is not an admin account: only admins may {what}.",
                caller.id()
            ),
        )
        .into())
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateAccountInput {
    name: Option<String>,
    #[serde(default)]
    admin: bool,
}

pub async fn create_account(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult<Response> {
    require_admin(&caller, "manage accounts")?;
    let input: CreateAccountInput = json_body(&body)?;
    let name = input.name.unwrap_or_default();
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        return Err(LambdaError::invalid(format!(
            "Account name '{name}' is invalid: use 1-64 of letters, digits, '-' and '_'."
        ))
        .into());
    }
    let (account, key) = state
        .blocking(move |s| Ok(s.registry.create_account(&name, input.admin)?))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "AccountId": account.id,
            "Name": account.name,
            "Admin": account.admin,
            "AccessKeyId": key.access_key_id,
            "SecretAccessKey": key.secret_access_key,
        })),
    )
        .into_response())
}

pub async fn list_accounts(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<Value>> {
    require_admin(&caller, "manage accounts")?;
    let accounts = state
        .blocking(move |s| Ok(s.registry.list_accounts()?))
        .await?;
    let list: Vec<Value> = accounts
        .iter()
        .map(|a| {
            json!({
                "AccountId": a.id,
                "Name": a.name,
                "Admin": a.admin,
                "Created": lambda_timestamp(a.created_ms),
            })
        })
        .collect();
    Ok(Json(json!({ "Accounts": list })))
}

pub async fn delete_account(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    require_admin(&caller, "manage accounts")?;
    if id == caller.id() {
        return Err(LambdaError::invalid("An account cannot delete itself.").into());
    }
    let deleted = state
        .blocking(move |s| {
            let deleted = s.registry.delete_account(&id)?;
            s.executor.reload_capacity();
            Ok(deleted)
        })
        .await?;
    if deleted {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(LambdaError::not_found("Account not found.").into())
    }
}

pub async fn list_runtimes(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "Runtimes": state.runtimes.entries() }))
}
