//! Test support, built only with the `testing` feature (which only dev-dependencies enable), so
//! the product binary carries no fake and no etcd binary. Integration tests, benchmarks, vtsim's
//! tests and the sandbox use it:
//! * [`fixtures`] builds [`Observed`](crate::engine::Observed) snapshots for pure planner tests;
//! * [`fleet`] is an in-memory fleet of fake vttablets behind `TabletRpc`, for the engine's
//!   simulations (no gRPC; thousands of schedules a second). Tests that need the wire, replication
//!   or copy behaviour use the `vtsim` crate instead (see `CONTRIBUTING.md`);
//! * [`instrument`] counts etcd writes and tablet mutations (I5) and audits lock discipline (I3);
//! * [`world`] assembles a topology, a fleet and an engine into a ready test world, and
//!   [`world::quiet_pass`] checks I5 on it;
//! * [`local_etcd`] runs a throwaway etcd from the vendored binary.

pub mod fixtures;
pub mod fleet;
pub mod instrument;
pub mod local_etcd;
pub mod world;

pub use local_etcd::{LocalEtcd, LocalEtcdError, LocalEtcdTls};
