//! The global routing rules grouped by the table they name, so that a workflow's routing
//! computations cost its own tables, not every table moved in the cluster
//! (`docs/performance.md`, "Scale").
//!
//! One `RoutingRules` record holds every workflow's rules: nine per moved table. A pass that
//! scanned it for its own tables would cost time in proportion to every workflow there is, and
//! a fleet of N workflows N² per resync. [`RulesByTable`] is made once per version of the
//! record and shared between the passes that read that version.

use std::collections::HashMap;
use std::sync::Arc;

use crate::vitess::proto::vschema;

/// A `RoutingRules` record and, for each table a rule names, where its rules are.
#[derive(Debug, Default)]
pub struct RulesByTable {
    rules: Arc<vschema::RoutingRules>,
    positions: HashMap<String, Vec<usize>>,
}

/// The table a rule key names: `from_table` without its keyspace qualifier and tablet type
/// (`S.T@replica` → `T`).
pub fn rule_table(from_table: &str) -> &str {
    let key = from_table.split('@').next().unwrap_or_default();
    key.rsplit('.').next().unwrap_or_default()
}

impl RulesByTable {
    /// Groups `rules` by table.
    pub fn new(rules: Arc<vschema::RoutingRules>) -> Self {
        let mut positions: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, rule) in rules.rules.iter().enumerate() {
            let table = rule_table(&rule.from_table);
            match positions.get_mut(table) {
                Some(at) => at.push(i),
                None => {
                    positions.insert(table.to_string(), vec![i]);
                }
            }
        }
        RulesByTable { rules, positions }
    }

    /// Whether this index was made from `rules` (the same shared copy).
    pub fn indexes(&self, rules: &Arc<vschema::RoutingRules>) -> bool {
        Arc::ptr_eq(&self.rules, rules)
    }

    /// The rules naming any of `tables`, in the record's order.
    pub fn of_tables<'a>(
        &'a self,
        tables: impl IntoIterator<Item = &'a str>,
    ) -> Vec<&'a vschema::RoutingRule> {
        let mut at: Vec<usize> = tables
            .into_iter()
            .filter_map(|t| self.positions.get(t))
            .flatten()
            .copied()
            .collect();
        at.sort_unstable();
        at.dedup();
        at.into_iter()
            .filter_map(|i| self.rules.rules.get(i))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(keys: &[&str]) -> Arc<vschema::RoutingRules> {
        Arc::new(vschema::RoutingRules {
            rules: keys
                .iter()
                .map(|k| vschema::RoutingRule {
                    from_table: k.to_string(),
                    to_tables: vec![format!("x.{}", rule_table(k))],
                })
                .collect(),
        })
    }

    #[test]
    fn a_rule_names_the_table_without_qualifier_or_tablet_type() {
        assert_eq!(rule_table("t"), "t");
        assert_eq!(rule_table("t@replica"), "t");
        assert_eq!(rule_table("commerce.t@rdonly"), "t");
        assert_eq!(rule_table("customer.t"), "t");
        assert_eq!(rule_table(""), "");
    }

    #[test]
    fn the_rules_of_tables_are_the_scan_of_every_rule_in_record_order() {
        let keys = [
            "a",
            "s.b@replica",
            "k.a@rdonly",
            "other.c",
            "b",
            "s.a",
            "a@replica",
            "ab",
            "s.ba",
        ];
        let all = rules(&keys);
        let index = RulesByTable::new(all.clone());
        assert!(index.indexes(&all));
        assert!(!index.indexes(&rules(&keys)));
        for tables in [
            vec![],
            vec!["a"],
            vec!["b"],
            vec!["a", "b"],
            vec!["b", "a", "a"],
            vec!["c", "missing"],
            vec!["ab", "ba"],
        ] {
            let scanned: Vec<&vschema::RoutingRule> = all
                .rules
                .iter()
                .filter(|r| tables.contains(&rule_table(&r.from_table)))
                .collect();
            assert_eq!(
                index.of_tables(tables.iter().copied()),
                scanned,
                "{tables:?}"
            );
        }
    }
}
