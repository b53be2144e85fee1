//! SQS standard queues per account over [`hearth_store::SqsStore`], in both
//! of SQS's protocols on `/`: JSON 1.0 (`X-Amz-Target: AmazonSQS.<Op>`,
//! current botocore) and the query protocol (`Action=<Op>`, answered in
//! XML).
//!
//! Both protocols are read into the JSON protocol's input shape, run by one
//! function per operation, and their answers rendered in the protocol's
//! own way; errors carry the JSON shape's name and the query code (the
//! JSON answer's `x-amzn-query-error` header), so botocore's modeled
//! exceptions match in either protocol.
//!
//! A queue's URL is `http://<Host>/<account>/<name>`; a URL naming another
//! account's queue is answered as a queue that does not exist.

use crate::caller::Caller;
use crate::query::{self, Service};
use crate::state::AppState;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use hearth_store::sqs::{MessageAttribute, NewMessage, QueueSettings, Received, Redrive};
use hearth_store::SqsError;
use serde_json::{json, Map, Value};
use std::time::Duration;

/// The query protocol's XML namespace for SQS.
pub(crate) const SQS_XMLNS: &str = "http://queue.amazonaws.com/doc/2012-11-05/";
/// The largest message body and batch, bytes.
const MAX_BYTES: usize = 262_144;
/// The longest long poll, seconds.
const MAX_WAIT_S: i64 = 20;
/// Entries a batch holds at most.
const MAX_BATCH: usize = 10;

const OPS: [&str; 14] = [
    "CreateQueue",
    "GetQueueUrl",
    "ListQueues",
    "DeleteQueue",
    "GetQueueAttributes",
    "SetQueueAttributes",
    "PurgeQueue",
    "SendMessage",
    "SendMessageBatch",
    "ReceiveMessage",
    "DeleteMessage",
    "DeleteMessageBatch",
    "ChangeMessageVisibility",
    "ChangeMessageVisibilityBatch",
];

/// An SQS error: its JSON shape name, its query-protocol code and message.
#[derive(Debug)]
struct Fail {
    status: StatusCode,
    shape: &'static str,
    /// The query code; empty: none (the JSON answer then has no
    /// `x-amzn-query-error`).
    code: &'static str,
    message: String,
}

fn fail(shape: &'static str, code: &'static str, message: impl Into<String>) -> Fail {
    Fail {
        status: StatusCode::BAD_REQUEST,
        shape,
        code,
        message: message.into(),
    }
}

fn invalid(message: impl Into<String>) -> Fail {
    fail(
        "InvalidParameterValueException",
        "InvalidParameterValue",
        message,
    )
}

fn missing(name: &str) -> Fail {
    fail(
        "MissingRequiredParameterException",
        "MissingParameter",
        format!("The request must contain the parameter {name}."),
    )
}

fn no_queue() -> Fail {
    fail(
        "QueueDoesNotExist",
        "AWS.SimpleQueueService.NonExistentQueue",
        "The specified queue does not exist.",
    )
}

fn bad_receipt(handle: &str) -> Fail {
    fail(
        "ReceiptHandleIsInvalid",
        "ReceiptHandleIsInvalid",
        format!("The input receipt handle \"{handle}\" is not a valid receipt handle."),
    )
}

fn serialization(message: &str) -> Fail {
    fail("SerializationException", "", message)
}

impl From<SqsError> for Fail {
    fn from(e: SqsError) -> Self {
        match e {
            SqsError::NoQueue => no_queue(),
            SqsError::TooLarge(max) => too_long(max as usize),
            SqsError::QueueExists => fail("QueueNameExists", "QueueAlreadyExists", e.to_string()),
            SqsError::NotInflight => fail(
                "MessageNotInflight",
                "AWS.SimpleQueueService.MessageNotInflight",
                e.to_string(),
            ),
            SqsError::Sqlite(_) | SqsError::Corrupt(_) | SqsError::ShuttingDown => {
                tracing::error!(error = %e, "SQS store failed");
                Fail {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    shape: "InternalError",
                    code: "InternalError",
                    message: "We encountered an internal error. Please try again.".to_owned(),
                }
            }
        }
    }
}

impl Fail {
    fn json(self) -> Response {
        let mut r = json_reply(
            self.status,
            json!({ "__type": format!("com.amazonaws.sqs#{}", self.shape), "message": self.message }),
        );
        r.headers_mut()
            .insert("x-amzn-ErrorType", HeaderValue::from_static(self.shape));
        if !self.code.is_empty() {
            let kind = if self.status.is_server_error() {
                "Receiver"
            } else {
                "Sender"
            };
            if let Ok(v) = HeaderValue::from_str(&format!("{};{kind}", self.code)) {
                r.headers_mut().insert("x-amzn-query-error", v);
            }
        }
        r
    }

    fn xml(self) -> Response {
        let code = if self.code.is_empty() {
            self.shape
        } else {
            self.code
        };
        query::error(self.status, code, &self.message, &Service("sqs".to_owned()))
    }
}

fn json_reply(status: StatusCode, body: Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.0"),
    );
    r
}

