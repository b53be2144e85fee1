//! The node's SQS queues as the executor's parts use them: the durable
//! store and one wake-up that every send rings, so long polls and event
//! source mappings see a message as soon as it is on disk — whether the
//! API, a destination or a dead-letter queue sent it.

use hearth_store::sqs::NewMessage;
use hearth_store::{SqsError, SqsStore};
use std::sync::Arc;
use tokio::sync::Notify;

/// The queues and their send signal. Shared by the API, the event
/// dispatcher and the event source mappings.
#[derive(Debug)]
pub struct SqsHub {
    store: Arc<SqsStore>,
    sent: Notify,
}

impl SqsHub {
    pub fn new(store: Arc<SqsStore>) -> Self {
        Self {
            store,
            sent: Notify::new(),
        }
    }

    pub fn store(&self) -> &Arc<SqsStore> {
        &self.store
    }

    /// Rung after every send; wait on it with `sent().notified()`
    /// (registered before looking at the queue).
    pub fn sent(&self) -> &Notify {
        &self.sent
    }

    /// Wakes everyone waiting for a message.
    pub fn notify_sent(&self) {
        self.sent.notify_waiters();
    }

    /// Enqueues `msgs` durably, off the async threads, then rings.
    pub async fn send(
        &self,
        account: &str,
        queue: &str,
        msgs: Vec<NewMessage>,
    ) -> Result<(), SqsError> {
        let store = self.store.clone();
        let (a, q) = (account.to_owned(), queue.to_owned());
        let r = match tokio::task::spawn_blocking(move || store.send(&a, &q, &msgs, epoch_ms()))
            .await
        {
            Ok(r) => r,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(SqsError::ShuttingDown),
        };
        if r.is_ok() {
            self.notify_sent();
        }
        r
    }
}

/// `arn:<partition>:sqs:<region>:<account>:<name>` → (region, account, name).
pub fn parse_queue_arn(arn: &str) -> Option<(String, String, String)> {
    let parts: Vec<&str> = arn.split(':').collect();
    match parts.as_slice() {
        ["arn", _, "sqs", region, account, name] if !name.is_empty() => Some((
            (*region).to_owned(),
            (*account).to_owned(),
            (*name).to_owned(),
        )),
        _ => None,
    }
}

fn epoch_ms() -> i64 {
    crate::events::epoch_ms()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_arns_parse() {
        assert_eq!(
            parse_queue_arn("arn:aws:sqs:us-east-1:123456789012:q1"),
            Some(("us-east-1".into(), "123456789012".into(), "q1".into()))
        );
        assert_eq!(
            parse_queue_arn("arn:aws:lambda:us-east-1:123456789012:function:f"),
            None
        );
        assert_eq!(parse_queue_arn("arn:aws:sqs:us-east-1:123456789012:"), None);
    }
}
