//! The Kubernetes shell around the engine: kube-runtime controllers for `MoveTablesWorkflow`
//! and `Keyspace` (`docs/design/principles.md`).
//!
//! Each reconcile is short: read the object, turn its spec into the engine's [`Desired`], run
//! one engine pass, compute the status in pure code ([`status`]), patch it only when it changed,
//! publish Events for what happened, and return when to look again. Decisions live in the engine;
//! this module only maps them onto the Kubernetes surface.
//!
//! Besides the watch on their own resources, the controllers are woken by [`triggers`] (an etcd
//! watch on the topology keys a workflow depends on) and by a periodic resync. They run only
//! while this instance holds the leader Lease (see [`wiring`]; [`operator`] is the `vtmove run`
//! command around them): losing it stops them at once.
//!
//! [`Desired`]: crate::engine::Desired

pub mod boundary;
pub mod keyspace;
pub mod kube_calls;
pub mod operator;
pub mod reach;
pub mod redact;
pub mod status;
pub mod triggers;
pub mod wiring;
pub mod workflow;

use std::time::Duration;

/// The finalizer vtmove puts on the resources it must clean up after.
pub const FINALIZER: &str = "vtmove.dev/cleanup";

/// The field manager of vtmove's server-side-apply patches.
pub const FIELD_MANAGER: &str = "vtmove";

/// Settings shared by the controllers.
#[derive(Clone, Debug)]
pub struct ControllerSettings {
    /// How often a converged resource is looked at again, as a backstop for missed triggers.
    pub resync_period: Duration,
    /// Delay after a failed pass, doubled per consecutive failure up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest delay after failures.
    pub max_backoff: Duration,
    /// Deadline of each Kubernetes API call the reconcilers make.
    pub api_timeout: Duration,
    /// How many resources of one kind are reconciled at once.
    pub concurrency: u16,
    /// Publish row data (copy bookmarks' keys, values quoted in MySQL errors) in status and
    /// Events; off by default, see [`redact`].
    pub publish_row_data: bool,
    /// Let MoveTablesWorkflows name keyspaces no Keyspace resource claims (single-tenant
    /// installs). Off by default: see [`boundary`].
    pub allow_unclaimed_keyspaces: bool,
    /// How long each watch of the API server runs before the server ends it and vtmove starts
    /// the next (the watch's `timeoutSeconds`, whole seconds, at most 290 like kube-rs's default).
    pub watch_timeout: Duration,
}

impl Default for ControllerSettings {
    fn default() -> Self {
        ControllerSettings {
            resync_period: Duration::from_secs(300),
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            api_timeout: Duration::from_secs(10),
            concurrency: 8,
            publish_row_data: false,
            allow_unclaimed_keyspaces: false,
            watch_timeout: Duration::from_secs(290),
        }
    }
}

impl ControllerSettings {
    /// The delay before retrying after `attempts` consecutive failures.
    pub fn backoff(&self, attempts: i64) -> Duration {
        let exponent = u32::try_from(attempts.saturating_sub(1).clamp(0, 16)).unwrap_or(16);
        self.min_backoff
            .saturating_mul(2u32.saturating_pow(exponent))
            .min(self.max_backoff)
    }
}

/// Consecutive failed reconciles per object, so `error_policy` backs off exponentially (a
/// topology outage must not loop every object at a fixed rate) and a success starts over.
pub(crate) struct Failures<K: kube::Resource>(
    std::sync::Mutex<std::collections::HashMap<kube::runtime::reflector::ObjectRef<K>, i64>>,
)
where
    K::DynamicType: std::hash::Hash + Eq;

impl<K: kube::Resource> Default for Failures<K>
where
    K::DynamicType: std::hash::Hash + Eq,
{
    fn default() -> Self {
        Failures(std::sync::Mutex::new(std::collections::HashMap::new()))
    }
}

impl<K: kube::Resource> Failures<K>
where
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    /// Counts one more failure of `key`; returns how many in a row.
    pub(crate) fn failed(&self, key: kube::runtime::reflector::ObjectRef<K>) -> i64 {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = map.entry(key).or_insert(0);
        *count = count.saturating_add(1);
        *count
    }

    /// `key` reconciled: its next failure is the first again.
    pub(crate) fn succeeded(&self, key: &kube::runtime::reflector::ObjectRef<K>) {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.remove(key);
    }
}

/// Runs `future` with the API-call deadline, as a typed error when it expires.
pub(crate) async fn with_deadline<T>(
    deadline: Duration,
    what: &'static str,
    future: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, ApiError> {
    match tokio::time::timeout(deadline, future).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(source)) => Err(ApiError::Kube { what, source }),
        Err(_) => Err(ApiError::Timeout { what, deadline }),
    }
}

/// A Kubernetes API call that failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The API server answered with an error.
    #[error("{what}: {source}")]
    Kube {
        /// The call.
        what: &'static str,
        /// The error.
        #[source]
        source: kube::Error,
    },
    /// No answer within the deadline.
    #[error("{what}: no answer within {deadline:?}")]
    Timeout {
        /// The call.
        what: &'static str,
        /// The deadline.
        deadline: Duration,
    },
}

impl ApiError {
    /// Whether the API server refused a write because the object changed (409 Conflict).
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            ApiError::Kube {
                source: kube::Error::Api(status),
                ..
            } if status.code == 409
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let s = ControllerSettings::default();
        assert_eq!(s.backoff(1), Duration::from_millis(500));
        assert_eq!(s.backoff(2), Duration::from_secs(1));
        assert_eq!(s.backoff(4), Duration::from_secs(4));
        assert_eq!(s.backoff(50), Duration::from_secs(60));
        assert_eq!(s.backoff(0), Duration::from_millis(500));
    }
}
