//! `observe`: one snapshot of everything the planner decides from, read fresh on every pass.
//!
//! Sources, as Vitess itself reads them (`docs/design/movetables.md`, "What a pass observes"):
//! * topology: both keyspaces' records, VSchemas and Shard records (denied tables, primary,
//!   key range, ModRevision), every cell's `SrvVSchema`, the global `RoutingRules`, the rollup a
//!   rebuild would write, the Tablet records of every shard (with their ModRevision, which moves
//!   when a vttablet restarts and rewrites its record), and who holds the workflow's locks;
//! * tablets: `FullStatus` of every tablet, and on every primary its position, the streams that
//!   flow into its side (`wf` on target primaries, `wf_reverse` on source primaries, with copy
//!   bookmarks), the other workflows that could cover the same tables, and, while the workflow is
//!   being created or ended, which moved tables its schema has.
//!
//! Nothing here decides anything. Failures of single calls are kept *in* the snapshot (a tablet
//! that does not answer is an observation the planner turns into a blocker), so one bad tablet
//! never hides the rest. Only a failure to read the global topology itself fails the observation.
//! Every call has a deadline: the topology store's per-call deadline, and
//! [`ObserveOptions::rpc_timeout`] around every tablet call.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::join_all;

use super::desired::Desired;
use crate::vitess::proto::tabletmanagerdata::{GetSchemaRequest, ReadVReplicationWorkflowsRequest};
use crate::vitess::proto::topodata::{self, KeyRange, Shard, TabletAlias, TabletType};
use crate::vitess::proto::vschema::{self, SrvVSchema};
use crate::vitess::routing::{CellRules, RoutingView, RulesByTable, Side};
use crate::vitess::srv_vschema::{CellDifference, desired_srv_vschema_shared};
use crate::vitess::tablet::{
    Method, Position, TabletAddr, TabletError, TabletHealth, TabletRpc, WorkflowStreams,
};
use crate::vitess::topo::path::rel;
use crate::vitess::topo::{ShardInfo, TopoError, TopoServer, Version, tablet_alias_string};

/// Deadlines and scope of one observation.
#[derive(Clone, Debug)]
pub struct ObserveOptions {
    /// Upper bound on every tablet call.
    pub rpc_timeout: Duration,
}

impl Default for ObserveOptions {
    fn default() -> Self {
        ObserveOptions {
            rpc_timeout: Duration::from_secs(10),
        }
    }
}

/// The snapshot one pass plans from.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// When the snapshot was taken (lag is measured against it).
    pub at: SystemTime,
    /// Every cell of the topology, sorted.
    pub cells: Vec<String>,
    /// The global routing rules (missing key = empty). Shared, like the other records that
    /// grow with the workflow count, with every pass that read the same version.
    pub routing_rules: Arc<vschema::RoutingRules>,
    /// Each cell's `SrvVSchema` (`None`: the cell has none).
    pub srv_vschemas: BTreeMap<String, Option<Arc<SrvVSchema>>>,
    /// What a rebuild would write from the global records, before per-cell read rules are
    /// applied: every keyspace VSchema plus the four rule sets.
    pub srv_vschema_rollup: Arc<SrvVSchema>,
    /// The routing view of `routing_rules` over the rollup's VSchemas, when observation made
    /// it (shared between the passes that read the same records).
    pub routing_view: Derived<Option<Arc<RoutingView>>>,
    /// `routing_rules` grouped by table, when observation made it (shared like the rules);
    /// read it with [`Observed::rules_by_table`].
    pub rules_by_table: Derived<Option<Arc<RulesByTable>>>,
    /// How each cell's `SrvVSchema` differs from the global records, when observation made it
    /// (shared between the passes that read the same records).
    pub cell_differences: Derived<BTreeMap<String, Arc<CellDifference>>>,
    /// The source keyspace.
    pub source: KeyspaceState,
    /// The target keyspace.
    pub target: KeyspaceState,
    /// Which of the workflow's Vitess locks are held by anyone (vtmove included) right now.
    pub locks: LocksHeld,
}

/// Whether lock keys exist under the workflow's lock directories.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LocksHeld {
    /// The named lock `<K>/<wf>`.
    pub named: bool,
    /// The source keyspace lock.
    pub source: bool,
    /// The target keyspace lock.
    pub target: bool,
}

