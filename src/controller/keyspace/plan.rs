//! `plan`: the pure half of a keyspace pass. From the spec, one [`KeyspaceObserved`] and the
//! [`Explained`] set it decides what to create, which drift to repair, which cells to rebuild,
//! whether to delete, and the whole [`KeyspaceStatus`] to report. No I/O, no clock: the time
//! stamped on conditions comes in through [`PlanOptions`].
//!
//! Decisions, and why:
//! * **Create or adopt.** A missing keyspace record or spec shard is created; an existing one is
//!   adopted untouched. Shards present in the topology but not in the spec are reported, never
//!   deleted. A spec shard whose key range overlaps a serving shard is refused (no shard is
//!   created, `Ready` says which overlap): it would give the key space two serving shard sets. One
//!   that overlaps only shards that do not serve is created not serving, as Vitess's CreateShard
//!   does.
//! * **Drift** is a denied table or a routing rule naming this keyspace that no workflow explains
//!   (resources, plus the VReplication workflows seen on tablets). `Report` lists it; `Repair`
//!   also plans its removal, but only what the single-writer rule ([`super::writers`]) proves
//!   protects no writer, and only when everything was read: a workflow vtmove cannot see (an
//!   unread primary, a shard without one, shard or keyspace routing rules) might explain it.
//!   Kept findings stay reported, with why. The plan asks for the writer model
//!   ([`KeyspacePlan::needs_writers`]) when it has candidates it has not judged yet.
//! * **VSchema** (`spec.vschema` set). It is written, whole, when vtmove creates the keyspace or
//!   adopts one that has no VSchema record. Afterwards a declared vindex or table that is missing
//!   from the record or differs from the declaration, and `sharded` differing, are drift
//!   (`VSchemaDrift`). Tables the record has and the spec does not are not: MoveTables adds the
//!   moved tables to an unsharded target's VSchema. `Repair` restores the declared vindexes and
//!   tables in the record as observed (the executor writes it only if the record is still at the
//!   observed version under the keyspace lock), then rebuilds every cell's SrvVSchema. It never
//!   flips `sharded` on an existing keyspace (that changes how every table is routed and, for an
//!   unsharded keyspace with data, needs a reshard, not a VSchema edit) and never removes tables
//!   (one may hold rows a workflow moved in, and its removal would stop them being routed): those
//!   stay reported. The single-writer rule does not apply: a VSchema entry denies no one writes.
//! * **SrvVSchema.** A cell that has none, or whose copy differs from a rebuild only in keyspace
//!   VSchemas, is rebuilt. A cell whose routing rules differ is left alone: a workflow may be
//!   switching reads cell by cell on purpose, and a full rebuild would spread the switch. Rules
//!   removed by a repair are removed from each cell's copy by the executor itself.
//! * **Deletion** happens only with `deletionPolicy: Delete`, while the resource is being
//!   deleted, when no workflow references the keyspace, no tablet is registered in it and no
//!   routing rule of any kind routes to it (the executor checks all of it again under the
//!   lock).
//! * **Paused** passes observe and report, and plan no mutation at all.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::explained::Explained;
use super::observe::{CellSrvVSchema, KeyspaceObserved, ObservedShard};
pub use super::vschema::VSchemaWrite;
use super::vschema::vschema_plan;
use super::writers::{Verdict, rule_table};
use crate::api::condition::{ConditionStatus, ConditionUpdate, reasons, types};
use crate::api::keyspace::{
    DeletionPolicy, DeniedTables, DriftFinding, DriftPolicy, KeyRange as SpecKeyRange,
    KeyspaceSpec, KeyspaceStatus, ShardStatus, TabletHealth as ApiHealth, TabletStatus,
    TabletType as ApiType,
};
use crate::engine::observe::TabletView;
use crate::engine::requests::ranges_overlap;
use crate::vitess::proto::topodata::{self, KeyRange, Shard};
use crate::vitess::tablet::ReportedType;

