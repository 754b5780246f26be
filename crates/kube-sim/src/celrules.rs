//! CEL `x-kubernetes-validations` rules, evaluated with the `cel` crate.
//!
//! Each rule is compiled once when its CRD is written (a rule that does not compile
//! makes the CRD write fail with 422, as on a real server). At admission a rule sees
//! `self`, the value of the schema node it is attached to, converted with the schema's
//! types (`integer` → int, `number` → double, `format: date-time` → timestamp,
//! `format: duration` → duration). Transition rules (those that mention `oldSelf`) only
//! run on updates where the node existed before and can be correlated with its stored
//! value; on create they are skipped, as in Kubernetes. Equality on lists with
//! `x-kubernetes-list-type: set` or `map` ignores their order, as in Kubernetes, so
//! `self == oldSelf` on a set admits a reordering (see [`align_unordered`]).
//!
//! The environment is the CEL standard library plus the strings, lists and math
//! extensions the `cel` crate ships; the Kubernetes-specific libraries (quantity, IP,
//! URL, semver, `isSorted`...) are not available, so a rule using them fails to evaluate
//! and is reported as an error rather than silently passing.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use cel::objects::{Key, Map as CelMap};
use cel::{Context, Env, Program, Value as Cel};
use serde_json::Value;

use crate::error::{FieldError, show};
use crate::schema::{AdditionalProps, SType, Schema};

/// One compiled rule.
pub struct CelRule {
    /// The rule source.
    pub rule: String,
    program: Program,
    message: Option<String>,
    message_expression: Option<Program>,
    field_path: Option<String>,
    reason: Option<String>,
    /// Whether the rule mentions `oldSelf`.
    pub transition: bool,
    optional_old_self: bool,
}

impl std::fmt::Debug for CelRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CelRule").field("rule", &self.rule).finish()
    }
}

fn env() -> Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Env::stdlib();
        // Registering the bundled extensions cannot fail on a fresh stdlib environment;
        // if a future crate version makes them clash, run without them.
        let _ = env.add_extension(cel::extensions::strings);
        let _ = env.add_extension(cel::extensions::lists);
        let _ = env.add_extension(cel::extensions::math);
        Arc::new(env)
    })
    .clone()
}

impl CelRule {
    /// Compiles one entry of `x-kubernetes-validations`; `path` names it in errors.
    pub fn compile(v: &Value, path: &str) -> Result<CelRule, FieldError> {
        let rule = v
            .get("rule")
            .and_then(Value::as_str)
            .filter(|r| !r.trim().is_empty())
            .ok_or_else(|| FieldError::required(format!("{path}.rule"), ""))?;
        let env = env();
        let program = env.compile(rule).map_err(|e| {
            FieldError::invalid(
                format!("{path}.rule"),
                &show(&Value::from(rule)),
                &format!("compilation failed: {e}"),
            )
        })?;
        let message_expression = match v.get("messageExpression").and_then(Value::as_str) {
            Some(src) => Some(env.compile(src).map_err(|e| {
                FieldError::invalid(
                    format!("{path}.messageExpression"),
                    &show(&Value::from(src)),
                    &format!("compilation failed: {e}"),
                )
            })?),
            None => None,
        };
        let reason = v.get("reason").and_then(Value::as_str).map(str::to_string);
        if let Some(r) = &reason
            && !matches!(
                r.as_str(),
                "FieldValueInvalid"
                    | "FieldValueForbidden"
                    | "FieldValueRequired"
                    | "FieldValueDuplicate"
            )
        {
            return Err(FieldError::not_supported(
                format!("{path}.reason"),
                &show(&Value::from(r.as_str())),
                &[
                    "\"FieldValueDuplicate\"",
                    "\"FieldValueForbidden\"",
                    "\"FieldValueInvalid\"",
                    "\"FieldValueRequired\"",
                ]
                .map(String::from),
            ));
        }
        let transition = program.references().has_variable("oldSelf");
        Ok(CelRule {
            rule: rule.to_string(),
            program,
            message: v.get("message").and_then(Value::as_str).map(str::to_string),
            message_expression,
            field_path: v
                .get("fieldPath")
                .and_then(Value::as_str)
                .map(str::to_string),
            reason,
            transition,
            optional_old_self: v
                .get("optionalOldSelf")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        })
    }
}

