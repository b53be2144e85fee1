//! AWS's query protocol on `/`: `Action=…&Version=…` as a form body (or a
//! GET query), answered in XML. STS and IAM speak it. The service is the one
//! the request's credential scope names.
//!
//! Implemented: STS `GetCallerIdentity`, and IAM's roles and policies
//! ([`crate::iam`]). Every other action, and every other service's query
//! action, is refused in the query protocol's own error shape
//! (`ErrorResponse`/`Error`/`Code`), which botocore parses, instead of
//! Lambda's JSON, which it cannot.

use crate::caller::Caller;
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use hearth_types::{ErrorKind, LambdaError};

/// STS's API version and XML namespace.
pub(crate) const STS_VERSION: &str = "2011-06-15";
pub(crate) const STS_XMLNS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

/// Whether a request to `/` is a query-protocol request: a form-encoded POST
/// or a GET with an `Action` parameter.
pub fn is_query_request(
    method: &http::Method,
    path: &str,
    query: Option<&str>,
    headers: &http::HeaderMap,
) -> bool {
    if path != "/" && !is_queue_path(path) {
        return false;
    }
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    (method == http::Method::POST && form)
        || (method == http::Method::GET
            && query
                .is_some_and(|q| form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "Action")))
}

/// Whether `path` is an SQS queue URL's (`/<12-digit account>/<name>`),
/// where some SDKs post the query protocol's actions on that queue.
pub fn is_queue_path(path: &str) -> bool {
    let mut segs = path.trim_start_matches('/').split('/');
    match (segs.next(), segs.next(), segs.next()) {
        (Some(account), Some(name), None) => {
            account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) && !name.is_empty()
        }
        _ => false,
    }
}

/// The service the request's credential scope names (`sts`, `iam`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service(pub String);

/// The service the credential scope of a JSON-protocol request to `/`
/// (`X-Amz-Target`) names (`logs`, `sqs`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonService(pub String);

/// `POST /` and `GET /?Action=…`, signed: the query protocol (STS, IAM),
/// and the JSON protocols by `X-Amz-Target` (CloudWatch Logs).
pub async fn handle(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    service: Option<Extension<Service>>,
    json: Option<Extension<JsonService>>,
    req: Request,
) -> Response {
    let Some(Extension(service)) = service else {
        let target = req
            .headers()
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let host = host_of(req.headers());
        if let (Some(Extension(JsonService(svc))), Some(op)) =
            (&json, target.strip_prefix("AmazonSQS."))
        {
            if svc == "sqs" {
                let body = axum::body::to_bytes(
                    req.into_body(),
                    hearth_types::limits::CONTROL_BODY_MAX_BYTES,
                )
                .await
                .unwrap_or_default();
                return crate::sqs::handle_json(&state, &caller, op, &body, &host).await;
            }
        }
        if let (Some(Extension(JsonService(svc))), Some(op)) =
            (json, target.strip_prefix("Logs_20140328."))
        {
            if svc == "logs" {
                let body = axum::body::to_bytes(
                    req.into_body(),
                    hearth_types::limits::CONTROL_BODY_MAX_BYTES,
                )
                .await
                .unwrap_or_default();
                return crate::cwlogs::handle(&state, &caller, op, &body).await;
            }
        }
        // No other JSON protocol is behind `/` yet: its error shape
        // (`__type`, which botocore's JSON parser reads, and the header).
        let mut resp = (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({
                "__type": "UnknownOperationException",
                "message": format!("Hearth does not implement the operation {target:?} at /"),
            })),
        )
            .into_response();
        resp.headers_mut().insert(
            "x-amzn-ErrorType",
            HeaderValue::from_static("UnknownOperationException"),
        );
        return resp;
    };
    let host = host_of(req.headers());
    let (parts, body) = req.into_parts();
    let form = match axum::body::to_bytes(body, hearth_types::limits::CONTROL_BODY_MAX_BYTES).await
    {
        Ok(b) if parts.method == http::Method::POST => b.to_vec(),
        _ => parts.uri.query().unwrap_or("").as_bytes().to_vec(),
    };
    let mut params: Vec<(String, String)> = form_urlencoded::parse(&form).into_owned().collect();
    // An action posted to a queue's URL acts on that queue.
    if is_queue_path(parts.uri.path()) && !params.iter().any(|(k, _)| k == "QueueUrl") {
        params.push((
            "QueueUrl".to_owned(),
            format!("http://{host}{}", parts.uri.path()),
        ));
    }
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let Some(action) = param("Action") else {
        return error(
            StatusCode::BAD_REQUEST,
            "MissingAction",
            "Missing Action",
            &service,
        );
    };
    match (service.0.as_str(), action) {
        ("sts", "GetCallerIdentity") => {
            if let Some(v) = param("Version").filter(|v| *v != STS_VERSION) {
                return error(
                    StatusCode::BAD_REQUEST,
                    "InvalidAction",
                    &format!("Could not find operation GetCallerIdentity for version {v}"),
                    &service,
                );
            }
            get_caller_identity(&caller)
        }
        ("sts", "AssumeRole") => crate::sts::assume_role(&state, &caller, &params, &service).await,
        ("iam", action) => crate::iam::handle(&state, caller, action, &params).await,
        ("sqs", action) => crate::sqs::handle_query(&state, &caller, action, &params, &host).await,
        ("sts", other) => error(
            StatusCode::BAD_REQUEST,
            "InvalidAction",
            &format!("Could not find operation {other} for version {STS_VERSION}"),
            &service,
        ),
        (svc, other) => error(
            StatusCode::BAD_REQUEST,
            "InvalidAction",
            &format!("Hearth does not implement the {svc} action {other}"),
            &service,
        ),
    }
}