impl LocksHeld {
    /// True when both keyspace locks are held: a write cutover may be in its locked window, the
    /// only place where I1 may be broken.
    pub fn both_keyspaces(&self) -> bool {
        self.source && self.target
    }
}

/// One keyspace as observed.
#[derive(Clone, Debug, PartialEq)]
pub enum KeyspaceState {
    /// No `Keyspace` record.
    Missing,
    /// The keyspace exists.
    Present(Box<KeyspaceView>),
}

impl KeyspaceState {
    /// The view, if the keyspace exists.
    pub fn view(&self) -> Option<&KeyspaceView> {
        match self {
            KeyspaceState::Missing => None,
            KeyspaceState::Present(view) => Some(view.as_ref()),
        }
    }
}

/// A keyspace: its VSchema, shards and tablets.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyspaceView {
    /// The keyspace name.
    pub name: String,
    /// Its sidecar database (`_vt` unless overridden).
    pub sidecar_db: String,
    /// Its VSchema (`None`: no VSchema record).
    pub vschema: Option<Arc<vschema::Keyspace>>,
    /// Shards, sorted by name.
    pub shards: Vec<ShardView>,
    /// False when the keyspace's tablets were deliberately not contacted
    /// (`ignoreSourceKeyspace`): tablet fields are then empty and mean nothing.
    pub tablets_contacted: bool,
}

impl KeyspaceView {
    /// Whether the keyspace's VSchema says it is sharded.
    pub fn sharded(&self) -> bool {
        self.vschema.as_ref().is_some_and(|v| v.sharded)
    }

    /// The shard records, for denial coverage.
    pub fn shard_records(&self) -> impl Iterator<Item = &Shard> {
        self.shards.iter().map(|s| s.record.as_ref())
    }

    /// The shard named `name`.
    pub fn shard(&self, name: &str) -> Option<&ShardView> {
        self.shards.iter().find(|s| s.name == name)
    }
}

/// One shard: its record, its tablets, and what its primary reports.
#[derive(Clone, Debug, PartialEq)]
pub struct ShardView {
    /// The shard name (`0`, `-80`, `80-`).
    pub name: String,
    /// The Shard record (shared between the passes that read its version).
    pub record: Arc<Shard>,
    /// Its ModRevision: a change of denied tables moves it.
    pub version: Version,
    /// Every tablet registered for the shard in any cell, sorted by alias.
    pub tablets: Vec<TabletView>,
    /// What the primary reports (`None`: the shard has no primary, or its Tablet record is
    /// missing).
    pub primary: Option<PrimaryView>,
}

impl ShardView {
    /// The shard's key range (`None`: the whole range).
    pub fn key_range(&self) -> Option<&KeyRange> {
        self.record.key_range.as_ref()
    }

    /// The primary's tablet view.
    pub fn primary_tablet(&self) -> Option<&TabletView> {
        let primary = self.primary.as_ref()?;
        self.tablets.iter().find(|t| t.alias == primary.alias)
    }
}

/// One tablet as its Tablet record and `FullStatus` describe it.
#[derive(Clone, Debug, PartialEq)]
pub struct TabletView {
    /// `cell-uid`.
    pub alias: String,
    /// The structured alias.
    pub tablet_alias: TabletAlias,
    /// The type the topology records.
    pub tablet_type: TabletType,
    /// The gRPC address (`None`: the record has no usable one).
    pub addr: Option<TabletAddr>,
    /// The Tablet record's ModRevision: newer than the Shard record's means the tablet (re)started
    /// after the shard last changed, and so read its current denied tables.
    pub record_version: Version,
    /// The database the tablet serves (`vt_<keyspace>` unless overridden).
    pub db_name: String,
    /// `FullStatus`, or why it could not be read. `None` when not contacted.
    pub health: Option<Result<TabletHealth, TabletError>>,
}

impl TabletView {
    /// True when the tablet answered `FullStatus`.
    pub fn reachable(&self) -> bool {
        matches!(self.health, Some(Ok(_)))
    }
}

