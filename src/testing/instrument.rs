//! Wrappers that count and audit what the engine does, for the invariant checks of tests:
//!
//! * [`AuditedStore`] counts every mutating topology operation (I5: a converged pass writes
//!   nothing) and, once enabled, checks that every write of a Shard record, a keyspace VSchema or
//!   the routing rules happens while a lock key exists for each keyspace it affects (I3, checked
//!   from the outside, independently of the guards that enforce it inside; a Shard record write
//!   that leaves the denied tables alone, like a reparent's, may hold the shard lock instead);
//! * [`CountingTablets`] counts tablet calls and the mutating ones (a `VReplicationExec` or
//!   `ExecuteFetchAsDba` that only SELECTs is a read).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use prost::Message;

use crate::vitess::proto::tabletmanagerdata::{
    ApplySchemaRequest, ApplySchemaResponse, CreateVReplicationWorkflowRequest,
    CreateVReplicationWorkflowResponse, DeleteVReplicationWorkflowRequest,
    DeleteVReplicationWorkflowResponse, ExecuteFetchAsDbaRequest, ExecuteFetchAsDbaResponse,
    FullStatusResponse, GetSchemaRequest, GetSchemaResponse, HasVReplicationWorkflowsResponse,
    PrimaryPositionResponse, ReadVReplicationWorkflowRequest, ReadVReplicationWorkflowResponse,
    ReadVReplicationWorkflowsRequest, ReadVReplicationWorkflowsResponse,
    UpdateVReplicationWorkflowRequest, UpdateVReplicationWorkflowResponse, VReplicationExecRequest,
    VReplicationExecResponse, VReplicationWaitForPosRequest,
};
use crate::vitess::proto::topodata::Shard;
use crate::vitess::proto::vschema::RoutingRules;
use crate::vitess::tablet::{Method, TabletAddr, TabletError, TabletRpc};
use crate::vitess::topo::routing_rules::affected_keyspaces;
use crate::vitess::topo::{
    Change, DirEntry, FencedWrite, KeyValue, LeaseId, Result, TopoStore, Version, WatchStream,
};

/// A store wrapper that counts writes and audits lock discipline. See the module docs.
#[derive(Debug)]
pub struct AuditedStore {
    inner: Arc<dyn TopoStore>,
    root: String,
    writes: AtomicU64,
    audit: AtomicBool,
    violations: Mutex<Vec<String>>,
}

impl AuditedStore {
    /// Wraps `inner`; `root` is the global root (`/vitess/global`).
    pub fn new(inner: Arc<dyn TopoStore>, root: &str) -> Arc<Self> {
        Arc::new(AuditedStore {
            inner,
            root: root.trim_end_matches('/').to_string(),
            writes: AtomicU64::new(0),
            audit: AtomicBool::new(false),
            violations: Mutex::new(Vec::new()),
        })
    }

    /// Mutating operations so far (creates, updates, deletes, lease grants, revocations and
    /// lock keys).
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    /// Starts auditing (after the test world is set up).
    pub fn enable_audit(&self) {
        self.audit.store(true, Ordering::SeqCst);
    }

    /// I3 violations seen.
    pub fn violations(&self) -> Vec<String> {
        self.violations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn count(&self) {
        self.writes.fetch_add(1, Ordering::SeqCst);
    }

    /// The keyspaces a write of `key` (with `value`) needs locked, if it is an audited record.
    async fn needs_locks(&self, key: &str, value: Option<&[u8]>) -> BTreeSet<String> {
        let Some(rel) = key.strip_prefix(&format!("{}/", self.root)) else {
            return BTreeSet::new();
        };
        let parts: Vec<&str> = rel.split('/').collect();
        match parts.as_slice() {
            ["keyspaces", ks, "shards", _, "Shard"] | ["keyspaces", ks, "VSchema"] => {
                [ks.to_string()].into()
            }
            ["RoutingRules"] => {
                let old = match self.inner.get(key).await {
                    Ok((bytes, _)) => RoutingRules::decode(bytes.as_slice()).unwrap_or_default(),
                    Err(_) => RoutingRules::default(),
                };
                let new = value
                    .and_then(|v| RoutingRules::decode(v).ok())
                    .unwrap_or_default();
                affected_keyspaces(&old, &new).unwrap_or_default()
            }
            _ => BTreeSet::new(),
        }
    }

    async fn lock_held(&self, dir: &str) -> bool {
        let prefix = format!("{}/{dir}/locks/", self.root);
        self.inner
            .list(&prefix)
            .await
            .map(|l| !l.is_empty())
            .unwrap_or(false)
    }

    /// A Shard record write that leaves its tablet controls alone (a reparent changing the
    /// primary) may hold the shard's own lock instead of the keyspace lock, as Vitess's
    /// reparents do; denied tables always need the keyspace lock.
    async fn shard_lock_suffices(&self, key: &str, value: Option<&[u8]>) -> Option<String> {
        let rel = key.strip_prefix(&format!("{}/", self.root))?;
        let dir = rel.strip_suffix("/Shard")?;
        let old = match self.inner.get(key).await {
            Ok((bytes, _)) => Shard::decode(bytes.as_slice()).ok()?,
            Err(_) => return None,
        };
        let new = Shard::decode(value?).ok()?;
        (old.tablet_controls == new.tablet_controls).then(|| dir.to_string())
    }

    async fn audit_write(&self, key: &str, value: Option<&[u8]>) {
        if !self.audit.load(Ordering::SeqCst) {
            return;
        }
        for keyspace in self.needs_locks(key, value).await {
            let mut held = self.lock_held(&format!("keyspaces/{keyspace}")).await;
            if !held && let Some(shard_dir) = self.shard_lock_suffices(key, value).await {
                held = self.lock_held(&shard_dir).await;
            }
            if !held {
                self.violations
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(format!(
                        "{key} written without the lock of keyspace {keyspace}"
                    ));
            }
        }
    }
}

#[async_trait]
impl TopoStore for AuditedStore {
    async fn get(&self, key: &str) -> Result<(Vec<u8>, Version)> {
        self.inner.get(key).await
    }

