//! vtmove: a Kubernetes operator that runs Vitess MoveTables workflows declaratively.
//!
//! The library holds everything the `vtmove` binary runs, so tests, benchmarks and the sandbox use
//! the same code: CRD types ([`api`]), the Vitess wire layer ([`vitess`]), the MoveTables engine
//! ([`engine`]), the Kubernetes controllers ([`controller`]), their operational shell (metrics,
//! health, logs, leader election: [`ops`]), and the Kubernetes API access vtmove
//! needs ([`rbac`]), from which the Helm chart's RBAC is checked.
//!
//! Test support (fake fleets, test worlds, fixtures, a throwaway etcd) is `vtmove::testing`, built only
//! with the `testing` feature, which only dev-dependencies enable: the product binary carries none
//! of it.

pub mod api;
pub mod controller;
pub mod engine;
pub mod ops;
pub mod rbac;
#[cfg(feature = "testing")]
pub mod testing;
pub mod vitess;
