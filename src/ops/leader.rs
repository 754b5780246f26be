//! Leader election on a `coordination.k8s.io` Lease: one writer at a time (`docs/design/principles.md` P12).
//!
//! kube-lease-manager takes and renews the Lease (a server-side apply without force to take it,
//! so two candidates racing for a free Lease cannot both win). On top of it, [`LeaderHandle`]
//! keeps its own, conservative answer to "do I lead *now*?": the controllers run only while it
//! says yes and are stopped as soon as it turns to no (a step already running finishes or rolls
//! back under its Vitess locks, see `controller::run`), and a stale "yes" means two writers:
//!
//! * Leadership is a deadline, not a flag. Each time this instance reads the Lease and finds
//!   itself the holder, the deadline moves to the Lease's expiry minus half the grace period
//!   (room for other nodes' clocks running ahead). [`LeaderHandle::is_leader`] compares the
//!   clock with that deadline, so when renewals stop succeeding (API server unreachable, process
//!   starved) leadership ends on time, before anyone else may take the Lease, without waiting for
//!   a background task to notice.
//! * The holder re-reads the Lease a few times per grace period, so a Lease taken away by someone
//!   else is noticed within that interval rather than at the next renewal.
//!
//! [`LeaderHandle::always`] stands for `--leader-election=false` (one replica with
//! `strategy: Recreate`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;

/// Timing of the Lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaderOptions {
    /// How long a Lease stays valid after its last renewal; another instance takes over at most
    /// this long after the leader dies. Whole seconds (the Lease field is in seconds).
    pub duration: Duration,
    /// How long before expiry the holder renews, and the clock skew between nodes tolerated.
    /// Whole seconds, at least one, less than `duration`.
    pub grace: Duration,
}

impl Default for LeaderOptions {
    /// 15 s with a 5 s grace: the leader renews every 10 s, and a successor takes over within
    /// 15 s of a crash (client-go's defaults are of the same order).
    fn default() -> Self {
        LeaderOptions {
            duration: Duration::from_secs(15),
            grace: Duration::from_secs(5),
        }
    }
}

impl LeaderOptions {
    fn seconds(&self) -> Result<(u64, u64), LeaderError> {
        let duration = self.duration.as_secs();
        let grace = self.grace.as_secs();
        if grace == 0 || duration <= grace {
            return Err(LeaderError::InvalidOptions(format!(
                "lease duration ({duration} s) must exceed the grace period ({grace} s), which must be at least 1 s"
            )));
        }
        Ok((duration, grace))
    }

    /// How often the holder re-reads the Lease: three times per grace period, so a renewal (made
    /// `grace` before expiry) is seen well before the deadline (`grace / 2` before expiry).
    fn verify_interval(&self) -> Duration {
        (self.grace / 3).max(Duration::from_millis(100))
    }

    /// The margin kept before the Lease's expiry.
    fn margin(&self) -> Duration {
        self.grace / 2
    }
}

/// Why leader election could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The options cannot make a valid Lease.
    #[error("invalid leader election options: {0}")]
    InvalidOptions(String),
    /// The Lease could not be read, created or released.
    #[error("leader election on Lease {namespace}/{name}: {source}")]
    Lease {
        /// The Lease's namespace.
        namespace: String,
        /// The Lease's name.
        name: String,
        /// What kube-lease-manager reported.
        #[source]
        source: LeaseManagerError,
    },
    /// The election task panicked or was aborted.
    #[error("leader election task ended abnormally: {0}")]
    Task(String),
}

/// A deadline of `u64::MAX` milliseconds: leads forever.
const FOREVER: u64 = u64::MAX;

struct Shared {
    /// Origin of the millisecond clock below.
    base: Instant,
    /// This instance leads while `now_ms() < leading_until`: 0 = not leading.
    leading_until: AtomicU64,
    /// The published leadership; kept here so the channel stays open while handles live.
    sender: watch::Sender<bool>,
}

impl Shared {
    fn new(leading_until: u64) -> Self {
        Shared {
            base: Instant::now(),
            leading_until: AtomicU64::new(leading_until),
            sender: watch::channel(leading_until > 0).0,
        }
    }

