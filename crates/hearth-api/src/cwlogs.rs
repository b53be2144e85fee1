//! CloudWatch Logs over Hearth's log store: the JSON 1.1 protocol
//! (`X-Amz-Target: Logs_20140328.<Operation>` on `/`), per account.
//!
//! Each function's log group is `/aws/lambda/<function>`, created by its
//! first log line; each sandbox or VM writes one stream, named as Lambda
//! names them. Implemented: `DescribeLogGroups`, `DescribeLogStreams`,
//! `GetLogEvents`, `FilterLogEvents` (plain-text patterns), `DeleteLogGroup`,
//! `PutRetentionPolicy` (enforced) and `DeleteRetentionPolicy`. Every read
//! first waits for the log writer to store what answered invocations
//! wrote, so a line is readable as soon as its invocation has answered.

use crate::caller::Caller;
use crate::state::AppState;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hearth_store::logs::{EventFilter, StreamEvent};
use serde_json::{json, Map, Value};

/// Where every Lambda log group's name starts.
const PREFIX: &str = "/aws/lambda/";

/// The retention periods CloudWatch Logs accepts, days.
const RETENTION_DAYS: [u32; 22] = [
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

/// Events `FilterLogEvents` examines per call before it answers with a
/// `nextToken` (bounded work per request).
const FILTER_SCAN: usize = 20_000;

fn reply(status: StatusCode, body: Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    r
}

/// An error in the JSON protocol's shape, which botocore parses.
#[derive(Debug)]
struct Fail {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        let mut r = reply(
            self.status,
            json!({ "__type": self.code, "message": self.message }),
        );
        r.headers_mut()
            .insert("x-amzn-ErrorType", HeaderValue::from_static(self.code));
        r
    }
}

fn fail(code: &'static str, message: &str) -> Fail {
    Fail {
        status: StatusCode::BAD_REQUEST,
        code,
        message: message.to_owned(),
    }
}

fn invalid(message: &str) -> Fail {
    fail("InvalidParameterException", message)
}

fn no_group() -> Fail {
    fail(
        "ResourceNotFoundException",
        "The specified log group does not exist.",
    )
}

fn null(field: &str) -> Fail {
    invalid(&format!(
        "1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"
    ))
}

/// The request's JSON members.
struct Input(Map<String, Value>);

impl Input {
    fn str(&self, k: &str) -> Result<Option<&str>, Fail> {
        match self.0.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(fail(
                "SerializationException",
                &format!("{k} must be a string"),
            )),
        }
    }

    fn int(&self, k: &str) -> Result<Option<i64>, Fail> {
        match self.0.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| fail("SerializationException", &format!("{k} must be a number"))),
        }
    }

    fn bool(&self, k: &str) -> Result<Option<bool>, Fail> {
        match self.0.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(fail(
                "SerializationException",
                &format!("{k} must be a boolean"),
            )),
        }
    }

    fn strings(&self, k: &str) -> Result<Vec<String>, Fail> {
        match self.0.get(k) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_owned).ok_or_else(|| {
                        fail("SerializationException", &format!("{k} must hold strings"))
                    })
                })
                .collect(),
            Some(_) => Err(fail(
                "SerializationException",
                &format!("{k} must be a list"),
            )),
        }
    }

    /// `limit` in `1..=max`, `default` if absent.
    fn limit(&self, default: usize, max: usize) -> Result<usize, Fail> {
        match self.int("limit")? {
            None => Ok(default),
            Some(n) if n >= 1 && n as u64 <= max as u64 => Ok(n as usize),
            Some(n) => Err(invalid(&format!(
                "1 validation error detected: Value '{n}' at 'limit' failed to satisfy constraint: Member must have value {}",
                if n < 1 { "greater than or equal to 1".to_owned() } else { format!("less than or equal to {max}") }
            ))),
        }
    }

    /// The function of `logGroupName` (or `logGroupIdentifier`): `None`
    /// when the name is not a Lambda group's.
    fn group(&self) -> Result<Option<String>, Fail> {
        let name = match self.str("logGroupName")? {
            Some(n) => n,
            None => match self.str("logGroupIdentifier")? {
                // An ARN names the group after `log-group:`.
                Some(id) => id
                    .split_once(":log-group:")
                    .map_or(id, |(_, rest)| rest.trim_end_matches(":*")),
                None => return Err(null("logGroupName")),
            },
        };
        Ok(name
            .strip_prefix(PREFIX)
            .filter(|f| !f.is_empty())
            .map(str::to_owned))
    }
}

