//! Server-side verification of AWS Signature Version 4.
//!
//! Two forms are accepted:
//!
//! * the `Authorization` header:
//!   `AWS4-HMAC-SHA256 Credential=AKID/20261127/us-east-1/lambda/aws4_request,
//!   SignedHeaders=host;x-amz-date, Signature=<64 hex>`, with the request time
//!   in `X-Amz-Date` (or, as a fallback, an RFC 1123 `Date` header);
//! * a presigned URL: `X-Amz-Algorithm`, `X-Amz-Credential`, `X-Amz-Date`,
//!   `X-Amz-SignedHeaders`, `X-Amz-Signature` and (optionally) `X-Amz-Expires`
//!   in the query string.
//!
//! The canonical request is rebuilt from the request *as received on the
//! wire*, following what botocore (boto3, the AWS CLI) and the Rust SDK do for
//! non-S3 services:
//!
//! * the path is normalised (dot segments removed, `//` collapsed) and then
//!   percent-encoded **again**: `arn%3Aaws` is signed as `arn%253Aaws`;
//! * every query parameter is decoded (`+` meaning space) and re-encoded with
//!   RFC 3986's unreserved set, then the pairs are sorted; the presigned
//!   `X-Amz-Signature` is left out;
//! * exactly the headers listed in `SignedHeaders` are used, values trimmed
//!   with inner whitespace runs collapsed, repeated headers joined by `,`;
//! * the payload hash is `x-amz-content-sha256` when present (checked against
//!   the body unless it is `UNSIGNED-PAYLOAD`), else the SHA-256 of the body.
//!
//! The HMAC work is done by `aws-sigv4`'s own primitives
//! ([`generate_signing_key`], [`calculate_signature`]); derived signing keys
//! are cached per (access key, secret, date, region, service) in a
//! [`SigningKeyCache`].

use std::collections::HashMap;
use std::fmt;
use std::hint::black_box;
use std::time::SystemTime;

use aws_sigv4::sign::v4::{calculate_signature, generate_signing_key};
use hearth_types::{ErrorKind, LambdaError};
use http::header::{AUTHORIZATION, DATE};
use http::HeaderMap;
use parking_lot::Mutex;
use percent_encoding::{percent_decode_str, percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};
use time::{Date, Duration, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// The only algorithm accepted.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// How far the request time may be from the server's clock, either way.
pub const MAX_CLOCK_SKEW: Duration = Duration::minutes(15);

/// The longest `X-Amz-Expires` a presigned URL may carry (seven days, as AWS).
pub const MAX_PRESIGNED_EXPIRES_SECS: u64 = 604_800;

/// AWS's text for a signature that does not match.
pub const SIGNATURE_MISMATCH_MESSAGE: &str = "The request signature we calculated does not match \
     the signature you provided. Check your AWS Secret Access Key and signing method. Consult the \
     service documentation for details.";

const SCOPE_TERMINATOR: &str = "aws4_request";
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
const X_AMZ_DATE: &str = "x-amz-date";
const X_AMZ_CONTENT_SHA256: &str = "x-amz-content-sha256";

const Q_ALGORITHM: &str = "X-Amz-Algorithm";
const Q_CREDENTIAL: &str = "X-Amz-Credential";
const Q_DATE: &str = "X-Amz-Date";
const Q_EXPIRES: &str = "X-Amz-Expires";
const Q_SIGNED_HEADERS: &str = "X-Amz-SignedHeaders";
const Q_SIGNATURE: &str = "X-Amz-Signature";

/// Everything but RFC 3986's unreserved characters (`A-Za-z0-9-_.~`).
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// As [`UNRESERVED`], but `/` stays: botocore's `quote(path, safe='/~')`.
const PATH: &AsciiSet = &UNRESERVED.remove(b'/');

/// At most this many derived keys are cached; the cache is emptied when full.
const SIGNING_KEY_CACHE_CAPACITY: usize = 1024;

/// The parts of a received request that SigV4 covers.
///
/// `raw_path` and `raw_query` are exactly as they came on the wire (still
/// percent-encoded, e.g. `uri.path()` and `uri.query()` of the request), and
/// `body` is the whole body. `headers` must contain `host` when it is signed
/// (HTTP/1.1 always sends it; for HTTP/2 the caller copies `:authority` in).
#[derive(Clone, Copy)]
pub struct SigV4Request<'a> {
    pub method: &'a str,
    pub raw_path: &'a str,
    pub raw_query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

impl fmt::Debug for SigV4Request<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigV4Request")
            .field("method", &self.method)
            .field("raw_path", &self.raw_path)
            .field("raw_query", &self.raw_query)
            .field("headers", &self.headers)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// What [`parse`] read from the `Authorization` header (or the presigned query).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedAuth {
    pub access_key_id: String,
    /// `YYYYMMDD` of the credential scope (equal to `amz_date`'s date).
    pub date: String,
    pub region: String,
    pub service: String,
    /// As listed in `SignedHeaders`, in that order.
    pub signed_headers: Vec<String>,
    pub signature: String,
    /// The request time, `YYYYMMDDTHHMMSSZ` (converted to that form when it
    /// came from a `Date` header).
    pub amz_date: String,
    /// True for the query-string form.
    pub presigned: bool,
    /// `X-Amz-Expires` of a presigned URL, in seconds.
    pub expires: Option<u64>,
}