    async fn create(&self, key: &str, value: &[u8]) -> Result<Version> {
        self.audit_write(key, Some(value)).await;
        self.count();
        self.inner.create(key, value).await
    }

    async fn update(&self, key: &str, value: &[u8], version: Option<Version>) -> Result<Version> {
        self.audit_write(key, Some(value)).await;
        self.count();
        self.inner.update(key, value, version).await
    }

    async fn delete(&self, key: &str, version: Option<Version>) -> Result<()> {
        self.audit_write(key, None).await;
        self.count();
        self.inner.delete(key, version).await
    }

    async fn write_fenced(&self, write: FencedWrite<'_>) -> Result<Option<Version>> {
        let value = match write.change {
            Change::Put(value) => Some(value),
            Change::Delete => None,
        };
        self.audit_write(write.key, value).await;
        self.count();
        self.inner.write_fenced(write).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<KeyValue>> {
        self.inner.list(prefix).await
    }

    async fn list_with_revision(&self, prefix: &str) -> Result<(Vec<KeyValue>, Version)> {
        self.inner.list_with_revision(prefix).await
    }

    async fn list_dir(&self, dir: &str) -> Result<Vec<DirEntry>> {
        self.inner.list_dir(dir).await
    }

    async fn watch_prefix(&self, prefix: &str, start: Option<Version>) -> Result<WatchStream> {
        self.inner.watch_prefix(prefix, start).await
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId> {
        self.count();
        self.inner.grant_lease(ttl).await
    }

    async fn keep_alive_once(&self, lease: LeaseId) -> Result<bool> {
        self.inner.keep_alive_once(lease).await
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<bool> {
        self.count();
        self.inner.revoke_lease(lease).await
    }

    async fn create_with_lease(&self, key: &str, value: &[u8], lease: LeaseId) -> Result<Version> {
        self.count();
        self.inner.create_with_lease(key, value, lease).await
    }

    async fn newest_under_prefix(
        &self,
        prefix: &str,
        max_mod_revision: Version,
    ) -> Result<Option<KeyValue>> {
        self.inner
            .newest_under_prefix(prefix, max_mod_revision)
            .await
    }

    async fn wait_for_delete(
        &self,
        key: &str,
        from: Version,
        deadline: tokio::time::Instant,
    ) -> Result<()> {
        self.inner.wait_for_delete(key, from, deadline).await
    }
}

/// Counts tablet calls. See the module docs.
pub struct CountingTablets {
    inner: Arc<dyn TabletRpc>,
    calls: Mutex<BTreeMap<Method, u64>>,
    mutating: AtomicU64,
}

impl std::fmt::Debug for CountingTablets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountingTablets")
            .field("mutating", &self.mutating())
            .finish_non_exhaustive()
    }
}

impl CountingTablets {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn TabletRpc>) -> Arc<Self> {
        Arc::new(CountingTablets {
            inner,
            calls: Mutex::new(BTreeMap::new()),
            mutating: AtomicU64::new(0),
        })
    }

    /// Mutating calls so far.
    pub fn mutating(&self) -> u64 {
        self.mutating.load(Ordering::SeqCst)
    }

