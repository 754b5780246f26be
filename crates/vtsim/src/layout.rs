//! The description of a fleet: cells, keyspaces, shards, tablets per cell, tables and seed rows,
//! as a Rust builder or as YAML (the `vtsim --layout` file).
//!
//! ```yaml
//! cells: [zone1, zone2]
//! keyspaces:
//!   - name: commerce
//!     tablets: {zone1: [primary, replica, rdonly]}
//!     tables:
//!       - create: "create table customer (id bigint not null, email varchar(128), primary key (id))"
//!         seed_rows: 100
//!   - name: customer
//!     sharded: true
//!     shards: ["-80", "80-"]
//!     tablets: {zone1: [primary, replica], zone2: [replica, rdonly]}
//! ```
//!
//! Tablet uids are assigned in order (100, 101, ...) over keyspaces, shards, cells and the
//! tablet list, so a layout always yields the same aliases. A sharded keyspace gets a VSchema
//! with the `reverse_bits` vindex on every table's primary key; an unsharded one lists its
//! tables.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use vtmove::vitess::proto::topodata::TabletType;

/// A tablet type in a layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LayoutTabletType {
    /// The shard primary.
    Primary,
    /// A replica.
    Replica,
    /// An rdonly tablet.
    Rdonly,
}

impl LayoutTabletType {
    /// The topology type.
    pub fn tablet_type(self) -> TabletType {
        match self {
            LayoutTabletType::Primary => TabletType::Primary,
            LayoutTabletType::Replica => TabletType::Replica,
            LayoutTabletType::Rdonly => TabletType::Rdonly,
        }
    }
}

/// A table of a keyspace: its CREATE statement and how many rows to seed (keys 1..=n spread
/// over the shards by `reverse_bits`, value `v<key>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableLayout {
    /// `CREATE TABLE` statement.
    pub create: String,
    /// Rows to seed.
    #[serde(default)]
    pub seed_rows: u64,
    /// Declared in the keyspace VSchema only: the tablets do not have the table yet (the target
    /// of a move, which the mover creates).
    #[serde(default)]
    pub vschema_only: bool,
}

/// One keyspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyspaceLayout {
    /// Name.
    pub name: String,
    /// Sharded (VSchema with a primary vindex).
    #[serde(default)]
    pub sharded: bool,
    /// Shard names (`["0"]` when omitted).
    #[serde(default = "default_shards")]
    pub shards: Vec<String>,
    /// Tablets of every shard, per cell.
    #[serde(default)]
    pub tablets: BTreeMap<String, Vec<LayoutTabletType>>,
    /// Tables and seed rows.
    #[serde(default)]
    pub tables: Vec<TableLayout>,
    /// Write the keyspace VSchema (default true).
    #[serde(default = "default_true")]
    pub vschema: bool,
    /// Tablets of this keyspace run in old-version (v21) mode.
    #[serde(default)]
    pub old_version: bool,
}

fn default_shards() -> Vec<String> {
    vec!["0".to_owned()]
}

fn default_true() -> bool {
    true
}

/// A routing rule to install at start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutingRuleLayout {
    /// `from_table`.
    pub from: String,
    /// Target (`ks.t`).
    pub to: String,
}

/// VReplication and replication knobs of the whole fleet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TuningLayout {
    /// Rows per copy batch.
    #[serde(default)]
    pub copy_batch_rows: Option<usize>,
    /// Rows per copy cycle.
    #[serde(default)]
    pub copy_cycle_rows: Option<u64>,
    /// Milliseconds per copy cycle.
    #[serde(default)]
    pub copy_cycle_ms: Option<u64>,
    /// VReplication lag in milliseconds.
    #[serde(default)]
    pub replication_lag_ms: Option<u64>,
    /// Replica delay behind the primary in milliseconds.
    #[serde(default)]
    pub replica_delay_ms: Option<u64>,
}

/// A whole fleet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// Cells (taken from the keyspaces' tablets when empty).
    #[serde(default)]
    pub cells: Vec<String>,
    /// Keyspaces.
    #[serde(default)]
    pub keyspaces: Vec<KeyspaceLayout>,
    /// Routing rules to install (global RoutingRules, then every cell's SrvVSchema).
    #[serde(default)]
    pub routing_rules: Vec<RoutingRuleLayout>,
    /// Knobs.
    #[serde(default)]
    pub tuning: TuningLayout,
}

