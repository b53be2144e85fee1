//! The domain error every layer returns. Each [`ErrorKind`] is one of
//! Lambda's error types; `hearth-api` maps a kind to its HTTP status and
//! body in exactly one place.

use std::fmt;

/// Lambda's error types that Hearth produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 404: the function, version, alias or config does not exist (for this account).
    ResourceNotFound,
    /// 404: the version or alias exists but has no provisioned concurrency config.
    ProvisionedConcurrencyConfigNotFound,
    /// 400: a parameter is out of range or malformed.
    InvalidParameterValue,
    /// 400: a request field fails its declared constraint (AWS's input validation layer).
    Validation,
    /// 400: the request body is not what the operation accepts (bad JSON, bad base64 …).
    InvalidRequestContent,
    /// 409: the resource exists already or is in a conflicting state.
    ResourceConflict,
    /// 412: a `RevisionId` precondition failed.
    PreconditionFailed,
    /// 413: an Invoke payload is over its limit.
    RequestTooLarge,
    /// 413: a control-plane upload is over its limit ("Zipped size must be smaller than …").
    RequestEntityTooLarge,
    /// 400: the unzipped code is over 250 MB, or the zip is over 50 MB.
    CodeStorageExceeded,
    /// 429: a concurrency limit was hit.
    TooManyRequests,
    /// 403: the signature did not match.
    InvalidSignature,
    /// 400: the `Authorization` header (or presigned query) is malformed.
    IncompleteSignature,
    /// 403: the access key is unknown.
    UnrecognizedClient,
    /// 403: a temporary credential's session token has expired.
    ExpiredToken,
    /// 403: the caller may not call this (admin API).
    AccessDenied,
    /// 403: the request's `X-Amz-Date` is too far from now.
    InvalidSignatureExpired,
    /// 403: the request carries no signature at all.
    MissingAuthenticationToken,
    /// 404: no such route.
    UnknownOperation,
    /// 405: the route exists, the method does not.
    MethodNotAllowed,
    /// 500: something broke on our side.
    Service,
}

impl ErrorKind {
    /// The error's type name as clients read it (`X-Amzn-ErrorType`, `Type`/`__type`).
    pub fn code(self) -> &'static str {
        match self {
            Self::ResourceNotFound => "ResourceNotFoundException",
            Self::ProvisionedConcurrencyConfigNotFound => {
                "ProvisionedConcurrencyConfigNotFoundException"
            }
            Self::InvalidParameterValue => "InvalidParameterValueException",
            Self::Validation => "ValidationException",
            Self::InvalidRequestContent => "InvalidRequestContentException",
            Self::ResourceConflict => "ResourceConflictException",
            Self::PreconditionFailed => "PreconditionFailedException",
            Self::RequestTooLarge => "RequestTooLargeException",
            Self::RequestEntityTooLarge => "RequestEntityTooLargeException",
            Self::CodeStorageExceeded => "CodeStorageExceededException",
            Self::TooManyRequests => "TooManyRequestsException",
            Self::InvalidSignature => "InvalidSignatureException",
            Self::IncompleteSignature => "IncompleteSignatureException",
            Self::UnrecognizedClient => "UnrecognizedClientException",
            Self::ExpiredToken => "ExpiredTokenException",
            Self::AccessDenied => "AccessDeniedException",
            Self::InvalidSignatureExpired => "InvalidSignatureException",
            Self::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            Self::UnknownOperation => "UnknownOperationException",
            Self::MethodNotAllowed => "MethodNotAllowedException",
            Self::Service => "ServiceException",
        }
    }
}

/// An error with Lambda's type and a message written the way Lambda writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LambdaError {
    pub kind: ErrorKind,
    pub message: String,
    /// `Reason` of a 429 (`ReservedFunctionConcurrentInvocationLimitExceeded` …).
    pub reason: Option<String>,
}

impl LambdaError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            reason: None,
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ResourceNotFound, message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidParameterValue, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ResourceConflict, message)
    }

    /// A `ValidationException` in AWS's words: "1 validation error detected: …".
    pub fn validation(errors: &[String]) -> Self {
        let n = errors.len();
        let noun = if n == 1 { "error" } else { "errors" };
        Self::new(
            ErrorKind::Validation,
            format!("{n} validation {noun} detected: {}", errors.join("; ")),
        )
    }

    pub fn service(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Service, message)
    }

    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }
}

impl fmt::Display for LambdaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.code(), self.message)
    }
}

impl std::error::Error for LambdaError {}
