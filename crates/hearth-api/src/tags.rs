//! `TagResource`, `UntagResource` and `ListTags` on functions
//! (`/2017-03-31/tags/{ARN}`), with Lambda's shapes and errors: tags belong
//! to the function (never to a version or alias), at most 50, keys of 1–128
//! characters not starting with `aws:`, values of at most 256.
//!
//! One tag is Hearth's own: `hearth:isolation` = `microvm` or `process`,
//! any other value refused. It chooses where a `python3.x` function runs
//! (over the node's `[microvm] python`): the supervisor is told of every
//! change, and retires the function's warm capacity when it moves, so the
//! next sandbox or VM it gets is of the new kind.

use crate::caller::Caller;
use crate::error::ApiResult;
use crate::request::json_body;
use crate::state::AppState;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use bytes::Bytes;
use hearth_types::function::Isolation;
use hearth_types::LambdaError;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Lambda's limit on a function's tags.
pub const MAX_TAGS: usize = 50;
/// The tag that chooses a function's isolation unit.
pub const ISOLATION_TAG: &str = Isolation::TAG;

const ARN_PATTERN: &str = "arn:(aws[a-zA-Z-]*):lambda:(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\\d{1}:\\d{12}:(function:[a-zA-Z0-9-_]+(:(\\$LATEST|[a-zA-Z0-9-_]+))?|layer:([a-zA-Z0-9-_]+)|code-signing-config:csc-[a-z0-9]{17}|event-source-mapping:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|capacity-provider:[a-zA-Z0-9-_]+)";

/// A function ARN taken apart: account, name, qualifier.
fn parse_arn(arn: &str) -> Result<(String, String, Option<String>), LambdaError> {
    let invalid = || {
        LambdaError::validation(&[format!(
            "Value '{arn}' at 'resource' failed to satisfy constraint: Member must satisfy regular expression pattern: {ARN_PATTERN}"
        )])
    };
    let parts: Vec<&str> = arn.split(':').collect();
    let ok_name = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    if !(parts.len() == 7 || parts.len() == 8)
        || parts[0] != "arn"
        || !parts[1].starts_with("aws")
        || parts[2] != "lambda"
        || parts[3].len() < 4
        || parts[4].len() != 12
        || !parts[4].bytes().all(|b| b.is_ascii_digit())
        || parts[5] != "function"
        || !ok_name(parts[6])
        || parts.get(7).is_some_and(|q| *q != "$LATEST" && !ok_name(q))
    {
        return Err(invalid());
    }
    Ok((
        parts[4].to_owned(),
        parts[6].to_owned(),
        parts.get(7).map(|q| (*q).to_owned()),
    ))
}

/// The function an ARN names, for the caller: its own, unqualified.
fn function_of(caller: &Caller, arn: &str) -> Result<String, LambdaError> {
    let (account, name, qualifier) = parse_arn(arn)?;
    if account != caller.id() {
        return Err(LambdaError::not_found(format!("Function not found: {arn}")));
    }
    if qualifier.is_some() {
        return Err(LambdaError::invalid(
            "Tags on function aliases and versions are not supported. Please specify a function ARN.",
        ));
    }
    Ok(name)
}

/// Checks tags as `CreateFunction` and `TagResource` take them.
pub fn validate_tags(tags: &BTreeMap<String, String>) -> Result<(), LambdaError> {
    if tags.len() > MAX_TAGS {
        return Err(LambdaError::invalid(
            "Number of tags exceeds resource tag limit.",
        ));
    }
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 || k.to_ascii_lowercase().starts_with("aws:") {
            return Err(LambdaError::invalid(format!(
                "Tag key '{k}' is not valid: keys are 1 to 128 characters and may not start with 'aws:'."
            )));
        }
        if v.chars().count() > 256 {
            return Err(LambdaError::invalid(format!(
                "The value of tag '{k}' is longer than 256 characters."
            )));
        }
        if k == ISOLATION_TAG && Isolation::parse(v).is_none() {
            return Err(LambdaError::invalid(format!(
                "The tag {ISOLATION_TAG} must be 'microvm' or 'process', not '{v}'."
            )));
        }
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TagInput {
    tags: Option<BTreeMap<String, String>>,
}

pub async fn tag_resource(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(arn): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let name = function_of(&caller, &arn)?;
    let input: TagInput = json_body(&body)?;
    let tags = match input.tags {
        Some(t) if !t.is_empty() => t,
        _ => {
            return Err(LambdaError::invalid(
                "An error occurred and the request cannot be processed.",
            )
            .into())
        }
    };
    validate_tags(&tags)?;
    state
        .blocking(move |s| {
            s.registry
                .tag_function(caller.id(), &name, &tags, MAX_TAGS)?;
            if let Some(i) = tags.get(ISOLATION_TAG).and_then(|v| Isolation::parse(v)) {
                s.executor.set_isolation_tag(caller.id(), &name, Some(i));
            }
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn untag_resource(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(arn): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<StatusCode> {
    let name = function_of(&caller, &arn)?;
    let keys: Vec<String> = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .filter(|(k, _)| k == "tagKeys")
        .map(|(_, v)| v.into_owned())
        .collect();
    if keys.is_empty() {
        return Err(LambdaError::validation(&[
            "Value null at 'tagKeys' failed to satisfy constraint: Member must not be null".into(),
        ])
        .into());
    }
    state
        .blocking(move |s| {
            s.registry.untag_function(caller.id(), &name, &keys)?;
            if keys.iter().any(|k| k == ISOLATION_TAG) {
                s.executor.set_isolation_tag(caller.id(), &name, None);
            }
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_tags(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(arn): Path<String>,
) -> ApiResult<Json<Value>> {
    let name = function_of(&caller, &arn)?;
    let tags = state
        .blocking(move |s| Ok(s.registry.tags(caller.id(), &name)?))
        .await?;
    Ok(Json(json!({ "Tags": tags })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_are_parsed_and_checked() {
        let (a, n, q) = parse_arn("arn:aws:lambda:us-east-1:000000000000:function:f-1").unwrap();
        assert_eq!((a.as_str(), n.as_str(), q), ("000000000000", "f-1", None));
        let (_, _, q) =
            parse_arn("arn:aws:lambda:us-east-1:000000000000:function:f:$LATEST").unwrap();
        assert_eq!(q.as_deref(), Some("$LATEST"));
        for bad in [
            "arn:aws:something",
            "arn:aws:lambda:us-east-1:123:function:f",
            "arn:aws:lambda:us-east-1:000000000000:layer:f",
            "arn:aws:lambda:us-east-1:000000000000:function:f g",
        ] {
            let e = parse_arn(bad).unwrap_err();
            assert!(
                e.message
                    .starts_with("1 validation error detected: Value '"),
                "{bad}: {}",
                e.message
            );
        }
    }

    #[test]
    fn tags_are_validated() {
        let t = |k: &str, v: &str| BTreeMap::from([(k.to_owned(), v.to_owned())]);
        assert!(validate_tags(&t("team", "x")).is_ok());
        assert!(validate_tags(&t(ISOLATION_TAG, "microvm")).is_ok());
        assert!(validate_tags(&t(ISOLATION_TAG, "vm")).is_err());
        assert!(validate_tags(&t("aws:x", "y")).is_err());
        assert!(validate_tags(&t(&"k".repeat(129), "y")).is_err());
        assert!(validate_tags(&t("k", &"v".repeat(257))).is_err());
        let many: BTreeMap<String, String> =
            (0..51).map(|i| (format!("{i}"), String::new())).collect();
        assert!(validate_tags(&many).is_err());
    }
}
