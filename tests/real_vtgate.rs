//! The real vtgate (Vitess v0.24, from `scripts/peers`) judges vtmove's model of vtgate.
//!
//! vtmove's availability figures and its invariants I1 and I6 rest on
//! `vtmove::vitess::routing::RoutingView`, vtmove's own reading of where vtgate sends a query.
//! Here a real vtgate runs over real etcd and vtsim's tablets (which serve the QueryService it
//! queries), and for each routing state of a MoveTables lifecycle — routing rules written with
//! `update_routing_rules`, denied tables set through the topology server and reloaded by the
//! tablets, the SrvVSchema rebuilt with `rebuild_srv_vschema` — every read and write, by
//! unqualified and keyspace-qualified name and for each tablet type, goes both ways: the model
//! says which tablet (or which error), and the real vtgate's choice is read from the tablet
//! that executed the query (or from the error it returned). Any disagreement fails the test.
//! Beyond the lifecycle, every routing state vtmove knows and rules another actor could leave
//! (disabled, duplicated, two targets, unknown keyspace or table, `@primary` keys, a missing
//! `@type` key) are compared the same way.
//!
//! The peer comes from `scripts/peers`; the test fails, never skips, when it is missing.

#[path = "real_vtgate/cells.rs"]
mod cells;
mod common;
#[path = "real_vtgate/states.rs"]
mod states;
#[path = "common/vtgate.rs"]
mod vtgate;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

use states::{Rules, State, every_routing_state, foreign_rule_states, states};
use vtgate::Vtgate;
use vtmove::testing::LocalEtcd;
use vtmove::vitess::proto::topodata::TabletType;
use vtmove::vitess::proto::vschema;
use vtmove::vitess::routing::resolve::RuleError;
use vtmove::vitess::routing::{
    Denial, MovedTables, ResolveError, RoutingView, Side, TrafficType, expected_denied_tables,
    update_routing_rules,
};
use vtmove::vitess::srv_vschema::rebuild_srv_vschema;
use vtmove::vitess::tablet::{TabletClient, TabletClientConfig, TabletRpc};
use vtmove::vitess::topo::{DeniedTablesOp, LockOptions, TopoServer};
use vtsim::{Fleet, FleetOptions, KeyspaceLayout, Layout, LayoutTabletType, Probe};

const ROOT: &str = "/vitess/global";
const CELL: &str = "zone1";
const SOURCE: &str = "commerce";
const TARGET: &str = "customer";
const TABLE: &str = "customer";
const CUSTOMER: &str =
    "create table customer (id bigint not null, email varchar(128), primary key (id))";

/// What happened to one query: the tablet that ran it, or the class of vtgate's error.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    /// Executed by this tablet.
    Ran(String),
    /// The tablet refused it: the table is denied there.
    Denied,
    /// vtgate: an unqualified name several keyspaces list.
    Ambiguous,
    /// vtgate: no keyspace serves the table.
    NotFound,
    /// vtgate: a routing rule with no target.
    Disabled,
    /// vtgate: the qualifier names no keyspace.
    UnknownKeyspace,
    /// vtgate: no serving tablet of the shard and type.
    NoTablet,
    /// vtgate: the matching routing rule is unusable (what is wrong with it).
    InvalidRule(&'static str),
    /// Anything else (the text).
    Other(String),
}

struct World {
    _etcd: LocalEtcd,
    topo: Arc<TopoServer>,
    fleet: Fleet,
    probe: Probe,
    client: TabletClient,
    vtgate: Vtgate,
    next_id: i64,
    generation: u64,
}

fn layout() -> Layout {
    use LayoutTabletType::*;
    // Both keyspaces have the table on their tablets (the target's rows a copy would bring), and
    // the sharded target lists it in its VSchema with the `reverse_bits` vindex, as a sharded
    // MoveTables target must before the move.
    Layout::new([CELL])
        .keyspace(
            KeyspaceLayout::unsharded(SOURCE)
                .tablets(CELL, &[Primary, Replica, Rdonly])
                .table(CUSTOMER, 3),
        )
        .keyspace(
            KeyspaceLayout::sharded(TARGET, ["-80", "80-"])
                .tablets(CELL, &[Primary, Replica, Rdonly])
                .table(CUSTOMER, 0),
        )
}

