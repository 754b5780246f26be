//! A hook to count tablet calls, so metrics can be attached without the client knowing about them.
//!
//! Style H8 asks for `tablet_rpc_total{method,outcome=ok|error|timeout}` and latency histograms.
//! The client reports every finished call to an optional [`CallObserver`]; the metrics module
//! implements it later. [`CallCounter`] is a ready-made in-memory implementation for tests and
//! diagnostics.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use super::error::{Method, TabletAddr};

/// How a call ended, in the three buckets the metrics distinguish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CallOutcome {
    /// The tablet answered successfully.
    Ok,
    /// The deadline passed.
    Timeout,
    /// Any other failure; the label is [`super::TabletError::kind`].
    Error(&'static str),
}

impl CallOutcome {
    /// The `outcome` metric label: `ok`, `timeout` or `error`.
    pub fn label(self) -> &'static str {
        match self {
            CallOutcome::Ok => "ok",
            CallOutcome::Timeout => "timeout",
            CallOutcome::Error(_) => "error",
        }
    }
}

/// Receives one report per finished tablet call. Must be cheap and must not block: it runs on
/// the caller's task.
pub trait CallObserver: Send + Sync {
    /// Called once per call, after it finished.
    fn on_call(&self, tablet: &TabletAddr, method: Method, outcome: CallOutcome, elapsed: Duration);
}

/// Counts calls per `(method, outcome)`.
#[derive(Debug, Default)]
pub struct CallCounter {
    counts: Mutex<BTreeMap<(Method, CallOutcome), u64>>,
}

impl CallCounter {
    /// Calls of `method` that ended with `outcome`.
    pub fn count(&self, method: Method, outcome: CallOutcome) -> u64 {
        self.lock().get(&(method, outcome)).copied().unwrap_or(0)
    }

    /// All calls counted, whatever the method and outcome.
    pub fn total(&self) -> u64 {
        self.lock().values().sum()
    }

    /// A copy of all counters.
    pub fn snapshot(&self) -> BTreeMap<(Method, CallOutcome), u64> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(Method, CallOutcome), u64>> {
        // A panic while holding this lock cannot leave the map inconsistent; keep counting.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl CallObserver for CallCounter {
    fn on_call(
        &self,
        _tablet: &TabletAddr,
        method: Method,
        outcome: CallOutcome,
        _elapsed: Duration,
    ) {
        *self.lock().entry((method, outcome)).or_default() += 1;
    }
}
