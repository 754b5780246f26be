//! `spec.vschema` in a keyspace pass: what counts as drift from the declared VSchema and what
//! a write restores (pure; the decisions are explained in `plan`'s module docs).

use std::collections::HashMap;

use super::observe::KeyspaceObserved;
use super::plan::VSCHEMA_DRIFT;
use crate::api::keyspace::{DriftFinding, DriftPolicy, KeyspaceSpec};
use crate::vitess::proto::vschema;
use crate::vitess::topo::Version;

/// A keyspace VSchema record to write.
#[derive(Clone, Debug, PartialEq)]
pub struct VSchemaWrite {
    /// The version of the record the decision was made on; `None`: there was no record. The
    /// executor writes only if the record is still so under the keyspace lock.
    pub expected: Option<Version>,
    /// The record to write.
    pub record: vschema::Keyspace,
    /// What the write restores (`vindex hash`, `table customer`); empty when it writes the whole
    /// declared VSchema (creation, adoption of a keyspace without one).
    pub restores: Vec<String>,
}

/// The VSchema findings, and the record to write if one is to be written (see the module docs):
/// the whole declaration when the keyspace is being created or has no VSchema record, the
/// declared vindexes and tables restored under `Repair`, nothing otherwise (or when not `live`).
pub(super) fn vschema_plan(
    spec: &KeyspaceSpec,
    observed: &KeyspaceObserved,
    live: bool,
) -> (Vec<DriftFinding>, Option<VSchemaWrite>) {
    let ks = observed.keyspace.as_str();
    // A declaration that cannot be read never gets here: validation refuses the spec first.
    let Ok(Some(declared)) = spec.declared_vschema() else {
        return (Vec::new(), None);
    };
    let whole = |expected| VSchemaWrite {
        expected,
        record: declared.clone(),
        restores: Vec::new(),
    };
    if observed.record.is_none() {
        return (Vec::new(), live.then(|| whole(None)));
    }
    let Some((record, version)) = &observed.vschema else {
        let finding = DriftFinding {
            reason: VSCHEMA_DRIFT.to_string(),
            subject: format!("{ks} VSchema"),
            message: format!(
                "keyspace {ks} has no VSchema record; vtmove writes spec.vschema to adopt it."
            ),
            repaired: false,
        };
        return (vec![finding], live.then(|| whole(None)));
    };
    let mut findings = Vec::new();
    let repair = spec.drift_policy == DriftPolicy::Repair;
    let mut restored = record.clone();
    let mut restores = Vec::new();
    if record.sharded != declared.sharded {
        findings.push(DriftFinding {
            reason: VSCHEMA_DRIFT.to_string(),
            subject: format!("{ks} VSchema sharded"),
            message: format!(
                "the VSchema of keyspace {ks} says sharded: {}, spec.vschema says {}; vtmove \
                 never flips sharded on an existing keyspace (it changes how every table routes, \
                 and a keyspace with data needs a reshard), so it is only reported.",
                record.sharded, declared.sharded
            ),
            repaired: false,
        });
    }
    let fix = if repair {
        "driftPolicy Repair restores the declaration"
    } else {
        "driftPolicy Repair would restore the declaration"
    };
    let mut restore = Restore {
        keyspace: ks,
        fix,
        findings: &mut findings,
        restores: &mut restores,
    };
    restore.entries(
        "vindex",
        &declared.vindexes,
        &record.vindexes,
        &mut restored.vindexes,
    );
    restore.entries(
        "table",
        &declared.tables,
        &record.tables,
        &mut restored.tables,
    );
    let write = (live && repair && !restores.is_empty()).then_some(VSchemaWrite {
        expected: Some(*version),
        record: restored,
        restores,
    });
    (findings, write)
}

/// Collects the findings and restorations of one VSchema comparison.
struct Restore<'a> {
    keyspace: &'a str,
    fix: &'a str,
    findings: &'a mut Vec<DriftFinding>,
    restores: &'a mut Vec<String>,
}

impl Restore<'_> {
    /// Every `kind` entry (`vindex`, `table`) the declaration has and the record lacks or holds
    /// differently, in name order: a finding, and the declared entry put into `restored`.
    fn entries<V: Clone + PartialEq>(
        &mut self,
        kind: &str,
        declared: &HashMap<String, V>,
        record: &HashMap<String, V>,
        restored: &mut HashMap<String, V>,
    ) {
        let ks = self.keyspace;
        let fix = self.fix;
        let mut names: Vec<&String> = declared.keys().collect();
        names.sort();
        for name in names {
            let Some(want) = declared.get(name) else {
                continue;
            };
            let problem = match record.get(name) {
                None => "is missing from",
                Some(have) if have != want => "differs in",
                Some(_) => continue,
            };
            self.findings.push(DriftFinding {
                reason: VSCHEMA_DRIFT.to_string(),
                subject: format!("{ks} VSchema {kind} {name}"),
                message: format!(
                    "{kind} {name} declared in spec.vschema {problem} the VSchema of keyspace \
                     {ks}; {fix}."
                ),
                repaired: false,
            });
            restored.insert(name.clone(), want.clone());
            self.restores.push(format!("{kind} {name}"));
        }
    }
}