async fn world() -> World {
    world_with(vtsim::TabletConfig::default(), &[]).await
}

/// A world whose tablets use `tablet`'s settings and whose vtgate gets `extra` flags too.
async fn world_with(tablet: vtsim::TabletConfig, extra: &[&str]) -> World {
    let etcd = LocalEtcd::start().await.expect("etcd starts");
    let topo = Arc::new(
        etcd.topo_server(ROOT)
            .expect("a topology on etcd")
            .with_lock_options(LockOptions {
                ttl: Duration::from_secs(5),
                acquire_timeout: Duration::from_secs(20),
            }),
    );
    let fleet = Fleet::start(
        topo.clone(),
        layout(),
        FleetOptions {
            cell_server_address: etcd.endpoint().to_owned(),
            tablet,
            ..FleetOptions::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("fleet: {e}"));
    let mut flags = vec!["--gateway-initial-tablet-timeout", "30s"];
    flags.extend(vtmove_sandbox::vtgate::ONE_SECOND_BUFFER);
    flags.extend_from_slice(extra);
    let mut vtgate = Vtgate::start(etcd.endpoint(), ROOT, CELL, &flags);
    vtgate
        .wait_for_vschema(Duration::from_secs(60), "both keyspaces", |v| {
            [SOURCE, TARGET]
                .iter()
                .all(|ks| v["keyspaces"][ks]["tables"][TABLE].is_object())
        })
        .await;
    let probe = fleet.probe(CELL);
    World {
        _etcd: etcd,
        topo,
        fleet,
        probe,
        client: TabletClient::new(TabletClientConfig::default()),
        vtgate,
        next_id: 700_000,
        generation: 0,
    }
}

fn moved() -> MovedTables {
    MovedTables::new(SOURCE, TARGET, [TABLE])
}

impl World {
    fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    /// Writes `state` into the topology with vtmove's functions, reloads the tablets' denied
    /// tables, rebuilds the SrvVSchema and waits until vtgate serves it.
    async fn enter(&mut self, state: &State) {
        let source_guard = self
            .topo
            .lock_keyspace(SOURCE, "real_vtgate")
            .await
            .unwrap();
        let target_guard = self
            .topo
            .lock_keyspace(TARGET, "real_vtgate")
            .await
            .unwrap();
        // A rule no query uses marks this state's SrvVSchema, so the wait below knows vtgate
        // serves this state and not the previous one with the same keys.
        self.generation += 1;
        let marker = format!("state_marker_{}", self.generation);
        let current = self.topo.get_routing_rules().await.unwrap();
        let mut rules = match &state.rules {
            // No other workflow's rules exist here: start from none, so that rules a raw
            // state left behind (a duplicate, an `@primary` key) do not linger.
            Rules::Workflow(routing) => {
                update_routing_rules(&vschema::RoutingRules::default(), &moved(), *routing).rules
            }
            Rules::Raw(raw) => vschema::RoutingRules {
                rules: raw
                    .iter()
                    .map(|(from, to)| vschema::RoutingRule {
                        from_table: (*from).to_owned(),
                        to_tables: to.iter().map(|t| (*t).to_owned()).collect(),
                    })
                    .collect(),
            },
        };
        rules.rules.push(vschema::RoutingRule {
            from_table: marker.clone(),
            to_tables: vec![format!("{SOURCE}.{TABLE}")],
        });
        match &state.rules {
            Rules::Workflow(_) => {
                self.topo
                    .save_routing_rules(&[&source_guard, &target_guard], &rules, current.version)
                    .await
                    .unwrap();
            }
            // Another actor writes the key as Vitess's ApplyRoutingRules does, without vtmove's
            // check that every keyspace a rule names is locked (one of them does not exist).
            Rules::Raw(_) => {
                self.topo
                    .global_store()
                    .update(
                        &self.topo.key("RoutingRules"),
                        &prost::Message::encode_to_vec(&rules),
                        None,
                    )
                    .await
                    .unwrap();
            }
        }
        let (placement, lifecycle) = state.denial;
        let expected = expected_denied_tables(placement, lifecycle);
        for (side, keyspace, guard) in [
            (Side::Source, SOURCE, &source_guard),
            (Side::Target, TARGET, &target_guard),
        ] {
            let op = match expected.on(side) {
                Denial::Denied => DeniedTablesOp::Add,
                Denial::Allowed => DeniedTablesOp::Remove,
                Denial::Untouched => continue,
            };
            deny_on_every_shard(&self.topo, guard, &self.fleet, keyspace, op).await;
        }
        for (keyspace, guard, lists) in [
            (SOURCE, &source_guard, state.source_lists),
            (TARGET, &target_guard, state.target_lists),
        ] {
            let sharded = keyspace == TARGET;
            self.topo
                .update_vschema(guard, keyspace, |ks| {
                    let has = ks.tables.contains_key(TABLE);
                    if has == lists {
                        return Ok(false);
                    }
                    if lists {
                        let def = vtsim::TableDef::parse_create(CUSTOMER).unwrap().0;
                        let listed = vtsim::keyspace_vschema(sharded, &[def]);
                        ks.tables.extend(listed.tables);
                    } else {
                        ks.tables.remove(TABLE);
                    }
                    Ok(true)
                })
                .await
                .unwrap();
        }
        target_guard.unlock().await.unwrap();
        source_guard.unlock().await.unwrap();
        for tablet in self.fleet.tablets() {
            self.client
                .refresh_state(&tablet.addr(), Some(Duration::from_secs(5)))
                .await
                .unwrap();
        }
        rebuild_srv_vschema(&self.topo, &[]).await.unwrap();
        let srv = self.topo.get_srv_vschema(CELL).await.unwrap().value;
        let want_tables: BTreeMap<String, bool> = srv
            .keyspaces
            .iter()
            .map(|(ks, v)| (ks.clone(), v.tables.contains_key(TABLE)))
            .collect();
        self.vtgate
            .wait_for_vschema(Duration::from_secs(20), &state.name, |v| {
                let tables: BTreeMap<String, bool> = want_tables
                    .keys()
                    .map(|ks| (ks.clone(), v["keyspaces"][ks]["tables"][TABLE].is_object()))
                    .collect();
                v["routing_rules"][&marker].is_array() && tables == want_tables
            })
            .await;
        for tablet in self.fleet.tablets() {
            tablet.clear_executed_queries();
        }
    }

    /// Where vtmove's model sends the query, from the cell's SrvVSchema.
    async fn model(
        &self,
        srv: &vschema::SrvVSchema,
        name: &str,
        id: i64,
        traffic: TrafficType,
        write: bool,
    ) -> Outcome {
        model_outcome(&self.fleet, &self.probe, srv, name, id, traffic, write).await
    }

    /// Where the real vtgate sent the query: the tablet that ran it, or its error's class.
    async fn real(&self, conn: &mut mysql_async::Conn, sql: &str, id: i64) -> Outcome {
        real_outcome(&self.fleet, conn, sql, id).await
    }
}

/// Adds or removes the moved table's PRIMARY denial on every shard of `keyspace`.
async fn deny_on_every_shard(
    topo: &TopoServer,
    guard: &vtmove::vitess::topo::KeyspaceLock,
    fleet: &Fleet,
    keyspace: &str,
    op: DeniedTablesOp,
) {
    for shard in fleet.shards(keyspace) {
        topo.update_denied_tables(
            guard,
            keyspace,
            &shard,
            TabletType::Primary,
            &[],
            &[TABLE.to_owned()],
            op,
        )
        .await
        .unwrap();
    }
}

/// Where vtmove's model sends the query in the cell whose SrvVSchema is `srv` and whose probe is
/// `probe`.
async fn model_outcome(
    fleet: &Fleet,
    probe: &Probe,
    srv: &vschema::SrvVSchema,
    name: &str,
    id: i64,
    traffic: TrafficType,
    write: bool,
) -> Outcome {
    let view = RoutingView::from_srv_vschema(srv);
    match view.resolve_name(name, traffic) {
        Ok(_) => {}
        Err(ResolveError::Ambiguous { .. }) => return Outcome::Ambiguous,
        Err(ResolveError::TableNotFound { .. }) => return Outcome::NotFound,
        Err(ResolveError::Disabled { .. }) => return Outcome::Disabled,
        Err(ResolveError::UnknownKeyspace { .. }) => return Outcome::UnknownKeyspace,
        Err(ResolveError::InvalidRule { error, .. }) => {
            return match error {
                RuleError::MultipleTargets { .. } => Outcome::InvalidRule("more than one target"),
                RuleError::Duplicate { .. } => Outcome::InvalidRule("duplicate"),
                RuleError::MalformedTarget { .. } => Outcome::InvalidRule("malformed"),
                RuleError::UnknownTargetKeyspace { .. } => Outcome::UnknownKeyspace,
                RuleError::TargetTableNotFound { .. } => Outcome::NotFound,
            };
        }
        Err(e) => return Outcome::Other(e.to_string()),
    }
    let route = match probe.route(name, id, traffic).await {
        Ok(route) => route,
        Err(vtsim::ProbeError::NoTablet { .. }) => return Outcome::NoTablet,
        Err(e) => return Outcome::Other(e.to_string()),
    };
    let tablet = fleet.tablet(&route.tablet).expect("the routed tablet");
    let serving = tablet.serving_state();
    if serving.denied_tables.contains(&route.table) && (write || !serving.allow_reads) {
        return Outcome::Denied;
    }
    Outcome::Ran(route.tablet)
}

/// Where a real vtgate sent the query: the tablet of `fleet` that ran it, or its error's class.
async fn real_outcome(fleet: &Fleet, conn: &mut mysql_async::Conn, sql: &str, id: i64) -> Outcome {
    let started = Instant::now();
    let result: Result<Vec<mysql_async::Row>, _> = conn.query(sql).await;
    if started.elapsed() > Duration::from_secs(1) {
        eprintln!("slow: {sql}: {:?} {result:?}", started.elapsed());
    }
    if let Err(e) = result {
        return classify(&e.to_string());
    }
    let marker = id.to_string();
    let ran: Vec<String> = fleet
        .tablets()
        .iter()
        .filter(|t| {
            t.executed_queries()
                .iter()
                .any(|q| q.code == 0 && q.expanded.contains(&marker))
        })
        .map(|t| t.alias_string().to_owned())
        .collect();
    match ran.as_slice() {
        [one] => Outcome::Ran(one.clone()),
        _ => Outcome::Other(format!("executed on {ran:?}")),
    }
}

impl Outcome {
    fn kind(&self) -> &'static str {
        match self {
            Outcome::Ran(_) => "ran",
            Outcome::Denied => "denied",
            Outcome::Ambiguous => "ambiguous",
            Outcome::NotFound => "not found",
            Outcome::Disabled => "disabled",
            Outcome::UnknownKeyspace => "unknown keyspace",
            Outcome::NoTablet => "no tablet",
            Outcome::InvalidRule(_) => "invalid rule",
            Outcome::Other(_) => "other",
        }
    }
}

