//! Usage totals, written off the invoke path: every microVM invocation's
//! figures are summed per (account, function, minute) in memory and written
//! to the usage store once per [`WINDOW`], in one transaction. A `kill -9`
//! loses at most the invocations of the window being gathered.

use hearth_pool::vm::Usage;
use hearth_store::{UsageDelta, UsageStore};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How long invocations are gathered before they are written.
pub const WINDOW: Duration = Duration::from_secs(1);

struct Record {
    account_id: String,
    function_name: String,
    timestamp_ms: i64,
    usage: Usage,
}

/// Queues usage records for the store.
#[derive(Debug, Clone)]
pub struct UsageWriter {
    tx: mpsc::UnboundedSender<Record>,
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("function_name", &self.function_name)
            .finish_non_exhaustive()
    }
}

impl UsageWriter {
    pub fn start(store: Arc<UsageStore>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_windows(store, rx));
        Self { tx }
    }

    /// Queues one invocation's figures.
    pub fn record(&self, account_id: &str, function_name: &str, timestamp_ms: i64, usage: &Usage) {
        let _ = self.tx.send(Record {
            account_id: account_id.to_owned(),
            function_name: function_name.to_owned(),
            timestamp_ms,
            usage: *usage,
        });
    }
}

/// Sums records by (account, function, minute).
fn sum(records: &[Record]) -> Vec<UsageDelta> {
    let mut by: HashMap<(&str, &str, i64), UsageDelta> = HashMap::new();
    for r in records {
        let minute = r.timestamp_ms.div_euclid(60_000);
        let d = by
            .entry((&r.account_id, &r.function_name, minute))
            .or_insert_with(|| UsageDelta {
                account_id: r.account_id.clone(),
                function_name: r.function_name.clone(),
                timestamp_ms: minute * 60_000,
                ..UsageDelta::default()
            });
        d.invocations += 1;
        d.guest_cpu_us += r.usage.guest_cpu_us;
        d.guest_wall_us += r.usage.guest_wall_us;
        d.gb_us += r.usage.gb_us();
    }
    by.into_values().collect()
}

async fn write_windows(store: Arc<UsageStore>, mut rx: mpsc::UnboundedReceiver<Record>) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, 4096).await > 0 {
        tokio::time::sleep(WINDOW).await;
        while let Ok(r) = rx.try_recv() {
            batch.push(r);
        }
        let deltas = sum(&batch);
        batch.clear();
        let store = store.clone();
        match tokio::task::spawn_blocking(move || store.add(&deltas)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not store usage totals"),
            Err(e) => tracing::warn!(error = %e, "usage writer task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_window_of_records_becomes_one_write_of_sums() {
        let store = Arc::new(UsageStore::open_in_memory().unwrap());
        let w = UsageWriter::start(store.clone());
        let u = Usage {
            guest_cpu_us: 100.0,
            guest_wall_us: 150.0,
            memory_mb: 512,
            ..Usage::default()
        };
        for _ in 0..3 {
            w.record("a", "f", 1_000, &u);
        }
        w.record("b", "f", 1_000, &u);
        // Bounded: the window is one second.
        let mut totals = Vec::new();
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            totals = store.totals(&hearth_store::UsageQuery::default()).unwrap();
            if totals.len() == 2 {
                break;
            }
        }
        assert_eq!(totals.len(), 2);
        assert_eq!(totals[0].invocations, 3);
        assert_eq!(totals[0].guest_cpu_us, 300.0);
        assert_eq!(totals[0].gb_us, 150.0);
        assert_eq!(totals[1].invocations, 1);
    }
}
