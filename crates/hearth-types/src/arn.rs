//! Function ARNs and the many ways a client names a function: a bare name,
//! `name:qualifier`, a partial ARN (`123456789012:function:name`) or a full
//! ARN (`arn:aws:lambda:us-east-1:123456789012:function:name[:qualifier]`).
//!
//! The grammar is AWS's (the pattern quoted in its ValidationException);
//! it is small enough that a hand-written splitter is clearer than pulling
//! a regex engine into this serde-only crate.

use crate::error::LambdaError;
use crate::limits::QUALIFIER_MAX;

/// The pattern AWS quotes when a function name is malformed.
pub const FUNCTION_NAME_PATTERN: &str = r"(arn:(aws[a-zA-Z-]*)?:lambda:)?((eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:)?(\d{12}:)?(function:)?([a-zA-Z0-9-_\.]+)(:(\$LATEST(\.PUBLISHED)?|[a-zA-Z0-9-_]+))?";
/// The pattern AWS quotes when a qualifier is malformed.
pub const QUALIFIER_PATTERN: &str = r"\$(LATEST(\.PUBLISHED)?)|[a-zA-Z0-9-_$]+";

pub const LATEST: &str = "$LATEST";

/// Where this node lives, for the ARNs it prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    pub partition: String,
    pub region: String,
}

impl NodeIdentity {
    pub fn new(region: impl Into<String>) -> Self {
        Self {
            partition: "aws".to_owned(),
            region: region.into(),
        }
    }

    /// `arn:aws:lambda:<region>:<account>:function:<name>`.
    pub fn function_arn(&self, account: &str, name: &str) -> String {
        format!(
            "arn:{}:lambda:{}:{account}:function:{name}",
            self.partition, self.region
        )
    }

    /// The function ARN with `:<qualifier>` appended.
    pub fn qualified_arn(&self, account: &str, name: &str, qualifier: &str) -> String {
        format!("{}:{qualifier}", self.function_arn(account, name))
    }

    /// `arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]`.
    pub fn arn(&self, account: &str, name: &str, qualifier: Option<&str>) -> String {
        match qualifier {
            Some(q) => self.qualified_arn(account, name, q),
            None => self.function_arn(account, name),
        }
    }
}

/// A function name, as the registry keys it (1–64 chars of `[a-zA-Z0-9-_]` for
/// created functions; lookups accept what AWS's pattern accepts and then
/// simply find nothing).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FunctionName(String);

impl FunctionName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for FunctionName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A function reference resolved against the caller's account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionRef {
    pub name: FunctionName,
    pub qualifier: Option<String>,
    /// The account named in an ARN, if one was given. A different account
    /// than the caller's resolves to "not found", never to the other tenant.
    pub account: Option<String>,
    /// The region named in a full ARN, if one was given.
    pub region: Option<String>,
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'
}

fn is_qualifier_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

fn is_region(s: &str) -> bool {
    // [a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d, optionally prefixed by "eusc-".
    let s = s.strip_prefix("eusc-").unwrap_or(s);
    let parts: Vec<&str> = s.split('-').collect();
    let (head, rest) = match parts.split_first() {
        Some(x) => x,
        None => return false,
    };
    if head.len() != 2 || !head.chars().all(|c| c.is_ascii_lowercase()) {
        return false;
    }
    let rest: Vec<&str> = match rest.first() {
        Some(&"gov") => rest[1..].to_vec(),
        Some(p) if p.starts_with("iso") && p.len() <= 4 && rest.len() == 3 => rest[1..].to_vec(),
        _ => rest.to_vec(),
    };
    rest.len() == 2
        && !rest[0].is_empty()
        && rest[0].chars().all(|c| c.is_ascii_lowercase())
        && rest[1].len() == 1
        && rest[1].chars().all(|c| c.is_ascii_digit())
}

fn is_account(s: &str) -> bool {
    s.len() == 12 && s.chars().all(|c| c.is_ascii_digit())
}

/// AWS matches `$LATEST` here without regard to case (`:$latest` passes the
/// pattern and then names no version, while `:$LATES` fails it).
fn is_valid_qualifier_in_name(q: &str) -> bool {
    q.eq_ignore_ascii_case(LATEST)
        || q.eq_ignore_ascii_case("$LATEST.PUBLISHED")
        || (!q.is_empty() && q.chars().all(is_qualifier_char))
}

/// The error text for one field that failed AWS's pattern.
pub fn pattern_error(value: &str, field: &str, pattern: &str) -> String {
    format!(
        "Value '{value}' at '{field}' failed to satisfy constraint: Member must satisfy regular expression pattern: {pattern}"
    )
}

