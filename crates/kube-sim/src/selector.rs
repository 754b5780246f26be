//! Label and field selectors for list, watch and deletecollection.
//!
//! Label selectors follow the documented set-based grammar (`a=b`, `a!=b`, `a in (x,y)`,
//! `a notin (x)`, `a`, `!a`, `a>1`). Field selectors support `=`, `==` and `!=` over the
//! fields each resource declares; asking for any other field is a 400, as on a real
//! server, so a controller using an unsupported field selector fails here too.

use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};
use crate::meta::{is_label_value, is_qualified_name};

#[derive(Clone, Debug, PartialEq)]
enum LabelReq {
    Exists(String),
    NotExists(String),
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Gt(String, i64),
    Lt(String, i64),
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LabelSelector {
    reqs: Vec<LabelReq>,
}

fn split_top_level(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => {
                depth += 1;
                cur.push(c);
            }
            ')' => {
                depth -= 1;
                cur.push(c);
            }
            ',' if depth == 0 => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn bad(sel: &str, why: &str) -> ApiError {
    ApiError::bad_request(format!(
        "unable to parse requirement: {why} (in label selector {sel:?})"
    ))
}

fn check_key(sel: &str, key: &str) -> ApiResult<String> {
    let key = key.trim();
    if is_qualified_name(key) {
        Ok(key.to_string())
    } else {
        Err(bad(sel, &format!("invalid label key {key:?}")))
    }
}

fn check_value(sel: &str, v: &str) -> ApiResult<String> {
    let v = v.trim();
    if is_label_value(v) {
        Ok(v.to_string())
    } else {
        Err(bad(sel, &format!("invalid label value {v:?}")))
    }
}

impl LabelSelector {
    /// Parses a selector string (already percent-decoded).
    pub fn parse(sel: &str) -> ApiResult<Self> {
        let mut reqs = Vec::new();
        if sel.trim().is_empty() {
            return Ok(Self { reqs });
        }
        for term in split_top_level(sel) {
            let t = term.trim();
            if t.is_empty() {
                return Err(bad(sel, "empty requirement"));
            }
            if let Some(k) = t.strip_prefix('!') {
                reqs.push(LabelReq::NotExists(check_key(sel, k)?));
                continue;
            }
            if let Some(open) = t.find('(') {
                let head = t[..open].trim();
                let close = t
                    .rfind(')')
                    .filter(|c| *c > open && t[c + 1..].trim().is_empty())
                    .ok_or_else(|| bad(sel, "unbalanced parentheses"))?;
                let values: Vec<String> = t[open + 1..close]
                    .split(',')
                    .map(|v| check_value(sel, v))
                    .collect::<ApiResult<_>>()?;
                let mut parts = head.split_whitespace();
                let key = parts.next().ok_or_else(|| bad(sel, "missing key"))?;
                let op = parts.next().ok_or_else(|| bad(sel, "missing operator"))?;
                if parts.next().is_some() {
                    return Err(bad(sel, "unexpected token"));
                }
                let key = check_key(sel, key)?;
                match op {
                    "in" => reqs.push(LabelReq::In(key, values)),
                    "notin" => reqs.push(LabelReq::NotIn(key, values)),
                    other => return Err(bad(sel, &format!("unknown operator {other:?}"))),
                }
                continue;
            }
            if let Some((k, v)) = t.split_once("!=") {
                reqs.push(LabelReq::NotEq(check_key(sel, k)?, check_value(sel, v)?));
            } else if let Some((k, v)) = t.split_once("==") {
                reqs.push(LabelReq::Eq(check_key(sel, k)?, check_value(sel, v)?));
            } else if let Some((k, v)) = t.split_once('=') {
                reqs.push(LabelReq::Eq(check_key(sel, k)?, check_value(sel, v)?));
            } else if let Some((k, v)) = t.split_once('>') {
                let n = v
                    .trim()
                    .parse()
                    .map_err(|_| bad(sel, "'>' needs an integer"))?;
                reqs.push(LabelReq::Gt(check_key(sel, k)?, n));
            } else if let Some((k, v)) = t.split_once('<') {
                let n = v
                    .trim()
                    .parse()
                    .map_err(|_| bad(sel, "'<' needs an integer"))?;
                reqs.push(LabelReq::Lt(check_key(sel, k)?, n));
            } else {
                reqs.push(LabelReq::Exists(check_key(sel, t)?));
            }
        }
        Ok(Self { reqs })
    }

    /// Whether labels satisfy every requirement.
    pub fn matches(&self, labels: &Map<String, Value>) -> bool {
        let get = |k: &str| labels.get(k).and_then(Value::as_str);
        self.reqs.iter().all(|r| match r {
            LabelReq::Exists(k) => get(k).is_some(),
            LabelReq::NotExists(k) => get(k).is_none(),
            LabelReq::Eq(k, v) => get(k) == Some(v.as_str()),
            LabelReq::NotEq(k, v) => get(k) != Some(v.as_str()),
            LabelReq::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            LabelReq::NotIn(k, vs) => !get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            LabelReq::Gt(k, n) => get(k)
                .and_then(|x| x.parse::<i64>().ok())
                .is_some_and(|x| x > *n),
            LabelReq::Lt(k, n) => get(k)
                .and_then(|x| x.parse::<i64>().ok())
                .is_some_and(|x| x < *n),
        })
    }

    /// Whether the selector is empty.
    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }
}

/// One `field=value` or `field!=value` term.
#[derive(Clone, Debug, PartialEq)]
struct FieldReq {
    field: String,
    value: String,
    negate: bool,
}

/// A parsed field selector.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FieldSelector {
    reqs: Vec<FieldReq>,
}

