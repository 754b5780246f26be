//! The names routing math talks about: keyspaces, tables, keyspace-qualified tables, the three
//! tablet types vtgate routes to, and routing-rule keys.
//!
//! Keyspace and table names are newtypes so a keyspace can never be passed where a table is
//! expected; they stay thin wrappers over `String` because everything ends up in protobuf strings.

use std::fmt;

use crate::vitess::proto::topodata;

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Wraps a name as Vitess spells it (no validation: Vitess itself accepts what MySQL
            /// accepts, and vtmove only copies names it read from the topology or the spec).
            pub fn new(name: impl Into<String>) -> Self {
                Self(name.into())
            }

            /// The name as stored in the topology.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(name: &str) -> Self {
                Self(name.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(name: String) -> Self {
                Self(name)
            }
        }
    };
}

name_type!(
    /// A Vitess keyspace name (`S` or `K` in the MoveTables notation).
    KeyspaceName
);
name_type!(
    /// A table name, without keyspace qualifier (`T`).
    TableName
);

/// A keyspace-qualified table, `ks.t`: what every routing rule points to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QualifiedTable {
    /// The keyspace that serves the table.
    pub keyspace: KeyspaceName,
    /// The table inside that keyspace.
    pub table: TableName,
}

impl QualifiedTable {
    /// Builds `keyspace.table`.
    pub fn new(keyspace: impl Into<KeyspaceName>, table: impl Into<TableName>) -> Self {
        Self {
            keyspace: keyspace.into(),
            table: table.into(),
        }
    }

    /// Parses a rule target. Vitess requires exactly `keyspace.table`: one dot, both parts present
    /// (dots inside names are not supported by routing rules).
    pub fn parse(text: &str) -> Option<Self> {
        let (keyspace, table) = text.split_once('.')?;
        if keyspace.is_empty() || table.is_empty() || table.contains('.') {
            return None;
        }
        Some(Self::new(keyspace, table))
    }
}

impl fmt::Display for QualifiedTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.keyspace, self.table)
    }
}

/// A table as a query names it: `t`, or `ks.t`.
///
/// A session that selected a keyspace (`USE ks`) makes vtgate look up unqualified tables as
/// `ks.t`; callers model that by qualifying the name themselves.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableRef {
    /// The qualifier, if the query gave one.
    pub keyspace: Option<KeyspaceName>,
    /// The table name.
    pub table: TableName,
}

impl TableRef {
    /// An unqualified reference, `t`.
    pub fn unqualified(table: impl Into<TableName>) -> Self {
        Self {
            keyspace: None,
            table: table.into(),
        }
    }

    /// A qualified reference, `ks.t`.
    pub fn qualified(keyspace: impl Into<KeyspaceName>, table: impl Into<TableName>) -> Self {
        Self {
            keyspace: Some(keyspace.into()),
            table: table.into(),
        }
    }

    /// Parses `t` or `ks.t`; `None` for empty parts or more than one dot.
    pub fn parse(text: &str) -> Option<Self> {
        match text.split_once('.') {
            None if !text.is_empty() => Some(Self::unqualified(text)),
            None => None,
            Some(_) => QualifiedTable::parse(text).map(|q| Self::qualified(q.keyspace, q.table)),
        }
    }
}

impl fmt::Display for TableRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.keyspace {
            Some(keyspace) => write!(f, "{keyspace}.{}", self.table),
            None => write!(f, "{}", self.table),
        }
    }
}

/// The three tablet types vtgate routes queries to, and so the three kinds of traffic a
/// MoveTables workflow switches. Writes always go to PRIMARY.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TrafficType {
    /// Writes (and reads that ask for the primary).
    Primary,
    /// Reads served by REPLICA tablets.
    Replica,
    /// Reads served by RDONLY tablets.
    Rdonly,
}

impl TrafficType {
    /// Every traffic type, in the order of the rows of the routing table
    /// (`docs/design/movetables.md`, "Routing rules").
    pub const ALL: [TrafficType; 3] = [Self::Primary, Self::Replica, Self::Rdonly];

    /// The two read types, the ones `switchReads` moves.
    pub const READS: [TrafficType; 2] = [Self::Replica, Self::Rdonly];