/// What a shard's primary reports about the workflow.
#[derive(Clone, Debug, PartialEq)]
pub struct PrimaryView {
    /// The primary's alias.
    pub alias: String,
    /// Its address.
    pub addr: TabletAddr,
    /// Its database.
    pub db_name: String,
    /// Its current position.
    pub position: Result<Position, TabletError>,
    /// The streams flowing into this side (`wf` on a target primary, `wf_reverse` on a source
    /// primary), with copy bookmarks; `Ok(None)` when it has none.
    pub streams: Result<Option<WorkflowStreams>, TabletError>,
    /// Other workflows on this primary whose streams copy one of the moved tables.
    pub conflicts: Result<Vec<WorkflowStreams>, TabletError>,
    /// Which moved tables exist in its schema, when the schema was observed.
    pub schema: Option<Result<BTreeSet<String>, TabletError>>,
}

/// Why an observation failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    /// The global topology could not be read.
    #[error("reading the topology: {0}")]
    Topo(#[from] TopoError),
    /// The observation did not finish in time.
    #[error("observation did not finish within {0:?}")]
    Timeout(Duration),
}

/// A value derived from an [`Observed`]'s records by observation (and shared with the passes
/// that read the same records), or empty to make it from them on use. Never makes two
/// observations differ; whoever changes the records it is made of empties it.
#[derive(Clone, Debug, Default)]
pub struct Derived<T>(pub T);

impl<T> PartialEq for Derived<T> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Observed {
    /// `routing_rules` grouped by table: the index observation shared, unless the rules were
    /// replaced since (a preview's), then one made now.
    pub fn rules_by_table(&self) -> Arc<RulesByTable> {
        match &self.rules_by_table.0 {
            Some(index) if index.indexes(&self.routing_rules) => index.clone(),
            _ => Arc::new(RulesByTable::new(self.routing_rules.clone())),
        }
    }

    /// Each cell with where its served rules are found ([`CellRules`]; `None`: the cell has no
    /// `SrvVSchema`): the shared index of the record when observation made one, else the record.
    pub fn cell_rules(&self) -> impl Iterator<Item = (&str, Option<&dyn CellRules>)> {
        self.srv_vschemas.iter().map(|(cell, srv)| {
            let rules: Option<&dyn CellRules> = match (srv, self.cell_differences.0.get(cell)) {
                (None, _) => None,
                (Some(_), Some(index)) => Some(index.as_ref()),
                (Some(srv), None) => Some(srv.as_ref()),
            };
            (cell.as_str(), rules)
        })
    }

    /// The keyspace on one side.
    pub fn keyspace(&self, side: Side) -> &KeyspaceState {
        match side {
            Side::Source => &self.source,
            Side::Target => &self.target,
        }
    }

    /// The keyspace view on one side, if it exists.
    pub fn view(&self, side: Side) -> Option<&KeyspaceView> {
        self.keyspace(side).view()
    }
}

/// The database a tablet serves.
pub fn db_name_of(tablet: &topodata::Tablet) -> String {
    if tablet.db_name_override.is_empty() {
        format!("vt_{}", tablet.keyspace)
    } else {
        tablet.db_name_override.clone()
    }
}

/// Runs a tablet call under `limit`, turning a missed deadline into a typed error.
pub(crate) async fn bounded<T>(
    limit: Duration,
    addr: &TabletAddr,
    method: Method,
    call: impl Future<Output = Result<T, TabletError>>,
) -> Result<T, TabletError> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result,
        Err(_) => Err(TabletError::DeadlineExceeded {
            tablet: addr.clone(),
            method,
            timeout: limit,
            message: "vtmove's deadline for the call passed".to_string(),
        }),
    }
}

