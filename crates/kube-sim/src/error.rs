//! API errors, rendered as `metav1.Status` bodies.
//!
//! Clients decide what went wrong from the `reason` and `code` of a Status (kube's
//! `get_opt` treats `NotFound` as absence, the finalizer helper and Lease loops treat
//! `Conflict` as "retry from a fresh read", the watcher treats a 410 ERROR event as
//! "relist"). kubectl prints `Invalid` errors from `details.kind`, `details.name` and
//! `details.causes`. So every failure goes through [`ApiError`], which carries exactly
//! those fields.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One problem with one field, in the shape of a Status cause.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    /// Dotted field path, e.g. `spec.tables[0]`.
    pub field: String,
    /// Status cause reason, e.g. `FieldValueInvalid`.
    pub reason: &'static str,
    /// The message without the field path, e.g. `Invalid value: "x": must be ...`.
    pub message: String,
}

impl FieldError {
    /// `Invalid value: <value>: <detail>`.
    pub fn invalid(field: impl Into<String>, shown: &str, detail: &str) -> Self {
        Self {
            field: field.into(),
            reason: "FieldValueInvalid",
            message: format!("Invalid value: {shown}: {detail}"),
        }
    }

    /// `Invalid value: <detail>`: what a real apiserver reports when the value is an object or
    /// a list, which it leaves out of the message (a failed CEL rule on such a node).
    pub fn invalid_without_value(field: impl Into<String>, detail: &str) -> Self {
        Self {
            field: field.into(),
            reason: "FieldValueInvalid",
            message: format!("Invalid value: {detail}"),
        }
    }

    /// `Required value[: detail]`.
    pub fn required(field: impl Into<String>, detail: &str) -> Self {
        let message = if detail.is_empty() {
            "Required value".to_string()
        } else {
            format!("Required value: {detail}")
        };
        Self {
            field: field.into(),
            reason: "FieldValueRequired",
            message,
        }
    }

    /// `Forbidden: detail`.
    pub fn forbidden(field: impl Into<String>, detail: &str) -> Self {
        Self {
            field: field.into(),
            reason: "FieldValueForbidden",
            message: format!("Forbidden: {detail}"),
        }
    }

    /// `Unsupported value: <value>: supported values: "a", "b"`.
    pub fn not_supported(field: impl Into<String>, shown: &str, supported: &[String]) -> Self {
        Self {
            field: field.into(),
            reason: "FieldValueNotSupported",
            message: format!(
                "Unsupported value: {shown}: supported values: {}",
                supported.join(", ")
            ),
        }
    }

    /// `Too many: <n>: must have at most <max> items`.
    pub fn too_many(field: impl Into<String>, actual: usize, max: u64) -> Self {
        Self {
            field: field.into(),
            reason: "FieldValueTooMany",
            message: format!("Too many: {actual}: must have at most {max} items"),
        }
    }

    /// `Too long: may not be more than <max> bytes`.
    pub fn too_long(field: impl Into<String>, max: u64) -> Self {
        Self {
            field: field.into(),
            reason: "FieldValueTooLong",
            message: format!("Too long: may not be more than {max} bytes"),
        }
    }

    /// `Duplicate value: <value>`.
    pub fn duplicate(field: impl Into<String>, shown: &str) -> Self {
        Self {
            field: field.into(),
            reason: "FieldValueDuplicate",
            message: format!("Duplicate value: {shown}"),
        }
    }

    /// `field: message`, as kubectl and the Status message print it.
    pub fn render(&self) -> String {
        if self.field.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", self.field, self.message)
        }
    }
}

/// Formats a JSON value the way field errors show it: strings quoted, numbers bare,
/// compound values as JSON.
pub fn show(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "null".to_string(),
        other => other.to_string(),
    }
}

/// An error answered to the client as a `metav1.Status` with a non-2xx code.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    /// HTTP status code, repeated in the body's `code`.
    pub code: u16,
    /// Machine-readable reason (`NotFound`, `Conflict`, `Invalid`, ...).
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
    /// The Status `details` object, when there is one.
    pub details: Option<Value>,
}