/// Drift reason: a denied table no workflow explains.
pub const UNEXPLAINED_DENIED_TABLES: &str = reasons::UNEXPLAINED_DENIED_TABLES;
/// Drift reason: a routing rule naming this keyspace that no workflow explains.
pub const UNEXPLAINED_ROUTING_RULES: &str = reasons::UNEXPLAINED_ROUTING_RULES;
/// Drift reason: a shard in the topology that the spec does not list.
pub const SHARD_NOT_IN_SPEC: &str = reasons::SHARD_NOT_IN_SPEC;
/// Drift reason: the keyspace's VSchema differs from `spec.vschema`.
pub const VSCHEMA_DRIFT: &str = reasons::VSCHEMA_DRIFT;

/// Requeue after a pass that changed something, to observe its effect.
pub const REQUEUE_AFTER_CHANGE: Duration = Duration::from_secs(2);
/// Requeue while something is wrong (drift, unhealthy tablets, refused deletion).
pub const REQUEUE_WHILE_DEGRADED: Duration = Duration::from_secs(30);
/// Requeue of a converged keyspace: a periodic resync, since topology changes made by others
/// produce no Kubernetes events.
pub const REQUEUE_CONVERGED: Duration = Duration::from_secs(300);

/// What the planner needs besides spec, observation and explanations.
#[derive(Clone, Debug)]
pub struct PlanOptions {
    /// `metadata.generation` of the resource, stamped on conditions.
    pub generation: Option<i64>,
    /// The time stamped on conditions that flip.
    pub now: Time,
    /// The conditions currently in status, so unchanged ones keep their transition times.
    pub previous_conditions: Vec<Condition>,
    /// The resource is being deleted (deletionTimestamp set).
    pub deleting: bool,
    /// Observe and report only.
    pub paused: bool,
    /// Withhold every repair, for this reason (the workflows that could explain drift are not
    /// known completely).
    pub withhold_repairs: Option<String>,
}

impl PlanOptions {
    /// Options for a live, not-deleting pass at `now`.
    pub fn at(now: Time) -> Self {
        PlanOptions {
            generation: None,
            now,
            previous_conditions: Vec::new(),
            deleting: false,
            paused: false,
            withhold_repairs: None,
        }
    }
}

/// One drift repair.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Repair {
    /// Remove these tables from the denied list of `tablet_type` on `shard`.
    DeniedTables {
        /// The shard.
        shard: String,
        /// The tablet type (raw topodata enum value).
        tablet_type: i32,
        /// Tables to allow again, sorted.
        tables: Vec<String>,
    },
    /// Remove the rule `from_table → to_tables` (only if it still has exactly these targets).
    RoutingRule {
        /// The rule key.
        from_table: String,
        /// Its targets when observed.
        to_tables: Vec<String>,
    },
}

impl Repair {
    /// The tables the repair is about (for a rule: its key's table and its target's).
    pub fn tables(&self) -> Vec<String> {
        match self {
            Repair::DeniedTables { tables, .. } => tables.clone(),
            Repair::RoutingRule {
                from_table,
                to_tables,
            } => rule_table(from_table)
                .map(|(_, t)| t.to_string())
                .into_iter()
                .chain(
                    to_tables
                        .iter()
                        .filter_map(|t| t.split_once('.').map(|(_, t)| t.to_string())),
                )
                .collect(),
        }
    }

    /// The subject a finding names for this repair.
    pub fn subject(&self, keyspace: &str) -> String {
        match self {
            Repair::DeniedTables { shard, .. } => format!("{keyspace}/{shard}"),
            Repair::RoutingRule { from_table, .. } => from_table.clone(),
        }
    }
}

/// What deletion needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Deletion {
    /// Not being deleted.
    NotRequested,
    /// `deletionPolicy: Retain`: leave Vitess alone; the finalizer can go.
    Retain,
    /// The keyspace is already gone: nothing to do.
    AlreadyGone,
    /// Delete these shards, then the keyspace.
    Delete {
        /// Shard names.
        shards: Vec<String>,
    },
    /// Deletion refused, with the reason (also in the Ready condition).
    Refused(String),
}

/// A shard record to create.
#[derive(Clone, Debug, PartialEq)]
pub struct ShardToCreate {
    /// Shard name.
    pub name: String,
    /// The record.
    pub record: Shard,
}