/// One operation, for the caller's account.
pub async fn handle(state: &AppState, caller: &Caller, op: &str, body: &[u8]) -> Response {
    let input = match serde_json::from_slice::<Value>(if body.is_empty() { b"{}" } else { body }) {
        Ok(Value::Object(m)) => Input(m),
        Ok(_) | Err(_) => {
            return fail(
                "SerializationException",
                "The request body is not a JSON object.",
            )
            .into_response()
        }
    };
    let known = matches!(
        op,
        "DescribeLogGroups"
            | "DescribeLogStreams"
            | "GetLogEvents"
            | "FilterLogEvents"
            | "DeleteLogGroup"
            | "PutRetentionPolicy"
            | "DeleteRetentionPolicy"
    );
    if !known {
        return fail(
            "UnknownOperationException",
            &format!("Hearth does not implement the CloudWatch Logs operation {op}"),
        )
        .into_response();
    }
    // A line is readable as soon as its invocation has answered.
    state.executor.flush_logs().await;
    let st = state.clone();
    let account = caller.id().to_owned();
    let op = op.to_owned();
    let region = state.node.region.clone();
    tokio::task::spawn_blocking(move || run(&st, &account, &region, &op, &input))
        .await
        .unwrap_or_else(|e| store_failed(e).into_response())
}

fn run(state: &AppState, account: &str, region: &str, op: &str, input: &Input) -> Response {
    let r = match op {
        "DescribeLogGroups" => describe_log_groups(state, account, region, input),
        "DescribeLogStreams" => describe_log_streams(state, account, region, input),
        "GetLogEvents" => get_log_events(state, account, input),
        "FilterLogEvents" => filter_log_events(state, account, input),
        "DeleteLogGroup" => delete_log_group(state, account, input),
        "PutRetentionPolicy" => put_retention(state, account, input, true),
        _ => put_retention(state, account, input, false),
    };
    r.unwrap_or_else(IntoResponse::into_response)
}

type Answer = Result<Response, Fail>;

fn store_failed(e: impl std::fmt::Display) -> Fail {
    Fail {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        code: "ServiceUnavailableException",
        message: e.to_string(),
    }
}

fn group_arn(region: &str, account: &str, function: &str) -> String {
    format!("arn:aws:logs:{region}:{account}:log-group:{PREFIX}{function}")
}

fn describe_log_groups(state: &AppState, account: &str, region: &str, input: &Input) -> Answer {
    let limit = input.limit(50, 50)?;
    let prefix = input.str("logGroupNamePrefix")?.unwrap_or("");
    // Only Lambda's groups exist: a prefix short of `/aws/lambda/` takes
    // them all, one past it narrows the function names, any other none.
    let fn_prefix = if PREFIX.starts_with(prefix) {
        Some("")
    } else {
        prefix.strip_prefix(PREFIX)
    };
    let after = input.str("nextToken")?;
    let groups = match fn_prefix {
        Some(p) => state
            .logs
            .groups(account, p, after, limit + 1)
            .map_err(store_failed)?,
        None => Vec::new(),
    };
    let more = groups.len() > limit;
    let list: Vec<Value> = groups
        .iter()
        .take(limit)
        .map(|g| {
            let arn = group_arn(region, account, &g.function_name);
            let mut v = json!({
                "logGroupName": format!("{PREFIX}{}", g.function_name),
                "creationTime": g.created_ms,
                "metricFilterCount": 0,
                "arn": format!("{arn}:*"),
                "logGroupArn": arn,
                "storedBytes": g.stored_bytes,
                "logGroupClass": "STANDARD",
            });
            if let Some(d) = g.retention_days {
                v["retentionInDays"] = json!(d);
            }
            v
        })
        .collect();
    let mut out = json!({ "logGroups": list });
    if more {
        if let Some(last) = groups.get(limit - 1) {
            out["nextToken"] = json!(last.function_name);
        }
    }
    Ok(reply(StatusCode::OK, out))
}

