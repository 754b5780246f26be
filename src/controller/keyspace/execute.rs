//! `execute`: carries out a [`KeyspacePlan`] against the topology and the tablets.
//!
//! * Creates are idempotent: NodeExists is success (another pass, or a person, was first).
//! * Drift repairs run only under the keyspace locks the decision rests on — the keyspace's, the
//!   lock of every other keyspace a repaired rule names, and that of every keyspace holding a
//!   repaired table (its denials are part of the single-writer rule) — taken in keyspace-name
//!   order (`docs/locking.md`), with the guards passed to the writing functions (I3). Everything
//!   tablets are asked happens before the locks: under them, the topology records the decision
//!   rests on are read again ([`recheck_topology`]) and planned again, only the repairs both plans
//!   agree on are written, and the locks are released. Tablets of shards whose denied tables
//!   changed are refreshed (RefreshState) after that.
//! * `spec.vschema` is written under the keyspace's own lock only if the VSchema record is still
//!   what the plan saw (absent, or at the observed version: re-read under the lock), the lock held
//!   for that re-read and the write only; then every cell's SrvVSchema is rebuilt, and a cell the
//!   rebuild skips (its routing rules differ on purpose) gets the keyspace's entry surgically.
//! * A repaired routing rule is also removed from each cell's SrvVSchema copy, surgically, so it
//!   stops steering vtgates without spreading any other (possibly cell-scoped) difference.
//! * Deletion re-checks under the keyspace lock everything its decision rests on (shards, the
//!   tablets registered in every cell, routing rules of every kind), then removes the keyspace
//!   from every cell (SrvKeyspace, each ShardReplication, its SrvVSchema entry) before the global
//!   records, so a deletion interrupted half-way still knows what to finish; a keyspace already
//!   gone has its cells swept.

use std::collections::BTreeSet;

use super::KeyspaceDeps;
use super::error::{KeyspaceError, lock_error};
use super::explained::Explained;
use super::observe::{CellSrvVSchema, KeyspaceObserved, read_vschema, recheck_topology};
use super::plan::{Deletion, KeyspacePlan, PlanOptions, Repair, VSchemaWrite, plan, routes_to};
use crate::api::keyspace::KeyspaceSpec;
use crate::engine::observe::bounded;
use crate::vitess::proto::topodata::TabletType;
use crate::vitess::proto::vschema::SrvVSchema;
use crate::vitess::srv_vschema::{desired_srv_vschema, write_srv_vschema_if_stale};
use crate::vitess::tablet::Method;
use crate::vitess::topo::path::rel;
use crate::vitess::topo::routing_rules::rule_keyspace;
use crate::vitess::topo::{
    Change, DeniedTablesOp, Expected, FencedWrite, KeyspaceLock, TopoError, TopoServer,
};

/// What one execution did, for Events and the report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Executed {
    /// The keyspace record was created.
    pub keyspace_created: bool,
    /// Shards created.
    pub shards_created: Vec<String>,
    /// Repairs made.
    pub repaired: Vec<Repair>,
    /// Repairs planned but dropped after the re-check under the lock (no longer drift).
    pub dropped: Vec<Repair>,
    /// The keyspace VSchema was written: with what it restored (`driftPolicy: Repair`), empty
    /// when the whole declaration was written (creation, adoption).
    pub vschema_written: Option<Vec<String>>,
    /// Cells whose SrvVSchema was written.
    pub cells_rebuilt: Vec<String>,
    /// Tablets that did not acknowledge RefreshState (`alias: error`).
    pub refresh_failures: Vec<String>,
    /// The keyspace was deleted.
    pub deleted: bool,
    /// Topology writes made (creates, updates, deletes).
    pub writes: u64,
}

const LOCK_ACTION: &str = "vtmove Keyspace controller";