/// The outcome of planning one pass.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyspacePlan {
    /// The keyspace.
    pub keyspace: String,
    /// The Keyspace record to create (`None`: it exists, or the pass may not create it).
    pub create_keyspace: Option<topodata::Keyspace>,
    /// Shard records to create.
    pub create_shards: Vec<ShardToCreate>,
    /// Drift to repair (`driftPolicy: Repair` only).
    pub repairs: Vec<Repair>,
    /// Why repairs were withheld despite `Repair`, if they were.
    pub repairs_withheld: Option<String>,
    /// Tables drift Repair would remove something about, which the writer model must cover
    /// before the plan can judge them (empty: nothing to observe).
    pub needs_writers: BTreeSet<String>,
    /// Spec shards refused because they overlap serving shards, described.
    pub shard_overlap: Option<String>,
    /// The keyspace VSchema to write (`spec.vschema`: creation, adoption, or Repair).
    pub vschema_write: Option<VSchemaWrite>,
    /// Cells whose SrvVSchema to rebuild.
    pub rebuild_cells: Vec<String>,
    /// Deletion.
    pub deletion: Deletion,
    /// The status to report.
    pub status: KeyspaceStatus,
    /// When to look again.
    pub requeue_after: Duration,
}

impl KeyspacePlan {
    /// Whether executing the plan writes anything.
    pub fn mutates(&self) -> bool {
        self.create_keyspace.is_some()
            || !self.create_shards.is_empty()
            || !self.repairs.is_empty()
            || self.vschema_write.is_some()
            || !self.rebuild_cells.is_empty()
            || matches!(self.deletion, Deletion::Delete { .. })
    }
}

/// Plans one pass. See the module docs.
pub fn plan(
    spec: &KeyspaceSpec,
    observed: &KeyspaceObserved,
    explained: &Explained,
    options: &PlanOptions,
) -> KeyspacePlan {
    let ks = observed.keyspace.as_str();
    let explained = explained.with(observed.workflows.iter().cloned());
    let exists = observed.record.is_some();
    let may_act = !options.paused;

    // Deletion decides first: a deleting resource never creates or repairs anything.
    let deletion = if !options.deleting {
        Deletion::NotRequested
    } else if spec.deletion_policy == DeletionPolicy::Retain {
        Deletion::Retain
    } else if !exists {
        Deletion::AlreadyGone
    } else {
        deletion_decision(observed, &explained)
    };
    let live = !options.deleting && may_act;

    let create_keyspace = (live && !exists).then(|| topodata::Keyspace {
        durability_policy: spec.durability_policy.clone(),
        sidecar_db_name: spec.sidecar_db_name.clone(),
        ..Default::default()
    });
    let present: BTreeSet<&str> = observed.shards.iter().map(|s| s.name.as_str()).collect();
    let missing: Vec<&String> = spec
        .shards
        .iter()
        .filter(|s| !present.contains(s.as_str()))
        .collect();
    let (shards_to_create, shard_overlap) = shards_to_create(observed, &missing);
    let create_shards = if live && shard_overlap.is_none() {
        shards_to_create
    } else {
        Vec::new()
    };

    let (mut findings, candidate_repairs) = drift(spec, observed, &explained);
    let mut repairs = Vec::new();
    let mut repairs_withheld = None;
    let mut needs_writers = BTreeSet::new();
    if spec.drift_policy == DriftPolicy::Repair && !candidate_repairs.is_empty() {
        repairs_withheld = withheld(observed, options);
        if repairs_withheld.is_none() {
            let tables: BTreeSet<String> = candidate_repairs
                .iter()
                .flat_map(|(r, _)| r.tables())
                .collect();
            match &observed.writers {
                Some(model) if model.covers(tables.iter()) => {
                    repairs = judge(observed, &candidate_repairs, &mut findings);
                }
                _ => needs_writers = tables,
            }
        }
    }
    if let Some(why) = &repairs_withheld {
        for f in findings
            .iter_mut()
            .filter(|f| f.reason != SHARD_NOT_IN_SPEC)
        {
            f.message.push_str(&format!(" Repair withheld: {why}."));
        }
    }

    let (vschema_findings, vschema_write) = vschema_plan(spec, observed, live);
    findings.extend(vschema_findings);

    let rebuild_cells = if live && exists {
        observed
            .cells
            .iter()
            .filter(|(_, state)| {
                matches!(
                    state,
                    CellSrvVSchema::Missing
                        | CellSrvVSchema::Stale {
                            rules_differ: false
                        }
                )
            })
            .map(|(cell, _)| cell.clone())
            .collect()
    } else {
        Vec::new()
    };

    let status = build_status(
        spec,
        observed,
        &findings,
        &missing,
        &deletion,
        options,
        create_keyspace.is_some(),
    );
    let mut status = status;
    if let Some(why) = &shard_overlap
        && !matches!(deletion, Deletion::Refused(_))
    {
        status.set_condition(
            ConditionUpdate::new(
                types::READY,
                ConditionStatus::False,
                reasons::SHARDS_OVERLAP_SERVING,
                why.clone(),
            ),
            options.generation,
            &options.now,
        );
    }
    let mut plan = KeyspacePlan {
        keyspace: ks.to_string(),
        create_keyspace,
        create_shards,
        repairs,
        repairs_withheld,
        needs_writers,
        shard_overlap,
        vschema_write,
        rebuild_cells,
        deletion,
        status,
        requeue_after: REQUEUE_CONVERGED,
    };
    plan.requeue_after = if plan.mutates() {
        REQUEUE_AFTER_CHANGE
    } else if plan
        .status
        .conditions
        .iter()
        .any(|c| c.type_ == types::READY && c.status != "True")
    {
        REQUEUE_WHILE_DEGRADED
    } else {
        REQUEUE_CONVERGED
    };
    plan
}

