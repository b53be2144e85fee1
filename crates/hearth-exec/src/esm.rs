//! SQS event source mappings: pollers that invoke a function with batches
//! of a queue's messages, as Lambda's SQS pollers do.
//!
//! Each enabled mapping has one task. It takes up to `BatchSize` visible
//! messages (hiding them for the queue's visibility timeout), waits up to
//! `MaximumBatchingWindowInSeconds` for the batch to fill, and invokes the
//! function synchronously with Lambda's SQS event — several batches at
//! once, up to `ScalingConfig.MaximumConcurrency`. A batch whose
//! invocation succeeds is deleted from the queue; one that fails (function
//! error, timeout, throttle) is left alone, so its messages turn visible
//! again when their visibility timeout ends and are received anew. With
//! `ReportBatchItemFailures`, only the messages the function names in
//! `batchItemFailures` are left; an answer naming a message not in the
//! batch fails the whole batch, as in Lambda.
//!
//! Messages are deleted only after the function answered, so a crash of
//! the node between the two delivers them again (at least once, as SQS).

use crate::sqs::SqsHub;
use crate::{Executor, InvokeInput, InvokeMode};
use bytes::Bytes;
use hearth_store::sqs::{Mapping, Received};
use hearth_types::arn::NodeIdentity;
use hearth_types::ErrorKind;
use parking_lot::Mutex;
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Semaphore};

/// Batches in flight per mapping when `ScalingConfig` does not say.
pub const DEFAULT_CONCURRENCY: u32 = 5;
/// The longest an idle poller sleeps between looks (messages turn visible
/// without a send: delays, visibility timeouts).
const IDLE_LOOK: Duration = Duration::from_secs(1);
/// The most a batch's records may weigh: Lambda's synchronous payload limit.
const BATCH_MAX_BYTES: usize = hearth_types::limits::SYNC_PAYLOAD_MAX_BYTES;
/// What a record adds to the event beyond its body and attributes (ids,
/// receipt handle, ARN, the attribute names), bytes: a generous bound.
const RECORD_OVERHEAD_BYTES: usize = 1024;

/// The pause after the function could not be found or its invocation was
/// refused, before the poller takes messages again.
const BACK_OFF: Duration = Duration::from_secs(2);

/// The node's pollers. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Mappings(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    exec: Executor,
    sqs: Arc<SqsHub>,
    node: NodeIdentity,
    /// Running pollers by mapping UUID: sending `true` stops one.
    running: Mutex<HashMap<String, watch::Sender<bool>>>,
}

impl Mappings {
    /// Starts a poller for every enabled mapping in the store.
    pub fn start(
        exec: Executor,
        sqs: Arc<SqsHub>,
        node: NodeIdentity,
    ) -> Result<Self, hearth_store::SqsError> {
        let all = sqs.store().mappings(None)?;
        let me = Self(Arc::new(Inner {
            exec,
            sqs,
            node,
            running: Mutex::new(HashMap::new()),
        }));
        for m in all {
            me.apply(&m.uuid.clone(), Some(m));
        }
        Ok(me)
    }