/// A paging token over a list: the offset of the next page.
fn offset_token(t: Option<&str>) -> Result<usize, Fail> {
    match t {
        None => Ok(0),
        Some(t) => t
            .strip_prefix("o/")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| invalid("The specified nextToken is invalid.")),
    }
}

fn describe_log_streams(state: &AppState, account: &str, region: &str, input: &Input) -> Answer {
    let function = input.group()?.ok_or_else(no_group)?;
    let limit = input.limit(50, 50)?;
    let prefix = input.str("logStreamNamePrefix")?;
    let by_time = match input.str("orderBy")? {
        None | Some("LogStreamName") => false,
        Some("LastEventTime") => true,
        Some(other) => {
            return Err(invalid(&format!(
                "1 validation error detected: Value '{other}' at 'orderBy' failed to satisfy constraint: Member must satisfy enum value set: [LogStreamName, LastEventTime]"
            )))
        }
    };
    if by_time && prefix.is_some() {
        return Err(invalid(
            "Cannot order by LastEventTime with a logStreamNamePrefix.",
        ));
    }
    let descending = input.bool("descending")?.unwrap_or(false);
    let from = offset_token(input.str("nextToken")?)?;
    if !state
        .logs
        .group_exists(account, &function)
        .map_err(store_failed)?
    {
        return Err(no_group());
    }
    let mut streams = state
        .logs
        .streams(account, &function, prefix.unwrap_or(""))
        .map_err(store_failed)?;
    if by_time {
        streams.sort_by_key(|s| s.last_event_ms);
    }
    if descending {
        streams.reverse();
    }
    let group = group_arn(region, account, &function);
    let page: Vec<Value> = streams
        .iter()
        .skip(from)
        .take(limit)
        .map(|s| {
            json!({
                "logStreamName": s.name,
                "creationTime": s.first_event_ms,
                "firstEventTimestamp": s.first_event_ms,
                "lastEventTimestamp": s.last_event_ms,
                "lastIngestionTime": s.last_event_ms,
                "arn": format!("{group}:log-stream:{}", s.name),
                "storedBytes": s.stored_bytes,
            })
        })
        .collect();
    let mut out = json!({ "logStreams": page });
    if from + limit < streams.len() {
        out["nextToken"] = json!(format!("o/{}", from + limit));
    }
    Ok(reply(StatusCode::OK, out))
}

fn event_json(e: &StreamEvent) -> Value {
    json!({ "timestamp": e.timestamp_ms, "message": e.message, "ingestionTime": e.timestamp_ms })
}

/// `GetLogEvents`' tokens: `f/<seq>` reads forward after an event, `b/<seq>`
/// backward before one.
enum Token {
    Forward(i64),
    Backward(i64),
}

fn parse_token(t: &str) -> Option<Token> {
    let (dir, seq) = t.split_once('/')?;
    let seq = seq.parse().ok()?;
    match dir {
        "f" => Some(Token::Forward(seq)),
        "b" => Some(Token::Backward(seq)),
        _ => None,
    }
}