/// The missing spec shards to create, or why none may be (they overlap serving shards). One that
/// overlaps only shards that do not serve is created not serving, as Vitess's CreateShard does.
fn shards_to_create(
    observed: &KeyspaceObserved,
    missing: &[&String],
) -> (Vec<ShardToCreate>, Option<String>) {
    let mut create = Vec::new();
    let mut conflicts = Vec::new();
    for name in missing {
        let range = key_range_of(name);
        let overlapping: Vec<&ObservedShard> = observed
            .shards
            .iter()
            .filter(|s| ranges_overlap(s.record.key_range.as_ref(), range.as_ref()))
            .collect();
        let serving: Vec<&str> = overlapping
            .iter()
            .filter(|s| s.record.is_primary_serving)
            .map(|s| s.name.as_str())
            .collect();
        if !serving.is_empty() {
            conflicts.push(format!("{name} overlaps {}", serving.join(", ")));
            continue;
        }
        create.push(ShardToCreate {
            name: (*name).clone(),
            record: Shard {
                key_range: range,
                is_primary_serving: overlapping.is_empty(),
                ..Default::default()
            },
        });
    }
    let refused = (!conflicts.is_empty()).then(|| {
        format!(
            "spec.shards overlap the serving shards of keyspace {} ({}); vtmove creates no shard \
             over a serving one, which would give the key space two serving shard sets: reshard \
             with Vitess, or list the serving shards",
            observed.keyspace,
            conflicts.join("; ")
        )
    });
    (create, refused)
}

/// Why repairs must wait, if they must: something that could explain drift was not read.
fn withheld(observed: &KeyspaceObserved, options: &PlanOptions) -> Option<String> {
    if options.paused {
        return Some("the resource is paused".to_string());
    }
    if options.deleting {
        return Some("the resource is being deleted".to_string());
    }
    if let Some(why) = &options.withhold_repairs {
        return Some(why.clone());
    }
    if !observed.other_routing.is_empty() {
        return Some(format!(
            "{} name keyspace {}: a partial or multi-tenant MoveTables whose streams vtmove may \
             not see can explain the drift",
            observed.other_routing.join("; "),
            observed.keyspace
        ));
    }
    if !observed.workflows_unread.is_empty() {
        return Some(format!(
            "{} could not be read, so a workflow vtmove cannot see may explain the drift",
            observed.workflows_unread.join("; ")
        ));
    }
    None
}