    /// Makes the pollers follow a mapping's stored state, read here under
    /// the pollers' lock so concurrent changes apply in the store's order.
    /// A running poller stops taking messages at once; its batches in
    /// flight finish and are deleted as usual.
    pub fn refresh(&self, account: &str, uuid: &str) {
        let mut running = self.0.running.lock();
        let mapping = match self.0.sqs.store().mapping(account, uuid) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(uuid, error = %e, "cannot read an event source mapping; its poller is stopped");
                None
            }
        };
        Self::apply_locked(self, &mut running, uuid, mapping);
    }

    fn apply(&self, uuid: &str, mapping: Option<Mapping>) {
        let mut running = self.0.running.lock();
        Self::apply_locked(self, &mut running, uuid, mapping);
    }

    fn apply_locked(
        &self,
        running: &mut HashMap<String, watch::Sender<bool>>,
        uuid: &str,
        mapping: Option<Mapping>,
    ) {
        if let Some(stop) = running.remove(uuid) {
            let _ = stop.send(true);
        }
        if let Some(m) = mapping.filter(|m| m.enabled) {
            let (tx, rx) = watch::channel(false);
            running.insert(uuid.to_owned(), tx);
            let me = self.clone();
            tokio::spawn(async move { me.poll(m, rx).await });
        }
    }

    /// Stops every poller (the node is shutting down).
    pub fn stop(&self) {
        for (_, stop) in self.0.running.lock().drain() {
            let _ = stop.send(true);
        }
    }

    async fn poll(self, m: Mapping, mut stop: watch::Receiver<bool>) {
        let m = Arc::new(m);
        let slots = Arc::new(Semaphore::new(
            m.max_concurrency.unwrap_or(DEFAULT_CONCURRENCY).max(1) as usize,
        ));
        // Set by a batch whose invocation was refused: no messages are
        // taken until then (they would only wait out their visibility).
        let hold_until: Arc<Mutex<Option<tokio::time::Instant>>> = Arc::new(Mutex::new(None));
        tracing::info!(uuid = %m.uuid, queue = %m.queue, function = %m.function_name, "SQS poller started");
        loop {
            let held = hold_until.lock().take();
            if let Some(until) = held {
                tokio::select! {
                    () = tokio::time::sleep_until(until) => {}
                    _ = stop.changed() => break,
                }
            }
            let permit = tokio::select! {
                p = slots.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
                _ = stop.changed() => break,
            };
            let batch = tokio::select! {
                b = self.gather(&m) => b,
                _ = stop.changed() => break,
            };
            let batch = match batch {
                Ok(b) if b.is_empty() => continue,
                Ok(b) => b,
                Err(e) => {
                    // The queue is gone, or the store failed: say so and
                    // look again later (the mapping stays, as in Lambda).
                    tracing::warn!(uuid = %m.uuid, queue = %m.queue, error = %e, "SQS poller cannot receive");
                    tokio::select! {
                        () = tokio::time::sleep(BACK_OFF * 5) => continue,
                        _ = stop.changed() => break,
                    }
                }
            };
            let me = self.clone();
            let mapping = m.clone();
            let hold = hold_until.clone();
            tokio::spawn(async move {
                if me.run_batch(&mapping, batch).await {
                    *hold.lock() = Some(tokio::time::Instant::now() + BACK_OFF);
                }
                drop(permit);
            });
        }
        tracing::info!(uuid = %m.uuid, "SQS poller stopped");
    }

    /// Takes a batch: up to `batch_size` messages and at most the
    /// function's 6 MB payload (as Lambda), gathered for up to the batching
    /// window once the first arrived — never past the queue's visibility
    /// timeout, so no message of the batch can turn visible and be taken
    /// twice. Empty after an idle look.
    async fn gather(&self, m: &Mapping) -> Result<Vec<Received>, hearth_store::SqsError> {
        let want = m.batch_size.max(1) as usize;
        let mut got: Vec<Received> = Vec::new();
        let mut bytes = 0usize;
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            let sent = self.0.sqs.sent().notified();
            tokio::pin!(sent);
            sent.as_mut().enable();
            // SQS hands out 10 at a time: the byte cap is checked per chunk.
            let (more, visibility_s) = self.receive(m, (want - got.len()).min(10)).await?;
            let mut over = Vec::new();
            for r in more {
                let size = record_size(&r);
                if !got.is_empty() && bytes + size > BATCH_MAX_BYTES {
                    over.push(r);
                } else if !got.iter().any(|g| g.id == r.id) {
                    bytes += size;
                    got.push(r);
                }
            }
            if !over.is_empty() {
                // Not this batch's: back to the queue at once.
                self.release(m, over).await;
                return Ok(got);
            }
            let now = tokio::time::Instant::now();
            if got.len() >= want {
                return Ok(got);
            }
            if !got.is_empty() {
                let end = *deadline.get_or_insert_with(|| {
                    now + Duration::from_secs(u64::from(
                        m.window_s.min(visibility_s.saturating_sub(1)),
                    ))
                });
                if now >= end {
                    return Ok(got);
                }
                let _ = tokio::time::timeout((end - now).min(IDLE_LOOK), sent).await;
            } else {
                let _ = tokio::time::timeout(IDLE_LOOK, sent).await;
                return Ok(got);
            }
        }
    }

    /// Makes received messages visible again.
    async fn release(&self, m: &Mapping, msgs: Vec<Received>) {
        let store = self.0.sqs.store().clone();
        let (a, q) = (m.queue_account.clone(), m.queue.clone());
        let _ = tokio::task::spawn_blocking(move || {
            let now = crate::events::epoch_ms();
            for r in msgs {
                // Already visible or gone: nothing to give back.
                let _ = store.change_visibility(&a, &q, &r.id, &r.token, 0, now);
            }
        })
        .await;
    }

    async fn receive(
        &self,
        m: &Mapping,
        max: usize,
    ) -> Result<(Vec<Received>, u32), hearth_store::SqsError> {
        let store = self.0.sqs.store().clone();
        let (a, q) = (m.queue_account.clone(), m.queue.clone());
        match tokio::task::spawn_blocking(move || {
            let got = store.receive(&a, &q, max, None, crate::events::epoch_ms())?;
            let visibility_s = store.queue(&a, &q)?.settings.visibility_timeout_s;
            Ok((got, visibility_s))
        })
        .await
        {
            Ok(r) => r,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(hearth_store::SqsError::ShuttingDown),
        }
    }

    /// Invokes the function with one batch and deletes what it processed.
    /// Returns whether the invocation was refused (throttled, function
    /// missing): the poller then pauses.
    async fn run_batch(&self, m: &Mapping, batch: Vec<Received>) -> bool {
        let event = sqs_event(&self.0.node, m, &batch);
        let input = InvokeInput {
            account_id: m.account.clone(),
            function_name: m.function_name.clone(),
            qualifier: m.qualifier.clone(),
            payload: Bytes::from(event.to_string()),
            tail: false,
            client_context: None,
            dry_run: false,
            request_id: None,
            mode: InvokeMode::Sync,
        };
        let exec = self.0.exec.clone();
        // Its own task: the invocation runs to its end whatever happens here.
        let result = tokio::spawn(async move { exec.invoke(input).await }).await;
        let (done, refused): (Vec<String>, bool) = match result {
            Ok(Ok(out)) if !out.function_error => {
                let ids: Vec<&str> = batch.iter().map(|r| r.id.as_str()).collect();
                match processed(m.report_failures, &out.body, &ids) {
                    Some(done) => (done, false),
                    None => {
                        tracing::warn!(uuid = %m.uuid, "the function's batchItemFailures names no message of the batch: the whole batch fails");
                        (Vec::new(), false)
                    }
                }
            }
            Ok(Ok(_)) => (Vec::new(), false),
            Ok(Err(e)) => {
                let refused = matches!(
                    e.kind,
                    ErrorKind::ResourceNotFound | ErrorKind::TooManyRequests
                );
                if !refused {
                    tracing::warn!(uuid = %m.uuid, error = %e.message, "SQS batch invocation failed");
                }
                (Vec::new(), refused)
            }
            Err(e) => {
                tracing::error!(uuid = %m.uuid, error = %e, "SQS batch invocation task failed");
                (Vec::new(), false)
            }
        };
        if !done.is_empty() {
            let store = self.0.sqs.store().clone();
            let (a, q) = (m.queue_account.clone(), m.queue.clone());
            let deleted =
                tokio::task::spawn_blocking(move || store.delete_messages(&a, &q, &done)).await;
            if !matches!(deleted, Ok(Ok(()))) {
                tracing::warn!(uuid = %m.uuid, "cannot delete a processed batch: its messages will be delivered again");
            }
        }
        refused
    }
}

