//! The VReplication engine of a simulated primary: one controller per `_vt.vreplication` row
//! that is not Stopped.
//!
//! A controller finds its source tablet through the topology (the source shard's primary from
//! its Shard record, or tablets of the stream's types listed in ShardReplication of the stream's
//! cells), then:
//!
//! * **Copy phase** (`pos` empty or `_vt.copy_state` rows left). Tables are copied in primary-key
//!   order in batches. At the start of each copy cycle, and of each table within it, the stream
//!   **fast-forwards**: in one target transaction it applies the source events since `pos` to
//!   the rows already copied and sets `pos` to the source's executed GTID set, and it takes a
//!   snapshot of the table's rows at that set (vcopier's consistent snapshot). Each batch then
//!   inserts the snapshot's rows after the bookmark and writes a new `_vt.copy_state` bookmark in
//!   one target transaction, leaving `pos` where it is. So the target always equals the source
//!   at `pos` for every key up to the bookmark, which is what makes the copy consistent under
//!   concurrent writes and every row copied exactly once (a second insert of a key fails with
//!   MySQL's duplicate-key error, it is not absorbed).
//!   A cycle is bounded by time (the copy-phase timer: it ends normally, no message) and/or,
//!   as a fault, by rows (it ends with MySQL error 3024 in the stream's message, as a source
//!   query cut by `MAX_EXECUTION_TIME` does); the next cycle catches up from `pos` and resumes
//!   from the bookmark.
//! * **Replication** (no copy work left): the source's binlog events after `pos` are applied
//!   (filtered by table and key range) once they are `replication_lag` old, each as a target
//!   transaction with the target's own GTID that saves `pos` with it; events the filter drops
//!   move the position in memory only, saved once `unrelated_save_after` (vplayer's one-second
//!   idle timeout) has passed since the last save, or at a stop position;
//!   `transaction_timestamp`, `time_updated` and the heartbeat are kept up to date; `stop_pos`
//!   stops the stream.
//!
//! Row filters follow the stream's BinlogSource, never the target shard: a rule
//! `select * from t where in_keyrange(id, 'reverse_bits', '-80')` (or a key-range filter, or the
//! BinlogSource key range) limits rows; a rule without one copies every row, as Vitess would.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;
use vtmove::vitess::proto::binlogdata::{BinlogSource, Rule, VReplicationWorkflowState};
use vtmove::vitess::proto::topodata::{KeyRange, TabletType};
use vtmove::vitess::tablet::gtid::{GtidSet, Position};
use vtmove::vitess::topo::tablet_alias_string;

use crate::data::Row;
use crate::keyspace_id::{REVERSE_BITS, key_range_contains, parse_key_range, reverse_bits};
use crate::mysqld::{Change, Event, MysqlState, Mysqld};
use crate::sidecar::{VReplRow, lastpk_prototext, now_secs, parse_lastpk, parse_tablet_types};
use crate::tablet::{Incarnation, TabletCore};

/// The message vttablet's player stores when a stream stops on reaching `stop_pos` while
/// applying events: "Stopped at position <stop_pos>".
pub fn stopped_at_position(stop_pos: &str) -> String {
    format!("Stopped at position {stop_pos}")
}

/// The message stored when a stream starts with `pos` already at or past `stop_pos`.
pub fn stop_position_already_reached(pos: &str, stop_pos: &str) -> String {
    format!("Stop position {stop_pos} already reached: {pos}")
}

/// Opens the engine of a (re)started primary: once `engine_open_delay` has passed, starts a
/// controller for every stream that is neither Stopped nor Error. As in vttablet, a restart
/// does not revive a stream in Error; only an update of its row does.
pub(crate) fn start_engine(core: &Arc<TabletCore>, inc: &Arc<Incarnation>) {
    let delay = core.config.vreplication.engine_open_delay;
    if delay.is_zero() {
        open_engine(core, inc);
        return;
    }
    let (core, weak) = (core.clone(), Arc::downgrade(inc));
    let token = inc.token.clone();
    let task = tokio::spawn(async move {
        tokio::select! {
            _ = token.cancelled() => {}
            _ = tokio::time::sleep(delay) => {
                if let Some(inc) = weak.upgrade() {
                    open_engine(&core, &inc);
                }
            }
        }
    });
    inc.tasks
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(task);
}

