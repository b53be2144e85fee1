//! STS's temporary credentials (`AssumeRole`), without a session table.
//!
//! A session is its token: the access key id, the account, the role and the
//! session's name and expiry, MACed with the node's session key
//! (`<data dir>/sts.key`, made once). The secret is derived from the access
//! key id with the same key. So a node restart keeps every session valid
//! until it expires, nothing is written per `AssumeRole`, and a forged or
//! altered token, or one used with another key id, fails its MAC. A session
//! belongs to the account that assumed the role, and to no other.

use crate::caller::Caller;
use crate::query::{error, escape, xml, Service, STS_XMLNS};
use crate::state::AppState;
use axum::http::StatusCode;
use axum::response::Response;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};

type HmacSha256 = Hmac<sha2::Sha256>;

/// Temporary access key ids start so, as AWS's do.
pub const SESSION_KEY_PREFIX: &str = "ASIA";

/// What a session token carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The temporary access key id.
    #[serde(rename = "k")]
    pub access_key_id: String,
    /// The account that assumed the role.
    #[serde(rename = "a")]
    pub account: String,
    /// The role's ARN.
    #[serde(rename = "r")]
    pub role_arn: String,
    /// The role's id (`AROA…`).
    #[serde(rename = "i")]
    pub role_id: String,
    /// `RoleSessionName`.
    #[serde(rename = "s")]
    pub session_name: String,
    /// When it expires, seconds since the Unix epoch.
    #[serde(rename = "e")]
    pub expires_s: i64,
}

impl Session {
    /// The role's name: the last segment of its ARN.
    pub fn role_name(&self) -> &str {
        self.role_arn.rsplit('/').next().unwrap_or("")
    }

    /// `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`.
    pub fn assumed_role_arn(&self) -> String {
        format!(
            "arn:aws:sts::{}:assumed-role/{}/{}",
            self.account,
            self.role_name(),
            self.session_name
        )
    }

    /// `AROA…:SESSION`.
    pub fn assumed_role_id(&self) -> String {
        format!("{}:{}", self.role_id, self.session_name)
    }
}

/// Why a session token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Malformed, forged, or not of this access key.
    Invalid,
    /// Past its expiry.
    Expired,
}

fn mac(key: &[u8; 32], label: &[u8], data: &[u8]) -> Vec<u8> {
    // An HMAC takes a key of any length.
    #[allow(clippy::expect_used)]
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes any key size");
    m.update(label);
    m.update(&[0]);
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// The secret of a temporary access key id.
pub fn secret_for(key: &[u8; 32], access_key_id: &str) -> String {
    let mut s = B64.encode(mac(key, b"secret", access_key_id.as_bytes()));
    s.truncate(40);
    s
}

/// A fresh temporary access key id: `ASIA` and 16 characters of [A-Z2-7].
pub fn new_access_key_id() -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let bytes: [u8; 16] = rand::random();
    let mut id = String::from(SESSION_KEY_PREFIX);
    id.extend(bytes.iter().map(|b| ALPHABET[usize::from(b & 31)] as char));
    id
}

/// The token of `session`.
pub fn mint(key: &[u8; 32], session: &Session) -> String {
    // Serialising a struct of strings and an integer cannot fail.
    let payload = B64.encode(serde_json::to_vec(session).unwrap_or_default());
    let tag = B64.encode(mac(key, b"token", payload.as_bytes()));
    format!("{payload}.{tag}")
}

/// The session of `token`, if it is this node's, of `access_key_id`, and
/// not expired at `now_s`.
pub fn verify(
    key: &[u8; 32],
    token: &str,
    access_key_id: &str,
    now_s: i64,
) -> Result<Session, TokenError> {
    let (payload, tag) = token.split_once('.').ok_or(TokenError::Invalid)?;
    let tag = B64.decode(tag).map_err(|_| TokenError::Invalid)?;
    // Constant-time comparison of the MAC.
    #[allow(clippy::expect_used)]
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes any key size");
    m.update(b"token");
    m.update(&[0]);
    m.update(payload.as_bytes());
    m.verify_slice(&tag).map_err(|_| TokenError::Invalid)?;
    let raw = B64.decode(payload).map_err(|_| TokenError::Invalid)?;
    let s: Session = serde_json::from_slice(&raw).map_err(|_| TokenError::Invalid)?;
    if s.access_key_id != access_key_id {
        return Err(TokenError::Invalid);
    }
    if s.expires_s <= now_s {
        return Err(TokenError::Expired);
    }
    Ok(s)
}

