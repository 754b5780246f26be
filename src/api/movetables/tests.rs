use super::*;

fn spec() -> MoveTablesWorkflowSpec {
    MoveTablesWorkflowSpec {
        workflow: None,
        source_keyspace: "commerce".into(),
        target_keyspace: "customer".into(),
        tables: vec!["customer".into(), "corder".into()],
        cells: vec![],
        tablet_types: vec![],
        tablet_selection_preference: None,
        on_ddl: OnDdl::default(),
        defer_secondary_keys: false,
        stop_after_copy: false,
        traffic: TrafficSpec::default(),
        lifecycle: Lifecycle::default(),
        complete: CompleteOptions::default(),
        cancel: CancelOptions::default(),
        cutover: CutoverSpec::default(),
        paused: false,
    }
}

fn fields(result: Result<(), Vec<FieldError>>) -> Vec<String> {
    result
        .err()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e.field)
        .collect()
}

#[test]
fn minimal_spec_is_valid() {
    assert_eq!(spec().validate(), Ok(()));
}

#[test]
fn defaults_match_vitess() {
    let s: MoveTablesWorkflowSpec = serde_json::from_value(serde_json::json!({
        "sourceKeyspace": "commerce",
        "targetKeyspace": "customer",
        "tables": ["customer"],
    }))
    .unwrap();
    assert_eq!(s.on_ddl, OnDdl::Ignore);
    assert_eq!(s.lifecycle, Lifecycle::Active);
    assert!(s.traffic.all_on(TrafficSide::Source));
    assert_eq!(
        s.cutover.max_replication_lag_allowed.to_duration(),
        Ok(Duration::from_secs(30))
    );
    assert_eq!(s.cutover.timeout.to_duration(), Ok(Duration::from_secs(30)));
    assert!(s.cutover.enable_reverse_replication);
    assert!(!s.cutover.force);
    assert!(!s.paused);
}

#[test]
fn wire_names() {
    let mut s = spec();
    s.on_ddl = OnDdl::ExecIgnore;
    s.tablet_types = vec![SourceTabletType::Rdonly];
    s.tablet_selection_preference = Some(TabletSelectionPreference::InOrder);
    let v = serde_json::to_value(&s).unwrap();
    assert_eq!(v["onDDL"], "EXEC_IGNORE");
    assert_eq!(v["tabletTypes"][0], "rdonly");
    assert_eq!(v["tabletSelectionPreference"], "inOrder");
    assert_eq!(v["traffic"]["primary"], "Source");
    assert_eq!(v["lifecycle"], "Active");
    assert_eq!(v["cutover"]["maxReplicationLagAllowed"], "30s");
    assert_eq!(v["complete"]["ignoreSourceKeyspace"], false);
}

#[test]
fn duplicate_and_malformed_tables() {
    let mut s = spec();
    s.tables = vec![
        "customer".into(),
        "customer".into(),
        "bad-name".into(),
        "123".into(),
        "_vt_hld_x".into(),
    ];
    assert_eq!(
        fields(s.validate()),
        [
            "spec.tables[1]",
            "spec.tables[2]",
            "spec.tables[3]",
            "spec.tables[4]"
        ]
    );
    s.tables.clear();
    assert_eq!(fields(s.validate()), ["spec.tables"]);
}

#[test]
fn same_keyspace_twice() {
    let mut s = spec();
    s.target_keyspace = "commerce".into();
    assert_eq!(fields(s.validate()), ["spec.targetKeyspace"]);
}

#[test]
fn reserved_and_bad_workflow_names() {
    let mut s = spec();
    s.workflow = Some("move_reverse".into());
    assert_eq!(fields(s.validate()), ["spec.workflow"]);
    s.workflow = Some("a.b".into());
    assert_eq!(fields(s.validate()), ["spec.workflow"]);
    s.workflow = Some("x".repeat(64));
    assert_eq!(fields(s.validate()), ["spec.workflow"]);
    s.workflow = Some("commerce2customer".into());
    assert_eq!(s.validate(), Ok(()));
}

#[test]
fn metadata_name_stands_in_for_workflow() {
    let mut mtw = MoveTablesWorkflow::new("move.customers", spec());
    let errors = mtw.validate().unwrap_err();
    assert_eq!(errors[0].field, "metadata.name");
    assert!(errors[0].message.contains("spec.workflow is unset"));
    assert_eq!(mtw.workflow_name(), "move.customers");

    mtw.spec.workflow = Some("move_customers".into());
    assert_eq!(mtw.validate(), Ok(()));
    assert_eq!(mtw.workflow_name(), "move_customers");
    assert_eq!(mtw.reverse_workflow_name(), "move_customers_reverse");
}