fn get_log_events(state: &AppState, account: &str, input: &Input) -> Answer {
    let function = input.group()?.ok_or_else(no_group)?;
    let stream = input
        .str("logStreamName")?
        .ok_or_else(|| null("logStreamName"))?
        .to_owned();
    let limit = input.limit(10_000, 10_000)?;
    let token = match input.str("nextToken")? {
        None => None,
        Some(t) => {
            Some(parse_token(t).ok_or_else(|| invalid("The specified nextToken is invalid."))?)
        }
    };
    let from_head = input.bool("startFromHead")?.unwrap_or(false);
    if !state
        .logs
        .group_exists(account, &function)
        .map_err(store_failed)?
    {
        return Err(no_group());
    }
    let streams = [stream.clone()];
    let filter = EventFilter {
        start_ms: input.int("startTime")?,
        end_ms: input.int("endTime")?,
        streams: &streams,
        stream_prefix: None,
        after_seq: None,
        before_seq: None,
    };
    let exists = state
        .logs
        .streams(account, &function, &stream)
        .map_err(store_failed)?
        .iter()
        .any(|s| s.name == stream);
    if !exists {
        return Err(fail(
            "ResourceNotFoundException",
            "The specified log stream does not exist.",
        ));
    }
    let read = |after_seq: Option<i64>, before_seq: Option<i64>, newest: bool| {
        let f = EventFilter {
            after_seq,
            before_seq,
            ..filter.clone()
        };
        state
            .logs
            .events(account, &function, &f, newest, limit)
            .map_err(store_failed)
    };
    let (mut events, at_end) = match token {
        Some(Token::Forward(seq)) => (read(Some(seq), None, false)?, Some(seq)),
        Some(Token::Backward(seq)) => (read(None, Some(seq), true)?, Some(seq)),
        None if from_head => (read(None, None, false)?, None),
        None => (read(None, None, true)?, None),
    };
    events.sort_by_key(|e| e.seq);
    // Past either end, the token comes back as it was given (the CLI stops
    // when it sees it again).
    let (forward, backward) = match (events.first(), events.last()) {
        (Some(first), Some(last)) => (last.seq, first.seq),
        _ => {
            let s = at_end.unwrap_or(0);
            (s, s)
        }
    };
    Ok(reply(
        StatusCode::OK,
        json!({
            "events": events.iter().map(event_json).collect::<Vec<_>>(),
            "nextForwardToken": format!("f/{forward}"),
            "nextBackwardToken": format!("b/{backward}"),
        }),
    ))
}

/// A plain-text filter pattern: every term (a word, or a "quoted phrase")
/// must occur in the message; a term written `-term` must not. JSON and
/// space-delimited patterns (`{ … }`, `[ … ]`) are not supported.
fn parse_pattern(p: &str) -> Result<(Vec<String>, Vec<String>), Fail> {
    let p = p.trim();
    if p.starts_with('{') || p.starts_with('[') {
        return Err(invalid(
            "Hearth supports plain-text filter patterns (terms and \"quoted phrases\"), not JSON or space-delimited ones.",
        ));
    }
    let (mut must, mut not) = (Vec::new(), Vec::new());
    let mut chars = p.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let negate = c == '-';
        if negate {
            chars.next();
        }
        let mut term = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            for c in chars.by_ref() {
                if c == '"' {
                    break;
                }
                term.push(c);
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                term.push(c);
                chars.next();
            }
        }
        if !term.is_empty() {
            if negate {
                not.push(term);
            } else {
                must.push(term);
            }
        }
    }
    Ok((must, not))
}