impl ParsedAuth {
    /// `<date>/<region>/<service>/aws4_request`.
    pub fn credential_scope(&self) -> String {
        format!(
            "{}/{}/{}/{SCOPE_TERMINATOR}",
            self.date, self.region, self.service
        )
    }

    /// Rejects a credential scoped to another service, in AWS's words.
    pub fn check_service(&self, expected: &str) -> Result<(), AuthError> {
        if self.service == expected {
            Ok(())
        } else {
            Err(AuthError::WrongService {
                expected: expected.to_owned(),
                found: self.service.clone(),
            })
        }
    }
}

/// Why a request failed authentication. Messages follow AWS's wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Neither an `Authorization` header nor `X-Amz-Algorithm` in the query.
    #[error("Missing Authentication Token")]
    Missing,
    /// The `Authorization` header or the presigned parameters are incomplete
    /// or malformed; the text says what is wrong.
    #[error("{0}")]
    Malformed(String),
    /// The request time is too old (or a presigned URL has expired).
    #[error(
        "Signature expired: {request_time} is now earlier than {earliest} ({now} - {window}.)"
    )]
    Expired {
        request_time: String,
        earliest: String,
        now: String,
        /// `15 min`, `300 sec` …
        window: String,
    },
    /// The request time is too far in the future.
    #[error(
        "Signature not yet current: {request_time} is still later than {latest} ({now} + {window}.)"
    )]
    NotYetCurrent {
        request_time: String,
        latest: String,
        now: String,
        window: String,
    },
    /// The signature is not the one the secret gives.
    #[error("{}", SIGNATURE_MISMATCH_MESSAGE)]
    SignatureMismatch,
    /// `x-amz-content-sha256` is not the SHA-256 of the body received.
    #[error("The provided 'x-amz-content-sha256' header does not match what was computed.")]
    ContentSha256Mismatch,
    /// The credential is scoped to another service ([`ParsedAuth::check_service`]).
    #[error("Credential should be scoped to correct service: '{expected}'.")]
    WrongService { expected: String, found: String },
}

/// The one place an [`AuthError`] becomes a Lambda error.
///
/// AWS answers a malformed or incomplete `Authorization` header with
/// `IncompleteSignatureException` (HTTP 400); `ErrorKind` has no such kind, so
/// those are reported as `InvalidSignatureException` (403) with AWS's text.
impl From<&AuthError> for LambdaError {
    fn from(err: &AuthError) -> Self {
        let kind = match err {
            AuthError::Missing => ErrorKind::MissingAuthenticationToken,
            AuthError::Expired { .. } | AuthError::NotYetCurrent { .. } => {
                ErrorKind::InvalidSignatureExpired
            }
            AuthError::Malformed(_) => ErrorKind::IncompleteSignature,
            AuthError::SignatureMismatch
            | AuthError::ContentSha256Mismatch
            | AuthError::WrongService { .. } => ErrorKind::InvalidSignature,
        };
        LambdaError::new(kind, err.to_string())
    }
}

