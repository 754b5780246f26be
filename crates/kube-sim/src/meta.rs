//! Object metadata: timestamps, uids, generated names, and the metadata checks every
//! write goes through (names, labels, annotations, finalizers).
//!
//! A real apiserver rejects a malformed name or label with 422 before anything is
//! stored; tests that create objects with, say, an upper-case name must fail here too,
//! or a controller that builds such names would pass its tests and fail in a cluster.

use serde_json::{Map, Value};

use crate::error::{FieldError, show};

/// The current time as RFC 3339 with second precision (`creationTimestamp`,
/// `deletionTimestamp`).
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// The current time with microseconds, as `managedFields[].time` is not; used for
/// `MicroTime` fields only.
pub fn now_micro() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S.%6fZ")
        .to_string()
}

/// A random version-4 UUID in canonical text form.
pub fn new_uid() -> String {
    let mut b = [0u8; 16];
    for byte in &mut b {
        *byte = fastrand::u8(..);
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The five-character random suffix appended to `generateName` (the alphabet leaves out
/// vowels and look-alike characters, as the real server's does).
pub fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect()
}

/// Whether `s` is an RFC 1123 label: at most 63 lower-case alphanumerics or '-',
/// starting and ending with an alphanumeric.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Whether `s` is an RFC 1123 subdomain: dot-separated labels, at most 253 characters.
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// Whether `s` is the name part of a qualified name (label keys, finalizers):
/// at most 63 alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric.
fn is_qualified_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.')
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

/// Whether `s` is a qualified name: `[prefix/]name`, the prefix an RFC 1123 subdomain.
pub fn is_qualified_name(s: &str) -> bool {
    match s.split_once('/') {
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_qualified_name_part(name),
        None => is_qualified_name_part(s),
    }
}

/// Whether `s` is a valid label value: empty, or a qualified name part.
pub fn is_label_value(s: &str) -> bool {
    s.is_empty() || is_qualified_name_part(s)
}

/// How a resource's object names are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// RFC 1123 subdomain (most resources).
    Subdomain,
    /// RFC 1123 label (namespaces).
    Label,
}

/// Checks the client-controlled parts of `metadata`. `name_rule` says how names are
/// checked; `new_finalizers_forbidden` is set when the object is being deleted and
/// `old_finalizers` are the ones it had.
pub fn validate_metadata(
    meta: &Map<String, Value>,
    name_rule: NameRule,
    old_finalizers: Option<&[String]>,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = meta.get("name").and_then(Value::as_str).unwrap_or("");
    let name_ok = match name_rule {
        NameRule::Subdomain => is_dns_subdomain(name),
        NameRule::Label => is_dns_label(name),
    };
    if name.is_empty() {
        errs.push(FieldError::required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else if !name_ok {
        let what = match name_rule {
            NameRule::Subdomain => {
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
            }
            NameRule::Label => {
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"
            }
        };
        errs.push(FieldError::invalid(
            "metadata.name",
            &show(&Value::from(name)),
            what,
        ));
    }
    for key in ["labels", "annotations"] {
        match meta.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                let mut total = 0usize;
                for (k, v) in m {
                    if !is_qualified_name(k) {
                        errs.push(FieldError::invalid(
                            format!("metadata.{key}"),
                            &show(&Value::from(k.as_str())),
                            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character, with an optional DNS subdomain prefix and '/'",
                        ));
                    }
                    match v {
                        Value::String(s) => {
                            total += k.len() + s.len();
                            if key == "labels" && !is_label_value(s) {
                                errs.push(FieldError::invalid(
                                    "metadata.labels",
                                    &show(v),
                                    "a valid label value must be an empty string or consist of at most 63 alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
                                ));
                            }
                        }
                        _ => errs.push(FieldError::invalid(
                            format!("metadata.{key}.{k}"),
                            &show(v),
                            "must be a string",
                        )),
                    }
                }
                if key == "annotations" && total > 256 * 1024 {
                    errs.push(FieldError::too_long("metadata.annotations", 256 * 1024));
                }
            }
            Some(other) => errs.push(FieldError::invalid(
                format!("metadata.{key}"),
                &show(other),
                "must be a map of strings",
            )),
        }
    }
    if let Some(refs) = meta.get("ownerReferences").and_then(Value::as_array) {
        let mut controllers = 0;
        for (i, r) in refs.iter().enumerate() {
            for k in ["apiVersion", "kind", "name", "uid"] {
                if r.get(k).and_then(Value::as_str).is_none_or(str::is_empty) {
                    errs.push(FieldError::required(
                        format!("metadata.ownerReferences[{i}].{k}"),
                        "",
                    ));
                }
            }
            if r.get("controller").and_then(Value::as_bool) == Some(true) {
                controllers += 1;
            }
        }
        if controllers > 1 {
            errs.push(FieldError::invalid(
                "metadata.ownerReferences",
                &controllers.to_string(),
                "only one reference can have Controller set to true",
            ));
        }
    }
    let finalizers = finalizers_of(meta);
    for (i, f) in finalizers.iter().enumerate() {
        if !is_qualified_name(f) {
            errs.push(FieldError::invalid(
                format!("metadata.finalizers[{i}]"),
                &show(&Value::from(f.as_str())),
                "a finalizer must be a qualified name (an optional DNS subdomain prefix and '/', then a name)",
            ));
        }
    }
    if let Some(old) = old_finalizers {
        let added: Vec<&String> = finalizers.iter().filter(|f| !old.contains(f)).collect();
        if !added.is_empty() {
            let list: Vec<String> = added.iter().map(|f| format!("{f:?}")).collect();
            errs.push(FieldError::forbidden(
                "metadata.finalizers",
                &format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers [{}]",
                    list.join(", ")
                ),
            ));
        }
    }
    errs
}

/// The finalizers listed in `meta`.
pub fn finalizers_of(meta: &Map<String, Value>) -> Vec<String> {
    meta.get("finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// `metadata` of an object, or an empty map.
pub fn meta(obj: &Value) -> &Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    obj.get("metadata")
        .and_then(Value::as_object)
        .unwrap_or_else(|| EMPTY.get_or_init(Map::new))
}

/// Mutable `metadata` of an object, created if missing (the caller guarantees `obj`
/// is a JSON object).
pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    let o = obj.as_object_mut().expect("object checked above");
    let m = o
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !m.is_object() {
        *m = Value::Object(Map::new());
    }
    m.as_object_mut().expect("metadata checked above")
}

/// A string field of `metadata`.
pub fn meta_str<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    meta(obj).get(key).and_then(Value::as_str)
}

/// The object's labels as string pairs.
pub fn labels(obj: &Value) -> Map<String, Value> {
    meta(obj)
        .get("labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_dns_subdomain("w1.example-2.com"));
        assert!(!is_dns_subdomain("W1"));
        assert!(!is_dns_subdomain("-a"));
        assert!(is_dns_label("default"));
        assert!(!is_dns_label("a.b"));
        assert!(is_qualified_name("vtmove.dev/cleanup"));
        assert!(is_qualified_name("kubernetes"));
        assert!(!is_qualified_name("a/b/c"));
        assert!(is_label_value(""));
        assert!(!is_label_value("bad value"));
    }

    #[test]
    fn uid_shape() {
        let u = new_uid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }
}
