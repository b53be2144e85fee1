//! Lambda's layer operations (`/2018-10-31/layers…`): publish, get, list
//! and delete layer versions, their permissions, and the resolution of the
//! `Layers` a function configuration names.
//!
//! A layer named in a path may be a bare name (the caller's account) or a
//! layer ARN, which may name another account of this node: such a version
//! can be read (GetLayerVersion) and used by functions only where its
//! policy grants the caller's account or everyone; every other operation on
//! another account's layer is denied, as AWS denies it.

use crate::caller::Caller;
use crate::error::{ApiError, ApiResult};
use crate::request::json_body;
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine;
use bytes::Bytes;
use hearth_store::layers::{
    LayerAccess, LayerFilter, LayerPermission, LayerVersion, NewLayerVersion, GET_LAYER_VERSION,
};
use hearth_types::function::LayerRef;
use hearth_types::{limits, validate, ErrorKind, LambdaError};
use serde::Deserialize;
use serde_json::{json, Value};

/// What a layer name in a request resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LayerName {
    account: String,
    name: String,
}

const NAME_PATTERN: &str = "(arn:(aws[a-zA-Z-]*)?:lambda:[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\\d{1}:\\d{12}:layer:[a-zA-Z0-9-_]+)|[a-zA-Z0-9-_]+";

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= limits::LAYER_NAME_MAX
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn bad_name(input: &str) -> ApiError {
    LambdaError::validation(&[format!(
        "Value '{input}' at 'layerName' failed to satisfy constraint: Member must satisfy regular expression pattern: {NAME_PATTERN}"
    )])
    .into()
}

/// Parses `arn:aws:lambda:<region>:<account>:layer:<name>[:<version>]`
/// into (region, account, name, version).
fn parse_arn(arn: &str) -> Option<(&str, &str, &str, Option<&str>)> {
    let rest = arn.strip_prefix("arn:")?;
    let mut parts = rest.splitn(7, ':');
    let partition = parts.next()?;
    let service = parts.next()?;
    let region = parts.next()?;
    let account = parts.next()?;
    let kind = parts.next()?;
    let name = parts.next()?;
    let version = parts.next();
    let ok = partition.starts_with("aws")
        && service == "lambda"
        && kind == "layer"
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && is_name(name)
        && version.is_none_or(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()));
    ok.then_some((region, account, name, version))
}

/// A layer name or layer ARN from a request path.
fn layer_name(state: &AppState, caller: &Caller, input: &str) -> ApiResult<LayerName> {
    if is_name(input) {
        return Ok(LayerName {
            account: caller.id().to_owned(),
            name: input.to_owned(),
        });
    }
    match parse_arn(input) {
        Some((region, account, name, None)) => {
            if region != state.node.region {
                return Err(hearth_store::layers::not_found().into());
            }
            Ok(LayerName {
                account: account.to_owned(),
                name: name.to_owned(),
            })
        }
        _ => Err(bad_name(input)),
    }
}

fn version_number(s: &str) -> ApiResult<u64> {
    s.parse::<u64>()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| {
            LambdaError::validation(&[format!(
                "Value '{s}' at 'versionNumber' failed to satisfy constraint: Member must have value greater than or equal to 1"
            )])
            .into()
        })
}

/// Who the caller is, as AWS names it in an access-denied message.
fn principal_arn(caller: &Caller) -> String {
    caller.session.as_ref().map_or_else(
        || format!("arn:aws:iam::{}:root", caller.id()),
        crate::sts::Session::assumed_role_arn,
    )
}

fn denied(caller: &Caller, action: &str, resource: &str) -> ApiError {
    LambdaError::new(
        ErrorKind::AccessDenied,
        format!(
            "User: {} is not authorized to perform: {action} on resource: {resource} because no resource-based policy allows the {action} action",
            principal_arn(caller)
        ),
    )
    .into()
}

/// Refuses an operation only the layer's owner may do.
fn owner_only(
    state: &AppState,
    caller: &Caller,
    l: &LayerName,
    action: &str,
    version: Option<u64>,
) -> ApiResult<()> {
    if l.account == caller.id() {
        return Ok(());
    }
    let mut resource = hearth_store::layers::layer_arn(&state.node, &l.account, &l.name);
    if let Some(v) = version {
        resource = format!("{resource}:{v}");
    }
    Err(denied(caller, action, &resource))
}