/// Applies the single-writer rule to the candidates: returns the repairs it allows, and adds
/// to each finding what is kept and why.
fn judge(
    observed: &KeyspaceObserved,
    candidates: &[(Repair, usize)],
    findings: &mut [DriftFinding],
) -> Vec<Repair> {
    let Some(model) = &observed.writers else {
        return Vec::new();
    };
    let ks = observed.keyspace.as_str();
    let mut repairs = Vec::new();
    for (candidate, finding) in candidates {
        let mut kept = Vec::new();
        match candidate {
            Repair::DeniedTables {
                shard,
                tablet_type,
                tables,
            } => {
                let mut allowed = Vec::new();
                for table in tables {
                    match model.denial(ks, table, *tablet_type) {
                        Verdict::Repairable => allowed.push(table.clone()),
                        Verdict::Kept(why) => kept.push(format!("{table}: {why}")),
                    }
                }
                if !allowed.is_empty() {
                    repairs.push(Repair::DeniedTables {
                        shard: shard.clone(),
                        tablet_type: *tablet_type,
                        tables: allowed,
                    });
                }
            }
            Repair::RoutingRule {
                from_table,
                to_tables,
            } => match model.rule(from_table, to_tables) {
                Verdict::Repairable => repairs.push(candidate.clone()),
                Verdict::Kept(why) => kept.push(why),
            },
        }
        if !kept.is_empty()
            && let Some(f) = findings.get_mut(*finding)
        {
            f.message.push_str(&format!(
                " Kept, reported and never repaired, because it may be what keeps a single \
                 writer: {}.",
                kept.join("; ")
            ));
        }
    }
    repairs
}

fn deletion_decision(observed: &KeyspaceObserved, explained: &Explained) -> Deletion {
    let referencing = explained.workflows_referencing(&observed.keyspace);
    if !referencing.is_empty() {
        return Deletion::Refused(format!(
            "workflows still reference keyspace {}: {}",
            observed.keyspace,
            referencing.join(", ")
        ));
    }
    let routes = routes_to(observed);
    if !routes.is_empty() {
        return Deletion::Refused(format!(
            "routing rules still name keyspace {}: {}",
            observed.keyspace,
            routes.join(", ")
        ));
    }
    let with_tablets: Vec<String> = observed
        .shards
        .iter()
        .filter(|s| !s.tablets.is_empty())
        .map(|s| format!("{} ({} tablets)", s.name, s.tablets.len()))
        .collect();
    if !with_tablets.is_empty() {
        return Deletion::Refused(format!(
            "shards still have tablets registered: {}",
            with_tablets.join(", ")
        ));
    }
    Deletion::Delete {
        shards: observed.shards.iter().map(|s| s.name.clone()).collect(),
    }
}

/// Every routing rule of any kind that names the keyspace, described.
pub fn routes_to(observed: &KeyspaceObserved) -> Vec<String> {
    observed
        .routing_rules
        .iter()
        .map(|r| format!("{} -> [{}]", r.from_table, r.to_tables.join(", ")))
        .chain(observed.other_routing.iter().cloned())
        .collect()
}

