//! What an observation means for the workflow: the facts the decisions read.

use super::*;
use std::borrow::Cow;

use crate::vitess::proto::vschema;
use crate::vitess::routing::{owned_rules, routing_state_in_cell};
use crate::vitess::srv_vschema::{CellDifference, srv_vschema_serves};

impl<'a> Facts<'a> {
    pub(super) fn new(d: &'a Desired, o: &'a Observed, m: &'a EngineMemory) -> Self {
        let moved = d.moved();
        let by_table = o.rules_by_table();
        let rules = match derive_workflow_routing_state_by_table(&by_table, &moved) {
            Some(RoutingState::Deleted) => Rules::Absent,
            Some(state) => Rules::State(state),
            None => Rules::Inconsistent,
        };
        let view = routing_view(o);
        let writes = match rules {
            Rules::Absent => None,
            Rules::State(state) => state.placement().map(|p| p.primary),
            Rules::Inconsistent => {
                let sides: BTreeSet<Option<Side>> = moved
                    .tables
                    .iter()
                    .map(|t| {
                        view.write_keyspace(&moved, t)
                            .ok()
                            .and_then(|ks| moved.side_of(&ks))
                    })
                    .collect();
                match sides.into_iter().collect::<Vec<_>>().as_slice() {
                    [Some(side)] => Some(*side),
                    _ => None,
                }
            }
        };
        let mut coverage = BTreeMap::new();
        for side in Side::BOTH {
            for table in &d.tables {
                coverage.insert((side, table.clone()), coverage_of(o.view(side), table));
            }
        }
        let mut cell_reads = BTreeMap::new();
        if let Some(first) = moved.tables.first() {
            for (cell, rules) in o.cell_rules() {
                let switched =
                    |t| cell_reads_switched(rules, &moved.source, first, t).unwrap_or(false);
                cell_reads.insert(
                    cell.to_string(),
                    (
                        switched(TrafficType::Replica),
                        switched(TrafficType::Rdonly),
                    ),
                );
            }
        }
        let mut facts = Facts {
            d,
            o,
            m,
            into_target: SideStreams::of(o.view(Side::Target)),
            into_source: SideStreams::of(o.view(Side::Source)),
            moved,
            by_table,
            rules,
            writes,
            coverage,
            cell_reads,
            invariants: InvariantReport::default(),
        };
        facts.invariants = facts.check_invariants(&view);
        facts
    }

    pub(super) fn cov(&self, side: Side, table: &str) -> DenialCoverage {
        self.coverage
            .get(&(side, table.to_string()))
            .copied()
            .unwrap_or(DenialCoverage::Nowhere)
    }

    pub(super) fn denies_everywhere(&self, side: Side) -> bool {
        self.d
            .tables
            .iter()
            .all(|t| self.cov(side, t) == DenialCoverage::Everywhere)
    }

    pub(super) fn allows_everywhere(&self, side: Side) -> bool {
        self.d
            .tables
            .iter()
            .all(|t| self.cov(side, t) == DenialCoverage::Nowhere)
    }

    pub(super) fn denies_somewhere(&self, side: Side) -> bool {
        !self.allows_everywhere(side)
    }