fn filter_log_events(state: &AppState, account: &str, input: &Input) -> Answer {
    let function = input.group()?.ok_or_else(no_group)?;
    let limit = input.limit(10_000, 10_000)?;
    let streams = input.strings("logStreamNames")?;
    let prefix = input.str("logStreamNamePrefix")?;
    if !streams.is_empty() && prefix.is_some() {
        return Err(invalid(
            "You cannot specify both logStreamNames and logStreamNamePrefix.",
        ));
    }
    let (must, not) = parse_pattern(input.str("filterPattern")?.unwrap_or(""))?;
    let mut after = match input.str("nextToken")? {
        None => 0,
        Some(t) => t
            .strip_prefix("s/")
            .and_then(|n| n.parse::<i64>().ok())
            .ok_or_else(|| invalid("The specified nextToken is invalid."))?,
    };
    if !state
        .logs
        .group_exists(account, &function)
        .map_err(store_failed)?
    {
        return Err(no_group());
    }
    let filter = EventFilter {
        start_ms: input.int("startTime")?,
        end_ms: input.int("endTime")?,
        streams: &streams,
        stream_prefix: prefix,
        after_seq: None,
        before_seq: None,
    };
    let mut found = Vec::new();
    let mut scanned = 0;
    let mut exhausted = false;
    while found.len() < limit && scanned < FILTER_SCAN {
        let f = EventFilter {
            after_seq: Some(after),
            ..filter.clone()
        };
        let chunk = state
            .logs
            .events(account, &function, &f, false, 1000)
            .map_err(store_failed)?;
        if chunk.is_empty() {
            exhausted = true;
            break;
        }
        for e in chunk {
            scanned += 1;
            after = e.seq;
            let hit = must.iter().all(|t| e.message.contains(t.as_str()))
                && !not.iter().any(|t| e.message.contains(t.as_str()));
            if hit {
                found.push(e);
                if found.len() == limit {
                    break;
                }
            }
        }
    }
    let events: Vec<Value> = found
        .iter()
        .map(|e| {
            json!({
                "logStreamName": e.stream,
                "timestamp": e.timestamp_ms,
                "message": e.message,
                "ingestionTime": e.timestamp_ms,
                "eventId": format!("{:056}", e.seq),
            })
        })
        .collect();
    let mut out = json!({ "events": events, "searchedLogStreams": [] });
    if !exhausted {
        // More may follow (the page filled, or the scan's bound was hit).
        let f = EventFilter {
            after_seq: Some(after),
            ..filter.clone()
        };
        let more = state
            .logs
            .events(account, &function, &f, false, 1)
            .map_err(store_failed)?;
        if !more.is_empty() {
            out["nextToken"] = json!(format!("s/{after}"));
        }
    }
    Ok(reply(StatusCode::OK, out))
}

fn delete_log_group(state: &AppState, account: &str, input: &Input) -> Answer {
    let function = input.group()?.ok_or_else(no_group)?;
    if state
        .logs
        .delete_group(account, &function)
        .map_err(store_failed)?
    {
        Ok(reply(StatusCode::OK, json!({})))
    } else {
        Err(no_group())
    }
}

fn put_retention(state: &AppState, account: &str, input: &Input, put: bool) -> Answer {
    let function = input.group()?.ok_or_else(no_group)?;
    let days = if put {
        let d = input
            .int("retentionInDays")?
            .ok_or_else(|| null("retentionInDays"))?;
        match u32::try_from(d).ok().filter(|d| RETENTION_DAYS.contains(d)) {
            Some(d) => Some(d),
            None => {
                return Err(invalid(&format!(
                    "1 validation error detected: Value '{d}' at 'retentionInDays' failed to satisfy constraint: Member must satisfy enum value set: {RETENTION_DAYS:?}"
                )))
            }
        }
    } else {
        None
    };
    if state
        .logs
        .set_retention(account, &function, days)
        .map_err(store_failed)?
    {
        Ok(reply(StatusCode::OK, json!({})))
    } else {
        Err(no_group())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_patterns() {
        let (m, n) = parse_pattern(r#"ERROR "request id" -debug"#).unwrap();
        assert_eq!(m, ["ERROR", "request id"]);
        assert_eq!(n, ["debug"]);
        assert!(parse_pattern("{ $.level = \"x\" }").is_err());
        assert_eq!(parse_pattern("  ").unwrap(), (vec![], vec![]));
    }

    #[test]
    fn tokens() {
        assert!(matches!(parse_token("f/12"), Some(Token::Forward(12))));
        assert!(matches!(parse_token("b/3"), Some(Token::Backward(3))));
        assert!(parse_token("x/3").is_none() && parse_token("f/x").is_none());
        assert_eq!(offset_token(Some("o/50")).ok(), Some(50));
        assert!(offset_token(Some("zz")).is_err());
    }
}