/// The error text for one field over its length.
pub fn length_error(value: &str, field: &str, max: usize) -> String {
    format!(
        "Value '{value}' at '{field}' failed to satisfy constraint: Member must have length less than or equal to {max}"
    )
}

/// Checks a separately given `Qualifier` against AWS's constraint and length.
pub fn qualifier_errors(q: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if q.len() > QUALIFIER_MAX {
        errors.push(length_error(q, "qualifier", QUALIFIER_MAX));
    } else if !(q == LATEST
        || q == "$LATEST.PUBLISHED"
        || (!q.is_empty() && q.chars().all(|c| is_qualifier_char(c) || c == '$')))
    {
        errors.push(pattern_error(q, "qualifier", QUALIFIER_PATTERN));
    }
    errors
}

impl FunctionRef {
    /// Splits `input` into name and qualifier without a separate `Qualifier`.
    pub fn parse(input: &str, _node: &NodeIdentity, _account: &str) -> Result<Self, LambdaError> {
        Self::split(input).map_err(|e| LambdaError::validation(&[e]))
    }

    /// Parses the `{name}` path segment and a `Qualifier` query parameter
    /// together, reporting every violation at once as AWS does, and checking
    /// that a qualifier in the name agrees with the parameter.
    pub fn parse_with_qualifier(input: &str, qualifier: Option<&str>) -> Result<Self, LambdaError> {
        let mut errors = Vec::new();
        if let Some(q) = qualifier {
            errors.extend(qualifier_errors(q));
        }
        let parsed = Self::split(input);
        if let Err(e) = &parsed {
            errors.push(e.clone());
        }
        if !errors.is_empty() {
            return Err(LambdaError::validation(&errors));
        }
        let mut r = parsed.map_err(|e| LambdaError::validation(&[e]))?;
        match (r.qualifier.as_deref(), qualifier) {
            (Some(a), Some(b)) if a != b => {
                return Err(LambdaError::invalid(
                    "The derived qualifier from the function name does not match the specified qualifier.",
                ))
            }
            (None, Some(b)) => r.qualifier = Some(b.to_owned()),
            _ => {}
        }
        Ok(r)
    }

    fn split(input: &str) -> Result<Self, String> {
        let bad = || pattern_error(input, "functionName", FUNCTION_NAME_PATTERN);
        let mut region = None;
        let mut account = None;
        let mut rest: Vec<&str> = input.split(':').collect();
        if rest.first() == Some(&"arn") {
            // arn:<partition>:lambda:<region>:<account>:function:<name>[:<q>]
            if rest.len() < 7
                || !rest[1].starts_with("aws")
                || rest[2] != "lambda"
                || !is_region(rest[3])
                || !is_account(rest[4])
                || rest[5] != "function"
            {
                return Err(bad());
            }
            region = Some(rest[3].to_owned());
            account = Some(rest[4].to_owned());
            rest = rest[6..].to_vec();
        } else {
            if rest.len() >= 3 && rest[1] == "function" {
                if !is_account(rest[0]) {
                    return Err(bad());
                }
                account = Some(rest[0].to_owned());
                rest = rest[2..].to_vec();
            } else if rest.len() >= 2
                && rest[0] == "function"
                && rest.len() <= 3
                && !rest[1].is_empty()
            {
                // "function:<name>[:q]" — the optional (function:) group alone.
                // A bare "function" with nothing after is just a name.
                rest = rest[1..].to_vec();
            }
        }
        let (name, qualifier) = match rest.as_slice() {
            [name] => (*name, None),
            [name, q] => (*name, Some(*q)),
            _ => return Err(bad()),
        };
        if name.is_empty() || !name.chars().all(is_name_char) {
            return Err(bad());
        }
        if let Some(q) = qualifier {
            if !is_valid_qualifier_in_name(q) {
                return Err(bad());
            }
        }
        Ok(Self {
            name: FunctionName(name.to_owned()),
            qualifier: qualifier.map(str::to_owned),
            account,
            region,
        })
    }

    /// The ARN to print in "Function not found: …" for this reference.
    pub fn not_found(&self, node: &NodeIdentity, account: &str) -> LambdaError {
        LambdaError::not_found(format!(
            "Function not found: {}",
            node.arn(account, self.name.as_str(), self.qualifier.as_deref())
        ))
    }

    /// Whether this reference may name a function of `account` on `node`.
    pub fn is_for(&self, node: &NodeIdentity, account: &str) -> bool {
        self.account.as_deref().is_none_or(|a| a == account)
            && self.region.as_deref().is_none_or(|r| r == node.region)
    }
}