fn created_date(ms: i64) -> String {
    crate::shapes::lambda_timestamp(ms)
}

/// GetLayerVersion's (and PublishLayerVersion's) answer.
fn version_shape(state: &AppState, headers: &HeaderMap, v: &LayerVersion) -> Value {
    let mut out = json!({
        "Content": {
            "Location": crate::functions::code_location(state, headers, &v.account_id, &v.code.sha256_hex),
            "CodeSha256": v.code.code_sha256(),
            "CodeSize": v.code.size,
        },
        "LayerArn": v.layer_arn(&state.node),
        "LayerVersionArn": v.arn(&state.node),
        "Description": v.description,
        "CreatedDate": created_date(v.created_ms),
        "Version": v.version,
    });
    decorate(&mut out, v);
    out
}

/// A `LayerVersionsListItem`.
fn list_item(state: &AppState, v: &LayerVersion) -> Value {
    let mut out = json!({
        "LayerVersionArn": v.arn(&state.node),
        "Version": v.version,
        "Description": v.description,
        "CreatedDate": created_date(v.created_ms),
    });
    decorate(&mut out, v);
    out
}

fn decorate(out: &mut Value, v: &LayerVersion) {
    if !v.compatible_runtimes.is_empty() {
        out["CompatibleRuntimes"] = json!(v.compatible_runtimes);
    }
    if !v.compatible_architectures.is_empty() {
        out["CompatibleArchitectures"] = json!(v.compatible_architectures);
    }
    if let Some(l) = &v.license_info {
        out["LicenseInfo"] = json!(l);
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContentInput {
    zip_file: Option<String>,
    s3_bucket: Option<String>,
    s3_key: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PublishInput {
    description: Option<String>,
    content: Option<ContentInput>,
    compatible_runtimes: Option<Vec<String>>,
    compatible_architectures: Option<Vec<String>>,
    license_info: Option<String>,
}

/// Decodes `Content.ZipFile`, refusing S3 clearly.
fn content_zip(content: Option<ContentInput>) -> ApiResult<Vec<u8>> {
    let Some(content) = content else {
        return Err(LambdaError::validation(&[
            "Value null at 'content' failed to satisfy constraint: Member must not be null"
                .to_owned(),
        ])
        .into());
    };
    if content.s3_bucket.is_some() || content.s3_key.is_some() {
        return Err(LambdaError::invalid(
            "Hearth takes layer content as Content.ZipFile in the request; S3 locations are not supported.",
        )
        .into());
    }
    let Some(b64) = content.zip_file else {
        return Err(LambdaError::invalid("Please provide a source for layer content.").into());
    };
    if b64.len() as u64 > limits::ZIP_MAX_BYTES.div_ceil(3) * 4 + 4 {
        return Err(LambdaError::new(
            ErrorKind::RequestEntityTooLarge,
            format!(
                "Zipped size must be smaller than {} bytes",
                limits::ZIP_MAX_BYTES
            ),
        )
        .into());
    }
    base64::engine::general_purpose::STANDARD
        .decode(b64.as_bytes())
        .map_err(|e| {
            LambdaError::new(
                ErrorKind::InvalidRequestContent,
                format!("Could not decode Content.ZipFile: it is not valid base64 ({e})."),
            )
            .into()
        })
}

fn check_runtimes(runtimes: &[String]) -> ApiResult<()> {
    let bad = runtimes.len() > 15
        || runtimes.iter().any(|r| {
            r.is_empty()
                || r.len() > 32
                || !r
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.')
        });
    if bad {
        return Err(LambdaError::validation(&[format!(
            "Value '[{}]' at 'compatibleRuntimes' failed to satisfy constraint: Member must have length less than or equal to 15, and each member must be a runtime identifier",
            runtimes.join(", ")
        )])
        .into());
    }
    Ok(())
}

fn check_architectures(archs: &[String]) -> ApiResult<()> {
    if archs.len() > 2 || archs.iter().any(|a| a != "x86_64" && a != "arm64") {
        return Err(LambdaError::validation(&[format!(
            "Value '[{}]' at 'compatibleArchitectures' failed to satisfy constraint: Member must have length less than or equal to 2, and each member must satisfy enum value set: [x86_64, arm64]",
            archs.join(", ")
        )])
        .into());
    }
    Ok(())
}

fn now_ms() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    (now.unix_timestamp_nanos() / 1_000_000) as i64
}

/// `POST /2018-10-31/layers/{name}/versions`.
pub async fn publish_layer_version(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let input: PublishInput = json_body(&body)?;
    let l = layer_name(&state, &caller, &name)?;
    owner_only(&state, &caller, &l, "lambda:PublishLayerVersion", None)?;
    let v = state
        .blocking(move |s| {
            let description = input.description.unwrap_or_default();
            validate::description(&description)?;
            if let Some(li) = &input.license_info {
                if li.len() > 512 {
                    return Err(LambdaError::validation(&[
                        "Value at 'licenseInfo' failed to satisfy constraint: Member must have length less than or equal to 512".to_owned(),
                    ])
                    .into());
                }
            }
            let runtimes = input.compatible_runtimes.unwrap_or_default();
            check_runtimes(&runtimes)?;
            let archs = input.compatible_architectures.unwrap_or_default();
            check_architectures(&archs)?;
            let zip = content_zip(input.content)?;
            let code = s.code.stage(&zip)?.code;
            Ok(s.registry.publish_layer_version(
                caller.id(),
                NewLayerVersion {
                    name: l.name,
                    description,
                    license_info: input.license_info,
                    compatible_runtimes: runtimes,
                    compatible_architectures: archs,
                    code,
                },
                now_ms(),
            )?)
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(version_shape(&state, &headers, &v)),
    )
        .into_response())
}

/// A version the caller may read: the owner's, or one granted to it.
fn readable(
    state: &AppState,
    caller: &Caller,
    l: &LayerName,
    version: u64,
) -> ApiResult<LayerVersion> {
    match state
        .registry
        .layer_access(&l.account, &l.name, version, caller.id())?
    {
        LayerAccess::Granted(v) => Ok(v),
        LayerAccess::Missing => Err(hearth_store::layers::not_found().into()),
        LayerAccess::Denied => Err(denied(
            caller,
            GET_LAYER_VERSION,
            &format!(
                "{}:{version}",
                hearth_store::layers::layer_arn(&state.node, &l.account, &l.name)
            ),
        )),
    }
}

/// `GET /2018-10-31/layers/{name}/versions/{n}`.
pub async fn get_layer_version(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((name, number)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let l = layer_name(&state, &caller, &name)?;
    let version = version_number(&number)?;
    let v = state
        .blocking(move |s| readable(s, &caller, &l, version))
        .await?;
    Ok(Json(version_shape(&state, &headers, &v)))
}

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(rename = "find")]
    find: Option<String>,
    #[serde(rename = "Arn")]
    arn: Option<String>,
    #[serde(rename = "CompatibleRuntime")]
    compatible_runtime: Option<String>,
    #[serde(rename = "CompatibleArchitecture")]
    compatible_architecture: Option<String>,
    #[serde(rename = "Marker")]
    marker: Option<String>,
    #[serde(rename = "MaxItems")]
    max_items: Option<String>,
}

impl ListQuery {
    fn filter(&self) -> ApiResult<LayerFilter> {
        if let Some(a) = &self.compatible_architecture {
            check_architectures(std::slice::from_ref(a))?;
        }
        if let Some(r) = &self.compatible_runtime {
            check_runtimes(std::slice::from_ref(r))?;
        }
        Ok(LayerFilter {
            runtime: self.compatible_runtime.clone(),
            architecture: self.compatible_architecture.clone(),
        })
    }

    /// `MaxItems`: 1..=50, default 50.
    fn max_items(&self) -> ApiResult<usize> {
        crate::request::PageQuery {
            marker: None,
            max_items: self.max_items.clone(),
            function_version: None,
        }
        .max_items()
    }
}

/// `GET /2018-10-31/layers`: ListLayers, or GetLayerVersionByArn with
/// `?find=LayerVersion&Arn=…`.
pub async fn list_layers(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<ListQuery>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    if q.find.as_deref() == Some("LayerVersion") {
        let arn = q.arn.clone().unwrap_or_default();
        let Some((region, account, name, Some(version))) = parse_arn(&arn) else {
            return Err(LambdaError::validation(&[format!(
                "Value '{arn}' at 'arn' failed to satisfy constraint: Member must satisfy regular expression pattern: arn:(aws[a-zA-Z-]*)?:lambda:[a-z]{{2}}((-gov)|(-iso([a-z]?)))?-[a-z]+-\\d{{1}}:\\d{{12}}:layer:[a-zA-Z0-9-_]+:[0-9]+"
            )])
            .into());
        };
        if region != state.node.region {
            return Err(hearth_store::layers::not_found().into());
        }
        let l = LayerName {
            account: account.to_owned(),
            name: name.to_owned(),
        };
        let version = version_number(version)?;
        let v = state
            .blocking(move |s| readable(s, &caller, &l, version))
            .await?;
        return Ok(Json(version_shape(&state, &headers, &v)));
    }
    let filter = q.filter()?;
    let max = q.max_items()?;
    let page = state
        .blocking(move |s| {
            Ok(s.registry
                .list_layers(&filter, caller.id(), q.marker.as_deref(), max)?)
        })
        .await?;
    let layers: Vec<Value> = page
        .items
        .iter()
        .map(|v| {
            json!({
                "LayerName": v.name,
                "LayerArn": v.layer_arn(&state.node),
                "LatestMatchingVersion": list_item(&state, v),
            })
        })
        .collect();
    let mut out = json!({ "Layers": layers });
    if let Some(m) = page.next_marker {
        out["NextMarker"] = json!(m);
    }
    Ok(Json(out))
}

/// `GET /2018-10-31/layers/{name}/versions`.
pub async fn list_layer_versions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let l = layer_name(&state, &caller, &name)?;
    owner_only(&state, &caller, &l, "lambda:ListLayerVersions", None)?;
    let filter = q.filter()?;
    let max = q.max_items()?;
    let page = state
        .blocking(move |s| {
            Ok(s.registry.list_layer_versions(
                &l.account,
                &l.name,
                &filter,
                q.marker.as_deref(),
                max,
            )?)
        })
        .await?;
    let versions: Vec<Value> = page.items.iter().map(|v| list_item(&state, v)).collect();
    let mut out = json!({ "LayerVersions": versions });
    if let Some(m) = page.next_marker {
        out["NextMarker"] = json!(m);
    }
    Ok(Json(out))
}