/// A record's weight in the event, bytes (an upper bound).
fn record_size(r: &Received) -> usize {
    let attrs: usize = r
        .attributes
        .iter()
        .map(|a| {
            a.name.len()
                + a.data_type.len()
                + a.string_value.as_ref().map_or(0, String::len)
                // base64 of the binary value
                + a.binary_value.as_ref().map_or(0, |b| b.len().div_ceil(3) * 4)
                + 64
        })
        .sum();
    // JSON escaping can double a body made of quotes or control characters.
    r.body.len() * 2 + attrs + RECORD_OVERHEAD_BYTES
}

/// The ids of the batch's messages the function processed, from its
/// answer: all of them, or with `ReportBatchItemFailures` all but those in
/// `batchItemFailures`. `None`: the answer names an item that is not in
/// the batch (or has none), which fails the whole batch.
pub fn processed(report_failures: bool, answer: &[u8], batch: &[&str]) -> Option<Vec<String>> {
    let all = || batch.iter().map(|s| (*s).to_owned()).collect();
    if !report_failures {
        return Some(all());
    }
    if answer.iter().all(u8::is_ascii_whitespace) {
        // An empty answer reports nothing: all processed.
        return Some(all());
    }
    let obj = match serde_json::from_slice::<Value>(answer) {
        // Answers that are not JSON fail the whole batch, as in Lambda.
        Err(_) => return None,
        Ok(Value::Object(obj)) => obj,
        // null (or another value): nothing reported, all processed.
        Ok(_) => return Some(all()),
    };
    let failures = match obj.get("batchItemFailures") {
        None | Some(Value::Null) => return Some(all()),
        Some(Value::Array(a)) => a,
        Some(_) => return None,
    };
    let mut failed = HashSet::new();
    for f in failures {
        let id = f.get("itemIdentifier").and_then(Value::as_str)?;
        if id.is_empty() || !batch.contains(&id) {
            return None;
        }
        failed.insert(id);
    }
    Some(
        batch
            .iter()
            .filter(|id| !failed.contains(*id))
            .map(|s| (*s).to_owned())
            .collect(),
    )
}

