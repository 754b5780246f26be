//! The heal benchmark's measurements (`cargo bench -p vtmove-sandbox --bench heal`): how long a
//! reverse write cutover hit by a tablet roll stays broken once the tablet is back, measured
//! through the whole operator (kube-sim, the real controllers with their etcd watch triggers,
//! real etcd, the vtsim fleet) with the product's resync period, so only the trigger path (a
//! restarted tablet rewrites its `Tablet` record; an expired lock key disappears) can wake the
//! workflow quickly.
//!
//! Two ways a roll meets a reverse (all traffic back to the source keyspace), each sample
//! starting from all traffic switched to the target:
//!
//! * [`Variant::TabletDown`]: a source replica stops just before the cutover's refresh and
//!   stays down for `downtime`. vtmove's unit cannot verify the refresh, so it rolls back inside
//!   its locks; I1 must hold throughout (polled). Measured: from the tablet serving again to the
//!   first probe write served by the source keyspace (the reverse finished).
//! * [`Variant::Abandoned`]: the source replica rolls at the flush point and the process running
//!   the unit dies there, locks left to expire (#17326: writes routed to a keyspace that denies
//!   them). Measured: from the tablet back, and from the dead holder's locks expiring, to the
//!   first accepted probe write (I1 restored by vtmove's heal).

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;

use vtmove::api::condition::types;
use vtmove::engine::Desired;
use vtmove::engine::invariants::check_single_writer_in_topology;

use super::{
    Fault, PROBE_TABLE, Report, Sandbox, WORKFLOW, WriteGap, is_false, is_status, is_true, ready,
};

/// How the roll meets the reverse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Variant {
    /// The tablet is down during the cutover's refresh; the unit rolls back in its locks.
    TabletDown,
    /// The unit is abandoned mid-way with a tablet rolling; the next pass heals it.
    Abandoned,
}

impl Variant {
    /// The name in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Variant::TabletDown => "tablet-down",
            Variant::Abandoned => "abandoned",
        }
    }
}

/// One measured reverse.
#[derive(Clone, Debug)]
pub struct HealSample {
    /// How the roll met the reverse.
    pub variant: Variant,
    /// From the tablet serving again to writes served as desired (TabletDown: by the source
    /// keyspace; Abandoned: by any keyspace, I1 restored). Zero when it happened before.
    pub after_tablet_back: Duration,
    /// Abandoned only: from the dead holder's locks expiring to I1 restored.
    pub after_locks_free: Option<Duration>,
    /// From the fault to the first write accepted again.
    pub write_outage: Duration,
    /// From the tablet back to the workflow's status reporting the reverse done (Ready,
    /// `WritesSwitched=False`).
    pub reported_after_tablet_back: Duration,
    /// I1 violations seen outside a locked window while polling the topology.
    pub violations: usize,
    /// From the fault to the reverse reported, as times since the probes started: where the
    /// load through vtgate ([`crate::VtgateFigures::drive`]) saw this sample.
    pub window: (Duration, Duration),
    /// The model probe's longest write gap inside `window` (the measure comparable with
    /// vtgate's longest blocked time; `write_outage` is to the *first* accepted write, which
    /// can come before the cutover the fault hits).
    pub model_longest_gap: Duration,
}

/// Keys for the benchmark's own probe writes, apart from the steady load's.
static NEXT_KEY: AtomicI64 = AtomicI64::new(50_000_000);

const POLL: Duration = Duration::from_millis(2);
/// How often the workflow's status is read while waiting on it.
const WORKFLOW_POLL: Duration = Duration::from_millis(10);
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

impl Sandbox {
    /// Starts a stopped tablet (after [`Fault::StopAtRefresh`]) and returns when it serves.
    pub async fn start_tablet(&self, alias: &str) -> anyhow::Result<()> {
        let tablet = self
            .fleet
            .tablet(alias)
            .with_context(|| format!("no tablet {alias}"))?;
        tablet
            .start()
            .await
            .with_context(|| format!("starting tablet {alias}"))
    }

    /// Applies the keyspaces and the workflow, waits for the copy and switches all traffic to
    /// the target: where every heal sample starts.
    pub async fn prepare_heal_samples(&self) -> anyhow::Result<()> {
        self.apply_keyspaces().await?;
        self.apply_workflow().await?;
        self.wait_workflow("copied", WORKFLOW_POLL, |wf| {
            is_true(wf, types::COPY_COMPLETED) && ready(wf)
        })
        .await?;
        self.switch_all("Target").await
    }