/// A JSON-protocol request (`X-Amz-Target: AmazonSQS.<op>`).
pub async fn handle_json(
    state: &AppState,
    caller: &Caller,
    op: &str,
    body: &[u8],
    host: &str,
) -> Response {
    let input = match serde_json::from_slice::<Value>(if body.is_empty() { b"{}" } else { body }) {
        Ok(Value::Object(m)) => m,
        Ok(_) | Err(_) => {
            return serialization("The request body is not a well-formed JSON object.").json()
        }
    };
    if !OPS.contains(&op) {
        return fail(
            "UnknownOperationException",
            "InvalidAction",
            format!("Hearth does not implement the SQS operation {op}"),
        )
        .json();
    }
    match run(state, caller, op, Input(input), host).await {
        Ok(v) => json_reply(StatusCode::OK, v),
        Err(f) => f.json(),
    }
}

/// A query-protocol request (`Action=<op>`).
pub async fn handle_query(
    state: &AppState,
    caller: &Caller,
    op: &str,
    params: &[(String, String)],
    host: &str,
) -> Response {
    if !OPS.contains(&op) {
        return fail(
            "UnknownOperationException",
            "InvalidAction",
            format!("The action {op} is not valid for this web service."),
        )
        .xml();
    }
    match run(state, caller, op, Input(from_query(params)), host).await {
        Ok(v) => query::xml(StatusCode::OK, to_xml(op, &v)),
        Err(f) => f.xml(),
    }
}

/// The request's members, in the JSON protocol's shape. Numbers may come as
/// strings (the query protocol's).
struct Input(Map<String, Value>);

fn get_str<'a>(m: &'a Map<String, Value>, k: &str) -> Result<Option<&'a str>, Fail> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(serialization(&format!("{k} must be a string"))),
    }
}

fn get_int(m: &Map<String, Value>, k: &str) -> Result<Option<i64>, Fail> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => s
            .parse()
            .map(Some)
            .map_err(|_| invalid(format!("Value {s} for parameter {k} is invalid."))),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| serialization(&format!("{k} must be an integer"))),
    }
}

fn in_range(k: &str, v: i64, lo: i64, hi: i64) -> Result<u32, Fail> {
    if (lo..=hi).contains(&v) {
        Ok(u32::try_from(v).unwrap_or(0))
    } else {
        Err(invalid(format!(
            "Value {v} for parameter {k} is invalid. Reason: Must be between {lo} and {hi}."
        )))
    }
}

impl Input {
    fn str(&self, k: &str) -> Result<Option<&str>, Fail> {
        get_str(&self.0, k)
    }

    fn need(&self, k: &str) -> Result<&str, Fail> {
        self.str(k)?.ok_or_else(|| missing(k))
    }

    fn int(&self, k: &str) -> Result<Option<i64>, Fail> {
        get_int(&self.0, k)
    }

    fn strings(&self, k: &str) -> Result<Vec<String>, Fail> {
        match self.0.get(k) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| serialization(&format!("{k} must hold strings")))
                })
                .collect(),
            Some(_) => Err(serialization(&format!("{k} must be a list"))),
        }
    }

    fn map(&self, k: &str) -> Result<Map<String, Value>, Fail> {
        match self.0.get(k) {
            None | Some(Value::Null) => Ok(Map::new()),
            Some(Value::Object(m)) => Ok(m.clone()),
            Some(_) => Err(serialization(&format!("{k} must be a map"))),
        }
    }

    fn objects(&self, k: &str) -> Result<Vec<Map<String, Value>>, Fail> {
        match self.0.get(k) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_object()
                        .cloned()
                        .ok_or_else(|| serialization(&format!("{k} must hold structures")))
                })
                .collect(),
            Some(_) => Err(serialization(&format!("{k} must be a list"))),
        }
    }

    /// The caller's queue `QueueUrl` names.
    fn queue(&self, caller: &Caller) -> Result<String, Fail> {
        queue_of(self.need("QueueUrl")?, caller)
    }
}

/// The queue a URL names, if it is the caller's: its last two path
/// segments are the account and the name.
fn queue_of(url: &str, caller: &Caller) -> Result<String, Fail> {
    let path = url.split_once("://").map_or(url, |(_, rest)| rest);
    let mut segs = path.rsplit('/').filter(|s| !s.is_empty());
    match (segs.next(), segs.next()) {
        (Some(name), Some(account)) if account == caller.id() => Ok(name.to_owned()),
        _ => Err(no_queue()),
    }
}

fn url_of(host: &str, account: &str, name: &str) -> String {
    format!("http://{host}/{account}/{name}")
}

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(i64::MAX)
}

/// Runs store work off the async threads.
async fn blocking<T, F>(state: &AppState, f: F) -> Result<T, Fail>
where
    F: FnOnce(&hearth_store::SqsStore) -> Result<T, SqsError> + Send + 'static,
    T: Send + 'static,
{
    let store = state.sqs.store().clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "SQS worker failed");
            Fail {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                shape: "InternalError",
                code: "InternalError",
                message: "We encountered an internal error. Please try again.".to_owned(),
            }
        })?
        .map_err(Fail::from)
}

