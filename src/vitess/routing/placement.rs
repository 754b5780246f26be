//! Where a moved table's traffic goes, as a small model the rest of vtmove reasons with.
//!
//! A MoveTables workflow moves three kinds of traffic independently: REPLICA reads, RDONLY reads
//! and PRIMARY traffic (writes). [`TrafficPlacement`] says, for each, whether the source `S` or the
//! target `K` serves it. That is not quite enough to spell the routing rules: "writes at the
//! source" has two spellings in Vitess (`docs/design/movetables.md`, states A and D):
//!
//! * never switched (state A/B): `T`, `K.T` and `S.T` all point to `S.T`;
//! * switched and then reversed (state D): `T` and `K.T` point to `S.T`, and the `S.T` rule is
//!   *deleted* (S serves its own table natively).
//!
//! Both route identically, but a controller that writes the wrong spelling would rewrite the
//! rules on every pass, so [`RoutedTraffic`] records which spelling applies. Once Complete or
//! Cancel removed the rules, the state is [`RoutingState::Deleted`].

use super::names::{KeyspaceName, TableName, TrafficType};

/// One side of a MoveTables workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Side {
    /// The keyspace the tables are moved from (`S`).
    Source,
    /// The keyspace the tables are moved to (`K`).
    Target,
}

impl Side {
    /// Both sides, source first.
    pub const BOTH: [Side; 2] = [Side::Source, Side::Target];

    /// The opposite side.
    pub fn other(self) -> Side {
        match self {
            Side::Source => Side::Target,
            Side::Target => Side::Source,
        }
    }
}

/// Which side serves each kind of traffic for a moved table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TrafficPlacement {
    /// Who serves REPLICA reads.
    pub replica: Side,
    /// Who serves RDONLY reads.
    pub rdonly: Side,
    /// Who accepts writes (PRIMARY traffic).
    pub primary: Side,
}

impl TrafficPlacement {
    /// Everything on one side.
    pub const fn all(side: Side) -> Self {
        Self {
            replica: side,
            rdonly: side,
            primary: side,
        }
    }

    /// The side serving one traffic type.
    pub fn side(self, traffic: TrafficType) -> Side {
        match traffic {
            TrafficType::Primary => self.primary,
            TrafficType::Replica => self.replica,
            TrafficType::Rdonly => self.rdonly,
        }
    }

    /// A copy with one traffic type moved to `side`.
    #[must_use]
    pub fn with(mut self, traffic: TrafficType, side: Side) -> Self {
        match traffic {
            TrafficType::Primary => self.primary = side,
            TrafficType::Replica => self.replica = side,
            TrafficType::Rdonly => self.rdonly = side,
        }
        self
    }

    /// All eight placements, in a fixed order (for exhaustive tests and for recognising
    /// observed rules).
    pub fn every() -> impl Iterator<Item = TrafficPlacement> {
        let sides = Side::BOTH;
        sides.into_iter().flat_map(move |primary| {
            sides.into_iter().flat_map(move |replica| {
                sides.into_iter().map(move |rdonly| TrafficPlacement {
                    replica,
                    rdonly,
                    primary,
                })
            })
        })
    }
}

/// A placement together with how "writes at the source" is spelled (see the module docs).
///
/// The fields are private so the flag can only be set when writes really are at the source:
/// switched writes have a single spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RoutedTraffic {
    placement: TrafficPlacement,
    writes_reversed: bool,
}

impl RoutedTraffic {
    /// Rules as created and switched forward: if writes are at the source, the `S.T` rule still
    /// exists and points to `S.T`.
    pub const fn forward(placement: TrafficPlacement) -> Self {
        Self {
            placement,
            writes_reversed: false,
        }
    }

    /// Rules after writes came back to the source through ReverseTraffic: the `S.T` rule is
    /// deleted. The reads are placed independently (they can be switched again afterwards).
    pub const fn writes_reversed(replica: Side, rdonly: Side) -> Self {
        Self {
            placement: TrafficPlacement {
                replica,
                rdonly,
                primary: Side::Source,
            },
            writes_reversed: true,
        }
    }

    /// Builds from a placement and a "reversed" flag; the flag is dropped when writes are at the
    /// target, where it has no meaning.
    pub const fn new(placement: TrafficPlacement, writes_reversed: bool) -> Self {
        Self {
            placement,
            writes_reversed: writes_reversed && matches!(placement.primary, Side::Source),
        }
    }

    /// Where each traffic type goes.
    pub const fn placement(&self) -> TrafficPlacement {
        self.placement
    }

    /// Whether writes are at the source *because of a reversal* (the `S.T` rule is absent).
    pub const fn is_writes_reversed(&self) -> bool {
        self.writes_reversed
    }
}

/// The routing rules one moved table should carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoutingState {
    /// The workflow's rules exist and route as the placement says.
    Routed(RoutedTraffic),
    /// Complete or Cancel deleted all nine rules (states E and F). With `keepRoutingRules` the
    /// rules are left as they were instead: see [`RoutingState::after_cleanup`].
    Deleted,
}