/// `DELETE /2018-10-31/layers/{name}/versions/{n}`: succeeds whether or
/// not the version exists, as on AWS. Functions that name it keep it.
pub async fn delete_layer_version(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((name, number)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let l = layer_name(&state, &caller, &name)?;
    let version = version_number(&number)?;
    owner_only(
        &state,
        &caller,
        &l,
        "lambda:DeleteLayerVersion",
        Some(version),
    )?;
    state
        .blocking(move |s| {
            s.registry
                .delete_layer_version(&l.account, &l.name, version)?;
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AddPermissionInput {
    statement_id: Option<String>,
    action: Option<String>,
    principal: Option<String>,
    organization_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RevisionQuery {
    #[serde(rename = "RevisionId")]
    revision_id: Option<String>,
}

/// A statement as AWS prints it in a layer version's policy.
fn statement(state: &AppState, l: &LayerName, version: u64, p: &LayerPermission) -> Value {
    let principal = if p.principal == "*" {
        json!("*")
    } else {
        json!({ "AWS": format!("arn:aws:iam::{}:root", p.principal) })
    };
    json!({
        "Sid": p.statement_id,
        "Effect": "Allow",
        "Principal": principal,
        "Action": p.action,
        "Resource": format!(
            "{}:{version}",
            hearth_store::layers::layer_arn(&state.node, &l.account, &l.name)
        ),
    })
}

fn check_statement_id(sid: &str) -> ApiResult<()> {
    let ok = !sid.is_empty()
        && sid.len() <= 100
        && sid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(LambdaError::validation(&[format!(
            "Value '{sid}' at 'statementId' failed to satisfy constraint: Member must satisfy regular expression pattern: ([a-zA-Z0-9-_]+)"
        )])
        .into())
    }
}

/// `POST /2018-10-31/layers/{name}/versions/{n}/policy`.
pub async fn add_layer_version_permission(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((name, number)): Path<(String, String)>,
    Query(rq): Query<RevisionQuery>,
    body: Bytes,
) -> ApiResult<Response> {
    let input: AddPermissionInput = json_body(&body)?;
    let l = layer_name(&state, &caller, &name)?;
    let version = version_number(&number)?;
    owner_only(
        &state,
        &caller,
        &l,
        "lambda:AddLayerVersionPermission",
        Some(version),
    )?;
    let sid = input.statement_id.unwrap_or_default();
    check_statement_id(&sid)?;
    let action = input.action.unwrap_or_default();
    if action != GET_LAYER_VERSION {
        return Err(LambdaError::validation(&[format!(
            "Value '{action}' at 'action' failed to satisfy constraint: Member must satisfy regular expression pattern: lambda:GetLayerVersion"
        )])
        .into());
    }
    if input.organization_id.is_some() {
        return Err(LambdaError::invalid(
            "Hearth has no AWS Organizations: grant an account id or '*' instead of an OrganizationId.",
        )
        .into());
    }
    let given = input.principal.unwrap_or_default();
    let principal = if given == "*" {
        given.clone()
    } else {
        let id = given
            .strip_prefix("arn:aws:iam::")
            .and_then(|r| r.strip_suffix(":root"))
            .unwrap_or(&given);
        if id.len() != 12 || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(LambdaError::validation(&[format!(
                "Value '{given}' at 'principal' failed to satisfy constraint: Member must satisfy regular expression pattern: \\d{{12}}|\\*|arn:(aws[a-zA-Z-]*):iam::\\d{{12}}:root"
            )])
            .into());
        }
        id.to_owned()
    };
    let permission = LayerPermission {
        statement_id: sid,
        action,
        principal,
    };
    let (revision, shown) = state
        .blocking(move |s| {
            let revision = s.registry.add_layer_permission(
                &l.account,
                &l.name,
                version,
                &permission,
                rq.revision_id.as_deref(),
            )?;
            Ok((revision, statement(s, &l, version, &permission)))
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "Statement": shown.to_string(), "RevisionId": revision })),
    )
        .into_response())
}

