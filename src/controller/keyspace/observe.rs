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
//! Shard routing rules (partial MoveTables) and keyspace routing rules (multi-tenant MoveTables)
//! that name the keyspace are read too: they are the trace of workflows whose streams this
//! observation may not find, and the keyspaces they pair it with are read like peers.
//!
//! Nothing is decided here. A tablet that does not answer is kept as an observation; a primary
//! whose workflows cannot be read, and a shard whose primary cannot even be found (no primary
//! alias, no Tablet record, no gRPC address), is listed in [`KeyspaceObserved::workflows_unread`],
//! so the planner knows it cannot prove a finding unexplained and withholds repairs. What drift
//! Repair needs beyond that ([`WriterModel`]: which keyspaces hold the tables drift names) is read
//! by [`observe_writers`] only when there is something to repair, and [`recheck_topology`]
//! re-reads the topology records (and nothing from tablets) under the keyspace lock. Every call
//! has a deadline: the store's per-call deadline for the topology, the RPC timeout around each
//! tablet call, and [`KeyspaceTimeouts::observe`] around the whole observation.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;

use super::explained::{WorkflowOrigin, WorkflowRef};
use super::writers::WriterModel;
use crate::engine::observe::{
    ObserveOptions, TabletView, bounded, lock_dir_held, observe_shard_tablets,
};
use crate::vitess::proto::tabletmanagerdata::{GetSchemaRequest, ReadVReplicationWorkflowsRequest};
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
    /// Shard routing rules and keyspace routing rules that name this keyspace, described.
    pub other_routing: Vec<String>,
    /// VReplication workflows found on the primaries looked at.
    pub workflows: Vec<WorkflowRef>,
    /// What could not be read (`what: why`): primaries whose workflows did not answer, shards
    /// without a primary, primaries without a Tablet record or address. A finding cannot be
    /// proven unexplained while this is non-empty.
    pub workflows_unread: Vec<String>,
    /// What the single-writer rule of drift Repair needs; `None` until [`observe_writers`] ran.
    pub writers: Option<WriterModel>,
    /// Whether someone holds the keyspace lock right now.
    pub lock_held: bool,
    /// The keyspace's VSchema record with its version; `None` when it has none (or the keyspace
    /// does not exist).
    pub vschema: Option<(vschema::Keyspace, Version)>,
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
    let (routing_rules, other_routing, mut peers) = read_routing(topo, keyspace).await?;
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
    let vschema = if record.is_some() {
        read_vschema(topo, keyspace).await?
    } else {
        None
    };
    let mut shards = Vec::new();
    if record.is_some() {
        for info in topo.list_shards(keyspace).await? {
            let views =
                observe_shard_tablets(topo, tablets, keyspace, &info, &cells, true, &options)
                    .await?;
            shards.push(ObservedShard {
                name: info.name,
                record: Arc::unwrap_or_clone(info.shard),
                version: info.version,
                tablets: views,
            });
        }
        shards.sort_by(|a, b| a.name.cmp(&b.name));
    }
    let mut workflows = Vec::new();
    let mut workflows_unread = Vec::new();
    let mut own = Vec::new();
    for shard in &shards {
        match primary_of(keyspace, &shard.name, &shard.record, &shard.tablets) {
            Ok(primary) => own.push(primary),
            Err(unread) => workflows_unread.push(unread),
        }
    }
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
    peers.remove(keyspace);
    for peer in peers {
        let peer_primaries = match peer_primaries(topo, &peer, &mut workflows_unread).await {
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
        other_routing,
        cells: cell_states,
        workflows,
        workflows_unread,
        writers: None,
        lock_held,
        vschema,
    })
}

