//! Fault knobs of a simulated tablet: planned faults for the next calls of an RPC, network
//! reachability, and the "old version" mode.
//!
//! Faults are state of the tablet, set through [`crate::SimTablet`] handles, so a test can arm a
//! fault and then let the engine under test run unmodified. Planned faults are consumed in
//! order, one per call of their RPC, so "fail the next 2 RefreshState calls" means exactly that.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use tonic::Code;
use vtmove::vitess::tablet::Method;

/// What happens to one planned call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RpcFault {
    /// The call waits this long before it is handled (a slow tablet).
    Delay(Duration),
    /// The call fails with this gRPC status.
    Fail {
        /// Status code.
        code: Code,
        /// Status message.
        message: String,
    },
    /// The call never answers (until the tablet restarts); the caller's deadline ends it.
    Hang,
    /// The tablet rolls while handling the call: the call fails with Unavailable, the tablet is
    /// down for `downtime`, then starts again and reloads its state from the topology.
    Restart {
        /// How long the tablet stays down.
        downtime: Duration,
    },
}

/// Whether the tablet's gRPC port can be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reachability {
    /// Normal.
    #[default]
    Reachable,
    /// Connections are refused (the listener is closed); the process keeps running, so its
    /// own VReplication streams continue, but nobody can reach it (RPCs, queries, streams that
    /// read from it).
    Refused,
    /// Connections are accepted but nothing answers: calls hang until their deadline.
    Hang,
}

/// The fault state of one tablet.
#[derive(Debug, Default)]
pub struct FaultState {
    planned: HashMap<Method, VecDeque<RpcFault>>,
    /// Current reachability.
    pub reachability: Reachability,
    /// RPCs answered with Unimplemented (an older Vitess).
    pub unimplemented: HashSet<Method>,
    /// FullStatus without the v22 fields, no `tablet_start_time`, v21 request decoding.
    pub old_version: bool,
}

impl FaultState {
    /// Queues `fault` for the next `times` calls of `method` (after those already queued).
    pub fn plan(&mut self, method: Method, fault: RpcFault, times: usize) {
        let queue = self.planned.entry(method).or_default();
        for _ in 0..times {
            queue.push_back(fault.clone());
        }
    }

    /// Takes the fault for one call of `method`, if any is planned.
    pub fn take(&mut self, method: Method) -> Option<RpcFault> {
        let queue = self.planned.get_mut(&method)?;
        let fault = queue.pop_front();
        if queue.is_empty() {
            self.planned.remove(&method);
        }
        fault
    }

    /// Planned faults left for `method`.
    pub fn pending(&self, method: Method) -> usize {
        self.planned.get(&method).map_or(0, VecDeque::len)
    }

    /// Drops every planned fault.
    pub fn clear_planned(&mut self) {
        self.planned.clear();
    }
}
