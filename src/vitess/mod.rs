//! Everything vtmove knows about Vitess at the wire level: protobuf types, the topology store and
//! its locks, and the pure routing math of a MoveTables workflow.

pub mod proto;
pub mod topo;
