//! Where vtgate sends a query for a table, computed from the same inputs vtgate uses: a cell's
//! `SrvVSchema` (routing rules plus every keyspace's VSchema).
//!
//! The behaviour reproduced, from vtgate's VSchema build and table lookup:
//!
//! * **Rules.** Each stored rule is compiled once, in stored order. A rule with more than one
//!   target is an error for its key; a second rule with the same key (and at least one target)
//!   turns the key into a "duplicate rule" error; a target must be `keyspace.table` with a known
//!   keyspace, and a table the keyspace has (an unsharded keyspace has every table; a sharded one
//!   only those its VSchema lists). A rule with no target disables the table.
//! * **Lookup.** For `[ks.]t` and a tablet type vtgate tries the key with the type suffix
//!   (`@replica`, `@rdonly`, and `@primary` for PRIMARY in recent vtgates), then the bare key. A
//!   matching rule decides: its target, its error, or "disabled". Note the fallback: a missing
//!   `T@replica` key makes REPLICA reads follow the `T` rule.
//! * **No rule, qualified name.** `ks.t` goes to `ks` if the keyspace exists and has the table
//!   (unsharded keyspaces have every table).
//! * **No rule, unqualified name.** If the VSchema holds exactly one keyspace, the name goes there
//!   (if that keyspace has the table). Otherwise it goes to the single keyspace whose VSchema lists
//!   the table; listed by several keyspaces it is ambiguous (an error); listed by none it is not
//!   found. Keyspaces with `require_explicit_routing` do not take part, and a reference table
//!   whose `source` names a table of the same name defers to that source. This is vtgate's
//!   default; there is deliberately no "the only unsharded keyspace among several" fallback,
//!   because vtgate has none.
//! * **Session keyspace.** vtgate looks an unqualified table up as `ks.t` when the session selected
//!   `ks`; callers model that by passing a qualified [`TableRef`].
//!
//! Keyspace routing rules (multi-tenant) and shard routing rules (partial MoveTables) are not
//! applied: standard MoveTables, which is what vtmove runs, uses neither.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::names::{KeyspaceName, QualifiedTable, TableName, TableRef, TrafficType};
use super::placement::{MovedTables, Side, TrafficPlacement};
use crate::vitess::proto::vschema;

/// Why a stored routing rule is unusable (vtgate reports it for every query using its key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// More than one entry in `to_tables`.
    #[error("table {from_table} has more than one target: {targets:?}")]
    MultipleTargets {
        /// The rule key.
        from_table: String,
        /// Its targets.
        targets: Vec<String>,
    },
    /// The same key appears more than once.
    #[error("duplicate rule for entry {from_table}")]
    Duplicate {
        /// The rule key.
        from_table: String,
    },
    /// The target is not of the form `keyspace.table`.
    #[error(
        "invalid table name: '{target}', it must be of the qualified form <keyspace_name>.<table_name> (dots are not allowed in either name)"
    )]
    MalformedTarget {
        /// The target as stored.
        target: String,
    },
    /// The target keyspace is not in the VSchema.
    #[error("unknown database '{keyspace}' in vschema")]
    UnknownTargetKeyspace {
        /// The missing keyspace.
        keyspace: KeyspaceName,
    },
    /// The target keyspace is sharded and does not list the table.
    #[error("table {target} not found")]
    TargetTableNotFound {
        /// The target.
        target: QualifiedTable,
    },
}

