//! The patch formats: JSON patch (RFC 6902), JSON merge patch (RFC 7386), and strategic
//! merge patch approximated as a merge patch.
//!
//! JSON patch is implemented here rather than taken from a crate because the real
//! apiserver's library has one behaviour clients depend on and the RFC does not: a
//! `test` operation whose value is `null` succeeds when the path is absent. kube-runtime's
//! finalizer helper sends exactly that (`test /metadata/finalizers == null`, then `add`)
//! for an object without finalizers.

use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};

/// A failure while applying a well-formed patch: the server answers 422.
fn unprocessable(msg: String) -> ApiError {
    ApiError::new(422, "Invalid", msg)
}

fn parse_pointer(p: &str) -> ApiResult<Vec<String>> {
    if p.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = p.strip_prefix('/') else {
        return Err(ApiError::bad_request(format!(
            "JSON pointer {p:?} must start with '/'"
        )));
    };
    Ok(rest
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn lookup<'a>(doc: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = doc;
    for seg in path {
        cur = match cur {
            Value::Object(m) => m.get(seg)?,
            Value::Array(a) => a.get(parse_index(seg)?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn lookup_mut<'a>(doc: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    let mut cur = doc;
    for seg in path {
        cur = match cur {
            Value::Object(m) => m.get_mut(seg)?,
            Value::Array(a) => {
                let i = parse_index(seg)?;
                a.get_mut(i)?
            }
            _ => return None,
        };
    }
    Some(cur)
}

fn parse_index(seg: &str) -> Option<usize> {
    if seg.is_empty() || (seg.len() > 1 && seg.starts_with('0')) {
        return None;
    }
    seg.parse().ok()
}

fn add(doc: &mut Value, path: &[String], value: Value, op: &str, raw: &str) -> ApiResult<()> {
    let Some((last, parent_path)) = path.split_last() else {
        *doc = value;
        return Ok(());
    };
    let missing = || {
        unprocessable(format!(
            "{op} operation does not apply: doc is missing path: {raw:?}"
        ))
    };
    let parent = lookup_mut(doc, parent_path).ok_or_else(missing)?;
    match parent {
        Value::Object(m) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(value);
                return Ok(());
            }
            let i = parse_index(last).ok_or_else(missing)?;
            if i > a.len() {
                return Err(unprocessable(format!(
                    "{op} operation does not apply: index out of bounds: {raw:?}"
                )));
            }
            a.insert(i, value);
            Ok(())
        }
        _ => Err(missing()),
    }
}

fn remove(doc: &mut Value, path: &[String], op: &str, raw: &str) -> ApiResult<Value> {
    let missing = || {
        unprocessable(format!(
            "{op} operation does not apply: doc is missing path: {raw:?}"
        ))
    };
    let Some((last, parent_path)) = path.split_last() else {
        return Err(missing());
    };
    let parent = lookup_mut(doc, parent_path).ok_or_else(missing)?;
    match parent {
        Value::Object(m) => m.remove(last).ok_or_else(missing),
        Value::Array(a) => {
            let i = parse_index(last)
                .filter(|i| *i < a.len())
                .ok_or_else(missing)?;
            Ok(a.remove(i))
        }
        _ => Err(missing()),
    }
}

/// Applies a JSON patch document (the raw request body) to `doc`.
///
/// Malformed patches are 400s; operations that do not apply are 422s, which is how the
/// real server answers both.
pub fn json_patch(doc: &mut Value, body: &[u8]) -> ApiResult<()> {
    let ops: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
    let Value::Array(ops) = ops else {
        return Err(ApiError::bad_request(
            "invalid JSON patch: expected an array of operations",
        ));
    };
    for op in ops {
        let Value::Object(op) = op else {
            return Err(ApiError::bad_request(
                "invalid JSON patch: operation is not an object",
            ));
        };
        let name = op.get("op").and_then(Value::as_str).unwrap_or("");
        let raw_path = op.get("path").and_then(Value::as_str).ok_or_else(|| {
            ApiError::bad_request(format!("invalid JSON patch: {name} operation has no path"))
        })?;
        let path = parse_pointer(raw_path)?;
        let value = || {
            op.get("value").cloned().ok_or_else(|| {
                ApiError::bad_request(format!("invalid JSON patch: {name} operation has no value"))
            })
        };
        let from = || -> ApiResult<(Vec<String>, String)> {
            let f = op.get("from").and_then(Value::as_str).ok_or_else(|| {
                ApiError::bad_request(format!("invalid JSON patch: {name} operation has no from"))
            })?;
            Ok((parse_pointer(f)?, f.to_string()))
        };
        match name {
            "add" => add(doc, &path, value()?, "add", raw_path)?,
            "remove" => {
                remove(doc, &path, "remove", raw_path)?;
            }
            "replace" => {
                let v = value()?;
                match lookup_mut(doc, &path) {
                    Some(slot) if !path.is_empty() => *slot = v,
                    Some(_) => *doc = v,
                    None => {
                        return Err(unprocessable(format!(
                            "replace operation does not apply: doc is missing key: {raw_path}"
                        )));
                    }
                }
            }
            "move" => {
                let (f, raw_from) = from()?;
                if path.starts_with(&f) && path.len() > f.len() {
                    return Err(unprocessable(format!(
                        "move operation does not apply: cannot move {raw_from:?} into its own child"
                    )));
                }
                let v = remove(doc, &f, "move", &raw_from)?;
                add(doc, &path, v, "move", raw_path)?;
            }
            "copy" => {
                let (f, raw_from) = from()?;
                let v = lookup(doc, &f).cloned().ok_or_else(|| {
                    unprocessable(format!(
                        "copy operation does not apply: doc is missing from path: {raw_from:?}"
                    ))
                })?;
                add(doc, &path, v, "copy", raw_path)?;
            }
            "test" => {
                let want = op.get("value").cloned().unwrap_or(Value::Null);
                match lookup(doc, &path) {
                    // The rule clients rely on: testing for null passes on an absent path.
                    None if want.is_null() => {}
                    Some(have) if *have == want => {}
                    _ => {
                        return Err(unprocessable(format!(
                            "testing value {raw_path} failed: test failed"
                        )));
                    }
                }
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "invalid JSON patch: unexpected operation {other:?}"
                )));
            }
        }
    }
    Ok(())
}