/// Lambda's SQS event for a batch.
pub fn sqs_event(node: &NodeIdentity, m: &Mapping, batch: &[Received]) -> Value {
    use base64::Engine as _;
    let arn = format!(
        "arn:aws:sqs:{}:{}:{}",
        node.region, m.queue_account, m.queue
    );
    let records: Vec<Value> = batch
        .iter()
        .map(|r| {
            let mut attrs = Map::new();
            for a in &r.attributes {
                attrs.insert(
                    a.name.clone(),
                    json!({
                        "stringValue": a.string_value,
                        "binaryValue": a.binary_value.as_ref().map(|b| base64::engine::general_purpose::STANDARD.encode(b)),
                        "stringListValues": [],
                        "binaryListValues": [],
                        "dataType": a.data_type,
                    }),
                );
            }
            let mut rec = json!({
                "messageId": r.id,
                "receiptHandle": hearth_store::sqs::receipt_handle(&m.queue_account, &m.queue, &r.id, &r.token),
                "body": r.body,
                "attributes": {
                    "ApproximateReceiveCount": r.receive_count.to_string(),
                    "SentTimestamp": r.sent_ms.to_string(),
                    "SenderId": m.queue_account,
                    "ApproximateFirstReceiveTimestamp": r.first_receive_ms.to_string(),
                },
                "messageAttributes": Value::Object(attrs),
                "md5OfBody": r.md5_of_body,
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": node.region,
            });
            if let (Some(md5), Some(o)) = (&r.md5_of_attributes, rec.as_object_mut()) {
                o.insert("md5OfMessageAttributes".into(), json!(md5));
            }
            rec
        })
        .collect();
    json!({ "Records": records })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_batch_failures() {
        let batch = ["a", "b", "c"];
        let all = Some(vec!["a".to_owned(), "b".to_owned(), "c".to_owned()]);
        assert_eq!(
            processed(
                false,
                br#"{"batchItemFailures":[{"itemIdentifier":"b"}]}"#,
                &batch
            ),
            all
        );
        assert_eq!(
            processed(
                true,
                br#"{"batchItemFailures":[{"itemIdentifier":"b"}]}"#,
                &batch
            ),
            Some(vec!["a".to_owned(), "c".to_owned()])
        );
        assert_eq!(processed(true, br#"{"batchItemFailures":[]}"#, &batch), all);
        assert_eq!(processed(true, b"null", &batch), all);
        assert_eq!(processed(true, b"", &batch), all);
        assert_eq!(processed(true, b"not json", &batch), None);
        assert_eq!(processed(true, b"{}", &batch), all);
        // An identifier not in the batch, empty, or missing fails it all.
        assert_eq!(
            processed(
                true,
                br#"{"batchItemFailures":[{"itemIdentifier":"z"}]}"#,
                &batch
            ),
            None
        );
        assert_eq!(
            processed(
                true,
                br#"{"batchItemFailures":[{"itemIdentifier":""}]}"#,
                &batch
            ),
            None
        );
        assert_eq!(
            processed(true, br#"{"batchItemFailures":[{}]}"#, &batch),
            None
        );
        assert_eq!(
            processed(true, br#"{"batchItemFailures":"b"}"#, &batch),
            None
        );
    }

    #[test]
    fn the_event_has_lambdas_sqs_shape() {
        let node = NodeIdentity::new("us-east-1");
        let m = Mapping {
            uuid: "u".into(),
            account: "111111111111".into(),
            function_name: "f".into(),
            qualifier: None,
            queue_account: "111111111111".into(),
            queue: "q".into(),
            batch_size: 10,
            window_s: 0,
            enabled: true,
            report_failures: false,
            max_concurrency: None,
            modified_ms: 0,
        };
        let r = Received {
            id: "m1".into(),
            token: "t".into(),
            body: "hello".into(),
            md5_of_body: hearth_store::sqs::md5_hex(b"hello"),
            md5_of_attributes: None,
            attributes: Vec::new(),
            sent_ms: 5,
            first_receive_ms: 6,
            receive_count: 1,
        };
        let e = sqs_event(&node, &m, &[r]);
        let rec = &e["Records"][0];
        assert_eq!(rec["messageId"], "m1");
        assert_eq!(rec["body"], "hello");
        assert_eq!(rec["eventSource"], "aws:sqs");
        assert_eq!(
            rec["eventSourceARN"],
            "arn:aws:sqs:us-east-1:111111111111:q"
        );
        assert_eq!(rec["attributes"]["ApproximateReceiveCount"], "1");
        assert_eq!(rec["md5OfBody"], "5d41402abc4b2a76b9719d911017c592");
        assert!(rec["receiptHandle"].as_str().is_some_and(|h| !h.is_empty()));
    }
}
