//! Counts of backend calls (AWS API requests), process-wide and per request, so logs,
//! tests and benches can read what one registry request cost.
//!
//! Adapters call [`record_backend_call`] once per request they send; the HTTP layer runs
//! each request inside [`scoped`] to get that request's own counts.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};

/// Calls by `"<service>.<operation>"`, e.g. `"DynamoDB.GetItem"`.
pub type CallCounts = BTreeMap<String, u64>;

/// A count of calls; a scope's counter also counts into the scope around it.
#[derive(Default)]
struct Counter {
    calls: Mutex<CallCounts>,
    outer: Option<Arc<Counter>>,
}

impl Counter {
    fn add(&self, key: &str) {
        let mut m = self.calls.lock().expect("call counter lock");
        *m.entry(key.to_owned()).or_default() += 1;
        drop(m);
        if let Some(outer) = &self.outer {
            outer.add(key);
        }
    }

    fn snapshot(&self) -> CallCounts {
        self.calls.lock().expect("call counter lock").clone()
    }
}

fn global() -> &'static Counter {
    static GLOBAL: OnceLock<Counter> = OnceLock::new();
    GLOBAL.get_or_init(Counter::default)
}

tokio::task_local! {
    static REQUEST: Arc<Counter>;
}

/// Records one call to `service`'s `operation`, process-wide and for the current request.
pub fn record_backend_call(service: &str, operation: &str) {
    let key = format!("{service}.{operation}");
    global().add(&key);
    let _ = REQUEST.try_with(|c| c.add(&key));
}

/// All calls recorded by this process so far.
pub fn process_calls() -> CallCounts {
    global().snapshot()
}

/// Runs `fut` and returns its output with the calls recorded while it ran (in its task).
/// Scopes nest: calls inside an inner scope count in the outer one too.
pub async fn scoped<F: Future>(fut: F) -> (F::Output, CallCounts) {
    let counter = Arc::new(Counter {
        calls: Mutex::default(),
        outer: REQUEST.try_with(Arc::clone).ok(),
    });
    let out = REQUEST.scope(counter.clone(), fut).await;
    (out, counter.snapshot())
}

/// Total of `counts` whose key starts with `service.`.
pub fn calls_to(counts: &CallCounts, service: &str) -> u64 {
    counts
        .iter()
        .filter(|(k, _)| k.split('.').next() == Some(service))
        .map(|(_, v)| v)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn scoped_counts_only_its_own_calls() {
        record_backend_call("S3", "HeadObject");
        let ((), counts) = scoped(async {
            record_backend_call("DynamoDB", "GetItem");
            record_backend_call("DynamoDB", "GetItem");
        })
        .await;
        assert_eq!(counts.get("DynamoDB.GetItem"), Some(&2));
        assert_eq!(calls_to(&counts, "S3"), 0);
        assert!(calls_to(&process_calls(), "DynamoDB") >= 2);
    }

    #[tokio::test]
    async fn nested_scopes_count_in_both() {
        let (((), inner), outer) = scoped(async {
            record_backend_call("S3", "GetObject");
            scoped(async { record_backend_call("DynamoDB", "Query") }).await
        })
        .await;
        assert_eq!(inner.len(), 1);
        assert_eq!(calls_to(&outer, "DynamoDB"), 1);
        assert_eq!(calls_to(&outer, "S3"), 1);
    }
}