/// Reads the signature's parameters (no secret needed). Returns
/// [`AuthError::Missing`] when the request carries no SigV4 at all.
pub fn parse(req: &SigV4Request<'_>) -> Result<ParsedAuth, AuthError> {
    let mut auth_headers = req.headers.get_all(AUTHORIZATION).iter();
    let auth_header = auth_headers.next();
    if auth_headers.next().is_some() {
        return Err(malformed("Only one Authorization header may be sent."));
    }
    let presigned = query_pairs(req.raw_query).any(|(k, _)| decode(k) == Q_ALGORITHM.as_bytes());
    match (auth_header, presigned) {
        (Some(_), true) => Err(malformed(
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, \
             Signature query string parameter or the Authorization header should be specified",
        )),
        (Some(value), false) => {
            let value = value
                .to_str()
                .map_err(|_| malformed("The Authorization header is not valid ASCII."))?;
            if value.trim().is_empty() {
                return Err(AuthError::Missing);
            }
            parse_header_auth(value, req.headers)
        }
        (None, true) => parse_query_auth(req.raw_query),
        (None, false) => Err(AuthError::Missing),
    }
}

fn parse_header_auth(value: &str, headers: &HeaderMap) -> Result<ParsedAuth, AuthError> {
    let value = value.trim();
    let (scheme, rest) = value.split_once([' ', '\t']).unwrap_or((value, ""));
    if scheme != ALGORITHM {
        return Err(malformed(format!(
            "Unsupported Authorization type '{scheme}': only {ALGORITHM} is accepted."
        )));
    }

    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, val)) = part.split_once('=') else {
            return Err(malformed(format!(
                "Invalid key=value pair (missing equal-sign) in Authorization header: '{part}'."
            )));
        };
        let slot = match key.trim() {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            _ => continue,
        };
        if slot.replace(val.trim()).is_some() {
            return Err(malformed(format!(
                "Authorization header has '{}' more than once.",
                key.trim()
            )));
        }
    }

    let amz_date = header_request_time(headers)?;
    let mut missing = Vec::new();
    for (name, present) in [
        ("Credential", credential.is_some()),
        ("Signature", signature.is_some()),
        ("SignedHeaders", signed_headers.is_some()),
    ] {
        if !present {
            missing.push(format!("Authorization header requires '{name}' parameter."));
        }
    }
    if amz_date.is_none() {
        missing.push(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
                .to_owned(),
        );
    }
    let (Some(credential), Some(signed_headers), Some(signature), Some(amz_date)) =
        (credential, signed_headers, signature, amz_date)
    else {
        return Err(malformed(missing.join(" ")));
    };
    build(credential, signed_headers, signature, amz_date, false, None)
}

/// `X-Amz-Date`, or failing that an RFC 1123 `Date`, as `YYYYMMDDTHHMMSSZ`.
fn header_request_time(headers: &HeaderMap) -> Result<Option<String>, AuthError> {
    if let Some(value) = single_header(headers, X_AMZ_DATE)? {
        let valid = value.to_str().ok().filter(|v| parse_amz_date(v).is_some());
        return match valid {
            Some(v) => Ok(Some(v.to_owned())),
            None => Err(malformed(
                "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"",
            )),
        };
    }
    if let Some(value) = single_header(headers, DATE.as_str())? {
        return match value.to_str().ok().and_then(parse_http_date) {
            Some(t) => Ok(Some(format_amz_date(t))),
            None => Err(malformed(
                "Date must be in the RFC 1123 format \"EEE, dd MMM yyyy HH:mm:ss zzz\"",
            )),
        };
    }
    Ok(None)
}

fn single_header<'h>(
    headers: &'h HeaderMap,
    name: &str,
) -> Result<Option<&'h http::HeaderValue>, AuthError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(malformed(format!("Only one '{name}' header may be sent.")));
    }
    Ok(first)
}

