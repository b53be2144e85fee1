//! Lambda Function URLs.
//!
//! - The control plane, `/2021-10-31/functions/{name}/url` (Create, Get,
//!   Update, Delete) and `/urls` (List), checked and shaped as Lambda does.
//! - The URL listener, [`app`]: `hearth serve` binds it on its own address
//!   (`function_urls_listen`). A request reaches a function by its URL id,
//!   the 32 characters Lambda puts before `.lambda-url.`: as the first
//!   label of the `Host` header (`<id>.lambda-url.<region>.on.aws`, or
//!   `<id>.<anything>`), or else as the first path segment
//!   (`http://127.0.0.1:9001/<id>/…`, the form `FunctionUrl` gives). The
//!   function runs through the same executor as the Invoke API, with
//!   Lambda's payload format 2.0 event ([`event`]).
//!
//! `InvokeMode` `RESPONSE_STREAM` is accepted and reported as given, and
//! served as `BUFFERED`: the whole response is sent once the function ends.

pub mod event;

use crate::caller::Caller;
use crate::error::{ApiError, ApiResult};
use crate::request::{json_body, resolve, PageQuery, QualifierQuery};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json, Router};
use bytes::Bytes;
use hearth_exec::{InvokeInput, InvokeMode};
use hearth_store::urls::{Cors, FunctionUrlConfig, FunctionUrlPatch, NewFunctionUrl};
use hearth_types::{limits, ErrorKind, LambdaError};
use serde::Deserialize;
use serde_json::{json, Value};

// ---- control plane ----------------------------------------------------------

/// The body of Create/UpdateFunctionUrlConfig.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UrlConfigInput {
    auth_type: Option<String>,
    cors: Option<Cors>,
    invoke_mode: Option<String>,
}

const QUALIFIER_PATTERN: &str = r"((?!^\d+$)^[0-9a-zA-Z-_]+$)";

/// A URL's qualifier: an alias name (1–128 of `[0-9a-zA-Z-_]`, not all
/// digits). Versions and `$LATEST` fail Lambda's pattern.
fn qualifier_error(q: &str) -> Option<String> {
    let ok = !q.is_empty()
        && q.len() <= 128
        && q.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !q.chars().all(|c| c.is_ascii_digit());
    (!ok).then(|| {
        format!(
            "Value '{q}' at 'qualifier' failed to satisfy constraint: Member must satisfy regular expression pattern: {QUALIFIER_PATTERN}"
        )
    })
}

/// The function and alias a request names, checked as Lambda checks them.
fn target(
    state: &AppState,
    caller: &Caller,
    name: &str,
    qualifier: Option<&str>,
) -> ApiResult<(String, Option<String>)> {
    if let Some(e) = qualifier.and_then(qualifier_error) {
        return Err(LambdaError::validation(&[e]).into());
    }
    let r = resolve(state, caller, name, qualifier)?;
    if let Some(e) = r.qualifier.as_deref().and_then(qualifier_error) {
        return Err(LambdaError::validation(&[e]).into());
    }
    Ok((r.name.as_str().to_owned(), r.qualifier))
}

fn check_enum(field: &str, value: &str, allowed: &[&str]) -> Option<String> {
    (!allowed.contains(&value)).then(|| {
        format!(
            "Value '{value}' at '{field}' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
            allowed.join(", ")
        )
    })
}