/// Executes `planned`. `spec`, `observed`, `explained` and `options` are those the plan was made
/// from; they are needed to re-plan under the lock.
pub async fn execute(
    deps: &KeyspaceDeps,
    spec: &KeyspaceSpec,
    observed: &KeyspaceObserved,
    explained: &Explained,
    options: &PlanOptions,
    planned: &KeyspacePlan,
) -> Result<Executed, KeyspaceError> {
    let ks = planned.keyspace.as_str();
    let topo = deps.topo.as_ref();
    let mut done = Executed::default();
    if let Some(record) = &planned.create_keyspace {
        match topo.create_keyspace(ks, record).await {
            Ok(_) => {
                done.keyspace_created = true;
                done.writes += 1;
            }
            Err(TopoError::NodeExists { .. }) => {}
            Err(source) => {
                return Err(KeyspaceError::Create {
                    keyspace: ks.to_string(),
                    what: "the keyspace record".to_string(),
                    source,
                });
            }
        }
    }
    if !planned.create_shards.is_empty() {
        let guard = topo
            .lock_keyspace(ks, LOCK_ACTION)
            .await
            .map_err(|e| lock_error(ks, "creating shards", e))?;
        let result = async {
            for shard in &planned.create_shards {
                match topo
                    .create_shard(&guard, ks, &shard.name, &shard.record)
                    .await
                {
                    Ok(_) => {
                        done.shards_created.push(shard.name.clone());
                        done.writes += 1;
                    }
                    Err(TopoError::NodeExists { .. }) => {}
                    Err(source) => {
                        return Err(KeyspaceError::Create {
                            keyspace: ks.to_string(),
                            what: format!("shard {}", shard.name),
                            source,
                        });
                    }
                }
            }
            Ok(())
        }
        .await;
        unlock(guard).await;
        result?;
    }
    if !planned.repairs.is_empty() {
        repair(deps, spec, observed, explained, options, planned, &mut done).await?;
    }
    if let Some(write) = &planned.vschema_write {
        write_vschema(topo, ks, write, &mut done).await?;
    }
    if done.vschema_written.is_some() {
        // Every cell serves the keyspace's VSchema from its SrvVSchema.
        let cells: Vec<String> = observed.cells.keys().cloned().collect();
        rebuild(topo, ks, &cells, &mut done).await?;
        put_keyspace_in_skipped_cells(topo, ks, &cells, &mut done).await?;
    } else if !planned.rebuild_cells.is_empty() {
        rebuild(topo, ks, &planned.rebuild_cells, &mut done).await?;
    }
    match &planned.deletion {
        Deletion::Delete { .. } => delete(deps, observed, explained, &mut done).await?,
        Deletion::AlreadyGone => {
            sweep_cells(topo, ks, &mut done).await?;
        }
        _ => {}
    }
    Ok(done)
}

/// Writes the planned VSchema under the keyspace lock, only if the record is still what the
/// plan saw (absent, or at the observed version); otherwise writes nothing and the next pass
/// decides again. The lock is held for the re-read and the write only.
async fn write_vschema(
    topo: &TopoServer,
    ks: &str,
    write: &VSchemaWrite,
    done: &mut Executed,
) -> Result<(), KeyspaceError> {
    let guard = topo
        .lock_keyspace(ks, LOCK_ACTION)
        .await
        .map_err(|e| lock_error(ks, "writing the VSchema", e))?;
    let fail = |source| KeyspaceError::Repair {
        keyspace: ks.to_string(),
        subject: format!("{ks} VSchema"),
        source,
    };
    let result = async {
        let current = read_vschema(topo, ks).await.map_err(fail)?;
        if current.as_ref().map(|(_, v)| *v) != write.expected {
            return Ok(false);
        }
        match write.expected {
            Some(version) => {
                topo.save_vschema(&guard, ks, &write.record, Some(version))
                    .await
                    .map_err(fail)?;
            }
            None => {
                // Absent when re-read: create it, refusing to overwrite one that appears
                // meanwhile (a writer that does not lock).
                topo.update_vschema(&guard, ks, |record| {
                    if *record != Default::default() {
                        return Ok(false);
                    }
                    *record = write.record.clone();
                    Ok(true)
                })
                .await
                .map_err(fail)?;
            }
        }
        Ok(true)
    }
    .await;
    unlock(guard).await;
    match result {
        Ok(true) => {
            done.writes += 1;
            done.vschema_written = Some(write.restores.clone());
            Ok(())
        }
        Ok(false) => Ok(()),
        Err(e) => Err(e),
    }
}