async fn run(
    state: &AppState,
    caller: &Caller,
    op: &str,
    input: Input,
    host: &str,
) -> Result<Value, Fail> {
    let account = caller.id().to_owned();
    match op {
        "CreateQueue" => {
            let name = input.need("QueueName")?.to_owned();
            check_queue_name(&name)?;
            let mut settings = settings_of(&input.map("Attributes")?)?;
            check_redrive(state, &account, &name, &mut settings).await?;
            let (a, n) = (account.clone(), name.clone());
            blocking(state, move |s| {
                s.create_queue(&a, &n, settings, now_ms() / 1000)
            })
            .await?;
            Ok(json!({ "QueueUrl": url_of(host, &account, &name) }))
        }
        "GetQueueUrl" => {
            let name = input.need("QueueName")?.to_owned();
            if let Some(owner) = input.str("QueueOwnerAWSAccountId")? {
                if owner != account {
                    return Err(no_queue());
                }
            }
            let (a, n) = (account.clone(), name.clone());
            blocking(state, move |s| s.queue(&a, &n)).await?;
            Ok(json!({ "QueueUrl": url_of(host, &account, &name) }))
        }
        "ListQueues" => {
            let prefix = input.str("QueueNamePrefix")?.unwrap_or("").to_owned();
            let max = match input.int("MaxResults")? {
                None => None,
                Some(n) => Some(in_range("MaxResults", n, 1, 1000)? as usize),
            };
            let after = input.str("NextToken")?.map(str::to_owned);
            let limit = max.unwrap_or(1000);
            let a = account.clone();
            let mut names = blocking(state, move |s| {
                s.list_queues(&a, &prefix, after.as_deref(), limit + 1)
            })
            .await?;
            let more = names.len() > limit;
            names.truncate(limit);
            let mut out = Map::new();
            if !names.is_empty() {
                out.insert(
                    "QueueUrls".to_owned(),
                    names
                        .iter()
                        .map(|n| Value::from(url_of(host, &account, n)))
                        .collect(),
                );
            }
            // SQS pages only when asked to (`MaxResults`).
            if more && max.is_some() {
                if let Some(last) = names.last() {
                    out.insert("NextToken".to_owned(), last.clone().into());
                }
            }
            Ok(Value::Object(out))
        }
        "DeleteQueue" => {
            let name = input.queue(caller)?;
            blocking(state, move |s| s.delete_queue(&account, &name)).await?;
            Ok(json!({}))
        }
        "PurgeQueue" => {
            let name = input.queue(caller)?;
            blocking(state, move |s| s.purge(&account, &name)).await?;
            Ok(json!({}))
        }
        "SetQueueAttributes" => {
            let name = input.queue(caller)?;
            let attrs = input.map("Attributes")?;
            if attrs.contains_key("FifoQueue") {
                return Err(invalid_attribute_name("FifoQueue"));
            }
            let (a, n) = (account.clone(), name.clone());
            let q = blocking(state, move |s| s.queue(&a, &n)).await?;
            let mut settings = apply_attributes(q.settings, &attrs)?;
            if attrs.contains_key("RedrivePolicy") {
                check_redrive(state, &account, &name, &mut settings).await?;
            }
            blocking(state, move |s| {
                s.set_settings(&account, &name, settings, now_ms() / 1000)
            })
            .await?;
            Ok(json!({}))
        }
        "GetQueueAttributes" => {
            let name = input.queue(caller)?;
            let wanted = input.strings("AttributeNames")?;
            get_attributes(state, &account, &name, &wanted, state.node.region.as_str()).await
        }
        "SendMessage" => {
            let name = input.queue(caller)?;
            let msg = new_message(&input.0, MAX_BYTES)?;
            let (a, n) = (account.clone(), name.clone());
            let m = msg.clone();
            blocking(state, move |s| {
                let q = s.queue(&a, &n)?;
                if m.body.len() > q.settings.max_message_bytes as usize {
                    return Ok(Err(too_long(q.settings.max_message_bytes as usize)));
                }
                s.send(&a, &n, std::slice::from_ref(&m), now_ms())?;
                Ok(Ok(()))
            })
            .await??;
            state.sqs.notify_sent();
            let mut out = json!({ "MessageId": msg.id, "MD5OfMessageBody": msg.md5_of_body });
            if let Some(md5) = msg.md5_of_attributes {
                out["MD5OfMessageAttributes"] = md5.into();
            }
            Ok(out)
        }
        "SendMessageBatch" => send_batch(state, caller, &input).await,
        "ReceiveMessage" => receive(state, caller, &input).await,
        "DeleteMessage" => {
            let name = input.queue(caller)?;
            let handle = input.need("ReceiptHandle")?;
            let (id, _) = parse_receipt(handle, &account, &name)?;
            blocking(state, move |s| s.delete_message(&account, &name, &id)).await?;
            Ok(json!({}))
        }
        "DeleteMessageBatch" => delete_batch(state, caller, &input).await,
        "ChangeMessageVisibility" => {
            let name = input.queue(caller)?;
            let handle = input.need("ReceiptHandle")?;
            let timeout = in_range(
                "VisibilityTimeout",
                input
                    .int("VisibilityTimeout")?
                    .ok_or_else(|| missing("VisibilityTimeout"))?,
                0,
                43_200,
            )?;
            let (id, token) = parse_receipt(handle, &account, &name)?;
            blocking(state, move |s| {
                s.change_visibility(&account, &name, &id, &token, timeout, now_ms())
            })
            .await?;
            Ok(json!({}))
        }
        _ => Err(fail(
            "UnsupportedOperation",
            "AWS.SimpleQueueService.UnsupportedOperation",
            format!("Hearth does not implement the SQS operation {op}"),
        )),
    }
}

fn check_queue_name(name: &str) -> Result<(), Fail> {
    if name.ends_with(".fifo") {
        return Err(invalid(
            "Hearth supports standard queues only, not FIFO queues.",
        ));
    }
    let ok = (1..=80).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length",
        ))
    }
}