    pub(super) fn streams_into(&self, side: Side) -> &SideStreams<'a> {
        match side {
            Side::Source => &self.into_source,
            Side::Target => &self.into_target,
        }
    }

    pub(super) fn view(&self, side: Side) -> Option<&'a KeyspaceView> {
        self.o.view(side)
    }

    pub(super) fn keyspace(&self, side: Side) -> &str {
        self.d.keyspace(side)
    }

    /// Shards of `side` whose PRIMARY denial of some moved table is not in the state `op` asks.
    pub(super) fn shards_needing(&self, side: Side, op: DenyOp) -> Vec<String> {
        let Some(view) = self.view(side) else {
            return Vec::new();
        };
        view.shards
            .iter()
            .filter(|s| {
                self.d.tables.iter().any(|t| {
                    let denies = crate::vitess::routing::shard_denies(
                        &s.record,
                        &TableName::from(t.as_str()),
                    );
                    match op {
                        DenyOp::Add => !denies,
                        DenyOp::Remove => denies,
                    }
                })
            })
            .map(|s| s.name.clone())
            .collect()
    }

    pub(super) fn lifecycle_is_active(&self) -> bool {
        matches!(self.d.lifecycle, DesiredLifecycle::Active)
    }

    /// Whether routing rules cover the moved tables while none of this workflow's streams exist
    /// (or could be read): the rules may then be another workflow's, so what this workflow may
    /// do depends on the other workflows on the primaries (the ownership check of `decide`,
    /// and [`has_footprint`](Self::has_footprint)).
    pub(super) fn rules_without_own_streams(&self) -> bool {
        self.rules != Rules::Absent
            && !self.into_target.any_present()
            && !self.into_source.any_present()
    }

    /// Whether this workflow left anything in Vitess: its streams, or the routing rules only it
    /// writes (the keys qualified by its source keyspace; the unqualified and target-qualified
    /// keys of a table are shared with every workflow moving that table into the target). The
    /// invariants are about state the workflow made: a typo in `sourceKeyspace` must not report
    /// another workflow's rules as a single-writer violation of this one.
    ///
    /// Another workflow's streams over the same tables also explain those keys: a workflow
    /// declared in the opposite direction of a running one (its source is the other's target)
    /// finds the other's target-qualified rules under its own source name.
    pub(super) fn has_footprint(&self) -> bool {
        // A primary whose streams could not be read may hold some of this workflow's.
        if self.into_target.any_present()
            || self.into_source.any_present()
            || !self.into_target.unreachable().is_empty()
            || !self.into_source.unreachable().is_empty()
        {
            return true;
        }
        let others_stream_the_tables = Side::BOTH.iter().any(|side| {
            self.primaries(*side)
                .into_iter()
                .any(|(_, primary)| primary.conflicts.as_ref().is_ok_and(|c| !c.is_empty()))
        });
        if others_stream_the_tables {
            return false;
        }
        let source = self.moved.source.as_str();
        let tables = self.moved.tables.iter().map(|t| t.as_str());
        self.by_table.of_tables(tables).into_iter().any(|rule| {
            rule.from_table
                .split_once('.')
                .is_some_and(|(keyspace, table)| {
                    keyspace == source
                        && self
                            .moved
                            .tables
                            .iter()
                            .any(|t| table.split('@').next() == Some(t.as_str()))
                })
        })
    }

    /// Cells named by the spec (source tablet cells, cells of switched reads) that the
    /// topology does not have, sorted.
    pub(super) fn unknown_cells(&self) -> Vec<String> {
        let mut named: BTreeSet<&str> = self.d.source_cells.iter().map(String::as_str).collect();
        for scope in [&self.d.read_cells.replica, &self.d.read_cells.rdonly] {
            if let CellScope::Cells(cells) = scope {
                named.extend(cells.iter().map(String::as_str));
            }
        }
        named
            .into_iter()
            .filter(|cell| !self.o.cells.iter().any(|known| known == cell))
            .map(str::to_string)
            .collect()
    }

    pub(super) fn check_invariants(&self, view: &RoutingView) -> InvariantReport {
        let applicable = !matches!(self.rules, Rules::Absent) && self.has_footprint();
        let mut report = InvariantReport {
            applicable,
            tables: Vec::new(),
            inside_lock_window: false,
        };
        if !applicable {
            return report;
        }
        for table in &self.d.tables {
            let source = self.cov(Side::Source, table);
            let target = self.cov(Side::Target, table);
            let name = TableName::from(table.as_str());
            let (writes_to, violation) = match view.write_keyspace(&self.moved, &name) {
                Ok(keyspace) => {
                    let side = self.moved.side_of(&keyspace);
                    let result = check_single_writer(&self.moved, &name, &keyspace, source, target);
                    let violation = match result {
                        Ok(()) => None,
                        // Ending a workflow removes denials on purpose; only an outage (writes
                        // routed to a denying keyspace) counts then.
                        Err(SingleWriterViolation::OtherSideAcceptsWrites { .. })
                            if !self.lifecycle_is_active() =>
                        {
                            None
                        }
                        Err(v) => Some(v.to_string()),
                    };
                    (side, violation)
                }
                Err(e) => (None, Some(format!("writes to {table} do not resolve: {e}"))),
            };
            report.tables.push(TableInvariant {
                table: table.clone(),
                writes_to,
                source,
                target,
                violation,
            });
        }
        report.inside_lock_window =
            self.o.locks.both_keyspaces() && report.tables.iter().any(|t| t.violation.is_some());
        report
    }

    /// Whether a tablet read its shard's current record: it acknowledged a refresh after the
    /// record's last change. A Tablet record newer than the Shard record is no evidence: a
    /// tablet rewrites its record on a type change (a reparent's promotion), a tag or port
    /// change or a publish retry without re-reading the shard, so a promoted replica that missed
    /// a refresh looks fresh by its record. So a shard the engine remembers nothing of (a fresh
    /// controller, after a crash) has every tablet refreshed once, and from then on only
    /// acknowledgements count (a reparent rewrites the Shard record, which asks for new ones).
    pub(super) fn fresh(&self, keyspace: &str, shard: &ShardView, tablet: &TabletView) -> bool {
        self.m
            .refreshed(keyspace, &shard.name, shard.version, &tablet.alias)
    }

    /// Whether the engine remembers nothing about refreshes of `tablet`'s shard (an empty
    /// ledger after a restart), as opposed to remembering an older record or a missing
    /// acknowledgement.
    pub(super) fn refresh_unremembered(&self, tablet: &TabletTarget) -> bool {
        self.view(tablet.side)
            .is_some_and(|view| !self.m.remembers_refresh_of(&view.name, &tablet.shard))
    }

    /// Reachable tablets of `side` that may still serve stale denied tables.
    pub(super) fn stale_tablets(&self, side: Side) -> Vec<TabletTarget> {
        let Some(view) = self.view(side) else {
            return Vec::new();
        };
        if !view.tablets_contacted {
            return Vec::new();
        }
        let mut out = Vec::new();
        for shard in &view.shards {
            for tablet in &shard.tablets {
                if tablet.reachable() && !self.fresh(&view.name, shard, tablet) {
                    out.push(TabletTarget {
                        side,
                        shard: shard.name.clone(),
                        alias: tablet.alias.clone(),
                    });
                }
            }
        }
        out
    }

    /// The placement of reads per the global rules.
    pub(super) fn global_reads(&self) -> Option<(Side, Side)> {
        match self.rules {
            Rules::State(s) => s.placement().map(|p| (p.replica, p.rdonly)),
            _ => None,
        }
    }

    /// Whether the reads seen in every cell are where the spec wants them.
    pub(super) fn cells_read_as_desired(&self) -> bool {
        self.cell_reads.iter().all(|(cell, &(replica, rdonly))| {
            replica == self.d.reads_on_target_in(TrafficType::Replica, cell)
                && rdonly == self.d.reads_on_target_in(TrafficType::Rdonly, cell)
        })
    }

    pub(super) fn reads_as_desired(&self) -> bool {
        self.global_reads() == Some((self.d.traffic.replica, self.d.traffic.rdonly))
            && self.cells_read_as_desired()
    }

    /// Whether every cell reads both types from the target.
    pub(super) fn reads_on_target_everywhere(&self) -> bool {
        self.global_reads() == Some((Side::Target, Side::Target))
            && self.cell_reads.values().all(|&(r, d)| r && d)
    }

    /// The routing state to write for `placement`, keeping the current spelling of "writes at
    /// the source" (forward or reversed).
    pub(super) fn state_for(&self, placement: TrafficPlacement) -> RoutingState {
        let reversed = match self.rules {
            Rules::State(RoutingState::Routed(r)) => r.is_writes_reversed(),
            _ => false,
        };
        RoutingState::Routed(RoutedTraffic::new(placement, reversed))
    }

    /// The routing rules `cell` should serve, from the global rules and the declared read
    /// cells.
    pub(super) fn desired_cell_rules(&self, cell: &str) -> Cow<'_, vschema::RoutingRules> {
        match self.rules {
            Rules::State(state) => Cow::Owned(cell_routing_rules(
                &self.o.routing_rules,
                &self.moved,
                state,
                &self.d.read_cells,
                cell,
            )),
            _ => Cow::Borrowed(self.o.routing_rules.as_ref()),
        }
    }

    /// The workflow's read keys (`@replica`, `@rdonly` of `T`, `S.T`, `K.T`): per-cell read
    /// switching is progress, not staleness, so the stale check leaves them out.
    pub(super) fn read_keys(&self) -> BTreeSet<String> {
        let mut keys = BTreeSet::new();
        for t in &self.d.tables {
            for q in [
                String::new(),
                format!("{}.", self.moved.source),
                format!("{}.", self.moved.target),
            ] {
                keys.insert(format!("{q}{t}@replica"));
                keys.insert(format!("{q}{t}@rdonly"));
            }
        }
        keys
    }

    /// The cells whose `SrvVSchema` differs from what the global records and this workflow's
    /// read cells call for (this workflow's read keys aside: switching reads cell by cell is
    /// progress). With routing rules in a known state, each cell is compared at the cost of the
    /// workflow's own keys, against a comparison with the global records shared by every pass
    /// ([`CellDifference`]); otherwise record against record.
    pub(super) fn stale_cells(&self) -> Vec<String> {
        let read_keys = self.read_keys();
        self.o
            .srv_vschemas
            .iter()
            .filter(|(cell, current)| {
                let Some(current) = current else {
                    return true;
                };
                let Rules::State(state) = self.rules else {
                    return !srv_vschema_serves(
                        current,
                        &self.o.srv_vschema_rollup,
                        &self.desired_cell_rules(cell),
                        &read_keys,
                    );
                };
                let difference = match self.o.cell_differences.0.get(*cell) {
                    Some(shared) => shared.clone(),
                    None => Arc::new(CellDifference::new(
                        current.clone(),
                        &self.o.srv_vschema_rollup,
                        &self.o.routing_rules,
                    )),
                };
                let in_cell = routing_state_in_cell(state, &self.d.read_cells, cell);
                let (owned, wanted) = owned_rules(&self.moved, in_cell);
                !difference.serves(&owned, &wanted, &read_keys)
            })
            .map(|(cell, _)| cell.clone())
            .collect()
    }

    /// Reachable primaries of `side` whose tablet record is older than the shard and that did not
    /// acknowledge a refresh: their denied tables may be stale.
    pub(super) fn unrefreshed_primaries(&self, side: Side) -> Vec<TabletTarget> {
        let Some(view) = self.view(side) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for shard in &view.shards {
            if let Some(t) = shard.primary_tablet()
                && !self.fresh(&view.name, shard, t)
            {
                out.push(TabletTarget {
                    side,
                    shard: shard.name.clone(),
                    alias: t.alias.clone(),
                });
            }
        }
        out
    }

    /// Receiving shards of `to` that lack a stream from a shard of the other side they overlap:
    /// a catch-up would never wait for that shard, so its writes would be lost.
    pub(super) fn missing_sources(&self, to: Side) -> Vec<String> {
        let (Some(from_view), Some(to_view)) = (self.view(to.other()), self.view(to)) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (shard, streams) in self.streams_into(to).present() {
            let has: BTreeSet<&str> = streams
                .streams
                .iter()
                .map(|s| s.source.shard.as_str())
                .collect();
            let missing: Vec<String> = source_shards_of(from_view, to_view, &shard.name)
                .into_iter()
                .filter(|s| !has.contains(s.as_str()))
                .collect();
            if !missing.is_empty() {
                out.push(format!(
                    "shard {} of keyspace {} has no stream from shard(s) {}",
                    shard.name,
                    self.keyspace(to),
                    missing.join(", ")
                ));
            }
        }
        out
    }

    /// I2 for a cutover from `from` to `to`, proven from live observation: `from` denies every
    /// moved table on every shard and its primaries read that denial, so their positions are
    /// frozen; and every stream into `to` has applied its source shard's current position.
    pub(super) fn i2_proven(&self, from: Side, to: Side) -> Result<(), String> {
        if !self.denies_everywhere(from) {
            return Err(format!(
                "keyspace {} does not deny the moved tables on every shard",
                self.keyspace(from)
            ));
        }
        let unrefreshed = self.unrefreshed_primaries(from);
        if !unrefreshed.is_empty() {
            return Err(format!(
                "primaries {} of keyspace {} have not been refreshed since the denial",
                aliases(&unrefreshed),
                self.keyspace(from)
            ));
        }
        let Some(from_view) = self.view(from) else {
            return Err(format!("keyspace {} is gone", self.keyspace(from)));
        };
        let into = self.streams_into(to);
        if !into.all_present() {
            return Err(format!(
                "not every primary of keyspace {} has its streams",
                self.keyspace(to)
            ));
        }
        // During the copy phase a stream's position is the snapshot of its last copy cycle: it
        // says nothing about the rows still to copy (Vitess refuses SwitchTraffic then too).
        if into.copying() {
            return Err(format!(
                "the streams into keyspace {} are still copying rows",
                self.keyspace(to)
            ));
        }
        let missing = self.missing_sources(to);
        if !missing.is_empty() {
            return Err(missing.join("; "));
        }
        for (shard, stream) in into.streams() {
            let Some(source) = from_view.shard(&stream.source.shard) else {
                return Err(format!(
                    "stream {} on {} reads from unknown shard {}",
                    stream.id, shard.name, stream.source.shard
                ));
            };
            let Some(primary) = &source.primary else {
                return Err(format!("shard {} has no primary", source.name));
            };
            let at = primary
                .position
                .as_ref()
                .map_err(|e| format!("position of {}: {e}", primary.alias))?;
            let applied = Position::parse(&stream.position)
                .map_err(|e| format!("stream {} position: {e}", stream.id))?;
            if !applied.contains(at) {
                return Err(format!(
                    "stream {} on shard {} has not applied {} of {}",
                    stream.id, shard.name, at, primary.alias
                ));
            }
        }
        Ok(())
    }

    /// Tablets (of sides whose tablets were contacted) that did not answer FullStatus.
    pub(super) fn unreachable_tablets(&self) -> Vec<String> {
        let mut out = Vec::new();
        for side in Side::BOTH {
            let Some(view) = self.view(side) else {
                continue;
            };
            if !view.tablets_contacted {
                continue;
            }
            for shard in &view.shards {
                for t in &shard.tablets {
                    match &t.health {
                        Some(Ok(_)) | None => {}
                        Some(Err(e)) => {
                            out.push(format!("{} ({}/{}): {e}", t.alias, view.name, shard.name))
                        }
                    }
                }
            }
        }
        out
    }

    /// Primaries that report a set type other than PRIMARY (an unset type is unknown, #18031).
    pub(super) fn primaries_not_serving(&self) -> Vec<String> {
        let mut out = Vec::new();
        for side in Side::BOTH {
            let Some(view) = self.view(side) else {
                continue;
            };
            for shard in &view.shards {
                let Some(t) = shard.primary_tablet() else {
                    continue;
                };
                if let Some(Ok(health)) = &t.health
                    && health.primary_type_mismatch()
                {
                    out.push(format!(
                        "{} ({}/{}) serves as {:?}",
                        t.alias, view.name, shard.name, health.reported_type
                    ));
                }
            }
        }
        out
    }

    pub(super) fn shards_without_primary(&self, side: Side) -> Vec<String> {
        self.view(side)
            .map(|v| {
                v.shards
                    .iter()
                    .filter(|s| s.primary.is_none())
                    .map(|s| s.name.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(super) fn primaries(&self, side: Side) -> Vec<(&'a ShardView, &'a PrimaryView)> {
        self.view(side)
            .map(|v| {
                v.shards
                    .iter()
                    .filter_map(|s| s.primary.as_ref().map(|p| (s, p)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Tables missing per primary of `side`, from the schema observation. `Err` lists primaries
    /// whose schema could not be read.
    pub(super) fn missing_tables(
        &self,
        side: Side,
    ) -> Result<BTreeMap<String, Vec<String>>, Vec<String>> {
        let mut missing = BTreeMap::new();
        let mut errors = Vec::new();
        for (shard, primary) in self.primaries(side) {
            match &primary.schema {
                None => {}
                Some(Err(e)) => errors.push(format!("{} ({e})", primary.alias)),
                Some(Ok(present)) => {
                    let absent: Vec<String> = self
                        .d
                        .tables
                        .iter()
                        .filter(|t| !present.contains(*t))
                        .cloned()
                        .collect();
                    if !absent.is_empty() {
                        missing.insert(shard.name.clone(), absent);
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok(missing)
        } else {
            Err(errors)
        }
    }

    /// Tables still present on some primary of `side` (the schema must have been observed).
    pub(super) fn tables_present(
        &self,
        side: Side,
    ) -> Result<BTreeMap<String, Vec<String>>, Vec<String>> {
        let mut present = BTreeMap::new();
        let mut errors = Vec::new();
        for (shard, primary) in self.primaries(side) {
            match &primary.schema {
                None => errors.push(format!("{} (schema not observed)", primary.alias)),
                Some(Err(e)) => errors.push(format!("{} ({e})", primary.alias)),
                Some(Ok(tables)) if !tables.is_empty() => {
                    present.insert(shard.name.clone(), tables.iter().cloned().collect());
                }
                Some(Ok(_)) => {}
            }
        }
        if errors.is_empty() {
            Ok(present)
        } else {
            Err(errors)
        }
    }

    /// Moved tables present on some target primary that this workflow did not create (from
    /// the observed schemas; a primary whose schema was not read contributes nothing).
    pub(super) fn foreign_target_tables(&self) -> BTreeSet<String> {
        self.primaries(Side::Target)
            .into_iter()
            .filter_map(|(_, primary)| match &primary.schema {
                Some(Ok(tables)) => Some(tables),
                _ => None,
            })
            .flatten()
            .filter(|t| !self.m.created_tables.contains(*t))
            .cloned()
            .collect()
    }

    /// Whether a table this workflow created is still on some target primary.
    pub(super) fn created_target_tables_present(&self) -> bool {
        self.primaries(Side::Target)
            .into_iter()
            .any(|(_, primary)| {
                matches!(&primary.schema, Some(Ok(tables))
                if tables.iter().any(|t| self.m.created_tables.contains(t)))
            })
    }

    /// Other workflows covering the moved tables: rules of the moved tables that point outside
    /// the workflow, and other streams on either side's primaries.
    pub(super) fn conflicts(&self) -> Vec<String> {
        let mut out = Vec::new();
        let tables: BTreeSet<&str> = self.d.tables.iter().map(String::as_str).collect();
        for rule in self.by_table.of_tables(tables.iter().copied()) {
            // Every rule here names one of the tables (`RulesByTable::of_tables`).
            let key = rule.from_table.split('@').next().unwrap_or_default();
            let qualifier = key.split_once('.').map(|(q, _)| q);
            if qualifier
                .is_some_and(|q| q != self.moved.source.as_str() && q != self.moved.target.as_str())
            {
                out.push(format!(
                    "routing rule {} belongs to another keyspace",
                    rule.from_table
                ));
                continue;
            }
            for to in &rule.to_tables {
                let ks = to.split('.').next().unwrap_or_default();
                if ks != self.moved.source.as_str() && ks != self.moved.target.as_str() {
                    out.push(format!("routing rule {} points to {to}", rule.from_table));
                }
            }
        }
        for side in Side::BOTH {
            for (shard, primary) in self.primaries(side) {
                if let Ok(others) = &primary.conflicts {
                    for w in others {
                        out.push(format!(
                            "workflow {} on {}/{} streams one of the moved tables",
                            w.workflow,
                            self.keyspace(side),
                            shard.name
                        ));
                    }
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// Denied tables on the moved tables for tablet types other than PRIMARY: MoveTables never
    /// writes those, so nothing explains them.
    pub(super) fn foreign_denials(&self) -> Vec<String> {
        let mut out = Vec::new();
        for side in Side::BOTH {
            let Some(view) = self.view(side) else {
                continue;
            };
            for shard in &view.shards {
                for control in &shard.record.tablet_controls {
                    if control.tablet_type == TabletType::Primary as i32 {
                        continue;
                    }
                    for t in &control.denied_tables {
                        if self.d.tables.contains(t) {
                            let tt = TabletType::try_from(control.tablet_type)
                                .map(|t| t.as_str_name())
                                .unwrap_or("UNKNOWN");
                            out.push(format!("{}/{} denies {t} for {tt}", view.name, shard.name));
                        }
                    }
                }
            }
        }
        out
    }
}

impl Facts<'_> {
    /// The moved tables that deleting the workflow's routing rules would leave unresolvable
    /// (I6): without a rule, a name that two keyspaces' VSchemas list is ambiguous to vtgate, so
    /// unqualified queries of a table that resolved through the rules would start failing.
    pub(super) fn unresolvable_without_rules(&self) -> Vec<String> {
        let without =
            update_routing_rules(&self.o.routing_rules, &self.moved, RoutingState::Deleted).rules;
        let now = routing_view(self.o);
        let after = RoutingView::new(Some(&without), &self.o.srv_vschema_rollup.keyspaces);
        let traffic = [
            TrafficType::Primary,
            TrafficType::Replica,
            TrafficType::Rdonly,
        ];
        self.d
            .tables
            .iter()
            .filter(|t| {
                traffic.iter().any(|&tt| {
                    now.resolve_name(t, tt).is_ok() && after.resolve_name(t, tt).is_err()
                })
            })
            .cloned()
            .collect()
    }
}
