//! Small helpers every handler uses to read a request.

use crate::caller::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use bytes::Bytes;
use hearth_types::arn::FunctionRef;
use hearth_types::{ErrorKind, LambdaError};
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// Parses a JSON body; an empty body is `{}`.
pub fn json_body<T: DeserializeOwned>(body: &Bytes) -> ApiResult<T> {
    let slice: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(slice).map_err(|e| {
        ApiError(LambdaError::new(
            ErrorKind::InvalidRequestContent,
            format!("Could not parse request body into json: {e}"),
        ))
    })
}

/// The `Qualifier` query parameter most function operations accept.
#[derive(Debug, Default, Deserialize)]
pub struct QualifierQuery {
    #[serde(rename = "Qualifier")]
    pub qualifier: Option<String>,
}

/// `Marker` / `MaxItems` of list operations.
#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    #[serde(rename = "Marker")]
    pub marker: Option<String>,
    #[serde(rename = "MaxItems")]
    pub max_items: Option<String>,
    #[serde(rename = "FunctionVersion")]
    pub function_version: Option<String>,
}

impl PageQuery {
    /// `MaxItems` bounded to 1..=50 (Lambda's page size), default 50.
    pub fn max_items(&self) -> ApiResult<usize> {
        match self.max_items.as_deref() {
            None => Ok(hearth_types::limits::LIST_MAX_ITEMS),
            Some(s) => match s.parse::<i64>() {
                Ok(n) if n >= 1 => Ok((n as usize).min(hearth_types::limits::LIST_MAX_ITEMS)),
                _ => Err(LambdaError::validation(&[format!(
                    "Value '{s}' at 'maxItems' failed to satisfy constraint: Member must have value greater than or equal to 1"
                )])
                .into()),
            },
        }
    }
}

/// Resolves `{name}` (+ `Qualifier`) to a function of the caller's account.
/// A reference to another account's or region's function is "not found".
pub fn resolve(
    state: &AppState,
    caller: &Caller,
    name: &str,
    qualifier: Option<&str>,
) -> ApiResult<FunctionRef> {
    let r = FunctionRef::parse_with_qualifier(name, qualifier)?;
    if !r.is_for(&state.node, caller.id()) {
        return Err(r.not_found(&state.node, caller.id()).into());
    }
    Ok(r)
}