fn invalid_attribute_name(name: &str) -> Fail {
    fail(
        "InvalidAttributeName",
        "InvalidAttributeName",
        format!("Unknown Attribute {name}."),
    )
}

fn settings_of(attrs: &Map<String, Value>) -> Result<QueueSettings, Fail> {
    apply_attributes(QueueSettings::default(), attrs)
}

/// `attrs` set on top of `s`.
fn apply_attributes(
    mut s: QueueSettings,
    attrs: &Map<String, Value>,
) -> Result<QueueSettings, Fail> {
    for (k, v) in attrs {
        let text = v
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| v.to_string());
        let num = || -> Result<i64, Fail> {
            text.parse().map_err(|_| {
                fail(
                    "InvalidAttributeValue",
                    "InvalidAttributeValue",
                    format!("Invalid value for the parameter {k}."),
                )
            })
        };
        let bounded = |lo: i64, hi: i64| -> Result<u32, Fail> {
            let n = num()?;
            if (lo..=hi).contains(&n) {
                Ok(u32::try_from(n).unwrap_or(0))
            } else {
                Err(fail(
                    "InvalidAttributeValue",
                    "InvalidAttributeValue",
                    format!("Invalid value for the parameter {k}."),
                ))
            }
        };
        match k.as_str() {
            "VisibilityTimeout" => s.visibility_timeout_s = bounded(0, 43_200)?,
            "MessageRetentionPeriod" => s.retention_s = bounded(60, 1_209_600)?,
            "DelaySeconds" => s.delay_s = bounded(0, 900)?,
            "ReceiveMessageWaitTimeSeconds" => s.receive_wait_s = bounded(0, 20)?,
            "MaximumMessageSize" => s.max_message_bytes = bounded(1024, 262_144)?,
            "FifoQueue" if text == "true" => {
                return Err(invalid(
                    "Hearth supports standard queues only, not FIFO queues.",
                ))
            }
            "FifoQueue" => {}
            "RedrivePolicy" if text.is_empty() => s.redrive = None,
            "RedrivePolicy" => s.redrive = Some(redrive_of(&text)?),
            other => return Err(invalid_attribute_name(other)),
        }
    }
    Ok(s)
}

/// `RedrivePolicy`'s JSON: `deadLetterTargetArn` (a queue of the same
/// account: checked by [`check_redrive`]) and `maxReceiveCount` (1–1000,
/// a number or a string).
fn redrive_of(text: &str) -> Result<Redrive, Fail> {
    let bad = |why: &str| {
        fail(
            "InvalidAttributeValue",
            "InvalidAttributeValue",
            format!("Value {text} for parameter RedrivePolicy is invalid. Reason: {why}"),
        )
    };
    let v: Value =
        serde_json::from_str(text).map_err(|_| bad("Redrive policy is not a valid JSON map."))?;
    let arn = v
        .get("deadLetterTargetArn")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            bad("Redrive policy does not contain mandatory attribute: deadLetterTargetArn.")
        })?;
    let count = match v.get("maxReceiveCount") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| bad("Redrive policy does not contain mandatory attribute: maxReceiveCount."))?;
    if !(1..=1000).contains(&count) {
        return Err(bad(&format!(
            "Invalid value for maxReceiveCount: {count}, valid values are from 1 to 1000 both inclusive."
        )));
    }
    let Some((_, owner, name)) = hearth_exec::sqs::parse_queue_arn(arn) else {
        return Err(bad("Invalid value for deadLetterTargetArn."));
    };
    Ok(Redrive {
        // Kept with its account for check_redrive: "<account>:<name>".
        dead_letter_queue: format!("{owner}:{name}"),
        max_receive_count: count as u32,
    })
}

/// The dead-letter queue must be an existing queue of the same account,
/// not the queue itself; the stored name drops the account.
async fn check_redrive(
    state: &AppState,
    account: &str,
    queue: &str,
    settings: &mut QueueSettings,
) -> Result<(), Fail> {
    let Some(r) = settings.redrive.as_mut() else {
        return Ok(());
    };
    let Some((owner, name)) = r.dead_letter_queue.split_once(':') else {
        return Ok(());
    };
    let (owner, name) = (owner.to_owned(), name.to_owned());
    let missing = || {
        fail(
            "InvalidAttributeValue",
            "InvalidAttributeValue",
            "Value for parameter RedrivePolicy is invalid. Reason: Dead-letter target does not exist.",
        )
    };
    if owner != account || name == queue {
        return Err(missing());
    }
    let (a, n) = (account.to_owned(), name.clone());
    if blocking(state, move |s| s.queue(&a, &n)).await.is_err() {
        return Err(missing());
    }
    r.dead_letter_queue = name;
    Ok(())
}

const QUEUE_ATTRIBUTES: [&str; 13] = [
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
    "CreatedTimestamp",
    "LastModifiedTimestamp",
    "QueueArn",
    "VisibilityTimeout",
    "MessageRetentionPeriod",
    "DelaySeconds",
    "ReceiveMessageWaitTimeSeconds",
    "MaximumMessageSize",
    "RedrivePolicy",
    "SqsManagedSseEnabled",
];

