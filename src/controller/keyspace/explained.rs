//! [`Explained`]: which denied tables and routing rules some workflow accounts for.
//!
//! Drift is "a denied table or routing rule that no workflow explains". Two kinds of workflow
//! explain things: the `MoveTablesWorkflow` resources vtmove knows (built by the caller from the
//! API server), and VReplication workflows found on tablets, which covers workflows people
//! started with vtctldclient. A workflow moving tables `T…` between keyspaces `S` and `K`
//! explains:
//! * the denied tables `T…` on either keyspace (Vitess denies them on the side that must not take
//!   writes, and the side can change while the workflow lives);
//! * the nine routing-rule keys of each table (`T`, `T@replica`, `T@rdonly`, `S.T…`, `K.T…`, as
//!   [`table_rule_keys`] spells them), whichever way they point.
//!
//! A workflow also *references* both its keyspaces, which blocks deleting them.

use std::collections::{BTreeMap, BTreeSet};

use crate::api::movetables::MoveTablesWorkflow;
use crate::vitess::routing::rules::table_rule_keys;
use crate::vitess::routing::{KeyspaceName, TableName};

/// One workflow as far as drift is concerned: its name, keyspaces and tables.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct WorkflowRef {
    /// Vitess workflow name.
    pub name: String,
    /// Keyspace the tables move from.
    pub source: String,
    /// Keyspace the tables move to.
    pub target: String,
    /// The moved tables.
    pub tables: Vec<String>,
    /// Reads are switched in some cells only (`traffic.cells`), so cells' SrvVSchemas are
    /// deliberately different from the global rules and must not be rebuilt by the keyspace
    /// controller.
    pub cell_scoped: bool,
    /// Where the workflow was learned from.
    pub origin: WorkflowOrigin,
}

/// Where a [`WorkflowRef`] comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum WorkflowOrigin {
    /// A `MoveTablesWorkflow` resource.
    Resource,
    /// VReplication streams found on a tablet (for example made by vtctldclient). Its cell scope
    /// is unknown.
    Tablet,
}

/// The set of (keyspace, table) denials and routing-rule keys some workflow accounts for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Explained {
    denied: BTreeSet<(String, String)>,
    /// Rule key → the keyspaces of the workflows that own it.
    rule_keys: BTreeMap<String, BTreeSet<String>>,
    workflows: BTreeSet<WorkflowRef>,
}