/// The node's session key in `path`: read, or made (32 random bytes, mode
/// 0600) the first time.
pub fn load_or_create_key(path: &std::path::Path) -> std::io::Result<[u8; 32]> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::read(path) {
        Ok(b) if b.len() == 32 => {
            let mut k = [0u8; 32];
            k.copy_from_slice(&b);
            return Ok(k);
        }
        Ok(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} is not a 32-byte key", path.display()),
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let key: [u8; 32] = rand::random();
    let tmp = path.with_extension("key.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&key)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(key)
}

/// Session durations `AssumeRole` takes, seconds (a role's own maximum
/// may be lower; a session assuming another role gets an hour at most, as
/// AWS limits role chaining).
const MIN_DURATION_S: i64 = 900;
const CHAINED_MAX_S: i64 = 3600;

/// A `RoleSessionName`: 2–64 of `[\w+=,.@-]`.
fn valid_session_name(s: &str) -> bool {
    (2..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
}

/// STS `AssumeRole`: temporary credentials for a role of the caller's own
/// account. Hearth evaluates no trust policy: any caller of the account
/// may assume any of its roles; no caller may assume another account's.
pub async fn assume_role(
    state: &AppState,
    caller: &Caller,
    params: &[(String, String)],
    service: &Service,
) -> Response {
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let invalid = |m: String| error(StatusCode::BAD_REQUEST, "ValidationError", &m, service);
    let null = |field: &str| {
        invalid(format!(
            "1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"
        ))
    };
    let Some(role_arn) = param("RoleArn") else {
        return null("roleArn");
    };
    let Some(session_name) = param("RoleSessionName") else {
        return null("roleSessionName");
    };
    if !(20..=2048).contains(&role_arn.len()) {
        return invalid(format!(
            "1 validation error detected: Value '{role_arn}' at 'roleArn' failed to satisfy constraint: Member must have length greater than or equal to 20"
        ));
    }
    if !valid_session_name(session_name) {
        return invalid(format!(
            "1 validation error detected: Value '{session_name}' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*"
        ));
    }
    let duration = match param("DurationSeconds").map(str::parse::<i64>) {
        None => 3600,
        Some(Ok(d)) if (MIN_DURATION_S..=43_200).contains(&d) => d,
        Some(_) => {
            return invalid(format!(
                "1 validation error detected: Value '{}' at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to 900 and less than or equal to 43200",
                param("DurationSeconds").unwrap_or("")
            ))
        }
    };
    let Some(arn) = hearth_store::iam::RoleArn::parse(role_arn) else {
        return invalid(format!("{role_arn} is invalid"));
    };
    let who = caller.session.as_ref().map_or_else(
        || format!("arn:aws:iam::{}:root", caller.id()),
        Session::assumed_role_arn,
    );
    let denied = || {
        error(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            &format!(
                "User: {who} is not authorized to perform: sts:AssumeRole on resource: {role_arn}"
            ),
            service,
        )
    };
    if arn.account_id != caller.id() {
        return denied();
    }
    let (account, name) = (caller.id().to_owned(), arn.name.clone());
    let found = state
        .blocking(move |s| Ok(s.registry.find_role(&account, &name)?))
        .await;
    let role = match found {
        Ok(Some(r)) if r.path == arn.path => r,
        Ok(_) => return denied(),
        Err(e) => return crate::query::from_lambda(&e.0, service),
    };
    let max = if caller.session.is_some() {
        CHAINED_MAX_S
    } else {
        i64::from(role.max_session_duration)
    };
    if duration > max {
        return invalid(format!(
            "The requested DurationSeconds exceeds the {} set for this role.",
            if caller.session.is_some() {
                "1 hour session limit for roles assumed by role chaining"
            } else {
                "MaxSessionDuration"
            }
        ));
    }
    let now = time::OffsetDateTime::now_utc();
    let session = Session {
        access_key_id: new_access_key_id(),
        account: caller.id().to_owned(),
        role_arn: role.arn.clone(),
        role_id: role.id.clone(),
        session_name: session_name.to_owned(),
        expires_s: now.unix_timestamp() + duration,
    };
    let key = &state.settings.session_key;
    let expiration = time::OffsetDateTime::from_unix_timestamp(session.expires_s)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    xml(
        StatusCode::OK,
        format!(
            "<AssumeRoleResponse xmlns=\"{STS_XMLNS}\"><AssumeRoleResult>\
             <Credentials><AccessKeyId>{akid}</AccessKeyId>\
             <SecretAccessKey>{secret}</SecretAccessKey>\
             <SessionToken>{token}</SessionToken>\
             <Expiration>{expiration}</Expiration></Credentials>\
             <AssumedRoleUser><AssumedRoleId>{rid}</AssumedRoleId><Arn>{sarn}</Arn></AssumedRoleUser>\
             </AssumeRoleResult>\
             <ResponseMetadata><RequestId>{id}</RequestId></ResponseMetadata></AssumeRoleResponse>",
            akid = session.access_key_id,
            secret = escape(&secret_for(key, &session.access_key_id)),
            token = escape(&mint(key, &session)),
            rid = escape(&session.assumed_role_id()),
            sarn = escape(&session.assumed_role_arn()),
            id = uuid::Uuid::new_v4(),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(exp: i64) -> Session {
        Session {
            access_key_id: new_access_key_id(),
            account: "123456789012".into(),
            role_arn: "arn:aws:iam::123456789012:role/svc/deployer".into(),
            role_id: "AROAEXAMPLE1234567890".into(),
            session_name: "ci".into(),
            expires_s: exp,
        }
    }

    #[test]
    fn a_token_verifies_for_its_key_until_it_expires() {
        let key = [7u8; 32];
        let s = session(1_000);
        let t = mint(&key, &s);
        assert_eq!(verify(&key, &t, &s.access_key_id, 999), Ok(s.clone()));
        assert_eq!(
            verify(&key, &t, &s.access_key_id, 1_000),
            Err(TokenError::Expired)
        );
        assert_eq!(verify(&key, &t, "ASIAOTHER", 999), Err(TokenError::Invalid));
        assert_eq!(
            verify(&[8u8; 32], &t, &s.access_key_id, 999),
            Err(TokenError::Invalid)
        );
        // A payload altered (a later expiry) fails its MAC.
        let mut longer = s.clone();
        longer.expires_s = 9_999;
        let forged = format!(
            "{}.{}",
            mint(&key, &longer).split_once('.').unwrap().0,
            t.split_once('.').unwrap().1
        );
        assert_eq!(
            verify(&key, &forged, &s.access_key_id, 999),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            verify(&key, "garbage", &s.access_key_id, 999),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn ids_and_names() {
        let s = session(1);
        assert!(s.access_key_id.starts_with("ASIA") && s.access_key_id.len() == 20);
        assert_eq!(s.role_name(), "deployer");
        assert_eq!(
            s.assumed_role_arn(),
            "arn:aws:sts::123456789012:assumed-role/deployer/ci"
        );
        assert_eq!(s.assumed_role_id(), "AROAEXAMPLE1234567890:ci");
        let key = [1u8; 32];
        assert_eq!(secret_for(&key, "ASIAX").len(), 40);
        assert_ne!(secret_for(&key, "ASIAX"), secret_for(&key, "ASIAY"));
    }

    #[test]
    fn the_key_is_made_once() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sts.key");
        let k = load_or_create_key(&p).unwrap();
        assert_eq!(load_or_create_key(&p).unwrap(), k);
        std::fs::write(&p, b"short").unwrap();
        assert!(load_or_create_key(&p).is_err());
    }
}
