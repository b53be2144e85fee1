//! Authentication of every signed request: SigV4 verified by recomputing the
//! signature with the caller's secret, and the [`Caller`] it yields.

use crate::auth::{self, SigV4Request};
use crate::error::ApiError;
use crate::query::{self, Service};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hearth_types::function::Account;
use hearth_types::{ErrorKind, LambdaError};

/// The authenticated account of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub account: Account,
    /// The role session, when the request is signed with temporary
    /// credentials from `AssumeRole`.
    pub session: Option<crate::sts::Session>,
}

impl Caller {
    pub fn id(&self) -> &str {
        &self.account.id
    }
}

/// Buffers the body (it is part of the signature), verifies the signature
/// and puts the [`Caller`] into the request's extensions.
pub async fn authenticate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    // Query-protocol requests (STS, IAM) get their errors in XML, which
    // their clients parse; everything else in Lambda's JSON.
    let query = query::is_query_request(
        &parts.method,
        parts.uri.path(),
        parts.uri.query(),
        &parts.headers,
    );
    let mut service = Service("sts".to_owned());
    let fail = |e: LambdaError, service: &Service| {
        if query {
            query::from_lambda(&e, service)
        } else {
            ApiError(e).into_response()
        }
    };
    let bytes = match axum::body::to_bytes(body, hearth_types::limits::CONTROL_BODY_MAX_BYTES).await
    {
        Ok(b) => b,
        Err(_) => {
            return fail(
                LambdaError::new(
                    ErrorKind::RequestEntityTooLarge,
                    format!(
                        "Request must be smaller than {} bytes for this operation",
                        hearth_types::limits::CONTROL_BODY_MAX_BYTES
                    ),
                ),
                &service,
            )
        }
    };
    let sreq = SigV4Request {
        method: parts.method.as_str(),
        raw_path: parts.uri.path(),
        raw_query: parts.uri.query(),
        headers: &parts.headers,
        body: &bytes,
    };
    let parsed = match auth::parse(&sreq) {
        Ok(p) => p,
        Err(e) => return fail(LambdaError::from(&e), &service),
    };
    service = Service(parsed.service.clone());
    let caller = match signer(&state, &parts, &sreq, &parsed).await {
        Ok(c) => c,
        Err(e) => return fail(e, &service),
    };
    let mut req = Request::from_parts(parts, Body::from(bytes));
    req.extensions_mut().insert(caller);
    mark_service(&mut req, query, service);
    next.run(req).await
}

/// The account (and role session) whose key signed `sreq`, once the
/// signature is verified: what [`authenticate`] puts into a request, and
/// what a Function URL with `AuthType` `AWS_IAM` asks of its caller.
pub async fn signer(
    state: &AppState,
    parts: &http::request::Parts,
    sreq: &SigV4Request<'_>,
    parsed: &auth::ParsedAuth,
) -> Result<Caller, LambdaError> {
    let key_id = parsed.access_key_id.clone();
    if key_id.starts_with(crate::sts::SESSION_KEY_PREFIX) {
        // Temporary credentials: the session token says whose they are.
        let (account, session) = session_of(state, parts, &key_id).await?;
        let secret = crate::sts::secret_for(&state.settings.session_key, &key_id);
        if let Err(e) = auth::verify(
            sreq,
            parsed,
            &secret,
            time::OffsetDateTime::now_utc(),
            &state.signing_keys,
        ) {
            tracing::debug!(access_key = %parsed.access_key_id, error = %e, "signature refused");
            return Err(LambdaError::from(&e));
        }
        return Ok(Caller {
            account,
            session: Some(session),
        });
    }
    // The key's account, from what an earlier request read while the
    // registry has not been written since, else from the registry (off the
    // async threads). A deleted key or account moves the epoch.
    let epoch = state.registry.write_epoch();
    let cached = state
        .access_keys
        .lock()
        .get(&key_id)
        .filter(|(e, _)| *e == epoch)
        .map(|(_, found)| found.clone());
    let found = match cached {
        Some(found) => Some(found),
        None => {
            let found = state
                .blocking(move |s| Ok(s.registry.find_access_key(&key_id)?))
                .await
                .map_err(|e| e.0)?;
            if let Some(f) = &found {
                let mut keys = state.access_keys.lock();
                // Bounded: many distinct keys only mean more registry reads.
                if keys.len() >= 10_000 {
                    keys.clear();
                }
                keys.insert(f.1.access_key_id.clone(), (epoch, f.clone()));
            }
            found
        }
    };
    let Some((account, key)) = found else {
        return Err(LambdaError::new(
            ErrorKind::UnrecognizedClient,
            "The security token included in the request is invalid.",
        ));
    };
    if let Err(e) = auth::verify(
        sreq,
        parsed,
        &key.secret_access_key,
        time::OffsetDateTime::now_utc(),
        &state.signing_keys,
    ) {
        tracing::debug!(access_key = %parsed.access_key_id, error = %e, "signature refused");
        return Err(LambdaError::from(&e));
    }
    Ok(Caller {
        account,
        session: None,
    })
}

/// The account and role session of a request signed with temporary
/// credentials: its session token (`X-Amz-Security-Token`, as a header or
/// a presigned URL's parameter) must be this node's, of this access key,
/// unexpired, and its account must still exist.
async fn session_of(
    state: &AppState,
    parts: &http::request::Parts,
    key_id: &str,
) -> Result<(Account, crate::sts::Session), LambdaError> {
    let token = parts
        .headers
        .get("x-amz-security-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| {
            form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
                .find(|(k, _)| k == "X-Amz-Security-Token")
                .map(|(_, v)| v.into_owned())
        });
    let invalid = || {
        LambdaError::new(
            ErrorKind::UnrecognizedClient,
            "The security token included in the request is invalid.",
        )
    };
    let token = token.ok_or_else(invalid)?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let session = crate::sts::verify(&state.settings.session_key, &token, key_id, now).map_err(
        |e| match e {
            crate::sts::TokenError::Expired => LambdaError::new(
                ErrorKind::ExpiredToken,
                "The security token included in the request is expired",
            ),
            crate::sts::TokenError::Invalid => invalid(),
        },
    )?;
    let id = session.account.clone();
    let account = state
        .blocking(move |s| Ok(s.registry.list_accounts()?))
        .await
        .map_err(|e| e.0)?
        .into_iter()
        .find(|a| a.id == id)
        .ok_or_else(invalid)?;
    Ok((account, session))
}

/// Tells `/`'s handler which service the request's credential scope
/// named: a query-protocol request carries [`Service`], a JSON-protocol one
/// (`X-Amz-Target`) [`query::JsonService`].
fn mark_service(req: &mut Request, query: bool, service: Service) {
    if query {
        req.extensions_mut().insert(service);
    } else if req.uri().path() == "/" {
        req.extensions_mut().insert(query::JsonService(service.0));
    }
}
