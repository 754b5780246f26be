//! The one error type of the topology layer.
//!
//! The variants mirror the Vitess topo error codes (NoNode, NodeExists, BadVersion, Timeout,
//! Interrupted) so callers can branch on them the way vtctld does, plus the lock failures vtmove
//! cares about. Every variant names the key (or lock resource) involved, so a log line or a
//! Kubernetes Event says exactly which part of the topology failed.

/// Shorthand for results of topology operations.
pub type Result<T, E = TopoError> = std::result::Result<T, E>;

/// Everything that can go wrong reading or writing the Vitess topology or holding a lock in it.
/// Variant fields are named for what they hold: `key` is the absolute key (or lock directory),
/// `op` the store operation.
#[allow(missing_docs)]
#[derive(Debug, thiserror::Error)]
pub enum TopoError {
    /// The key (or directory) does not exist.
    #[error("node doesn't exist: {key}")]
    NoNode { key: String },

    /// A create found the key already present.
    #[error("node already exists: {key}")]
    NodeExists { key: String },

    /// A versioned write or delete found a different version: someone else wrote in between.
    #[error("bad node version: {key}")]
    BadVersion { key: String },

    /// The operation did not finish before its deadline.
    #[error("deadline exceeded: {op} {key}")]
    Timeout { op: &'static str, key: String },

    /// The operation was abandoned before it finished (for example a watch stream that ended).
    #[error("interrupted: {op} {key}: {reason}")]
    Interrupted {
        op: &'static str,
        key: String,
        reason: String,
    },

    /// The lease behind a lock we hold is gone (expired or revoked): the lock no longer protects
    /// anything, and writes that relied on it must not happen.
    #[error("lock lost: {key}: {reason}")]
    LockLost { key: String, reason: String },

    /// A mutation was attempted with a lock guard that does not cover the resource it changes.
    #[error("{resource} is not locked: {reason}")]
    NotLocked { resource: String, reason: String },

    /// The topology server could not be reached or refused service; retrying later may succeed.
    #[error("topo unavailable: {op} {key}: {message}")]
    Unavailable {
        op: &'static str,
        key: String,
        message: String,
    },

    /// A value could not be decoded as the protobuf message its key holds.
    #[error("cannot decode {key}: {source}")]
    Decode {
        key: String,
        #[source]
        source: prost::DecodeError,
    },

    /// A watch asked for history the server no longer keeps (compacted away).
    /// `compact_revision` is the oldest revision a watch can still start from.
    #[error(
        "cannot watch {key} from revision {revision}: history before revision {compact_revision} is compacted"
    )]
    Compacted {
        key: String,
        revision: i64,
        compact_revision: i64,
    },

    /// A caller passed a name or value that cannot be turned into a valid topology key or record.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// Any other failure reported by the backend, kept with its message.
    #[error("topo error: {op} {key}: {message}")]
    Backend {
        op: &'static str,
        key: String,
        message: String,
    },
}

impl TopoError {
    /// True for NoNode, the error callers most often treat as "absent" rather than a failure.
    pub fn is_no_node(&self) -> bool {
        matches!(self, TopoError::NoNode { .. })
    }

    /// True for NodeExists.
    pub fn is_node_exists(&self) -> bool {
        matches!(self, TopoError::NodeExists { .. })
    }

    /// True for BadVersion, the signal to re-read and retry a read-modify-write.
    pub fn is_bad_version(&self) -> bool {
        matches!(self, TopoError::BadVersion { .. })
    }

    /// True when retrying the same call later may succeed (the server was unreachable or slow).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            TopoError::Timeout { .. }
                | TopoError::Unavailable { .. }
                | TopoError::Interrupted { .. }
        )
    }

    /// A short, stable name of the variant, for metric labels and Event reasons.
    pub fn kind(&self) -> &'static str {
        match self {
            TopoError::NoNode { .. } => "no_node",
            TopoError::NodeExists { .. } => "node_exists",
            TopoError::BadVersion { .. } => "bad_version",
            TopoError::Timeout { .. } => "timeout",
            TopoError::Interrupted { .. } => "interrupted",
            TopoError::LockLost { .. } => "lock_lost",
            TopoError::NotLocked { .. } => "not_locked",
            TopoError::Unavailable { .. } => "unavailable",
            TopoError::Decode { .. } => "decode",
            TopoError::Compacted { .. } => "compacted",
            TopoError::InvalidArgument(_) => "invalid_argument",
            TopoError::Backend { .. } => "backend",
        }
    }
}
