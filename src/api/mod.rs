//! vtmove's Kubernetes API: the `MoveTablesWorkflow` and `Keyspace` custom resources
//! (group `vtmove.dev`, version `v1alpha1`), their status conditions, and the CRD YAML generated
//! from these types.
//!
//! The Rust types are the source of truth: `vtmove crds` renders them with kube's
//! [`CustomResourceExt::crd`], the rendered YAML is committed under `crds/`, and a test fails when
//! the two drift apart.

pub mod condition;
pub mod crds;
pub mod duration;
pub mod keyspace;
pub mod movetables;
pub mod reference;
pub mod schema;
pub mod validation;

pub use condition::{ConditionStatus, ConditionUpdate};
pub use crds::{CrdError, CrdFile, crd_files, crd_yaml, crds, write_crds};
pub use duration::{DurationError, DurationString, parse_duration};
pub use keyspace::{Keyspace, KeyspaceSpec, KeyspaceStatus};
pub use movetables::{MoveTablesWorkflow, MoveTablesWorkflowSpec, MoveTablesWorkflowStatus};
pub use validation::FieldError;

#[doc(no_inline)]
pub use kube::CustomResourceExt;

/// The API group of vtmove's resources.
pub const GROUP: &str = "vtmove.dev";
/// The API version of vtmove's resources.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of vtmove's resources.
pub const API_VERSION: &str = "vtmove.dev/v1alpha1";
