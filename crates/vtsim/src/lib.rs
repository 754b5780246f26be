//! vtsim: a simulated vttablet fleet and a vtgate probe, the world vtmove's engine is tested in.
//!
//! No Vitess can run on the project's machines, so every engine test runs against vtsim. It
//! reproduces the parts of vttablet and vtgate that matter to a MoveTables cutover, including
//! their failure modes, and it is deliberately strict: a test must never pass because the
//! simulator is lenient. Where vtsim cannot model something exactly, it refuses loudly (an
//! unsupported statement is an error, a duplicate copy is a MySQL duplicate-key error, a
//! stream whose filter has no key range copies every row as Vitess would).
//!
//! - [`SimTablet`]: a tablet (alias, keyspace, shard, type) serving the TabletManager gRPC
//!   subset on a loopback port, registered in the topology like a vttablet, enforcing the denied
//!   tables it loaded at start or on RefreshState, with a simulated MySQL ([`mysqld`]) holding
//!   tables, a GTID binlog and the `_vt` sidecar tables ([`sidecar`]), replicas that follow
//!   their primary ([`replication`]), and a VReplication engine on primaries ([`vreplication`]).
//!   It also answers what Vitess's own `vtctldclient MoveTables` commands call beyond vtmove's
//!   subset (the all-privileges emptiness check, the permissions pre-check, reverse streams
//!   inserted through VReplicationExec, and the QueryService health stream Vitess's tablet
//!   picker reads), so that those commands can run against the fleet.
//! - [`queryservice`]: the QueryService a real vtgate runs application queries through
//!   (Execute, StreamExecute, Begin, BeginExecute, Commit, Rollback, StreamHealth), with the
//!   denied tables, serving state and target checks of a vttablet and a log of every call.
//! - Faults ([`faults`]): rolls, delayed, failing or hanging RPCs, unreachable tablets, and an
//!   old-version (v21) mode.
//! - [`Probe`]: vtgate routing through the cell's SrvVSchema (with vtmove's own
//!   [`vtmove::vitess::routing::RoutingView`]) and SrvKeyspace, a ledger of accepted writes,
//!   and a steady-rate driver with availability statistics.
//! - [`Fleet`]: starts keyspaces, shards and tablets from a [`Layout`] (builder or YAML).
//!
//! Sharded keyspaces use the `reverse_bits` vindex on the integer primary key
//! ([`keyspace_id`]).
//!
//! vtsim is test and playground infrastructure; vtmove's product path never depends on it. The
//! other fake fleet, `vtmove::testing::fleet::FakeFleet`, answers the same TabletManager calls in
//! process with no wire, data or replication: it is for the engine's fast random simulations;
//! vtsim is for anything where the wire, rows, positions or real Vitess code matter
//! (`CONTRIBUTING.md`, "Which fake fleet").

pub mod data;
pub mod faults;
pub mod fleet;
mod health;
pub mod keyspace_id;
pub mod layout;
pub mod mysqld;
pub mod probe;
mod query;
pub mod queryservice;
mod registry;
pub mod replication;
pub mod service;
pub mod sidecar;
pub mod sql;
pub mod tablet;
pub mod vreplication;

pub use data::{Checksum, Row, TableDef};
pub use faults::{Reachability, RpcFault};
pub use fleet::{Fleet, FleetError, FleetOptions, keyspace_vschema, rebuild_srv_vschema};
pub use keyspace_id::reverse_bits;
pub use layout::{KeyspaceLayout, Layout, LayoutTabletType};
pub use probe::{
    AcceptedWrite, DriveConfig, DriveReport, Ledger, LostWrite, Probe, ProbeError, Route,
    UnavailableWindow,
};
pub use queryservice::ExecutedQuery;
pub use tablet::{
    QueryError, ServerTls, ServingState, SimTablet, StartError, TabletConfig, Transaction,
    VReplicationConfig,
};
pub use vreplication::{stop_position_already_reached, stopped_at_position};
