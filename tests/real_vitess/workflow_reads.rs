//! Vitess reads the workflows vtmove runs: `vtctldclient GetWorkflows`, `Workflow show` and
//! `MoveTables status` (vtctld's own code, calling vtsim's tablets over TabletManager gRPC)
//! report the streams vtmove created, their states, positions, rows copied and copy
//! bookmarks, and the traffic state vtmove reports in `status.trafficState`, at every state of
//! the lifecycle.
//!
//! The streams keep moving while the commands run, so every comparison is made in a window
//! where vtsim's streams did not change: vtsim is read before and after the command, and the
//! command is repeated until both reads agree.

use super::*;
use vtmove::vitess::tablet::gtid::Position;

const WORKFLOW: &str = "commerce2customer";
const REVERSE: &str = "commerce2customer_reverse";

/// What both sides say about one stream.
#[derive(Clone, Debug, PartialEq)]
struct StreamFacts {
    state: String,
    /// Normalised through vtmove's parser (Vitess prints a position without its flavor).
    position: String,
    rows_copied: i64,
    /// `keyspace/shard` of the source.
    source: String,
    message: String,
    /// The latest copy bookmark per table.
    copy: BTreeMap<String, String>,
}

/// Streams by (target shard, stream id).
type Streams = BTreeMap<(String, i64), StreamFacts>;

fn normalise(position: &str) -> String {
    if position.is_empty() {
        return String::new();
    }
    Position::parse(position)
        .unwrap_or_else(|e| panic!("position {position:?}: {e}"))
        .to_string()
}

impl World {
    /// The streams of `workflow` on the primaries of `keyspace`, as vtsim holds them. With
    /// `active_only`, Stopped streams are left out (what GetWorkflows lists by default).
    fn vtsim_streams(&self, keyspace: &str, workflow: &str, active_only: bool) -> Streams {
        let mut out = Streams::new();
        for primary in self.fleet.primaries(keyspace) {
            let st = primary.mysqld().lock();
            for row in st.sidecar.vreplication.values() {
                if row.workflow != workflow || (active_only && row.state.as_str_name() == "Stopped")
                {
                    continue;
                }
                // Vitess reports a stream whose message mentions an error as `Error`.
                let state = if row.message.to_ascii_lowercase().contains("error") {
                    "Error".to_owned()
                } else {
                    row.state.as_str_name().to_owned()
                };
                let copy = st
                    .sidecar
                    .copy_progress(row.id)
                    .into_iter()
                    .map(|(table, lastpk)| (table, lastpk.unwrap_or_default()))
                    .collect();
                out.insert(
                    (primary.shard().to_owned(), i64::from(row.id)),
                    StreamFacts {
                        state,
                        position: normalise(&row.pos),
                        rows_copied: row.rows_copied,
                        source: format!("{}/{}", row.source.keyspace, row.source.shard),
                        message: row.message.clone(),
                        copy,
                    },
                );
            }
        }
        out
    }

