//! Typed errors of tablet RPCs, and which of them are worth retrying.
//!
//! The planner reacts differently to "the tablet is down" (retry, report the tablet), "the
//! deadline passed" (retry with a fresh budget; counted separately for metrics, `docs/design/principles.md` P8),
//! "this tablet is too old for that RPC" (fall back or report a version blocker) and "the tablet
//! refused" (a permanent answer until something changes). Every variant names the tablet address
//! and the method so that Events and logs point at the right place.

use std::fmt;
use std::time::Duration;

use tonic::Code;

use super::stream::ephemeral_error_in;

/// Address of a tablet's gRPC endpoint: `hostname` plus `port_map["grpc"]` from its Tablet record.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TabletAddr {
    /// Host name or IP address.
    pub host: String,
    /// gRPC port.
    pub port: u16,
}

/// A Tablet record without a usable gRPC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tablet has no usable gRPC address: {0}")]
pub struct AddrError(pub String);

impl TabletAddr {
    /// An address from its parts.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        TabletAddr {
            host: host.into(),
            port,
        }
    }

    /// The gRPC address of a Tablet record (`hostname`, `port_map["grpc"]`).
    pub fn from_tablet(tablet: &crate::vitess::proto::topodata::Tablet) -> Result<Self, AddrError> {
        if tablet.hostname.trim().is_empty() {
            return Err(AddrError("empty hostname".into()));
        }
        let port = tablet
            .port_map
            .get("grpc")
            .ok_or_else(|| AddrError(format!("{}: no \"grpc\" port", tablet.hostname)))?;
        let port = u16::try_from(*port)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| AddrError(format!("{}: invalid grpc port {port}", tablet.hostname)))?;
        Ok(TabletAddr::new(tablet.hostname.trim(), port))
    }

    /// Parses `host:port` (`[v6]:port` for IPv6 literals).
    pub fn parse(text: &str) -> Result<Self, AddrError> {
        let bad = || AddrError(format!("{text:?} is not host:port"));
        let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let port: u16 = port.parse().map_err(|_| bad())?;
        if host.is_empty() || port == 0 {
            return Err(bad());
        }
        Ok(TabletAddr::new(host, port))
    }
}

impl fmt::Display for TabletAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

macro_rules! methods {
    ($($variant:ident),* $(,)?) => {
        /// A TabletManager RPC vtmove calls. Used to label errors, metrics and per-method timeouts.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Method {
            $(
                #[doc = concat!("`", stringify!($variant), "`")]
                $variant,
            )*
        }

        impl Method {
            /// Every RPC of the subset, in proto order.
            pub const ALL: &'static [Method] = &[$(Method::$variant),*];

            /// The RPC name as in the proto (`GetSchema`).
            pub fn name(self) -> &'static str {
                match self {
                    $(Method::$variant => stringify!($variant),)*
                }
            }

            /// The full gRPC path Vitess serves it on.
            pub fn path(self) -> &'static str {
                match self {
                    $(Method::$variant => concat!("/tabletmanagerservice.TabletManager/", stringify!($variant)),)*
                }
            }
        }
    };
}

methods!(
    GetSchema,
    RefreshState,
    ApplySchema,
    ExecuteFetchAsDba,
    PrimaryPosition,
    CreateVReplicationWorkflow,
    DeleteVReplicationWorkflow,
    HasVReplicationWorkflows,
    ReadVReplicationWorkflows,
    ReadVReplicationWorkflow,
    UpdateVReplicationWorkflow,
    VReplicationExec,
    VReplicationWaitForPos,
    FullStatus,
);

/// The gRPC service name every method path starts with.
pub const SERVICE_NAME: &str = "tabletmanagerservice.TabletManager";

