//! Lambda's alias operations.

use crate::caller::Caller;
use crate::error::ApiResult;
use crate::request::{json_body, resolve, PageQuery};
use crate::shapes::alias_configuration;
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use hearth_store::AliasSpec;
use hearth_types::{validate, LambdaError};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RoutingInput {
    additional_version_weights: Option<BTreeMap<String, f64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AliasInput {
    name: Option<String>,
    function_version: Option<String>,
    description: Option<String>,
    routing_config: Option<RoutingInput>,
    revision_id: Option<String>,
}

impl AliasInput {
    fn spec(&self) -> ApiResult<AliasSpec> {
        if let Some(d) = &self.description {
            validate::description(d)?;
        }
        Ok(AliasSpec {
            function_version: self.function_version.clone(),
            description: self.description.clone(),
            routing: self
                .routing_config
                .as_ref()
                .map(|r| r.additional_version_weights.clone().unwrap_or_default()),
        })
    }
}

pub async fn create_alias(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(function): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let input: AliasInput = json_body(&body)?;
    let fref = resolve(&state, &caller, &function, None)?;
    let alias_name = input.name.clone().unwrap_or_default();
    validate::alias_name(&alias_name)?;
    if input.function_version.is_none() {
        return Err(LambdaError::invalid("FunctionVersion is a required parameter.").into());
    }
    let spec = input.spec()?;
    let a = state
        .blocking(move |s| {
            Ok(s.registry
                .create_alias(caller.id(), fref.name.as_str(), &alias_name, &spec)?)
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(alias_configuration(&state.node, &a)),
    )
        .into_response())
}

pub async fn get_alias(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((function, alias)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let fref = resolve(&state, &caller, &function, None)?;
    let a = state
        .blocking(move |s| {
            Ok(s.registry
                .get_alias(caller.id(), fref.name.as_str(), &alias)?)
        })
        .await?;
    Ok(Json(alias_configuration(&state.node, &a)))
}

pub async fn update_alias(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((function, alias)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let input: AliasInput = json_body(&body)?;
    let fref = resolve(&state, &caller, &function, None)?;
    let spec = input.spec()?;
    let revision = input.revision_id.clone();
    let a = state
        .blocking(move |s| {
            let a = s.registry.update_alias(
                caller.id(),
                fref.name.as_str(),
                &alias,
                &spec,
                revision.as_deref(),
            )?;
            // A re-pointed alias re-provisions its config for the new version.
            s.executor.reload_capacity();
            Ok(a)
        })
        .await?;
    Ok(Json(alias_configuration(&state.node, &a)))
}

pub async fn delete_alias(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((function, alias)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let fref = resolve(&state, &caller, &function, None)?;
    state
        .blocking(move |s| {
            s.registry
                .delete_alias(caller.id(), fref.name.as_str(), &alias)?;
            // An alias's provisioned config goes with it.
            s.executor.reload_capacity();
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_aliases(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(function): Path<String>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Value>> {
    let fref = resolve(&state, &caller, &function, None)?;
    let max = q.max_items()?;
    let page = state
        .blocking(move |s| {
            Ok(s.registry.list_aliases(
                caller.id(),
                fref.name.as_str(),
                q.function_version.as_deref(),
                q.marker.as_deref(),
                max,
            )?)
        })
        .await?;
    let aliases: Vec<Value> = page
        .items
        .iter()
        .map(|a| alias_configuration(&state.node, a))
        .collect();
    let mut out = json!({ "Aliases": aliases });
    if let Some(m) = page.next_marker {
        out["NextMarker"] = json!(m);
    }
    Ok(Json(out))
}