/// Lambda's model constraints on the input, every violation listed.
fn validate(input: &UrlConfigInput, create: bool) -> ApiResult<()> {
    let mut errors = Vec::new();
    match input.auth_type.as_deref() {
        None if create => errors.push(
            "Value null at 'authType' failed to satisfy constraint: Member must not be null"
                .to_owned(),
        ),
        None => {}
        Some(a) => errors.extend(check_enum("authType", a, &["NONE", "AWS_IAM"])),
    }
    if let Some(cors) = &input.cors {
        let lists = [
            ("cors.allowHeaders", &cors.allow_headers, 100, 1024),
            ("cors.allowMethods", &cors.allow_methods, 6, 6),
            ("cors.allowOrigins", &cors.allow_origins, 100, 253),
            ("cors.exposeHeaders", &cors.expose_headers, 100, 1024),
        ];
        for (field, list, max_items, max_len) in lists {
            let Some(list) = list else { continue };
            if list.len() > max_items {
                errors.push(format!(
                    "Value '[{}]' at '{field}' failed to satisfy constraint: Member must have length less than or equal to {max_items}",
                    list.join(", ")
                ));
            } else if list.iter().any(|s| s.len() > max_len) {
                errors.push(format!(
                    "Value '[{}]' at '{field}' failed to satisfy constraint: Member must satisfy constraint: [Member must have length less than or equal to {max_len}]",
                    list.join(", ")
                ));
            }
        }
        if let Some(age) = cors.max_age.filter(|a| *a > 86_400) {
            errors.push(format!(
                "Value '{age}' at 'cors.maxAge' failed to satisfy constraint: Member must have value less than or equal to 86400"
            ));
        }
    }
    if let Some(m) = &input.invoke_mode {
        errors.extend(check_enum(
            "invokeMode",
            m,
            &["RESPONSE_STREAM", "BUFFERED"],
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(LambdaError::validation(&errors).into())
    }
}

/// `CreationTime` / `LastModifiedTime` as Lambda prints them:
/// `2021-10-27T18:40:08.123456Z`.
fn url_timestamp(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    t.format(&fmt).unwrap_or_default()
}

/// The working URL of a config: `<origin>/<id>/` on the node's URL
/// listener, or Lambda's own form where the node has none.
pub fn function_url(state: &AppState, url_id: &str) -> String {
    match &state.settings.function_urls_origin {
        Some(origin) => format!("{}/{url_id}/", origin.trim_end_matches('/')),
        None => format!("https://{url_id}.lambda-url.{}.on.aws/", state.node.region),
    }
}

/// Which of a config's fields an answer carries (as Lambda's do).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// CreateFunctionUrlConfig: no `LastModifiedTime`, `InvokeMode` only
    /// if given.
    Created,
    /// UpdateFunctionUrlConfig: `InvokeMode` only if ever given.
    Updated,
    /// Get and List: everything, `InvokeMode` `BUFFERED` by default.
    Full,
}

fn render(state: &AppState, c: &FunctionUrlConfig, shape: Shape) -> Value {
    let mut v = json!({
        "FunctionUrl": function_url(state, &c.url_id),
        "FunctionArn": state.node.arn(&c.account_id, &c.function_name, c.alias()),
        "AuthType": c.auth_type,
        "CreationTime": url_timestamp(c.created_ms),
    });
    if shape != Shape::Created {
        v["LastModifiedTime"] = json!(url_timestamp(c.last_modified_ms));
    }
    if let Some(cors) = &c.cors {
        v["Cors"] = json!(cors);
    }
    match (&c.invoke_mode, shape) {
        (Some(m), _) => v["InvokeMode"] = json!(m),
        (None, Shape::Full) => v["InvokeMode"] = json!("BUFFERED"),
        (None, _) => {}
    }
    v
}

fn now_ms() -> i64 {
    hearth_exec::events::epoch_ms()
}

pub async fn create_function_url_config(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
    body: Bytes,
) -> ApiResult<Response> {
    let input: UrlConfigInput = json_body(&body)?;
    let (function, alias) = target(&state, &caller, &name, q.qualifier.as_deref())?;
    validate(&input, true)?;
    let new = NewFunctionUrl {
        account_id: caller.id().to_owned(),
        function_name: function,
        alias,
        auth_type: input.auth_type.unwrap_or_default(),
        cors: input.cors,
        invoke_mode: input.invoke_mode,
    };
    let cfg = state
        .blocking(move |s| Ok(s.registry.create_function_url(&new, now_ms())?))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(render(&state, &cfg, Shape::Created)),
    )
        .into_response())
}

pub async fn get_function_url_config(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
) -> ApiResult<Json<Value>> {
    let (function, alias) = target(&state, &caller, &name, q.qualifier.as_deref())?;
    let account = caller.id().to_owned();
    let cfg = state
        .blocking(move |s| {
            Ok(s.registry
                .get_function_url(&account, &function, alias.as_deref())?)
        })
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(render(&state, &cfg, Shape::Full)))
}

fn not_found() -> ApiError {
    LambdaError::not_found("The resource you requested does not exist.").into()
}

pub async fn update_function_url_config(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let input: UrlConfigInput = json_body(&body)?;
    let (function, alias) = target(&state, &caller, &name, q.qualifier.as_deref())?;
    validate(&input, false)?;
    let patch = FunctionUrlPatch {
        auth_type: input.auth_type,
        cors: input.cors,
        invoke_mode: input.invoke_mode,
    };
    let account = caller.id().to_owned();
    let cfg = state
        .blocking(move |s| {
            Ok(s.registry.update_function_url(
                &account,
                &function,
                alias.as_deref(),
                &patch,
                now_ms(),
            )?)
        })
        .await?;
    Ok(Json(render(&state, &cfg, Shape::Updated)))
}

