//! `observe`: the keyspace's picture, read fresh on every pass.
//!
//! From the global topology: the Keyspace record, every Shard record (key range, primary,
//! tablet controls = denied tables), the routing rules that name this keyspace, and whether the
//! keyspace lock is held. From each cell: the tablets of every shard (the same way the workflow
//! engine reads them, [`observe_shard_tablets`]) and whether the cell's `SrvVSchema` is what a
//! rebuild would write. From tablets: `FullStatus` of every tablet, and the VReplication
//! workflows on this keyspace's primaries and on the primaries of every keyspace a routing rule
//! pairs it with, so a workflow started with vtctldclient explains its own denied tables and
//! rules wherever its streams live.
//!
//! Nothing is decided here. A tablet that does not answer is kept as an observation; a primary
//! whose workflows cannot be read is listed in [`KeyspaceObserved::workflows_unread`], so the
//! planner knows it cannot prove a finding unexplained and withholds repairs. Every call has a
//! deadline: the store's per-call deadline for the topology, the RPC timeout around each tablet
//! call, and [`KeyspaceTimeouts::observe`] around the whole observation.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;

use super::explained::{WorkflowOrigin, WorkflowRef};
use crate::engine::observe::{
    ObserveOptions, TabletView, bounded, lock_dir_held, observe_shard_tablets,
};
use crate::vitess::proto::tabletmanagerdata::ReadVReplicationWorkflowsRequest;
use crate::vitess::proto::topodata::{self, Shard};
use crate::vitess::proto::vschema::{self, SrvVSchema};
use crate::vitess::srv_vschema::desired_srv_vschema;
use crate::vitess::tablet::{Method, TabletAddr, TabletRpc};
use crate::vitess::topo::path::rel;
use crate::vitess::topo::routing_rules::rule_keyspace;
use crate::vitess::topo::{TopoError, TopoServer, Version};

/// The `op` of the Timeout an observation that overran its deadline fails with.
pub const OBSERVE_OP: &str = "observe keyspace";

/// Deadlines of one keyspace pass.
#[derive(Clone, Debug)]
pub struct KeyspaceTimeouts {
    /// Upper bound on every tablet call (FullStatus, ReadVReplicationWorkflows, RefreshState).
    pub rpc: Duration,
    /// Upper bound on the whole observation.
    pub observe: Duration,
}

impl Default for KeyspaceTimeouts {
    fn default() -> Self {
        KeyspaceTimeouts {
            rpc: Duration::from_secs(10),
            observe: Duration::from_secs(60),
        }
    }
}

/// Everything a keyspace pass plans from.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyspaceObserved {
    /// The keyspace name.
    pub keyspace: String,
    /// The Keyspace record; `None` when the keyspace does not exist.
    pub record: Option<topodata::Keyspace>,
    /// Shard records with their tablets, sorted by name.
    pub shards: Vec<ObservedShard>,
    /// The global routing rules that name this keyspace (in `from_table` or a target).
    pub routing_rules: Vec<vschema::RoutingRule>,
    /// Each cell's SrvVSchema compared with what a rebuild would write.
    pub cells: BTreeMap<String, CellSrvVSchema>,
    /// VReplication workflows found on the primaries looked at.
    pub workflows: Vec<WorkflowRef>,
    /// Primaries whose workflows could not be read (`alias: why`): a finding cannot be proven
    /// unexplained while this is non-empty.
    pub workflows_unread: Vec<String>,
    /// Whether someone holds the keyspace lock right now.
    pub lock_held: bool,
}

/// One shard: its record and tablets.
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedShard {
    /// The shard name.
    pub name: String,
    /// The Shard record.
    pub record: Shard,
    /// Its version.
    pub version: Version,
    /// Its tablets, sorted by alias.
    pub tablets: Vec<TabletView>,
}

/// How a cell's SrvVSchema compares with a rebuild from the global records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CellSrvVSchema {
    /// Equivalent: nothing to rebuild.
    Current,
    /// The cell has no SrvVSchema.
    Missing,
    /// Different. `rules_differ` says whether the routing rules differ (as opposed to only the
    /// keyspace VSchemas or other rule sets), which a cell-scoped read switch does on purpose.
    Stale {
        /// The routing rules differ.
        rules_differ: bool,
    },
}