fn open_engine(core: &Arc<TabletCore>, inc: &Arc<Incarnation>) {
    let ids: Vec<i32> = core
        .mysqld
        .lock()
        .sidecar
        .vreplication
        .values()
        .filter(|r| {
            r.state != VReplicationWorkflowState::Stopped
                && r.state != VReplicationWorkflowState::Error
        })
        .map(|r| r.id)
        .collect();
    for id in ids {
        spawn_controller(core, inc, id);
    }
}

/// Restarts (or stops) the controllers of `ids` after their rows changed, as Vitess's engine
/// does on every update of a `_vt.vreplication` row.
pub(crate) fn restart_streams(core: &Arc<TabletCore>, ids: &[i32]) {
    let Some(inc) = core.incarnation() else {
        return;
    };
    for id in ids {
        if let Some(t) = inc
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id)
        {
            t.cancel();
        }
        let run = core
            .mysqld
            .lock()
            .sidecar
            .vreplication
            .get(id)
            .is_some_and(|r| r.state != VReplicationWorkflowState::Stopped);
        if run {
            spawn_controller(core, &inc, *id);
        }
    }
}

fn spawn_controller(core: &Arc<TabletCore>, inc: &Arc<Incarnation>, id: i32) {
    let token = inc.token.child_token();
    inc.streams
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, token.clone());
    let ctl = Controller {
        core: core.clone(),
        id,
        token,
        source: None,
        started_replicating: false,
        last_heartbeat: None,
        table_snapshot: None,
        applied: None,
        last_saved: Instant::now(),
    };
    let task = tokio::spawn(ctl.run());
    let mut tasks = inc.tasks.lock().unwrap_or_else(|e| e.into_inner());
    tasks.retain(|t| !t.is_finished());
    tasks.push(task);
}

/// How one table of a stream is filtered.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TablePlan {
    /// Table on the target.
    pub target: String,
    /// Table on the source.
    pub source: String,
    /// Key range rows must fall in (`None`: every row).
    pub key_range: Option<KeyRange>,
}