async fn get_attributes(
    state: &AppState,
    account: &str,
    name: &str,
    wanted: &[String],
    region: &str,
) -> Result<Value, Fail> {
    for w in wanted {
        if w != "All" && !QUEUE_ATTRIBUTES.contains(&w.as_str()) {
            return Err(invalid_attribute_name(w));
        }
    }
    let (a, n) = (account.to_owned(), name.to_owned());
    let (q, counts) = blocking(state, move |s| {
        let q = s.queue(&a, &n)?;
        let c = s.counts(&a, &n, now_ms())?;
        Ok((q, c))
    })
    .await?;
    let all = wanted.iter().any(|w| w == "All");
    let mut out = Map::new();
    for attr in QUEUE_ATTRIBUTES {
        if !all && !wanted.iter().any(|w| w == attr) {
            continue;
        }
        let v = match attr {
            "ApproximateNumberOfMessages" => counts.visible.to_string(),
            "ApproximateNumberOfMessagesNotVisible" => counts.in_flight.to_string(),
            "ApproximateNumberOfMessagesDelayed" => counts.delayed.to_string(),
            "CreatedTimestamp" => q.created_s.to_string(),
            "LastModifiedTimestamp" => q.modified_s.to_string(),
            "QueueArn" => format!("arn:aws:sqs:{region}:{account}:{name}"),
            "VisibilityTimeout" => q.settings.visibility_timeout_s.to_string(),
            "MessageRetentionPeriod" => q.settings.retention_s.to_string(),
            "DelaySeconds" => q.settings.delay_s.to_string(),
            "ReceiveMessageWaitTimeSeconds" => q.settings.receive_wait_s.to_string(),
            "MaximumMessageSize" => q.settings.max_message_bytes.to_string(),
            "RedrivePolicy" => match &q.settings.redrive {
                Some(r) => json!({
                    "deadLetterTargetArn": format!("arn:aws:sqs:{region}:{account}:{}", r.dead_letter_queue),
                    "maxReceiveCount": r.max_receive_count,
                })
                .to_string(),
                None => continue,
            },
            _ => "false".to_owned(),
        };
        out.insert(attr.to_owned(), v.into());
    }
    if out.is_empty() {
        return Ok(json!({}));
    }
    Ok(json!({ "Attributes": out }))
}

fn too_long(max: usize) -> Fail {
    invalid(format!(
        "One or more parameters are invalid. Reason: Message must be shorter than {max} bytes."
    ))
}

/// A message to send from `SendMessage`'s members (or a batch entry's).
fn new_message(m: &Map<String, Value>, max: usize) -> Result<NewMessage, Fail> {
    let body = get_str(m, "MessageBody")?.ok_or_else(|| missing("MessageBody"))?;
    if body.is_empty() {
        return Err(invalid(
            "One or more parameters are invalid. Reason: Message body must not be empty.",
        ));
    }
    if body.len() > max {
        return Err(too_long(max));
    }
    let delay = match get_int(m, "DelaySeconds")? {
        None => None,
        Some(d) => Some(in_range("DelaySeconds", d, 0, 900)?),
    };
    let attributes = message_attributes(m)?;
    let md5_of_attributes =
        (!attributes.is_empty()).then(|| hearth_store::sqs::md5_of_attributes(&attributes));
    Ok(NewMessage {
        id: uuid::Uuid::new_v4().to_string(),
        body: body.to_owned(),
        md5_of_body: hearth_store::sqs::md5_hex(body.as_bytes()),
        md5_of_attributes,
        attributes,
        delay_s: delay,
    })
}