pub async fn delete_function_url_config(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
) -> ApiResult<StatusCode> {
    let (function, alias) = target(&state, &caller, &name, q.qualifier.as_deref())?;
    let account = caller.id().to_owned();
    let deleted = state
        .blocking(move |s| {
            Ok(s.registry
                .delete_function_url(&account, &function, alias.as_deref())?)
        })
        .await?;
    if deleted {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found())
    }
}

pub async fn list_function_url_configs(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Value>> {
    let max = q.max_items()?;
    let (function, alias) = target(&state, &caller, &name, None)?;
    if alias.is_some() {
        return Err(LambdaError::invalid(
            "ListFunctionUrlConfigs takes an unqualified function name.",
        )
        .into());
    }
    let account = caller.id().to_owned();
    let marker = q.marker.clone();
    let page = state
        .blocking(move |s| {
            Ok(s.registry
                .list_function_urls(&account, &function, marker.as_deref(), max)?)
        })
        .await?;
    let configs: Vec<Value> = page
        .items
        .iter()
        .map(|c| render(&state, c, Shape::Full))
        .collect();
    let mut out = json!({ "FunctionUrlConfigs": configs });
    if let Some(m) = page.next_marker {
        out["NextMarker"] = json!(m);
    }
    Ok(Json(out))
}

// ---- the URL listener ---------------------------------------------------------

/// The URL listener's whole surface: every method and path goes to
/// [`serve_url`].
pub fn app(state: AppState) -> Router {
    Router::new()
        .fallback(serve_url)
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state)
}

/// Whether `s` has the shape of a URL id: 32 of `[a-z0-9]`.
fn is_url_id(s: &str) -> bool {
    s.len() == hearth_store::urls::URL_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// The URL id a request names and the path below it: the `Host` header's
/// first label if it is one (and the host has more labels), else the
/// path's first segment.
pub fn route<'a>(host: Option<&'a str>, path: &'a str) -> Option<(&'a str, &'a str)> {
    if let Some(host) = host {
        let name = host.rsplit_once(':').map_or(host, |(h, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host
            }
        });
        if let Some((label, _)) = name.split_once('.') {
            if is_url_id(label) {
                return Some((label, if path.is_empty() { "/" } else { path }));
            }
        }
    }
    let rest = path.strip_prefix('/')?;
    let (id, below) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    is_url_id(id).then_some((id, below))
}

/// An answer of the URL service itself (not of the function), as AWS
/// shapes them: JSON `{"Message": …}` and `x-amzn-ErrorType`.
fn service_answer(status: StatusCode, error_type: &'static str, message: Value) -> Response {
    let mut resp = (
        status,
        [(http::header::CONTENT_TYPE, "application/json")],
        json!({ "Message": message }).to_string(),
    )
        .into_response();
    resp.headers_mut()
        .insert("x-amzn-errortype", HeaderValue::from_static(error_type));
    resp
}

/// An unknown URL: AWS answers `{"Message":null}`.
fn unknown_url() -> Response {
    service_answer(StatusCode::FORBIDDEN, "AccessDeniedException", Value::Null)
}

/// A URL whose signature or target does not let the call through.
fn forbidden(message: &str) -> Response {
    service_answer(
        StatusCode::FORBIDDEN,
        "AccessDeniedException",
        json!(message),
    )
}

/// AWS's words for a call its URL's function cannot take (a deleted alias).
const FORBIDDEN_TARGET: &str = "Forbidden. For troubleshooting Function URL authorization issues, see: https://docs.aws.amazon.com/lambda/latest/dg/urls-auth.html";

/// For `AuthType` `AWS_IAM`: the verified caller, if it may invoke the
/// URL's function (a key of the function's own account: Hearth keeps no
/// resource policies that could let another account in).
async fn iam_caller(
    state: &AppState,
    cfg: &FunctionUrlConfig,
    parts: &http::request::Parts,
    body: &[u8],
) -> Option<Caller> {
    let sreq = crate::auth::SigV4Request {
        method: parts.method.as_str(),
        raw_path: parts.uri.path(),
        raw_query: parts.uri.query(),
        headers: &parts.headers,
        body,
    };
    let parsed = crate::auth::parse(&sreq).ok()?;
    if parsed.service != "lambda" {
        return None;
    }
    let caller = crate::caller::signer(state, parts, &sreq, &parsed)
        .await
        .map_err(|e| tracing::debug!(error = %e.message, "function URL signature refused"))
        .ok()?;
    (caller.id() == cfg.account_id).then_some(caller)
}