/// Evaluates `rule` for the node `schema` at `path` with value `v` (and the correlated
/// stored value `old`); returns the error to report, if any.
pub fn evaluate(
    rule: &CelRule,
    schema: &Schema,
    v: &Value,
    old: Option<&Value>,
    path: &str,
) -> Option<FieldError> {
    if rule.transition && old.is_none() && !rule.optional_old_self {
        return None;
    }
    let mut ctx = Context::with_env(env());
    // Rules at the root see only metadata.name and metadata.generateName, as in Kubernetes.
    let root_view = |x: &Value| {
        let mut x = x.clone();
        if let Some(m) = x.get_mut("metadata").and_then(Value::as_object_mut) {
            m.retain(|k, _| k == "name" || k == "generateName");
        }
        x
    };
    // Only transition rules read oldSelf; they see it with unordered lists aligned.
    let old = old
        .filter(|_| rule.transition)
        .map(|o| align_unordered(o, v, schema));
    let (v, old) = if path.is_empty() {
        (root_view(v), old.as_ref().map(root_view))
    } else {
        (v.clone(), old)
    };
    ctx.add_variable_from_value("self", to_cel(&v, Some(schema)));
    match &old {
        Some(o) => ctx.add_variable_from_value("oldSelf", to_cel(o, Some(schema))),
        None if rule.transition => ctx.add_variable_from_value("oldSelf", Cel::Null),
        None => {}
    }
    let field = match &rule.field_path {
        Some(fp) if fp.starts_with('.') && path.is_empty() => fp[1..].to_string(),
        Some(fp) => format!("{path}{fp}"),
        None => path.to_string(),
    };
    // A real apiserver shows a scalar's value in the error and leaves objects and lists out.
    let shown = match &v {
        Value::Object(_) | Value::Array(_) => None,
        scalar => Some(crate::error::show(scalar)),
    };
    let invalid = |field: String, detail: &str| match &shown {
        Some(value) => FieldError::invalid(field, value, detail),
        None => FieldError::invalid_without_value(field, detail),
    };
    let detail = match rule.program.execute(&ctx) {
        Ok(Cel::Bool(true)) => return None,
        Ok(Cel::Bool(false)) => {
            let from_expr = rule
                .message_expression
                .as_ref()
                .and_then(|p| match p.execute(&ctx) {
                    Ok(Cel::String(s)) if !s.trim().is_empty() => Some(s.to_string()),
                    _ => None,
                });
            from_expr
                .or_else(|| rule.message.clone())
                .unwrap_or_else(|| format!("failed rule: {}", rule.rule))
        }
        Ok(other) => {
            return Some(invalid(
                field,
                &format!(
                    "rule did not evaluate to a bool (got {other:?}) evaluating rule: {}",
                    rule.rule
                ),
            ));
        }
        Err(e) => {
            return Some(invalid(
                field,
                &format!("{e} evaluating rule: {}", rule.rule),
            ));
        }
    };
    Some(match rule.reason.as_deref() {
        Some("FieldValueForbidden") => FieldError::forbidden(field, &detail),
        Some("FieldValueRequired") => FieldError::required(field, &detail),
        Some("FieldValueDuplicate") => FieldError {
            field,
            reason: "FieldValueDuplicate",
            message: match &shown {
                Some(value) => format!("Duplicate value: {value}: {detail}"),
                None => format!("Duplicate value: {detail}"),
            },
        },
        _ => invalid(field, &detail),
    })
}