/// After a VSchema write, a cell `rebuild` skipped (its routing rules differ on purpose, see the
/// plan's module docs) gets the keyspace's new VSchema surgically, nothing else.
async fn put_keyspace_in_skipped_cells(
    topo: &TopoServer,
    ks: &str,
    cells: &[String],
    done: &mut Executed,
) -> Result<(), KeyspaceError> {
    let record = match read_vschema(topo, ks).await {
        Ok(Some((record, _))) => record,
        Ok(None) => return Ok(()),
        Err(source) => {
            return Err(KeyspaceError::Rebuild {
                keyspace: ks.to_string(),
                source,
            });
        }
    };
    let skipped: Vec<&String> = cells
        .iter()
        .filter(|c| !done.cells_rebuilt.contains(c))
        .collect();
    for cell in skipped {
        edit_cell_counted(topo, ks, cell, done, |srv| {
            if srv.keyspaces.get(ks) == Some(&record) {
                return false;
            }
            srv.keyspaces.insert(ks.to_string(), record.clone());
            true
        })
        .await?;
    }
    Ok(())
}

async fn unlock(guard: KeyspaceLock) {
    if let Err(e) = guard.unlock().await {
        // The lease expires on its own within one TTL; nothing else to do.
        tracing::warn!(error = %e, "Keyspace lock release failed");
    }
}

/// The keyspaces whose locks a repair takes: the keyspace's own, every keyspace a repaired rule
/// names, and every keyspace holding a repaired table.
fn repair_lock_set(ks: &str, observed: &KeyspaceObserved, repairs: &[Repair]) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = [ks.to_string()].into();
    for r in repairs {
        if let Repair::RoutingRule {
            from_table,
            to_tables,
        } = r
        {
            names.extend(
                std::iter::once(from_table)
                    .chain(to_tables)
                    .filter_map(|t| rule_keyspace(t))
                    .map(str::to_string),
            );
        }
        if let Some(model) = &observed.writers {
            for table in r.tables() {
                names.extend(model.holders.get(&table).into_iter().flatten().cloned());
            }
        }
    }
    names
}

async fn repair(
    deps: &KeyspaceDeps,
    spec: &KeyspaceSpec,
    observed: &KeyspaceObserved,
    explained: &Explained,
    options: &PlanOptions,
    planned: &KeyspacePlan,
    done: &mut Executed,
) -> Result<(), KeyspaceError> {
    let ks = planned.keyspace.as_str();
    let topo = deps.topo.as_ref();
    // One order for every vtmove lock taker: by keyspace name (the set iterates sorted).
    let names = repair_lock_set(ks, observed, &planned.repairs);
    let mut guards: Vec<KeyspaceLock> = Vec::new();
    for name in &names {
        match topo.lock_keyspace(name, LOCK_ACTION).await {
            Ok(g) => guards.push(g),
            Err(e) => {
                for g in guards {
                    unlock(g).await;
                }
                return Err(lock_error(ks, &format!("locking keyspace {name}"), e));
            }
        }
    }
    let result = repair_locked(
        deps, spec, observed, explained, options, planned, &guards, done,
    )
    .await;
    for g in guards {
        unlock(g).await;
    }
    let to_refresh = result?;
    // Tablets keep enforcing the old list until they re-read their Shard record. Refreshed
    // after the locks are released: no tablet call is made under them.
    for shard in to_refresh {
        let Some(observed) = observed.shards.iter().find(|s| s.name == shard) else {
            continue;
        };
        for tablet in &observed.tablets {
            let Some(addr) = &tablet.addr else { continue };
            let call = deps.tablets.refresh_state(addr, Some(deps.timeouts.rpc));
            if let Err(e) = bounded(deps.timeouts.rpc, addr, Method::RefreshState, call).await {
                done.refresh_failures.push(format!("{}: {e}", tablet.alias));
            }
        }
    }
    Ok(())
}