/// A tablet the layout asks for, with its assigned uid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedTablet {
    /// Cell.
    pub cell: String,
    /// Uid.
    pub uid: u32,
    /// Keyspace.
    pub keyspace: String,
    /// Shard.
    pub shard: String,
    /// Type.
    pub tablet_type: TabletType,
    /// Old-version mode.
    pub old_version: bool,
}

/// Why a layout is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid layout: {0}")]
pub struct LayoutError(pub String);

impl Layout {
    /// An empty layout over `cells`.
    pub fn new<S: Into<String>>(cells: impl IntoIterator<Item = S>) -> Self {
        Layout {
            cells: cells.into_iter().map(Into::into).collect(),
            ..Layout::default()
        }
    }

    /// Adds a keyspace.
    #[must_use]
    pub fn keyspace(mut self, keyspace: KeyspaceLayout) -> Self {
        self.keyspaces.push(keyspace);
        self
    }

    /// Adds a routing rule.
    #[must_use]
    pub fn routing_rule(mut self, from: &str, to: &str) -> Self {
        self.routing_rules.push(RoutingRuleLayout {
            from: from.to_owned(),
            to: to.to_owned(),
        });
        self
    }

    /// Parses the YAML form.
    pub fn from_yaml(text: &str) -> Result<Self, LayoutError> {
        let layout: Layout =
            serde_saphyr::from_str(text).map_err(|e| LayoutError(e.to_string()))?;
        layout.validate()?;
        Ok(layout)
    }

    /// The cells: the declared ones plus any a keyspace places tablets in.
    pub fn all_cells(&self) -> Vec<String> {
        let mut cells = self.cells.clone();
        for ks in &self.keyspaces {
            for cell in ks.tablets.keys() {
                if !cells.contains(cell) {
                    cells.push(cell.clone());
                }
            }
        }
        cells
    }

    /// Checks names, shards and that every shard has exactly one primary.
    pub fn validate(&self) -> Result<(), LayoutError> {
        let mut names = Vec::new();
        for ks in &self.keyspaces {
            if ks.name.is_empty() || names.contains(&ks.name) {
                return Err(LayoutError(format!(
                    "duplicate or empty keyspace name {:?}",
                    ks.name
                )));
            }
            names.push(ks.name.clone());
            if ks.shards.is_empty() {
                return Err(LayoutError(format!("keyspace {} has no shards", ks.name)));
            }
            for s in &ks.shards {
                crate::keyspace_id::shard_key_range(s)
                    .map_err(|e| LayoutError(format!("keyspace {}: {e}", ks.name)))?;
            }
            if ks.sharded && ks.shards.iter().any(|s| !s.contains('-')) {
                return Err(LayoutError(format!(
                    "sharded keyspace {} needs key-range shard names",
                    ks.name
                )));
            }
            let primaries: usize = ks
                .tablets
                .values()
                .map(|ts| {
                    ts.iter()
                        .filter(|t| **t == LayoutTabletType::Primary)
                        .count()
                })
                .sum();
            if primaries != 1 {
                return Err(LayoutError(format!(
                    "keyspace {} must have exactly one primary per shard (found {primaries} in its tablet list)",
                    ks.name
                )));
            }
            for t in &ks.tables {
                crate::data::TableDef::parse_create(&t.create)
                    .map_err(|e| LayoutError(format!("keyspace {}: {e}", ks.name)))?;
            }
        }
        Ok(())
    }

    /// Every tablet with its uid, in uid order.
    pub fn planned_tablets(&self) -> Vec<PlannedTablet> {
        let mut out = Vec::new();
        let mut uid = 100;
        for ks in &self.keyspaces {
            for shard in &ks.shards {
                for (cell, types) in &ks.tablets {
                    for t in types {
                        out.push(PlannedTablet {
                            cell: cell.clone(),
                            uid,
                            keyspace: ks.name.clone(),
                            shard: shard.clone(),
                            tablet_type: t.tablet_type(),
                            old_version: ks.old_version,
                        });
                        uid += 1;
                    }
                }
            }
        }
        out
    }
}