/// Converts JSON to a CEL value, typed by the schema where there is one.
pub fn to_cel(v: &Value, schema: Option<&Schema>) -> Cel {
    match v {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => {
            let wants_double = schema.is_some_and(|s| s.stype == Some(SType::Number));
            if wants_double {
                Cel::Float(n.as_f64().unwrap_or(0.0))
            } else if let Some(i) = n.as_i64() {
                Cel::Int(i)
            } else if let Some(u) = n.as_u64() {
                Cel::UInt(u)
            } else {
                Cel::Float(n.as_f64().unwrap_or(0.0))
            }
        }
        Value::String(s) => {
            let format = schema.and_then(|s| s.format.as_deref());
            match format {
                Some("date-time") => match chrono::DateTime::parse_from_rfc3339(s) {
                    Ok(t) => Cel::Timestamp(t),
                    Err(_) => Cel::String(Arc::new(s.clone())),
                },
                Some("duration") => match parse_go_duration(s) {
                    Some(d) => Cel::Duration(d),
                    None => Cel::String(Arc::new(s.clone())),
                },
                _ => Cel::String(Arc::new(s.clone())),
            }
        }
        Value::Array(a) => {
            let items = schema.and_then(|s| s.items.as_deref());
            Cel::List(Arc::new(a.iter().map(|x| to_cel(x, items)).collect()))
        }
        Value::Object(m) => {
            let mut out: HashMap<Key, Cel> = HashMap::with_capacity(m.len());
            for (k, x) in m {
                let sub = schema.and_then(|s| {
                    s.properties.get(k).or(match &s.additional {
                        AdditionalProps::Schema(a) => Some(a.as_ref()),
                        _ => None,
                    })
                });
                out.insert(Key::String(Arc::new(k.clone())), to_cel(x, sub));
            }
            Cel::Map(CelMap { map: Arc::new(out) })
        }
    }
}

/// `old` made comparable with `new` the way Kubernetes CEL compares lists: equality on a
/// list with `x-kubernetes-list-type: set` or `map` ignores the order of its items
/// (`[1, 2] == [2, 1]`), while the `cel` crate compares every list in order. Wherever a part
/// of `old` equals the same part of `new` up to the order of such lists, `new`'s part takes
/// its place, so `self == oldSelf` holds on the list and on every object above it. (Indexing
/// into `oldSelf` then sees `new`'s order for those lists, which no rule can tell apart from
/// equality.)
pub fn align_unordered(old: &Value, new: &Value, schema: &Schema) -> Value {
    if old == new {
        return old.clone();
    }
    if unordered_eq(old, new, Some(schema)) {
        return new.clone();
    }
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => Value::Object(
            o.iter()
                .map(|(k, ov)| {
                    let aligned = match (n.get(k), sub_schema(Some(schema), k)) {
                        (Some(nv), Some(s)) => align_unordered(ov, nv, s),
                        _ => ov.clone(),
                    };
                    (k.clone(), aligned)
                })
                .collect(),
        ),
        (Value::Array(o), Value::Array(n)) if o.len() == n.len() && !is_unordered(schema) => {
            match schema.items.as_deref() {
                Some(items) => Value::Array(
                    o.iter()
                        .zip(n)
                        .map(|(ov, nv)| align_unordered(ov, nv, items))
                        .collect(),
                ),
                None => old.clone(),
            }
        }
        _ => old.clone(),
    }
}

fn is_unordered(schema: &Schema) -> bool {
    matches!(schema.list_type.as_deref(), Some("set" | "map"))
}

fn sub_schema<'a>(schema: Option<&'a Schema>, key: &str) -> Option<&'a Schema> {
    let s = schema?;
    s.properties.get(key).or(match &s.additional {
        AdditionalProps::Schema(a) => Some(a.as_ref()),
        _ => None,
    })
}