/// The re-check and the writes, under the locks. Returns the shards whose tablets must be
/// refreshed.
#[allow(clippy::too_many_arguments)]
async fn repair_locked(
    deps: &KeyspaceDeps,
    spec: &KeyspaceSpec,
    observed: &KeyspaceObserved,
    explained: &Explained,
    options: &PlanOptions,
    planned: &KeyspacePlan,
    guards: &[KeyspaceLock],
    done: &mut Executed,
) -> Result<Vec<String>, KeyspaceError> {
    let ks = planned.keyspace.as_str();
    let topo = deps.topo.as_ref();
    let own = guards
        .iter()
        .find(|g| g.keyspace() == ks)
        .ok_or_else(|| KeyspaceError::Repair {
            keyspace: ks.to_string(),
            subject: "lock".to_string(),
            source: TopoError::NotLocked {
                resource: format!("keyspace {ks}"),
                reason: "the keyspace's own lock is missing from the repair".to_string(),
            },
        })?;
    // Re-check under the locks: the finding must still hold, and still be safe to remove, now
    // that nobody else can change the records the decision rests on. Topology reads only.
    let fresh =
        recheck_topology(topo, observed)
            .await
            .map_err(|source| KeyspaceError::Observe {
                keyspace: ks.to_string(),
                source,
            })?;
    let again = plan(spec, &fresh, explained, options);
    let (confirmed, dropped) = agree(&planned.repairs, &again.repairs);
    done.dropped = dropped;
    let all: Vec<&KeyspaceLock> = guards.iter().collect();
    let mut removed_rules = Vec::new();
    let mut to_refresh = Vec::new();
    for r in &confirmed {
        match r {
            Repair::DeniedTables {
                shard,
                tablet_type,
                tables,
            } => {
                let tablet_type = TabletType::try_from(*tablet_type).unwrap_or(TabletType::Unknown);
                topo.update_denied_tables(
                    own,
                    ks,
                    shard,
                    tablet_type,
                    &[],
                    tables,
                    DeniedTablesOp::Remove,
                )
                .await
                .map_err(|source| KeyspaceError::Repair {
                    keyspace: ks.to_string(),
                    subject: r.subject(ks),
                    source,
                })?;
                done.writes += 1;
                done.repaired.push(r.clone());
                to_refresh.push(shard.clone());
            }
            Repair::RoutingRule {
                from_table,
                to_tables,
            } => {
                topo.update_routing_rules(&all, |rules| {
                    let before = rules.rules.len();
                    rules
                        .rules
                        .retain(|x| !(&x.from_table == from_table && &x.to_tables == to_tables));
                    Ok(rules.rules.len() != before)
                })
                .await
                .map_err(|source| KeyspaceError::Repair {
                    keyspace: ks.to_string(),
                    subject: r.subject(ks),
                    source,
                })?;
                done.writes += 1;
                done.repaired.push(r.clone());
                removed_rules.push((from_table.clone(), to_tables.clone()));
            }
        }
    }
    if !removed_rules.is_empty() {
        for cell in fresh.cells.keys() {
            edit_cell_counted(topo, ks, cell, done, |srv| {
                let mut changed = false;
                for rr in srv.routing_rules.iter_mut() {
                    let before = rr.rules.len();
                    rr.rules.retain(|x| {
                        !removed_rules
                            .iter()
                            .any(|(f, t)| &x.from_table == f && &x.to_tables == t)
                    });
                    changed |= rr.rules.len() != before;
                }
                changed
            })
            .await?;
        }
    }
    Ok(to_refresh)
}

/// The repairs both plans contain (denied tables intersected per shard and type), and the ones
/// the second plan no longer wants.
fn agree(first: &[Repair], second: &[Repair]) -> (Vec<Repair>, Vec<Repair>) {
    let mut confirmed = Vec::new();
    let mut dropped = Vec::new();
    for r in first {
        match r {
            Repair::DeniedTables {
                shard,
                tablet_type,
                tables,
            } => {
                let still: BTreeSet<&String> = second
                    .iter()
                    .filter_map(|s| match s {
                        Repair::DeniedTables {
                            shard: s2,
                            tablet_type: t2,
                            tables: tables2,
                        } if s2 == shard && t2 == tablet_type => Some(tables2.iter()),
                        _ => None,
                    })
                    .flatten()
                    .collect();
                let (keep, drop): (Vec<String>, Vec<String>) =
                    tables.iter().cloned().partition(|t| still.contains(t));
                if !keep.is_empty() {
                    confirmed.push(Repair::DeniedTables {
                        shard: shard.clone(),
                        tablet_type: *tablet_type,
                        tables: keep,
                    });
                }
                if !drop.is_empty() {
                    dropped.push(Repair::DeniedTables {
                        shard: shard.clone(),
                        tablet_type: *tablet_type,
                        tables: drop,
                    });
                }
            }
            Repair::RoutingRule { .. } => {
                if second.contains(r) {
                    confirmed.push(r.clone());
                } else {
                    dropped.push(r.clone());
                }
            }
        }
    }
    (confirmed, dropped)
}

