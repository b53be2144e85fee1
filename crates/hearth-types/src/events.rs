//! Asynchronous invocation: the per-qualifier event-invoke configuration
//! (retries, maximum event age, destinations, Hearth's execution window),
//! the queued event and its dead letter, and Lambda's invocation record.

use serde::{Deserialize, Serialize};

/// `MaximumRetryAttempts`: 0–2, default 2.
pub const MAX_RETRY_ATTEMPTS_MAX: u32 = 2;
pub const MAX_RETRY_ATTEMPTS_DEFAULT: u32 = 2;
/// `MaximumEventAgeInSeconds`: 60–21600 (six hours), default 21600.
pub const MAX_EVENT_AGE_MIN_S: u32 = 60;
pub const MAX_EVENT_AGE_MAX_S: u32 = 21_600;
pub const MAX_EVENT_AGE_DEFAULT_S: u32 = 21_600;
/// Hearth's execution window (`X-Hearth-Execution-Window`): at most a day.
pub const EXECUTION_WINDOW_MAX_S: u32 = 86_400;

/// A function's (or a version's, or an alias's) `FunctionEventInvokeConfig`.
/// Unset fields take Lambda's defaults when events are processed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventInvokeConfig {
    pub account_id: String,
    pub function_name: String,
    /// `$LATEST`, a version number or an alias name.
    pub qualifier: String,
    pub maximum_retry_attempts: Option<u32>,
    pub maximum_event_age_seconds: Option<u32>,
    /// `DestinationConfig.OnSuccess.Destination`: a function ARN.
    pub on_success: Option<String>,
    /// `DestinationConfig.OnFailure.Destination`: a function ARN.
    pub on_failure: Option<String>,
    /// Hearth's extension: events without their own window may run any
    /// time within this many seconds of being accepted.
    pub execution_window_seconds: Option<u32>,
    /// Milliseconds since the Unix epoch.
    pub last_modified_ms: i64,
}

impl EventInvokeConfig {
    pub fn retry_attempts(&self) -> u32 {
        self.maximum_retry_attempts
            .unwrap_or(MAX_RETRY_ATTEMPTS_DEFAULT)
    }

    pub fn event_age_seconds(&self) -> u32 {
        self.maximum_event_age_seconds
            .unwrap_or(MAX_EVENT_AGE_DEFAULT_S)
    }
}

/// An event as accepted (`X-Amz-Invocation-Type: Event`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// The request id: the same for every attempt, as on Lambda.
    pub id: String,
    pub account_id: String,
    pub function_name: String,
    /// The qualifier the caller named (`None`: `$LATEST`).
    pub qualifier: Option<String>,
    /// Valid JSON.
    pub payload: Vec<u8>,
    /// `X-Amz-Client-Context`, decoded.
    pub client_context: Option<String>,
    /// When it was accepted (ms since the Unix epoch): its age counts from
    /// here.
    pub received_ms: i64,
    /// Not to be attempted before (ms since the Unix epoch).
    pub not_before_ms: i64,
    /// Deferred: may run any time until then (ms since the Unix epoch).
    pub window_end_ms: Option<i64>,
}

/// An event waiting in (or running from) the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedEvent {
    pub event: NewEvent,
    /// Attempts that ended in a function error (counted against
    /// `MaximumRetryAttempts`).
    pub attempts: u32,
    /// Times the function was started for it, including attempts a crash
    /// of the node cut short (`approximateInvokeCount`).
    pub invoke_count: u32,
    /// Whether an attempt is running now.
    pub running: bool,
    /// The last attempt's function error body, if it failed.
    pub last_response: Option<Vec<u8>>,
}

/// Why an event left the queue without succeeding (the invocation record's
/// `requestContext.condition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureCondition {
    RetriesExhausted,
    EventAgeExceeded,
    /// Hearth: the function (or its qualifier) no longer exists.
    FunctionNotFound,
}

impl FailureCondition {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RetriesExhausted => "RetriesExhausted",
            Self::EventAgeExceeded => "EventAgeExceeded",
            Self::FunctionNotFound => "FunctionNotFound",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "RetriesExhausted" => Some(Self::RetriesExhausted),
            "EventAgeExceeded" => Some(Self::EventAgeExceeded),
            "FunctionNotFound" => Some(Self::FunctionNotFound),
            _ => None,
        }
    }
}

/// An event in a function's dead-letter store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub event: NewEvent,
    pub condition: FailureCondition,
    pub invoke_count: u32,
    /// The last attempt's function error body, if any.
    pub response: Option<Vec<u8>>,
    /// When it was dead-lettered (ms since the Unix epoch).
    pub dead_ms: i64,
}

/// How many events are in each state (metrics, `hearth pools`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct QueueCounts {
    /// Waiting, due now.
    pub ready: u64,
    /// Waiting for a retry's back-off.
    pub retrying: u64,
    /// Deferred within their execution window.
    pub deferred: u64,
    pub running: u64,
    pub dead_letters: u64,
}