/// JSON equality, except that `set` and `map` lists compare as multisets.
fn unordered_eq(a: &Value, b: &Value, schema: Option<&Schema>) -> bool {
    match (a, b) {
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                return false;
            }
            let items = schema.and_then(|s| s.items.as_deref());
            if !schema.is_some_and(is_unordered) {
                return x.iter().zip(y).all(|(p, q)| unordered_eq(p, q, items));
            }
            let scalar = |v: &Value| !v.is_array() && !v.is_object();
            if x.iter().chain(y).all(scalar) {
                // Sets of scalars (the common case, e.g. thousands of table names).
                let sorted = |l: &[Value]| {
                    let mut s: Vec<String> = l.iter().map(Value::to_string).collect();
                    s.sort_unstable();
                    s
                };
                return sorted(x) == sorted(y);
            }
            let mut used = vec![false; y.len()];
            x.iter().all(|p| {
                match (0..y.len()).find(|&j| !used[j] && unordered_eq(p, &y[j], items)) {
                    Some(j) => {
                        used[j] = true;
                        true
                    }
                    None => false,
                }
            })
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter().all(|(k, p)| {
                    y.get(k)
                        .is_some_and(|q| unordered_eq(p, q, sub_schema(schema, k)))
                })
        }
        _ => a == b,
    }
}

