//! Checks of user input against Lambda's limits, with Lambda's messages.

use crate::error::LambdaError;
use crate::limits::*;
use std::collections::BTreeMap;

/// The pattern AWS quotes for a malformed role ARN.
pub const ROLE_PATTERN: &str = r"arn:(aws[a-zA-Z-]*)?:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+";

pub fn memory_size(mb: u32) -> Result<(), LambdaError> {
    if !(MEMORY_MIN_MB..=MEMORY_MAX_MB).contains(&mb) {
        let bound = if mb < MEMORY_MIN_MB {
            format!("greater than or equal to {MEMORY_MIN_MB}")
        } else {
            format!("less than or equal to {MEMORY_MAX_MB}")
        };
        return Err(LambdaError::validation(&[format!(
            "Value '{mb}' at 'memorySize' failed to satisfy constraint: Member must have value {bound}"
        )]));
    }
    Ok(())
}

pub fn timeout(s: u32) -> Result<(), LambdaError> {
    if !(TIMEOUT_MIN_S..=TIMEOUT_MAX_S).contains(&s) {
        let bound = if s < TIMEOUT_MIN_S {
            format!("greater than or equal to {TIMEOUT_MIN_S}")
        } else {
            format!("less than or equal to {TIMEOUT_MAX_S}")
        };
        return Err(LambdaError::validation(&[format!(
            "Value '{s}' at 'timeout' failed to satisfy constraint: Member must have value {bound}"
        )]));
    }
    Ok(())
}

/// Environment variables: 4 KB measured as AWS measures it (the JSON of the
/// map), keys a valid identifier, no reserved Lambda keys.
pub fn environment(vars: &BTreeMap<String, String>) -> Result<(), LambdaError> {
    let measured = json_object(vars);
    if measured.len() > ENVIRONMENT_MAX_BYTES {
        return Err(LambdaError::invalid(format!(
            "Lambda was unable to configure your environment variables because the environment variables you have provided exceeded the 4KB limit. String measured: {measured}"
        )));
    }
    for key in vars.keys() {
        let mut chars = key.chars();
        let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return Err(LambdaError::validation(&[
                "Value at 'environment.variables' failed to satisfy constraint: Map keys must satisfy constraint: [Member must satisfy regular expression pattern: [a-zA-Z]([a-zA-Z0-9_])+]".to_owned(),
            ]));
        }
        if RESERVED_ENV.contains(&key.as_str()) {
            return Err(LambdaError::invalid(format!(
                "Lambda was unable to configure your environment variables because the environment variables you have provided contains reserved keys that are currently not supported for modification. Reserved keys used in this request: {key}"
            )));
        }
    }
    Ok(())
}

/// Keys the Lambda runtime owns.
pub const RESERVED_ENV: &[&str] = &[
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
];

/// `{"K":"V",...}` with JSON string escaping, no spaces (what AWS measures).
fn json_object(vars: &BTreeMap<String, String>) -> String {
    let mut s = String::from("{");
    for (i, (k, v)) in vars.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        json_string(&mut s, k);
        s.push(':');
        json_string(&mut s, v);
    }
    s.push('}');
    s
}

fn json_string(out: &mut String, v: &str) {
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

pub fn role(role: &str) -> Result<(), LambdaError> {
    // arn:aws[...]:iam::<12 digits>:role/<path+name>
    let ok = (|| {
        let rest = role.strip_prefix("arn:")?;
        let (partition, rest) = rest.split_once(':')?;
        if !partition.starts_with("aws") {
            return None;
        }
        let rest = rest.strip_prefix("iam::")?;
        let (acct, rest) = rest.split_once(':')?;
        if acct.len() != 12 || !acct.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let name = rest.strip_prefix("role")?;
        let name = name.strip_prefix('/').unwrap_or(name);
        (!name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@-_/".contains(c)))
        .then_some(())
    })()
    .is_some();
    if ok {
        Ok(())
    } else {
        Err(LambdaError::validation(&[format!(
            "Value '{role}' at 'role' failed to satisfy constraint: Member must satisfy regular expression pattern: {ROLE_PATTERN}"
        )]))
    }
}

pub fn description(d: &str) -> Result<(), LambdaError> {
    if d.chars().count() > DESCRIPTION_MAX {
        return Err(LambdaError::validation(&[format!(
            "Value '{d}' at 'description' failed to satisfy constraint: Member must have length less than or equal to {DESCRIPTION_MAX}"
        )]));
    }
    Ok(())
}

pub fn handler(h: &str) -> Result<(), LambdaError> {
    if h.is_empty() || h.len() > HANDLER_MAX || h.chars().any(|c| c.is_whitespace()) {
        return Err(LambdaError::validation(&[format!(
            "Value '{h}' at 'handler' failed to satisfy constraint: Member must satisfy regular expression pattern: [^\\s]+"
        )]));
    }
    Ok(())
}

/// Alias names: 1–128 of `[a-zA-Z0-9-_]`, not purely numeric, not `$LATEST`.
pub fn alias_name(name: &str) -> Result<(), LambdaError> {
    let ok = !name.is_empty()
        && name.len() <= ALIAS_NAME_MAX
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !name.chars().all(|c| c.is_ascii_digit());
    if !ok {
        return Err(LambdaError::validation(&[format!(
            "Value '{name}' at 'name' failed to satisfy constraint: Member must satisfy regular expression pattern: (?!^[0-9]+$)([a-zA-Z0-9-_]+)"
        )]));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert!(memory_size(128).is_ok() && memory_size(10240).is_ok());
        assert!(memory_size(127).is_err() && memory_size(10241).is_err());
        assert!(timeout(1).is_ok() && timeout(900).is_ok());
        assert!(timeout(0).is_err() && timeout(901).is_err());
        assert!(role("arn:aws:iam::000000000000:role/x").is_ok());
        assert!(role("r1").is_err());
        assert!(alias_name("prod").is_ok());
        assert!(alias_name("123").is_err() && alias_name("$LATEST").is_err());
    }

    #[test]
    fn environment_measured_as_json() {
        let mut m = BTreeMap::new();
        m.insert("A".to_string(), "x".repeat(4096 - 8));
        assert_eq!(json_object(&m).len(), 4096);
        assert!(environment(&m).is_ok());
        m.insert("A".to_string(), "x".repeat(4096 - 7));
        assert!(environment(&m).is_err());
        let mut r = BTreeMap::new();
        r.insert("AWS_REGION".to_string(), "x".to_string());
        assert!(environment(&r).is_err());
    }
}