impl RoutingState {
    /// State A: created, nothing switched; all nine rules point to `S.T`.
    pub const CREATED: RoutingState =
        RoutingState::Routed(RoutedTraffic::forward(TrafficPlacement::all(Side::Source)));

    /// State B: REPLICA and RDONLY reads switched, writes not.
    pub const READS_SWITCHED: RoutingState =
        RoutingState::Routed(RoutedTraffic::forward(TrafficPlacement {
            replica: Side::Target,
            rdonly: Side::Target,
            primary: Side::Source,
        }));

    /// Writes switched without reads (`--tablet-types primary` alone): primary keys from column
    /// C, read keys from column A.
    pub const WRITES_ONLY_SWITCHED: RoutingState =
        RoutingState::Routed(RoutedTraffic::forward(TrafficPlacement {
            replica: Side::Source,
            rdonly: Side::Source,
            primary: Side::Target,
        }));

    /// State C: everything switched to the target.
    pub const SWITCHED: RoutingState =
        RoutingState::Routed(RoutedTraffic::forward(TrafficPlacement::all(Side::Target)));

    /// State D: everything reversed back to the source after a full switch.
    pub const REVERSED: RoutingState =
        RoutingState::Routed(RoutedTraffic::writes_reversed(Side::Source, Side::Source));

    /// The state after Complete or Cancel: rules deleted, or kept as they are with
    /// `keepRoutingRules`.
    #[must_use]
    pub fn after_cleanup(self, keep_routing_rules: bool) -> RoutingState {
        if keep_routing_rules {
            self
        } else {
            RoutingState::Deleted
        }
    }

    /// The placement, if the rules exist.
    pub fn placement(&self) -> Option<TrafficPlacement> {
        match self {
            RoutingState::Routed(routed) => Some(routed.placement()),
            RoutingState::Deleted => None,
        }
    }

    /// Every distinct routing state: the eight forward placements, the four reversed ones and
    /// `Deleted`. Used to recognise observed rules and to drive exhaustive tests.
    pub fn every() -> impl Iterator<Item = RoutingState> {
        let forward =
            TrafficPlacement::every().map(|p| RoutingState::Routed(RoutedTraffic::forward(p)));
        let reversed = TrafficPlacement::every()
            .filter(|p| p.primary == Side::Source)
            .map(|p| RoutingState::Routed(RoutedTraffic::writes_reversed(p.replica, p.rdonly)));
        forward
            .chain(reversed)
            .chain(std::iter::once(RoutingState::Deleted))
    }
}

/// The identity of a MoveTables workflow as far as routing is concerned: which tables move from
/// which keyspace to which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovedTables {
    /// `S`.
    pub source: KeyspaceName,
    /// `K`.
    pub target: KeyspaceName,
    /// The moved tables, in the workflow's order (rule output follows it).
    pub tables: Vec<TableName>,
}

impl MovedTables {
    /// Builds the identity from plain names.
    pub fn new<T: Into<TableName>>(
        source: impl Into<KeyspaceName>,
        target: impl Into<KeyspaceName>,
        tables: impl IntoIterator<Item = T>,
    ) -> Self {
        Self {
            source: source.into(),
            target: target.into(),
            tables: tables.into_iter().map(Into::into).collect(),
        }
    }

    /// The keyspace on one side.
    pub fn keyspace(&self, side: Side) -> &KeyspaceName {
        match side {
            Side::Source => &self.source,
            Side::Target => &self.target,
        }
    }

    /// Which side a keyspace is, if it is one of the two.
    pub fn side_of(&self, keyspace: &KeyspaceName) -> Option<Side> {
        if *keyspace == self.source {
            Some(Side::Source)
        } else if *keyspace == self.target {
            Some(Side::Target)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn there_are_thirteen_distinct_states() {
        let states: Vec<_> = RoutingState::every().collect();
        assert_eq!(states.len(), 13);
        for (i, a) in states.iter().enumerate() {
            for b in &states[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn reversed_flag_is_dropped_when_writes_are_at_the_target() {
        let switched = RoutedTraffic::new(TrafficPlacement::all(Side::Target), true);
        assert!(!switched.is_writes_reversed());
        assert_eq!(RoutingState::Routed(switched), RoutingState::SWITCHED);
        let reversed = RoutedTraffic::new(TrafficPlacement::all(Side::Source), true);
        assert_eq!(RoutingState::Routed(reversed), RoutingState::REVERSED);
    }

    #[test]
    fn cleanup_deletes_unless_rules_are_kept() {
        assert_eq!(
            RoutingState::SWITCHED.after_cleanup(false),
            RoutingState::Deleted
        );
        assert_eq!(
            RoutingState::SWITCHED.after_cleanup(true),
            RoutingState::SWITCHED
        );
    }

    #[test]
    fn placement_with_moves_one_type() {
        let p = TrafficPlacement::all(Side::Source).with(TrafficType::Replica, Side::Target);
        assert_eq!(p.side(TrafficType::Replica), Side::Target);
        assert_eq!(p.side(TrafficType::Rdonly), Side::Source);
        assert_eq!(p.side(TrafficType::Primary), Side::Source);
        assert_eq!(TrafficPlacement::every().count(), 8);
    }
}