/// The caller's account and identity. Hearth's access keys belong to an
/// account as a whole, like an AWS account's root user's keys, so the caller
/// is the account's root; with temporary credentials, the assumed role's
/// session.
fn get_caller_identity(caller: &Caller) -> Response {
    let account = caller.id();
    let (arn, user) = match &caller.session {
        Some(sess) => (sess.assumed_role_arn(), sess.assumed_role_id()),
        None => (format!("arn:aws:iam::{account}:root"), account.to_owned()),
    };
    xml(
        StatusCode::OK,
        format!(
            "<GetCallerIdentityResponse xmlns=\"{STS_XMLNS}\">\
             <GetCallerIdentityResult>\
             <Arn>{arn}</Arn>\
             <UserId>{user}</UserId>\
             <Account>{account}</Account>\
             </GetCallerIdentityResult>\
             <ResponseMetadata><RequestId>{id}</RequestId></ResponseMetadata>\
             </GetCallerIdentityResponse>",
            account = escape(account),
            arn = escape(&arn),
            user = escape(&user),
            id = uuid::Uuid::new_v4(),
        ),
    )
}

/// The `Host` the client addressed (queue URLs are on it).
fn host_of(headers: &http::HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost")
        .to_owned()
}

/// A query-protocol error: `Sender` for 4xx, `Receiver` for 5xx.
pub fn error(status: StatusCode, code: &str, message: &str, service: &Service) -> Response {
    let kind = if status.is_server_error() {
        "Receiver"
    } else {
        "Sender"
    };
    let xmlns = match service.0.as_str() {
        "sts" => format!(" xmlns=\"{STS_XMLNS}\""),
        "iam" => format!(" xmlns=\"{}\"", crate::iam::IAM_XMLNS),
        "sqs" => format!(" xmlns=\"{}\"", crate::sqs::SQS_XMLNS),
        _ => String::new(),
    };
    xml(
        status,
        format!(
            "<ErrorResponse{xmlns}><Error><Type>{kind}</Type><Code>{code}</Code>\
             <Message>{message}</Message></Error><RequestId>{id}</RequestId></ErrorResponse>",
            code = escape(code),
            message = escape(message),
            id = uuid::Uuid::new_v4(),
        ),
    )
}

/// An authentication failure (or any Lambda-shaped error) in the query
/// protocol's shape, with the codes STS and IAM use for it.
pub fn from_lambda(e: &LambdaError, service: &Service) -> Response {
    let (status, code) = match e.kind {
        ErrorKind::UnrecognizedClient => (StatusCode::FORBIDDEN, "InvalidClientTokenId"),
        ErrorKind::ExpiredToken => (StatusCode::BAD_REQUEST, "ExpiredToken"),
        ErrorKind::InvalidSignature => (StatusCode::FORBIDDEN, "SignatureDoesNotMatch"),
        ErrorKind::InvalidSignatureExpired => (StatusCode::FORBIDDEN, "RequestExpired"),
        ErrorKind::IncompleteSignature => (StatusCode::BAD_REQUEST, "IncompleteSignature"),
        ErrorKind::MissingAuthenticationToken => {
            (StatusCode::FORBIDDEN, "MissingAuthenticationToken")
        }
        ErrorKind::AccessDenied => (StatusCode::FORBIDDEN, "AccessDenied"),
        ErrorKind::RequestEntityTooLarge | ErrorKind::RequestTooLarge => {
            (StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge")
        }
        ErrorKind::Service => (StatusCode::INTERNAL_SERVER_ERROR, "InternalFailure"),
        _ => (StatusCode::BAD_REQUEST, "InvalidParameterValue"),
    };
    error(status, code, &e.message, service)
}

pub(crate) fn xml(status: StatusCode, body: String) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    resp
}

/// XML text escaping. Hand-written rather than an XML crate: the answers are
/// a few fixed templates whose only variable parts are text nodes.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_requests_are_told_apart() {
        let mut form = http::HeaderMap::new();
        form.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded; charset=utf-8"),
        );
        let none = http::HeaderMap::new();
        assert!(is_query_request(&http::Method::POST, "/", None, &form));
        assert!(!is_query_request(&http::Method::POST, "/", None, &none));
        assert!(!is_query_request(
            &http::Method::POST,
            "/2015-03-31/functions",
            None,
            &form
        ));
        assert!(is_query_request(
            &http::Method::GET,
            "/",
            Some("Action=GetCallerIdentity&Version=2011-06-15"),
            &none
        ));
        assert!(!is_query_request(
            &http::Method::GET,
            "/",
            Some("x=1"),
            &none
        ));
    }

    #[test]
    fn escaping() {
        assert_eq!(escape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&apos;");
    }
}