impl Explained {
    /// Nothing explained.
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything the given `MoveTablesWorkflow` resources explain.
    pub fn from_workflows<'a>(workflows: impl IntoIterator<Item = &'a MoveTablesWorkflow>) -> Self {
        let mut explained = Self::new();
        for wf in workflows {
            explained.add(WorkflowRef {
                name: wf.workflow_name(),
                source: wf.spec.source_keyspace.clone(),
                target: wf.spec.target_keyspace.clone(),
                tables: wf.spec.tables.clone(),
                cell_scoped: !wf.spec.traffic.cells.is_empty(),
                origin: WorkflowOrigin::Resource,
            });
        }
        explained
    }

    /// Adds one workflow.
    pub fn add(&mut self, workflow: WorkflowRef) {
        let source = KeyspaceName::new(workflow.source.as_str());
        let target = KeyspaceName::new(workflow.target.as_str());
        for table in &workflow.tables {
            for keyspace in [&workflow.source, &workflow.target] {
                self.denied.insert((keyspace.clone(), table.clone()));
            }
            if source != target {
                for key in table_rule_keys(&source, &target, &TableName::new(table.as_str())) {
                    let owners = self.rule_keys.entry(key.from_table()).or_default();
                    owners.insert(workflow.source.clone());
                    owners.insert(workflow.target.clone());
                }
            }
        }
        self.workflows.insert(workflow);
    }

    /// A copy with `more` added (the tablet-side workflows of one observation).
    pub fn with(&self, more: impl IntoIterator<Item = WorkflowRef>) -> Self {
        let mut out = self.clone();
        for workflow in more {
            out.add(workflow);
        }
        out
    }

    /// Whether denying `table` on `keyspace` is accounted for.
    pub fn explains_denied(&self, keyspace: &str, table: &str) -> bool {
        self.denied
            .contains(&(keyspace.to_string(), table.to_string()))
    }

    /// Whether the routing rule keyed `from_table` is accounted for by a workflow that involves
    /// `keyspace` (an unqualified key `t` is owned by every workflow moving a table `t`, so the
    /// keyspace is what tells them apart).
    pub fn explains_rule(&self, keyspace: &str, from_table: &str) -> bool {
        self.rule_keys
            .get(from_table)
            .is_some_and(|owners| owners.contains(keyspace))
    }

    /// The workflows that name `keyspace` as source or target, sorted, without duplicates.
    pub fn workflows_referencing(&self, keyspace: &str) -> Vec<String> {
        let names: BTreeSet<&str> = self
            .workflows
            .iter()
            .filter(|w| w.source == keyspace || w.target == keyspace)
            .map(|w| w.name.as_str())
            .collect();
        names.into_iter().map(str::to_string).collect()
    }

    /// Whether a workflow touching `keyspace` may keep cells' SrvVSchemas deliberately apart
    /// from the global rules: a resource with `traffic.cells`, or any tablet-side workflow
    /// (whose cell scope cannot be known from its streams).
    pub fn may_scope_cells(&self, keyspace: &str) -> bool {
        self.workflows.iter().any(|w| {
            (w.source == keyspace || w.target == keyspace)
                && (w.cell_scoped || w.origin == WorkflowOrigin::Tablet)
        })
    }

    /// Every workflow, sorted.
    pub fn workflows(&self) -> impl Iterator<Item = &WorkflowRef> {
        self.workflows.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wf(name: &str, source: &str, target: &str, tables: &[&str]) -> WorkflowRef {
        WorkflowRef {
            name: name.into(),
            source: source.into(),
            target: target.into(),
            tables: tables.iter().map(|t| t.to_string()).collect(),
            cell_scoped: false,
            origin: WorkflowOrigin::Resource,
        }
    }

    #[test]
    fn a_workflow_explains_all_nine_rule_keys_of_each_table() {
        let mut e = Explained::new();
        e.add(wf("wf", "commerce", "customer", &["t"]));
        for key in [
            "t",
            "t@replica",
            "t@rdonly",
            "customer.t",
            "customer.t@replica",
            "customer.t@rdonly",
            "commerce.t",
            "commerce.t@replica",
            "commerce.t@rdonly",
        ] {
            assert!(e.explains_rule("customer", key), "{key}");
            assert!(e.explains_rule("commerce", key), "{key}");
            assert!(!e.explains_rule("other", key), "{key}");
        }
        for key in ["t@primary", "other.t", "u", "commerce.u"] {
            assert!(!e.explains_rule("commerce", key), "{key}");
        }
    }

    #[test]
    fn denied_tables_are_explained_on_both_keyspaces_only() {
        let e = Explained::new().with([wf("wf", "commerce", "customer", &["t", "u"])]);
        assert!(e.explains_denied("commerce", "t"));
        assert!(e.explains_denied("customer", "u"));
        assert!(!e.explains_denied("other", "t"));
        assert!(!e.explains_denied("commerce", "v"));
    }

    #[test]
    fn references_and_cell_scope() {
        let mut scoped = wf("a", "s", "k", &["t"]);
        scoped.cell_scoped = true;
        let mut tablet = wf("b", "x", "y", &["t"]);
        tablet.origin = WorkflowOrigin::Tablet;
        let e = Explained::new().with([scoped, tablet, wf("c", "k", "z", &["u"])]);
        assert_eq!(e.workflows_referencing("k"), ["a", "c"]);
        assert!(e.workflows_referencing("nope").is_empty());
        assert!(e.may_scope_cells("s"));
        assert!(e.may_scope_cells("y"));
        assert!(!e.may_scope_cells("z"));
    }
}