fn parse_query_auth(raw_query: Option<&str>) -> Result<ParsedAuth, AuthError> {
    let mut params: [(&str, Option<String>); 6] = [
        (Q_ALGORITHM, None),
        (Q_CREDENTIAL, None),
        (Q_DATE, None),
        (Q_SIGNED_HEADERS, None),
        (Q_SIGNATURE, None),
        (Q_EXPIRES, None),
    ];
    for (key, value) in query_pairs(raw_query) {
        let key = decode(key);
        if let Some((name, slot)) = params.iter_mut().find(|(n, _)| n.as_bytes() == key) {
            let value = String::from_utf8_lossy(&decode(value)).into_owned();
            if slot.replace(value).is_some() {
                return Err(malformed(format!(
                    "The query-string parameter '{name}' may appear only once."
                )));
            }
        }
    }
    let [(_, algorithm), (_, credential), (_, date), (_, signed_headers), (_, signature), (_, expires)] =
        params;
    let (Some(algorithm), Some(credential), Some(date), Some(signed_headers), Some(signature)) =
        (algorithm, credential, date, signed_headers, signature)
    else {
        return Err(malformed(
            "AWS query-string parameters must include 'X-Amz-Algorithm', 'X-Amz-Credential', \
             'X-Amz-Signature', 'X-Amz-Date', 'X-Amz-SignedHeaders'. Re-examine the query-string \
             parameters.",
        ));
    };
    if algorithm != ALGORITHM {
        return Err(malformed(format!(
            "X-Amz-Algorithm only supports \"{ALGORITHM}\""
        )));
    }
    if parse_amz_date(&date).is_none() {
        return Err(malformed(
            "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"",
        ));
    }
    let expires = match expires {
        None => None,
        Some(e) => {
            let secs =
                digits(&e, 1, 20).ok_or_else(|| malformed("X-Amz-Expires should be a number"))?;
            if secs == 0 {
                return Err(malformed("X-Amz-Expires must be non-negative"));
            }
            if secs > MAX_PRESIGNED_EXPIRES_SECS {
                return Err(malformed(format!(
                    "X-Amz-Expires must be less than a week (in seconds) that is {MAX_PRESIGNED_EXPIRES_SECS}"
                )));
            }
            Some(secs)
        }
    };
    build(
        &credential,
        &signed_headers,
        &signature,
        date,
        true,
        expires,
    )
}

/// The checks and splitting common to both forms.
fn build(
    credential: &str,
    signed_headers: &str,
    signature: &str,
    amz_date: String,
    presigned: bool,
    expires: Option<u64>,
) -> Result<ParsedAuth, AuthError> {
    // Access key / date / region / service / terminator, split from the right.
    let mut parts = credential.rsplitn(5, '/');
    let (Some(terminator), Some(service), Some(region), Some(date), Some(access_key_id)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(malformed(format!(
            "Credential should be of the form '<access key>/<YYYYMMDD>/<region>/<service>/{SCOPE_TERMINATOR}', not '{credential}'."
        )));
    };
    if access_key_id.is_empty() {
        return Err(malformed("Credential should contain an access key id."));
    }
    if terminator != SCOPE_TERMINATOR {
        return Err(malformed(format!(
            "Credential should be scoped with a valid terminator: '{SCOPE_TERMINATOR}', not '{terminator}'."
        )));
    }
    if region.is_empty() {
        return Err(malformed("Credential should be scoped to a valid region."));
    }
    if service.is_empty() {
        return Err(malformed("Credential should be scoped to a valid service."));
    }
    let amz_day = amz_date.get(..8).unwrap_or_default();
    if date != amz_day {
        return Err(malformed(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from \
             HTTP: '{date}' != '{amz_day}', from '{amz_date}'."
        )));
    }

    let signed_headers: Vec<String> = signed_headers.split(';').map(str::to_owned).collect();
    if signed_headers.iter().any(|h| h.is_empty() || h.trim() != h) {
        return Err(malformed(
            "SignedHeaders must be a ';'-separated list of header names.",
        ));
    }
    if !signed_headers
        .iter()
        .any(|h| h.eq_ignore_ascii_case("host") || h == ":authority")
    {
        return Err(malformed(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
        ));
    }
    if signature.is_empty() {
        return Err(malformed("Signature must not be empty."));
    }

    Ok(ParsedAuth {
        access_key_id: access_key_id.to_owned(),
        date: date.to_owned(),
        region: region.to_owned(),
        service: service.to_owned(),
        signed_headers,
        signature: signature.to_owned(),
        amz_date,
        presigned,
        expires,
    })
}