/// Reads the keyspace's picture. See the module docs.
pub async fn observe_keyspace(
    topo: &TopoServer,
    tablets: &Arc<dyn TabletRpc>,
    keyspace: &str,
    timeouts: &KeyspaceTimeouts,
) -> Result<KeyspaceObserved, TopoError> {
    match tokio::time::timeout(
        timeouts.observe,
        observe_inner(topo, tablets, keyspace, timeouts),
    )
    .await
    {
        Ok(result) => result,
        Err(_) => Err(TopoError::Timeout {
            op: OBSERVE_OP,
            key: topo.key(&rel::keyspace_dir(keyspace)),
        }),
    }
}

async fn observe_inner(
    topo: &TopoServer,
    tablets: &Arc<dyn TabletRpc>,
    keyspace: &str,
    timeouts: &KeyspaceTimeouts,
) -> Result<KeyspaceObserved, TopoError> {
    let options = ObserveOptions {
        rpc_timeout: timeouts.rpc,
    };
    let mut cells = topo.list_cells().await?;
    cells.sort();
    let all_rules = topo.get_routing_rules().await?.value;
    let routing_rules: Vec<vschema::RoutingRule> = all_rules
        .rules
        .into_iter()
        .filter(|r| rule_mentions(r, keyspace))
        .collect();
    let rollup = desired_srv_vschema(topo).await?;
    let mut cell_states = BTreeMap::new();
    for cell in &cells {
        let state = match topo.get_srv_vschema(cell).await {
            Ok(found) => compare_cell(&found.value, &rollup),
            Err(TopoError::NoNode { .. }) => CellSrvVSchema::Missing,
            Err(e) => return Err(e),
        };
        cell_states.insert(cell.clone(), state);
    }
    let record = match topo.get_keyspace(keyspace).await {
        Ok(found) => Some(found.value),
        Err(TopoError::NoNode { .. }) => None,
        Err(e) => return Err(e),
    };
    let mut shards = Vec::new();
    if record.is_some() {
        for info in topo.list_shards(keyspace).await? {
            let views =
                observe_shard_tablets(topo, tablets, keyspace, &info, &cells, true, &options)
                    .await?;
            shards.push(ObservedShard {
                name: info.name,
                record: info.shard,
                version: info.version,
                tablets: views,
            });
        }
        shards.sort_by(|a, b| a.name.cmp(&b.name));
    }
    let mut workflows = Vec::new();
    let mut workflows_unread = Vec::new();
    let own = shards
        .iter()
        .filter_map(|s| primary_of(&s.record, &s.tablets))
        .collect::<Vec<_>>();
    read_workflows(
        tablets,
        &own,
        keyspace,
        timeouts.rpc,
        &mut workflows,
        &mut workflows_unread,
    )
    .await;
    // Peers: every other keyspace a rule naming this one also names. Their primaries hold the
    // streams of workflows that move tables out of this keyspace.
    let peers: BTreeSet<String> = routing_rules
        .iter()
        .flat_map(rule_keyspaces)
        .filter(|k| k != keyspace)
        .collect();
    for peer in peers {
        let peer_primaries = match peer_primaries(topo, &peer).await {
            Ok(found) => found,
            Err(e) => {
                workflows_unread.push(format!("keyspace {peer}: {e}"));
                continue;
            }
        };
        read_workflows(
            tablets,
            &peer_primaries,
            &peer,
            timeouts.rpc,
            &mut workflows,
            &mut workflows_unread,
        )
        .await;
    }
    workflows.sort();
    workflows.dedup();
    let lock_held = lock_dir_held(topo, &rel::keyspace_dir(keyspace)).await?;
    Ok(KeyspaceObserved {
        keyspace: keyspace.to_string(),
        record,
        shards,
        routing_rules,
        cells: cell_states,
        workflows,
        workflows_unread,
        lock_held,
    })
}