/// Parses a Go duration string (`1h30m`, `250ms`, `-2s`, `0`).
pub fn parse_go_duration(s: &str) -> Option<chrono::Duration> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(chrono::Duration::zero());
    }
    if rest.is_empty() {
        return None;
    }
    let mut total_ns: f64 = 0.0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return None;
        }
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        rest = &rest[unit_end..];
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total_ns += n * scale;
    }
    let ns = total_ns as i64;
    Some(chrono::Duration::nanoseconds(if neg { -ns } else { ns }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(v: Value) -> Schema {
        let mut errs = Vec::new();
        let s = Schema::parse(&v, "s", &mut errs);
        assert!(errs.is_empty(), "{errs:?}");
        s
    }

    #[test]
    fn rules_evaluate() {
        let s = node(json!({
            "type": "object",
            "properties": {
                "a": {"type": "string"}, "b": {"type": "string"},
                "items": {"type": "array", "items": {"type": "integer"}},
                "t": {"type": "string", "format": "duration"}
            },
            "x-kubernetes-validations": [
                {"rule": "self.a != self.b", "message": "a and b must differ"},
                {"rule": "size(self.items) > 0"},
                {"rule": "has(self.a)"},
                {"rule": "self.a in ['A', 'B']"},
                {"rule": "self.items.all(i, i > 0)"},
                {"rule": "self.t <= duration('1h')"},
                {"rule": "self.a == oldSelf.a", "message": "a is immutable", "fieldPath": ".a"}
            ]
        }));
        let good = json!({"a": "A", "b": "B", "items": [1], "t": "30m"});
        let mut errs = Vec::new();
        s.validate_value(&good, None, "spec", &mut errs);
        assert!(errs.is_empty(), "{errs:?}");
        let bad = json!({"a": "C", "b": "C", "items": [0], "t": "2h"});
        let mut errs = Vec::new();
        s.validate_value(&bad, Some(&good), "spec", &mut errs);
        let msgs: Vec<String> = errs.iter().map(FieldError::render).collect();
        assert_eq!(msgs.len(), 5, "{msgs:?}");
        assert_eq!(msgs[0], "spec: Invalid value: a and b must differ");
        assert!(
            msgs[1].contains("failed rule: self.a in ['A', 'B']"),
            "{msgs:?}"
        );
        assert_eq!(msgs[4], "spec.a: Invalid value: a is immutable");
    }

    /// As kube-apiserver v1.37 reports them (checked against it by `tests/real_kube.rs`).
    #[test]
    fn a_failed_rule_shows_a_scalar_value_and_leaves_objects_and_lists_out() {
        let immutable = |m: &str| json!([{"rule": "self == oldSelf", "message": m}]);
        let s = node(json!({
            "type": "object",
            "properties": {
                "s": {"type": "string", "x-kubernetes-validations": immutable("s is immutable")},
                "b": {"type": "boolean", "x-kubernetes-validations": immutable("b is immutable")},
                "l": {"type": "array", "items": {"type": "string"},
                      "x-kubernetes-validations": immutable("l is immutable")},
                "o": {"type": "object", "properties": {"x": {"type": "integer"}},
                      "x-kubernetes-validations": immutable("o is immutable")}
            }
        }));
        let old = json!({"s": "a", "b": true, "l": ["x"], "o": {"x": 1}});
        let new = json!({"s": "b", "b": false, "l": ["y"], "o": {"x": 2}});
        let mut errs = Vec::new();
        s.validate_value(&new, Some(&old), "spec", &mut errs);
        let mut msgs: Vec<String> = errs.iter().map(FieldError::render).collect();
        msgs.sort();
        assert_eq!(
            msgs,
            [
                "spec.b: Invalid value: false: b is immutable",
                "spec.l: Invalid value: l is immutable",
                "spec.o: Invalid value: o is immutable",
                r#"spec.s: Invalid value: "b": s is immutable"#,
            ]
        );
    }

    #[test]
    fn root_rules_see_only_name_and_generate_name() {
        let s = node(json!({
            "type": "object",
            "x-kubernetes-validations": [
                {"rule": "self.metadata.name.startsWith('ok')"},
                {"rule": "!has(self.metadata.labels)"}
            ]
        }));
        let obj = json!({"metadata": {"name": "ok-1", "labels": {"a": "b"}}});
        let mut errs = Vec::new();
        s.validate_value(&obj, None, "", &mut errs);
        assert!(errs.is_empty(), "{errs:?}");
    }

    #[test]
    fn bad_rule_does_not_compile() {
        let mut errs = Vec::new();
        Schema::parse(
            &json!({"type": "string", "x-kubernetes-validations": [{"rule": "self ==="}]}),
            "s",
            &mut errs,
        );
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "s.x-kubernetes-validations[0].rule");
    }

    #[test]
    fn set_and_map_lists_compare_without_order() {
        let s = node(json!({
            "type": "object",
            "properties": {
                "set": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"},
                    "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "set is immutable"}]},
                "atomic": {"type": "array", "items": {"type": "string"},
                    "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "atomic is immutable"}]},
                "map": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["k"],
                    "items": {"type": "object", "properties": {
                        "k": {"type": "string"},
                        "v": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "integer"}}
                    }}},
                "other": {"type": "string"}
            },
            "x-kubernetes-validations": [
                {"rule": "self.map == oldSelf.map", "message": "map is immutable"},
                {"rule": "self.set == oldSelf.set", "message": "set is immutable (from above)"}
            ]
        }));
        let old = json!({"set": ["a", "b", "c"], "atomic": ["a", "b"],
            "map": [{"k": "x", "v": [1, 2]}, {"k": "y", "v": [3]}], "other": "1"});
        let check = |new: Value| {
            let mut errs = Vec::new();
            s.validate_value(&new, Some(&old), "spec", &mut errs);
            errs.iter().map(FieldError::render).collect::<Vec<_>>()
        };
        // Reordered set and map lists (and a set inside a map item) are equal.
        let reordered = json!({"set": ["c", "a", "b"], "atomic": ["a", "b"],
            "map": [{"k": "y", "v": [3]}, {"k": "x", "v": [2, 1]}], "other": "2"});
        assert_eq!(check(reordered), Vec::<String>::new());
        // An atomic list keeps its order.
        let swapped = json!({"set": ["a", "b", "c"], "atomic": ["b", "a"],
            "map": [{"k": "x", "v": [1, 2]}, {"k": "y", "v": [3]}], "other": "1"});
        assert_eq!(
            check(swapped),
            ["spec.atomic: Invalid value: atomic is immutable"]
        );
        // A changed set is still a change, seen from the list and from above.
        let changed = json!({"set": ["a", "b", "d"], "atomic": ["a", "b"],
            "map": [{"k": "x", "v": [1, 2]}, {"k": "y", "v": [3]}], "other": "1"});
        assert_eq!(
            check(changed),
            [
                "spec.set: Invalid value: set is immutable",
                "spec: Invalid value: set is immutable (from above)"
            ]
        );
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1h30m").unwrap().num_minutes(), 90);
        assert_eq!(parse_go_duration("250ms").unwrap().num_milliseconds(), 250);
        assert!(parse_go_duration("5x").is_none());
        assert!(parse_go_duration("").is_none());
    }
}