    /// The suffix MoveTables puts on rule keys: none for PRIMARY, `@replica`, `@rdonly`.
    pub fn rule_suffix(self) -> &'static str {
        match self {
            Self::Primary => "",
            Self::Replica => "@replica",
            Self::Rdonly => "@rdonly",
        }
    }

    /// The suffix vtgate tries first when it looks a table up (it then falls back to the key
    /// without suffix). Recent vtgates also try `@primary` for PRIMARY.
    pub fn lookup_suffix(self) -> &'static str {
        match self {
            Self::Primary => "@primary",
            Self::Replica => "@replica",
            Self::Rdonly => "@rdonly",
        }
    }

    /// The lower-case name Vitess prints (`primary`, `replica`, `rdonly`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Replica => "replica",
            Self::Rdonly => "rdonly",
        }
    }

    /// The topology enum value, for building or matching `TabletControl`s and `Tablet`s.
    pub fn tablet_type(self) -> topodata::TabletType {
        match self {
            Self::Primary => topodata::TabletType::Primary,
            Self::Replica => topodata::TabletType::Replica,
            Self::Rdonly => topodata::TabletType::Rdonly,
        }
    }
}

impl fmt::Display for TrafficType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a tablet type that vtgate never routes queries to (SPARE, BACKUP, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("tablet type {0:?} does not serve routed queries")]
pub struct NotARoutedTabletType(pub topodata::TabletType);

impl TryFrom<topodata::TabletType> for TrafficType {
    type Error = NotARoutedTabletType;

    fn try_from(value: topodata::TabletType) -> Result<Self, Self::Error> {
        match value {
            topodata::TabletType::Primary => Ok(Self::Primary),
            topodata::TabletType::Replica => Ok(Self::Replica),
            topodata::TabletType::Rdonly => Ok(Self::Rdonly),
            other => Err(NotARoutedTabletType(other)),
        }
    }
}

/// The key of one routing rule (its `from_table`): `[ks.]table[@replica|@rdonly]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleKey {
    /// `None` for the unqualified key that applies to queries naming the bare table.
    pub keyspace: Option<KeyspaceName>,
    /// The table the rule is about.
    pub table: TableName,
    /// Which traffic the rule steers.
    pub traffic: TrafficType,
}

impl RuleKey {
    /// The key for `[keyspace.]table` and one traffic type.
    pub fn new(keyspace: Option<&KeyspaceName>, table: &TableName, traffic: TrafficType) -> Self {
        Self {
            keyspace: keyspace.cloned(),
            table: table.clone(),
            traffic,
        }
    }

    /// The `from_table` string stored in `RoutingRules`.
    pub fn from_table(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for RuleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(keyspace) = &self.keyspace {
            write!(f, "{keyspace}.")?;
        }
        write!(f, "{}{}", self.table, self.traffic.rule_suffix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_keys_render_like_vitess() {
        let s = KeyspaceName::from("commerce");
        let t = TableName::from("customer");
        assert_eq!(
            RuleKey::new(None, &t, TrafficType::Primary).from_table(),
            "customer"
        );
        assert_eq!(
            RuleKey::new(Some(&s), &t, TrafficType::Replica).from_table(),
            "commerce.customer@replica"
        );
        assert_eq!(
            RuleKey::new(None, &t, TrafficType::Rdonly).from_table(),
            "customer@rdonly"
        );
    }

    #[test]
    fn qualified_table_parsing_requires_exactly_one_dot() {
        assert_eq!(
            QualifiedTable::parse("ks.t"),
            Some(QualifiedTable::new("ks", "t"))
        );
        assert_eq!(QualifiedTable::parse("t"), None);
        assert_eq!(QualifiedTable::parse("a.b.c"), None);
        assert_eq!(QualifiedTable::parse(".t"), None);
        assert_eq!(QualifiedTable::parse("ks."), None);
    }

    #[test]
    fn table_refs_parse_both_forms() {
        assert_eq!(TableRef::parse("t"), Some(TableRef::unqualified("t")));
        assert_eq!(
            TableRef::parse("ks.t"),
            Some(TableRef::qualified("ks", "t"))
        );
        assert_eq!(TableRef::parse(""), None);
        assert_eq!(TableRef::parse("a.b.c"), None);
        assert_eq!(TableRef::qualified("ks", "t").to_string(), "ks.t");
    }

    #[test]
    fn only_serving_tablet_types_convert() {
        assert_eq!(
            TrafficType::try_from(topodata::TabletType::Replica),
            Ok(TrafficType::Replica)
        );
        assert!(TrafficType::try_from(topodata::TabletType::Backup).is_err());
        for traffic in TrafficType::ALL {
            assert_eq!(TrafficType::try_from(traffic.tablet_type()), Ok(traffic));
        }
    }
}