/// Why a table reference does not resolve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The reference is not `t` or `ks.t`.
    #[error("invalid table name {name}")]
    InvalidName {
        /// The name as given.
        name: String,
    },
    /// The rule that matched is unusable.
    #[error("routing rule {key}: {error}")]
    InvalidRule {
        /// The matching key.
        key: String,
        /// Why the rule is unusable.
        error: RuleError,
    },
    /// The rule that matched has no target.
    #[error("table {table} has been disabled")]
    Disabled {
        /// The table.
        table: TableName,
    },
    /// An unqualified name listed by several keyspaces.
    #[error("ambiguous table reference: {table}")]
    Ambiguous {
        /// The table.
        table: TableName,
    },
    /// The qualifier names a keyspace that is not in the VSchema.
    #[error("unknown database '{keyspace}' in vschema")]
    UnknownKeyspace {
        /// The keyspace.
        keyspace: KeyspaceName,
    },
    /// No keyspace serves the table.
    #[error("table {table} not found")]
    TableNotFound {
        /// The reference that failed.
        table: TableRef,
    },
}

#[derive(Debug, Clone)]
enum CompiledRule {
    Route(QualifiedTable),
    Disabled,
    Invalid(RuleError),
}

#[derive(Debug, Clone)]
struct KeyspaceTables {
    sharded: bool,
    tables: HashSet<String>,
}

impl KeyspaceTables {
    /// vtgate's per-keyspace lookup: listed tables, plus every table of an unsharded keyspace.
    fn has(&self, table: &str) -> bool {
        !self.sharded || self.tables.contains(table)
    }
}

#[derive(Debug, Clone)]
enum GlobalTable {
    Unique(KeyspaceName),
    Ambiguous,
}

/// A compiled routing view: answers "where does vtgate send `[ks.]t` for this tablet type".
#[derive(Debug, Clone)]
pub struct RoutingView {
    rules: HashMap<String, CompiledRule>,
    keyspaces: BTreeMap<KeyspaceName, KeyspaceTables>,
    global_tables: HashMap<String, GlobalTable>,
}

impl RoutingView {
    /// The view a cell's vtgates have.
    pub fn from_srv_vschema(srv: &vschema::SrvVSchema) -> Self {
        Self::new(srv.routing_rules.as_ref(), &srv.keyspaces)
    }