/// Builds the table plans of a BinlogSource against the target's tables (by name: a stream
/// plans on every step, so this costs what its rules name, not what the target holds).
pub(crate) fn plan_tables<T>(
    bls: &BinlogSource,
    target_tables: &BTreeMap<String, T>,
) -> Result<Vec<TablePlan>, String> {
    let default_range = bls.key_range.clone();
    let mut plans: Vec<TablePlan> = Vec::new();
    let rules: &[Rule] = bls.filter.as_ref().map_or(&[], |f| &f.rules);
    // Sets, not lists: one stream may carry thousands of rules, and this runs on every step.
    let excluded: HashSet<&str> = rules
        .iter()
        .filter(|rule| rule.filter.trim().eq_ignore_ascii_case("exclude"))
        .map(|rule| rule.r#match.as_str())
        .collect();
    let mut planned: HashSet<String> = HashSet::new();
    let mut push = |plan: TablePlan| {
        if !excluded.contains(plan.target.as_str()) && planned.insert(plan.target.clone()) {
            plans.push(plan);
        }
    };
    for rule in rules {
        let filter = rule.filter.trim();
        if filter.eq_ignore_ascii_case("exclude") {
            continue;
        }
        let names: Vec<String> = if let Some(re) = rule.r#match.strip_prefix('/') {
            let re = regex::Regex::new(&format!("^(?:{re})$"))
                .map_err(|e| format!("invalid table regexp {:?}: {e}", rule.r#match))?;
            target_tables
                .keys()
                .filter(|t| re.is_match(t))
                .cloned()
                .collect()
        } else {
            vec![rule.r#match.clone()]
        };
        for name in names {
            let (source, key_range) = if filter.is_empty() {
                (name.clone(), default_range.clone())
            } else if filter.to_ascii_lowercase().starts_with("select") {
                parse_select_filter(filter, &name, default_range.clone())?
            } else {
                (name.clone(), Some(parse_key_range(filter)?))
            };
            push(TablePlan {
                target: name,
                source,
                key_range,
            });
        }
    }
    for t in &bls.tables {
        push(TablePlan {
            target: t.clone(),
            source: t.clone(),
            key_range: default_range.clone(),
        });
    }
    if plans.is_empty() {
        return Err("the stream's filter selects no table".into());
    }
    for p in &plans {
        if !target_tables.contains_key(&p.target) {
            return Err(format!("table {} not found in the target schema", p.target));
        }
    }
    Ok(plans)
}

/// Reads `select ... from t [where in_keyrange(...)]`: the source table and the key range.
fn parse_select_filter(
    filter: &str,
    target: &str,
    default_range: Option<KeyRange>,
) -> Result<(String, Option<KeyRange>), String> {
    let lower = filter.to_ascii_lowercase();
    let from = lower
        .find(" from ")
        .ok_or_else(|| format!("unsupported filter {filter:?}: no FROM"))?;
    let rest = filter[from + 6..].trim_start();
    // A backquoted name runs to its closing backquote (it may hold `-` or be a keyword).
    let mut table = String::new();
    let mut in_quotes = false;
    for c in rest.chars() {
        match c {
            '`' => in_quotes = !in_quotes,
            c if in_quotes || c.is_ascii_alphanumeric() || c == '_' || c == '$' || c == '.' => {}
            _ => break,
        }
        table.push(c);
    }
    // As vttablet's parser: an unquoted reserved word is not a name.
    let syntax_error = |word: &str| {
        format!(
            "syntax error at position {} near '{word}' in filter {filter:?}",
            from + 6 + word.len()
        )
    };
    if let Some(word) = table.split('.').find(|p| crate::sql::is_reserved(p)) {
        return Err(syntax_error(word));
    }
    let table = crate::data::unquote_ident(&table);
    let table = table.rsplit('.').next().unwrap_or(target).to_owned();
    let mut range = default_range;
    if let Some(at) = lower.find("in_keyrange(") {
        let args_start = at + "in_keyrange(".len();
        let close = filter[args_start..]
            .find(')')
            .ok_or_else(|| format!("unsupported filter {filter:?}: unclosed in_keyrange"))?;
        let args: Vec<String> = filter[args_start..args_start + close]
            .split(',')
            .map(|a| a.trim().trim_matches('\'').trim_matches('"').to_owned())
            .collect();
        let kr = match args.as_slice() {
            [kr] => kr.clone(),
            [column, _, _] if crate::sql::is_reserved(column) => {
                return Err(syntax_error(column));
            }
            [_col, vindex, kr] => {
                // A vindex type (`reverse_bits`), or, as Vitess's materializer writes it, a
                // vindex of a keyspace's VSchema (`customer.reverse_bits`): every sharded
                // VSchema vtsim writes names its `reverse_bits` vindex after its type.
                let name = vindex.rsplit_once('.').map_or(vindex.as_str(), |(_, n)| n);
                if !name.eq_ignore_ascii_case(REVERSE_BITS) {
                    return Err(format!(
                        "unsupported vindex {vindex:?} in filter {filter:?}: vtsim shards with {REVERSE_BITS} only"
                    ));
                }
                kr.clone()
            }
            _ => return Err(format!("unsupported in_keyrange arguments in {filter:?}")),
        };
        range = Some(parse_key_range(&kr)?);
    } else if lower.contains(" where ") {
        return Err(format!(
            "unsupported filter {filter:?}: only in_keyrange conditions are simulated"
        ));
    }
    Ok((table, range))
}

/// Where a copy of one table stands.
#[derive(Debug, Clone, PartialEq)]
enum CopyPos {
    /// No copy_state row: copied (or never part of the copy).
    Done,
    /// Not started (lastpk NULL).
    NotStarted,
    /// Copied up to this key.
    After(i64),
}

fn copy_positions(st: &MysqlState, id: i32) -> BTreeMap<String, CopyPos> {
    st.sidecar
        .copy_progress(id)
        .into_iter()
        .map(|(t, pk)| {
            let pos = match pk.as_deref() {
                None => CopyPos::NotStarted,
                Some(text) => parse_lastpk(text).map_or(CopyPos::NotStarted, CopyPos::After),
            };
            (t, pos)
        })
        .collect()
}

/// The target changes one source event implies, given the copy progress.
fn filter_event(
    event: &Event,
    plans: &[TablePlan],
    progress: &BTreeMap<String, CopyPos>,
) -> Vec<Change> {
    let mut out = Vec::new();
    for change in &event.changes {
        let Some((table, pk)) = change.row_table() else {
            // DDL is not replayed (on_ddl IGNORE).
            continue;
        };
        let Some(plan) = plans.iter().find(|p| p.source == table) else {
            continue;
        };
        if !key_range_contains(plan.key_range.as_ref(), &reverse_bits(pk)) {
            continue;
        }
        let copied = match progress.get(&plan.target).unwrap_or(&CopyPos::Done) {
            CopyPos::Done => true,
            CopyPos::NotStarted => false,
            CopyPos::After(last) => pk <= *last,
        };
        if !copied {
            // The copy will read the row's current version later.
            continue;
        }
        let target = plan.target.clone();
        out.push(match change {
            Change::Insert { row, .. } => Change::Insert {
                table: target,
                pk,
                row: row.clone(),
            },
            Change::Update { row, .. } => Change::Update {
                table: target,
                pk,
                row: row.clone(),
            },
            _ => Change::Delete { table: target, pk },
        });
    }
    out
}

struct SourceBinding {
    alias: String,
    tablet: Arc<TabletCore>,
    mysqld: Arc<Mysqld>,
    /// Index of the first binlog event of the source not yet known to be in `pos`.
    cursor: usize,
}

enum Next {
    Continue,
    Wait(Duration),
    Done,
}

struct Controller {
    core: Arc<TabletCore>,
    id: i32,
    token: CancellationToken,
    source: Option<SourceBinding>,
    started_replicating: bool,
    last_heartbeat: Option<Instant>,
    /// The rows of the table being copied, as of the position the copy last fast-forwarded to:
    /// batches read from it, so `pos` moves only at those fast-forwards (each cycle's start and
    /// each table's), not per batch, as vcopier's consistent snapshot does.
    table_snapshot: Option<TableSnapshot>,
    /// During replication, the position applied in memory when it is ahead of the saved one
    /// (only dropped events since the last save).
    applied: Option<GtidSet>,
    /// When `pos` was last saved during replication.
    last_saved: Instant,
}

/// A copy of one source table's rows taken at a fast-forward.
struct TableSnapshot {
    table: String,
    rows: BTreeMap<i64, Row>,
}

fn parse_pos(text: &str) -> Result<GtidSet, String> {
    Position::parse(text)
        .map(|p| p.gtids)
        .map_err(|e| format!("invalid position {text:?}: {e}"))
}

impl Controller {
    fn row(&self) -> Option<VReplRow> {
        self.core
            .mysqld
            .lock()
            .sidecar
            .vreplication
            .get(&self.id)
            .cloned()
    }

    /// Runs `f` on the stream's row under the target lock, unless this controller was replaced
    /// or the row was stopped or deleted meanwhile (then `None`).
    fn with_row<R>(&self, f: impl FnOnce(&Mysqld, &mut MysqlState) -> R) -> Option<R> {
        let mysqld = &self.core.mysqld;
        let result = {
            let mut st = mysqld.lock();
            if self.token.is_cancelled() {
                return None;
            }
            match st.sidecar.vreplication.get(&self.id) {
                Some(r) if r.state != VReplicationWorkflowState::Stopped => {}
                _ => return None,
            }
            f(mysqld, &mut st)
        };
        mysqld.notify();
        Some(result)
    }

    fn set_state(&self, state: VReplicationWorkflowState, message: &str) {
        let id = self.id;
        self.with_row(|_, st| {
            if let Some(r) = st.sidecar.vreplication.get_mut(&id) {
                r.state = state;
                r.message = message.to_owned();
                r.time_updated = now_secs();
            }
        });
    }

    fn set_message(&self, message: &str) {
        let id = self.id;
        self.with_row(|_, st| {
            if let Some(r) = st.sidecar.vreplication.get_mut(&id)
                && r.message != message
            {
                r.message = message.to_owned();
                r.time_updated = now_secs();
            }
        });
    }

    async fn run(mut self) {
        loop {
            if self.token.is_cancelled() {
                return;
            }
            let Some(row) = self.row() else {
                return;
            };
            if row.state == VReplicationWorkflowState::Stopped {
                return;
            }
            let next = match self.step(&row).await {
                Ok(next) => next,
                Err(StepError::Retry(message)) => {
                    self.set_message(&message);
                    Next::Wait(self.core.config.vreplication.retry_delay)
                }
                Err(StepError::Fatal(message)) => {
                    tracing::warn!(tablet = %self.core.alias_string, stream = self.id, %message, "Simulated stream failed");
                    self.set_state(VReplicationWorkflowState::Error, &message);
                    Next::Done
                }
            };
            match next {
                Next::Continue => tokio::task::yield_now().await,
                Next::Done => return,
                Next::Wait(d) => {
                    let mut wake = match &self.source {
                        Some(s) => s.mysqld.subscribe(),
                        None => self.core.mysqld.subscribe(),
                    };
                    wake.borrow_and_update();
                    tokio::select! {
                        _ = self.token.cancelled() => return,
                        _ = wake.changed() => {}
                        _ = tokio::time::sleep(d) => {}
                    }
                }
            }
        }
    }

    async fn bind_source(&mut self, row: &VReplRow) -> Result<(), StepError> {
        if let Some(s) = &self.source {
            match s.tablet.reachable_mysqld() {
                Ok(m) if Arc::ptr_eq(&m, &s.mysqld) => return Ok(()),
                _ => self.source = None,
            }
        }
        let tablet = self.pick_source(row).await?;
        let mysqld = tablet
            .reachable_mysqld()
            .map_err(|e| StepError::Retry(format!("Error connecting to the source tablet: {e}")))?;
        self.source = Some(SourceBinding {
            alias: tablet.alias_string.clone(),
            tablet,
            mysqld,
            cursor: 0,
        });
        Ok(())
    }

    /// The tablet picker: candidates from the topology, filtered to reachable ones.
    async fn pick_source(&self, row: &VReplRow) -> Result<Arc<TabletCore>, StepError> {
        let (mut types, mut in_order) = parse_tablet_types(&row.tablet_types);
        if types.is_empty() {
            // vttablet's default source types: replicas first, then the primary.
            types = vec![TabletType::Replica, TabletType::Primary];
            in_order = true;
        }
        let cells: Vec<String> = row
            .cell
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect();
        let cells = if cells.is_empty() {
            vec![self.core.alias.cell.clone()]
        } else {
            cells
        };
        let (ks, shard) = (&row.source.keyspace, &row.source.shard);
        let topo = &self.core.topo;
        let mut found: Vec<Arc<TabletCore>> = Vec::new();
        for t in &types {
            let mut of_type = Vec::new();
            if *t == TabletType::Primary {
                if let Ok(s) = topo.get_shard(ks, shard).await
                    && let Some(alias) = &s.value.primary_alias
                    && let Some(tablet) = self.core.registry.get(&tablet_alias_string(alias))
                {
                    of_type.push(tablet);
                }
            } else {
                for cell in &cells {
                    let Ok(rep) = topo.get_shard_replication(cell, ks, shard).await else {
                        continue;
                    };
                    for node in rep.value.nodes {
                        let Some(alias) = node.tablet_alias else {
                            continue;
                        };
                        let Ok(record) = topo.get_tablet(&alias).await else {
                            continue;
                        };
                        if record.value.r#type != *t as i32 {
                            continue;
                        }
                        if let Some(tablet) = self.core.registry.get(&tablet_alias_string(&alias)) {
                            of_type.push(tablet);
                        }
                    }
                }
            }
            of_type.retain(|t| t.reachable_mysqld().is_ok());
            if in_order && !of_type.is_empty() {
                return Ok(of_type.swap_remove(0));
            }
            found.extend(of_type);
        }
        found.into_iter().next().ok_or_else(|| {
            StepError::Retry(format!(
                "Error picking a source tablet: no healthy tablet found for {ks}/{shard} in cells {} with types {}",
                cells.join(","),
                types
                    .iter()
                    .map(|t| t.as_str_name())
                    .collect::<Vec<_>>()
                    .join(",")
            ))
        })
    }

    async fn step(&mut self, row: &VReplRow) -> Result<Next, StepError> {
        let plans =
            plan_tables(&row.source, &self.core.mysqld.lock().tables).map_err(StepError::Fatal)?;
        let pos = parse_pos(&row.pos).map_err(StepError::Fatal)?;
        if !row.stop_pos.is_empty() {
            let stop = parse_pos(&row.stop_pos).map_err(StepError::Fatal)?;
            if pos.contains(&stop) {
                self.set_state(
                    VReplicationWorkflowState::Stopped,
                    &stop_position_already_reached(&row.pos, &row.stop_pos),
                );
                return Ok(Next::Done);
            }
        }
        self.bind_source(row).await?;
        let has_copy_work = self.core.mysqld.lock().sidecar.has_copy_work(self.id);
        if row.pos.is_empty() && !has_copy_work {
            let id = self.id;
            self.with_row(|_, st| {
                for p in &plans {
                    st.sidecar.add_copy_state(id, &p.target, None);
                }
                if let Some(r) = st.sidecar.vreplication.get_mut(&id) {
                    r.state = VReplicationWorkflowState::Copying;
                    r.message = String::new();
                    r.time_updated = now_secs();
                }
            });
            tracing::debug!(tablet = %self.core.alias_string, stream = id, "Simulated copy phase started");
            return Ok(Next::Continue);
        }
        if has_copy_work {
            return self.copy_cycle(&plans).await;
        }
        self.replicate(row, &plans, pos)
    }

    /// Source events not in `pos`, from the binding's cursor, that are due (older than `lag`).
    /// Advances the cursor over events already in `pos`. Returns the events and, if one is not
    /// due yet, when it will be.
    fn pending_events(
        source: &mut SourceBinding,
        st: &MysqlState,
        pos: &GtidSet,
        lag: Duration,
        max: usize,
    ) -> (Vec<Arc<Event>>, Option<Duration>) {
        let now = SystemTime::now();
        let mut out = Vec::new();
        let mut advance = true;
        let mut i = source.cursor;
        while let Some(e) = st.binlog.get(i) {
            if e.is_in(pos) {
                if advance {
                    source.cursor = i + 1;
                }
                i += 1;
                continue;
            }
            let ready = e.timestamp + lag;
            if ready > now {
                return (out, Some(ready.duration_since(now).unwrap_or_default()));
            }
            if out.len() >= max {
                break;
            }
            advance = false;
            out.push(e.clone());
            i += 1;
        }
        (out, None)
    }

    fn replicate(
        &mut self,
        row: &VReplRow,
        plans: &[TablePlan],
        pos: GtidSet,
    ) -> Result<Next, StepError> {
        let cfg = self.core.config.vreplication.clone();
        if !self.started_replicating {
            self.started_replicating = true;
            if row.state != VReplicationWorkflowState::Running || !row.message.is_empty() {
                self.set_state(VReplicationWorkflowState::Running, "");
            }
        }
        let stop = if row.stop_pos.is_empty() {
            None
        } else {
            Some(parse_pos(&row.stop_pos).map_err(StepError::Fatal)?)
        };
        // Continue from the position applied in memory when only dropped events moved it.
        let pos = match self.applied.take() {
            Some(applied) if applied.contains(&pos) => applied,
            _ => pos,
        };
        let Some(source) = self.source.as_mut() else {
            return Err(StepError::Retry("no source tablet".into()));
        };
        let source_mysqld = source.mysqld.clone();
        let (events, next_due) = {
            let st = source_mysqld.lock();
            Self::pending_events(source, &st, &pos, cfg.replication_lag, 500)
        };
        let progress = BTreeMap::new();
        let id = self.id;
        let now = now_secs();
        let heartbeat_due = self
            .last_heartbeat
            .is_none_or(|t| t.elapsed() >= cfg.heartbeat_interval);
        let save_due = self.last_saved.elapsed() >= cfg.unrelated_save_after;
        if events.is_empty() {
            let unsaved = parse_pos(&row.pos).map_or(true, |saved| saved != pos);
            if unsaved && save_due {
                // Idle with only dropped events since the last save: save their position now.
                self.with_row(|_, st| {
                    if let Some(r) = st.sidecar.vreplication.get_mut(&id) {
                        r.pos = Position { gtids: pos.clone() }.to_string();
                        r.time_updated = now;
                    }
                });
                self.last_saved = Instant::now();
            } else if unsaved {
                self.applied = Some(pos.clone());
            }
            let until_save = if unsaved && !save_due {
                cfg.unrelated_save_after
                    .saturating_sub(self.last_saved.elapsed())
            } else {
                cfg.heartbeat_interval
            };
            if heartbeat_due {
                self.last_heartbeat = Some(Instant::now());
                self.with_row(|_, st| {
                    if let Some(r) = st.sidecar.vreplication.get_mut(&id) {
                        r.time_heartbeat = now;
                        r.time_updated = now;
                    }
                });
            }
            let wait = next_due
                .unwrap_or(cfg.poll_interval)
                .min(until_save)
                .min(cfg.heartbeat_interval)
                .max(Duration::from_millis(1));
            return Ok(Next::Wait(wait));
        }
        let outcome = self.with_row(|mysqld, st| -> Result<(bool, Option<GtidSet>), StepError> {
            let mut pos = pos;
            let mut last_ts = None;
            let mut reached = false;
            let mut applied_any = false;
            for e in &events {
                if stop.as_ref().is_some_and(|s| pos.contains(s)) {
                    reached = true;
                    break;
                }
                let changes = filter_event(e, plans, &progress);
                if !changes.is_empty() {
                    mysqld
                        .commit_locked(st, changes)
                        .map_err(|err| StepError::Fatal(format!("Error: {err}")))?;
                    applied_any = true;
                }
                pos.insert(e.source.clone(), (e.seq, e.seq));
                last_ts = Some(e.timestamp);
            }
            if stop.as_ref().is_some_and(|s| pos.contains(s)) {
                reached = true;
            }
            // A transaction applied saves the position with it; events the filter dropped
            // move it only in memory until the idle save (or a stop position) comes.
            if !(applied_any || reached || save_due) {
                return Ok((false, Some(pos)));
            }
            if let Some(r) = st.sidecar.vreplication.get_mut(&id) {
                r.pos = Position { gtids: pos }.to_string();
                if let Some(ts) = last_ts {
                    r.transaction_timestamp = ts
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs() as i64);
                }
                r.time_updated = now;
                if reached {
                    r.state = VReplicationWorkflowState::Stopped;
                    r.message = stopped_at_position(&r.stop_pos);
                }
            }
            Ok((reached, None))
        });
        match outcome {
            None => Ok(Next::Done),
            Some(Err(e)) => Err(e),
            Some(Ok((true, _))) => Ok(Next::Done),
            Some(Ok((false, unsaved))) => {
                if unsaved.is_none() {
                    self.last_saved = Instant::now();
                }
                self.applied = unsaved;
                Ok(Next::Continue)
            }
        }
    }
}

enum BatchOutcome {
    Copied { scanned: u64 },
    CaughtUp,
    CopyDone,
    Stale,
}

enum StepError {
    /// Retried after the retry delay; the message is shown on the stream meanwhile.
    Retry(String),
    /// The stream goes to Error and its controller ends.
    Fatal(String),
}

mod copy;

#[cfg(test)]
#[path = "vreplication_tests.rs"]
mod tests;
