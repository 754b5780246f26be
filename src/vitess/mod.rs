//! Everything vtmove knows about Vitess at the wire level: protobuf types, the topology store and
//! its locks, the TabletManager client with its stream and health model, and the pure routing
//! math of a MoveTables workflow.

pub mod proto;
pub mod routing;
pub mod srv_vschema;
pub mod tablet;
pub mod topo;
