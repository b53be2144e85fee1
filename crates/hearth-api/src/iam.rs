//! IAM's query API on `/` (version 2010-05-08), the part Lambda users touch:
//! roles, their attached managed and inline policies, and customer managed
//! policies, answered in IAM's XML.
//!
//! A request is parsed into a typed [`Command`] (IAM's own parameter checks
//! give `ValidationError`, worded as IAM words it), run against the
//! [`IamStore`] off the async threads, and rendered; an [`IamError`] becomes
//! IAM's error shape in [`refusal`]. Hearth stores policies but does not
//! evaluate them.

use crate::caller::Caller;
use crate::query::{self, escape, Service};
use crate::state::AppState;
use axum::http::StatusCode;
use axum::response::Response;
use hearth_store::iam::{
    is_iam_name, AttachedPolicy, IamError, IamResult, IamStore, InlinePolicy, ManagedPolicy,
    NewPolicy, NewRole, PolicyArn, Role, Tag, MAX_SESSION_DURATION_DEFAULT,
};
use hearth_store::Page;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use std::fmt::Write as _;

/// IAM's API version and XML namespace.
pub const IAM_VERSION: &str = "2010-05-08";
pub const IAM_XMLNS: &str = "https://iam.amazonaws.com/doc/2010-05-08/";

/// What a page holds unless `MaxItems` says otherwise.
const MAX_ITEMS_DEFAULT: usize = 100;

/// One IAM action with its parameters checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    CreateRole(NewRole),
    GetRole {
        name: String,
    },
    ListRoles {
        path_prefix: String,
        marker: Option<String>,
        max_items: usize,
    },
    DeleteRole {
        name: String,
    },
    AttachRolePolicy {
        role: String,
        policy: PolicyArn,
    },
    DetachRolePolicy {
        role: String,
        policy: PolicyArn,
    },
    ListAttachedRolePolicies {
        role: String,
        path_prefix: String,
        marker: Option<String>,
        max_items: usize,
    },
    PutRolePolicy {
        role: String,
        name: String,
        document: String,
    },
    GetRolePolicy {
        role: String,
        name: String,
    },
    DeleteRolePolicy {
        role: String,
        name: String,
    },
    ListRolePolicies {
        role: String,
        marker: Option<String>,
        max_items: usize,
    },
    CreatePolicy(NewPolicy),
    GetPolicy(PolicyArn),
    DeletePolicy(PolicyArn),
    /// A policy has one version, `v1` (CreatePolicyVersion is not
    /// implemented): what Terraform and the CDK read after GetPolicy.
    GetPolicyVersion(PolicyArn, String),
    ListPolicyVersions(PolicyArn),
}

/// What a command returns, before it is rendered.
#[derive(Debug)]
enum Outcome {
    Role(Role),
    Roles(Page<Role>),
    Policy(ManagedPolicy),
    PolicyVersion(ManagedPolicy),
    PolicyVersions(ManagedPolicy),
    Attached(Page<AttachedPolicy>),
    Inline(InlinePolicy),
    InlineNames(Page<String>),
    Done,
}

/// `POST /` (or `GET /?Action=…`) signed for `iam`.
pub async fn handle(
    state: &AppState,
    caller: Caller,
    action: &str,
    params: &[(String, String)],
) -> Response {
    let service = Service("iam".to_owned());
    let invalid_action = |version: &str| {
        query::error(
            StatusCode::BAD_REQUEST,
            "InvalidAction",
            &format!("Could not find operation {action} for version {version}"),
            &service,
        )
    };
    if let Some(v) = param(params, "Version").filter(|v| *v != IAM_VERSION) {
        return invalid_action(v);
    }
    let command = match Command::parse(action, params) {
        Ok(Some(c)) => c,
        Ok(None) => return invalid_action(IAM_VERSION),
        Err(e) => return refusal(&e, &service),
    };
    let account = caller.id().to_owned();
    let ran = state
        .blocking(move |s| Ok(run(&*s.registry, &account, command)))
        .await;
    match ran {
        Ok(Ok(outcome)) => query::xml(StatusCode::OK, render(action, &outcome)),
        Ok(Err(e)) => refusal(&e, &service),
        Err(e) => query::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServiceFailure",
            &e.0.message,
            &service,
        ),
    }
}

