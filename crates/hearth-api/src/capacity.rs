//! An account's capacity settings over the admin API (admin accounts only):
//! `GET` / `PUT /hearth/v1/accounts/{id}/capacity`.
//!
//! ```json
//! {"AccountId": "000000000000",
//!  "Dedicated": {"python:256": 4, "nodejs20.x:128": 1},
//!  "Policy": "burst", "MaxWaitMs": 1000, "GeneralShare": 0.5}
//! ```
//!
//! `Dedicated` maps a runtime profile (`RUNTIME:MEMORY`, see
//! [`hearth_types::capacity`]) to the number of sandboxes the account's
//! dedicated sub-pool holds for it. `PUT` replaces the settings: a field
//! left out takes its default (no dedicated sandboxes, `burst`, 1000 ms,
//! 0.5).

use crate::caller::Caller;
use crate::error::ApiResult;
use crate::request::json_body;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use bytes::Bytes;
use hearth_types::capacity::{
    dedicated_count_message, AccountCapacity, CapacityMode, DEDICATED_MAX_PER_PROFILE,
    MAX_WAIT_MS_LIMIT,
};
use hearth_types::LambdaError;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The settings as the admin API shows them.
pub fn capacity_shape(c: &AccountCapacity) -> Value {
    json!({
        "AccountId": c.account_id,
        "Dedicated": c.dedicated,
        "Policy": c.policy.as_str(),
        "MaxWaitMs": c.max_wait_ms,
        "GeneralShare": c.general_share,
    })
}

/// `PUT`'s body. Numbers are read wide so that a negative or oversized one
/// gets a message naming the field rather than a parse error.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct CapacityInput {
    account_id: Option<String>,
    dedicated: Option<BTreeMap<String, i64>>,
    policy: Option<String>,
    max_wait_ms: Option<i64>,
    general_share: Option<f64>,
}

impl CapacityInput {
    /// The settings this body asks for `account`, checked field by field.
    fn into_capacity(self, account: &str) -> Result<AccountCapacity, LambdaError> {
        if let Some(given) = &self.account_id {
            if given != account {
                return Err(LambdaError::invalid(format!(
                    "AccountId {given} in the body does not match the account {account} in the path."
                )));
            }
        }
        let mut c = AccountCapacity::defaults(account);
        for (profile, n) in self.dedicated.unwrap_or_default() {
            let n = u32::try_from(n)
                .ok()
                .filter(|n| *n <= DEDICATED_MAX_PER_PROFILE)
                .ok_or_else(|| dedicated_count_message(&profile, &n.to_string()))?;
            c.dedicated.insert(profile, n);
        }
        if let Some(p) = self.policy {
            c.policy = CapacityMode::parse(&p).ok_or_else(|| {
                LambdaError::invalid(format!(
                    "Policy '{p}' is invalid: use one of burst, wait, reject."
                ))
            })?;
        }
        if let Some(ms) = self.max_wait_ms {
            c.max_wait_ms = u32::try_from(ms)
                .ok()
                .filter(|ms| *ms <= MAX_WAIT_MS_LIMIT)
                .ok_or_else(|| {
                    LambdaError::invalid(format!(
                        "MaxWaitMs {ms} is out of range: it must be between 0 and {MAX_WAIT_MS_LIMIT}."
                    ))
                })?;
        }
        if let Some(share) = self.general_share {
            c.general_share = share;
        }
        c.validate()?;
        Ok(c)
    }
}

pub async fn get_capacity(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    crate::admin::require_admin(&caller, "manage capacity")?;
    let c = state
        .blocking(move |s| Ok(s.registry.get_account_capacity(&id)?))
        .await?;
    Ok(Json(capacity_shape(&c)))
}

pub async fn put_capacity(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    crate::admin::require_admin(&caller, "manage capacity")?;
    let input: CapacityInput = json_body(&body)?;
    let capacity = input.into_capacity(&id)?;
    let stored = state
        .blocking(move |s| {
            let stored = s.registry.put_account_capacity(&capacity)?;
            crate::provisioned::CapacityEvents::capacity_changed(&s.executor, &stored.account_id);
            Ok(stored)
        })
        .await?;
    Ok(Json(capacity_shape(&stored)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_types::ErrorKind;

    fn input(v: Value) -> CapacityInput {
        serde_json::from_value(v).expect("a well-formed body")
    }

    #[test]
    fn missing_fields_take_defaults() {
        let c = input(json!({}))
            .into_capacity("000000000000")
            .expect("valid");
        assert_eq!(c, AccountCapacity::defaults("000000000000"));
        assert_eq!(
            capacity_shape(&c),
            json!({
                "AccountId": "000000000000",
                "Dedicated": {},
                "Policy": "burst",
                "MaxWaitMs": 1000,
                "GeneralShare": 0.5,
            })
        );
    }

    #[test]
    fn every_field_is_checked() {
        let a = "000000000000";
        let cases = [
            (json!({"AccountId": "111111111111"}), "does not match"),
            (
                json!({"Dedicated": {"python:256": -1}}),
                "Dedicated count -1",
            ),
            (
                json!({"Dedicated": {"python:256": 1_000_000}}),
                "Dedicated count 1000000",
            ),
            (
                json!({"Dedicated": {"python:300": 1}}),
                "Profile 'python:300'",
            ),
            (json!({"Policy": "Burst"}), "Policy 'Burst' is invalid"),
            (json!({"MaxWaitMs": -5}), "MaxWaitMs -5"),
            (json!({"MaxWaitMs": 900_001}), "MaxWaitMs 900001"),
            (json!({"GeneralShare": 0}), "GeneralShare 0"),
            (json!({"GeneralShare": 1.01}), "GeneralShare 1.01"),
        ];
        for (body, expected) in cases {
            let e = input(body.clone())
                .into_capacity(a)
                .expect_err(&body.to_string());
            assert_eq!(e.kind, ErrorKind::InvalidParameterValue);
            assert!(e.message.contains(expected), "{body}: {}", e.message);
        }
        assert!(
            serde_json::from_value::<CapacityInput>(json!({"Policy": "wait", "Extra": 1})).is_err()
        );
    }
}
