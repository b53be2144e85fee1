//! Lambda's function operations: Create/Get/List/Update/Delete, versions,
//! and the code download URL of GetFunction.

use crate::caller::Caller;
use crate::error::{ApiError, ApiResult};
use crate::request::{json_body, resolve, PageQuery, QualifierQuery};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine;
use bytes::Bytes;
use hearth_store::iam::RoleArn;
use hearth_store::{ConfigPatch, NewFunction, VersionSelector};
use hearth_types::arn::validate_new_function_name;
use hearth_types::function::{CodeRef, FunctionConfig};
use hearth_types::runtime::Runtime;
use hearth_types::{limits, validate, ErrorKind, LambdaError};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CodeInput {
    zip_file: Option<String>,
    s3_bucket: Option<String>,
    image_uri: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EnvironmentInput {
    variables: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EphemeralStorageInput {
    size: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateFunctionInput {
    function_name: Option<String>,
    runtime: Option<String>,
    role: Option<String>,
    handler: Option<String>,
    code: Option<CodeInput>,
    description: Option<String>,
    timeout: Option<i64>,
    memory_size: Option<i64>,
    #[serde(default)]
    publish: bool,
    environment: Option<EnvironmentInput>,
    tags: Option<BTreeMap<String, String>>,
    architectures: Option<Vec<String>>,
    ephemeral_storage: Option<EphemeralStorageInput>,
    package_type: Option<String>,
    layers: Option<Vec<String>>,
    dead_letter_config: Option<DeadLetterConfigInput>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeadLetterConfigInput {
    target_arn: Option<String>,
}

/// A `DeadLetterConfig`'s target: `None` (no change) when absent,
/// `Some(None)` (remove) when empty, else an SQS queue of the caller's
/// account on this node (Hearth delivers to no SNS topic).
fn dead_letter_target(
    s: &AppState,
    caller: &Caller,
    input: Option<&DeadLetterConfigInput>,
) -> ApiResult<Option<Option<String>>> {
    let Some(arn) = input.and_then(|d| d.target_arn.as_deref()) else {
        return Ok(None);
    };
    if arn.is_empty() {
        return Ok(Some(None));
    }
    let ok = hearth_exec::sqs::parse_queue_arn(arn).is_some_and(|(region, account, queue)| {
        region == s.node.region
            && account == caller.id()
            && s.sqs.store().queue(&account, &queue).is_ok()
    });
    if !ok {
        return Err(LambdaError::invalid(format!(
            "The provided target arn {arn} is invalid: it must be an existing SQS queue of the function's account on this node."
        ))
        .into());
    }
    Ok(Some(Some(arn.to_owned())))
}

fn u32_in_range(v: i64, check: fn(u32) -> Result<(), LambdaError>) -> ApiResult<u32> {
    let clamped = u32::try_from(v).unwrap_or(if v < 0 { 0 } else { u32::MAX });
    check(clamped)?;
    Ok(clamped)
}

fn architectures(a: Option<Vec<String>>) -> ApiResult<Vec<String>> {
    let a = a.unwrap_or_else(|| vec!["x86_64".to_owned()]);
    if a.len() != 1 {
        return Err(LambdaError::validation(&[format!(
            "Value '[{}]' at 'architectures' failed to satisfy constraint: Member must have length less than or equal to 1",
            a.join(", ")
        )])
        .into());
    }
    if a[0] != std::env::consts::ARCH && !(a[0] == "arm64" && std::env::consts::ARCH == "aarch64") {
        return Err(LambdaError::invalid(format!(
            "Architecture {} is not supported by this Hearth node, which runs {}.",
            a[0],
            std::env::consts::ARCH
        ))
        .into());
    }
    Ok(a)
}

fn ephemeral_storage(e: Option<EphemeralStorageInput>) -> ApiResult<u32> {
    let size = e.and_then(|e| e.size).unwrap_or(512);
    if !(512..=10240).contains(&size) {
        return Err(LambdaError::validation(&[format!(
            "Value '{size}' at 'ephemeralStorage.size' failed to satisfy constraint: Member must have value between 512 and 10240"
        )])
        .into());
    }
    Ok(size as u32)
}

fn parse_runtime(s: &str) -> ApiResult<Runtime> {
    Runtime::parse(s).ok_or_else(|| LambdaError::invalid(Runtime::unknown_message(s)).into())
}

/// Decodes `Code.ZipFile`, refusing every other code source clearly.
fn zip_bytes(code: Option<CodeInput>) -> ApiResult<Vec<u8>> {
    let code = code.unwrap_or_default();
    if code.image_uri.is_some() {
        return Err(LambdaError::invalid(
            "Hearth runs Zip packages only; container images (ImageUri) are not supported.",
        )
        .into());
    }
    if code.s3_bucket.is_some() {
        return Err(LambdaError::invalid(
            "Hearth takes code as Code.ZipFile in the request; S3 locations are not supported.",
        )
        .into());
    }
    let Some(b64) = code.zip_file else {
        return Err(LambdaError::invalid("Please provide a source for function code.").into());
    };
    // Base64 of 50 MB is about 66.7 MB: refuse larger input before decoding it.
    if b64.len() as u64 > limits::ZIP_MAX_BYTES.div_ceil(3) * 4 + 4 {
        return Err(zip_too_large());
    }
    base64::engine::general_purpose::STANDARD
        .decode(b64.as_bytes())
        .map_err(|e| {
            ApiError(LambdaError::new(
                ErrorKind::InvalidRequestContent,
                format!("Could not decode Code.ZipFile: it is not valid base64 ({e})."),
            ))
        })
}

fn zip_too_large() -> ApiError {
    ApiError(LambdaError::new(
        ErrorKind::RequestEntityTooLarge,
        format!(
            "Zipped size must be smaller than {} bytes",
            limits::ZIP_MAX_BYTES
        ),
    ))
}

/// Checks that the handler (or `bootstrap`) is in the code, then stages it.
fn stage_code(
    state: &AppState,
    zip: &[u8],
    runtime: &Runtime,
    handler: &str,
) -> ApiResult<CodeRef> {
    Ok(state.code.stage_for(zip, runtime, handler)?.code)
}

/// Checks everything in a complete configuration, including that its
/// runtime has an interpreter here.
fn validate_config(state: &AppState, c: &FunctionConfig) -> ApiResult<()> {
    validate::role(&c.role)?;
    validate::handler(&c.handler)?;
    validate::description(&c.description)?;
    validate::memory_size(c.memory_size)?;
    validate::timeout(c.timeout)?;
    if let Some(env) = &c.environment {
        validate::environment(env)?;
    }
    state.runtimes.interpreter(&c.runtime)?;
    Ok(())
}

/// Where the node checks roles for the caller's account, the role must
/// exist in that account (at the path its ARN names). A role of another
/// account, or none at all, fails as on AWS. Hearth evaluates no policy, so
/// the role's trust policy is not read.
fn check_role(state: &AppState, caller: &Caller, role: &str) -> ApiResult<()> {
    if !state.settings.function_roles.applies_to(caller.id()) {
        return Ok(());
    }
    let exists = match RoleArn::parse(role).filter(|r| r.account_id == caller.id()) {
        Some(arn) => state
            .registry
            .find_role(caller.id(), &arn.name)?
            .is_some_and(|found| found.path == arn.path),
        None => false,
    };
    if exists {
        Ok(())
    } else {
        Err(
            LambdaError::invalid("The role defined for the function cannot be assumed by Lambda.")
                .into(),
        )
    }
}

fn now_ms() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    (now.unix_timestamp_nanos() / 1_000_000) as i64
}

pub async fn create_function(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult<Response> {
    let input: CreateFunctionInput = json_body(&body)?;
    let created = state
        .blocking(move |s| {
            let name_in = input.function_name.clone().unwrap_or_default();
            let fref = validate_new_function_name(&name_in)?;
            if !fref.is_for(&s.node, caller.id()) {
                return Err(LambdaError::invalid(format!(
                    "The function name {name_in} names another account or region than the caller's."
                ))
                .into());
            }
            if input.package_type.as_deref().is_some_and(|p| p != "Zip") {
                return Err(LambdaError::invalid(
                    "Hearth runs Zip packages only; PackageType Image is not supported.",
                )
                .into());
            }
            let (Some(runtime), Some(handler)) = (input.runtime.as_deref(), input.handler.clone()) else {
                return Err(LambdaError::invalid(
                    "Runtime and Handler are mandatory parameters for functions created with deployment packages.",
                )
                .into());
            };
            let config = FunctionConfig {
                runtime: parse_runtime(runtime)?,
                handler,
                role: input.role.clone().unwrap_or_default(),
                description: input.description.clone().unwrap_or_default(),
                memory_size: u32_in_range(
                    input.memory_size.unwrap_or(i64::from(limits::MEMORY_DEFAULT_MB)),
                    validate::memory_size,
                )?,
                timeout: u32_in_range(
                    input.timeout.unwrap_or(i64::from(limits::TIMEOUT_DEFAULT_S)),
                    validate::timeout,
                )?,
                environment: input
                    .environment
                    .map(|e| e.variables.unwrap_or_default()),
                ephemeral_storage_mb: ephemeral_storage(input.ephemeral_storage)?,
                architectures: architectures(input.architectures)?,
                layers: Vec::new(),
                dead_letter_target: dead_letter_target(s, &caller, input.dead_letter_config.as_ref())?
                    .flatten(),
            };
            validate_config(s, &config)?;
            if let Some(tags) = &input.tags {
                crate::tags::validate_tags(tags)?;
            }
            check_role(s, &caller, &config.role)?;
            let zip = zip_bytes(input.code)?;
            let code = stage_code(s, &zip, &config.runtime, &config.handler)?;
            let mut config = config;
            config.layers = crate::layers::resolve_function_layers(
                s,
                &caller,
                input.layers.as_deref().unwrap_or_default(),
                code.unzipped_size,
            )?;
            let isolation = input
                .tags
                .as_ref()
                .and_then(|t| t.get(hearth_exec::Isolation::TAG))
                .and_then(|v| hearth_exec::Isolation::parse(v));
            let (latest, published) = s.registry.create_function(
                caller.id(),
                NewFunction {
                    name: fref.name.as_str().to_owned(),
                    config,
                    code,
                    publish: input.publish,
                    tags: input.tags.unwrap_or_default(),
                },
                now_ms(),
            )?;
            s.executor
                .set_isolation_tag(caller.id(), fref.name.as_str(), isolation);
            s.activate(&latest);
            if let Some(p) = &published {
                s.activate(p);
            }
            Ok(published.unwrap_or(latest))
        })
        .await?;
    Ok((StatusCode::CREATED, Json(state.config_of(&created))).into_response())
}

/// A signed, unguessable URL from which the code zip can be fetched
/// without credentials, like S3's presigned `Code.Location`.
pub(crate) fn code_location(
    state: &AppState,
    headers: &HeaderMap,
    account: &str,
    sha: &str,
) -> String {
    let host = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!(
        "http://{host}/hearth/v1/code/{account}/{sha}?token={}",
        code_token(state, account, sha)
    )
}

fn code_mac(state: &AppState, account: &str, sha: &str) -> Hmac<sha2::Sha256> {
    // A 32-byte key is always a valid HMAC key: new_from_slice cannot fail.
    let mut mac =
        Hmac::<sha2::Sha256>::new_from_slice(&state.url_key).expect("HMAC takes any key size");
    mac.update(account.as_bytes());
    mac.update(b"/");
    mac.update(sha.as_bytes());
    mac
}

fn code_token(state: &AppState, account: &str, sha: &str) -> String {
    hex::encode(code_mac(state, account, sha).finalize().into_bytes())
}

#[derive(Debug, Deserialize)]
pub struct TokenQuery {
    token: String,
}

/// `GET /hearth/v1/code/{account}/{sha}?token=…`: the zip behind `Code.Location`.
pub async fn download_code(
    State(state): State<AppState>,
    Path((account, sha)): Path<(String, String)>,
    Query(q): Query<TokenQuery>,
) -> ApiResult<Response> {
    let given = hex::decode(&q.token).unwrap_or_default();
    if code_mac(&state, &account, &sha)
        .verify_slice(&given)
        .is_err()
    {
        return Err(LambdaError::new(
            ErrorKind::AccessDenied,
            "The code URL is invalid or has expired.",
        )
        .into());
    }
    let zip = state.blocking(move |s| Ok(s.code.read_zip(&sha)?)).await?;
    Ok(([(http::header::CONTENT_TYPE, "application/zip")], zip).into_response())
}

pub async fn get_function(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let fref = resolve(&state, &caller, &name, q.qualifier.as_deref())?;
    let shown = fref.qualifier.clone();
    let (v, tags, reserved) = state
        .blocking(move |s| {
            let sel = VersionSelector::from_qualifier(fref.qualifier.as_deref());
            let v = s
                .registry
                .get_version(caller.id(), fref.name.as_str(), &sel)?;
            let tags = s.registry.tags(caller.id(), fref.name.as_str())?;
            let reserved = s
                .registry
                .get_reserved_concurrency(caller.id(), fref.name.as_str())?;
            Ok((v, tags, reserved))
        })
        .await?;
    let mut out = json!({
        "Configuration": state.config_as(&v, shown.as_deref()),
        "Code": {
            "RepositoryType": "S3",
            "Location": code_location(&state, &headers, &v.account_id, &v.code.sha256_hex),
        },
    });
    if !tags.is_empty() {
        out["Tags"] = json!(tags);
    }
    if let Some(n) = reserved {
        out["Concurrency"] = json!({"ReservedConcurrentExecutions": n});
    }
    Ok(Json(out))
}

pub async fn get_function_configuration(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
) -> ApiResult<Json<Value>> {
    let fref = resolve(&state, &caller, &name, q.qualifier.as_deref())?;
    let shown = fref.qualifier.clone();
    let v = state
        .blocking(move |s| {
            let sel = VersionSelector::from_qualifier(fref.qualifier.as_deref());
            Ok(s.registry
                .get_version(caller.id(), fref.name.as_str(), &sel)?)
        })
        .await?;
    Ok(Json(state.config_as(&v, shown.as_deref())))
}

pub async fn list_functions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Value>> {
    let max = q.max_items()?;
    let page = state
        .blocking(move |s| {
            Ok(s.registry
                .list_functions(caller.id(), q.marker.as_deref(), max)?)
        })
        .await?;
    let functions: Vec<Value> = page.items.iter().map(|v| state.config_of(v)).collect();
    let mut out = json!({ "Functions": functions });
    if let Some(m) = page.next_marker {
        out["NextMarker"] = json!(m);
    }
    Ok(Json(out))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateCodeInput {
    zip_file: Option<String>,
    s3_bucket: Option<String>,
    image_uri: Option<String>,
    #[serde(default)]
    publish: bool,
    revision_id: Option<String>,
    #[serde(default)]
    dry_run: bool,
    architectures: Option<Vec<String>>,
}

pub async fn update_function_code(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let input: UpdateCodeInput = json_body(&body)?;
    let fref = resolve(&state, &caller, &name, None)?;
    let v = state
        .blocking(move |s| {
            let fname = fref.name.as_str();
            if fref.qualifier.as_deref().is_some_and(|q| q != "$LATEST") {
                return Err(LambdaError::invalid(
                    "Current operation does not support versions other than $LATEST. Please set version to $LATEST or do not set a version in your request.",
                )
                .into());
            }
            let current = s
                .registry
                .get_version(caller.id(), fname, &VersionSelector::Latest)?;
            if input.architectures.is_some() {
                architectures(input.architectures)?;
            }
            let zip = zip_bytes(Some(CodeInput {
                zip_file: input.zip_file,
                s3_bucket: input.s3_bucket,
                image_uri: input.image_uri,
            }))?;
            let code = stage_code(s, &zip, &current.config.runtime, &current.config.handler)?;
            crate::layers::check_total_size(code.unzipped_size, &current.config.layers)?;
            if input.dry_run {
                let mut preview = current;
                preview.code = code;
                return Ok(preview);
            }
            let (latest, published) = s.registry.update_code(
                caller.id(),
                fname,
                code,
                input.revision_id.as_deref(),
                input.publish,
                now_ms(),
            )?;
            s.activate(&latest);
            if let Some(p) = &published {
                s.activate(p);
            }
            s.executor.retire_function(caller.id(), fname);
            Ok(published.unwrap_or(latest))
        })
        .await?;
    Ok(Json(state.config_of(&v)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateConfigInput {
    runtime: Option<String>,
    handler: Option<String>,
    role: Option<String>,
    description: Option<String>,
    timeout: Option<i64>,
    memory_size: Option<i64>,
    environment: Option<EnvironmentInput>,
    ephemeral_storage: Option<EphemeralStorageInput>,
    revision_id: Option<String>,
    layers: Option<Vec<String>>,
    dead_letter_config: Option<DeadLetterConfigInput>,
}

pub async fn update_function_configuration(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let input: UpdateConfigInput = json_body(&body)?;
    let fref = resolve(&state, &caller, &name, None)?;
    let v = state
        .blocking(move |s| {
            let fname = fref.name.as_str();
            let patch = ConfigPatch {
                runtime: input.runtime.as_deref().map(parse_runtime).transpose()?,
                handler: input.handler,
                role: input.role,
                description: input.description,
                memory_size: input
                    .memory_size
                    .map(|m| u32_in_range(m, validate::memory_size))
                    .transpose()?,
                timeout: input
                    .timeout
                    .map(|t| u32_in_range(t, validate::timeout))
                    .transpose()?,
                environment: input.environment.map(|e| e.variables.unwrap_or_default()),
                ephemeral_storage_mb: input
                    .ephemeral_storage
                    .map(|e| ephemeral_storage(Some(e)))
                    .transpose()?,
                layers: None,
                dead_letter_target: dead_letter_target(
                    s,
                    &caller,
                    input.dead_letter_config.as_ref(),
                )?,
            };
            let current = s
                .registry
                .get_version(caller.id(), fname, &VersionSelector::Latest)?;
            let mut patch = patch;
            if let Some(arns) = &input.layers {
                patch.layers = Some(crate::layers::resolve_function_layers(
                    s,
                    &caller,
                    arns,
                    current.code.unzipped_size,
                )?);
            }
            let mut next = current.config.clone();
            patch.apply(&mut next);
            validate_config(s, &next)?;
            if let Some(role) = &patch.role {
                check_role(s, &caller, role)?;
            }
            if next.runtime != current.config.runtime || next.handler != current.config.handler {
                s.code
                    .check_entrypoint(&current.code.sha256_hex, &next.runtime, &next.handler)?;
            }
            let v = s.registry.update_config(
                caller.id(),
                fname,
                &patch,
                input.revision_id.as_deref(),
                now_ms(),
            )?;
            s.activate(&v);
            s.executor.retire_function(caller.id(), fname);
            Ok(v)
        })
        .await?;
    Ok(Json(state.config_of(&v)))
}

pub async fn delete_function(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
) -> ApiResult<StatusCode> {
    let fref = resolve(&state, &caller, &name, q.qualifier.as_deref())?;
    state
        .blocking(move |s| {
            let fname = fref.name.as_str();
            match fref.qualifier.as_deref() {
                None => {
                    s.registry.delete_function(caller.id(), fname)?;
                    s.executor.set_isolation_tag(caller.id(), fname, None);
                    s.logs.delete_function(caller.id(), fname)?;
                    // Lambda discards a deleted function's pending events: they
                    // must not run on a later function of the same name.
                    s.events
                        .queue()
                        .purge_function(caller.id(), fname)
                        .map_err(|e| LambdaError::service(e.to_string()))?;
                }
                Some(v) => s.registry.delete_version(caller.id(), fname, v)?,
            }
            s.executor.retire_function(caller.id(), fname);
            // Deleting a function or version deletes its provisioned configs.
            s.executor.reload_capacity();
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PublishInput {
    code_sha256: Option<String>,
    description: Option<String>,
    revision_id: Option<String>,
}

pub async fn publish_version(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let input: PublishInput = json_body(&body)?;
    let fref = resolve(&state, &caller, &name, None)?;
    let v = state
        .blocking(move |s| {
            if let Some(d) = &input.description {
                validate::description(d)?;
            }
            let v = s.registry.publish_version(
                caller.id(),
                fref.name.as_str(),
                input.code_sha256.as_deref(),
                input.description.as_deref(),
                input.revision_id.as_deref(),
                now_ms(),
            )?;
            s.activate(&v);
            Ok(v)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(state.config_of(&v))).into_response())
}

pub async fn list_versions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Value>> {
    let fref = resolve(&state, &caller, &name, None)?;
    let max = q.max_items()?;
    let page = state
        .blocking(move |s| {
            Ok(s.registry.list_versions(
                caller.id(),
                fref.name.as_str(),
                q.marker.as_deref(),
                max,
            )?)
        })
        .await?;
    // Among versions, `$LATEST` is listed with a qualified ARN, as AWS does.
    let versions: Vec<Value> = page
        .items
        .iter()
        .map(|v| state.config_as(v, Some(&v.version)))
        .collect();
    let mut out = json!({ "Versions": versions });
    if let Some(m) = page.next_marker {
        out["NextMarker"] = json!(m);
    }
    Ok(Json(out))
}