/// The findings, and the repairs `Repair` would make for them if the single-writer rule allows
/// (each with the index of its finding).
fn drift(
    spec: &KeyspaceSpec,
    observed: &KeyspaceObserved,
    explained: &Explained,
) -> (Vec<DriftFinding>, Vec<(Repair, usize)>) {
    let ks = observed.keyspace.as_str();
    let mut findings = Vec::new();
    let mut repairs = Vec::new();
    for shard in &observed.shards {
        for control in &shard.record.tablet_controls {
            let mut tables: Vec<String> = control
                .denied_tables
                .iter()
                .filter(|t| !explained.explains_denied(ks, t))
                .cloned()
                .collect();
            if tables.is_empty() {
                continue;
            }
            tables.sort();
            tables.dedup();
            let type_name = proto_type_name(control.tablet_type);
            findings.push(DriftFinding {
                reason: UNEXPLAINED_DENIED_TABLES.to_string(),
                subject: format!("{ks}/{}", shard.name),
                message: format!(
                    "{} denied to {type_name} tablets, but no workflow moves them into or out of \
                     keyspace {ks}; driftPolicy Repair allows them again only where that cannot \
                     make a second writable copy.",
                    tables.join(", ")
                ),
                repaired: false,
            });
            repairs.push((
                Repair::DeniedTables {
                    shard: shard.name.clone(),
                    tablet_type: control.tablet_type,
                    tables,
                },
                findings.len() - 1,
            ));
        }
    }
    for rule in &observed.routing_rules {
        if explained.explains_rule(ks, &rule.from_table) {
            continue;
        }
        findings.push(DriftFinding {
            reason: UNEXPLAINED_ROUTING_RULES.to_string(),
            subject: rule.from_table.clone(),
            message: format!(
                "routing rule {} -> [{}] names keyspace {ks}, but no workflow explains it; \
                 driftPolicy Repair removes it only if no other keyspace holds the table.",
                rule.from_table,
                rule.to_tables.join(", ")
            ),
            repaired: false,
        });
        repairs.push((
            Repair::RoutingRule {
                from_table: rule.from_table.clone(),
                to_tables: rule.to_tables.clone(),
            },
            findings.len() - 1,
        ));
    }
    let declared: BTreeSet<&str> = spec.shards.iter().map(String::as_str).collect();
    for shard in observed
        .shards
        .iter()
        .filter(|s| !declared.contains(s.name.as_str()))
    {
        findings.push(DriftFinding {
            reason: SHARD_NOT_IN_SPEC.to_string(),
            subject: format!("{ks}/{}", shard.name),
            message: format!(
                "shard {} exists in the topology but not in spec.shards; vtmove never deletes \
                 shards, so it is only reported.",
                shard.name
            ),
            repaired: false,
        });
    }
    (findings, repairs)
}