impl Method {
    /// True for RPCs that never change the tablet or its data. `VReplicationExec` and
    /// `ExecuteFetchAsDba` are not, because they can, even when one call only SELECTs; a check
    /// of I5 (a converged pass mutates nothing) has to look at their SQL.
    pub fn is_read_only(self) -> bool {
        matches!(
            self,
            Method::GetSchema
                | Method::PrimaryPosition
                | Method::HasVReplicationWorkflows
                | Method::ReadVReplicationWorkflows
                | Method::ReadVReplicationWorkflow
                | Method::VReplicationWaitForPos
                | Method::FullStatus
        )
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A failed tablet RPC.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TabletError {
    /// The tablet could not be reached (connection refused, connect timeout, connection lost).
    #[error("{method} on tablet {tablet}: unavailable: {message}")]
    Unavailable {
        /// Tablet address.
        tablet: TabletAddr,
        /// RPC.
        method: Method,
        /// Detail from the transport or the tablet.
        message: String,
    },
    /// The call's deadline passed, locally or on the tablet.
    #[error("{method} on tablet {tablet}: deadline of {timeout:?} exceeded: {message}")]
    DeadlineExceeded {
        /// Tablet address.
        tablet: TabletAddr,
        /// RPC.
        method: Method,
        /// The deadline the call had.
        timeout: Duration,
        /// Detail.
        message: String,
    },
    /// The tablet refused because its state does not allow the call (wrong type, FROZEN, ...).
    #[error("{method} on tablet {tablet}: failed precondition: {message}")]
    FailedPrecondition {
        /// Tablet address.
        tablet: TabletAddr,
        /// RPC.
        method: Method,
        /// The tablet's explanation.
        message: String,
    },
    /// The tablet does not know this RPC: it runs an older Vitess than the RPC needs.
    #[error(
        "{method} on tablet {tablet}: not implemented by this tablet (older Vitess?): {message}"
    )]
    Unimplemented {
        /// Tablet address.
        tablet: TabletAddr,
        /// RPC.
        method: Method,
        /// Detail.
        message: String,
    },
    /// What the call names does not exist on the tablet.
    #[error("{method} on tablet {tablet}: not found: {message}")]
    NotFound {
        /// Tablet address.
        tablet: TabletAddr,
        /// RPC.
        method: Method,
        /// Detail.
        message: String,
    },
    /// The tablet rejected the request itself.
    #[error("{method} on tablet {tablet}: invalid argument: {message}")]
    InvalidArgument {
        /// Tablet address.
        tablet: TabletAddr,
        /// RPC.
        method: Method,
        /// Detail.
        message: String,
    },
    /// The tablet failed internally.
    #[error("{method} on tablet {tablet}: internal error: {message}")]
    Internal {
        /// Tablet address.
        tablet: TabletAddr,
        /// RPC.
        method: Method,
        /// Detail.
        message: String,
    },
    /// Any other gRPC status (Unknown, Aborted, PermissionDenied, ...).
    #[error("{method} on tablet {tablet}: {code:?}: {message}")]
    Other {
        /// Tablet address.
        tablet: TabletAddr,
        /// RPC.
        method: Method,
        /// The gRPC status code.
        code: Code,
        /// Detail.
        message: String,
    },
    /// The tablet answered, but the answer cannot be used (a required field missing, an
    /// unparsable position).
    #[error("{method} on tablet {tablet}: unusable response: {reason}")]
    InvalidResponse {
        /// Tablet address.
        tablet: TabletAddr,
        /// RPC.
        method: Method,
        /// What is wrong with it.
        reason: String,
    },
    /// The client could not even build a request (bad address or TLS settings).
    #[error("{method} on tablet {tablet}: client configuration error: {reason}")]
    Config {
        /// Tablet address.
        tablet: TabletAddr,
        /// RPC.
        method: Method,
        /// What is wrong.
        reason: String,
    },
}

impl TabletError {
    /// Maps a gRPC status to the typed error. Transport failures already arrive as Unavailable.
    pub fn from_status(tablet: &TabletAddr, method: Method, status: &tonic::Status) -> Self {
        let tablet = tablet.clone();
        let message = status.message().to_owned();
        match status.code() {
            Code::Unavailable => TabletError::Unavailable {
                tablet,
                method,
                message,
            },
            Code::DeadlineExceeded => TabletError::DeadlineExceeded {
                tablet,
                method,
                timeout: Duration::ZERO,
                message,
            },
            Code::FailedPrecondition => TabletError::FailedPrecondition {
                tablet,
                method,
                message,
            },
            Code::Unimplemented => TabletError::Unimplemented {
                tablet,
                method,
                message,
            },
            Code::NotFound => TabletError::NotFound {
                tablet,
                method,
                message,
            },
            Code::InvalidArgument => TabletError::InvalidArgument {
                tablet,
                method,
                message,
            },
            Code::Internal => TabletError::Internal {
                tablet,
                method,
                message,
            },
            code => TabletError::Other {
                tablet,
                method,
                code,
                message,
            },
        }
    }