impl KeyspaceLayout {
    /// An unsharded keyspace (shard `0`).
    pub fn unsharded(name: &str) -> Self {
        KeyspaceLayout {
            name: name.to_owned(),
            sharded: false,
            shards: default_shards(),
            tablets: BTreeMap::new(),
            tables: Vec::new(),
            vschema: true,
            old_version: false,
        }
    }

    /// A sharded keyspace with the given shards.
    pub fn sharded<S: Into<String>>(name: &str, shards: impl IntoIterator<Item = S>) -> Self {
        KeyspaceLayout {
            sharded: true,
            shards: shards.into_iter().map(Into::into).collect(),
            ..KeyspaceLayout::unsharded(name)
        }
    }

    /// Tablets of every shard in `cell`.
    #[must_use]
    pub fn tablets(mut self, cell: &str, types: &[LayoutTabletType]) -> Self {
        self.tablets
            .entry(cell.to_owned())
            .or_default()
            .extend_from_slice(types);
        self
    }

    /// A table with `seed_rows` rows.
    #[must_use]
    pub fn table(mut self, create: &str, seed_rows: u64) -> Self {
        self.tables.push(TableLayout {
            create: create.to_owned(),
            seed_rows,
            vschema_only: false,
        });
        self
    }

    /// A table in the keyspace VSchema that the tablets do not have: the target of a move, whose
    /// sharded VSchema must name the vindex before the mover creates the table.
    #[must_use]
    pub fn vschema_table(mut self, create: &str) -> Self {
        self.tables.push(TableLayout {
            create: create.to_owned(),
            seed_rows: 0,
            vschema_only: true,
        });
        self
    }

    /// Whether to write the keyspace VSchema.
    #[must_use]
    pub fn with_vschema(mut self, vschema: bool) -> Self {
        self.vschema = vschema;
        self
    }

    /// Old-version (v21) tablets.
    #[must_use]
    pub fn old_version(mut self, old: bool) -> Self {
        self.old_version = old;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_and_builder_agree() {
        let yaml = r#"
cells: [zone1, zone2]
keyspaces:
  - name: commerce
    tablets: {zone1: [primary, replica, rdonly]}
    tables:
      - create: "create table customer (id bigint, v text, primary key (id))"
        seed_rows: 10
  - name: customer
    sharded: true
    shards: ["-80", "80-"]
    tablets: {zone1: [primary, replica], zone2: [replica, rdonly]}
"#;
        let parsed = Layout::from_yaml(yaml).unwrap_or_else(|e| panic!("{e}"));
        use LayoutTabletType::*;
        let built = Layout::new(["zone1", "zone2"])
            .keyspace(
                KeyspaceLayout::unsharded("commerce")
                    .tablets("zone1", &[Primary, Replica, Rdonly])
                    .table(
                        "create table customer (id bigint, v text, primary key (id))",
                        10,
                    ),
            )
            .keyspace(
                KeyspaceLayout::sharded("customer", ["-80", "80-"])
                    .tablets("zone1", &[Primary, Replica])
                    .tablets("zone2", &[Replica, Rdonly]),
            );
        assert_eq!(parsed, built);
        let tablets = parsed.planned_tablets();
        assert_eq!(tablets.len(), 3 + 2 * 4);
        assert_eq!(tablets[0].uid, 100);
        assert_eq!(tablets[3].shard, "-80");
    }

    #[test]
    fn bad_layouts() {
        assert!(Layout::from_yaml("keyspaces: [{name: a, tablets: {zone1: [replica]}}]").is_err());
        assert!(
            Layout::from_yaml("keyspaces: [{name: a, sharded: true, tablets: {zone1: [primary]}}]")
                .is_err()
        );
        assert!(
            Layout::from_yaml(
                "keyspaces: [{name: a, shards: [\"8-\"], tablets: {zone1: [primary]}}]"
            )
            .is_err()
        );
        assert!(Layout::from_yaml("nonsense: [").is_err());
    }
}