/// `requestContext.authorizer` for a verified `AWS_IAM` caller.
fn iam_authorizer(caller: &Caller, access_key: &str) -> Value {
    let (user_arn, user_id) = match &caller.session {
        Some(s) => (
            format!(
                "arn:aws:sts::{}:assumed-role/{}/{}",
                s.account,
                s.role_arn.rsplit('/').next().unwrap_or(""),
                s.session_name
            ),
            format!("{}:{}", s.role_id, s.session_name),
        ),
        None => (
            format!("arn:aws:iam::{}:root", caller.id()),
            caller.id().to_owned(),
        ),
    };
    json!({"iam": {
        "accessKey": access_key,
        "accountId": caller.id(),
        "callerId": user_id,
        "cognitoIdentity": null,
        "principalOrgId": null,
        "userArn": user_arn,
        "userId": user_id,
    }})
}

/// Headers a function's answer may not set (RFC 9110 §7.6.1, plus the
/// body's length, which the server computes).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "content-length",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn respond(r: event::UrlResponse, request_id: &str) -> Response {
    let mut resp = Response::new(Body::from(r.body));
    *resp.status_mut() = r.status;
    let h = resp.headers_mut();
    for (name, value) in r.headers {
        // The connection's framing is the server's, never the function's:
        // a function's Content-Length or Transfer-Encoding would corrupt
        // the response (and the kept-alive connection behind it).
        if HOP_BY_HOP.iter().any(|hop| name.eq_ignore_ascii_case(hop)) {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            h.append(n, v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
    resp
}

/// Serves one request to a Function URL.
pub async fn serve_url(State(state): State<AppState>, req: Request) -> Response {
    let source_ip = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "127.0.0.1".to_owned());
    let (parts, body) = req.into_parts();
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let path = parts.uri.path().to_owned();
    let Some((url_id, raw_path)) = route(host.as_deref(), &path) else {
        return unknown_url();
    };
    let (url_id, raw_path) = (url_id.to_owned(), raw_path.to_owned());
    let lookup = url_id.clone();
    let cfg = match state
        .blocking(move |s| Ok(s.registry.function_url_by_id(&lookup)?))
        .await
    {
        Ok(Some(cfg)) => cfg,
        Ok(None) => return unknown_url(),
        Err(e) => {
            tracing::error!(error = %e.0.message, "function URL lookup failed");
            return service_answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ServiceException",
                json!("Internal Server Error"),
            );
        }
    };
    let body = match axum::body::to_bytes(body, limits::SYNC_PAYLOAD_MAX_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return service_answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLargeException",
                json!(format!(
                    "Request must be smaller than {} bytes for the InvokeFunction operation",
                    limits::SYNC_PAYLOAD_MAX_BYTES
                )),
            )
        }
    };
    let request_id = uuid::Uuid::new_v4().to_string();
    // CORS preflights are answered here, before authentication, as a
    // browser sends them unsigned.
    if let Some(cors) = &cfg.cors {
        if event::is_preflight(parts.method.as_str(), &parts.headers) {
            return respond(event::preflight(cors, &parts.headers), &request_id);
        }
    }
    let (account_id, authorizer) = if cfg.auth_type == "AWS_IAM" {
        let Some(caller) = iam_caller(&state, &cfg, &parts, &body).await else {
            return forbidden("Forbidden");
        };
        let key = crate::auth::parse(&crate::auth::SigV4Request {
            method: parts.method.as_str(),
            raw_path: parts.uri.path(),
            raw_query: parts.uri.query(),
            headers: &parts.headers,
            body: &body,
        })
        .map(|p| p.access_key_id)
        .unwrap_or_default();
        (caller.id().to_owned(), Some(iam_authorizer(&caller, &key)))
    } else {
        ("anonymous".to_owned(), None)
    };
    let ev = event::event(&event::UrlRequest {
        method: parts.method.as_str(),
        raw_path: &raw_path,
        raw_query: parts.uri.query().unwrap_or(""),
        headers: &parts.headers,
        body: &body,
        source_ip: &source_ip,
        url_id: &url_id,
        account_id: &account_id,
        request_id: &request_id,
        now_ms: now_ms(),
        authorizer,
    });
    let payload = Bytes::from(ev.to_string());
    if payload.len() > limits::SYNC_PAYLOAD_MAX_BYTES {
        return service_answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLargeException",
            json!(format!(
                "Request must be smaller than {} bytes for the InvokeFunction operation",
                limits::SYNC_PAYLOAD_MAX_BYTES
            )),
        );
    }
    let input = InvokeInput {
        account_id: cfg.account_id.clone(),
        function_name: cfg.function_name.clone(),
        qualifier: cfg.alias().map(str::to_owned),
        payload,
        tail: false,
        client_context: None,
        dry_run: false,
        request_id: Some(request_id.clone()),
        mode: InvokeMode::Sync,
    };
    // As the Invoke API: the invocation runs to its end in a task of its
    // own, whatever the client does meanwhile.
    let executor = state.executor.clone();
    let out = tokio::spawn(async move { executor.invoke(input).await }).await;
    let mut mapped = match out {
        Ok(Ok(out)) if out.function_error => event::UrlResponse::bad_gateway(),
        Ok(Ok(out)) => event::map_response(&out.body),
        Ok(Err(e)) => return invoke_failure(&e, &request_id),
        Err(e) => {
            tracing::error!(error = %e, "function URL invocation task failed");
            event::UrlResponse::bad_gateway()
        }
    };
    if let Some(cors) = &cfg.cors {
        event::apply_cors(cors, &parts.headers, &mut mapped);
    }
    respond(mapped, &request_id)
}

