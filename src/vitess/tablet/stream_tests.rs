use super::*;
use crate::vitess::proto::binlogdata::{Filter, Rule};
use crate::vitess::proto::tabletmanagerdata::read_v_replication_workflow_response::Stream;
use crate::vitess::tablet::result::build_result;

fn t(secs: i64) -> vttime::Time {
    vttime::Time {
        seconds: secs,
        nanoseconds: 0,
    }
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn stream(state: VReplicationWorkflowState, message: &str) -> StreamStatus {
    StreamStatus::from_proto(&Stream {
        id: 1,
        state: state as i32,
        message: message.to_owned(),
        ..Stream::default()
    })
}

const EPHEMERAL_MESSAGES: &[(u16, &str)] = &[
    (
        3024,
        "vttablet: rpc error: code = Unknown desc = Query execution was interrupted, maximum statement execution time exceeded (errno 3024) (sqlstate HY000) during query: select * from t",
    ),
    (
        1317,
        "error in copy: Query execution was interrupted (errno 1317) (sqlstate 70100)",
    ),
    (
        1205,
        "Error 1205 (HY000): Lock wait timeout exceeded; try restarting transaction",
    ),
    (
        1213,
        "error: Deadlock found when trying to get lock; try restarting transaction (errno 1213) (sqlstate 40001)",
    ),
    (
        2013,
        "error reading from source: Lost connection to MySQL server during query (errno 2013) (sqlstate HY000)",
    ),
    (2006, "error code: 2006, MySQL server has gone away"),
];

#[test]
fn every_ephemeral_code_while_copying_is_a_copy_cycle() {
    for &(code, msg) in EPHEMERAL_MESSAGES {
        assert_eq!(
            classify_message(msg, true),
            MessageClass::CopyCycleEnded { code },
            "{msg}"
        );
        let s = stream(VReplicationWorkflowState::Copying, msg);
        assert_eq!(
            s.displayed_state(),
            VReplicationWorkflowState::Copying,
            "{msg}"
        );
        // Vitess parks the stream in Error between retries; still progress while copying.
        let mut errored = stream(VReplicationWorkflowState::Error, msg);
        errored.copy_state = Some(vec![bookmark(1, "t", 5, Some(LASTPK))]);
        assert_eq!(
            errored.displayed_state(),
            VReplicationWorkflowState::Copying,
            "{msg}"
        );
        assert!(!errored.message_class().is_error());
    }
}

#[test]
fn ephemeral_codes_by_text_alone() {
    for &(code, phrase) in EPHEMERAL_COPY_ERRORS {
        let msg = format!("copy failed: {}", phrase.to_uppercase());
        assert_eq!(
            classify_message(&msg, true),
            MessageClass::CopyCycleEnded { code }
        );
    }
}

#[test]
fn ephemeral_errors_outside_copy_are_real_errors() {
    for &(code, msg) in EPHEMERAL_MESSAGES {
        assert_eq!(
            classify_message(msg, false),
            MessageClass::Error { code: Some(code) },
            "{msg}"
        );
        let s = stream(VReplicationWorkflowState::Running, msg);
        assert_eq!(s.displayed_state(), VReplicationWorkflowState::Error);
    }
}

#[test]
fn real_errors_are_errors_even_while_copying() {
    let cases = [
        ("Error: table t not found in vschema", None),
        (
            "error applying event: Duplicate entry '1' for key 'PRIMARY' (errno 1062) (sqlstate 23000)",
            Some(1062),
        ),
        (
            "ERROR 1146 (42S02): Table 'vt_ks.t' doesn't exist",
            Some(1146),
        ),
        // A real error number next to an ephemeral one is still a real error.
        (
            "error (errno 1062) after retrying a deadlock (errno 1213)",
            Some(1062),
        ),
    ];
    for (msg, code) in cases {
        assert_eq!(
            classify_message(msg, true),
            MessageClass::Error { code },
            "{msg}"
        );
        let s = stream(VReplicationWorkflowState::Copying, msg);
        assert_eq!(s.displayed_state(), VReplicationWorkflowState::Error);
    }
    // The generic wrapper code does not spoil an ephemeral one.
    assert_eq!(
        classify_message(
            "Unknown error (errno 1105): Lost connection to MySQL server (errno 2013)",
            true
        ),
        MessageClass::CopyCycleEnded { code: 2013 }
    );
}

#[test]
fn frozen_and_stopped_for_cutover_markers() {
    let frozen = stream(VReplicationWorkflowState::Stopped, "FROZEN");
    assert!(frozen.is_frozen());
    assert_eq!(frozen.displayed_state(), VReplicationWorkflowState::Stopped);
    assert_eq!(classify_message("  FROZEN ", false), MessageClass::Frozen);
    assert_eq!(classify_message("frozen", false), MessageClass::Info);

    let cut = stream(VReplicationWorkflowState::Stopped, "stopped for cutover");
    assert!(cut.is_stopped_for_cutover());
    assert!(!cut.is_frozen());
    assert_eq!(cut.displayed_state(), VReplicationWorkflowState::Stopped);

    let info = stream(
        VReplicationWorkflowState::Running,
        "Picked source tablet zone1-100",
    );
    assert_eq!(info.message_class(), MessageClass::Info);
    assert_eq!(info.displayed_state(), VReplicationWorkflowState::Running);
    assert_eq!(classify_message("", false), MessageClass::Empty);
}

#[test]
fn workflow_frozen_if_any_stream_frozen() {
    let resp = ReadVReplicationWorkflowResponse {
        workflow: "wf".into(),
        streams: vec![
            Stream {
                id: 1,
                message: "FROZEN".into(),
                state: VReplicationWorkflowState::Stopped as i32,
                ..Stream::default()
            },
            Stream {
                id: 2,
                state: VReplicationWorkflowState::Stopped as i32,
                ..Stream::default()
            },
        ],
        ..Default::default()
    };
    let wf = WorkflowStreams::from_proto(&resp);
    assert!(wf.is_some_and(|w| w.is_frozen()));
}

#[test]
fn running_with_copy_state_rows_displays_copying() {
    let mut s = stream(VReplicationWorkflowState::Running, "");
    assert_eq!(s.displayed_state(), VReplicationWorkflowState::Running);
    s.copy_state = Some(vec![bookmark(1, "t", 3, None)]);
    assert_eq!(s.displayed_state(), VReplicationWorkflowState::Copying);
    s.copy_state = Some(vec![]);
    assert_eq!(s.displayed_state(), VReplicationWorkflowState::Running);
}

#[test]
fn lag_is_infinite_while_copying() {
    let now = at(1_000);
    let mut s = StreamStatus::from_proto(&Stream {
        state: VReplicationWorkflowState::Copying as i32,
        transaction_timestamp: Some(t(999)),
        time_heartbeat: Some(t(999)),
        ..Stream::default()
    });
    assert_eq!(s.lag(now), Lag::Copying);
    assert!(!s.lag(now).within(Duration::from_secs(3600)));
    // Running but copy_state rows remain: still copying.
    s.state = VReplicationWorkflowState::Running;
    s.copy_state = Some(vec![bookmark(0, "t", 1, None)]);
    assert_eq!(s.lag(now), Lag::Copying);
    s.copy_state = Some(vec![]);
    assert_eq!(s.lag(now), Lag::Behind(Duration::from_secs(1)));
}

#[test]
fn lag_uses_the_newer_of_heartbeat_and_transaction_time() {
    let now = at(1_000);
    let s = StreamStatus::from_proto(&Stream {
        state: VReplicationWorkflowState::Running as i32,
        transaction_timestamp: Some(t(400)),
        time_heartbeat: Some(t(990)),
        ..Stream::default()
    });
    assert_eq!(s.lag(now), Lag::Behind(Duration::from_secs(10)));
    assert!(s.lag(now).within(Duration::from_secs(30)));
    let tx_newer = StreamStatus::from_proto(&Stream {
        state: VReplicationWorkflowState::Running as i32,
        transaction_timestamp: Some(t(995)),
        time_heartbeat: Some(t(900)),
        ..Stream::default()
    });
    assert_eq!(tx_newer.lag(now), Lag::Behind(Duration::from_secs(5)));
    // Only a heartbeat (no event since the copy).
    let hb_only = StreamStatus::from_proto(&Stream {
        state: VReplicationWorkflowState::Running as i32,
        time_heartbeat: Some(t(970)),
        ..Stream::default()
    });
    assert_eq!(hb_only.lag(now), Lag::Behind(Duration::from_secs(30)));
    // Nothing recorded: unknown, never within a gate.
    let none = stream(VReplicationWorkflowState::Running, "");
    assert_eq!(none.lag(now), Lag::NoTimestamp);
    assert!(!none.lag(now).within(Duration::from_secs(u64::MAX / 2)));
    // Tablet clock ahead of ours: zero, not an error.
    let future = StreamStatus::from_proto(&Stream {
        state: VReplicationWorkflowState::Running as i32,
        time_heartbeat: Some(t(2_000)),
        ..Stream::default()
    });
    assert_eq!(future.lag(now), Lag::Behind(Duration::ZERO));
}

#[test]
fn workflow_lag_is_the_worst_stream() {
    let now = at(1_000);
    let mk = |id, state: VReplicationWorkflowState, hb| Stream {
        id,
        state: state as i32,
        time_heartbeat: Some(t(hb)),
        ..Stream::default()
    };
    let resp = ReadVReplicationWorkflowResponse {
        workflow: "wf".into(),
        streams: vec![
            mk(1, VReplicationWorkflowState::Running, 990),
            mk(2, VReplicationWorkflowState::Running, 950),
        ],
        ..Default::default()
    };
    let wf = WorkflowStreams::from_proto(&resp);
    assert_eq!(
        wf.as_ref().map(|w| w.max_lag(now)),
        Some(Lag::Behind(Duration::from_secs(50)))
    );
    let mut resp2 = resp.clone();
    resp2
        .streams
        .push(mk(3, VReplicationWorkflowState::Copying, 999));
    let wf2 = WorkflowStreams::from_proto(&resp2);
    assert_eq!(wf2.map(|w| w.max_lag(now)), Some(Lag::Copying));
    assert_eq!(
        Lag::NoTimestamp.worst(Lag::Behind(Duration::MAX)),
        Lag::NoTimestamp
    );
}

#[test]
fn workflow_view_reads_the_response() {
    let resp = ReadVReplicationWorkflowResponse {
        workflow: "wf".into(),
        cells: "zone1, zone2".into(),
        tablet_types: vec![TabletType::Replica as i32, TabletType::Primary as i32, 99],
        db_name: "vt_customer".into(),
        workflow_type: VReplicationWorkflowType::MoveTables as i32,
        streams: vec![Stream {
            id: 7,
            bls: Some(BinlogSource {
                keyspace: "commerce".into(),
                shard: "0".into(),
                filter: Some(Filter {
                    rules: vec![
                        Rule {
                            r#match: "customer".into(),
                            filter: "select * from customer".into(),
                            ..Rule::default()
                        },
                        Rule {
                            r#match: "/.*".into(),
                            filter: String::new(),
                            ..Rule::default()
                        },
                    ],
                    ..Filter::default()
                }),
                ..BinlogSource::default()
            }),
            pos: "MySQL56/3e11fa47-71ca-11e1-9e33-c80aa9429562:1-10".into(),
            stop_pos: String::new(),
            state: 42, // a state a newer Vitess might add
            rows_copied: 10,
            time_updated: Some(t(100)),
            ..Stream::default()
        }],
        ..Default::default()
    };
    let Some(wf) = WorkflowStreams::from_proto(&resp) else {
        panic!("workflow expected");
    };
    assert_eq!(wf.cells, vec!["zone1", "zone2"]);
    assert_eq!(
        wf.tablet_types,
        vec![TabletType::Replica, TabletType::Primary]
    );
    assert_eq!(wf.workflow_type, Some(VReplicationWorkflowType::MoveTables));
    let s = &wf.streams[0];
    assert_eq!(s.id, 7);
    assert_eq!(s.source.keyspace, "commerce");
    assert_eq!(s.source.tables, vec!["customer"]);
    assert_eq!(s.source.rules.len(), 2);
    assert_eq!(s.state, VReplicationWorkflowState::Unknown);
    assert_eq!(s.stop_position, None);
    assert_eq!(s.time_updated, Some(at(100)));
    assert_eq!(s.transaction_timestamp, None);
    assert!(WorkflowStreams::from_proto(&ReadVReplicationWorkflowResponse::default()).is_none());
}

const LASTPK: &str = r#"fields:{name:"id" type:INT64} rows:{lengths:2 values:"42"}"#;

fn bookmark(stream_id: i32, table: &str, row_id: u64, raw: Option<&str>) -> CopyBookmark {
    CopyBookmark {
        stream_id,
        table: table.into(),
        row_id,
        raw: raw.map(str::to_owned),
        position: match raw {
            None => BookmarkPosition::NotStarted,
            Some(r) => LastPk::parse(r).map_or(BookmarkPosition::NotStarted, BookmarkPosition::At),
        },
    }
}

#[test]
fn lastpk_simple_form() {
    let pk = LastPk::parse(LASTPK);
    assert_eq!(
        pk.as_ref().map(|p| p.columns[0].value.clone()),
        Ok(Some(b"42".to_vec()))
    );
    assert_eq!(pk.map(|p| p.to_string()), Ok("id=42".to_owned()));
}

#[test]
fn lastpk_composite_and_null() {
    let pk = LastPk::parse(
        r#"fields:{name:"tenant" type:VARCHAR} fields:{name:"id" type:UINT64} fields:{name:"x" type:INT32} rows:{lengths:3 lengths:1 lengths:-1 values:"abc7"}"#,
    );
    assert_eq!(
        pk.map(|p| p.to_string()),
        Ok("tenant='abc',id=7,x=NULL".to_owned())
    );
}

#[test]
fn lastpk_malformed_is_an_error() {
    assert!(matches!(
        LastPk::parse("fields:{name:"),
        Err(LastPkError::Prototext(_))
    ));
    assert_eq!(LastPk::parse(""), Err(LastPkError::NoFields));
    assert_eq!(
        LastPk::parse(r#"fields:{name:"id" type:INT64}"#),
        Err(LastPkError::NoRow)
    );
    assert_eq!(
        LastPk::parse(
            r#"fields:{name:"id" type:INT64} fields:{name:"b" type:INT64} rows:{lengths:2 values:"42"}"#
        ),
        Err(LastPkError::Arity { got: 1, want: 2 })
    );
    assert!(LastPk::parse(r#"rows:{lengths:3 values:"42"} fields:{name:"id"}"#).is_err());
    assert!(LastPk::parse("\u{0}\u{1}garbage").is_err());
}

#[test]
fn copy_state_query_is_safe() {
    assert_eq!(
        copy_state_query("", &[1, 2]).ok().as_deref(),
        Some(
            "select id, vrepl_id, table_name, lastpk from _vt.copy_state where vrepl_id in (1, 2)"
        )
    );
    assert!(copy_state_query("_vt_custom", &[]).is_ok_and(|q| q.ends_with("where 1 = 0")));
    assert!(copy_state_query("_vt; drop table x", &[1]).is_err());
    assert!(copy_state_query("`_vt`", &[1]).is_err());
}

#[test]
fn copy_state_keeps_the_newest_bookmark_per_table() {
    let result = build_result(
        &["id", "vrepl_id", "table_name", "lastpk"],
        &[
            vec![
                Some(b"5"),
                Some(b"1"),
                Some(b"customer"),
                Some(LASTPK.as_bytes()),
            ],
            vec![
                Some(b"9"),
                Some(b"1"),
                Some(b"customer"),
                Some(br#"fields:{name:"id" type:INT64} rows:{lengths:3 values:"100"}"#),
            ],
            vec![Some(b"6"), Some(b"1"), Some(b"orders"), None],
            vec![
                Some(b"7"),
                Some(b"2"),
                Some(b"customer"),
                Some(b"fields:{oops"),
            ],
        ],
    );
    let bookmarks = parse_copy_state(&result).unwrap_or_default();
    assert_eq!(bookmarks.len(), 3);
    let customer = &bookmarks[0];
    assert_eq!(
        (customer.stream_id, customer.table.as_str(), customer.row_id),
        (1, "customer", 9)
    );
    assert!(matches!(&customer.position, BookmarkPosition::At(pk) if pk.to_string() == "id=100"));
    assert_eq!(bookmarks[1].position, BookmarkPosition::NotStarted);
    assert!(matches!(
        bookmarks[2].position,
        BookmarkPosition::Unreadable { .. }
    ));

    let missing = build_result(&["id", "vrepl_id"], &[]);
    assert!(parse_copy_state(&missing).is_err());

    let mut wf = WorkflowStreams::from_proto(&ReadVReplicationWorkflowResponse {
        workflow: "wf".into(),
        streams: vec![
            Stream {
                id: 1,
                state: VReplicationWorkflowState::Running as i32,
                ..Stream::default()
            },
            Stream {
                id: 3,
                state: VReplicationWorkflowState::Running as i32,
                ..Stream::default()
            },
        ],
        ..Default::default()
    })
    .unwrap_or_else(|| panic!("workflow"));
    wf.attach_copy_state(&bookmarks);
    assert!(wf.streams[0].is_copying());
    assert!(!wf.streams[1].is_copying());
    assert_eq!(wf.streams[1].copy_state, Some(vec![]));
}

fn obs<'a>(
    secs: u64,
    message: &'a str,
    updated: u64,
    rows: i64,
    bookmarks: Vec<(&'a str, Option<&'a str>)>,
) -> CopyObservation<'a> {
    CopyObservation {
        at: at(secs),
        copying: true,
        message,
        time_updated: Some(at(updated)),
        rows_copied: rows,
        bookmarks,
    }
}

#[test]
fn copy_cycles_are_counted_once_each() {
    let e3024 = EPHEMERAL_MESSAGES[0].1;
    let observations = vec![
        obs(10, "", 10, 0, vec![("t", None)]),
        obs(20, "", 20, 100, vec![("t", Some("a"))]),
        obs(30, e3024, 25, 200, vec![("t", Some("b"))]), // cycle 1 ends
        obs(35, e3024, 25, 200, vec![("t", Some("b"))]), // same event seen again
        obs(40, "", 40, 300, vec![("t", Some("c"))]),    // resumed
        obs(50, e3024, 45, 400, vec![("t", Some("d"))]), // cycle 2 ends, same text
        obs(
            60,
            "Error: table t not found",
            60,
            400,
            vec![("t", Some("d"))],
        ), // a real error: no cycle
    ];
    assert_eq!(count_copy_cycles(observations.clone()), 2);

    let mut progress = CopyProgress::default();
    let steps: Vec<CopyStep> = observations.iter().map(|o| progress.observe(o)).collect();
    assert!(steps[2].cycle_ended && steps[2].progressed);
    assert!(!steps[3].cycle_ended && !steps[3].progressed);
    assert!(steps[5].cycle_ended);
    assert!(!steps[6].cycle_ended && !steps[6].progressed);
    assert_eq!(progress.rows_copied, 400);
    assert_eq!(progress.bookmarks.get("t").map(String::as_str), Some("d"));
    assert_eq!(progress.last_progress_at, Some(50));
    assert_eq!(progress.stalled_for(at(80)), Some(Duration::from_secs(30)));

    // Progress survives a round trip through the resource status.
    let json = serde_json::to_string(&progress).unwrap_or_default();
    let back: CopyProgress = serde_json::from_str(&json).unwrap_or_default();
    assert_eq!(back, progress);
}

#[test]
fn copy_progress_from_stream_status() {
    let mut s = stream(VReplicationWorkflowState::Copying, EPHEMERAL_MESSAGES[3].1);
    s.time_updated = Some(at(5));
    s.copy_state = Some(vec![bookmark(1, "t", 1, Some(LASTPK))]);
    let mut p = CopyProgress::default();
    let step = p.observe(&CopyObservation::of_stream(&s, at(6)));
    assert!(step.cycle_ended && step.progressed);
    assert_eq!(p.cycles, 1);
}

/// A tiny deterministic generator, so the robustness test needs no extra crate.
fn noise(seed: u64, len: usize, alphabet: &[&str]) -> String {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            alphabet[(x % alphabet.len() as u64) as usize]
        })
        .collect()
}

#[test]
fn odd_tablet_text_never_panics() {
    let alphabet = [
        "fields",
        "rows",
        "lengths",
        "values",
        "name",
        "type",
        ":",
        "{",
        "}",
        "<",
        ">",
        "[",
        "]",
        ",",
        ";",
        "\"",
        "'",
        "\\",
        "\\x",
        "\\u",
        "\\7",
        "0",
        "-1",
        "42",
        "INT64",
        " ",
        "\n",
        "#",
        "é",
        "\u{0}",
        "errno 3024",
        "error",
        "MySQL56/",
        ":1-5",
        "-",
        "3e11fa47-71ca-11e1-9e33-c80aa9429562",
    ];
    for seed in 0..2_000 {
        let text = noise(seed, (seed % 40) as usize, &alphabet);
        let _ = LastPk::parse(&text);
        let _ = crate::vitess::tablet::gtid::Position::parse(&text);
        let _ = classify_message(&text, seed % 2 == 0);
        let _ = mysql_error_codes(&text);
    }
}

#[test]
fn error_codes_are_extracted() {
    assert_eq!(
        mysql_error_codes("x (errno 3024) (sqlstate HY000)"),
        vec![3024]
    );
    assert_eq!(mysql_error_codes("Error 1205: y"), vec![1205]);
    assert_eq!(mysql_error_codes("error code: 2013"), vec![2013]);
    assert_eq!(mysql_error_codes("ERROR 1146 (42S02)"), vec![1146]);
    assert!(mysql_error_codes("errors 12 and error 99999999 and error12345x").is_empty());
    assert!(mysql_error_codes("").is_empty());
    assert_eq!(mysql_error_codes("ésërrör éerrno 2013é"), vec![2013]);
}
