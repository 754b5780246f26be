//! Talking to vttablets: the TabletManager gRPC client, and the typed views vtmove derives from
//! what tablets report.
//!
//! - [`TabletRpc`] is the seam the engine depends on (object safe, so planner tests use fakes);
//!   [`TabletClient`] implements it over tonic with per-tablet connection caching, a connect
//!   timeout, a deadline on every call and typed [`TabletError`]s.
//! - [`stream`] turns `ReadVReplicationWorkflow` answers into [`WorkflowStreams`]: displayed
//!   state, FROZEN / "stopped for cutover" markers, transaction lag, copy bookmarks, and the rule
//!   that ephemeral MySQL errors while copying are copy cycles ending, not failures (#17778).
//! - [`health`] turns `FullStatus` into [`TabletHealth`], where zero values of post-v21 fields mean
//!   "not reported" (#18031).
//! - [`gtid`] parses GTID positions and answers "does position A contain position B" (I2).
//!
//! Everything except [`client`] is pure and tested without a network.

pub mod client;
pub mod error;
pub mod gtid;
pub mod health;
pub mod observer;
pub mod prototext;
pub mod result;
pub mod rpc;
pub mod stream;

pub use client::{TabletClient, TabletClientConfig, TlsOptions};
pub use error::{AddrError, Method, SERVICE_NAME, TabletAddr, TabletError};
pub use gtid::{GtidParseError, GtidSet, Position};
pub use health::{HealthProblem, ReportedType, TabletHealth};
pub use observer::{CallCounter, CallObserver, CallOutcome};
pub use rpc::{TabletRpc, update_keeping_everything};
pub use stream::{
    CopyBookmark, CopyProgress, Lag, LastPk, MessageClass, StreamStatus, WorkflowStreams,
    classify_message,
};
