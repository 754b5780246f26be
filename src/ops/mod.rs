//! The operational shell around the controllers: metrics, the health and metrics HTTP endpoint,
//! structured logging and leader election (`docs/design/principles.md` P11, P12).
//!
//! Nothing here knows about MoveTables: the controllers report into these pieces, and `main`
//! wires them together. Keeping them apart from the engine keeps the engine testable without a
//! registry, a subscriber or a Lease.

pub mod http;
pub mod leader;
pub mod logging;
pub mod metrics;
pub mod signals;

pub use http::{Readiness, ServeError, serve};
pub use leader::{LeaderElection, LeaderError, LeaderHandle, LeaderOptions};
pub use logging::{LogFormat, LoggingError};
pub use metrics::{MeteredStore, Metrics, Outcome, TabletCallMetrics};
pub use signals::shutdown_signal;
