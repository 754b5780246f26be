//! Just enough of the Kubernetes protobuf encoding to accept what kubectl sends.
//!
//! kubectl's typed commands (`kubectl create namespace`, `create configmap`,
//! `create secret`) send `application/vnd.kubernetes.protobuf` bodies for built-in
//! types, and a real server always accepts them. This decodes those bodies — the `k8s\0`
//! magic, the `runtime.Unknown` envelope, and the Namespace, ConfigMap and Secret
//! messages with their ObjectMeta — into the JSON the rest of the server works on.
//! Responses stay JSON (kubectl's Accept header allows it). Field numbers follow the
//! published `generated.proto` files of the Kubernetes API.

use base64::Engine;
use serde_json::{Map, Value, json};

/// Wire-format field value.
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

fn varint(b: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint too long".into())
}

/// Splits a message into (field number, value) pairs.
fn fields(b: &[u8]) -> Result<Vec<(u64, Field<'_>)>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < b.len() {
        let key = varint(b, &mut pos)?;
        let (num, wire) = (key >> 3, key & 7);
        let f = match wire {
            0 => Field::Varint(varint(b, &mut pos)?),
            1 => {
                pos = pos
                    .checked_add(8)
                    .filter(|p| *p <= b.len())
                    .ok_or("truncated fixed64")?;
                Field::Fixed
            }
            2 => {
                let len = usize::try_from(varint(b, &mut pos)?).map_err(|_| "length overflow")?;
                let end = pos
                    .checked_add(len)
                    .filter(|e| *e <= b.len())
                    .ok_or("truncated field")?;
                let v = &b[pos..end];
                pos = end;
                Field::Bytes(v)
            }
            5 => {
                pos = pos
                    .checked_add(4)
                    .filter(|p| *p <= b.len())
                    .ok_or("truncated fixed32")?;
                Field::Fixed
            }
            other => return Err(format!("unsupported wire type {other}")),
        };
        out.push((num, f));
    }
    Ok(out)
}

fn string(b: &[u8]) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|e| e.to_string())
}

/// A `map<string, string>` or `map<string, bytes>` entry.
fn map_entry(b: &[u8], bytes_value: bool) -> Result<(String, Value), String> {
    let mut k = String::new();
    let mut v = Value::String(String::new());
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::Bytes(x)) => k = string(x)?,
            (2, Field::Bytes(x)) => {
                v = if bytes_value {
                    Value::String(base64::engine::general_purpose::STANDARD.encode(x))
                } else {
                    Value::String(string(x)?)
                }
            }
            _ => {}
        }
    }
    Ok((k, v))
}

/// A `metav1.Time` (seconds, nanos) as RFC 3339, or None for the zero time.
fn time(b: &[u8]) -> Result<Option<String>, String> {
    let mut secs: i64 = 0;
    for (n, f) in fields(b)? {
        if let (1, Field::Varint(v)) = (n, f) {
            secs = v as i64;
        }
    }
    if secs == 0 {
        return Ok(None);
    }
    let ts = jiff::Timestamp::from_second(secs).map_err(|e| e.to_string())?;
    Ok(Some(ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()))
}

fn object_meta(b: &[u8]) -> Result<Value, String> {
    let mut m = Map::new();
    let mut labels = Map::new();
    let mut annotations = Map::new();
    let mut finalizers = Vec::new();
    let mut owners = Vec::new();
    for (n, f) in fields(b)? {
        match (n, f) {
            (1..=6, Field::Bytes(x)) => {
                let key = [
                    "name",
                    "generateName",
                    "namespace",
                    "selfLink",
                    "uid",
                    "resourceVersion",
                ][n as usize - 1];
                let s = string(x)?;
                if !s.is_empty() {
                    m.insert(key.into(), Value::String(s));
                }
            }
            (7, Field::Varint(v)) if v != 0 => {
                m.insert("generation".into(), json!(v as i64));
            }
            (8, Field::Bytes(x)) => {
                if let Some(t) = time(x)? {
                    m.insert("creationTimestamp".into(), Value::String(t));
                }
            }
            (11, Field::Bytes(x)) => {
                let (k, v) = map_entry(x, false)?;
                labels.insert(k, v);
            }
            (12, Field::Bytes(x)) => {
                let (k, v) = map_entry(x, false)?;
                annotations.insert(k, v);
            }
            (13, Field::Bytes(x)) => owners.push(owner_reference(x)?),
            (14, Field::Bytes(x)) => finalizers.push(Value::String(string(x)?)),
            _ => {}
        }
    }
    if !labels.is_empty() {
        m.insert("labels".into(), Value::Object(labels));
    }
    if !annotations.is_empty() {
        m.insert("annotations".into(), Value::Object(annotations));
    }
    if !finalizers.is_empty() {
        m.insert("finalizers".into(), Value::Array(finalizers));
    }
    if !owners.is_empty() {
        m.insert("ownerReferences".into(), Value::Array(owners));
    }
    Ok(Value::Object(m))
}

