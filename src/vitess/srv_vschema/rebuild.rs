//! Rebuilding each cell's `SrvVSchema`: the thin I/O shell around the pure
//! [`build_srv_vschema`](super::build_srv_vschema).
//!
//! vtgate routes from its cell's `SrvVSchema`, not from the global records, so a routing change
//! only takes effect once the cells are rebuilt (Vitess's `RebuildVSchemaGraph`). The rollup holds
//! every keyspace's VSchema (a keyspace without one contributes an empty VSchema, as in Vitess)
//! plus the table, shard, keyspace and mirror rules, passed through as stored.
//!
//! A cell is written only when its current `SrvVSchema` is missing or not equivalent to the
//! desired one, so a converged rebuild writes nothing (invariant I5). Writes are versioned: when
//! another writer (vtctld, another rebuild) changed the cell in between, the cell is re-read and
//! compared again.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::build::{build_srv_vschema, srv_vschema_is_stale};
use crate::vitess::proto::vschema::{self, SrvVSchema};
use crate::vitess::topo::{Result, TopoError, TopoServer, Version};

/// How many times one cell is re-read after losing a write race before giving up.
const MAX_CELL_ATTEMPTS: u32 = 10;

/// What a rebuild did, cell by cell.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RebuildReport {
    /// Cells whose `SrvVSchema` was written.
    pub written: Vec<String>,
    /// Cells that already had an equivalent `SrvVSchema` (nothing written).
    pub unchanged: Vec<String>,
}

impl RebuildReport {
    /// Whether the rebuild wrote anything.
    pub fn wrote_anything(&self) -> bool {
        !self.written.is_empty()
    }
}

/// Reads the global inputs of a rebuild (every keyspace VSchema and the four rule sets) and
/// returns the `SrvVSchema` every cell should serve.
pub async fn desired_srv_vschema(topo: &TopoServer) -> Result<SrvVSchema> {
    let mut vschemas: BTreeMap<String, vschema::Keyspace> = BTreeMap::new();
    for keyspace in topo.list_keyspaces().await? {
        let vschema = match topo.get_vschema(&keyspace).await {
            Ok(found) => found.value,
            Err(TopoError::NoNode { .. }) => vschema::Keyspace::default(),
            Err(err) => return Err(err),
        };
        vschemas.insert(keyspace, vschema);
    }
    let routing_rules = topo.get_routing_rules().await?.value;
    let shard_routing_rules = topo.get_shard_routing_rules().await?.value;
    // Vitess reads a missing keyspace-routing-rules key as nil, not as an empty message.
    let keyspace_routing_rules = topo.get_keyspace_routing_rules().await?;
    let keyspace_routing_rules = keyspace_routing_rules
        .version
        .map(|_| &keyspace_routing_rules.value);
    let mirror_rules = topo.get_mirror_rules().await?.value;
    Ok(build_srv_vschema(
        &vschemas,
        Some(&routing_rules),
        Some(&shard_routing_rules),
        keyspace_routing_rules,
        Some(&mirror_rules),
    ))
}

/// [`desired_srv_vschema`] for observation: made from the shared decoded records and shared
/// itself while none of them changes, so every pass between the same two writes gets one copy
/// (`docs/design/topology.md`, "The watch cache").
pub async fn desired_srv_vschema_shared(topo: &TopoServer) -> Result<SharedRollup> {
    let keyspaces = topo.list_keyspaces().await?;
    let mut vschemas = Vec::with_capacity(keyspaces.len());
    let mut inputs = Vec::with_capacity(keyspaces.len() + 4);
    for keyspace in &keyspaces {
        let (version, vschema) = match topo.get_vschema_shared(keyspace).await {
            Ok(found) => (Some(found.version), found.value),
            Err(TopoError::NoNode { .. }) => (None, Arc::default()),
            Err(err) => return Err(err),
        };
        inputs.push(version);
        vschemas.push(vschema);
    }
    let routing_rules = topo.get_routing_rules_shared().await?;
    let shard_routing_rules = topo.get_shard_routing_rules().await?;
    let keyspace_routing_rules = topo.get_keyspace_routing_rules().await?;
    let mirror_rules = topo.get_mirror_rules().await?;
    inputs.extend([
        routing_rules.version,
        shard_routing_rules.version,
        keyspace_routing_rules.version,
        mirror_rules.version,
    ]);
    let rollup = topo.derived_shared(
        &format!("desired SrvVSchema of {}", keyspaces.join(",")),
        inputs.clone(),
        || {
            let vschemas: BTreeMap<String, vschema::Keyspace> = keyspaces
                .iter()
                .cloned()
                .zip(vschemas.iter().map(|v| v.as_ref().clone()))
                .collect();
            Ok(build_srv_vschema(
                &vschemas,
                Some(routing_rules.value.as_ref()),
                Some(&shard_routing_rules.value),
                // Vitess reads a missing keyspace-routing-rules key as nil, not as empty.
                keyspace_routing_rules
                    .version
                    .map(|_| &keyspace_routing_rules.value),
                Some(&mirror_rules.value),
            ))
        },
    )?;
    Ok(SharedRollup {
        srv_vschema: rollup,
        routing_rules: routing_rules.value,
        made_from: inputs,
    })
}