    /// Milliseconds since `base`, plus one so that 0 is always in the past.
    fn now_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis())
            .unwrap_or(FOREVER - 1)
            .saturating_add(1)
    }

    fn is_leader(&self) -> bool {
        self.now_ms() < self.leading_until.load(Ordering::Acquire)
    }

    fn set_deadline(&self, until: u64) {
        self.leading_until.store(until, Ordering::Release);
        self.publish();
    }

    /// Sends the current answer to subscribers if it changed.
    fn publish(&self) {
        let leading = self.is_leader();
        self.sender.send_if_modified(|v| {
            let changed = *v != leading;
            *v = leading;
            changed
        });
    }
}

/// The running election: the cancel signal and the task, shared by all clones of a handle.
struct Control {
    cancel: CancellationToken,
    task: Mutex<Option<JoinHandle<Result<(), LeaderError>>>>,
}

impl Drop for Control {
    /// The last handle is gone: stop campaigning and give the Lease back (in the background).
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// This instance's view of leadership. Cheap to clone; clones share one election.
#[derive(Clone)]
pub struct LeaderHandle {
    identity: String,
    shared: Arc<Shared>,
    control: Option<Arc<Control>>,
}

impl std::fmt::Debug for LeaderHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderHandle")
            .field("identity", &self.identity)
            .field("leading", &self.is_leader())
            .finish_non_exhaustive()
    }
}

impl LeaderHandle {
    /// Always the leader: for `--leader-election=false`, where the Deployment guarantees one
    /// replica.
    pub fn always() -> Self {
        LeaderHandle {
            identity: "always".to_string(),
            shared: Arc::new(Shared::new(FOREVER)),
            control: None,
        }
    }

    /// Whether this instance leads at this moment: one clock read and one atomic load, cheap
    /// enough to check before every mutation.
    pub fn is_leader(&self) -> bool {
        self.shared.is_leader()
    }

    /// The identity this instance campaigns with.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// A receiver of leadership changes (`true` on gaining, `false` on losing). It may lag
    /// [`Self::is_leader`] by a few milliseconds on a loss, well inside the half grace period
    /// the deadline keeps before anyone else may take the Lease.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.shared.sender.subscribe()
    }

    /// Waits until this instance leads.
    pub async fn wait_until_leader(&self) {
        let mut rx = self.subscribe();
        // The sender lives in `shared`, which `self` keeps alive: this cannot fail.
        let _ = rx.wait_for(|leading| *leading).await;
    }

    /// Mirrors leadership into the `vtmove_leader` gauge until the election ends.
    pub fn report_to(&self, metrics: Metrics) -> JoinHandle<()> {
        let mut rx = self.subscribe();
        let shared = self.shared.clone();
        let cancel = self.control.as_ref().map(|c| c.cancel.clone());
        tokio::spawn(async move {
            loop {
                metrics.set_leader(*rx.borrow_and_update());
                let stopped = async {
                    match &cancel {
                        Some(c) => c.cancelled().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    r = rx.changed() => if r.is_err() { break },
                    _ = stopped => break,
                }
            }
            metrics.set_leader(shared.is_leader());
        })
    }

    /// Stops campaigning and gives the Lease back if this instance holds it, so a successor takes
    /// over at once instead of after the Lease expires. Leadership ends before the Lease is
    /// released. Does nothing for [`Self::always`] or a second time.
    pub async fn release(&self) -> Result<(), LeaderError> {
        let Some(control) = &self.control else {
            return Ok(());
        };
        self.shared.set_deadline(0);
        control.cancel.cancel();
        let task = control
            .task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match task {
            Some(task) => task.await.map_err(|e| LeaderError::Task(e.to_string()))?,
            None => Ok(()),
        }
    }
}

/// Starts leader elections.
#[derive(Debug)]
pub struct LeaderElection;