/// `DELETE /2018-10-31/layers/{name}/versions/{n}/policy/{sid}`.
pub async fn remove_layer_version_permission(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((name, number, sid)): Path<(String, String, String)>,
    Query(rq): Query<RevisionQuery>,
) -> ApiResult<StatusCode> {
    let l = layer_name(&state, &caller, &name)?;
    let version = version_number(&number)?;
    owner_only(
        &state,
        &caller,
        &l,
        "lambda:RemoveLayerVersionPermission",
        Some(version),
    )?;
    check_statement_id(&sid)?;
    state
        .blocking(move |s| {
            Ok(s.registry.remove_layer_permission(
                &l.account,
                &l.name,
                version,
                &sid,
                rq.revision_id.as_deref(),
            )?)
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /2018-10-31/layers/{name}/versions/{n}/policy`.
pub async fn get_layer_version_policy(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((name, number)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let l = layer_name(&state, &caller, &name)?;
    let version = version_number(&number)?;
    owner_only(
        &state,
        &caller,
        &l,
        "lambda:GetLayerVersionPolicy",
        Some(version),
    )?;
    let (policy, l) = state
        .blocking(move |s| Ok((s.registry.layer_policy(&l.account, &l.name, version)?, l)))
        .await?;
    if policy.statements.is_empty() {
        return Err(LambdaError::new(
            ErrorKind::ResourceNotFound,
            "No policy is associated with the given resource.",
        )
        .into());
    }
    let statements: Vec<Value> = policy
        .statements
        .iter()
        .map(|p| statement(&state, &l, version, p))
        .collect();
    let doc = json!({
        "Version": "2012-10-17",
        "Id": "default",
        "Statement": statements,
    });
    Ok(Json(json!({
        "Policy": doc.to_string(),
        "RevisionId": policy.revision_id,
    })))
}

/// Resolves the `Layers` of CreateFunction or UpdateFunctionConfiguration
/// to what the function will keep, checked as Lambda checks them: at most
/// five, each an existing version the caller may use, no layer twice, and
/// the function's unzipped code (`code_unzipped`) plus every layer's within
/// 250 MB.
pub(crate) fn resolve_function_layers(
    state: &AppState,
    caller: &Caller,
    arns: &[String],
    code_unzipped: u64,
) -> ApiResult<Vec<LayerRef>> {
    if arns.len() > limits::FUNCTION_LAYERS_MAX {
        return Err(LambdaError::invalid(format!(
            "Cannot reference more than {} layers.",
            limits::FUNCTION_LAYERS_MAX
        ))
        .into());
    }
    let mut out: Vec<LayerRef> = Vec::with_capacity(arns.len());
    let mut seen: Vec<String> = Vec::new();
    for arn in arns {
        let Some((region, account, name, Some(number))) = parse_arn(arn) else {
            return Err(LambdaError::validation(&[format!(
                "Value '[{}]' at 'layers' failed to satisfy constraint: Member must satisfy constraint: [Member must have length less than or equal to 140, Member must have length greater than or equal to 1, Member must satisfy regular expression pattern: (arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\\d{{12}}:layer:[a-zA-Z0-9-_]+:[0-9]+)|(arn:[a-zA-Z0-9-]+:lambda:::awslayer:[a-zA-Z0-9-_]+), Member must not be null]",
                arns.join(", ")
            )])
            .into());
        };
        let missing = || -> ApiError {
            LambdaError::invalid(format!("Layer version {arn} does not exist.")).into()
        };
        let version = number.parse::<u64>().map_err(|_| missing())?;
        if region != state.node.region {
            return Err(missing());
        }
        let layer = hearth_store::layers::layer_arn(&state.node, account, name);
        if seen.contains(&layer) {
            return Err(LambdaError::invalid(format!(
                "Two different versions of the same layer are not allowed: {layer}."
            ))
            .into());
        }
        seen.push(layer);
        let l = LayerName {
            account: account.to_owned(),
            name: name.to_owned(),
        };
        let v = match state
            .registry
            .layer_access(&l.account, &l.name, version, caller.id())?
        {
            LayerAccess::Granted(v) => v,
            LayerAccess::Missing => return Err(missing()),
            LayerAccess::Denied => return Err(denied(caller, GET_LAYER_VERSION, arn)),
        };
        out.push(LayerRef {
            arn: v.arn(&state.node),
            code: v.code,
        });
    }
    check_total_size(code_unzipped, &out)?;
    Ok(out)
}

/// The function's unzipped code plus its layers must stay within 250 MB.
pub(crate) fn check_total_size(code_unzipped: u64, layers: &[LayerRef]) -> ApiResult<()> {
    let total = layers
        .iter()
        .fold(code_unzipped, |t, l| t.saturating_add(l.code.unzipped_size));
    if total > limits::UNZIPPED_WITH_LAYERS_MAX_BYTES {
        return Err(LambdaError::invalid(format!(
            "Function code combined with layers exceeds the maximum allowed size of {} bytes. The actual size is {total} bytes.",
            limits::UNZIPPED_WITH_LAYERS_MAX_BYTES
        ))
        .into());
    }
    Ok(())
}

/// `Layers` of a `FunctionConfiguration` (absent without layers, as AWS).
pub fn layers_shape(layers: &[LayerRef]) -> Option<Value> {
    (!layers.is_empty()).then(|| {
        Value::Array(
            layers
                .iter()
                .map(|l| json!({ "Arn": l.arn, "CodeSize": l.code.size }))
                .collect(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_arns_parse() {
        assert_eq!(
            parse_arn("arn:aws:lambda:us-east-1:123456789012:layer:my-layer_1:7"),
            Some(("us-east-1", "123456789012", "my-layer_1", Some("7")))
        );
        assert_eq!(
            parse_arn("arn:aws:lambda:us-east-1:123456789012:layer:x"),
            Some(("us-east-1", "123456789012", "x", None))
        );
        for bad in [
            "arn:aws:lambda:us-east-1:123456789012:function:x:1",
            "arn:aws:lambda:us-east-1:12345:layer:x:1",
            "arn:aws:lambda:us-east-1:123456789012:layer:x:",
            "arn:aws:lambda:us-east-1:123456789012:layer:x:1:2",
            "arn:aws:lambda:us-east-1:123456789012:layer:a b:1",
        ] {
            assert_eq!(parse_arn(bad), None, "{bad}");
        }
    }

    #[test]
    fn total_size_counts_code_and_layers() {
        let layer = |n: u64| LayerRef {
            arn: "a".into(),
            code: hearth_types::function::CodeRef {
                sha256_hex: String::new(),
                size: 1,
                unzipped_size: n,
            },
        };
        let max = limits::UNZIPPED_WITH_LAYERS_MAX_BYTES;
        check_total_size(max - 10, &[layer(10)]).unwrap();
        let e = check_total_size(max - 10, &[layer(5), layer(6)]).unwrap_err();
        assert!(
            e.0.message
                .ends_with(&format!("The actual size is {} bytes.", max + 1)),
            "{}",
            e.0.message
        );
    }
}