    /// The tablet the call went to.
    pub fn tablet(&self) -> &TabletAddr {
        match self {
            TabletError::Unavailable { tablet, .. }
            | TabletError::DeadlineExceeded { tablet, .. }
            | TabletError::FailedPrecondition { tablet, .. }
            | TabletError::Unimplemented { tablet, .. }
            | TabletError::NotFound { tablet, .. }
            | TabletError::InvalidArgument { tablet, .. }
            | TabletError::Internal { tablet, .. }
            | TabletError::Other { tablet, .. }
            | TabletError::InvalidResponse { tablet, .. }
            | TabletError::Config { tablet, .. } => tablet,
        }
    }

    /// The RPC that failed.
    pub fn method(&self) -> Method {
        match self {
            TabletError::Unavailable { method, .. }
            | TabletError::DeadlineExceeded { method, .. }
            | TabletError::FailedPrecondition { method, .. }
            | TabletError::Unimplemented { method, .. }
            | TabletError::NotFound { method, .. }
            | TabletError::InvalidArgument { method, .. }
            | TabletError::Internal { method, .. }
            | TabletError::Other { method, .. }
            | TabletError::InvalidResponse { method, .. }
            | TabletError::Config { method, .. } => *method,
        }
    }

    /// The gRPC code this error corresponds to.
    pub fn code(&self) -> Code {
        match self {
            TabletError::Unavailable { .. } => Code::Unavailable,
            TabletError::DeadlineExceeded { .. } => Code::DeadlineExceeded,
            TabletError::FailedPrecondition { .. } => Code::FailedPrecondition,
            TabletError::Unimplemented { .. } => Code::Unimplemented,
            TabletError::NotFound { .. } => Code::NotFound,
            TabletError::InvalidArgument { .. } => Code::InvalidArgument,
            TabletError::Internal { .. } => Code::Internal,
            TabletError::Other { code, .. } => *code,
            TabletError::InvalidResponse { .. } => Code::Internal,
            TabletError::Config { .. } => Code::InvalidArgument,
        }
    }

    /// True when the deadline passed (counted apart from other errors, `docs/design/principles.md` P8).
    pub fn is_timeout(&self) -> bool {
        matches!(self, TabletError::DeadlineExceeded { .. })
    }

    /// True when the same call may succeed if simply tried again later: the tablet was
    /// unreachable, the deadline passed, the call was aborted or throttled, or the tablet relayed
    /// an ephemeral MySQL error (lock wait timeout, deadlock, lost connection, ...).
    ///
    /// Permanent answers (Unimplemented, InvalidArgument, NotFound, FailedPrecondition,
    /// PermissionDenied, an unusable response, bad configuration) need a change first; the
    /// planner re-observes and decides rather than hammering the tablet.
    pub fn is_retryable(&self) -> bool {
        match self {
            TabletError::Unavailable { .. } | TabletError::DeadlineExceeded { .. } => true,
            TabletError::Other { code, message, .. } => match code {
                Code::Aborted | Code::ResourceExhausted | Code::Cancelled => true,
                Code::Unknown => ephemeral_error_in(message).is_some(),
                _ => false,
            },
            TabletError::Internal { message, .. } => ephemeral_error_in(message).is_some(),
            TabletError::FailedPrecondition { .. }
            | TabletError::Unimplemented { .. }
            | TabletError::NotFound { .. }
            | TabletError::InvalidArgument { .. }
            | TabletError::InvalidResponse { .. }
            | TabletError::Config { .. } => false,
        }
    }

