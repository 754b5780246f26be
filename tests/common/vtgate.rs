//! The real vtgate for the tests that start one (`#[path]`-included by `tests/real_vitess.rs`,
//! `tests/real_vtgate.rs` and the cutover benchmark): the sandbox's launcher
//! (`vtmove_sandbox::vtgate`) with the binary `scripts/peers` built, failing the test with
//! vtgate's log when something goes wrong.

#![allow(dead_code)] // each test binary uses a different subset

use std::time::Duration;

use serde_json::Value;

use crate::common::peers::peer;

/// A free loopback port.
pub fn free_port() -> u16 {
    vtmove_sandbox::vtgate::free_port().unwrap_or_else(|e| panic!("{e:#}"))
}

/// A running vtgate process (killed on drop).
pub struct Vtgate(vtmove_sandbox::vtgate::Vtgate);

impl std::ops::Deref for Vtgate {
    type Target = vtmove_sandbox::vtgate::Vtgate;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Vtgate {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Vtgate {
    /// Starts the vtgate `scripts/peers` built (see `vtmove_sandbox::vtgate::Vtgate::start`).
    pub fn start(etcd: &str, root: &str, cell: &str, extra: &[&str]) -> Vtgate {
        Vtgate(
            vtmove_sandbox::vtgate::Vtgate::start(&peer("vtgate"), etcd, root, cell, extra)
                .unwrap_or_else(|e| panic!("starting vtgate: {e:#}")),
        )
    }

    /// Panics with the log's tail if vtgate exited.
    pub fn assert_running(&mut self, context: &str) {
        if let Err(e) = self.0.check_running(context) {
            panic!("{e:#}");
        }
    }

    /// vtgate's VSchema once `ready` accepts it; panics after `timeout`.
    pub async fn wait_for_vschema(
        &mut self,
        timeout: Duration,
        what: &str,
        ready: impl Fn(&Value) -> bool,
    ) -> Value {
        self.0
            .wait_for_vschema(timeout, what, ready)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"))
    }
}