/// Checks `auth` (from [`parse`] on the same `req`) against `secret`, with
/// `now` as the server's clock.
pub fn verify(
    req: &SigV4Request<'_>,
    auth: &ParsedAuth,
    secret: &str,
    now: OffsetDateTime,
    cache: &SigningKeyCache,
) -> Result<(), AuthError> {
    let request_time = parse_amz_date(&auth.amz_date).ok_or_else(|| {
        malformed("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
    })?;
    if !auth.amz_date.starts_with(&auth.date) {
        return Err(malformed(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from \
             HTTP: '{}' != '{}', from '{}'.",
            auth.date,
            &auth.amz_date[..8],
            auth.amz_date
        )));
    }
    check_time(auth, request_time, now)?;

    let payload_hash = payload_hash(req)?;
    let canonical_request = canonical_request(req, auth, &payload_hash);
    let string_to_sign = format!(
        "{ALGORITHM}\n{}\n{}\n{}",
        auth.amz_date,
        auth.credential_scope(),
        hex::encode(Sha256::digest(&canonical_request))
    );
    let key = cache.signing_key(
        &auth.access_key_id,
        secret,
        request_time.date(),
        &auth.region,
        &auth.service,
    );
    let expected = calculate_signature(&key, string_to_sign.as_bytes());
    if constant_time_eq(expected.as_bytes(), auth.signature.as_bytes()) {
        Ok(())
    } else {
        tracing::debug!(
            access_key_id = %auth.access_key_id,
            canonical_request = %String::from_utf8_lossy(&canonical_request),
            string_to_sign = %string_to_sign,
            "SigV4 signature mismatch"
        );
        Err(AuthError::SignatureMismatch)
    }
}

fn check_time(
    auth: &ParsedAuth,
    request_time: OffsetDateTime,
    now: OffsetDateTime,
) -> Result<(), AuthError> {
    let latest = now + MAX_CLOCK_SKEW;
    if request_time > latest {
        return Err(AuthError::NotYetCurrent {
            request_time: auth.amz_date.clone(),
            latest: format_amz_date(latest),
            now: format_amz_date(now),
            window: window_text(MAX_CLOCK_SKEW),
        });
    }
    let window = match auth.expires {
        // `expires` is at most a week, far inside i64.
        Some(secs) if auth.presigned => Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX)),
        _ => MAX_CLOCK_SKEW,
    };
    let earliest = now - window;
    if request_time < earliest {
        return Err(AuthError::Expired {
            request_time: auth.amz_date.clone(),
            earliest: format_amz_date(earliest),
            now: format_amz_date(now),
            window: window_text(window),
        });
    }
    Ok(())
}

fn window_text(window: Duration) -> String {
    let secs = window.whole_seconds();
    if secs % 60 == 0 {
        format!("{} min", secs / 60)
    } else {
        format!("{secs} sec")
    }
}

/// The hashed payload: `x-amz-content-sha256` if sent (and consistent with the
/// body), else the SHA-256 of the body.
fn payload_hash(req: &SigV4Request<'_>) -> Result<String, AuthError> {
    let body_hash = || hex::encode(Sha256::digest(req.body));
    let Some(value) = single_header(req.headers, X_AMZ_CONTENT_SHA256)? else {
        return Ok(body_hash());
    };
    let value = value
        .to_str()
        .map_err(|_| malformed("x-amz-content-sha256 is not valid ASCII."))?;
    if value == UNSIGNED_PAYLOAD {
        return Ok(value.to_owned());
    }
    if value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return if value.eq_ignore_ascii_case(&body_hash()) {
            Ok(value.to_owned())
        } else {
            Err(AuthError::ContentSha256Mismatch)
        };
    }
    if value.starts_with("STREAMING-") {
        return Err(malformed(format!(
            "x-amz-content-sha256 '{value}': streaming (chunk-signed) payloads are not supported."
        )));
    }
    Err(malformed(
        "x-amz-content-sha256 must be UNSIGNED-PAYLOAD or a valid sha256 value.",
    ))
}

/// `METHOD\nURI\nQUERY\nHEADERS\n\nSIGNED_HEADERS\nPAYLOAD_HASH`, as bytes
/// (header values need not be UTF-8).
fn canonical_request(req: &SigV4Request<'_>, auth: &ParsedAuth, payload_hash: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(req.method.to_ascii_uppercase().as_bytes());
    out.push(b'\n');
    out.extend_from_slice(canonical_uri(req.raw_path).as_bytes());
    out.push(b'\n');
    out.extend_from_slice(canonical_query(req.raw_query, auth.presigned).as_bytes());
    out.push(b'\n');
    for name in &auth.signed_headers {
        let name = name.to_ascii_lowercase();
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        for (i, value) in req.headers.get_all(name.as_str()).iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_trimmed(&mut out, value.as_bytes());
        }
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(auth.signed_headers.join(";").as_bytes());
    out.push(b'\n');
    out.extend_from_slice(payload_hash.as_bytes());
    out
}