/// Checks a name for CreateFunction: 1–64 of `[a-zA-Z0-9-_]` (an ARN form is
/// accepted as AWS does, as long as it names this account and region).
pub fn validate_new_function_name(input: &str) -> Result<FunctionRef, LambdaError> {
    let r = FunctionRef::parse_with_qualifier(input, None)?;
    let n = r.name.as_str();
    if n.len() > crate::limits::FUNCTION_NAME_MAX {
        // AWS answers this one as InvalidParameterValue, in validation words.
        let mut e = LambdaError::validation(&[length_error(
            n,
            "functionName",
            crate::limits::FUNCTION_NAME_MAX,
        )]);
        e.kind = crate::ErrorKind::InvalidParameterValue;
        return Err(e);
    }
    if n.contains('.') {
        return Err(LambdaError::validation(&[pattern_error(
            input,
            "functionName",
            FUNCTION_NAME_PATTERN,
        )]));
    }
    if r.qualifier.is_some() {
        return Err(LambdaError::invalid(
            "Current operation does not support versions other than $LATEST. Please set version to $LATEST or do not set a version in your request.",
        ));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> NodeIdentity {
        NodeIdentity::new("us-east-1")
    }

    #[test]
    fn names_qualifiers_and_arns() {
        let n = node();
        let r = FunctionRef::parse("hello", &n, "000000000000").unwrap();
        assert_eq!((r.name.as_str(), r.qualifier), ("hello", None));
        let r = FunctionRef::parse("hello:$LATEST", &n, "0").unwrap();
        assert_eq!(r.qualifier.as_deref(), Some("$LATEST"));
        let r = FunctionRef::parse("000000000000:function:hello:7", &n, "0").unwrap();
        assert_eq!(r.account.as_deref(), Some("000000000000"));
        assert_eq!(r.qualifier.as_deref(), Some("7"));
        let r = FunctionRef::parse(
            "arn:aws:lambda:us-east-1:000000000000:function:hello:prod",
            &n,
            "0",
        )
        .unwrap();
        assert_eq!(r.region.as_deref(), Some("us-east-1"));
        assert_eq!(r.qualifier.as_deref(), Some("prod"));
        assert!(r.is_for(&n, "000000000000"));
        assert!(!r.is_for(&n, "111111111111"));
        let r = FunctionRef::parse("f:$latest", &n, "0").unwrap();
        assert_eq!(r.qualifier.as_deref(), Some("$latest"));
        let e = validate_new_function_name(&"x".repeat(65)).unwrap_err();
        assert_eq!(e.kind, crate::ErrorKind::InvalidParameterValue);
        let r = FunctionRef::parse("function", &n, "0").unwrap();
        assert_eq!(r.name.as_str(), "function");
    }

    #[test]
    fn malformed_references_fail_the_pattern() {
        for bad in [
            "*",
            "my-function!",
            "invalid-account:function:my-function",
            "arn:aws:lambda:invalid-region:111111111111:function:my-function",
            "arn:aws:ec2:us-east-1:111111111111:instance:i-1",
            "arn:aws:lambda:us-east-1:111111111111:function:my-function:1:2",
            "function:my-function:$LATEST:extra",
            "arn:aws:lambda::111111111111:function:my-function",
            "arn:aws:lambda:us-east-1::function:my-function",
            "arn:aws:lambda:us-east-1:111111111111:function:my-function:$LATES",
        ] {
            let e = FunctionRef::parse_with_qualifier(bad, None).unwrap_err();
            assert_eq!(e.kind, crate::ErrorKind::Validation, "{bad}");
            assert!(
                e.message
                    .starts_with("1 validation error detected: Value '"),
                "{bad}"
            );
        }
    }

    #[test]
    fn qualifier_parameter_must_agree() {
        let e = FunctionRef::parse_with_qualifier("f:$LATEST", Some("1")).unwrap_err();
        assert_eq!(e.kind, crate::ErrorKind::InvalidParameterValue);
        let r = FunctionRef::parse_with_qualifier("f", Some("2")).unwrap();
        assert_eq!(r.qualifier.as_deref(), Some("2"));
        let long = "a".repeat(129);
        let e = FunctionRef::parse_with_qualifier("f", Some(&long)).unwrap_err();
        assert!(e.message.contains("length less than or equal to 128"));
        let e = FunctionRef::parse_with_qualifier("f!", Some(&long)).unwrap_err();
        assert!(e.message.starts_with("2 validation errors detected"));
    }

    #[test]
    fn regions() {
        for ok in [
            "us-east-1",
            "eu-west-3",
            "us-gov-west-1",
            "us-isob-east-1",
            "eusc-de-east-1",
        ] {
            assert!(is_region(ok), "{ok}");
        }
        for bad in ["invalid-region", "", "us-east", "US-east-1"] {
            assert!(!is_region(bad), "{bad}");
        }
    }
}
