//! vtmove: a Kubernetes operator that runs Vitess MoveTables workflows declaratively.
//!
//! The library holds everything the `vtmove` binary runs, so tests, benchmarks and the sandbox use
//! the same code: CRD types ([`api`]) and the Vitess wire layer ([`vitess`]).

pub mod api;
pub mod engine;
pub mod ops;
pub mod vitess;