fn owner_reference(b: &[u8]) -> Result<Value, String> {
    let mut o = Map::new();
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::Bytes(x)) => {
                o.insert("kind".into(), Value::String(string(x)?));
            }
            (3, Field::Bytes(x)) => {
                o.insert("name".into(), Value::String(string(x)?));
            }
            (4, Field::Bytes(x)) => {
                o.insert("uid".into(), Value::String(string(x)?));
            }
            (5, Field::Bytes(x)) => {
                o.insert("apiVersion".into(), Value::String(string(x)?));
            }
            (6, Field::Varint(v)) => {
                o.insert("controller".into(), Value::Bool(v != 0));
            }
            (7, Field::Varint(v)) => {
                o.insert("blockOwnerDeletion".into(), Value::Bool(v != 0));
            }
            _ => {}
        }
    }
    Ok(Value::Object(o))
}

fn config_map(b: &[u8], secret: bool) -> Result<Value, String> {
    let mut out = Map::new();
    let mut data = Map::new();
    let mut other = Map::new();
    for (n, f) in fields(b)? {
        match (n, f, secret) {
            (1, Field::Bytes(x), _) => {
                out.insert("metadata".into(), object_meta(x)?);
            }
            (2, Field::Bytes(x), _) => {
                let (k, v) = map_entry(x, secret)?;
                data.insert(k, v);
            }
            // ConfigMap binaryData / Secret type.
            (3, Field::Bytes(x), false) => {
                let (k, v) = map_entry(x, true)?;
                other.insert(k, v);
            }
            (3, Field::Bytes(x), true) => {
                let t = string(x)?;
                if !t.is_empty() {
                    out.insert("type".into(), Value::String(t));
                }
            }
            // Secret stringData.
            (4, Field::Bytes(x), true) => {
                let (k, v) = map_entry(x, false)?;
                other.insert(k, v);
            }
            (4, Field::Varint(v), false) | (5, Field::Varint(v), true) => {
                out.insert("immutable".into(), Value::Bool(v != 0));
            }
            _ => {}
        }
    }
    if !data.is_empty() {
        out.insert("data".into(), Value::Object(data));
    }
    if !other.is_empty() {
        let key = if secret { "stringData" } else { "binaryData" };
        out.insert(key.into(), Value::Object(other));
    }
    Ok(Value::Object(out))
}

fn namespace(b: &[u8]) -> Result<Value, String> {
    let mut out = Map::new();
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::Bytes(x)) => {
                out.insert("metadata".into(), object_meta(x)?);
            }
            (2, Field::Bytes(x)) => {
                let mut fin = Vec::new();
                for (sn, sf) in fields(x)? {
                    if let (1, Field::Bytes(s)) = (sn, sf) {
                        fin.push(Value::String(string(s)?));
                    }
                }
                if !fin.is_empty() {
                    out.insert("spec".into(), json!({"finalizers": fin}));
                }
            }
            _ => {}
        }
    }
    Ok(Value::Object(out))
}

/// Decodes a protobuf request body into a JSON object with `apiVersion` and `kind`.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let rest = body
        .strip_prefix(b"k8s\0")
        .ok_or("missing the protobuf envelope prefix")?;
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    for (n, f) in fields(rest)? {
        match (n, f) {
            (1, Field::Bytes(tm)) => {
                for (tn, tf) in fields(tm)? {
                    match (tn, tf) {
                        (1, Field::Bytes(x)) => api_version = string(x)?,
                        (2, Field::Bytes(x)) => kind = string(x)?,
                        _ => {}
                    }
                }
            }
            (2, Field::Bytes(x)) => raw = x,
            _ => {}
        }
    }
    let mut obj = match (api_version.as_str(), kind.as_str()) {
        ("v1", "ConfigMap") => config_map(raw, false)?,
        ("v1", "Secret") => config_map(raw, true)?,
        ("v1", "Namespace") => namespace(raw)?,
        _ => {
            return Err(format!(
                "protobuf bodies are not supported for {api_version} {kind}"
            ));
        }
    };
    obj["apiVersion"] = Value::String(api_version);
    obj["kind"] = Value::String(kind);
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_what_kubectl_sends_for_a_config_map() {
        // `kubectl create configmap x --from-literal=a=b`, as captured.
        let body: &[u8] = &[
            0x6b, 0x38, 0x73, 0x00, 0x0a, 0x0f, 0x0a, 0x02, 0x76, 0x31, 0x12, 0x09, 0x43, 0x6f,
            0x6e, 0x66, 0x69, 0x67, 0x4d, 0x61, 0x70, 0x12, 0x1b, 0x0a, 0x11, 0x0a, 0x01, 0x78,
            0x12, 0x00, 0x1a, 0x00, 0x22, 0x00, 0x2a, 0x00, 0x32, 0x00, 0x38, 0x00, 0x42, 0x00,
            0x12, 0x06, 0x0a, 0x01, 0x61, 0x12, 0x01, 0x62, 0x1a, 0x00, 0x22, 0x00,
        ];
        let v = decode(body).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "b"}})
        );
    }

    #[test]
    fn rejects_garbage() {
        assert!(decode(b"nope").is_err());
        assert!(decode(b"k8s\0\x0a\xff").is_err());
        assert!(decode(b"k8s\0").is_err());
    }
}
