//! Vitess protobuf types generated from vtmove's own `.proto` subset in `proto/`.
//!
//! Package names are Vitess's, so gRPC method paths are the real ones
//! (`/tabletmanagerservice.TabletManager/<Method>`) and encoded bytes are what Vitess reads and
//! writes. Unknown fields from newer Vitess releases are skipped on decode.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

pub mod vttime {
    tonic::include_proto!("vttime");
}
pub mod vtrpc {
    tonic::include_proto!("vtrpc");
}
pub mod query {
    tonic::include_proto!("query");
}
pub mod topodata {
    tonic::include_proto!("topodata");
}
pub mod vschema {
    tonic::include_proto!("vschema");
}
pub mod binlogdata {
    tonic::include_proto!("binlogdata");
}
pub mod replicationdata {
    tonic::include_proto!("replicationdata");
}
pub mod tabletmanagerdata {
    tonic::include_proto!("tabletmanagerdata");
}
pub mod tabletmanagerservice {
    tonic::include_proto!("tabletmanagerservice");
}
/// The tablet health stream (served by vtsim for Vitess's own tools; vtmove never calls it).
pub mod queryservice {
    tonic::include_proto!("queryservice");
}
