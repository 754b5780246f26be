//! The step journal: one structured record per executed step, for status, Events and metrics.
//!
//! A record says what ran (the action's name and description), when and for how long, which
//! Vitess locks were held, how it ended, and, for the write cutover, how long each stage took
//! (the write-unavailable window is the span from the denial to the routing switch).

use std::time::{Duration, SystemTime};

use super::plan::{Action, HealReason};

/// How a step ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Succeeded,
    /// It failed; nothing it did needs undoing (every step is idempotent and the next pass
    /// re-plans), or the cutover rolled back cleanly.
    Failed {
        /// Stable error kind (metric label).
        kind: &'static str,
        /// The error, for people.
        message: String,
        /// For the cutover: whether the rollback ran to completion.
        rolled_back: Option<bool>,
    },
}

impl Outcome {
    /// Whether the step succeeded.
    pub fn succeeded(&self) -> bool {
        matches!(self, Outcome::Succeeded)
    }
}

/// One stage of a compound step (the cutover's deny, refresh, flush, catch-up, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageRecord {
    /// The stage name.
    pub name: &'static str,
    /// How long it took.
    pub duration: Duration,
}

/// One executed step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepRecord {
    /// The action's name (`SwitchWrites`, ...).
    pub step: &'static str,
    /// The action with its arguments.
    pub action: Action,
    /// Why it ran.
    pub message: String,
    /// The heal it made, if it was one.
    pub heal: Option<HealReason>,
    /// When it started.
    pub started: SystemTime,
    /// How long it ran.
    pub duration: Duration,
    /// How it ended.
    pub outcome: Outcome,
    /// The Vitess locks held while it ran (lock keys).
    pub locks: Vec<String>,
    /// Stages of a compound step, in order.
    pub stages: Vec<StageRecord>,
}

impl StepRecord {
    /// The duration of a named stage, if it ran.
    pub fn stage(&self, name: &str) -> Option<Duration> {
        self.stages
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.duration)
    }
}