    /// A view from routing rules and keyspace VSchemas (for example the global rules and the
    /// keyspace records, before any `SrvVSchema` is rebuilt).
    pub fn new<'a>(
        rules: Option<&vschema::RoutingRules>,
        keyspaces: impl IntoIterator<Item = (&'a String, &'a vschema::Keyspace)>,
    ) -> Self {
        let mut sorted: Vec<(&String, &vschema::Keyspace)> = keyspaces.into_iter().collect();
        // Sorted so that the order-dependent parts of vtgate's build (which iterates a Go map)
        // come out the same on every run.
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        let keyspace_tables = sorted
            .iter()
            .map(|(name, ks)| {
                (
                    KeyspaceName::new(name.as_str()),
                    KeyspaceTables {
                        sharded: ks.sharded,
                        tables: ks.tables.keys().cloned().collect(),
                    },
                )
            })
            .collect();
        let mut view = Self {
            rules: HashMap::new(),
            keyspaces: keyspace_tables,
            global_tables: build_global_tables(&sorted),
        };
        if let Some(rules) = rules {
            view.rules = view.compile_rules(rules);
        }
        view
    }

    fn compile_rules(&self, rules: &vschema::RoutingRules) -> HashMap<String, CompiledRule> {
        let mut compiled: HashMap<String, CompiledRule> = HashMap::new();
        for rule in &rules.rules {
            let from_table = rule.from_table.clone();
            let outcome = match rule.to_tables.as_slice() {
                [] => CompiledRule::Disabled,
                [_, _, ..] => CompiledRule::Invalid(RuleError::MultipleTargets {
                    from_table: from_table.clone(),
                    targets: rule.to_tables.clone(),
                }),
                [_] if compiled.contains_key(&from_table) => {
                    CompiledRule::Invalid(RuleError::Duplicate {
                        from_table: from_table.clone(),
                    })
                }
                [target] => match self.compile_target(target) {
                    Ok(to) => CompiledRule::Route(to),
                    Err(error) => CompiledRule::Invalid(error),
                },
            };
            compiled.insert(from_table, outcome);
        }
        compiled
    }

    fn compile_target(&self, target: &str) -> Result<QualifiedTable, RuleError> {
        let to = QualifiedTable::parse(target).ok_or_else(|| RuleError::MalformedTarget {
            target: target.to_owned(),
        })?;
        let keyspace =
            self.keyspaces
                .get(&to.keyspace)
                .ok_or_else(|| RuleError::UnknownTargetKeyspace {
                    keyspace: to.keyspace.clone(),
                })?;
        if keyspace.has(to.table.as_str()) {
            Ok(to)
        } else {
            Err(RuleError::TargetTableNotFound { target: to })
        }
    }

    /// Resolves a table reference for one tablet type, like vtgate does.
    pub fn resolve(
        &self,
        table: &TableRef,
        traffic: TrafficType,
    ) -> Result<QualifiedTable, ResolveError> {
        let name = table.to_string();
        let keys = [format!("{name}{}", traffic.lookup_suffix()), name];
        if let Some((key, rule)) = keys
            .iter()
            .find_map(|key| self.rules.get(key).map(|rule| (key, rule)))
        {
            return match rule {
                CompiledRule::Route(to) => Ok(to.clone()),
                CompiledRule::Disabled => Err(ResolveError::Disabled {
                    table: table.table.clone(),
                }),
                CompiledRule::Invalid(error) => Err(ResolveError::InvalidRule {
                    key: key.clone(),
                    error: error.clone(),
                }),
            };
        }
        self.find_table(table)
    }

    /// [`RoutingView::resolve`] for a name given as text (`t` or `ks.t`).
    pub fn resolve_name(
        &self,
        name: &str,
        traffic: TrafficType,
    ) -> Result<QualifiedTable, ResolveError> {
        let table = TableRef::parse(name).ok_or_else(|| ResolveError::InvalidName {
            name: name.to_owned(),
        })?;
        self.resolve(&table, traffic)
    }

    /// The lookup without routing rules.
    fn find_table(&self, table: &TableRef) -> Result<QualifiedTable, ResolveError> {
        let not_found = || ResolveError::TableNotFound {
            table: table.clone(),
        };
        let name = table.table.as_str();
        if let Some(keyspace) = &table.keyspace {
            let tables =
                self.keyspaces
                    .get(keyspace)
                    .ok_or_else(|| ResolveError::UnknownKeyspace {
                        keyspace: keyspace.clone(),
                    })?;
            return if tables.has(name) {
                Ok(QualifiedTable::new(keyspace.clone(), table.table.clone()))
            } else {
                Err(not_found())
            };
        }
        if self.keyspaces.len() == 1 {
            return self
                .keyspaces
                .iter()
                .find(|(_, tables)| tables.has(name))
                .map(|(keyspace, _)| QualifiedTable::new(keyspace.clone(), table.table.clone()))
                .ok_or_else(not_found);
        }
        match self.global_tables.get(name) {
            Some(GlobalTable::Unique(keyspace)) => {
                Ok(QualifiedTable::new(keyspace.clone(), table.table.clone()))
            }
            Some(GlobalTable::Ambiguous) => Err(ResolveError::Ambiguous {
                table: table.table.clone(),
            }),
            None => Err(not_found()),
        }
    }

    /// Where each traffic type for `table` goes, as sides of the workflow. Fails if a type does
    /// not resolve or resolves to a keyspace that is neither source nor target.
    pub fn placement_of(
        &self,
        moved: &MovedTables,
        table: &TableRef,
    ) -> Result<TrafficPlacement, PlacementError> {
        let side = |traffic| -> Result<Side, PlacementError> {
            let to = self
                .resolve(table, traffic)
                .map_err(|error| PlacementError::Unresolved {
                    traffic,
                    error: Box::new(error),
                })?;
            moved
                .side_of(&to.keyspace)
                .ok_or(PlacementError::OutsideWorkflow { traffic, to })
        };
        Ok(TrafficPlacement {
            replica: side(TrafficType::Replica)?,
            rdonly: side(TrafficType::Rdonly)?,
            primary: side(TrafficType::Primary)?,
        })
    }

    /// The keyspace that receives writes for a moved table. The three names a query can use
    /// (`T`, `S.T`, `K.T`) must agree; if they do not, writes are split and that is reported.
    pub fn write_keyspace(
        &self,
        moved: &MovedTables,
        table: &TableName,
    ) -> Result<KeyspaceName, WriteRoutingError> {
        let names = [
            TableRef::unqualified(table.clone()),
            TableRef::qualified(moved.source.clone(), table.clone()),
            TableRef::qualified(moved.target.clone(), table.clone()),
        ];
        let mut routes = Vec::with_capacity(names.len());
        for name in names {
            match self.resolve(&name, TrafficType::Primary) {
                Ok(to) => routes.push((name, to.keyspace)),
                Err(error) => {
                    return Err(WriteRoutingError::Unresolved {
                        name,
                        error: Box::new(error),
                    });
                }
            }
        }
        let first = routes[0].1.clone();
        if routes.iter().all(|(_, keyspace)| *keyspace == first) {
            Ok(first)
        } else {
            Err(WriteRoutingError::Split { routes })
        }
    }
}