/// Splits on unescaped `sep`, undoing `\` escapes in the parts.
fn split_escaped(s: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                cur.push('\\');
                cur.push(n);
            }
        } else if c == sep {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl FieldSelector {
    /// Parses a selector string (already percent-decoded).
    pub fn parse(sel: &str) -> ApiResult<Self> {
        let mut reqs = Vec::new();
        if sel.trim().is_empty() {
            return Ok(Self { reqs });
        }
        for term in split_escaped(sel, ',') {
            let (field, value, negate) = if let Some((f, v)) = term.split_once("!=") {
                (f, v, true)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, v, false)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, v, false)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: {sel:?}; can't understand {term:?}"
                )));
            };
            reqs.push(FieldReq {
                field: field.trim().to_string(),
                value: unescape(value.trim()),
                negate,
            });
        }
        Ok(Self { reqs })
    }

    /// Rejects fields the resource does not support (checked once per request, before
    /// any object is looked at).
    pub fn check_supported(&self, supported: &dyn Fn(&str) -> bool) -> ApiResult<()> {
        for r in &self.reqs {
            if !supported(&r.field) {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {}",
                    r.field
                )));
            }
        }
        Ok(())
    }

    /// Whether the object satisfies every term; `get` reads a field's value as text
    /// (absent fields read as the empty string).
    pub fn matches(&self, get: &dyn Fn(&str) -> String) -> bool {
        self.reqs
            .iter()
            .all(|r| (get(&r.field) == r.value) != r.negate)
    }

    /// Whether the selector is empty.
    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn label_selectors() {
        let l = labels(json!({"app": "web", "tier": "fe", "n": "5"}));
        for (sel, want) in [
            ("app=web", true),
            ("app==web,tier=fe", true),
            ("app!=web", false),
            ("missing!=x", true),
            ("app in (web, api)", true),
            ("app notin (web)", false),
            ("app", true),
            ("!app", false),
            ("!missing", true),
            ("n>4", true),
            ("n<4", false),
            ("", true),
        ] {
            assert_eq!(
                LabelSelector::parse(sel).unwrap().matches(&l),
                want,
                "{sel}"
            );
        }
        assert!(LabelSelector::parse("app in (web").is_err());
        assert!(LabelSelector::parse("bad key=x").is_err());
    }

    #[test]
    fn field_selectors() {
        let s =
            FieldSelector::parse("metadata.name=a\\,b,metadata.namespace!=kube-system").unwrap();
        let get = |f: &str| match f {
            "metadata.name" => "a,b".to_string(),
            "metadata.namespace" => "default".to_string(),
            _ => String::new(),
        };
        assert!(s.matches(&get));
        assert!(s.check_supported(&|f| f.starts_with("metadata.")).is_ok());
        assert!(s.check_supported(&|f| f == "metadata.name").is_err());
    }
}