/// The one place an [`IamError`] becomes IAM's error code and status (the
/// codes botocore's IAM model names, so `client.exceptions.NoSuchEntityException`
/// and its kin match).
pub fn refusal(e: &IamError, service: &Service) -> Response {
    let (status, code) = match e {
        IamError::NoSuchEntity(_) => (StatusCode::NOT_FOUND, "NoSuchEntity"),
        IamError::EntityAlreadyExists(_) => (StatusCode::CONFLICT, "EntityAlreadyExists"),
        IamError::DeleteConflict(_) => (StatusCode::CONFLICT, "DeleteConflict"),
        IamError::LimitExceeded(_) => (StatusCode::CONFLICT, "LimitExceeded"),
        IamError::MalformedPolicyDocument(_) => {
            (StatusCode::BAD_REQUEST, "MalformedPolicyDocument")
        }
        IamError::InvalidInput(_) => (StatusCode::BAD_REQUEST, "InvalidInput"),
        IamError::Validation(_) => (StatusCode::BAD_REQUEST, "ValidationError"),
        IamError::Store(inner) => {
            tracing::error!(error = %inner, "IAM store failure");
            (StatusCode::INTERNAL_SERVER_ERROR, "ServiceFailure")
        }
    };
    query::error(status, code, &e.to_string(), service)
}

fn run(store: &(impl IamStore + ?Sized), account: &str, command: Command) -> IamResult<Outcome> {
    let now = now_ms();
    Ok(match command {
        Command::CreateRole(new) => Outcome::Role(store.create_role(account, new, now)?),
        Command::GetRole { name } => Outcome::Role(store.get_role(account, &name)?),
        Command::ListRoles {
            path_prefix,
            marker,
            max_items,
        } => {
            Outcome::Roles(store.list_roles(account, &path_prefix, marker.as_deref(), max_items)?)
        }
        Command::DeleteRole { name } => {
            store.delete_role(account, &name)?;
            Outcome::Done
        }
        Command::AttachRolePolicy { role, policy } => {
            store.attach_role_policy(account, &role, &policy)?;
            Outcome::Done
        }
        Command::DetachRolePolicy { role, policy } => {
            store.detach_role_policy(account, &role, &policy)?;
            Outcome::Done
        }
        Command::ListAttachedRolePolicies {
            role,
            path_prefix,
            marker,
            max_items,
        } => Outcome::Attached(store.list_attached_role_policies(
            account,
            &role,
            &path_prefix,
            marker.as_deref(),
            max_items,
        )?),
        Command::PutRolePolicy {
            role,
            name,
            document,
        } => {
            store.put_role_policy(account, &role, &name, &document)?;
            Outcome::Done
        }
        Command::GetRolePolicy { role, name } => {
            Outcome::Inline(store.get_role_policy(account, &role, &name)?)
        }
        Command::DeleteRolePolicy { role, name } => {
            store.delete_role_policy(account, &role, &name)?;
            Outcome::Done
        }
        Command::ListRolePolicies {
            role,
            marker,
            max_items,
        } => Outcome::InlineNames(store.list_role_policies(
            account,
            &role,
            marker.as_deref(),
            max_items,
        )?),
        Command::CreatePolicy(new) => Outcome::Policy(store.create_policy(account, new, now)?),
        Command::GetPolicy(arn) => Outcome::Policy(store.get_policy(account, &arn)?),
        Command::GetPolicyVersion(arn, version) => {
            let p = store.get_policy(account, &arn)?;
            if version != "v1" {
                return Err(IamError::NoSuchEntity(format!(
                    "Policy {} version {version} does not exist or is not attachable.",
                    p.arn
                )));
            }
            Outcome::PolicyVersion(p)
        }
        Command::ListPolicyVersions(arn) => {
            Outcome::PolicyVersions(store.get_policy(account, &arn)?)
        }
        Command::DeletePolicy(arn) => {
            store.delete_policy(account, &arn)?;
            Outcome::Done
        }
    })
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

// ---- parsing --------------------------------------------------------------

/// One of IAM's parameter patterns: how its validation messages print it
/// (as its model spells it) and the check that stands for it.
#[derive(Debug, Clone, Copy)]
struct Pattern {
    shown: &'static str,
    matches: fn(&str) -> bool,
}

const NAME: Pattern = Pattern {
    shown: r"[\w+=,.@-]+",
    matches: is_iam_name,
};
const ROLE_PATH: Pattern = Pattern {
    shown: r"(\u002F)|(\u002F[\u0021-\u007E]+\u002F)",
    matches: is_role_path,
};
const POLICY_PATH: Pattern = Pattern {
    shown: r"((/[A-Za-z0-9\.,\+@=_-]+)*)/",
    matches: is_policy_path,
};
const PATH_PREFIX: Pattern = Pattern {
    shown: r"\u002F[\u0021-\u007F]*",
    matches: is_path_prefix,
};
const DOCUMENT: Pattern = Pattern {
    shown: r"[\u0009\u000A\u000D\u0020-\u00FF]+",
    matches: is_document_text,
};
const ROLE_DESCRIPTION: Pattern = Pattern {
    shown: r"[\u0009\u000A\u000D\u0020-\u007E\u00A1-\u00FF]*",
    matches: is_role_description,
};
const MARKER: Pattern = Pattern {
    shown: r"[\u0020-\u00FF]+",
    matches: is_latin1_text,
};
const TAG_KEY: Pattern = Pattern {
    shown: r"[\p{L}\p{Z}\p{N}_.:/=+\-@]+",
    matches: is_tag_text,
};
const TAG_VALUE: Pattern = Pattern {
    shown: r"[\p{L}\p{Z}\p{N}_.:/=+\-@]*",
    matches: is_tag_text,
};

/// A request's parameters and the validation errors found reading them,
/// reported together as IAM reports them ("2 validation errors detected: …").
struct Input<'a> {
    params: &'a [(String, String)],
    errors: Vec<String>,
}

