//! vtmove: a Kubernetes operator that runs Vitess MoveTables workflows declaratively.
//!
//! The library holds everything the `vtmove` binary runs, so tests, benchmarks and the sandbox use
//! the same code: CRD types ([`api`]) and the Vitess wire layer ([`vitess`]).

pub mod api;
// Temporary until src/controller/mod.rs (kube-runtime wiring) lands: the integrator replaces this
// line with `pub mod controller;` and declares `pub mod keyspace;` there.
pub mod controller {
    //! Controllers. Only the Keyspace controller's core is here for now.
    pub mod keyspace;
}
pub mod engine;
pub mod vitess;