    /// A short stable label for metrics and Event reasons.
    pub fn kind(&self) -> &'static str {
        match self {
            TabletError::Unavailable { .. } => "unavailable",
            TabletError::DeadlineExceeded { .. } => "timeout",
            TabletError::FailedPrecondition { .. } => "failed_precondition",
            TabletError::Unimplemented { .. } => "unimplemented",
            TabletError::NotFound { .. } => "not_found",
            TabletError::InvalidArgument { .. } => "invalid_argument",
            TabletError::Internal { .. } => "internal",
            TabletError::Other { .. } => "other",
            TabletError::InvalidResponse { .. } => "invalid_response",
            TabletError::Config { .. } => "config",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vitess::proto::topodata::Tablet;

    fn addr() -> TabletAddr {
        TabletAddr::new("tablet-100", 15999)
    }

    #[test]
    fn paths_are_vitess_paths() {
        assert_eq!(
            Method::VReplicationWaitForPos.path(),
            "/tabletmanagerservice.TabletManager/VReplicationWaitForPos"
        );
        for m in Method::ALL {
            assert_eq!(m.path(), format!("/{SERVICE_NAME}/{}", m.name()));
        }
        assert_eq!(Method::ALL.len(), 14);
        assert!(Method::FullStatus.is_read_only());
        assert!(!Method::UpdateVReplicationWorkflow.is_read_only());
        assert!(!Method::VReplicationExec.is_read_only());
    }

    #[test]
    fn status_codes_map_to_variants() {
        let cases = [
            (Code::Unavailable, "unavailable", true),
            (Code::DeadlineExceeded, "timeout", true),
            (Code::FailedPrecondition, "failed_precondition", false),
            (Code::Unimplemented, "unimplemented", false),
            (Code::NotFound, "not_found", false),
            (Code::InvalidArgument, "invalid_argument", false),
            (Code::Internal, "internal", false),
            (Code::PermissionDenied, "other", false),
            (Code::Aborted, "other", true),
            (Code::ResourceExhausted, "other", true),
        ];
        for (code, kind, retryable) in cases {
            let e = TabletError::from_status(
                &addr(),
                Method::FullStatus,
                &tonic::Status::new(code, "x"),
            );
            assert_eq!(e.kind(), kind, "{code:?}");
            assert_eq!(e.code(), code);
            assert_eq!(e.is_retryable(), retryable, "{code:?}");
            assert_eq!(e.method(), Method::FullStatus);
            assert_eq!(e.tablet(), &addr());
            let text = e.to_string();
            assert!(
                text.contains("tablet-100:15999") && text.contains("FullStatus"),
                "{text}"
            );
        }
    }

    #[test]
    fn ephemeral_mysql_errors_relayed_as_unknown_are_retryable() {
        let lock_wait = tonic::Status::unknown(
            "Lock wait timeout exceeded; try restarting transaction (errno 1205)",
        );
        assert!(
            TabletError::from_status(&addr(), Method::VReplicationExec, &lock_wait).is_retryable()
        );
        let dup = tonic::Status::unknown("Duplicate entry (errno 1062)");
        assert!(!TabletError::from_status(&addr(), Method::VReplicationExec, &dup).is_retryable());
    }

    #[test]
    fn addresses() {
        let mut t = Tablet {
            hostname: "tablet-100.ns.svc".into(),
            ..Tablet::default()
        };
        assert!(TabletAddr::from_tablet(&t).is_err());
        t.port_map.insert("vt".into(), 15000);
        t.port_map.insert("grpc".into(), 15999);
        assert_eq!(
            TabletAddr::from_tablet(&t).map(|a| a.to_string()),
            Ok("tablet-100.ns.svc:15999".to_owned())
        );
        t.port_map.insert("grpc".into(), 70000);
        assert!(TabletAddr::from_tablet(&t).is_err());
        assert_eq!(
            TabletAddr::parse("[::1]:80").map(|a| a.to_string()),
            Ok("[::1]:80".into())
        );
        assert_eq!(TabletAddr::parse("h:1"), Ok(TabletAddr::new("h", 1)));
        assert!(TabletAddr::parse("h").is_err());
        assert!(TabletAddr::parse(":1").is_err());
        assert!(TabletAddr::parse("h:0").is_err());
    }
}
