//! Domain records rendered as Lambda's JSON shapes.

use hearth_types::arn::NodeIdentity;
use hearth_types::function::{Alias, VersionRecord};
use serde_json::{json, Map, Value};

/// `LastModified` as Lambda prints it: `2026-01-01T00:00:00.000+0000`.
pub fn lambda_timestamp(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]+0000"
    );
    t.format(&fmt).unwrap_or_default()
}

/// A `FunctionConfiguration` whose `FunctionArn` is unqualified for
/// `$LATEST` and qualified by the version number otherwise.
pub fn function_configuration(node: &NodeIdentity, v: &VersionRecord) -> Value {
    let q = (v.version != "$LATEST").then_some(v.version.as_str());
    function_configuration_as(node, v, q)
}

/// A `FunctionConfiguration` whose `FunctionArn` carries `arn_qualifier` (as
/// AWS answers a lookup by alias, or lists `$LATEST` among versions).
pub fn function_configuration_as(
    node: &NodeIdentity,
    v: &VersionRecord,
    arn_qualifier: Option<&str>,
) -> Value {
    let c = &v.config;
    let l = &v.lifecycle;
    let arn = node.arn(&v.account_id, &v.function_name, arn_qualifier);
    let mut m = Map::new();
    let mut put = |k: &str, val: Value| {
        m.insert(k.to_owned(), val);
    };
    put("FunctionName", json!(v.function_name));
    put("FunctionArn", json!(arn));
    put("Runtime", json!(c.runtime.to_string()));
    put("Role", json!(c.role));
    put("Handler", json!(c.handler));
    put("CodeSize", json!(v.code.size));
    put("Description", json!(c.description));
    put("Timeout", json!(c.timeout));
    put("MemorySize", json!(c.memory_size));
    put("LastModified", json!(lambda_timestamp(v.last_modified_ms)));
    put("CodeSha256", json!(v.code.code_sha256()));
    put("Version", json!(v.version));
    // AWS omits the field for a function created without `Environment`.
    if let Some(env) = &c.environment {
        put("Environment", json!({"Variables": env}));
    }
    put("TracingConfig", json!({"Mode": "PassThrough"}));
    put("RevisionId", json!(v.revision_id));
    put("State", json!(l.state.as_str()));
    if let Some(r) = &l.state_reason {
        put("StateReason", json!(r));
    }
    if let Some(r) = &l.state_reason_code {
        put("StateReasonCode", json!(r));
    }
    if let Some(s) = l.last_update_status {
        put("LastUpdateStatus", json!(s.as_str()));
    }
    if let Some(r) = &l.last_update_status_reason {
        put("LastUpdateStatusReason", json!(r));
    }
    if let Some(r) = &l.last_update_status_reason_code {
        put("LastUpdateStatusReasonCode", json!(r));
    }
    put("PackageType", json!("Zip"));
    put("Architectures", json!(c.architectures));
    put("EphemeralStorage", json!({"Size": c.ephemeral_storage_mb}));
    if let Some(layers) = crate::layers::layers_shape(&c.layers) {
        put("Layers", layers);
    }
    if let Some(arn) = &c.dead_letter_target {
        put("DeadLetterConfig", json!({ "TargetArn": arn }));
    }
    put(
        "SnapStart",
        json!({"ApplyOn": "None", "OptimizationStatus": "Off"}),
    );
    put(
        "LoggingConfig",
        json!({"LogFormat": "Text", "LogGroup": format!("/aws/lambda/{}", v.function_name)}),
    );
    Value::Object(m)
}

/// An `AliasConfiguration`.
pub fn alias_configuration(node: &NodeIdentity, a: &Alias) -> Value {
    let mut v = json!({
        "AliasArn": node.qualified_arn(&a.account_id, &a.function_name, &a.name),
        "Name": a.name,
        "FunctionVersion": a.function_version,
        "Description": a.description,
        "RevisionId": a.revision_id,
    });
    if !a.routing.is_empty() {
        v["RoutingConfig"] = json!({"AdditionalVersionWeights": a.routing});
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_look_like_lambdas() {
        assert_eq!(lambda_timestamp(0), "1970-01-01T00:00:00.000+0000");
        assert_eq!(
            lambda_timestamp(1_767_225_600_123),
            "2026-01-01T00:00:00.123+0000"
        );
    }
}