/// Whether a rule names `keyspace` in its key or one of its targets.
pub fn rule_mentions(rule: &vschema::RoutingRule, keyspace: &str) -> bool {
    rule_keyspaces(rule).any(|k| k == keyspace)
}

fn rule_keyspaces(rule: &vschema::RoutingRule) -> impl Iterator<Item = String> + '_ {
    std::iter::once(rule.from_table.as_str())
        .chain(rule.to_tables.iter().map(String::as_str))
        .filter_map(rule_keyspace)
        .map(str::to_string)
}

pub(crate) fn compare_cell(current: &SrvVSchema, desired: &SrvVSchema) -> CellSrvVSchema {
    if !crate::vitess::routing::srv_vschema_is_stale(Some(current), desired) {
        return CellSrvVSchema::Current;
    }
    let sorted = |srv: &SrvVSchema| {
        let mut rules: Vec<(String, Vec<String>)> = srv
            .routing_rules
            .iter()
            .flat_map(|r| &r.rules)
            .map(|r| (r.from_table.clone(), r.to_tables.clone()))
            .collect();
        rules.sort();
        rules
    };
    CellSrvVSchema::Stale {
        rules_differ: sorted(current) != sorted(desired),
    }
}

/// The primary's alias and address, when the shard has one with a usable Tablet record.
fn primary_of(record: &Shard, tablets: &[TabletView]) -> Option<(String, TabletAddr)> {
    let alias = record
        .primary_alias
        .as_ref()
        .map(crate::vitess::topo::tablet_alias_string)?;
    let view = tablets.iter().find(|t| t.alias == alias)?;
    Some((alias, view.addr.clone()?))
}

/// The primaries of another keyspace, from its Shard and Tablet records (no health check).
async fn peer_primaries(
    topo: &TopoServer,
    keyspace: &str,
) -> Result<Vec<(String, TabletAddr)>, TopoError> {
    let mut out = Vec::new();
    let shards = match topo.list_shards(keyspace).await {
        Ok(shards) => shards,
        Err(TopoError::NoNode { .. }) => return Ok(out),
        Err(e) => return Err(e),
    };
    for info in shards {
        let Some(alias) = info.shard.primary_alias else {
            continue;
        };
        match topo.get_tablet(&alias).await {
            Ok(found) => {
                if let Ok(addr) = TabletAddr::from_tablet(&found.value) {
                    out.push((crate::vitess::topo::tablet_alias_string(&alias), addr));
                }
            }
            Err(TopoError::NoNode { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Reads the VReplication workflows of `primaries` (tablets of `keyspace`, the workflows'
/// target) into `out`; a primary that does not answer goes to `unread`.
pub(crate) async fn read_workflows(
    tablets: &Arc<dyn TabletRpc>,
    primaries: &[(String, TabletAddr)],
    keyspace: &str,
    limit: Duration,
    out: &mut Vec<WorkflowRef>,
    unread: &mut Vec<String>,
) {
    let answers = join_all(primaries.iter().map(|(_, addr)| {
        bounded(
            limit,
            addr,
            Method::ReadVReplicationWorkflows,
            tablets.read_workflows(addr, ReadVReplicationWorkflowsRequest::default()),
        )
    }))
    .await;
    for ((alias, _), answer) in primaries.iter().zip(answers) {
        match answer {
            Ok(found) => {
                for wf in found {
                    let mut by_source: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
                    for stream in &wf.streams {
                        by_source
                            .entry(stream.source.keyspace.as_str())
                            .or_default()
                            .extend(stream.source.tables.iter().map(String::as_str));
                    }
                    for (source, tables) in by_source {
                        out.push(WorkflowRef {
                            name: wf.workflow.clone(),
                            source: source.to_string(),
                            target: keyspace.to_string(),
                            tables: tables.into_iter().map(str::to_string).collect(),
                            cell_scoped: false,
                            origin: WorkflowOrigin::Tablet,
                        });
                    }
                }
            }
            Err(e) => unread.push(format!("{alias}: {e}")),
        }
    }
}