impl LeaderElection {
    /// Campaigns for the Lease `namespace/lease_name` as `identity` (the pod name, unique per
    /// replica) in a background task, and returns at once (after making sure the Lease exists)
    /// with the handle to ask. The handle does not lead until the Lease is taken.
    pub async fn start(
        client: kube::Client,
        namespace: &str,
        lease_name: &str,
        identity: &str,
        options: LeaderOptions,
    ) -> Result<LeaderHandle, LeaderError> {
        let (duration, grace) = options.seconds()?;
        let lease_error = |source| LeaderError::Lease {
            namespace: namespace.to_string(),
            name: lease_name.to_string(),
            source,
        };
        let manager = LeaseManagerBuilder::new(client.clone(), lease_name)
            .with_namespace(namespace)
            .with_identity(identity)
            .with_duration(duration)
            .with_grace(grace)
            .build()
            .await
            .map_err(lease_error)?;
        let shared = Arc::new(Shared::new(0));
        let cancel = CancellationToken::new();
        let campaign = Campaign {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            lease_name: lease_name.to_string(),
            identity: identity.to_string(),
            options,
            shared: shared.clone(),
            logged: AtomicBool::new(false),
        };
        let task = tokio::spawn(campaign.run(manager, cancel.clone()));
        Ok(LeaderHandle {
            identity: identity.to_string(),
            shared,
            control: Some(Arc::new(Control {
                cancel,
                task: Mutex::new(Some(task)),
            })),
        })
    }
}

/// The background task of one election.
struct Campaign {
    api: Api<Lease>,
    namespace: String,
    lease_name: String,
    identity: String,
    options: LeaderOptions,
    shared: Arc<Shared>,
    /// The leadership last logged.
    logged: AtomicBool,
}

