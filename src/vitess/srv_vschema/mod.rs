//! `SrvVSchema`, the per-cell rollup vtgates route by, in one place: what a cell should hold
//! (pure, [`build`]) and the I/O shell that reads the global records and rewrites stale cells
//! ([`rebuild`]).
//!
//! vtgate never reads the global VSchemas or routing rules; it reads its cell's `SrvVSchema`, so a
//! routing change takes effect only when the cells are rebuilt (Vitess's `RebuildVSchemaGraph`).
//! A workflow that switches reads in some cells only spells its rules per cell
//! ([`cell_srv_vschema`]).

pub mod build;
pub mod rebuild;

pub use build::{
    CellDifference, build_srv_vschema, cell_srv_vschema, srv_vschema_equivalent,
    srv_vschema_is_stale, srv_vschema_serves,
};
pub use rebuild::{
    RebuildReport, SharedRollup, desired_srv_vschema, desired_srv_vschema_shared,
    rebuild_srv_vschema, republish_srv_vschema, write_srv_vschema_if_stale,
};