    /// Runs `args` until vtsim's streams did not change while it ran; returns its JSON and the
    /// streams it saw.
    async fn stable(&self, keyspace: &str, workflow: &str, args: &[&str]) -> (Value, Streams) {
        let active_only = args[0] == "GetWorkflows" && !args.contains(&"--show-all");
        for _ in 0..40 {
            let before = self.vtsim_streams(keyspace, workflow, active_only);
            let json = self.vtctld.json(args).await;
            if self.vtsim_streams(keyspace, workflow, active_only) == before {
                return (json, before);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("vtsim's streams of {workflow} never held still while {args:?} ran");
    }

    /// GetWorkflows (active and all), and `Workflow show` with its logs, list the streams vtsim
    /// holds for `workflow` in `keyspace`. Returns the streams.
    async fn compare_workflow(&self, state: &str, keyspace: &str, workflow: &str) -> Streams {
        let mut all = Streams::new();
        for args in [
            vec!["GetWorkflows", keyspace, "--include-logs=false"],
            vec![
                "GetWorkflows",
                keyspace,
                "--include-logs=false",
                "--show-all",
            ],
            vec![
                "Workflow",
                "--keyspace",
                keyspace,
                "show",
                "--workflow",
                workflow,
            ],
        ] {
            let (json, ours) = self.stable(keyspace, workflow, &args).await;
            let theirs = vitess_streams(&json, workflow, keyspace);
            assert_eq!(
                theirs, ours,
                "{state}: {args:?} disagrees with vtsim: {json}"
            );
            if args[0] == "Workflow" {
                all = ours;
                for stream in streams_of(&json, workflow) {
                    assert_eq!(
                        stream["log_fetch_error"], "",
                        "{state}: Vitess read the stream logs: {stream}"
                    );
                }
            }
        }
        assert!(!all.is_empty(), "{state}: {workflow} has streams");
        all
    }

    /// `MoveTables status` reports vtmove's traffic state and vtsim's streams of the forward
    /// workflow. Returns the traffic state and the table copy states.
    async fn compare_status(
        &mut self,
        state: &str,
        d: &Desired,
        memory: &mut EngineMemory,
    ) -> (String, Value) {
        let report = self.engine.pass(d, memory).await;
        let plan = report.plan.expect("a plan");
        let traffic_state = plan.traffic_state.expect("vtmove computes a traffic state");
        let args = [
            "MoveTables",
            "--target-keyspace",
            "customer",
            "--workflow",
            WORKFLOW,
            "status",
            "--format",
            "json",
        ];
        let (json, streams) = self.stable("customer", WORKFLOW, &args).await;
        assert_eq!(
            json["traffic_state"].as_str(),
            Some(traffic_state.as_str()),
            "{state}: Vitess's traffic state is vtmove's: {json}"
        );
        let mut theirs = BTreeMap::new();
        for (ks_shard, shard) in json["shard_streams"].as_object().into_iter().flatten() {
            let shard_name = ks_shard
                .strip_prefix("customer/")
                .unwrap_or_else(|| panic!("{state}: stream key {ks_shard}"));
            for s in shard["streams"].as_array().into_iter().flatten() {
                theirs.insert(
                    (shard_name.to_owned(), s["id"].as_i64().expect("id")),
                    (
                        s["status"].as_str().unwrap_or("").to_owned(),
                        normalise(s["position"].as_str().unwrap_or("")),
                        s["source_shard"].as_str().unwrap_or("").to_owned(),
                    ),
                );
            }
        }
        let ours: BTreeMap<_, _> = streams
            .into_iter()
            .map(|(k, f)| (k, (f.state, f.position, f.source)))
            .collect();
        assert_eq!(theirs, ours, "{state}: MoveTables status streams: {json}");
        (traffic_state, json["table_copy_state"].clone())
    }
}

/// The streams of `workflow` in a GetWorkflows response.
fn streams_of<'a>(json: &'a Value, workflow: &str) -> Vec<&'a Value> {
    json["workflows"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|w| w["name"] == workflow)
        .flat_map(|w| w["shard_streams"].as_object().into_iter().flatten())
        .flat_map(|(_, s)| s["streams"].as_array().into_iter().flatten())
        .collect()
}