/// The keyspace's VSchema record and its version; `None` when there is none.
pub async fn read_vschema(
    topo: &TopoServer,
    keyspace: &str,
) -> Result<Option<(vschema::Keyspace, Version)>, TopoError> {
    match topo.get_vschema(keyspace).await {
        Ok(found) => Ok(Some((found.value, found.version))),
        Err(TopoError::NoNode { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The global table routing rules naming `keyspace`, the shard and keyspace routing rules naming
/// it (described), and every keyspace any of them names.
async fn read_routing(
    topo: &TopoServer,
    keyspace: &str,
) -> Result<(Vec<vschema::RoutingRule>, Vec<String>, BTreeSet<String>), TopoError> {
    let routing_rules: Vec<vschema::RoutingRule> = topo
        .get_routing_rules()
        .await?
        .value
        .rules
        .into_iter()
        .filter(|r| rule_mentions(r, keyspace))
        .collect();
    let mut peers: BTreeSet<String> = routing_rules.iter().flat_map(rule_keyspaces).collect();
    let mut other = Vec::new();
    for rule in topo.get_shard_routing_rules().await?.value.rules {
        if rule.from_keyspace == keyspace || rule.to_keyspace == keyspace {
            other.push(format!(
                "shard routing rule {}.{} -> {}",
                rule.from_keyspace, rule.shard, rule.to_keyspace
            ));
            peers.extend([rule.from_keyspace, rule.to_keyspace]);
        }
    }
    for rule in topo.get_keyspace_routing_rules().await?.value.rules {
        if rule.from_keyspace == keyspace || rule.to_keyspace == keyspace {
            other.push(format!(
                "keyspace routing rule {} -> {}",
                rule.from_keyspace, rule.to_keyspace
            ));
            peers.extend([rule.from_keyspace, rule.to_keyspace]);
        }
    }
    Ok((routing_rules, other, peers))
}

/// Re-reads, under the keyspace lock, the topology records a repair decision rests on — the
/// keyspace's shard records, the three kinds of routing rules, and the writer model's rules,
/// VSchemas and shard records — keeping what was read from tablets before the lock (tablets,
/// workflows, which keyspaces hold the tables). No tablet is called.
pub async fn recheck_topology(
    topo: &TopoServer,
    observed: &KeyspaceObserved,
) -> Result<KeyspaceObserved, TopoError> {
    let keyspace = observed.keyspace.as_str();
    let mut fresh = observed.clone();
    let (routing_rules, other_routing, _) = read_routing(topo, keyspace).await?;
    fresh.routing_rules = routing_rules;
    fresh.other_routing = other_routing;
    let records = match topo.list_shards(keyspace).await {
        Ok(found) => found,
        Err(TopoError::NoNode { .. }) => Vec::new(),
        Err(e) => return Err(e),
    };
    let mut shards = Vec::new();
    for info in records {
        let tablets = observed
            .shards
            .iter()
            .find(|s| s.name == info.name)
            .map(|s| s.tablets.clone());
        match tablets {
            Some(tablets) => shards.push(ObservedShard {
                name: info.name,
                record: Arc::unwrap_or_clone(info.shard),
                version: info.version,
                tablets,
            }),
            // A shard that appeared since: nothing of it was read.
            None => fresh.workflows_unread.push(format!(
                "shard {keyspace}/{} (created meanwhile)",
                info.name
            )),
        }
    }
    fresh.shards = shards;
    if let Some(model) = &mut fresh.writers {
        let (vschemas, shards) = read_keyspaces(topo).await?;
        model.routing_rules = topo.get_routing_rules().await?.value;
        model.vschemas = vschemas;
        model.shards = shard_records(shards);
    }
    Ok(fresh)
}

/// The shard records of each keyspace, out of their listing.
fn shard_records(
    shards: BTreeMap<String, Vec<crate::vitess::topo::ShardInfo>>,
) -> BTreeMap<String, Vec<Shard>> {
    shards
        .into_iter()
        .map(|(ks, infos)| {
            let records = infos
                .into_iter()
                .map(|i| Arc::unwrap_or_clone(i.shard))
                .collect();
            (ks, records)
        })
        .collect()
}

/// Every keyspace's VSchema (default when it has none) and shard records.
async fn read_keyspaces(
    topo: &TopoServer,
) -> Result<
    (
        BTreeMap<String, vschema::Keyspace>,
        BTreeMap<String, Vec<crate::vitess::topo::ShardInfo>>,
    ),
    TopoError,
> {
    let mut vschemas = BTreeMap::new();
    let mut shards = BTreeMap::new();
    for ks in topo.list_keyspaces().await? {
        let vschema = match topo.get_vschema(&ks).await {
            Ok(found) => found.value,
            Err(TopoError::NoNode { .. }) => vschema::Keyspace::default(),
            Err(e) => return Err(e),
        };
        let infos = match topo.list_shards(&ks).await {
            Ok(found) => found,
            Err(TopoError::NoNode { .. }) => Vec::new(),
            Err(e) => return Err(e),
        };
        vschemas.insert(ks.clone(), vschema);
        shards.insert(ks, infos);
    }
    Ok((vschemas, shards))
}

/// Reads what the single-writer rule needs about `tables` (see [`WriterModel`]): the routing
/// rules, every keyspace's VSchema and shard records, and which keyspaces hold each table — from
/// their VSchemas and from `GetSchema` on every primary. A primary that cannot be found or does
/// not answer leaves the tables unknown in its keyspace.
pub async fn observe_writers(
    topo: &TopoServer,
    tablets: &Arc<dyn TabletRpc>,
    tables: &BTreeSet<String>,
    timeouts: &KeyspaceTimeouts,
) -> Result<WriterModel, TopoError> {
    let read = async {
        let routing_rules = topo.get_routing_rules().await?.value;
        let (vschemas, shards) = read_keyspaces(topo).await?;
        let mut model = WriterModel {
            tables: tables.clone(),
            routing_rules,
            ..WriterModel::default()
        };
        for (ks, vschema) in &vschemas {
            for table in tables {
                if vschema.tables.contains_key(table) {
                    model
                        .holders
                        .entry(table.clone())
                        .or_default()
                        .insert(ks.clone());
                }
            }
        }
        let request = GetSchemaRequest {
            tables: tables.iter().cloned().collect(),
            table_schema_only: true,
            ..Default::default()
        };
        for (ks, infos) in &shards {
            let mut unread = Vec::new();
            let primaries = primaries_of(topo, ks, infos, &mut unread).await?;
            let answers = join_all(primaries.iter().map(|(_, addr)| {
                bounded(
                    timeouts.rpc,
                    addr,
                    Method::GetSchema,
                    tablets.get_schema(addr, request.clone(), Some(timeouts.rpc)),
                )
            }))
            .await;
            for ((alias, _), answer) in primaries.iter().zip(answers) {
                match answer {
                    Ok(response) => {
                        let found = response
                            .schema_definition
                            .map(|s| s.table_definitions)
                            .unwrap_or_default();
                        for t in found.into_iter().filter(|t| tables.contains(&t.name)) {
                            model.holders.entry(t.name).or_default().insert(ks.clone());
                        }
                    }
                    Err(e) => unread.push(format!("{alias}: {e}")),
                }
            }
            if !unread.is_empty() {
                for table in tables {
                    model
                        .unknown
                        .entry(table.clone())
                        .or_default()
                        .insert(ks.clone(), unread.join("; "));
                }
            }
        }
        model.vschemas = vschemas;
        model.shards = shard_records(shards);
        Ok(model)
    };
    match tokio::time::timeout(timeouts.observe, read).await {
        Ok(result) => result,
        Err(_) => Err(TopoError::Timeout {
            op: OBSERVE_OP,
            key: topo.key("keyspaces"),
        }),
    }
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
    if !crate::vitess::srv_vschema::srv_vschema_is_stale(Some(current), desired) {
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

/// The primary's alias and address, or what is missing to reach it.
fn primary_of(
    keyspace: &str,
    shard: &str,
    record: &Shard,
    tablets: &[TabletView],
) -> Result<(String, TabletAddr), String> {
    let Some(alias) = record
        .primary_alias
        .as_ref()
        .map(crate::vitess::topo::tablet_alias_string)
    else {
        return Err(format!("shard {keyspace}/{shard}: no primary"));
    };
    let Some(view) = tablets.iter().find(|t| t.alias == alias) else {
        return Err(format!(
            "shard {keyspace}/{shard}: primary {alias} has no Tablet record"
        ));
    };
    match &view.addr {
        Some(addr) => Ok((alias, addr.clone())),
        None => Err(format!(
            "shard {keyspace}/{shard}: primary {alias} has no gRPC address"
        )),
    }
}

/// The primaries of another keyspace, from its Shard and Tablet records (no health check); a
/// shard whose primary cannot be found goes to `unread`.
async fn peer_primaries(
    topo: &TopoServer,
    keyspace: &str,
    unread: &mut Vec<String>,
) -> Result<Vec<(String, TabletAddr)>, TopoError> {
    let shards = match topo.list_shards(keyspace).await {
        Ok(shards) => shards,
        Err(TopoError::NoNode { .. }) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    primaries_of(topo, keyspace, &shards, unread).await
}

/// The primaries of `shards` of `keyspace` from their Tablet records; a shard whose primary
/// cannot be found (no alias, no Tablet record, no gRPC address) goes to `unread`.
async fn primaries_of(
    topo: &TopoServer,
    keyspace: &str,
    shards: &[crate::vitess::topo::ShardInfo],
    unread: &mut Vec<String>,
) -> Result<Vec<(String, TabletAddr)>, TopoError> {
    let mut out = Vec::new();
    for info in shards {
        let Some(alias) = &info.shard.primary_alias else {
            unread.push(format!("shard {keyspace}/{}: no primary", info.name));
            continue;
        };
        let text = crate::vitess::topo::tablet_alias_string(alias);
        match topo.get_tablet(alias).await {
            Ok(found) => match TabletAddr::from_tablet(&found.value) {
                Ok(addr) => out.push((text, addr)),
                Err(e) => unread.push(format!(
                    "shard {keyspace}/{}: primary {text} has no usable address ({e})",
                    info.name
                )),
            },
            Err(TopoError::NoNode { .. }) => unread.push(format!(
                "shard {keyspace}/{}: primary {text} has no Tablet record",
                info.name
            )),
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