    /// Calls per method so far.
    pub fn calls(&self) -> BTreeMap<Method, u64> {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn note(&self, method: Method, mutating: bool) {
        *self
            .calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(method)
            .or_default() += 1;
        if mutating {
            self.mutating.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn is_select(sql: &str) -> bool {
    sql.trim_start().to_ascii_lowercase().starts_with("select")
}

#[async_trait]
impl TabletRpc for CountingTablets {
    async fn get_schema(
        &self,
        t: &TabletAddr,
        r: GetSchemaRequest,
        d: Option<Duration>,
    ) -> std::result::Result<GetSchemaResponse, TabletError> {
        self.note(Method::GetSchema, false);
        self.inner.get_schema(t, r, d).await
    }
    async fn refresh_state(
        &self,
        t: &TabletAddr,
        d: Option<Duration>,
    ) -> std::result::Result<(), TabletError> {
        self.note(Method::RefreshState, true);
        self.inner.refresh_state(t, d).await
    }
    async fn apply_schema(
        &self,
        t: &TabletAddr,
        r: ApplySchemaRequest,
        d: Option<Duration>,
    ) -> std::result::Result<ApplySchemaResponse, TabletError> {
        self.note(Method::ApplySchema, true);
        self.inner.apply_schema(t, r, d).await
    }
    async fn execute_fetch_as_dba(
        &self,
        t: &TabletAddr,
        r: ExecuteFetchAsDbaRequest,
        d: Option<Duration>,
    ) -> std::result::Result<ExecuteFetchAsDbaResponse, TabletError> {
        self.note(
            Method::ExecuteFetchAsDba,
            !is_select(&String::from_utf8_lossy(&r.query)),
        );
        self.inner.execute_fetch_as_dba(t, r, d).await
    }
    async fn primary_position(
        &self,
        t: &TabletAddr,
        d: Option<Duration>,
    ) -> std::result::Result<PrimaryPositionResponse, TabletError> {
        self.note(Method::PrimaryPosition, false);
        self.inner.primary_position(t, d).await
    }
    async fn create_vreplication_workflow(
        &self,
        t: &TabletAddr,
        r: CreateVReplicationWorkflowRequest,
        d: Option<Duration>,
    ) -> std::result::Result<CreateVReplicationWorkflowResponse, TabletError> {
        self.note(Method::CreateVReplicationWorkflow, true);
        self.inner.create_vreplication_workflow(t, r, d).await
    }
    async fn delete_vreplication_workflow(
        &self,
        t: &TabletAddr,
        r: DeleteVReplicationWorkflowRequest,
        d: Option<Duration>,
    ) -> std::result::Result<DeleteVReplicationWorkflowResponse, TabletError> {
        self.note(Method::DeleteVReplicationWorkflow, true);
        self.inner.delete_vreplication_workflow(t, r, d).await
    }
    async fn has_vreplication_workflows(
        &self,
        t: &TabletAddr,
        d: Option<Duration>,
    ) -> std::result::Result<HasVReplicationWorkflowsResponse, TabletError> {
        self.note(Method::HasVReplicationWorkflows, false);
        self.inner.has_vreplication_workflows(t, d).await
    }
    async fn read_vreplication_workflows(
        &self,
        t: &TabletAddr,
        r: ReadVReplicationWorkflowsRequest,
        d: Option<Duration>,
    ) -> std::result::Result<ReadVReplicationWorkflowsResponse, TabletError> {
        self.note(Method::ReadVReplicationWorkflows, false);
        self.inner.read_vreplication_workflows(t, r, d).await
    }
    async fn read_vreplication_workflow(
        &self,
        t: &TabletAddr,
        r: ReadVReplicationWorkflowRequest,
        d: Option<Duration>,
    ) -> std::result::Result<ReadVReplicationWorkflowResponse, TabletError> {
        self.note(Method::ReadVReplicationWorkflow, false);
        self.inner.read_vreplication_workflow(t, r, d).await
    }
    async fn update_vreplication_workflow(
        &self,
        t: &TabletAddr,
        r: UpdateVReplicationWorkflowRequest,
        d: Option<Duration>,
    ) -> std::result::Result<UpdateVReplicationWorkflowResponse, TabletError> {
        self.note(Method::UpdateVReplicationWorkflow, true);
        self.inner.update_vreplication_workflow(t, r, d).await
    }
    async fn vreplication_exec(
        &self,
        t: &TabletAddr,
        r: VReplicationExecRequest,
        d: Option<Duration>,
    ) -> std::result::Result<VReplicationExecResponse, TabletError> {
        self.note(Method::VReplicationExec, !is_select(&r.query));
        self.inner.vreplication_exec(t, r, d).await
    }
    async fn vreplication_wait_for_pos(
        &self,
        t: &TabletAddr,
        r: VReplicationWaitForPosRequest,
        d: Option<Duration>,
    ) -> std::result::Result<(), TabletError> {
        self.note(Method::VReplicationWaitForPos, false);
        self.inner.vreplication_wait_for_pos(t, r, d).await
    }
    async fn full_status(
        &self,
        t: &TabletAddr,
        d: Option<Duration>,
    ) -> std::result::Result<FullStatusResponse, TabletError> {
        self.note(Method::FullStatus, false);
        self.inner.full_status(t, d).await
    }
}