/// Why [`RoutingView::placement_of`] could not express routing as a placement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// vtgate would fail the query.
    #[error("{traffic} traffic does not resolve: {error}")]
    Unresolved {
        /// The traffic type.
        traffic: TrafficType,
        /// vtgate's error.
        error: Box<ResolveError>,
    },
    /// vtgate would send the query to a third keyspace.
    #[error("{traffic} traffic resolves to {to}, outside the workflow")]
    OutsideWorkflow {
        /// The traffic type.
        traffic: TrafficType,
        /// Where it goes.
        to: QualifiedTable,
    },
}

/// Why [`RoutingView::write_keyspace`] found no single write keyspace.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteRoutingError {
    /// Writes through one of the names fail in vtgate.
    #[error("writes to {name} do not resolve: {error}")]
    Unresolved {
        /// The name.
        name: TableRef,
        /// vtgate's error.
        error: Box<ResolveError>,
    },
    /// The names route writes to different keyspaces.
    #[error("writes are split between keyspaces: {routes:?}")]
    Split {
        /// Each name and where its writes go.
        routes: Vec<(TableRef, KeyspaceName)>,
    },
}

fn reference_source(table: &vschema::Table) -> Option<TableRef> {
    if table.r#type == "reference" && !table.source.is_empty() {
        TableRef::parse(&table.source)
    } else {
        None
    }
}