/// botocore's `' '.join(value.split())`: trimmed, whitespace runs collapsed.
fn push_trimmed(out: &mut Vec<u8>, value: &[u8]) {
    let is_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c');
    for (i, word) in value.split(is_space).filter(|w| !w.is_empty()).enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(word);
    }
}

/// The raw (still percent-encoded) path, normalised, then encoded again —
/// botocore's `quote(normalize_url_path(path), safe='/~')`.
fn canonical_uri(raw_path: &str) -> String {
    percent_encode(remove_dot_segments(raw_path).as_bytes(), PATH).to_string()
}

/// botocore's `normalize_url_path`: RFC 3986 §5.2.4 plus collapsing `//`.
/// A trailing `/` is kept only when the path ends with one.
fn remove_dot_segments(path: &str) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let first = if path.starts_with('/') { "/" } else { "" };
    let last = if path.ends_with('/') && !segments.is_empty() {
        "/"
    } else {
        ""
    };
    format!("{first}{}{last}", segments.join("/"))
}

/// Decoded then re-encoded pairs, sorted by key then value, `&`-joined.
fn canonical_query(raw_query: Option<&str>, presigned: bool) -> String {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (key, value) in query_pairs(raw_query) {
        let key = decode(key);
        if presigned && key == Q_SIGNATURE.as_bytes() {
            continue;
        }
        pairs.push((
            percent_encode(&key, UNRESERVED).to_string(),
            percent_encode(&decode(value), UNRESERVED).to_string(),
        ));
    }
    pairs.sort();
    let mut out = String::new();
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(key);
        out.push('=');
        out.push_str(value);
    }
    out
}

/// Raw `key=value` pairs (a missing `=` means an empty value); empty pairs
/// (`a=1&&b=2`) are skipped.
fn query_pairs(raw_query: Option<&str>) -> impl Iterator<Item = (&str, &str)> {
    raw_query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

/// Percent-decodes a query component, `+` meaning space (as `application/
/// x-www-form-urlencoded`, the AWS SDKs and AWS itself read it).
fn decode(component: &str) -> Vec<u8> {
    if component.contains('+') {
        percent_decode_str(&component.replace('+', " ")).collect()
    } else {
        percent_decode_str(component).collect()
    }
}

/// Compares every byte whatever the first difference, so the time taken does
/// not tell an attacker how much of a forged signature was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a
        .iter()
        .zip(b)
        .fold(0u8, |acc, (x, y)| black_box(acc | (x ^ y)));
    diff == 0
}

/// `YYYYMMDDTHHMMSSZ` → UTC time.
fn parse_amz_date(s: &str) -> Option<OffsetDateTime> {
    let b = s.as_bytes();
    if !s.is_ascii() || b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let year = i32::try_from(digits(&s[0..4], 4, 4)?).ok()?;
    let month = Month::try_from(u8::try_from(digits(&s[4..6], 2, 2)?).ok()?).ok()?;
    let day = u8::try_from(digits(&s[6..8], 2, 2)?).ok()?;
    let hour = u8::try_from(digits(&s[9..11], 2, 2)?).ok()?;
    let minute = u8::try_from(digits(&s[11..13], 2, 2)?).ok()?;
    let second = u8::try_from(digits(&s[13..15], 2, 2)?).ok()?;
    let date = Date::from_calendar_date(year, month, day).ok()?;
    let time = Time::from_hms(hour, minute, second).ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_utc())
}

