//! Names derived from a workflow and the checks [`MoveTablesWorkflowSpec::validate`] runs
//! after admission, so a spec the controller acts on is valid whatever API server stored it.

use super::*;

impl MoveTablesWorkflow {
    /// The Vitess workflow name: `spec.workflow`, or metadata.name when unset.
    pub fn workflow_name(&self) -> String {
        self.spec
            .workflow
            .clone()
            .unwrap_or_else(|| self.name_any())
    }

    /// The reverse workflow name, `<workflow>_reverse`.
    pub fn reverse_workflow_name(&self) -> String {
        format!("{}{REVERSE_WORKFLOW_SUFFIX}", self.workflow_name())
    }

    /// Validates the spec (see [`MoveTablesWorkflowSpec::validate`]) and, when `spec.workflow` is
    /// unset, that metadata.name can serve as the workflow name.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = self.spec.validate().err().unwrap_or_default();
        if self.spec.workflow.is_none() {
            let name = self.name_any();
            let before = errors.len();
            check_workflow_name(&mut errors, "metadata.name", &name);
            for e in &mut errors[before..] {
                e.message
                    .push_str(" (spec.workflow is unset, so metadata.name is the workflow name)");
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

fn check_workflow_name(errors: &mut Vec<FieldError>, field: &str, name: &str) {
    let before = errors.len();
    check_name(
        errors,
        field,
        name,
        NAME_PATTERN,
        NAME_MAX_LENGTH,
        "workflow name",
    );
    if errors.len() == before && name.ends_with(REVERSE_WORKFLOW_SUFFIX) {
        errors.push(FieldError::new(
            field,
            format!(
                "workflow name {name:?} must not end in {REVERSE_WORKFLOW_SUFFIX:?}, which Vitess \
                 reserves for reverse workflows"
            ),
        ));
    }
}

fn check_duration_range(
    errors: &mut Vec<FieldError>,
    field: &str,
    value: &DurationString,
    min: Duration,
    max: Duration,
) {
    match value.to_duration() {
        Err(e) => errors.push(FieldError::new(field, e.to_string())),
        Ok(d) if d < min || d > max => errors.push(FieldError::new(
            field,
            format!(
                "{value} is out of range: must be between {} and {}",
                format_duration(min),
                format_duration(max)
            ),
        )),
        Ok(_) => {}
    }
}

impl MoveTablesWorkflowSpec {
    /// Checks everything about the spec that does not need Vitess: the schema's patterns and
    /// limits, the CEL rules that involve a single version of the object (duration ranges
    /// included), and what neither expresses (names Vitess reserves, all-digit table names).
    ///
    /// Returns every problem found, not just the first.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();

        if let Some(workflow) = &self.workflow {
            check_workflow_name(&mut errors, "spec.workflow", workflow);
        }
        check_name(
            &mut errors,
            "spec.sourceKeyspace",
            &self.source_keyspace,
            NAME_PATTERN,
            NAME_MAX_LENGTH,
            "keyspace name",
        );
        check_name(
            &mut errors,
            "spec.targetKeyspace",
            &self.target_keyspace,
            NAME_PATTERN,
            NAME_MAX_LENGTH,
            "keyspace name",
        );
        if self.source_keyspace == self.target_keyspace {
            errors.push(FieldError::new(
                "spec.targetKeyspace",
                "targetKeyspace must differ from sourceKeyspace",
            ));
        }

        if self.tables.is_empty() {
            errors.push(FieldError::new(
                "spec.tables",
                "at least one table is required",
            ));
        }
        check_name_list(
            &mut errors,
            "spec.tables",
            &self.tables,
            TABLE_NAME_PATTERN,
            TABLE_NAME_MAX_LENGTH,
            MAX_TABLES,
            "table",
        );
        for (i, table) in self.tables.iter().enumerate() {
            if !table.is_empty() && table.bytes().all(|b| b.is_ascii_digit()) {
                errors.push(FieldError::new(
                    format!("spec.tables[{i}]"),
                    format!("table name {table:?} is all digits, which MySQL does not allow"),
                ));
            }
            if table.starts_with("_vt_") {
                errors.push(FieldError::new(
                    format!("spec.tables[{i}]"),
                    format!("table {table:?} is a Vitess internal table and cannot be moved"),
                ));
            }
        }

        check_name_list(
            &mut errors,
            "spec.cells",
            &self.cells,
            NAME_PATTERN,
            NAME_MAX_LENGTH,
            MAX_CELLS,
            "cell",
        );
        let mut tablet_types = BTreeSet::new();
        for (i, t) in self.tablet_types.iter().enumerate() {
            if !tablet_types.insert(*t) {
                errors.push(FieldError::new(
                    format!("spec.tabletTypes[{i}]"),
                    format!("duplicate tablet type {:?}", t.as_str()),
                ));
            }
        }
        if self.tablet_selection_preference == Some(TabletSelectionPreference::InOrder)
            && self.tablet_types.is_empty()
        {
            errors.push(FieldError::new(
                "spec.tabletSelectionPreference",
                "inOrder needs tabletTypes to say the order",
            ));
        }

        let traffic = &self.traffic;
        if traffic.cells.is_empty() {
            // Unset: every cell.
        } else {
            check_name_list(
                &mut errors,
                "spec.traffic.cells",
                &traffic.cells,
                NAME_PATTERN,
                NAME_MAX_LENGTH,
                MAX_CELLS,
                "cell",
            );
        }
        if traffic.primary == TrafficSide::Target
            && (traffic.replica != TrafficSide::Target
                || traffic.rdonly != TrafficSide::Target
                || !traffic.cells.is_empty())
        {
            errors.push(FieldError::new(
                "spec.traffic.primary",
                "primary can be Target only when replica and rdonly are Target in every cell \
                 (traffic.cells unset)",
            ));
        }
        match self.lifecycle {
            Lifecycle::Complete if !traffic.all_on(TrafficSide::Target) => {
                errors.push(FieldError::new(
                    "spec.lifecycle",
                    "lifecycle Complete requires traffic.replica, traffic.rdonly and \
                     traffic.primary to be Target",
                ));
            }
            Lifecycle::Cancel if !traffic.all_on(TrafficSide::Source) => {
                errors.push(FieldError::new(
                    "spec.lifecycle",
                    "lifecycle Cancel requires traffic.replica, traffic.rdonly and \
                     traffic.primary to be Source",
                ));
            }
            _ => {}
        }

        check_duration_range(
            &mut errors,
            "spec.cutover.maxReplicationLagAllowed",
            &self.cutover.max_replication_lag_allowed,
            MIN_MAX_REPLICATION_LAG,
            MAX_MAX_REPLICATION_LAG,
        );
        check_duration_range(
            &mut errors,
            "spec.cutover.timeout",
            &self.cutover.timeout,
            MIN_CUTOVER_TIMEOUT,
            MAX_CUTOVER_TIMEOUT,
        );

        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}