/// Applies an RFC 7386 merge patch: objects merge recursively, `null` deletes, anything
/// else (arrays included) replaces.
pub fn merge_patch(doc: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *doc = patch.clone();
        return;
    };
    if !doc.is_object() {
        *doc = Value::Object(Map::new());
    }
    let Some(d) = doc.as_object_mut() else {
        return;
    };
    for (k, v) in p {
        if v.is_null() {
            d.remove(k);
        } else {
            merge_patch(d.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// Approximates a strategic merge patch as a merge patch after dropping the directive
/// keys (`$setElementOrder/...`, `$retainKeys`, `$deleteFromPrimitiveList/...`) that a
/// plain merge would otherwise store. Lists are replaced rather than merged by key: the
/// built-in types served here (ConfigMaps, Secrets, Leases, Events, Namespaces) have no
/// merge-keyed lists a client patches.
pub fn strategic_merge_patch(doc: &mut Value, patch: &Value) {
    let cleaned = strip_directives(patch);
    merge_patch(doc, &cleaned);
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            if m.get("$patch").and_then(Value::as_str) == Some("delete") {
                return Value::Null;
            }
            Value::Object(
                m.iter()
                    .filter(|(k, _)| !k.starts_with('$'))
                    .map(|(k, v)| (k.clone(), strip_directives(v)))
                    .collect(),
            )
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn apply(doc: Value, patch: Value) -> ApiResult<Value> {
        let mut d = doc;
        json_patch(&mut d, patch.to_string().as_bytes())?;
        Ok(d)
    }

    #[test]
    fn test_null_on_absent_path_passes() {
        let out = apply(
            json!({"metadata": {"name": "a"}}),
            json!([
                {"op": "test", "path": "/metadata/finalizers", "value": null},
                {"op": "add", "path": "/metadata/finalizers", "value": ["x/y"]}
            ]),
        )
        .unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["x/y"]));
    }

    #[test]
    fn test_mismatch_is_422() {
        let err = apply(
            json!({"a": [1]}),
            json!([{"op": "test", "path": "/a/0", "value": 2}]),
        )
        .unwrap_err();
        assert_eq!(err.code, 422);
        let err = apply(json!({}), json!([{"op": "test", "path": "/a", "value": 2}])).unwrap_err();
        assert_eq!(err.code, 422);
    }

    #[test]
    fn add_remove_replace_move_copy() {
        let out = apply(
            json!({"a": [1, 3], "b": {"c": 1}}),
            json!([
                {"op": "add", "path": "/a/1", "value": 2},
                {"op": "add", "path": "/a/-", "value": 4},
                {"op": "replace", "path": "/b/c", "value": 5},
                {"op": "copy", "from": "/b", "path": "/d"},
                {"op": "move", "from": "/b/c", "path": "/e"},
                {"op": "remove", "path": "/a/0"}
            ]),
        )
        .unwrap();
        assert_eq!(out, json!({"a": [2, 3, 4], "b": {}, "d": {"c": 5}, "e": 5}));
        assert_eq!(
            apply(json!({}), json!([{"op": "remove", "path": "/x"}]))
                .unwrap_err()
                .code,
            422
        );
        assert_eq!(
            apply(
                json!({}),
                json!([{"op": "replace", "path": "/x", "value": 1}])
            )
            .unwrap_err()
            .code,
            422
        );
        assert_eq!(
            apply(json!({}), json!({"op": "add"})).unwrap_err().code,
            400
        );
        let mut d = json!({});
        assert_eq!(json_patch(&mut d, b"not json").unwrap_err().code, 400);
    }

    #[test]
    fn merge() {
        let mut d = json!({"a": {"b": 1, "c": 2}, "l": [1, 2]});
        merge_patch(&mut d, &json!({"a": {"b": null, "d": 3}, "l": [3]}));
        assert_eq!(d, json!({"a": {"c": 2, "d": 3}, "l": [3]}));
        let mut d = json!({"a": 1});
        strategic_merge_patch(
            &mut d,
            &json!({"$setElementOrder/x": [], "b": {"$retainKeys": [], "c": 1}}),
        );
        assert_eq!(d, json!({"a": 1, "b": {"c": 1}}));
    }
}