/// An RFC 1123 / RFC 2822 date: `Fri, 27 Nov 2026 00:00:00 GMT`. The zone may
/// also be numeric — botocore sends `-0000`.
fn parse_http_date(s: &str) -> Option<OffsetDateTime> {
    if !s.is_ascii() {
        return None;
    }
    let s = s.trim();
    let s = s.split_once(',').map_or(s, |(_, rest)| rest);
    let mut fields = s.split_ascii_whitespace();
    let (day, month, year, clock, zone) = (
        fields.next()?,
        fields.next()?,
        fields.next()?,
        fields.next()?,
        fields.next()?,
    );
    if fields.next().is_some() {
        return None;
    }
    let day = u8::try_from(digits(day, 1, 2)?).ok()?;
    let month = match month.to_ascii_lowercase().as_str() {
        "jan" => Month::January,
        "feb" => Month::February,
        "mar" => Month::March,
        "apr" => Month::April,
        "may" => Month::May,
        "jun" => Month::June,
        "jul" => Month::July,
        "aug" => Month::August,
        "sep" => Month::September,
        "oct" => Month::October,
        "nov" => Month::November,
        "dec" => Month::December,
        _ => return None,
    };
    let year = i32::try_from(digits(year, 4, 4)?).ok()?;
    let mut hms = clock.split(':');
    let (h, m, sec) = (hms.next()?, hms.next()?, hms.next()?);
    if hms.next().is_some() {
        return None;
    }
    let time = Time::from_hms(
        u8::try_from(digits(h, 2, 2)?).ok()?,
        u8::try_from(digits(m, 2, 2)?).ok()?,
        u8::try_from(digits(sec, 2, 2)?).ok()?,
    )
    .ok()?;
    let offset_secs = match zone {
        "GMT" | "UT" | "UTC" | "Z" => 0,
        _ => {
            let (sign, hhmm) = match zone.as_bytes().first()? {
                b'+' => (1, &zone[1..]),
                b'-' => (-1, &zone[1..]),
                _ => return None,
            };
            if hhmm.len() != 4 {
                return None;
            }
            let hours = i32::try_from(digits(&hhmm[..2], 2, 2)?).ok()?;
            let minutes = i32::try_from(digits(&hhmm[2..], 2, 2)?).ok()?;
            sign * (hours * 3600 + minutes * 60)
        }
    };
    let date = Date::from_calendar_date(year, month, day).ok()?;
    let offset = UtcOffset::from_whole_seconds(offset_secs).ok()?;
    Some(
        PrimitiveDateTime::new(date, time)
            .assume_offset(offset)
            .to_offset(UtcOffset::UTC),
    )
}

/// A number written with `min..=max` ASCII digits and nothing else.
fn digits(s: &str, min: usize, max: usize) -> Option<u64> {
    if s.len() < min || s.len() > max || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn format_amz_date(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn malformed(message: impl Into<String>) -> AuthError {
    AuthError::Malformed(message.into())
}

/// Derived SigV4 signing keys (`kSigning`), so a busy key costs one HMAC per
/// request instead of five. Keyed by access key, a SHA-256 of the secret (a
/// rotated secret gets a fresh entry, and no plain secret is kept), date,
/// region and service. Bounded: emptied when it reaches 1024 entries.
#[derive(Default)]
pub struct SigningKeyCache {
    keys: Mutex<HashMap<CacheKey, Vec<u8>>>,
}

#[derive(Hash, PartialEq, Eq)]
struct CacheKey {
    access_key_id: String,
    secret_sha256: [u8; 32],
    date: Date,
    region: String,
    service: String,
}

impl SigningKeyCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many keys are cached.
    pub fn len(&self) -> usize {
        self.keys.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.lock().is_empty()
    }

    fn signing_key(
        &self,
        access_key_id: &str,
        secret: &str,
        date: Date,
        region: &str,
        service: &str,
    ) -> Vec<u8> {
        let cache_key = CacheKey {
            access_key_id: access_key_id.to_owned(),
            secret_sha256: Sha256::digest(secret.as_bytes()).into(),
            date,
            region: region.to_owned(),
            service: service.to_owned(),
        };
        if let Some(key) = self.keys.lock().get(&cache_key) {
            return key.clone();
        }
        // Derived outside the lock; a racing request may derive it too.
        let midnight = SystemTime::from(date.midnight().assume_utc());
        let key = generate_signing_key(secret, midnight, region, service)
            .as_ref()
            .to_vec();
        let mut keys = self.keys.lock();
        if keys.len() >= SIGNING_KEY_CACHE_CAPACITY {
            keys.clear();
        }
        keys.insert(cache_key, key.clone());
        key
    }
}

impl fmt::Debug for SigningKeyCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeyCache")
            .field("entries", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests;