impl<'a> Input<'a> {
    fn new(params: &'a [(String, String)]) -> Self {
        Self {
            params,
            errors: Vec::new(),
        }
    }

    fn get(&self, key: &str) -> Option<&'a str> {
        param(self.params, key)
    }

    fn fail(&mut self, value: &str, member: &str, constraint: &str) {
        self.errors.push(format!(
            "Value '{value}' at '{member}' failed to satisfy constraint: Member {constraint}"
        ));
    }

    /// An optional string of `min..=max` characters matching `pattern`
    /// (`matches` checks it; `pattern` is how IAM prints it).
    fn text(
        &mut self,
        key: &str,
        member: &str,
        (min, max): (usize, usize),
        pattern: Option<Pattern>,
    ) -> Option<String> {
        let v = self.get(key)?;
        let len = v.chars().count();
        if len < min {
            self.fail(
                v,
                member,
                &format!("must have length greater than or equal to {min}"),
            );
        } else if len > max {
            self.fail(
                v,
                member,
                &format!("must have length less than or equal to {max}"),
            );
        }
        if let Some(p) = pattern.filter(|p| !(p.matches)(v)) {
            self.fail(
                v,
                member,
                &format!("must satisfy regular expression pattern: {}", p.shown),
            );
        }
        Some(v.to_owned())
    }

    /// [`Self::text`], required.
    fn required(
        &mut self,
        key: &str,
        member: &str,
        bounds: (usize, usize),
        pattern: Option<Pattern>,
    ) -> String {
        match self.text(key, member, bounds, pattern) {
            Some(v) => v,
            None => {
                self.errors.push(format!(
                    "Value null at '{member}' failed to satisfy constraint: Member must not be null"
                ));
                String::new()
            }
        }
    }

    fn int(&mut self, key: &str, member: &str, (min, max): (u32, u32)) -> Option<u32> {
        let v = self.get(key)?;
        let Ok(n) = v.trim().parse::<i64>() else {
            self.fail(v, member, "must be a number");
            return None;
        };
        if n < i64::from(min) {
            self.fail(
                v,
                member,
                &format!("must have value greater than or equal to {min}"),
            );
            None
        } else if n > i64::from(max) {
            self.fail(
                v,
                member,
                &format!("must have value less than or equal to {max}"),
            );
            None
        } else {
            u32::try_from(n).ok()
        }
    }

    fn role_name(&mut self, key: &str, member: &str) -> String {
        self.required(key, member, (1, 64), Some(NAME))
    }

    fn policy_name(&mut self, key: &str, member: &str) -> String {
        self.required(key, member, (1, 128), Some(NAME))
    }

    fn document(&mut self, key: &str, member: &str) -> String {
        self.required(key, member, (1, 131_072), Some(DOCUMENT))
    }

    fn policy_arn(&mut self) -> Option<String> {
        let arn = self.required("PolicyArn", "policyArn", (20, 2048), None);
        (!arn.is_empty()).then_some(arn)
    }

    fn marker(&mut self) -> Option<String> {
        self.text("Marker", "marker", (1, 320), Some(MARKER))
    }

    fn max_items(&mut self) -> usize {
        self.int("MaxItems", "maxItems", (1, 1000))
            .map_or(MAX_ITEMS_DEFAULT, |n| n as usize)
    }

    /// `Tags.member.N.Key` / `.Value`, N from 1, in order.
    fn tags(&mut self) -> IamResult<Vec<Tag>> {
        let mut tags = Vec::new();
        for n in 1.. {
            let (key, value) = (
                format!("Tags.member.{n}.Key"),
                format!("Tags.member.{n}.Value"),
            );
            if self.get(&key).is_none() && self.get(&value).is_none() {
                break;
            }
            let k = self.required(
                &key,
                &format!("tags.{n}.member.key"),
                (1, 128),
                Some(TAG_KEY),
            );
            let v = self.required(
                &value,
                &format!("tags.{n}.member.value"),
                (0, 256),
                Some(TAG_VALUE),
            );
            tags.push(Tag { key: k, value: v });
        }
        if tags.len() > 50 {
            self.errors.push(
                "Value '[…]' at 'tags' failed to satisfy constraint: Member must have length less than or equal to 50"
                    .to_owned(),
            );
        }
        let mut keys: Vec<String> = tags.iter().map(|t| t.key.to_lowercase()).collect();
        keys.sort();
        keys.dedup();
        if keys.len() != tags.len() {
            return Err(IamError::InvalidInput(
                "Duplicate tag keys found. Please note that Tag keys are case insensitive."
                    .to_owned(),
            ));
        }
        Ok(tags)
    }

    /// `Ok` if nothing failed, else every failure in one `ValidationError`.
    fn finish(self) -> IamResult<()> {
        let n = self.errors.len();
        if n == 0 {
            return Ok(());
        }
        let noun = if n == 1 { "error" } else { "errors" };
        Err(IamError::Validation(format!(
            "{n} validation {noun} detected: {}",
            self.errors.join("; ")
        )))
    }
}

