//! Test support for the engine, public so integration tests, the controller's tests and the
//! sandbox can use it: [`fixtures`] builds [`Observed`](super::Observed) snapshots for pure
//! planner tests.

pub mod fixtures;