    /// One reverse hit by a roll, then all traffic switched to the target again.
    pub async fn heal_sample(
        &self,
        variant: Variant,
        downtime: Duration,
    ) -> anyhow::Result<HealSample> {
        let replica = self.commerce_replica()?;
        let fault = match variant {
            Variant::TabletDown => Fault::StopAtRefresh,
            Variant::Abandoned => Fault::RollAndAbandon { downtime },
        };
        self.arm(fault, &replica);
        self.patch_traffic("Source").await?;
        let fired = self.wait_fault_fired().await?;
        let desired = self.desired().await?;
        let mut violations = 0;
        let (back, locks_free) = match variant {
            Variant::TabletDown => {
                while fired.elapsed() < downtime {
                    violations += self.i1_violations(&desired).await?;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                self.start_tablet(&replica).await?;
                (Instant::now(), None)
            }
            Variant::Abandoned => {
                let back = self.wait_tablet_back().await?;
                (back, Some(self.wait_locks_free(&desired).await?))
            }
        };
        let want = match variant {
            Variant::TabletDown => Some("commerce"),
            Variant::Abandoned => None,
        };
        let served = self.wait_write_served(want).await?;
        violations += self.i1_violations(&desired).await?;
        self.wait_workflow("reverse reported", WORKFLOW_POLL, |wf| {
            ready(wf) && is_false(wf, types::WRITES_SWITCHED)
        })
        .await?;
        let reported = Instant::now();
        let window = (
            fired.saturating_duration_since(self.probe_started),
            reported.saturating_duration_since(self.probe_started),
        );
        let sample = HealSample {
            variant,
            after_tablet_back: served.saturating_duration_since(back),
            after_locks_free: locks_free.map(|free| served.saturating_duration_since(free)),
            write_outage: self.first_accepted_write_since(fired).await?,
            reported_after_tablet_back: reported.saturating_duration_since(back),
            violations,
            window,
            model_longest_gap: self.longest_gap_between(window),
        };
        self.switch_all("Target").await?;
        Ok(sample)
    }

    /// Stops the load and checks the probe's ledger against the target keyspace, which serves
    /// writes after every sample.
    pub async fn finish_benchmark(&self) -> Report {
        let mut report = Report::default();
        self.finish(&mut report, "customer", None).await;
        report
    }

    async fn desired(&self) -> anyhow::Result<Desired> {
        let wf = self.workflow_api().get(WORKFLOW).await?;
        Desired::from_spec(&wf.spec, WORKFLOW).map_err(|e| anyhow::anyhow!("the spec: {e}"))
    }

    async fn i1_violations(&self, desired: &Desired) -> anyhow::Result<usize> {
        Ok(check_single_writer_in_topology(&self.topo, desired)
            .await
            .context("reading the topology for the I1 check")?
            .len())
    }

    async fn patch_traffic(&self, side: &str) -> anyhow::Result<()> {
        self.patch_workflow(
            &json!({"spec": {"traffic": {"replica": side, "rdonly": side, "primary": side}}}),
        )
        .await
    }

    async fn switch_all(&self, side: &str) -> anyhow::Result<()> {
        self.patch_traffic(side).await?;
        let writes = if side == "Target" { "True" } else { "False" };
        self.wait_workflow("traffic switched", WORKFLOW_POLL, move |wf| {
            ready(wf) && is_status(wf, types::WRITES_SWITCHED, writes)
        })
        .await
    }

    async fn wait_fault_fired(&self) -> anyhow::Result<Instant> {
        poll_until(
            "the fault to fire (did the reverse run a write cutover?)",
            || async { Ok(self.fault_times().fired) },
        )
        .await
    }

    /// When the tablet rolled by [`Fault::RollAndAbandon`] was serving again.
    async fn wait_tablet_back(&self) -> anyhow::Result<Instant> {
        poll_until("the rolled tablet to come back", || async {
            Ok(self.fault_times().back)
        })
        .await
    }

    /// When no lock of the workflow or its keyspaces is held any more.
    async fn wait_locks_free(&self, desired: &Desired) -> anyhow::Result<Instant> {
        // Vitess's lock directories (`docs/design/topology.md`, "Locks").
        let prefixes = [
            format!("internal/named_locks/{}", desired.lock_name()),
            format!("keyspaces/{}", desired.source_keyspace),
            format!("keyspaces/{}", desired.target_keyspace),
        ]
        .map(|dir| format!("{}/locks/", self.topo.key(&dir)));
        poll_until("the abandoned cutover's locks to expire", || async {
            for prefix in &prefixes {
                if !self.topo.global_store().list(prefix).await?.is_empty() {
                    return Ok(None);
                }
            }
            Ok(Some(Instant::now()))
        })
        .await
    }

    /// Writes until one is accepted (by `keyspace`, when given); returns when.
    async fn wait_write_served(&self, keyspace: Option<&str>) -> anyhow::Result<Instant> {
        poll_until("a write to be served", || async {
            let key = NEXT_KEY.fetch_add(1, Ordering::SeqCst);
            Ok(match self.probe.write(PROBE_TABLE, key, "heal").await {
                Ok(route) if keyspace.is_none_or(|k| route.keyspace == k) => Some(Instant::now()),
                _ => None,
            })
        })
        .await
    }

    /// The longest gap of the steady load among its writes that started inside `window`.
    fn longest_gap_between(&self, (from, to): (Duration, Duration)) -> Duration {
        let attempts: Vec<_> = self
            .stats
            .attempts
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a.start >= from && a.start <= to)
            .collect();
        crate::report::gaps(attempts)
            .iter()
            .map(WriteGap::length)
            .max()
            .unwrap_or_default()
    }

    /// From `since` to the start of the first accepted write of the steady load after it (the
    /// load's record, so the benchmark's own polling does not shorten it).
    async fn first_accepted_write_since(&self, since: Instant) -> anyhow::Result<Duration> {
        let offset = since.saturating_duration_since(self.probe_started);
        let attempts = self
            .stats
            .attempts
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default();
        attempts
            .iter()
            .filter(|a| a.ok && a.start >= offset)
            .map(|a| a.start - offset)
            .min()
            .context("no write of the steady load was accepted after the fault")
    }
}

/// Calls `check` every [`POLL`] until it yields a value, at most [`STEP_TIMEOUT`].
async fn poll_until<T, F, Fut>(what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("waited {STEP_TIMEOUT:?} for {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}