fn is_role_path(p: &str) -> bool {
    p == "/"
        || (p.len() >= 3
            && p.starts_with('/')
            && p.ends_with('/')
            && p.bytes().all(|b| (0x21..=0x7e).contains(&b)))
}

fn is_policy_path(p: &str) -> bool {
    p.ends_with('/')
        && p[..p.len() - 1].split('/').skip(1).all(|seg| {
            !seg.is_empty()
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".,+@=_-".contains(c))
        })
        && p.starts_with('/')
}

fn is_path_prefix(p: &str) -> bool {
    p.starts_with('/') && p.bytes().all(|b| (0x21..=0x7f).contains(&b))
}

fn is_document_text(s: &str) -> bool {
    s.chars()
        .all(|c| matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{ff}'))
}

fn is_role_description(s: &str) -> bool {
    s.chars()
        .all(|c| matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{7e}' | '\u{a1}'..='\u{ff}'))
}

fn is_latin1_text(s: &str) -> bool {
    s.chars().all(|c| matches!(c, '\u{20}'..='\u{ff}'))
}

/// Letters, digits, separators (`\p{Z}`: spaces, not tabs or newlines) and `_.:/=+-@`.
fn is_tag_text(s: &str) -> bool {
    s.chars().all(|c| {
        c.is_alphanumeric() || (c.is_whitespace() && !c.is_control()) || "_.:/=+-@".contains(c)
    })
}

impl Command {
    /// The command an action names with its parameters, `Ok(None)` for an
    /// action Hearth does not know, or the first way the parameters break
    /// IAM's rules.
    pub fn parse(action: &str, params: &[(String, String)]) -> IamResult<Option<Self>> {
        let mut i = Input::new(params);
        let command = match action {
            "CreateRole" => {
                let name = i.role_name("RoleName", "roleName");
                let path = i
                    .text("Path", "path", (1, 512), Some(ROLE_PATH))
                    .unwrap_or_else(|| "/".to_owned());
                let document = i.document("AssumeRolePolicyDocument", "assumeRolePolicyDocument");
                let description = i.text(
                    "Description",
                    "description",
                    (0, 1000),
                    Some(ROLE_DESCRIPTION),
                );
                let max_session_duration = i
                    .int("MaxSessionDuration", "maxSessionDuration", (3600, 43_200))
                    .unwrap_or(MAX_SESSION_DURATION_DEFAULT);
                let tags = i.tags()?;
                Self::CreateRole(NewRole {
                    name,
                    path,
                    assume_role_policy_document: document,
                    description,
                    max_session_duration,
                    tags,
                })
            }
            "GetRole" => Self::GetRole {
                name: i.role_name("RoleName", "roleName"),
            },
            "DeleteRole" => Self::DeleteRole {
                name: i.role_name("RoleName", "roleName"),
            },
            "ListRoles" => Self::ListRoles {
                path_prefix: i
                    .text("PathPrefix", "pathPrefix", (1, 512), Some(PATH_PREFIX))
                    .unwrap_or_else(|| "/".to_owned()),
                marker: i.marker(),
                max_items: i.max_items(),
            },
            "AttachRolePolicy" | "DetachRolePolicy" => {
                let role = i.role_name("RoleName", "roleName");
                let arn = i.policy_arn();
                i.finish()?;
                let policy = PolicyArn::parse(arn.as_deref().unwrap_or_default())?;
                return Ok(Some(if action == "AttachRolePolicy" {
                    Self::AttachRolePolicy { role, policy }
                } else {
                    Self::DetachRolePolicy { role, policy }
                }));
            }
            "ListAttachedRolePolicies" => Self::ListAttachedRolePolicies {
                role: i.role_name("RoleName", "roleName"),
                path_prefix: i
                    .text("PathPrefix", "pathPrefix", (1, 512), Some(POLICY_PATH))
                    .unwrap_or_else(|| "/".to_owned()),
                marker: i.marker(),
                max_items: i.max_items(),
            },
            "PutRolePolicy" => Self::PutRolePolicy {
                role: i.role_name("RoleName", "roleName"),
                name: i.policy_name("PolicyName", "policyName"),
                document: i.document("PolicyDocument", "policyDocument"),
            },
            "GetRolePolicy" => Self::GetRolePolicy {
                role: i.role_name("RoleName", "roleName"),
                name: i.policy_name("PolicyName", "policyName"),
            },
            "DeleteRolePolicy" => Self::DeleteRolePolicy {
                role: i.role_name("RoleName", "roleName"),
                name: i.policy_name("PolicyName", "policyName"),
            },
            "ListRolePolicies" => Self::ListRolePolicies {
                role: i.role_name("RoleName", "roleName"),
                marker: i.marker(),
                max_items: i.max_items(),
            },
            "CreatePolicy" => {
                let name = i.policy_name("PolicyName", "policyName");
                let path = i
                    .text("Path", "path", (1, 512), Some(POLICY_PATH))
                    .unwrap_or_else(|| "/".to_owned());
                let document = i.document("PolicyDocument", "policyDocument");
                let description = i.text("Description", "description", (0, 1000), None);
                let tags = i.tags()?;
                Self::CreatePolicy(NewPolicy {
                    name,
                    path,
                    document,
                    description,
                    tags,
                })
            }
            "GetPolicyVersion" => {
                let arn = i.policy_arn();
                let version = i.text("VersionId", "versionId", (0, 128), None);
                i.finish()?;
                let arn = PolicyArn::parse(arn.as_deref().unwrap_or_default())?;
                return Ok(Some(Self::GetPolicyVersion(
                    arn,
                    version.unwrap_or_default(),
                )));
            }
            "ListPolicyVersions" => {
                let arn = i.policy_arn();
                i.finish()?;
                let arn = PolicyArn::parse(arn.as_deref().unwrap_or_default())?;
                return Ok(Some(Self::ListPolicyVersions(arn)));
            }
            "GetPolicy" | "DeletePolicy" => {
                let arn = i.policy_arn();
                i.finish()?;
                let arn = PolicyArn::parse(arn.as_deref().unwrap_or_default())?;
                return Ok(Some(if action == "GetPolicy" {
                    Self::GetPolicy(arn)
                } else {
                    Self::DeletePolicy(arn)
                }));
            }
            _ => return Ok(None),
        };
        i.finish()?;
        Ok(Some(command))
    }
}

// ---- rendering ------------------------------------------------------------

/// How IAM encodes a policy document in XML: URL-encoded JSON, which
/// botocore decodes back into a dict.
const DOCUMENT_ENCODING: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn document(d: &str) -> String {
    utf8_percent_encode(d, DOCUMENT_ENCODING).to_string()
}

/// ISO 8601 in UTC to the second, as IAM writes dates.
fn date(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.format(&fmt)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

/// `<Tag>text</Tag>`, the text escaped.
fn el(out: &mut String, tag: &str, text: &str) {
    // Writing to a String cannot fail.
    let _ = write!(out, "<{tag}>{}</{tag}>", escape(text));
}

fn tags_xml(out: &mut String, tags: &[Tag]) {
    if tags.is_empty() {
        return;
    }
    out.push_str("<Tags>");
    for t in tags {
        out.push_str("<member>");
        el(out, "Key", &t.key);
        el(out, "Value", &t.value);
        out.push_str("</member>");
    }
    out.push_str("</Tags>");
}

/// A role's members; ListRoles leaves out its tags, as IAM does.
fn role_xml(out: &mut String, r: &Role, with_tags: bool) {
    el(out, "Path", &r.path);
    el(out, "RoleName", &r.name);
    el(out, "RoleId", &r.id);
    el(out, "Arn", &r.arn);
    el(out, "CreateDate", &date(r.created_ms));
    el(
        out,
        "AssumeRolePolicyDocument",
        &document(&r.assume_role_policy_document),
    );
    if let Some(d) = &r.description {
        el(out, "Description", d);
    }
    el(
        out,
        "MaxSessionDuration",
        &r.max_session_duration.to_string(),
    );
    if with_tags {
        tags_xml(out, &r.tags);
    }
}

fn policy_xml(out: &mut String, p: &ManagedPolicy) {
    el(out, "PolicyName", &p.name);
    el(out, "PolicyId", &p.id);
    el(out, "Arn", &p.arn);
    el(out, "Path", &p.path);
    el(out, "DefaultVersionId", "v1");
    el(out, "AttachmentCount", &p.attachment_count.to_string());
    el(out, "PermissionsBoundaryUsageCount", "0");
    el(out, "IsAttachable", "true");
    if let Some(d) = &p.description {
        el(out, "Description", d);
    }
    el(out, "CreateDate", &date(p.created_ms));
    el(out, "UpdateDate", &date(p.updated_ms));
    tags_xml(out, &p.tags);
}

fn page_end<T>(out: &mut String, page: &Page<T>) {
    el(
        out,
        "IsTruncated",
        if page.next_marker.is_some() {
            "true"
        } else {
            "false"
        },
    );
    if let Some(m) = &page.next_marker {
        el(out, "Marker", m);
    }
}

/// `<{Action}Response>` with its `<{Action}Result>` (none for actions that
/// return nothing) and the request id.
fn render(action: &str, outcome: &Outcome) -> String {
    let mut result = String::new();
    let out = &mut result;
    match outcome {
        Outcome::Role(r) => {
            out.push_str("<Role>");
            role_xml(out, r, true);
            out.push_str("</Role>");
        }
        Outcome::Roles(page) => {
            out.push_str("<Roles>");
            for r in &page.items {
                out.push_str("<member>");
                role_xml(out, r, false);
                out.push_str("</member>");
            }
            out.push_str("</Roles>");
            page_end(out, page);
        }
        Outcome::Policy(p) => {
            out.push_str("<Policy>");
            policy_xml(out, p);
            out.push_str("</Policy>");
        }
        Outcome::PolicyVersion(p) => {
            out.push_str("<PolicyVersion>");
            el(out, "Document", &document(&p.document));
            el(out, "VersionId", "v1");
            el(out, "IsDefaultVersion", "true");
            el(out, "CreateDate", &date(p.created_ms));
            out.push_str("</PolicyVersion>");
        }
        Outcome::PolicyVersions(p) => {
            out.push_str("<Versions><member>");
            el(out, "Document", &document(&p.document));
            el(out, "VersionId", "v1");
            el(out, "IsDefaultVersion", "true");
            el(out, "CreateDate", &date(p.created_ms));
            out.push_str("</member></Versions><IsTruncated>false</IsTruncated>");
        }
        Outcome::Attached(page) => {
            out.push_str("<AttachedPolicies>");
            for p in &page.items {
                out.push_str("<member>");
                el(out, "PolicyName", &p.name);
                el(out, "PolicyArn", &p.arn);
                out.push_str("</member>");
            }
            out.push_str("</AttachedPolicies>");
            page_end(out, page);
        }
        Outcome::Inline(p) => {
            el(out, "RoleName", &p.role_name);
            el(out, "PolicyName", &p.name);
            el(out, "PolicyDocument", &document(&p.document));
        }
        Outcome::InlineNames(page) => {
            out.push_str("<PolicyNames>");
            for n in &page.items {
                el(out, "member", n);
            }
            out.push_str("</PolicyNames>");
            page_end(out, page);
        }
        Outcome::Done => {}
    }
    let result = if matches!(outcome, Outcome::Done) {
        String::new()
    } else {
        format!("<{action}Result>{result}</{action}Result>")
    };
    format!(
        "<{action}Response xmlns=\"{IAM_XMLNS}\">{result}\
         <ResponseMetadata><RequestId>{id}</RequestId></ResponseMetadata>\
         </{action}Response>",
        id = uuid::Uuid::new_v4(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[track_caller]
    fn validation(action: &str, pairs: &[(&str, &str)]) -> String {
        match Command::parse(action, &params(pairs)) {
            Err(IamError::Validation(m)) => m,
            other => panic!("expected a ValidationError, got {other:?}"),
        }
    }

    const TRUST: &str = r#"{"Version":"2012-10-17","Statement":[]}"#;

    #[test]
    fn create_role_is_parsed_with_iam_defaults() {
        let c = Command::parse(
            "CreateRole",
            &params(&[
                ("RoleName", "r"),
                ("AssumeRolePolicyDocument", TRUST),
                ("Tags.member.1.Key", "team"),
                ("Tags.member.1.Value", "a b"),
            ]),
        )
        .unwrap()
        .unwrap();
        let mut expected = NewRole::new("r", TRUST);
        expected.tags = vec![Tag {
            key: "team".into(),
            value: "a b".into(),
        }];
        assert_eq!(c, Command::CreateRole(expected));
        assert_eq!(Command::parse("GetUser", &[]).unwrap(), None);
    }

    #[test]
    fn bad_parameters_are_reported_together_in_iam_words() {
        assert_eq!(
            validation("GetRole", &[("RoleName", "x y")]),
            r"1 validation error detected: Value 'x y' at 'roleName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\w+=,.@-]+"
        );
        assert_eq!(
            validation("GetRole", &[]),
            "1 validation error detected: Value null at 'roleName' failed to satisfy constraint: Member must not be null"
        );
        let long = "a".repeat(65);
        assert_eq!(
            validation(
                "CreateRole",
                &[
                    ("RoleName", &long),
                    ("AssumeRolePolicyDocument", TRUST),
                    ("MaxSessionDuration", "100"),
                    ("Path", "nope"),
                ]
            ),
            format!(
                "3 validation errors detected: \
                 Value '{long}' at 'roleName' failed to satisfy constraint: Member must have length less than or equal to 64; \
                 Value 'nope' at 'path' failed to satisfy constraint: Member must satisfy regular expression pattern: {}; \
                 Value '100' at 'maxSessionDuration' failed to satisfy constraint: Member must have value greater than or equal to 3600",
                ROLE_PATH.shown
            )
        );
        assert!(validation("ListRoles", &[("MaxItems", "0")]).contains("'maxItems'"));
        assert!(
            validation("ListRoles", &[("MaxItems", "1001")]).contains("less than or equal to 1000")
        );
        assert!(validation(
            "CreatePolicy",
            &[
                ("PolicyName", "p"),
                ("PolicyDocument", "{}"),
                ("Path", "/a//")
            ]
        )
        .contains("'path'"));
        assert!(matches!(
            Command::parse("AttachRolePolicy", &params(&[("RoleName", "r"), ("PolicyArn", "arn:aws:iam::aws:nothing")])),
            Err(IamError::InvalidInput(m)) if m == "ARN arn:aws:iam::aws:nothing is not valid."
        ));
        assert!(matches!(
            Command::parse(
                "CreateRole",
                &params(&[
                    ("RoleName", "r"),
                    ("AssumeRolePolicyDocument", TRUST),
                    ("Tags.member.1.Key", "k"),
                    ("Tags.member.1.Value", "1"),
                    ("Tags.member.2.Key", "K"),
                    ("Tags.member.2.Value", "2"),
                ])
            ),
            Err(IamError::InvalidInput(_))
        ));
    }

    #[test]
    fn paths_follow_iam_patterns() {
        for ok in ["/", "/a/", "/a/b-c/"] {
            assert!(is_role_path(ok) && is_policy_path(ok), "{ok}");
        }
        for bad in ["", "a", "/a", "a/", "//"] {
            assert!(!is_role_path(bad) && !is_policy_path(bad), "{bad}");
        }
        assert!(!is_role_path("/a b/") && is_role_path("/a!b/") && !is_policy_path("/a!b/"));
    }

    fn role() -> Role {
        Role {
            account_id: "111111111111".into(),
            name: "r&d".into(),
            path: "/".into(),
            id: "AROAABCDEFGHIJKLMNOPQ".into(),
            arn: "arn:aws:iam::111111111111:role/r&d".into(),
            assume_role_policy_document: r#"{"a": "b c"}"#.into(),
            description: None,
            max_session_duration: 3600,
            tags: vec![Tag {
                key: "k".into(),
                value: "v".into(),
            }],
            created_ms: 1_796_331_600_000,
        }
    }

    #[test]
    fn roles_render_as_iam_writes_them() {
        let xml = render("GetRole", &Outcome::Role(role()));
        let start = format!("<GetRoleResponse xmlns=\"{IAM_XMLNS}\"><GetRoleResult><Role>");
        assert!(xml.starts_with(&start), "{xml}");
        assert!(xml.contains(
            "<Path>/</Path><RoleName>r&amp;d</RoleName><RoleId>AROAABCDEFGHIJKLMNOPQ</RoleId>\
             <Arn>arn:aws:iam::111111111111:role/r&amp;d</Arn><CreateDate>2026-12-03T21:00:00Z</CreateDate>\
             <AssumeRolePolicyDocument>%7B%22a%22%3A%20%22b%20c%22%7D</AssumeRolePolicyDocument>\
             <MaxSessionDuration>3600</MaxSessionDuration>\
             <Tags><member><Key>k</Key><Value>v</Value></member></Tags></Role></GetRoleResult>\
             <ResponseMetadata><RequestId>"
        ), "{xml}");
        assert!(xml.ends_with("</RequestId></ResponseMetadata></GetRoleResponse>"));

        let list = render(
            "ListRoles",
            &Outcome::Roles(Page {
                items: vec![role()],
                next_marker: Some("r&d".into()),
            }),
        );
        assert!(
            list.contains("<ListRolesResult><Roles><member><Path>/</Path>"),
            "{list}"
        );
        assert!(!list.contains("<Tags>"), "{list}");
        assert!(list.contains(
            "</Roles><IsTruncated>true</IsTruncated><Marker>r&amp;d</Marker></ListRolesResult>"
        ));
    }

    #[test]
    fn actions_without_a_result_answer_only_metadata() {
        let xml = render("DeleteRole", &Outcome::Done);
        assert!(xml.starts_with(&format!(
            "<DeleteRoleResponse xmlns=\"{IAM_XMLNS}\"><ResponseMetadata><RequestId>"
        )));
        let names = render(
            "ListRolePolicies",
            &Outcome::InlineNames(Page {
                items: vec!["a".into()],
                next_marker: None,
            }),
        );
        assert!(names.contains(
            "<ListRolePoliciesResult><PolicyNames><member>a</member></PolicyNames>\
             <IsTruncated>false</IsTruncated></ListRolePoliciesResult>"
        ));
    }

    #[test]
    fn policies_render_with_their_counts() {
        let p = ManagedPolicy {
            account_id: "111111111111".into(),
            name: "Logs".into(),
            path: "/".into(),
            id: "ANPAABCDEFGHIJKLMNOPQ".into(),
            arn: "arn:aws:iam::111111111111:policy/Logs".into(),
            document: "{}".into(),
            description: Some("d".into()),
            tags: Vec::new(),
            created_ms: 0,
            updated_ms: 1000,
            attachment_count: 2,
        };
        let xml = render("GetPolicy", &Outcome::Policy(p));
        assert!(xml.contains(
            "<Policy><PolicyName>Logs</PolicyName><PolicyId>ANPAABCDEFGHIJKLMNOPQ</PolicyId>\
             <Arn>arn:aws:iam::111111111111:policy/Logs</Arn><Path>/</Path>\
             <DefaultVersionId>v1</DefaultVersionId><AttachmentCount>2</AttachmentCount>\
             <PermissionsBoundaryUsageCount>0</PermissionsBoundaryUsageCount>\
             <IsAttachable>true</IsAttachable><Description>d</Description>\
             <CreateDate>1970-01-01T00:00:00Z</CreateDate><UpdateDate>1970-01-01T00:00:01Z</UpdateDate></Policy>"
        ), "{xml}");
    }
}