/// What a URL answers when the invocation could not run.
fn invoke_failure(e: &LambdaError, request_id: &str) -> Response {
    let mut resp = match e.kind {
        ErrorKind::TooManyRequests => service_answer(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequestsException",
            json!("Rate Exceeded."),
        ),
        // The function or alias is gone while its config stays.
        ErrorKind::ResourceNotFound => forbidden(FORBIDDEN_TARGET),
        ErrorKind::RequestTooLarge | ErrorKind::RequestEntityTooLarge => service_answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLargeException",
            json!(e.message),
        ),
        _ => {
            tracing::debug!(error = %e.message, "function URL invocation refused");
            respond(event::UrlResponse::bad_gateway(), request_id)
        }
    };
    if let Ok(v) = HeaderValue::from_str(request_id) {
        resp.headers_mut().insert("x-amzn-requestid", v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "abcdefghijklmnopqrstuvwxyz012345";

    #[test]
    fn urls_route_by_host_then_by_path() {
        let host = format!("{ID}.lambda-url.us-east-1.on.aws");
        assert_eq!(route(Some(&host), "/x/y"), Some((ID, "/x/y")));
        let host_port = format!("{ID}.localhost:9001");
        assert_eq!(route(Some(&host_port), "/"), Some((ID, "/")));
        let path = format!("/{ID}/a/b");
        assert_eq!(route(Some("127.0.0.1:9001"), &path), Some((ID, "/a/b")));
        assert_eq!(route(None, &format!("/{ID}")), Some((ID, "/")));
        assert_eq!(route(None, &format!("/{ID}/")), Some((ID, "/")));
        // Not an id: wrong length, upper case, or no id at all.
        assert_eq!(route(None, "/abc/"), None);
        assert_eq!(route(None, &format!("/{}/", ID.to_uppercase())), None);
        assert_eq!(route(Some("localhost"), "/"), None);
        // A bare id host without a domain is not a URL host.
        assert_eq!(route(Some(ID), "/"), None);
    }

    #[test]
    fn qualifiers_are_aliases_only() {
        assert_eq!(qualifier_error("live"), None);
        assert_eq!(qualifier_error("a-b_9"), None);
        for bad in ["1", "$LATEST", "", "a.b"] {
            assert!(qualifier_error(bad).is_some(), "{bad}");
        }
        assert_eq!(
            qualifier_error("1").unwrap(),
            r"Value '1' at 'qualifier' failed to satisfy constraint: Member must satisfy regular expression pattern: ((?!^\d+$)^[0-9a-zA-Z-_]+$)"
        );
    }

    #[test]
    fn inputs_are_validated_as_lambdas_model() {
        let bad = UrlConfigInput {
            auth_type: Some("OPEN".into()),
            invoke_mode: Some("UNKNOWN".into()),
            cors: None,
        };
        let e = validate(&bad, true).unwrap_err().0;
        assert_eq!(e.kind, ErrorKind::Validation);
        assert!(e.message.starts_with("2 validation errors detected: "));
        assert!(e.message.contains("Value 'UNKNOWN' at 'invokeMode' failed to satisfy constraint: Member must satisfy enum value set: [RESPONSE_STREAM, BUFFERED]"));
        assert!(validate(&UrlConfigInput::default(), true).is_err());
        assert!(validate(&UrlConfigInput::default(), false).is_ok());
    }

    #[test]
    fn timestamps_have_microseconds() {
        assert_eq!(
            url_timestamp(1_635_360_008_123),
            "2021-10-27T18:40:08.123000Z"
        );
    }
}