/// Identifies the object an error is about, for Status `details`.
#[derive(Clone, Debug, Default)]
pub struct Subject {
    /// API group ("" for core).
    pub group: String,
    /// What goes into `details.kind`: the resource plural for most errors, the Kind for
    /// `Invalid` (as the real server does).
    pub kind: String,
    /// Object name.
    pub name: String,
}

impl Subject {
    /// `plural.group` (or just `plural` for the core group), as messages name resources.
    fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    fn details(&self) -> Value {
        let mut d = json!({ "name": self.name, "kind": self.kind });
        if !self.group.is_empty() {
            d["group"] = json!(self.group);
        }
        d
    }
}

impl ApiError {
    /// A plain error with no details.
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 404 NotFound for an object (`subject.kind` is the resource plural).
    pub fn not_found(subject: &Subject) -> Self {
        Self {
            code: 404,
            reason: "NotFound",
            message: format!("{} {:?} not found", subject.qualified(), subject.name),
            details: Some(subject.details()),
        }
    }

    /// 404 NotFound for a path that serves nothing.
    pub fn no_route() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    /// 409 AlreadyExists.
    pub fn already_exists(subject: &Subject) -> Self {
        Self {
            code: 409,
            reason: "AlreadyExists",
            message: format!("{} {:?} already exists", subject.qualified(), subject.name),
            details: Some(subject.details()),
        }
    }

    /// 409 Conflict for an optimistic-concurrency failure.
    pub fn conflict(subject: &Subject, why: &str) -> Self {
        Self {
            code: 409,
            reason: "Conflict",
            message: format!(
                "Operation cannot be fulfilled on {} {:?}: {why}",
                subject.qualified(),
                subject.name
            ),
            details: Some(subject.details()),
        }
    }

    /// 409 Conflict carrying a stale resourceVersion.
    pub fn stale(subject: &Subject) -> Self {
        Self::conflict(
            subject,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 410 Expired (the Status a watch or a continue token gets when its
    /// resourceVersion has been compacted away).
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed(what: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource{what}"),
        )
    }

    /// 415 UnsupportedMediaType.
    pub fn unsupported_media(accepted: &[&str]) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: {}",
                accepted.join(", ")
            ),
        )
    }

    /// 406 NotAcceptable.
    pub fn not_acceptable() -> Self {
        Self::new(
            406,
            "NotAcceptable",
            "only the following media types are accepted: application/json, application/yaml",
        )
    }

    /// 403 Forbidden.
    pub fn forbidden(subject: &Subject, why: &str) -> Self {
        Self {
            code: 403,
            reason: "Forbidden",
            message: format!(
                "{} {:?} is forbidden: {why}",
                subject.qualified(),
                subject.name
            ),
            details: Some(subject.details()),
        }
    }

    /// 422 Invalid with one cause per field error. `kind` is the Kind and `group`
    /// the API group, so kubectl prints `The <Kind> "<name>" is invalid: ...`.
    pub fn invalid(group: &str, kind: &str, name: &str, errors: &[FieldError]) -> Self {
        let rendered: Vec<String> = errors.iter().map(FieldError::render).collect();
        let aggregate = if rendered.len() == 1 {
            rendered[0].clone()
        } else {
            format!("[{}]", rendered.join(", "))
        };
        let qualified = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| json!({ "reason": e.reason, "message": e.message, "field": e.field }))
            .collect();
        let mut details = json!({ "name": name, "kind": kind, "causes": causes });
        if !group.is_empty() {
            details["group"] = json!(group);
        }
        Self {
            code: 422,
            reason: "Invalid",
            message: format!("{qualified} {name:?} is invalid: {aggregate}"),
            details: Some(details),
        }
    }

    /// 500 InternalError (never expected; kept so no client input can panic the server).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// The `metav1.Status` body.
    pub fn status_body(&self) -> Value {
        let mut body = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            body["details"] = d.clone();
        }
        body
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = self.status_body().to_string();
        let mut resp = (code, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    }
}

/// Result type of request handling.
pub type ApiResult<T> = Result<T, ApiError>;