impl Campaign {
    async fn run(
        self,
        manager: kube_lease_manager::LeaseManager,
        cancel: CancellationToken,
    ) -> Result<(), LeaderError> {
        let (mut holds, manager_task) = manager.watch().await;
        let mut manager_says_leader = false;
        let mut verify = tokio::time::interval(self.options.verify_interval());
        verify.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = self.deadline_instant();
            tokio::select! {
                _ = cancel.cancelled() => break,
                changed = holds.changed() => {
                    if changed.is_err() {
                        // The manager task ended on its own (an error it does not retry).
                        tracing::error!(lease = %self.lease_name, "Leader election stopped unexpectedly");
                        break;
                    }
                    manager_says_leader = *holds.borrow_and_update();
                    if manager_says_leader {
                        self.verify().await;
                    } else {
                        self.shared.set_deadline(0);
                    }
                    self.log_transition();
                }
                _ = verify.tick(), if manager_says_leader => {
                    self.verify().await;
                    self.log_transition();
                }
                _ = tokio::time::sleep_until(deadline), if *self.shared.sender.borrow() => {
                    // The deadline passed without a confirmed renewal.
                    self.shared.publish();
                    self.log_transition();
                }
            }
        }
        self.shared.set_deadline(0);
        self.log_transition();
        // Closing the channel makes the manager task release the Lease (if held) and end.
        drop(holds);
        match tokio::time::timeout(self.options.duration, manager_task).await {
            Ok(Ok(Ok(_manager))) => Ok(()),
            Ok(Ok(Err(source))) => Err(LeaderError::Lease {
                namespace: self.namespace.clone(),
                name: self.lease_name.clone(),
                source,
            }),
            Ok(Err(join)) => Err(LeaderError::Task(join.to_string())),
            Err(_) => Err(LeaderError::Task(format!(
                "releasing Lease {}/{} took longer than {:?}",
                self.namespace, self.lease_name, self.options.duration
            ))),
        }
    }

    fn deadline_instant(&self) -> tokio::time::Instant {
        let until = self.shared.leading_until.load(Ordering::Acquire);
        let now = self.shared.now_ms();
        let left = Duration::from_millis(until.saturating_sub(now));
        // Far enough for "never" without overflowing the timer.
        tokio::time::Instant::now() + left.min(Duration::from_secs(86_400))
    }

    /// Reads the Lease and moves the deadline: to the Lease's expiry minus the margin if this
    /// instance holds it, to "not leading" if someone else does. A failed read changes nothing:
    /// the current deadline then runs out on its own.
    async fn verify(&self) {
        match self.api.get(&self.lease_name).await {
            Ok(lease) => {
                let until = self.held_until(&lease).map_or(0, |left| {
                    self.shared
                        .now_ms()
                        .saturating_add(u64::try_from(left.as_millis()).unwrap_or(FOREVER - 1))
                });
                self.shared.set_deadline(until);
            }
            Err(e) => {
                tracing::warn!(lease = %self.lease_name, error = %e, "Failed to read the leader Lease");
                self.shared.publish();
            }
        }
    }

    /// How long this instance may still act as leader according to `lease`, if it holds it.
    fn held_until(&self, lease: &Lease) -> Option<Duration> {
        let spec = lease.spec.as_ref()?;
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return None;
        }
        let renewed: SystemTime = spec.renew_time.as_ref()?.0.into();
        let seconds = u64::try_from(spec.lease_duration_seconds?).ok()?;
        let expiry = renewed.checked_add(Duration::from_secs(seconds))?;
        // The holder's own clock wrote renewTime, so comparing with the local clock is sound.
        let left = expiry.duration_since(SystemTime::now()).ok()?;
        left.checked_sub(self.options.margin())
    }

    /// Logs a gained or lost leadership once per change.
    fn log_transition(&self) {
        let leading = *self.shared.sender.borrow();
        if self.logged.swap(leading, Ordering::AcqRel) == leading {
            return;
        }
        if leading {
            tracing::info!(lease = %self.lease_name, identity = %self.identity, "Became the leader");
        } else {
            tracing::warn!(lease = %self.lease_name, identity = %self.identity, "Stopped being the leader");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    use k8s_openapi::jiff::{SignedDuration, Timestamp};

    #[test]
    fn options_must_leave_room_for_the_grace_period() {
        let ok = LeaderOptions::default();
        assert_eq!(ok.seconds().expect("valid"), (15, 5));
        for (duration, grace) in [(5, 5), (5, 0), (1, 2)] {
            let bad = LeaderOptions {
                duration: Duration::from_secs(duration),
                grace: Duration::from_secs(grace),
            };
            assert!(
                matches!(bad.seconds(), Err(LeaderError::InvalidOptions(_))),
                "{duration}/{grace}"
            );
        }
    }

    #[tokio::test]
    async fn always_leads_and_reports_it() {
        let handle = LeaderHandle::always();
        assert!(handle.is_leader());
        assert!(*handle.subscribe().borrow());
        handle.wait_until_leader().await;
        handle.release().await.expect("nothing to release");
        assert!(handle.is_leader(), "always stays the leader");

        let metrics = Metrics::new();
        let task = handle.report_to(metrics.clone());
        tokio::time::timeout(Duration::from_secs(5), async {
            while !metrics.encode().contains("vtmove_leader 1") {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("gauge set");
        task.abort();
    }

    fn lease(holder: &str, renewed_secs_ago: i64, duration: i32) -> Lease {
        let renewed = Timestamp::now() - SignedDuration::from_secs(renewed_secs_ago);
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.to_string()),
                renew_time: Some(MicroTime(renewed)),
                lease_duration_seconds: Some(duration),
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        }
    }

    fn campaign() -> Campaign {
        let config = kube::Config::new("http://127.0.0.1:1".parse().expect("url"));
        let client = kube::Client::try_from(config).expect("client");
        Campaign {
            api: Api::namespaced(client, "default"),
            namespace: "default".into(),
            lease_name: "vtmove".into(),
            identity: "me".into(),
            options: LeaderOptions {
                duration: Duration::from_secs(10),
                grace: Duration::from_secs(4),
            },
            shared: Arc::new(Shared::new(0)),
            logged: AtomicBool::new(false),
        }
    }

    #[tokio::test]
    async fn leadership_lasts_until_expiry_minus_half_the_grace() {
        let c = campaign();
        // Renewed 1 s ago for 10 s: 9 s left, 2 s of margin.
        let left = c.held_until(&lease("me", 1, 10)).expect("held");
        assert!(
            left <= Duration::from_secs(7) && left > Duration::from_millis(6500),
            "{left:?}"
        );
        assert_eq!(
            c.held_until(&lease("other", 1, 10)),
            None,
            "someone else holds it"
        );
        assert_eq!(c.held_until(&lease("me", 9, 10)), None, "within the margin");
        assert_eq!(c.held_until(&lease("me", 30, 10)), None, "expired");
        assert_eq!(c.held_until(&Lease::default()), None, "empty spec");
    }

    #[test]
    fn a_deadline_in_the_past_is_not_leadership() {
        let shared = Shared::new(0);
        assert!(!shared.is_leader());
        let mut rx = shared.sender.subscribe();
        shared.set_deadline(shared.now_ms() + 60_000);
        assert!(shared.is_leader());
        assert!(*rx.borrow_and_update());
        shared.set_deadline(shared.now_ms());
        assert!(!shared.is_leader(), "the deadline is exclusive");
        assert!(!*rx.borrow_and_update());
    }
}