/// The unqualified-name index: each table name listed by exactly one participating keyspace maps
/// to it; names listed by several are ambiguous.
fn build_global_tables(
    keyspaces: &[(&String, &vschema::Keyspace)],
) -> HashMap<String, GlobalTable> {
    let mut global: HashMap<String, GlobalTable> = HashMap::new();
    for (keyspace, vschema) in keyspaces {
        if vschema.require_explicit_routing {
            continue;
        }
        let mut tables: Vec<(&String, &vschema::Table)> = vschema.tables.iter().collect();
        tables.sort_by(|a, b| a.0.cmp(b.0));
        for (name, table) in tables {
            let source = reference_source(table);
            match global.get(name.as_str()) {
                Some(GlobalTable::Ambiguous) => {}
                Some(GlobalTable::Unique(existing)) => {
                    // A reference table pointing at the table already indexed is no ambiguity.
                    let points_at_existing = source.as_ref().is_some_and(|source| {
                        source
                            .keyspace
                            .as_ref()
                            .is_none_or(|qualifier| qualifier == existing)
                    });
                    if !points_at_existing {
                        global.insert(name.clone(), GlobalTable::Ambiguous);
                    }
                }
                None => {
                    // A reference table with a same-named source is routed through its source.
                    let defers_to_source = source
                        .as_ref()
                        .is_some_and(|source| source.table.as_str() == name.as_str());
                    if !defers_to_source {
                        global.insert(
                            name.clone(),
                            GlobalTable::Unique(KeyspaceName::new(keyspace.as_str())),
                        );
                    }
                }
            }
        }
    }
    global
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyspace(sharded: bool, tables: &[&str]) -> vschema::Keyspace {
        vschema::Keyspace {
            sharded,
            tables: tables
                .iter()
                .map(|t| ((*t).to_owned(), vschema::Table::default()))
                .collect(),
            ..Default::default()
        }
    }

    fn rules(pairs: &[(&str, &[&str])]) -> vschema::RoutingRules {
        vschema::RoutingRules {
            rules: pairs
                .iter()
                .map(|(from, to)| vschema::RoutingRule {
                    from_table: (*from).to_owned(),
                    to_tables: to.iter().map(|s| (*s).to_owned()).collect(),
                })
                .collect(),
        }
    }

    fn view(rules: &vschema::RoutingRules, keyspaces: &[(&str, vschema::Keyspace)]) -> RoutingView {
        let map: HashMap<String, vschema::Keyspace> = keyspaces
            .iter()
            .map(|(name, ks)| ((*name).to_owned(), ks.clone()))
            .collect();
        RoutingView::new(Some(rules), &map)
    }

    #[test]
    fn typed_key_falls_back_to_the_bare_key() {
        let v = view(
            &rules(&[("t", &["b.t"])]),
            &[
                ("a", keyspace(false, &["t"])),
                ("b", keyspace(false, &["t"])),
            ],
        );
        for traffic in TrafficType::ALL {
            assert_eq!(
                v.resolve_name("t", traffic),
                Ok(QualifiedTable::new("b", "t"))
            );
        }
    }

    #[test]
    fn primary_suffix_rule_wins_over_bare_key() {
        let v = view(
            &rules(&[("t", &["a.t"]), ("t@primary", &["b.t"])]),
            &[("a", keyspace(false, &[])), ("b", keyspace(false, &[]))],
        );
        assert_eq!(
            v.resolve_name("t", TrafficType::Primary),
            Ok(QualifiedTable::new("b", "t"))
        );
        assert_eq!(
            v.resolve_name("t", TrafficType::Replica),
            Ok(QualifiedTable::new("a", "t"))
        );
    }

    #[test]
    fn broken_rules_are_errors_for_their_key_only() {
        let v = view(
            &rules(&[
                ("multi", &["a.multi", "b.multi"]),
                ("dup", &["a.dup"]),
                ("dup", &["b.dup"]),
                ("bare", &["bare"]),
                ("ghost", &["nowhere.ghost"]),
                ("missing", &["sharded.missing"]),
                ("off", &[]),
            ]),
            &[
                ("a", keyspace(false, &[])),
                ("b", keyspace(false, &[])),
                ("sharded", keyspace(true, &[])),
            ],
        );
        let err = |name: &str| v.resolve_name(name, TrafficType::Primary).unwrap_err();
        assert!(matches!(
            err("multi"),
            ResolveError::InvalidRule {
                error: RuleError::MultipleTargets { .. },
                ..
            }
        ));
        assert!(matches!(
            err("dup"),
            ResolveError::InvalidRule {
                error: RuleError::Duplicate { .. },
                ..
            }
        ));
        assert!(matches!(
            err("bare"),
            ResolveError::InvalidRule {
                error: RuleError::MalformedTarget { .. },
                ..
            }
        ));
        assert!(matches!(
            err("ghost"),
            ResolveError::InvalidRule {
                error: RuleError::UnknownTargetKeyspace { .. },
                ..
            }
        ));
        assert!(matches!(
            err("missing"),
            ResolveError::InvalidRule {
                error: RuleError::TargetTableNotFound { .. },
                ..
            }
        ));
        assert_eq!(
            err("off"),
            ResolveError::Disabled {
                table: "off".into()
            }
        );
        assert_eq!(err("off").to_string(), "table off has been disabled");
        // A key without rule still resolves natively.
        assert_eq!(
            v.resolve_name("a.other", TrafficType::Primary),
            Ok(QualifiedTable::new("a", "other"))
        );
    }

    #[test]
    fn a_rule_without_targets_replaces_an_earlier_rule() {
        let v = view(
            &rules(&[("t", &["a.t"]), ("t", &[])]),
            &[("a", keyspace(false, &[]))],
        );
        assert!(matches!(
            v.resolve_name("t", TrafficType::Primary),
            Err(ResolveError::Disabled { .. })
        ));
    }

    #[test]
    fn unqualified_names_without_rules() {
        let v = view(
            &rules(&[]),
            &[
                ("a", keyspace(false, &["only_a", "both"])),
                ("b", keyspace(true, &["both"])),
                (
                    "c",
                    vschema::Keyspace {
                        require_explicit_routing: true,
                        ..keyspace(false, &["hidden", "only_a"])
                    },
                ),
            ],
        );
        assert_eq!(
            v.resolve_name("only_a", TrafficType::Primary),
            Ok(QualifiedTable::new("a", "only_a"))
        );
        assert!(matches!(
            v.resolve_name("both", TrafficType::Replica),
            Err(ResolveError::Ambiguous { .. })
        ));
        // Not listed anywhere: no fallback to an unsharded keyspace when there are several.
        assert!(matches!(
            v.resolve_name("nowhere", TrafficType::Primary),
            Err(ResolveError::TableNotFound { .. })
        ));
        assert!(matches!(
            v.resolve_name("hidden", TrafficType::Primary),
            Err(ResolveError::TableNotFound { .. })
        ));
        // Qualified: unsharded keyspaces have every table, sharded ones only listed ones.
        assert_eq!(
            v.resolve_name("a.anything", TrafficType::Primary),
            Ok(QualifiedTable::new("a", "anything"))
        );
        assert!(matches!(
            v.resolve_name("b.anything", TrafficType::Primary),
            Err(ResolveError::TableNotFound { .. })
        ));
        assert!(matches!(
            v.resolve_name("z.t", TrafficType::Primary),
            Err(ResolveError::UnknownKeyspace { .. })
        ));
        assert!(matches!(
            v.resolve_name("x.y.z", TrafficType::Primary),
            Err(ResolveError::InvalidName { .. })
        ));
    }

    #[test]
    fn a_single_keyspace_takes_every_unqualified_name() {
        let unsharded = view(&rules(&[]), &[("a", keyspace(false, &[]))]);
        assert_eq!(
            unsharded.resolve_name("t", TrafficType::Primary),
            Ok(QualifiedTable::new("a", "t"))
        );
        let sharded = view(&rules(&[]), &[("a", keyspace(true, &["listed"]))]);
        assert_eq!(
            sharded.resolve_name("listed", TrafficType::Primary),
            Ok(QualifiedTable::new("a", "listed"))
        );
        assert!(sharded.resolve_name("t", TrafficType::Primary).is_err());
    }

    #[test]
    fn reference_tables_defer_to_their_source() {
        let reference = |source: &str| vschema::Table {
            r#type: "reference".to_owned(),
            source: source.to_owned(),
            ..Default::default()
        };
        let mut with_ref = keyspace(true, &[]);
        with_ref
            .tables
            .insert("country".to_owned(), reference("main.country"));
        let v = view(
            &rules(&[]),
            &[("main", keyspace(false, &["country"])), ("shop", with_ref)],
        );
        assert_eq!(
            v.resolve_name("country", TrafficType::Primary),
            Ok(QualifiedTable::new("main", "country"))
        );
    }
}