/// [`edit_cell`] for keyspace `ks`, counting a write and the rebuilt cell in `done`.
async fn edit_cell_counted(
    topo: &TopoServer,
    ks: &str,
    cell: &str,
    done: &mut Executed,
    change: impl FnMut(&mut SrvVSchema) -> bool,
) -> Result<(), KeyspaceError> {
    let wrote = edit_cell(topo, cell, change)
        .await
        .map_err(|source| KeyspaceError::Rebuild {
            keyspace: ks.to_string(),
            source,
        })?;
    if wrote {
        done.writes += 1;
        done.cells_rebuilt.push(cell.to_string());
    }
    Ok(())
}

/// Read-modify-write of one cell's SrvVSchema with `change`; a missing one is left missing.
/// Returns whether it wrote.
async fn edit_cell(
    topo: &TopoServer,
    cell: &str,
    mut change: impl FnMut(&mut SrvVSchema) -> bool,
) -> Result<bool, TopoError> {
    for _ in 0..10 {
        let found = match topo.get_srv_vschema(cell).await {
            Ok(found) => found,
            Err(TopoError::NoNode { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        let mut value = found.value;
        if !change(&mut value) {
            return Ok(false);
        }
        match topo
            .update_srv_vschema(cell, &value, Some(found.version))
            .await
        {
            Ok(_) => return Ok(true),
            Err(TopoError::BadVersion { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(TopoError::BadVersion {
        key: format!("SrvVSchema of cell {cell} (still changing)"),
    })
}

/// Rebuilds the planned cells, re-checking each against a fresh rollup: a cell whose routing
/// rules now differ is skipped (see the plan's module docs).
async fn rebuild(
    topo: &TopoServer,
    ks: &str,
    cells: &[String],
    done: &mut Executed,
) -> Result<(), KeyspaceError> {
    let err = |source| KeyspaceError::Rebuild {
        keyspace: ks.to_string(),
        source,
    };
    let desired = desired_srv_vschema(topo).await.map_err(err)?;
    for cell in cells {
        let state = match topo.get_srv_vschema(cell).await {
            Ok(found) => super::observe::compare_cell(&found.value, &desired),
            Err(TopoError::NoNode { .. }) => CellSrvVSchema::Missing,
            Err(e) => return Err(err(e)),
        };
        if matches!(state, CellSrvVSchema::Stale { rules_differ: true }) {
            continue;
        }
        if write_srv_vschema_if_stale(topo, cell, &desired)
            .await
            .map_err(err)?
        {
            done.writes += 1;
            done.cells_rebuilt.push(cell.clone());
        }
    }
    Ok(())
}

/// Deletes a fenced key under `guard`; NoNode is success.
async fn delete_fenced(
    topo: &TopoServer,
    guard: &KeyspaceLock,
    key: &str,
) -> Result<bool, TopoError> {
    guard.check().await?;
    match topo
        .global_store()
        .write_fenced(FencedWrite {
            key,
            change: Change::Delete,
            expected: Expected::Any,
            fences: &[guard.key()],
        })
        .await
    {
        Ok(_) => Ok(true),
        Err(TopoError::NoNode { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Deletes the keyspace: under its lock, checks again that nothing references, routes to or
/// runs in it, cleans every cell, then removes the global records.
async fn delete(
    deps: &KeyspaceDeps,
    observed: &KeyspaceObserved,
    explained: &Explained,
    done: &mut Executed,
) -> Result<(), KeyspaceError> {
    let topo = deps.topo.as_ref();
    let ks = observed.keyspace.as_str();
    let fail = |what: &str| {
        let what = what.to_string();
        move |source| KeyspaceError::Delete {
            keyspace: ks.to_string(),
            what,
            source,
        }
    };
    let guard = topo.lock_keyspace(ks, LOCK_ACTION).await.map_err(|e| {
        match lock_error(ks, "deleting", e) {
            KeyspaceError::Repair { source, .. } => KeyspaceError::Delete {
                keyspace: ks.to_string(),
                what: "taking the lock".to_string(),
                source,
            },
            other => other,
        }
    })?;
    let result = async {
        // The re-check: what the plan saw may have changed before the lock was ours.
        let fresh = recheck_topology(topo, observed)
            .await
            .map_err(fail("re-reading the keyspace under its lock"))?;
        let cells = topo.list_cells().await.map_err(fail("listing cells"))?;
        let mut refusals = Vec::new();
        let referencing = explained.workflows_referencing(ks);
        if !referencing.is_empty() {
            refusals.push(format!(
                "workflows reference it: {}",
                referencing.join(", ")
            ));
        }
        let routes = routes_to(&fresh);
        if !routes.is_empty() {
            refusals.push(format!("routing rules name it: {}", routes.join(", ")));
        }
        let mut shards = Vec::new();
        for info in topo.list_shards(ks).await.map_err(fail("listing shards"))? {
            for cell in &cells {
                let nodes = topo
                    .get_shard_replication(cell, ks, &info.name)
                    .await
                    .map_err(fail("reading ShardReplication"))?
                    .value
                    .nodes;
                if !nodes.is_empty() {
                    refusals.push(format!(
                        "shard {} has {} tablet(s) registered in cell {cell}",
                        info.name,
                        nodes.len()
                    ));
                }
            }
            if let Some(primary) = &info.shard.primary_alias {
                match topo.get_tablet(primary).await {
                    Ok(_) => refusals.push(format!(
                        "shard {} has primary {}",
                        info.name,
                        crate::vitess::topo::tablet_alias_string(primary)
                    )),
                    Err(TopoError::NoNode { .. }) => {}
                    Err(e) => return Err(fail("reading the primary's Tablet record")(e)),
                }
            }
            shards.push(info.name);
        }
        if !refusals.is_empty() {
            return Err(KeyspaceError::DeletionRefused {
                keyspace: ks.to_string(),
                reason: refusals.join("; "),
            });
        }
        // Cells first: the global shard list is what tells a retry which cell records to
        // finish.
        sweep_cells_locked(topo, ks, &cells, Some(&guard), done).await?;
        for shard in &shards {
            let key = topo.key(&rel::shard(ks, shard));
            if delete_fenced(topo, &guard, &key)
                .await
                .map_err(fail(&format!("shard {shard}")))?
            {
                done.writes += 1;
            }
        }
        for (what, key) in [
            ("VSchema", topo.key(&rel::vschema(ks))),
            ("keyspace record", topo.key(&rel::keyspace(ks))),
        ] {
            if delete_fenced(topo, &guard, &key)
                .await
                .map_err(fail(what))?
            {
                done.writes += 1;
            }
        }
        Ok(())
    }
    .await;
    unlock(guard).await;
    result?;
    done.deleted = true;
    Ok(())
}

/// Removes what a deleted keyspace left in the cells (no lock: the keyspace is gone).
async fn sweep_cells(
    topo: &TopoServer,
    ks: &str,
    done: &mut Executed,
) -> Result<(), KeyspaceError> {
    let cells = topo
        .list_cells()
        .await
        .map_err(|source| KeyspaceError::Delete {
            keyspace: ks.to_string(),
            what: "listing cells".to_string(),
            source,
        })?;
    sweep_cells_locked(topo, ks, &cells, None, done).await
}

/// Deletes every key under `keyspaces/<ks>/` in each cell (SrvKeyspace, ShardReplication) and
/// the keyspace's entry from each cell's SrvVSchema. `guard` is checked before each write when
/// given.
async fn sweep_cells_locked(
    topo: &TopoServer,
    ks: &str,
    cells: &[String],
    guard: Option<&KeyspaceLock>,
    done: &mut Executed,
) -> Result<(), KeyspaceError> {
    let fail = |what: String| {
        move |source| KeyspaceError::Delete {
            keyspace: ks.to_string(),
            what,
            source,
        }
    };
    for cell in cells {
        let cell_topo = topo
            .cell(cell)
            .await
            .map_err(fail(format!("resolving cell {cell}")))?;
        let prefix = format!("{}/", cell_topo.key(&rel::keyspace_dir(ks)));
        let keys = match cell_topo.store.list(&prefix).await {
            Ok(found) => found,
            Err(TopoError::NoNode { .. }) => Vec::new(),
            Err(e) => return Err(fail(format!("listing cell {cell}"))(e)),
        };
        for kv in keys {
            if let Some(guard) = guard {
                guard
                    .check()
                    .await
                    .map_err(fail("checking the lock".to_string()))?;
            }
            match cell_topo.store.delete(&kv.key, None).await {
                Ok(()) => done.writes += 1,
                Err(TopoError::NoNode { .. }) => {}
                Err(e) => return Err(fail(format!("{} in cell {cell}", kv.key))(e)),
            }
        }
        edit_cell_counted(topo, ks, cell, done, |srv| {
            srv.keyspaces.remove(ks).is_some()
        })
        .await?;
    }
    Ok(())
}