/// The topodata key range of a shard name (`None` for `0` and `-`, as Vitess stores them).
pub fn key_range_of(name: &str) -> Option<KeyRange> {
    let parsed = SpecKeyRange::parse_shard_name(name).ok()?;
    (!parsed.is_full()).then_some(KeyRange {
        start: parsed.start,
        end: parsed.end,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn key_range_text(range: Option<&KeyRange>) -> String {
    match range {
        None => "-".to_string(),
        Some(r) => format!("{}-{}", hex(&r.start), hex(&r.end)),
    }
}

fn proto_type_name(raw: i32) -> &'static str {
    match topodata::TabletType::try_from(raw) {
        Ok(t) => t.as_str_name(),
        Err(_) => "UNRECOGNIZED",
    }
}

/// The API form of a topodata tablet type.
pub fn api_type(t: topodata::TabletType) -> ApiType {
    use topodata::TabletType as P;
    match t {
        P::Primary => ApiType::Primary,
        P::Replica => ApiType::Replica,
        P::Rdonly => ApiType::Rdonly,
        P::Spare => ApiType::Spare,
        P::Experimental => ApiType::Experimental,
        P::Backup => ApiType::Backup,
        P::Restore => ApiType::Restore,
        P::Drained => ApiType::Drained,
        P::Unknown => ApiType::Unknown,
    }
}

/// One tablet's status row. The type is what the tablet reports about itself; an older tablet
/// that leaves it unset, or one that does not answer, is `Unknown`, never guessed from the
/// topology (#18031).
fn tablet_status(view: &TabletView, is_primary: bool) -> TabletStatus {
    let (tablet_type, health, message) = match &view.health {
        None => (ApiType::Unknown, ApiHealth::Unknown, None),
        Some(Err(e)) => (
            ApiType::Unknown,
            ApiHealth::Unreachable,
            Some(e.to_string()),
        ),
        Some(Ok(h)) => {
            let reported = match h.reported_type {
                ReportedType::Type(t) => api_type(t),
                ReportedType::NotReported | ReportedType::Unrecognized(_) => ApiType::Unknown,
            };
            let problems = h.problems(is_primary);
            if problems.is_empty() {
                (reported, ApiHealth::Healthy, None)
            } else {
                let text: Vec<String> = problems.iter().map(|p| format!("{p:?}")).collect();
                (reported, ApiHealth::Unhealthy, Some(text.join("; ")))
            }
        }
    };
    TabletStatus {
        alias: view.alias.clone(),
        tablet_type,
        health,
        message,
    }
}

fn shard_status(shard: &ObservedShard) -> ShardStatus {
    let primary = shard
        .record
        .primary_alias
        .as_ref()
        .map(crate::vitess::topo::tablet_alias_string);
    let tablets: Vec<TabletStatus> = shard
        .tablets
        .iter()
        .map(|t| tablet_status(t, primary.as_deref() == Some(t.alias.as_str())))
        .collect();
    let mut denied: BTreeMap<i32, BTreeSet<String>> = BTreeMap::new();
    for control in &shard.record.tablet_controls {
        denied
            .entry(control.tablet_type)
            .or_default()
            .extend(control.denied_tables.iter().cloned());
    }
    ShardStatus {
        name: shard.name.clone(),
        key_range: key_range_text(shard.record.key_range.as_ref()),
        primary,
        is_primary_serving: Some(shard.record.is_primary_serving),
        serving_tablets: tablets
            .iter()
            .filter(|t| t.health == ApiHealth::Healthy)
            .count()
            .try_into()
            .unwrap_or(i64::MAX),
        tablets,
        denied_tables: denied
            .into_iter()
            .filter(|(_, tables)| !tables.is_empty())
            .map(|(raw, tables)| DeniedTables {
                tablet_type: topodata::TabletType::try_from(raw)
                    .map(api_type)
                    .unwrap_or(ApiType::Unknown),
                tables: tables.into_iter().collect(),
            })
            .collect(),
    }
}

fn build_status(
    spec: &KeyspaceSpec,
    observed: &KeyspaceObserved,
    findings: &[DriftFinding],
    missing_shards: &[&String],
    deletion: &Deletion,
    options: &PlanOptions,
    creating: bool,
) -> KeyspaceStatus {
    let ks = observed.keyspace.as_str();
    let mut status = KeyspaceStatus {
        observed_generation: options.generation,
        keyspace: Some(ks.to_string()),
        conditions: options.previous_conditions.clone(),
        shards: observed.shards.iter().map(shard_status).collect(),
        drift: findings.to_vec(),
    };
    let set = |status: &mut KeyspaceStatus, t: &str, s: ConditionStatus, r: &str, m: String| {
        status.set_condition(
            ConditionUpdate::new(t, s, r, m),
            options.generation,
            &options.now,
        );
    };
    let exists = observed.record.is_some();

    // TopologyConsistent
    let by_reason = |reason: &str| -> Vec<&str> {
        findings
            .iter()
            .filter(|f| f.reason == reason)
            .map(|f| f.subject.as_str())
            .collect()
    };
    let denied = by_reason(UNEXPLAINED_DENIED_TABLES);
    let rules = by_reason(UNEXPLAINED_ROUTING_RULES);
    let extra = by_reason(SHARD_NOT_IN_SPEC);
    let vschema_drift = by_reason(VSCHEMA_DRIFT);
    let consistent = findings.is_empty() && exists && missing_shards.is_empty();
    if !exists {
        set(
            &mut status,
            types::TOPOLOGY_CONSISTENT,
            ConditionStatus::Unknown,
            reasons::KEYSPACE_NOT_FOUND,
            format!("keyspace {ks} does not exist in the topology"),
        );
    } else if !findings.is_empty() {
        let mut parts = Vec::new();
        if !denied.is_empty() {
            parts.push(format!(
                "unexplained denied tables on {}",
                denied.join(", ")
            ));
        }
        if !rules.is_empty() {
            parts.push(format!("unexplained routing rules {}", rules.join(", ")));
        }
        if !extra.is_empty() {
            parts.push(format!("shards not in spec: {}", extra.join(", ")));
        }
        if !vschema_drift.is_empty() {
            parts.push(format!(
                "VSchema differs from spec.vschema: {}",
                vschema_drift.join(", ")
            ));
        }
        let reason = if !denied.is_empty() {
            UNEXPLAINED_DENIED_TABLES
        } else if !rules.is_empty() {
            UNEXPLAINED_ROUTING_RULES
        } else if !vschema_drift.is_empty() {
            VSCHEMA_DRIFT
        } else {
            reasons::DRIFT_DETECTED
        };
        set(
            &mut status,
            types::TOPOLOGY_CONSISTENT,
            ConditionStatus::False,
            reason,
            parts.join("; "),
        );
    } else if !missing_shards.is_empty() {
        set(
            &mut status,
            types::TOPOLOGY_CONSISTENT,
            ConditionStatus::False,
            reasons::SHARD_MISSING,
            format!("shards missing: {}", join_names(missing_shards)),
        );
    } else {
        set(
            &mut status,
            types::TOPOLOGY_CONSISTENT,
            ConditionStatus::True,
            reasons::CONVERGED,
            "no unexplained denied tables or routing rules".to_string(),
        );
    }

    // TabletsHealthy
    let rows: Vec<&TabletStatus> = status.shards.iter().flat_map(|s| &s.tablets).collect();
    let bad: Vec<String> = rows
        .iter()
        .filter(|t| matches!(t.health, ApiHealth::Unhealthy | ApiHealth::Unreachable))
        .map(|t| format!("{} ({:?})", t.alias, t.health))
        .collect();
    let tablets_bad = !bad.is_empty();
    let row_count = rows.len();
    if row_count == 0 {
        set(
            &mut status,
            types::TABLETS_HEALTHY,
            ConditionStatus::Unknown,
            reasons::NO_TABLETS,
            format!("no tablets are registered for keyspace {ks}"),
        );
    } else if tablets_bad {
        set(
            &mut status,
            types::TABLETS_HEALTHY,
            ConditionStatus::False,
            reasons::TABLETS_UNHEALTHY,
            bad.join(", "),
        );
    } else {
        set(
            &mut status,
            types::TABLETS_HEALTHY,
            ConditionStatus::True,
            reasons::TABLETS_HEALTHY,
            format!("{row_count} tablets healthy"),
        );
    }

    // Ready
    let unknown_cells: Vec<&str> = spec
        .cells
        .iter()
        .map(String::as_str)
        .filter(|cell| !observed.cells.contains_key(*cell))
        .collect();
    let (ready, reason, message) = if let Deletion::Refused(why) = deletion {
        (false, reasons::DELETION_REFUSED, why.clone())
    } else if !unknown_cells.is_empty() {
        let known: Vec<&str> = observed.cells.keys().map(String::as_str).collect();
        (
            false,
            reasons::CELL_NOT_FOUND,
            format!(
                "spec.cells names cell(s) with no CellInfo in the global topology: {}; the cells \
                 are: {}",
                unknown_cells.join(", "),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        )
    } else if !exists {
        let what = if creating {
            "creating it"
        } else if options.paused {
            "paused, so not creating it"
        } else {
            "not creating it"
        };
        (
            false,
            reasons::KEYSPACE_NOT_FOUND,
            format!("keyspace {ks} does not exist; {what}"),
        )
    } else if !missing_shards.is_empty() {
        (
            false,
            reasons::SHARD_MISSING,
            format!("shards missing: {}", join_names(missing_shards)),
        )
    } else if !consistent {
        (
            false,
            reasons::DRIFT_DETECTED,
            format!(
                "{} drift finding(s); see status.drift (driftPolicy {:?})",
                findings.len(),
                spec.drift_policy
            ),
        )
    } else if tablets_bad {
        (false, reasons::TABLETS_UNHEALTHY, bad.join(", "))
    } else {
        (
            true,
            reasons::KEYSPACE_READY,
            format!("keyspace {ks} matches the spec"),
        )
    };
    set(
        &mut status,
        types::READY,
        ConditionStatus::from(ready),
        reason,
        message,
    );
    status
}

fn join_names(names: &[&String]) -> String {
    names
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