/// Vitess's reading of the streams of `workflow` in a GetWorkflows response.
fn vitess_streams(json: &Value, workflow: &str, keyspace: &str) -> Streams {
    let number = |v: &Value| -> i64 {
        v.as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .unwrap_or_else(|| panic!("not a number: {v}"))
    };
    for w in json["workflows"].as_array().into_iter().flatten() {
        if w["name"] == workflow {
            assert_eq!(w["target"]["keyspace"], keyspace, "{w}");
            assert_eq!(w["workflow_type"], "MoveTables", "{w}");
        }
    }
    streams_of(json, workflow)
        .into_iter()
        .map(|s| {
            let copy = s["copy_states"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    (
                        c["table"].as_str().unwrap_or("").to_owned(),
                        c["last_pk"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect();
            (
                (
                    s["shard"].as_str().unwrap_or("").to_owned(),
                    number(&s["id"]),
                ),
                StreamFacts {
                    state: s["state"].as_str().unwrap_or("").to_owned(),
                    position: normalise(s["position"].as_str().unwrap_or("")),
                    rows_copied: number(&s["rows_copied"]),
                    source: format!(
                        "{}/{}",
                        s["binlog_source"]["keyspace"].as_str().unwrap_or(""),
                        s["binlog_source"]["shard"].as_str().unwrap_or("")
                    ),
                    message: s["message"].as_str().unwrap_or("").to_owned(),
                    copy,
                },
            )
        })
        .collect()
}

/// Walks the lifecycle: at every state, Vitess lists the streams vtsim holds (ids, shards,
/// states, positions, rows copied, sources, messages, copy bookmarks) for the forward workflow
/// and, once writes switched, the reverse one; and `MoveTables status` reports vtmove's
/// traffic state, which is Vitess's string for that state. Once completed, Vitess finds no
/// workflow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vitess_reads_the_workflow_vtmove_created() {
    let mut w = world().await;
    let mut d = desired();
    let mut memory = EngineMemory::default();
    let mut seen = Vec::new();
    let steps: [(&str, TrafficPlacement, &str); 5] = [
        (
            "created",
            TrafficPlacement::all(Side::Source),
            "Reads Not Switched. Writes Not Switched",
        ),
        (
            "reads switched",
            TrafficPlacement {
                replica: Side::Target,
                rdonly: Side::Target,
                primary: Side::Source,
            },
            "All Reads Switched. Writes Not Switched",
        ),
        (
            "writes switched",
            TrafficPlacement::all(Side::Target),
            "All Reads Switched. Writes Switched",
        ),
        (
            "writes reversed",
            TrafficPlacement {
                replica: Side::Target,
                rdonly: Side::Target,
                primary: Side::Source,
            },
            "All Reads Switched. Writes Not Switched",
        ),
        (
            "switched again",
            TrafficPlacement::all(Side::Target),
            "All Reads Switched. Writes Switched",
        ),
    ];
    for (state, traffic, vitess_string) in steps {
        d.traffic = traffic;
        w.converge(&d, &mut memory, state).await;
        let forward = w.compare_workflow(state, "customer", WORKFLOW).await;
        let (traffic_state, copy) = w.compare_status(state, &d, &mut memory).await;
        assert_eq!(traffic_state, vitess_string, "{state}: the traffic state");
        assert_eq!(
            copy,
            serde_json::json!({}),
            "{state}: no table is being copied"
        );
        let writes_switched = d.traffic.primary == Side::Target;
        for ((shard, id), s) in &forward {
            assert_eq!(s.source, "commerce/0", "{state}: {shard}/{id}");
            assert!(s.copy.is_empty(), "{state}: {shard}/{id} copied: {s:?}");
            assert!(
                !s.position.is_empty(),
                "{state}: {shard}/{id} has a position"
            );
            let expected = if writes_switched {
                "Stopped"
            } else {
                "Running"
            };
            assert_eq!(s.state, expected, "{state}: {shard}/{id}: {s:?}");
        }
        // Reversing writes replaces the forward streams with new ones that start from
        // positions and copy nothing; before that, the first streams copied the seeded rows.
        let copied: i64 = forward.values().map(|s| s.rows_copied).sum();
        if seen.len() < 3 {
            assert!(
                copied >= 50,
                "{state}: the 50 seeded rows were copied: {copied}"
            );
        } else {
            assert_eq!(copied, 0, "{state}: the new forward streams copied nothing");
        }
        if writes_switched || state == "writes reversed" {
            let reverse = w.compare_workflow(state, "commerce", REVERSE).await;
            let expected = if writes_switched {
                "Running"
            } else {
                "Stopped"
            };
            for ((shard, id), s) in &reverse {
                assert_eq!(shard, "0", "{state}: reverse stream {id}");
                assert_eq!(s.state, expected, "{state}: reverse {shard}/{id}: {s:?}");
            }
            let sources: BTreeSet<&str> = reverse.values().map(|s| s.source.as_str()).collect();
            assert_eq!(
                sources,
                BTreeSet::from(["customer/-80", "customer/80-"]),
                "{state}: one reverse stream per target shard"
            );
        }
        seen.push((state, traffic_state, forward.len()));
    }
    eprintln!("Vitess read, per state: {seen:?}");

    d.lifecycle = DesiredLifecycle::Complete(CompleteOptions::default());
    w.converge(&d, &mut memory, "completed").await;
    for keyspace in KEYSPACES {
        let json = w
            .vtctld
            .json(&[
                "GetWorkflows",
                keyspace,
                "--include-logs=false",
                "--show-all",
            ])
            .await;
        assert!(
            json["workflows"].as_array().is_none_or(|a| a.is_empty()),
            "completed: Vitess finds no workflow in {keyspace}: {json}"
        );
    }
    let gone = w
        .vtctld
        .run(&[
            "MoveTables",
            "--target-keyspace",
            "customer",
            "--workflow",
            WORKFLOW,
            "status",
        ])
        .await;
    assert!(
        gone.as_ref().is_err_and(|e| e.contains("no streams found")),
        "completed: MoveTables status finds no workflow: {gone:?}"
    );
    w.fleet.shutdown().await;
}

/// While the copy phase is under way (3,000 rows; copy cycles cut after 200 rows by error 3024,
/// as `MAX_EXECUTION_TIME` cuts Vitess's, then a 3 s pause), Vitess lists the streams as
/// Copying with vtsim's latest bookmark per table, and
/// `MoveTables status` reports the table's copy progress from the row counts of the target and
/// source primaries: rows copied, rows in total and the IN_PROGRESS phase.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vitess_reads_a_copy_in_progress() {
    use LayoutTabletType::*;
    let layout = Layout::new(CELLS)
        .keyspace(
            KeyspaceLayout::unsharded("commerce")
                .tablets("zone1", &[Primary, Replica, Rdonly])
                .table(CUSTOMER, 3000),
        )
        .keyspace(
            KeyspaceLayout::sharded("customer", ["-80", "80-"])
                .tablets("zone1", &[Primary, Replica])
                .tablets("zone2", &[Rdonly])
                .vschema_table(CUSTOMER),
        );
    let mut tablet = TabletConfig::default();
    tablet.vreplication.copy_batch_rows = 50;
    tablet.vreplication.copy_cycle_rows = Some(200);
    tablet.vreplication.cycle_pause = Duration::from_secs(3);
    let mut w = world_with(layout, tablet).await;
    let d = desired();
    let mut memory = EngineMemory::default();

    // Passes until some rows are copied while copy work is left.
    let deadline = Instant::now() + Duration::from_secs(60);
    let target_rows = |w: &World| -> u64 {
        w.fleet
            .primaries("customer")
            .iter()
            .map(|p| p.table_rows("customer").len() as u64)
            .sum()
    };
    loop {
        let report = w.engine.pass(&d, &mut memory).await;
        let streams = w.vtsim_streams("customer", WORKFLOW, false);
        assert!(
            Instant::now() < deadline,
            "the copy never got under way: {} rows, {streams:?}, {:?}",
            target_rows(&w),
            report.plan.map(|p| (p.step, p.blockers))
        );
        if target_rows(&w) > 0 && streams.values().all(|s| !s.copy.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let streams = w.compare_workflow("copying", "customer", WORKFLOW).await;
    assert!(
        streams
            .values()
            .all(|s| s.state == "Copying" && s.copy.contains_key("customer")),
        "copying: every stream is Copying with a bookmark: {streams:?}"
    );

    // Row counts can move between the status call and our count: repeat until they held.
    let source_rows = w.fleet.rows("commerce", "customer").len() as u64;
    let mut checked = false;
    for _ in 0..20 {
        let before = target_rows(&w);
        let (traffic_state, copy) = w.compare_status("copying", &d, &mut memory).await;
        if target_rows(&w) != before {
            continue;
        }
        assert_eq!(traffic_state, "Reads Not Switched. Writes Not Switched");
        let table = &copy["customer"];
        let number = |v: &Value| v.as_u64().or_else(|| v.as_str()?.parse().ok());
        assert_eq!(number(&table["rows_copied"]), Some(before), "{copy}");
        assert_eq!(number(&table["rows_total"]), Some(source_rows), "{copy}");
        assert_eq!(number(&table["bytes_copied"]), Some(before * 64), "{copy}");
        assert!(before < source_rows, "the copy is not finished: {copy}");
        assert_eq!(table["phase"], "IN_PROGRESS", "{copy}");
        let pct = table["rows_percentage"].as_f64().unwrap_or(-1.0);
        let want = 100.0 * before as f64 / source_rows as f64;
        assert!(
            (pct - want).abs() < 0.01,
            "rows percentage {pct} vs {want}: {copy}"
        );
        checked = true;
        break;
    }
    assert!(
        checked,
        "the target's row count never held still during MoveTables status"
    );
    w.fleet.shutdown().await;
}