#[test]
fn duration_ranges() {
    let mut s = spec();
    s.cutover.timeout = "500ms".into();
    s.cutover.max_replication_lag_allowed = "2h".into();
    assert_eq!(
        fields(s.validate()),
        [
            "spec.cutover.maxReplicationLagAllowed",
            "spec.cutover.timeout"
        ]
    );
    s.cutover.timeout = "10m".into();
    s.cutover.max_replication_lag_allowed = "1s".into();
    assert_eq!(s.validate(), Ok(()));
    s.cutover.timeout = "10m1s".into();
    assert_eq!(fields(s.validate()), ["spec.cutover.timeout"]);
    s.cutover.timeout = "30".into();
    let errors = s.validate().unwrap_err();
    assert!(errors[0].message.contains("expected a unit"));
}

#[test]
fn writes_only_after_reads_everywhere() {
    let mut s = spec();
    s.traffic.primary = TrafficSide::Target;
    assert_eq!(fields(s.validate()), ["spec.traffic.primary"]);
    s.traffic.replica = TrafficSide::Target;
    s.traffic.rdonly = TrafficSide::Target;
    assert_eq!(s.validate(), Ok(()));
    s.traffic.cells = vec!["zone1".into()];
    assert_eq!(fields(s.validate()), ["spec.traffic.primary"]);
}

#[test]
fn reads_cell_by_cell() {
    let mut s = spec();
    s.traffic.replica = TrafficSide::Target;
    s.traffic.cells = vec!["zone1".into(), "zone1".into(), "bad cell".into()];
    assert_eq!(
        fields(s.validate()),
        ["spec.traffic.cells[1]", "spec.traffic.cells[2]"]
    );
}

#[test]
fn lifecycle_must_agree_with_traffic() {
    let mut s = spec();
    s.lifecycle = Lifecycle::Complete;
    assert_eq!(fields(s.validate()), ["spec.lifecycle"]);
    s.traffic = TrafficSpec {
        replica: TrafficSide::Target,
        rdonly: TrafficSide::Target,
        primary: TrafficSide::Target,
        cells: vec![],
    };
    assert_eq!(s.validate(), Ok(()));
    s.lifecycle = Lifecycle::Cancel;
    assert_eq!(fields(s.validate()), ["spec.lifecycle"]);
    s.traffic = TrafficSpec::default();
    assert_eq!(s.validate(), Ok(()));
}

#[test]
fn tablet_types() {
    let mut s = spec();
    s.tablet_selection_preference = Some(TabletSelectionPreference::InOrder);
    assert_eq!(fields(s.validate()), ["spec.tabletSelectionPreference"]);
    s.tablet_types = vec![
        SourceTabletType::Replica,
        SourceTabletType::Primary,
        SourceTabletType::Replica,
    ];
    assert_eq!(fields(s.validate()), ["spec.tabletTypes[2]"]);
}

#[test]
fn status_lag() {
    let mut status = MoveTablesWorkflowStatus::default();
    status.set_lag(Some(Duration::from_millis(2500)));
    assert_eq!(status.max_lag_seconds, Some(2));
    assert_eq!(status.lag.as_deref(), Some("2s"));
    status.set_lag(None);
    assert_eq!(status.max_lag_seconds, None);
    assert_eq!(status.lag.as_deref(), Some("copying"));
}

#[test]
fn empty_status_serializes_to_empty_object() {
    let v = serde_json::to_value(MoveTablesWorkflowStatus::default()).unwrap();
    assert_eq!(v, serde_json::json!({}));
}

#[test]
fn status_conditions_use_the_shared_setter() {
    use crate::api::condition::{ConditionStatus, reasons, types};
    use k8s_openapi::jiff::Timestamp;
    let now = Time(Timestamp::from_second(1_700_000_000).unwrap());
    let mut status = MoveTablesWorkflowStatus::default();
    assert!(status.ensure_conditions(Some(1), &now));
    assert_eq!(status.conditions.len(), 8);
    assert!(status.set_condition(
        ConditionUpdate::new(
            types::PAUSED,
            ConditionStatus::False,
            reasons::NOT_PAUSED,
            ""
        ),
        Some(1),
        &now,
    ));
    assert_eq!(status.conditions[7].type_, "Paused");
    assert_eq!(status.conditions[7].status, "False");
}