/// What [`desired_srv_vschema_shared`] read and made.
#[derive(Debug)]
pub struct SharedRollup {
    /// The SrvVSchema the global records call for.
    pub srv_vschema: Arc<SrvVSchema>,
    /// The global RoutingRules it was made with (so a pass reads them once).
    pub routing_rules: Arc<vschema::RoutingRules>,
    /// The versions it was made from, in a fixed order: what else derives from the same
    /// records can be keyed by them.
    pub made_from: Vec<Option<Version>>,
}

/// Writes `desired` to `cell` when the cell's current `SrvVSchema` is missing or differs.
/// Returns whether it wrote.
pub async fn write_srv_vschema_if_stale(
    topo: &TopoServer,
    cell: &str,
    desired: &SrvVSchema,
) -> Result<bool> {
    for _ in 0..MAX_CELL_ATTEMPTS {
        let (current, version) = match topo.get_srv_vschema(cell).await {
            Ok(found) => (Some(found.value), Some(found.version)),
            Err(TopoError::NoNode { .. }) => (None, None),
            Err(err) => return Err(err),
        };
        if !srv_vschema_is_stale(current.as_ref(), desired) {
            return Ok(false);
        }
        let written = match version {
            Some(version) => topo.update_srv_vschema(cell, desired, Some(version)).await,
            // Absent: create it, so a concurrent creator makes us re-read instead of overwrite.
            None => topo.create_srv_vschema(cell, desired).await,
        };
        match written {
            Ok(_) => return Ok(true),
            Err(
                TopoError::BadVersion { .. }
                | TopoError::NodeExists { .. }
                | TopoError::NoNode { .. },
            ) => {
                continue;
            }
            Err(err) => return Err(err),
        }
    }
    Err(TopoError::BadVersion {
        key: format!(
            "SrvVSchema of cell {cell} (still changing after {MAX_CELL_ATTEMPTS} attempts)"
        ),
    })
}

/// Writes `cell`'s `SrvVSchema` again, unchanged, so that every vtgate of the cell takes it as
/// a newer one (vtgate rebuilds its VSchema and drops its cached plans on every update, equal
/// or not). Two reasons to do so:
///
/// - vtgate holds a write refused for denied tables until its SrvVSchema changes (or a
///   timeout: 30 s without buffering), then plans it again. When writes are allowed again
///   where the routing already points (a rolled-back cutover), no routing change comes to wake
///   those writes; this does.
/// - A plan vtgate was building from the old routing while it took a new SrvVSchema can be
///   cached as if built from the new one, and is used until the next SrvVSchema: writes keep
///   going to the side that now denies them. A second publication once the switch is taken
///   drops such a plan.
///
/// Returns whether it wrote: a cell without a `SrvVSchema`, or one that another writer changed
/// meanwhile (which serves as well), is left alone.
pub async fn republish_srv_vschema(topo: &TopoServer, cell: &str) -> Result<bool> {
    let current = match topo.get_srv_vschema(cell).await {
        Ok(found) => found,
        Err(TopoError::NoNode { .. }) => return Ok(false),
        Err(err) => return Err(err),
    };
    match topo
        .update_srv_vschema(cell, &current.value, Some(current.version))
        .await
    {
        Ok(_) => Ok(true),
        Err(TopoError::BadVersion { .. } | TopoError::NoNode { .. }) => Ok(false),
        Err(err) => Err(err),
    }
}

/// Rebuilds the `SrvVSchema` of `cells` (every cell of the topology when empty) from the global
/// records, writing only the cells that are stale.
pub async fn rebuild_srv_vschema(topo: &TopoServer, cells: &[String]) -> Result<RebuildReport> {
    let cells = if cells.is_empty() {
        topo.list_cells().await?
    } else {
        cells.to_vec()
    };
    let desired = desired_srv_vschema(topo).await?;
    let mut report = RebuildReport::default();
    for cell in cells {
        if write_srv_vschema_if_stale(topo, &cell, &desired).await? {
            report.written.push(cell);
        } else {
            report.unchanged.push(cell);
        }
    }
    Ok(report)
}