/// Reads everything the planner needs for `desired`. See the module docs.
pub async fn observe(
    topo: &TopoServer,
    tablets: &Arc<dyn TabletRpc>,
    desired: &Desired,
    options: &ObserveOptions,
    others: OtherWorkflows,
) -> Result<Observed, ObserveError> {
    let at = SystemTime::now();
    let mut cells = topo.list_cells().await?;
    cells.sort();
    let rollup = desired_srv_vschema_shared(topo).await?;
    let (routing_rules, srv_vschema_rollup) = (rollup.routing_rules, rollup.srv_vschema);
    // The routing view every pass resolves tables with, and how each cell differs from the
    // global records, shared like the records they are made of.
    let routing_view = topo.derived_shared("routing view", rollup.made_from.clone(), || {
        Ok::<_, TopoError>(RoutingView::new(
            Some(&routing_rules),
            &srv_vschema_rollup.keyspaces,
        ))
    })?;
    let rules_by_table = topo.derived_shared("rules by table", rollup.made_from.clone(), || {
        Ok::<_, TopoError>(RulesByTable::new(routing_rules.clone()))
    })?;
    let mut srv_vschemas = BTreeMap::new();
    let mut cell_differences = BTreeMap::new();
    for cell in &cells {
        let srv = match topo.get_srv_vschema_shared(cell).await {
            Ok(found) => {
                let mut made_from = rollup.made_from.clone();
                made_from.push(Some(found.version));
                let difference =
                    topo.derived_shared(&format!("difference of {cell}"), made_from, || {
                        Ok::<_, TopoError>(CellDifference::new(
                            found.value.clone(),
                            &srv_vschema_rollup,
                            &routing_rules,
                        ))
                    })?;
                cell_differences.insert(cell.clone(), difference);
                Some(found.value)
            }
            Err(TopoError::NoNode { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        srv_vschemas.insert(cell.clone(), srv);
    }
    let contact_source = !desired.lifecycle.ignores_source();
    let source = observe_keyspace(
        topo,
        tablets,
        desired,
        Side::Source,
        &cells,
        contact_source,
        options,
        others,
    )
    .await?;
    let target = observe_keyspace(
        topo,
        tablets,
        desired,
        Side::Target,
        &cells,
        true,
        options,
        others,
    )
    .await?;
    let locks = LocksHeld {
        named: lock_dir_held(topo, &rel::named_lock_dir(&desired.lock_name())).await?,
        source: lock_dir_held(topo, &rel::keyspace_dir(&desired.source_keyspace)).await?,
        target: lock_dir_held(topo, &rel::keyspace_dir(&desired.target_keyspace)).await?,
    };
    let mut observed = Observed {
        at,
        cells,
        routing_rules,
        srv_vschemas,
        srv_vschema_rollup,
        routing_view: Derived(Some(routing_view)),
        rules_by_table: Derived(Some(rules_by_table)),
        cell_differences: Derived(cell_differences),
        source,
        target,
        locks,
    };
    observe_schemas(tablets, desired, &mut observed, options).await;
    Ok(observed)
}

pub(crate) async fn lock_dir_held(topo: &TopoServer, dir: &str) -> Result<bool, TopoError> {
    let prefix = format!("{}/locks/", topo.key(dir));
    Ok(!topo.global_store().list(&prefix).await?.is_empty())
}

#[allow(clippy::too_many_arguments)]
async fn observe_keyspace(
    topo: &TopoServer,
    tablets: &Arc<dyn TabletRpc>,
    desired: &Desired,
    side: Side,
    cells: &[String],
    contact_tablets: bool,
    options: &ObserveOptions,
    others: OtherWorkflows,
) -> Result<KeyspaceState, TopoError> {
    let name = desired.keyspace(side);
    let record = match topo.get_keyspace(name).await {
        Ok(found) => found.value,
        Err(TopoError::NoNode { .. }) => return Ok(KeyspaceState::Missing),
        Err(e) => return Err(e),
    };
    let vschema = match topo.get_vschema_shared(name).await {
        Ok(found) => Some(found.value),
        Err(TopoError::NoNode { .. }) => None,
        Err(e) => return Err(e),
    };
    let sidecar_db = if record.sidecar_db_name.is_empty() {
        "_vt".to_string()
    } else {
        record.sidecar_db_name.clone()
    };
    let mut shards = Vec::new();
    for info in topo.list_shards(name).await? {
        let tablet_views =
            observe_shard_tablets(topo, tablets, name, &info, cells, contact_tablets, options)
                .await?;
        let primary_alias = info.shard.primary_alias.as_ref().map(tablet_alias_string);
        let primary = match (&primary_alias, contact_tablets) {
            (Some(alias), true) => match tablet_views.iter().find(|t| &t.alias == alias) {
                Some(view) => match &view.addr {
                    Some(addr) => Some(
                        observe_primary(
                            tablets,
                            desired,
                            side,
                            &sidecar_db,
                            alias,
                            addr,
                            &view.db_name,
                            options,
                            others,
                        )
                        .await,
                    ),
                    None => None,
                },
                None => None,
            },
            _ => None,
        };
        shards.push(ShardView {
            name: info.name,
            record: info.shard,
            version: info.version,
            tablets: tablet_views,
            primary,
        });
    }
    shards.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(KeyspaceState::Present(Box::new(KeyspaceView {
        name: name.to_string(),
        sidecar_db,
        vschema,
        shards,
        tablets_contacted: contact_tablets,
    })))
}

/// Every tablet of one shard: the Tablet records listed by each cell's `ShardReplication` (plus
/// the primary, which may be missing from it), sorted by alias, with `FullStatus` under the RPC
/// deadline when `contact_tablets` is set. Shared by the workflow engine and the Keyspace
/// controller so both read a shard's tablets the same way.
pub(crate) async fn observe_shard_tablets(
    topo: &TopoServer,
    tablets: &Arc<dyn TabletRpc>,
    name: &str,
    info: &ShardInfo,
    cells: &[String],
    contact_tablets: bool,
    options: &ObserveOptions,
) -> Result<Vec<TabletView>, TopoError> {
    let mut aliases: BTreeSet<String> = BTreeSet::new();
    let mut records = Vec::new();
    for cell in cells {
        let replication = topo.get_shard_replication(cell, name, &info.name).await?;
        for node in replication.value.nodes {
            let Some(alias) = node.tablet_alias else {
                continue;
            };
            let text = tablet_alias_string(&alias);
            if !aliases.insert(text.clone()) {
                continue;
            }
            match topo.get_tablet(&alias).await {
                Ok(found) => records.push((text, alias, found.value, found.version)),
                // A ShardReplication entry outliving its tablet: not a tablet.
                Err(TopoError::NoNode { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    // The primary may be missing from ShardReplication (it is written separately).
    if let Some(primary) = info.shard.primary_alias.clone() {
        let text = tablet_alias_string(&primary);
        if !aliases.contains(&text) {
            match topo.get_tablet(&primary).await {
                Ok(found) => records.push((text, primary, found.value, found.version)),
                Err(TopoError::NoNode { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    records.sort_by(|a, b| a.0.cmp(&b.0));
    let health = join_all(records.iter().map(|(_, _, tablet, _)| async {
        if !contact_tablets {
            return None;
        }
        let addr = TabletAddr::from_tablet(tablet).ok()?;
        Some(
            bounded(
                options.rpc_timeout,
                &addr,
                Method::FullStatus,
                tablets.health(&addr),
            )
            .await,
        )
    }))
    .await;
    let views: Vec<TabletView> = records
        .into_iter()
        .zip(health)
        .map(
            |((alias, tablet_alias, tablet, version), health)| TabletView {
                alias,
                tablet_alias,
                tablet_type: TabletType::try_from(tablet.r#type).unwrap_or(TabletType::Unknown),
                addr: TabletAddr::from_tablet(&tablet).ok(),
                record_version: version,
                db_name: db_name_of(&tablet),
                health,
            },
        )
        .collect();
    Ok(views)
}

#[allow(clippy::too_many_arguments)]
async fn observe_primary(
    tablets: &Arc<dyn TabletRpc>,
    desired: &Desired,
    side: Side,
    sidecar_db: &str,
    alias: &str,
    addr: &TabletAddr,
    db_name: &str,
    options: &ObserveOptions,
    others: OtherWorkflows,
) -> PrimaryView {
    let limit = options.rpc_timeout;
    let workflow = desired.workflow_into(side);
    let position = bounded(limit, addr, Method::PrimaryPosition, tablets.position(addr));
    let streams = bounded(
        limit,
        addr,
        Method::ReadVReplicationWorkflow,
        tablets.observe_workflow(addr, &workflow, sidecar_db),
    );
    let conflicts = async {
        match others {
            OtherWorkflows::Read => conflicting_workflows(tablets, desired, addr, limit).await,
            OtherWorkflows::Later => Ok(Vec::new()),
        }
    };
    let (position, streams, conflicts) = futures::join!(position, streams, conflicts);
    PrimaryView {
        alias: alias.to_string(),
        addr: addr.clone(),
        db_name: db_name.to_string(),
        position,
        streams,
        conflicts,
        schema: None,
    }
}

/// Whether an observation reads the other workflows on each primary. That read lists every
/// workflow on the tablet, so its cost grows with the number of workflows; a pass reads it
/// [`Later`](OtherWorkflows::Later), only when the plan without it is not converged (see
/// `Engine::pass_checked`), so every step and every blocker is still decided with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtherWorkflows {
    /// Read with the rest of the observation.
    Read,
    /// Left empty for now; [`read_other_workflows`] fills it in.
    Later,
}

/// Other workflows on the primary at `addr` whose streams carry one of the moved tables.
async fn conflicting_workflows(
    tablets: &Arc<dyn TabletRpc>,
    desired: &Desired,
    addr: &TabletAddr,
    limit: Duration,
) -> Result<Vec<WorkflowStreams>, TabletError> {
    let request = ReadVReplicationWorkflowsRequest {
        exclude_workflows: vec![desired.workflow.clone(), desired.reverse_workflow()],
        ..Default::default()
    };
    let others = bounded(
        limit,
        addr,
        Method::ReadVReplicationWorkflows,
        tablets.read_workflows(addr, request),
    )
    .await?;
    let tables: BTreeSet<&str> = desired.tables.iter().map(String::as_str).collect();
    Ok(others
        .into_iter()
        .filter(|w| {
            w.streams
                .iter()
                .any(|s| s.source.tables.iter().any(|t| tables.contains(t.as_str())))
        })
        .collect())
}

/// Fills in the other workflows on every observed primary of both sides, for an observation
/// made with [`OtherWorkflows::Later`].
pub async fn read_other_workflows(
    tablets: &Arc<dyn TabletRpc>,
    desired: &Desired,
    observed: &mut Observed,
    options: &ObserveOptions,
) {
    let primaries: Vec<&mut PrimaryView> = [&mut observed.source, &mut observed.target]
        .into_iter()
        .filter_map(|keyspace| match keyspace {
            KeyspaceState::Present(view) => Some(view),
            _ => None,
        })
        .flat_map(|view| view.shards.iter_mut().filter_map(|s| s.primary.as_mut()))
        .collect();
    let read = join_all(
        primaries
            .iter()
            .map(|p| conflicting_workflows(tablets, desired, &p.addr, options.rpc_timeout)),
    )
    .await;
    for (primary, conflicts) in primaries.into_iter().zip(read) {
        primary.conflicts = conflicts;
    }
}

/// Whether the moved tables' schema must be looked at: while the workflow is being created (no
/// routing rules of ours yet, or a target primary without its streams) or ended.
fn schema_needed(desired: &Desired, observed: &Observed) -> bool {
    if !matches!(desired.lifecycle, super::desired::DesiredLifecycle::Active) {
        return true;
    }
    let moved = desired.moved();
    let by_table = observed.rules_by_table();
    let rules_exist = moved.tables.iter().any(|t| {
        by_table.of_tables([t.as_str()]).iter().any(|rule| {
            let key = rule.from_table.split('@').next().unwrap_or("");
            key.split_once('.').is_none_or(|(keyspace, _)| {
                keyspace == moved.source.as_str() || keyspace == moved.target.as_str()
            })
        })
    });
    if !rules_exist {
        return true;
    }
    observed.target.view().is_some_and(|k| {
        k.shards.iter().any(|s| {
            s.primary
                .as_ref()
                .is_none_or(|p| !matches!(p.streams, Ok(Some(_))))
        })
    })
}

async fn observe_schemas(
    tablets: &Arc<dyn TabletRpc>,
    desired: &Desired,
    observed: &mut Observed,
    options: &ObserveOptions,
) {
    if !schema_needed(desired, observed) {
        return;
    }
    for side in Side::BOTH {
        let keyspace = match side {
            Side::Source => &mut observed.source,
            Side::Target => &mut observed.target,
        };
        let KeyspaceState::Present(view) = keyspace else {
            continue;
        };
        let primaries: Vec<&mut PrimaryView> = view
            .shards
            .iter_mut()
            .filter_map(|s| s.primary.as_mut())
            .collect();
        let results = join_all(primaries.iter().map(|p| {
            let request = GetSchemaRequest {
                tables: desired.tables.clone(),
                table_schema_only: true,
                ..Default::default()
            };
            bounded(
                options.rpc_timeout,
                &p.addr,
                Method::GetSchema,
                tablets.get_schema(&p.addr, request, Some(options.rpc_timeout)),
            )
        }))
        .await;
        for (primary, result) in primaries.into_iter().zip(results) {
            primary.schema = Some(result.map(|response| {
                response
                    .schema_definition
                    .map(|s| {
                        s.table_definitions
                            .into_iter()
                            .map(|t| t.name)
                            .filter(|t| desired.tables.contains(t))
                            .collect()
                    })
                    .unwrap_or_default()
            }));
        }
    }
}