fn message_attributes(m: &Map<String, Value>) -> Result<Vec<MessageAttribute>, Fail> {
    let Some(attrs) = m.get("MessageAttributes").and_then(Value::as_object) else {
        return Ok(Vec::new());
    };
    if attrs.len() > 10 {
        return Err(invalid("Number of message attributes cannot exceed 10."));
    }
    let mut out = Vec::new();
    for (name, v) in attrs {
        let v = v
            .as_object()
            .ok_or_else(|| serialization("MessageAttributes values must be structures"))?;
        let data_type = get_str(v, "DataType")?.ok_or_else(|| {
            invalid(format!(
                "The message attribute '{name}' must contain a non-empty attribute type."
            ))
        })?;
        let base = data_type.split('.').next().unwrap_or("");
        let (string_value, binary_value) = match base {
            "String" | "Number" => (
                Some(
                    get_str(v, "StringValue")?
                        .ok_or_else(|| invalid(format!("The message attribute '{name}' must contain a non-empty message attribute value for message attribute type '{data_type}'.")))?
                        .to_owned(),
                ),
                None,
            ),
            "Binary" => {
                let b64 = get_str(v, "BinaryValue")?
                    .ok_or_else(|| invalid(format!("The message attribute '{name}' must contain a non-empty message attribute value for message attribute type '{data_type}'.")))?;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|_| invalid(format!("The message attribute '{name}' has an invalid binary value.")))?;
                (None, Some(bytes))
            }
            _ => {
                return Err(invalid(format!(
                    "The type of message (user) attribute '{name}' is invalid. You must use only the following supported type prefixes: Binary, Number, String."
                )))
            }
        };
        out.push(MessageAttribute {
            name: name.clone(),
            data_type: data_type.to_owned(),
            string_value,
            binary_value,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn batch_error(shape: &'static str, code: &'static str, message: &str) -> Fail {
    fail(shape, code, message)
}

/// A batch's entries: 1 to 10, each `Id` distinct and well-formed.
fn batch_entries(input: &Input) -> Result<Vec<Map<String, Value>>, Fail> {
    let entries = input.objects("Entries")?;
    if entries.is_empty() {
        return Err(batch_error(
            "EmptyBatchRequest",
            "AWS.SimpleQueueService.EmptyBatchRequest",
            "There should be at least one SendMessageBatchRequestEntry in the request.",
        ));
    }
    if entries.len() > MAX_BATCH {
        return Err(batch_error(
            "TooManyEntriesInBatchRequest",
            "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
            &format!(
                "Maximum number of entries per request are {MAX_BATCH}. You have sent {}.",
                entries.len()
            ),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for e in &entries {
        let id = get_str(e, "Id")?.ok_or_else(|| missing("Id"))?;
        let ok = (1..=80).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(batch_error(
                "InvalidBatchEntryId",
                "AWS.SimpleQueueService.InvalidBatchEntryId",
                "A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long.",
            ));
        }
        if !seen.insert(id.to_owned()) {
            return Err(batch_error(
                "BatchEntryIdsNotDistinct",
                "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
                &format!("Id {id} repeated."),
            ));
        }
    }
    Ok(entries)
}

fn entry_failure(id: &str, f: &Fail) -> Value {
    let code = if f.code.is_empty() { f.shape } else { f.code };
    json!({ "Id": id, "SenderFault": !f.status.is_server_error(), "Code": code, "Message": f.message })
}

async fn send_batch(state: &AppState, caller: &Caller, input: &Input) -> Result<Value, Fail> {
    let account = caller.id().to_owned();
    let name = input.queue(caller)?;
    let entries = batch_entries(input)?;
    let (a, n) = (account.clone(), name.clone());
    let q = blocking(state, move |s| s.queue(&a, &n)).await?;
    let max = q.settings.max_message_bytes as usize;
    let total: usize = entries
        .iter()
        .filter_map(|e| e.get("MessageBody").and_then(Value::as_str))
        .map(str::len)
        .sum();
    if total > MAX_BYTES {
        return Err(batch_error(
            "BatchRequestTooLong",
            "AWS.SimpleQueueService.BatchRequestTooLong",
            &format!("Batch requests cannot be longer than {MAX_BYTES} bytes. You have sent {total} bytes."),
        ));
    }
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    let mut send = Vec::new();
    for e in &entries {
        let id = get_str(e, "Id")?.unwrap_or("").to_owned();
        match new_message(e, max) {
            Ok(m) => {
                let mut r =
                    json!({ "Id": id, "MessageId": m.id, "MD5OfMessageBody": m.md5_of_body });
                if let Some(md5) = &m.md5_of_attributes {
                    r["MD5OfMessageAttributes"] = md5.clone().into();
                }
                ok.push(r);
                send.push(m);
            }
            Err(f) => failed.push(entry_failure(&id, &f)),
        }
    }
    if !send.is_empty() {
        blocking(state, move |s| s.send(&account, &name, &send, now_ms())).await?;
        state.sqs.notify_sent();
    }
    Ok(json!({ "Successful": ok, "Failed": failed }))
}

async fn delete_batch(state: &AppState, caller: &Caller, input: &Input) -> Result<Value, Fail> {
    let account = caller.id().to_owned();
    let name = input.queue(caller)?;
    let entries = batch_entries(input)?;
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    let mut ids = Vec::new();
    for e in &entries {
        let id = get_str(e, "Id")?.unwrap_or("").to_owned();
        let handle = get_str(e, "ReceiptHandle")?.unwrap_or("");
        match parse_receipt(handle, &account, &name) {
            Ok((msg, _)) => {
                ids.push(msg);
                ok.push(json!({ "Id": id }));
            }
            Err(f) => failed.push(entry_failure(&id, &f)),
        }
    }
    blocking(state, move |s| {
        s.queue(&account, &name)?;
        for id in &ids {
            s.delete_message(&account, &name, id)?;
        }
        Ok(())
    })
    .await?;
    Ok(json!({ "Successful": ok, "Failed": failed }))
}

/// The message id and token of a handle for this queue.
fn parse_receipt(handle: &str, account: &str, queue: &str) -> Result<(String, String), Fail> {
    match hearth_store::sqs::parse_receipt_handle(handle) {
        Some((a, q, id, token)) if a == account && q == queue => Ok((id, token)),
        _ => Err(bad_receipt(handle)),
    }
}

async fn receive(state: &AppState, caller: &Caller, input: &Input) -> Result<Value, Fail> {
    let account = caller.id().to_owned();
    let name = input.queue(caller)?;
    let max = match input.int("MaxNumberOfMessages")? {
        None => 1,
        Some(n) => in_range("MaxNumberOfMessages", n, 1, 10)? as usize,
    };
    let visibility = match input.int("VisibilityTimeout")? {
        None => None,
        Some(v) => Some(in_range("VisibilityTimeout", v, 0, 43_200)?),
    };
    let wait = match input.int("WaitTimeSeconds")? {
        None => None,
        Some(w) => Some(in_range("WaitTimeSeconds", w, 0, MAX_WAIT_S)?),
    };
    let mut system = input.strings("AttributeNames")?;
    system.extend(input.strings("MessageSystemAttributeNames")?);
    let user = input.strings("MessageAttributeNames")?;
    let (a, n) = (account.clone(), name.clone());
    let q = blocking(state, move |s| s.queue(&a, &n)).await?;
    let wait = wait.unwrap_or(q.settings.receive_wait_s);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(u64::from(wait));
    let got = loop {
        // Registered before looking, so a send between the look and the
        // wait still wakes this poll.
        let sent = state.sqs.sent().notified();
        tokio::pin!(sent);
        sent.as_mut().enable();
        let (a, n) = (account.clone(), name.clone());
        let got = blocking(state, move |s| s.receive(&a, &n, max, visibility, now_ms())).await?;
        let now = tokio::time::Instant::now();
        if !got.is_empty() || now >= deadline {
            break got;
        }
        // Also look again every second: messages turn visible (delays,
        // visibility timeouts) without a send.
        let nap = (deadline - now).min(Duration::from_secs(1));
        let _ = tokio::time::timeout(nap, sent).await;
    };
    let messages: Vec<Value> = got
        .iter()
        .map(|m| render_message(&account, &name, m, &system, &user))
        .collect();
    if messages.is_empty() {
        return Ok(json!({}));
    }
    Ok(json!({ "Messages": messages }))
}

fn render_message(
    account: &str,
    queue: &str,
    m: &Received,
    system: &[String],
    user: &[String],
) -> Value {
    let mut out = json!({
        "MessageId": m.id,
        "ReceiptHandle": hearth_store::sqs::receipt_handle(account, queue, &m.id, &m.token),
        "MD5OfBody": m.md5_of_body,
        "Body": m.body,
    });
    let all = system.iter().any(|s| s == "All");
    let mut attrs = Map::new();
    for (k, v) in [
        ("SenderId", account.to_owned()),
        ("SentTimestamp", m.sent_ms.to_string()),
        ("ApproximateReceiveCount", m.receive_count.to_string()),
        (
            "ApproximateFirstReceiveTimestamp",
            m.first_receive_ms.to_string(),
        ),
    ] {
        if all || system.iter().any(|s| s == k) {
            attrs.insert(k.to_owned(), v.into());
        }
    }
    if !attrs.is_empty() {
        out["Attributes"] = Value::Object(attrs);
    }
    let chosen: Vec<MessageAttribute> = m
        .attributes
        .iter()
        .filter(|a| {
            user.iter().any(|u| {
                u == "All"
                    || u == ".*"
                    || *u == a.name
                    || u.strip_suffix(".*")
                        .is_some_and(|p| a.name.starts_with(&format!("{p}.")))
            })
        })
        .cloned()
        .collect();
    if !chosen.is_empty() {
        out["MD5OfMessageAttributes"] = hearth_store::sqs::md5_of_attributes(&chosen).into();
        let mut map = Map::new();
        for a in &chosen {
            let mut v = json!({ "DataType": a.data_type });
            if let Some(s) = &a.string_value {
                v["StringValue"] = s.clone().into();
            }
            if let Some(b) = &a.binary_value {
                v["BinaryValue"] = base64::engine::general_purpose::STANDARD.encode(b).into();
            }
            map.insert(a.name.clone(), v);
        }
        out["MessageAttributes"] = Value::Object(map);
    }
    out
}

// ---- The query protocol ----

/// `Prefix.N[.rest]` parameters, grouped by `N` in order: each group's
/// `(rest, value)` pairs (`rest` empty for `Prefix.N` itself).
fn indexed(params: &[(String, String)], prefix: &str) -> Vec<Vec<(String, String)>> {
    let mut groups: std::collections::BTreeMap<u32, Vec<(String, String)>> = Default::default();
    for (k, v) in params {
        let Some(rest) = k.strip_prefix(prefix).and_then(|r| r.strip_prefix('.')) else {
            continue;
        };
        let (n, sub) = rest.split_once('.').unwrap_or((rest, ""));
        if let Ok(n) = n.parse::<u32>() {
            groups
                .entry(n)
                .or_default()
                .push((sub.to_owned(), v.clone()));
        }
    }
    groups.into_values().collect()
}

fn lookup<'a>(group: &'a [(String, String)], k: &str) -> Option<&'a str> {
    group.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

/// `MessageAttribute.N.{Name, Value.DataType, Value.StringValue,
/// Value.BinaryValue}` as the JSON protocol's `MessageAttributes`.
fn attributes_from_query(params: &[(String, String)]) -> Option<Value> {
    let mut out = Map::new();
    for g in indexed(params, "MessageAttribute") {
        let Some(name) = lookup(&g, "Name") else {
            continue;
        };
        let mut v = Map::new();
        for (k, field) in [
            ("Value.DataType", "DataType"),
            ("Value.StringValue", "StringValue"),
            ("Value.BinaryValue", "BinaryValue"),
        ] {
            if let Some(x) = lookup(&g, k) {
                v.insert(field.to_owned(), x.into());
            }
        }
        out.insert(name.to_owned(), Value::Object(v));
    }
    (!out.is_empty()).then_some(Value::Object(out))
}

/// A query request's parameters in the JSON protocol's input shape.
fn from_query(params: &[(String, String)]) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in params {
        if !k.contains('.') && k != "Action" && k != "Version" {
            out.insert(k.clone(), v.clone().into());
        }
    }
    let mut attrs = Map::new();
    for g in indexed(params, "Attribute") {
        if let (Some(n), Some(v)) = (lookup(&g, "Name"), lookup(&g, "Value")) {
            attrs.insert(n.to_owned(), v.into());
        }
    }
    if !attrs.is_empty() {
        out.insert("Attributes".to_owned(), Value::Object(attrs));
    }
    for (prefix, field) in [
        ("AttributeName", "AttributeNames"),
        ("MessageSystemAttributeName", "MessageSystemAttributeNames"),
        ("MessageAttributeName", "MessageAttributeNames"),
    ] {
        let list: Vec<Value> = indexed(params, prefix)
            .into_iter()
            .filter_map(|g| lookup(&g, "").map(Value::from))
            .collect();
        if !list.is_empty() {
            out.insert(field.to_owned(), list.into());
        }
    }
    if let Some(a) = attributes_from_query(params) {
        out.insert("MessageAttributes".to_owned(), a);
    }
    for prefix in [
        "SendMessageBatchRequestEntry",
        "DeleteMessageBatchRequestEntry",
        "ChangeMessageVisibilityBatchRequestEntry",
    ] {
        let entries: Vec<Value> = indexed(params, prefix)
            .into_iter()
            .map(|g| {
                let mut e = Map::new();
                for (k, v) in &g {
                    if !k.is_empty() && !k.contains('.') {
                        e.insert(k.clone(), v.clone().into());
                    }
                }
                if let Some(a) = attributes_from_query(&g) {
                    e.insert("MessageAttributes".to_owned(), a);
                }
                Value::Object(e)
            })
            .collect();
        if !entries.is_empty() {
            out.insert("Entries".to_owned(), entries.into());
        }
    }
    out
}

/// An answer in the query protocol's XML.
fn to_xml(op: &str, v: &Value) -> String {
    let mut body = String::new();
    if let Some(m) = v.as_object().filter(|m| !m.is_empty()) {
        body.push_str(&format!("<{op}Result>"));
        render(op, m, &mut body);
        body.push_str(&format!("</{op}Result>"));
    } else if matches!(op, "ListQueues" | "ReceiveMessage" | "GetQueueAttributes") {
        body.push_str(&format!("<{op}Result/>"));
    }
    format!(
        "<{op}Response xmlns=\"{SQS_XMLNS}\">{body}<ResponseMetadata><RequestId>{id}</RequestId></ResponseMetadata></{op}Response>",
        id = uuid::Uuid::new_v4()
    )
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => query::escape(s),
        other => query::escape(&other.to_string()),
    }
}

fn render(op: &str, m: &Map<String, Value>, out: &mut String) {
    for (k, v) in m {
        match (k.as_str(), v) {
            ("QueueUrls", Value::Array(a)) => {
                for u in a {
                    out.push_str(&format!("<QueueUrl>{}</QueueUrl>", scalar(u)));
                }
            }
            ("Attributes", Value::Object(attrs)) => {
                for (n, x) in attrs {
                    out.push_str(&format!(
                        "<Attribute><Name>{}</Name><Value>{}</Value></Attribute>",
                        query::escape(n),
                        scalar(x)
                    ));
                }
            }
            ("MessageAttributes", Value::Object(attrs)) => {
                for (n, x) in attrs {
                    out.push_str(&format!(
                        "<MessageAttribute><Name>{}</Name><Value>",
                        query::escape(n)
                    ));
                    if let Some(fields) = x.as_object() {
                        render(op, fields, out);
                    }
                    out.push_str("</Value></MessageAttribute>");
                }
            }
            ("Messages" | "Successful" | "Failed", Value::Array(items)) => {
                let tag = match k.as_str() {
                    "Messages" => "Message".to_owned(),
                    "Successful" => format!("{op}ResultEntry"),
                    _ => "BatchResultErrorEntry".to_owned(),
                };
                for item in items {
                    out.push_str(&format!("<{tag}>"));
                    if let Some(fields) = item.as_object() {
                        render(op, fields, out);
                    }
                    out.push_str(&format!("</{tag}>"));
                }
            }
            (k, v) => out.push_str(&format!("<{k}>{}</{k}>", scalar(v))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_take_the_json_shape() {
        let p: Vec<(String, String)> = [
            ("Action", "SendMessageBatch"),
            ("QueueUrl", "http://h/1/q"),
            ("SendMessageBatchRequestEntry.2.Id", "b"),
            ("SendMessageBatchRequestEntry.1.Id", "a"),
            ("SendMessageBatchRequestEntry.1.MessageBody", "x"),
            (
                "SendMessageBatchRequestEntry.1.MessageAttribute.1.Name",
                "k",
            ),
            (
                "SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.DataType",
                "String",
            ),
            (
                "SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.StringValue",
                "v",
            ),
            ("Attribute.1.Name", "VisibilityTimeout"),
            ("Attribute.1.Value", "5"),
        ]
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect();
        let j = Value::Object(from_query(&p));
        assert_eq!(j["QueueUrl"], "http://h/1/q");
        assert_eq!(j["Attributes"]["VisibilityTimeout"], "5");
        assert_eq!(j["Entries"][0]["Id"], "a");
        assert_eq!(
            j["Entries"][0]["MessageAttributes"]["k"]["StringValue"],
            "v"
        );
        assert_eq!(j["Entries"][1]["Id"], "b");
    }

    #[test]
    fn queue_urls_name_the_account() {
        let caller = Caller {
            account: hearth_types::function::Account {
                id: "123456789012".to_owned(),
                name: "t".to_owned(),
                admin: false,
                created_ms: 0,
            },
            session: None,
        };
        assert_eq!(
            queue_of("http://localhost:9000/123456789012/q1", &caller).unwrap(),
            "q1"
        );
        assert!(queue_of("http://localhost:9000/999999999999/q1", &caller).is_err());
        assert!(queue_of("q1", &caller).is_err());
    }
}
