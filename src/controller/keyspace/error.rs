//! The Keyspace controller's error type: one variant per way a pass can fail, each naming the
//! keyspace and the topology key or tablet involved, with a stable [`KeyspaceError::kind`] for
//! metric labels and Event reasons and a retry class for the requeue policy.

use std::time::Duration;

use crate::vitess::tablet::TabletError;
use crate::vitess::topo::TopoError;

/// Why a Keyspace pass failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyspaceError {
    /// The topology could not be read while observing the keyspace.
    #[error("observing keyspace {keyspace}: {source}")]
    Observe {
        /// The keyspace.
        keyspace: String,
        /// The topology failure.
        #[source]
        source: TopoError,
    },

    /// The observation as a whole did not finish within its deadline.
    #[error("observing keyspace {keyspace} did not finish within {timeout:?}")]
    ObserveTimeout {
        /// The keyspace.
        keyspace: String,
        /// The deadline that passed.
        timeout: Duration,
    },

    /// Creating the keyspace record or a shard record failed (other than "already exists").
    #[error("creating {what} of keyspace {keyspace}: {source}")]
    Create {
        /// The keyspace.
        keyspace: String,
        /// `the keyspace record` or `shard <name>`.
        what: String,
        /// The topology failure.
        #[source]
        source: TopoError,
    },

    /// The keyspace lock could not be taken in time: someone else (vtctld, vtorc, a workflow)
    /// holds it. Retryable: nothing was written.
    #[error("keyspace {keyspace} is locked by someone else: {source}")]
    LockBusy {
        /// The keyspace.
        keyspace: String,
        /// The lock failure (usually a timeout).
        #[source]
        source: TopoError,
    },

    /// A drift repair write failed.
    #[error("repairing drift in keyspace {keyspace} ({subject}): {source}")]
    Repair {
        /// The keyspace.
        keyspace: String,
        /// The shard or routing rule being repaired.
        subject: String,
        /// The topology failure.
        #[source]
        source: TopoError,
    },

    /// A tablet did not acknowledge RefreshState after its shard's denied tables changed; the
    /// topology is repaired but the tablet may still serve the old list until it is refreshed.
    #[error("refreshing tablet {tablet} of keyspace {keyspace} after a drift repair: {source}")]
    Refresh {
        /// The keyspace.
        keyspace: String,
        /// The tablet alias.
        tablet: String,
        /// The RPC failure.
        #[source]
        source: TabletError,
    },

    /// Rebuilding a cell's SrvVSchema failed.
    #[error("rebuilding the SrvVSchema of keyspace {keyspace}: {source}")]
    Rebuild {
        /// The keyspace.
        keyspace: String,
        /// The topology failure.
        #[source]
        source: TopoError,
    },

    /// Deleting the keyspace from the topology failed.
    #[error("deleting keyspace {keyspace} ({what}): {source}")]
    Delete {
        /// The keyspace.
        keyspace: String,
        /// What was being deleted.
        what: String,
        /// The topology failure.
        #[source]
        source: TopoError,
    },

    /// Deletion with `deletionPolicy: Delete` is refused (workflows still reference the keyspace,
    /// or tablets are still registered). Not retryable by itself: it clears when the reason does.
    #[error("deleting keyspace {keyspace} refused: {reason}")]
    DeletionRefused {
        /// The keyspace.
        keyspace: String,
        /// Why.
        reason: String,
    },
}

impl KeyspaceError {
    /// A short, stable name for metric labels and Warning Event reasons.
    pub fn kind(&self) -> &'static str {
        match self {
            KeyspaceError::Observe { .. } => "ObserveFailed",
            KeyspaceError::ObserveTimeout { .. } => "ObserveTimeout",
            KeyspaceError::Create { .. } => "CreateFailed",
            KeyspaceError::LockBusy { .. } => "LockBusy",
            KeyspaceError::Repair { .. } => "RepairFailed",
            KeyspaceError::Refresh { .. } => "TabletRefreshFailed",
            KeyspaceError::Rebuild { .. } => "SrvVSchemaRebuildFailed",
            KeyspaceError::Delete { .. } => "DeleteFailed",
            KeyspaceError::DeletionRefused { .. } => "DeletionRefused",
        }
    }

    /// Whether requeueing soon can help. Refused deletions wait for a change instead (a watch on
    /// the workflows, or a periodic resync), so they do not hot-loop.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, KeyspaceError::DeletionRefused { .. })
    }

    /// Whether a keyspace lock held by someone else caused the failure.
    pub fn is_lock_busy(&self) -> bool {
        matches!(self, KeyspaceError::LockBusy { .. })
    }
}

/// Maps a failure to take the keyspace lock: a timeout or an interrupted wait means another
/// holder, anything else is a plain topology failure of the step that wanted the lock.
pub(crate) fn lock_error(keyspace: &str, subject: &str, source: TopoError) -> KeyspaceError {
    if matches!(
        source,
        TopoError::Timeout { .. } | TopoError::Interrupted { .. }
    ) {
        KeyspaceError::LockBusy {
            keyspace: keyspace.to_string(),
            source,
        }
    } else {
        KeyspaceError::Repair {
            keyspace: keyspace.to_string(),
            subject: subject.to_string(),
            source,
        }
    }
}
