//! The one place where errors become HTTP responses in Lambda's shape:
//! status, `X-Amzn-ErrorType`, and the JSON body AWS sends for that type.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hearth_store::{CodeError, StoreError};
use hearth_types::{ErrorKind, LambdaError};

/// Any failure of a request, rendered as Lambda renders it.
#[derive(Debug)]
pub struct ApiError(pub LambdaError);

impl From<LambdaError> for ApiError {
    fn from(e: LambdaError) -> Self {
        Self(e)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Lambda(l) => Self(l),
            other => {
                tracing::error!(error = %other, "registry failure");
                Self(LambdaError::service(other.to_string()))
            }
        }
    }
}

impl From<CodeError> for ApiError {
    fn from(e: CodeError) -> Self {
        Self(e.into())
    }
}

pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::ResourceNotFound
        | ErrorKind::ProvisionedConcurrencyConfigNotFound
        | ErrorKind::UnknownOperation => StatusCode::NOT_FOUND,
        ErrorKind::InvalidParameterValue
        | ErrorKind::Validation
        | ErrorKind::InvalidRequestContent
        | ErrorKind::CodeStorageExceeded
        | ErrorKind::IncompleteSignature => StatusCode::BAD_REQUEST,
        ErrorKind::ResourceConflict => StatusCode::CONFLICT,
        ErrorKind::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
        ErrorKind::RequestTooLarge | ErrorKind::RequestEntityTooLarge => {
            StatusCode::PAYLOAD_TOO_LARGE
        }
        ErrorKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidSignatureExpired
        | ErrorKind::UnrecognizedClient
        | ErrorKind::ExpiredToken
        | ErrorKind::MissingAuthenticationToken
        | ErrorKind::AccessDenied => StatusCode::FORBIDDEN,
        ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorKind::Service => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The JSON body AWS sends for an error of this kind (see the recordings:
/// 404s carry `Message`, most others `message`, and validation and
/// authentication errors carry no `Type`).
pub fn body_of(e: &LambdaError) -> serde_json::Value {
    use serde_json::json;
    match e.kind {
        ErrorKind::ResourceNotFound => json!({"Type": "User", "Message": e.message}),
        ErrorKind::TooManyRequests => json!({
            "Reason": e.reason.as_deref().unwrap_or("ConcurrentInvocationLimitExceeded"),
            "Type": "User",
            "message": e.message,
        }),
        ErrorKind::Validation
        | ErrorKind::InvalidSignature
        | ErrorKind::IncompleteSignature
        | ErrorKind::InvalidSignatureExpired
        | ErrorKind::UnrecognizedClient
        | ErrorKind::ExpiredToken
        | ErrorKind::MissingAuthenticationToken
        | ErrorKind::AccessDenied
        | ErrorKind::RequestEntityTooLarge
        | ErrorKind::UnknownOperation
        | ErrorKind::MethodNotAllowed => json!({"message": e.message}),
        ErrorKind::Service => json!({"Type": "Service", "message": e.message}),
        _ => json!({"Type": "User", "message": e.message}),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_of(self.0.kind);
        let mut resp = (status, axum::Json(body_of(&self.0))).into_response();
        resp.headers_mut().insert(
            "x-amzn-ErrorType",
            HeaderValue::from_static(self.0.kind.code()),
        );
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