fn classify(message: &str) -> Outcome {
    if message.contains("disallowed due to rule: enforce denied tables") {
        Outcome::Denied
    } else if message.contains("ambiguous") {
        Outcome::Ambiguous
    } else if message.contains("unknown database") {
        Outcome::UnknownKeyspace
    } else if message.contains("has more than one target") {
        Outcome::InvalidRule("more than one target")
    } else if message.contains("duplicate rule for entry") {
        Outcome::InvalidRule("duplicate")
    } else if message.contains("must be of the qualified form") {
        Outcome::InvalidRule("malformed")
    } else if message.contains("no healthy tablet available") {
        Outcome::NoTablet
    } else if message.contains("has been disabled") {
        Outcome::Disabled
    } else if message.contains("not found") {
        Outcome::NotFound
    } else {
        Outcome::Other(message.to_owned())
    }
}

async fn connect(vtgate: &Vtgate) -> mysql_async::Conn {
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(vtgate.mysql_port)
        .user(Some("vtmove"))
        .prefer_socket(false)
        // Given here, the client does not ask the server (vtgate passes `select
        // @@max_allowed_packet, @@wait_timeout from dual` to a tablet's MySQL).
        .max_allowed_packet(Some(16 << 20))
        .wait_timeout(Some(28_800));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match mysql_async::Conn::new(opts.clone()).await {
            Ok(conn) => return conn,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "vtgate's MySQL port does not answer: {e}\n{}",
                    vtgate.log_tail(20)
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

fn target_of(traffic: TrafficType) -> &'static str {
    match traffic {
        TrafficType::Primary => "@primary",
        TrafficType::Replica => "@replica",
        TrafficType::Rdonly => "@rdonly",
    }
}

/// Every state of the lifecycle, every routing state vtmove knows, and rules another actor could
/// leave, by every name and tablet type: the real vtgate sends reads and writes where vtmove's
/// model says (or fails them the same way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_vtgate_routes_every_lifecycle_state_as_the_model_says() {
    let mut w = world().await;
    let mut conn = connect(&w.vtgate).await;
    // (session keyspace, the name in the query, the name the model resolves)
    let queries = [
        (String::new(), TABLE.to_owned(), TABLE.to_owned()),
        (
            String::new(),
            format!("{SOURCE}.{TABLE}"),
            format!("{SOURCE}.{TABLE}"),
        ),
        (
            String::new(),
            format!("{TARGET}.{TABLE}"),
            format!("{TARGET}.{TABLE}"),
        ),
        (
            SOURCE.to_owned(),
            TABLE.to_owned(),
            format!("{SOURCE}.{TABLE}"),
        ),
        (
            TARGET.to_owned(),
            TABLE.to_owned(),
            format!("{TARGET}.{TABLE}"),
        ),
    ];
    let mut disagreements = Vec::new();
    let mut checked = 0;
    let mut seen_rpcs: BTreeMap<String, String> = BTreeMap::new();
    let mut kinds: BTreeMap<&'static str, usize> = BTreeMap::new();
    for state in states()
        .into_iter()
        .chain(every_routing_state())
        .chain(foreign_rule_states())
    {
        let started = Instant::now();
        w.enter(&state).await;
        let srv = w.topo.get_srv_vschema(CELL).await.unwrap().value;
        for traffic in TrafficType::ALL {
            for (session, name, as_model_sees_it) in &queries {
                // `USE @replica` targets a tablet type; `USE ks@replica` also selects a
                // keyspace, which vtgate puts in front of unqualified names.
                let using = format!("use `{session}{}`", target_of(traffic));
                conn.query_drop(&using)
                    .await
                    .unwrap_or_else(|e| panic!("{using}: {e}"));
                let id = w.id();
                let read = format!("select id, email from {name} where id = {id}");
                let model = w.model(&srv, as_model_sees_it, id, traffic, false).await;
                let real = w.real(&mut conn, &read, id).await;
                checked += 1;
                *kinds.entry(real.kind()).or_default() += 1;
                if model != real {
                    disagreements.push(format!(
                        "{}: {using}; {read}: model {model:?}, vtgate {real:?}",
                        state.name
                    ));
                }
                if traffic == TrafficType::Primary {
                    let id = w.id();
                    let write = format!("insert into {name} (id, email) values ({id}, 'v{id}')");
                    let model = w.model(&srv, as_model_sees_it, id, traffic, true).await;
                    let real = w.real(&mut conn, &write, id).await;
                    checked += 1;
                    *kinds.entry(real.kind()).or_default() += 1;
                    if model != real {
                        disagreements.push(format!(
                            "{}: {using}; {write}: model {model:?}, vtgate {real:?}",
                            state.name
                        ));
                    }
                }
            }
        }
        for tablet in w.fleet.tablets() {
            for q in tablet.executed_queries() {
                seen_rpcs
                    .entry(format!("{} {}", q.method, q.target))
                    .or_insert_with(|| format!("{} {:?}", q.sql, q.bind_vars));
            }
        }
        eprintln!("state {:?}: checked in {:?}", state.name, started.elapsed());
    }
    eprintln!("what vtgate sent the tablets (one example per RPC and target):");
    for (rpc, example) in &seen_rpcs {
        eprintln!("  {rpc}: {example}");
    }
    eprintln!("{checked} queries, vtgate's outcomes: {kinds:?}");
    assert!(w.vtgate.is_running(), "vtgate keeps running");
    // The states reach every kind of answer the model distinguishes, so agreement means
    // something: tablets of both keyspaces, denials, ambiguity, missing tables and keyspaces,
    // disabled and unusable rules.
    for kind in [
        "ran",
        "denied",
        "ambiguous",
        "not found",
        "disabled",
        "invalid rule",
        "unknown keyspace",
    ] {
        assert!(kinds.contains_key(kind), "no query ended {kind}: {kinds:?}");
    }
    assert!(
        disagreements.is_empty(),
        "{} of {checked} queries disagree:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
    drop(conn);
    w.fleet.shutdown().await;
}

/// vtgate's transactions reach vtsim as `BeginExecute` then `Commit` or `Rollback`, and a
/// transaction's rows appear only at commit; a denied table inside a transaction is tried once
/// (vtgate retries denials, after waiting for a newer SrvVSchema, only outside transactions);
/// a tablet whose query service stops is left out by vtgate as by the model, and taken back
/// when it serves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_vtgate_transactions_and_serving_state_match_vtsim() {
    let mut w = world().await;
    let mut conn = connect(&w.vtgate).await;
    let all = states();
    let created = &all[1];
    assert_eq!(created.name, "created");
    w.enter(created).await;
    let primary = w
        .fleet
        .primary(SOURCE, "0")
        .expect("source primary")
        .clone();

    for (end, method) in [("commit", "Commit"), ("rollback", "Rollback")] {
        primary.clear_executed_queries();
        let id = w.id();
        conn.query_drop("begin").await.unwrap();
        conn.query_drop(format!(
            "insert into {TABLE} (id, email) values ({id}, 't{id}')"
        ))
        .await
        .unwrap();
        assert!(
            !primary.table_rows(TABLE).contains_key(&id),
            "the row is invisible before {end}"
        );
        assert_eq!(primary.open_transactions(), 1);
        conn.query_drop(end).await.unwrap();
        assert_eq!(primary.open_transactions(), 0);
        assert_eq!(
            primary.table_rows(TABLE).contains_key(&id),
            end == "commit",
            "after {end}"
        );
        let calls: Vec<(&str, i64)> = primary
            .executed_queries()
            .iter()
            .map(|q| (q.method, q.transaction_id))
            .collect();
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert_eq!(calls[0].0, "BeginExecute");
        assert_eq!(calls[1], (method, calls[0].1), "the same transaction ends");
        eprintln!("{end}: {:?}", primary.executed_queries());
    }

    // Inside a transaction vtgate returns a denial at once.
    let kept_data = &all[7];
    assert_eq!(kept_data.name, "completed with keep-data, rules deleted");
    w.enter(kept_data).await;
    let srv = w.topo.get_srv_vschema(CELL).await.unwrap().value;
    let id = w.id();
    let name = format!("{SOURCE}.{TABLE}");
    assert_eq!(
        w.model(&srv, &name, id, TrafficType::Primary, true).await,
        Outcome::Denied
    );
    conn.query_drop("begin").await.unwrap();
    let started = Instant::now();
    let err = conn
        .query_drop(format!("insert into {name} (id, email) values ({id}, 'x')"))
        .await
        .expect_err("a denied write");
    let took = started.elapsed();
    assert_eq!(classify(&err.to_string()), Outcome::Denied, "{err}");
    let marker = id.to_string();
    let tries_in = primary
        .executed_queries()
        .iter()
        .filter(|q| q.expanded.contains(&marker))
        .count();
    conn.query_drop("rollback").await.unwrap();
    let id = w.id();
    let marker = id.to_string();
    let started = Instant::now();
    let err = conn
        .query_drop(format!("insert into {name} (id, email) values ({id}, 'x')"))
        .await
        .expect_err("a denied write");
    let took_out = started.elapsed();
    let tries_out = primary
        .executed_queries()
        .iter()
        .filter(|q| q.expanded.contains(&marker))
        .count();
    eprintln!(
        "denied inside a transaction: {tries_in} try in {took:?}; outside: {tries_out} tries in {took_out:?}"
    );
    assert_eq!(classify(&err.to_string()), Outcome::Denied, "{err}");
    assert_eq!(
        tries_in, 1,
        "inside a transaction vtgate does not retry a denial"
    );
    assert_eq!(
        tries_out, 3,
        "outside one vtgate tries three times, waiting for a newer SrvVSchema in between"
    );
    assert_eq!(primary.open_transactions(), 0);

    // A tablet whose query service stops: vtgate and the model both leave it out.
    w.enter(created).await;
    let srv = w.topo.get_srv_vschema(CELL).await.unwrap().value;
    let replica = w
        .fleet
        .shard_tablets(SOURCE, "0")
        .into_iter()
        .find(|t| t.tablet_type() == TabletType::Replica)
        .expect("a source replica")
        .clone();
    conn.query_drop("use `@replica`").await.unwrap();
    for serving in [false, true] {
        replica.set_query_service(serving);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let id = w.id();
            let model = w.model(&srv, TABLE, id, TrafficType::Replica, false).await;
            let real = w
                .real(
                    &mut conn,
                    &format!("select id, email from {TABLE} where id = {id}"),
                    id,
                )
                .await;
            let expected = if serving {
                Outcome::Ran(replica.alias_string().to_owned())
            } else {
                Outcome::NoTablet
            };
            assert_eq!(model, expected, "the model with serving = {serving}");
            if real == model {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "vtgate did not follow the health stream (serving = {serving}): {real:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(w.vtgate.is_running(), "vtgate keeps running");
    drop(conn);
    w.fleet.shutdown().await;
}

/// vtgate drops a tablet's health stream when it stays silent for the health-check timeout,
/// however healthy the tablet is, and routes nothing to that tablet until the stream opens
/// again: a vttablet repeats its health on every health check, and so does a vtsim tablet.
/// With the repetition slower than the timeout the real vtgate counts lost streams (and writes
/// may fail with "no healthy tablet available" meanwhile), so the simulation could not hide
/// the gap; at vttablet's pace vtgate loses no stream and every write is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_vtgate_keeps_idle_tablets_that_repeat_their_health() {
    const TIMEOUT: Duration = Duration::from_secs(2);
    for (interval, repeats) in [
        (Duration::from_secs(3600), false),
        (Duration::from_millis(250), true),
    ] {
        let tablet = vtsim::TabletConfig {
            health_interval: interval,
            ..vtsim::TabletConfig::default()
        };
        let mut w = world_with(tablet, &["--healthcheck-timeout", "2s"]).await;
        let mut conn = connect(&w.vtgate).await;
        let created = &states()[1];
        assert_eq!(created.name, "created");
        w.enter(created).await;
        let srv = w.topo.get_srv_vschema(CELL).await.unwrap().value;
        let lost_before = w.vtgate.health_check_errors().await.expect("vtgate's vars");
        let (mut served, mut failed) = (0, Vec::new());
        let until = Instant::now() + TIMEOUT * 3;
        while Instant::now() < until {
            let id = w.id();
            let sql = format!("insert into {TABLE} (id, email) values ({id}, 'h{id}')");
            let real = w.real(&mut conn, &sql, id).await;
            let model = w.model(&srv, TABLE, id, TrafficType::Primary, true).await;
            assert!(matches!(model, Outcome::Ran(_)), "the model: {model:?}");
            if real == model {
                served += 1;
            } else {
                failed.push(real);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let lost = w.vtgate.health_check_errors().await.expect("vtgate's vars") - lost_before;
        eprintln!(
            "health every {interval:?}: {lost} health streams lost, {served} writes served, \
             {} failed {failed:?}",
            failed.len()
        );
        if repeats {
            assert_eq!(lost, 0, "vtgate lost no health stream");
            assert!(failed.is_empty(), "every write served: {failed:?}");
        } else {
            assert!(
                lost >= 3,
                "vtgate drops every silent stream after its timeout: {lost} lost"
            );
            // Meanwhile vtgate has no serving tablet there ("no healthy tablet available"), or,
            // for a primary, takes the dropped stream for a reparent in progress.
            assert!(
                failed.iter().all(|f| match f {
                    Outcome::NoTablet => true,
                    Outcome::Other(message) => message.contains("primary is not serving"),
                    _ => false,
                }),
                "{failed:?}"
            );
        }
        assert!(served > 0);
        drop(conn);
        w.fleet.shutdown().await;
    }
}
