//! Test support for the engine, public so integration tests, the controller's tests and the
//! sandbox can use it:
//! * [`fixtures`] builds [`Observed`](super::Observed) snapshots for pure planner tests;
//! * [`fleet`] is an in-memory fleet of fake vttablets behind `TabletRpc`;
//! * [`instrument`] counts etcd writes and tablet mutations (I5) and audits lock discipline (I3);
//! * [`world`] assembles a topology, a fleet and an engine into a ready test world.

pub mod fixtures;
pub mod fleet;
pub mod instrument;
pub mod world;
