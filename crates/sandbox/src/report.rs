//! What a scenario reports: the probe's attempts and write gaps, the figures through the real
//! vtgate, and the summary the sandbox prints.

use super::*;

/// One probe attempt: when it started and ended (since the probe started), and whether it
/// was accepted.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Attempt {
    pub(crate) start: Duration,
    pub(crate) end: Duration,
    pub(crate) ok: bool,
}

/// What the probe has seen so far.
#[derive(Default)]
pub(crate) struct ProbeStats {
    pub(crate) writes_ok: AtomicU64,
    pub(crate) writes_failed: AtomicU64,
    pub(crate) reads_ok: AtomicU64,
    pub(crate) reads_failed: AtomicU64,
    pub(crate) attempts: Mutex<Vec<Attempt>>,
    pub(crate) last_error: Mutex<Option<String>>,
}

/// A period during which every probe write failed.
#[derive(Clone, Debug, PartialEq)]
pub struct WriteGap {
    /// Start, since the probe started.
    pub start: Duration,
    /// End: the start of the next accepted write (or the last failure's end).
    pub end: Duration,
    /// Failed writes in it.
    pub failures: usize,
}

impl WriteGap {
    /// How long writes were unavailable.
    pub fn length(&self) -> Duration {
        self.end.saturating_sub(self.start)
    }
}

pub(crate) fn gaps(mut attempts: Vec<Attempt>) -> Vec<WriteGap> {
    attempts.sort_by_key(|a| a.start);
    let mut out = Vec::new();
    let mut open: Option<WriteGap> = None;
    for a in attempts {
        match (a.ok, open.as_mut()) {
            (true, _) => {
                if let Some(mut g) = open.take() {
                    g.end = a.start;
                    out.push(g);
                }
            }
            (false, Some(g)) => {
                g.failures += 1;
                g.end = g.end.max(a.end);
            }
            (false, None) => {
                open = Some(WriteGap {
                    start: a.start,
                    end: a.end,
                    failures: 1,
                })
            }
        }
    }
    out.extend(open);
    out
}

/// What the load through the real vtgate saw. vtgate holds a write that meets denied tables
/// and retries it once a newer SrvVSchema arrives, so a cutover shows as blocked time more than
/// as failures.
#[derive(Clone, Debug, Default)]
pub struct VtgateFigures {
    /// Writes vtgate acknowledged.
    pub writes_ok: u64,
    /// Writes vtgate refused or that timed out.
    pub writes_failed: u64,
    /// The longest time writes were blocked (see [`vtgate_probe::DriveReport::longest_blocked`]).
    pub longest_blocked: Duration,
    /// Acknowledged writes after the scenario's last step.
    pub writes_ok_after_last_step: u64,
    /// Failed writes after the scenario's last step.
    pub writes_failed_after_last_step: u64,
    /// The first error vtgate returned.
    pub first_error: Option<String>,
    /// Acknowledged writes missing from the keyspace serving writes.
    pub lost_writes: Vec<String>,
    /// Every write of the load (times since the model probe started), for figures over a part
    /// of the run.
    pub drive: vtgate_probe::DriveReport,
}

/// How long the probe keeps writing after a scenario's last step, to show the state it leaves
/// behind serves writes.
pub const AFTER_LAST_STEP: Duration = Duration::from_secs(2);

/// The outcome of a scenario.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The scenario's steps and how long each took.
    pub steps: Vec<(String, Duration)>,
    /// Probe writes accepted.
    pub writes_ok: u64,
    /// Probe writes refused or timed out.
    pub writes_failed: u64,
    /// Probe reads answered.
    pub reads_ok: u64,
    /// Probe reads that failed.
    pub reads_failed: u64,
    /// Periods during which every write failed, in order.
    pub write_gaps: Vec<WriteGap>,
    /// Probe writes accepted after the scenario's last step finished (the load keeps running
    /// for [`AFTER_LAST_STEP`]): the state a scenario leaves behind must serve writes.
    pub writes_ok_after_last_step: u64,
    /// Probe writes refused or timed out after the last step finished.
    pub writes_failed_after_last_step: u64,
    /// The same load through the real vtgate (`--vtgate`).
    pub vtgate: Option<VtgateFigures>,
    /// `status.heals` of the workflow at the end.
    pub heals: i64,
    /// `status.lastHeal` at the end: when and what was repaired.
    pub last_heal: Option<String>,
    /// I1 violations found after a step (each says after which step).
    pub violations: Vec<String>,
    /// Probe writes whose last accepted value is missing from the keyspace serving writes.
    pub lost_writes: Vec<String>,
    /// The whole scenario, setup included.
    pub wall: Duration,
}

impl Report {
    /// No invariant violation, no lost write, and writes served once the scenario is over: what
    /// the sandbox's exit status says.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
            && self.lost_writes.is_empty()
            && self.writes_failed_after_last_step == 0
            && self
                .vtgate
                .as_ref()
                .is_none_or(|g| g.lost_writes.is_empty() && g.writes_failed_after_last_step == 0)
    }

    /// The longest write-unavailable window.
    pub fn longest_write_gap(&self) -> Option<&WriteGap> {
        self.write_gaps.iter().max_by_key(|g| g.length())
    }

    /// The summary printed at the end.
    pub fn summary(&self) -> String {
        let mut s = String::from("== summary\n");
        for (step, took) in &self.steps {
            s.push_str(&format!("  step {step:<34} {took:>9.2?}\n"));
        }
        s.push_str(&format!(
            "  wall time                               {:>9.2?}\n",
            self.wall
        ));
        s.push_str(&format!(
            "  probe writes: {} ok, {} failed; reads: {} ok, {} failed\n",
            self.writes_ok, self.writes_failed, self.reads_ok, self.reads_failed
        ));
        s.push_str(&format!(
            "  probe writes after the last step: {} ok, {} failed\n",
            self.writes_ok_after_last_step, self.writes_failed_after_last_step
        ));
        if let Some(g) = &self.vtgate {
            s.push_str(&format!(
                "  through the real vtgate: {} ok, {} failed, longest blocked {:.2?}; after the last step {} ok, {} failed; lost {}{}\n",
                g.writes_ok,
                g.writes_failed,
                g.longest_blocked,
                g.writes_ok_after_last_step,
                g.writes_failed_after_last_step,
                g.lost_writes.len(),
                g.first_error
                    .as_deref()
                    .map(|e| format!(" (first error: {e})"))
                    .unwrap_or_default()
            ));
        }
        match self.longest_write_gap() {
            Some(g) => s.push_str(&format!(
                "  write-unavailable windows: {}, longest {:.2?} ({} failed writes, at {:.1?})\n",
                self.write_gaps.len(),
                g.length(),
                g.failures,
                g.start
            )),
            None => s.push_str("  write-unavailable windows: none\n"),
        }
        s.push_str(&format!(
            "  heals: {} (last: {})\n",
            self.heals,
            self.last_heal.as_deref().unwrap_or("-")
        ));
        s.push_str(&format!("  I1 violations: {}\n", self.violations.len()));
        for v in &self.violations {
            s.push_str(&format!("    {v}\n"));
        }
        s.push_str(&format!("  lost writes: {}\n", self.lost_writes.len()));
        for l in self.lost_writes.iter().take(10) {
            s.push_str(&format!("    {l}\n"));
        }
        s.push_str(if self.passed() {
            "  result: PASS\n"
        } else {
            "  result: FAIL\n"
        });
        s
    }
}
