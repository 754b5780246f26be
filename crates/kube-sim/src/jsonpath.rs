//! The JSONPath subset printer columns and selectable fields use: `.a.b`, `.a[0].b`,
//! `.a[*].b`, `.a['key.with.dots']` and filters `.a[?(@.type=="Ready")].status`
//! (with `==` or `!=` against a string or number literal).
//!
//! Hand-written because no crates.io crate speaks Kubernetes's dialect: the maintained ones
//! (`jsonpath-rust`, `serde_json_path`) implement RFC 9535, which wants a `$` root, has no
//! `{...}` templates, `{range}`/`{end}` or literal text, and lets `[?(@.f!="x")]` select
//! items that lack `f`, where Kubernetes skips them.

use serde_json::Value;

#[derive(Clone, Debug, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    All,
    Filter {
        path: Vec<Step>,
        negate: bool,
        literal: Value,
    },
}

/// A parsed path.
#[derive(Clone, Debug, PartialEq)]
pub struct JsonPath {
    steps: Vec<Step>,
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$'
}

fn parse_steps(s: &str) -> Result<Vec<Step>, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut steps = Vec::new();
    while i < chars.len() {
        match chars[i] {
            '.' => {
                i += 1;
                if i < chars.len() && chars[i] == '*' {
                    steps.push(Step::All);
                    i += 1;
                    continue;
                }
                let start = i;
                while i < chars.len() && is_name_char(chars[i]) {
                    i += 1;
                }
                if start == i {
                    return Err(format!("missing field name at offset {start} in {s:?}"));
                }
                steps.push(Step::Field(chars[start..i].iter().collect()));
            }
            '[' => {
                let close =
                    find_close(&chars, i).ok_or_else(|| format!("unclosed '[' in {s:?}"))?;
                let inner: String = chars[i + 1..close].iter().collect();
                let inner = inner.trim();
                if inner == "*" {
                    steps.push(Step::All);
                } else if let Some(f) = inner.strip_prefix("?(").and_then(|x| x.strip_suffix(')')) {
                    steps.push(parse_filter(f.trim())?);
                } else if (inner.starts_with('\'') && inner.ends_with('\'') && inner.len() >= 2)
                    || (inner.starts_with('"') && inner.ends_with('"') && inner.len() >= 2)
                {
                    steps.push(Step::Field(inner[1..inner.len() - 1].to_string()));
                } else {
                    let n: i64 = inner
                        .parse()
                        .map_err(|_| format!("unsupported subscript [{inner}] in {s:?}"))?;
                    steps.push(Step::Index(n));
                }
                i = close + 1;
            }
            c => return Err(format!("unexpected {c:?} at offset {i} in {s:?}")),
        }
    }
    Ok(steps)
}

fn find_close(chars: &[char], open: usize) -> Option<usize> {
    let mut depth = 0;
    let mut quote: Option<char> = None;
    for (j, &c) in chars.iter().enumerate().skip(open) {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '\'' | '"' => quote = Some(c),
                '[' => depth += 1,
                ']' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(j);
                    }
                }
                _ => {}
            },
        }
    }
    None
}

fn parse_filter(f: &str) -> Result<Step, String> {
    let (lhs, rhs, negate) = if let Some((l, r)) = f.split_once("!=") {
        (l, r, true)
    } else if let Some((l, r)) = f.split_once("==") {
        (l, r, false)
    } else {
        return Err(format!(
            "unsupported filter {f:?}: only == and != are supported"
        ));
    };
    let lhs = lhs.trim();
    let rest = lhs
        .strip_prefix('@')
        .ok_or_else(|| format!("filter must start with @: {f:?}"))?;
    let path = parse_steps(rest)?;
    let rhs = rhs.trim();
    let literal = if (rhs.starts_with('"') && rhs.ends_with('"') && rhs.len() >= 2)
        || (rhs.starts_with('\'') && rhs.ends_with('\'') && rhs.len() >= 2)
    {
        Value::String(rhs[1..rhs.len() - 1].to_string())
    } else if let Ok(n) = rhs.parse::<i64>() {
        Value::from(n)
    } else if let Ok(x) = rhs.parse::<f64>() {
        Value::from(x)
    } else if rhs == "true" || rhs == "false" {
        Value::Bool(rhs == "true")
    } else {
        return Err(format!("unsupported filter literal {rhs:?}"));
    };
    Ok(Step::Filter {
        path,
        negate,
        literal,
    })
}

fn eval<'a>(steps: &[Step], v: &'a Value, out: &mut Vec<&'a Value>) {
    let Some((first, rest)) = steps.split_first() else {
        out.push(v);
        return;
    };
    match first {
        Step::Field(f) => {
            if let Some(x) = v.get(f.as_str()) {
                eval(rest, x, out);
            }
        }
        Step::Index(n) => {
            if let Some(a) = v.as_array() {
                let idx = if *n < 0 { a.len() as i64 + n } else { *n };
                if idx >= 0
                    && let Some(x) = a.get(idx as usize)
                {
                    eval(rest, x, out);
                }
            }
        }
        Step::All => match v {
            Value::Array(a) => a.iter().for_each(|x| eval(rest, x, out)),
            Value::Object(m) => m.values().for_each(|x| eval(rest, x, out)),
            _ => {}
        },
        Step::Filter {
            path,
            negate,
            literal,
        } => {
            if let Some(a) = v.as_array() {
                for item in a {
                    let mut found = Vec::new();
                    eval(path, item, &mut found);
                    let hit = found.iter().any(|x| {
                        *x == literal
                            || (x.is_number()
                                && literal.is_number()
                                && x.as_f64() == literal.as_f64())
                    });
                    let keep = if *negate {
                        !found.is_empty() && !hit
                    } else {
                        hit
                    };
                    if keep {
                        eval(rest, item, out);
                    }
                }
            }
        }
    }
}

impl JsonPath {
    /// Parses `.a.b`, `{.a.b}` or `a.b`.
    pub fn parse(s: &str) -> Result<JsonPath, String> {
        let s = s.trim();
        let s = s
            .strip_prefix('{')
            .and_then(|x| x.strip_suffix('}'))
            .unwrap_or(s);
        let s = s.strip_prefix('$').unwrap_or(s);
        let owned;
        let s = if s.starts_with('.') || s.starts_with('[') {
            s
        } else {
            owned = format!(".{s}");
            &owned
        };
        Ok(JsonPath {
            steps: parse_steps(s)?,
        })
    }

    /// Every value the path selects.
    pub fn find<'a>(&self, v: &'a Value) -> Vec<&'a Value> {
        let mut out = Vec::new();
        eval(&self.steps, v, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subset() {
        let v = json!({
            "spec": {"a": {"b": 1}, "l": [{"n": "x"}, {"n": "y"}], "m": {"k.d": 2}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Other", "status": "False"}]}
        });
        let f = |p: &str| {
            JsonPath::parse(p)
                .unwrap()
                .find(&v)
                .into_iter()
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(f(".spec.a.b"), vec![json!(1)]);
        assert_eq!(f("{.spec.l[1].n}"), vec![json!("y")]);
        assert_eq!(f(".spec.l[*].n"), vec![json!("x"), json!("y")]);
        assert_eq!(f(".spec.m['k.d']"), vec![json!(2)]);
        assert_eq!(
            f(".status.conditions[?(@.type==\"Ready\")].status"),
            vec![json!("True")]
        );
        assert_eq!(
            f(".status.conditions[?(@.type!=\"Ready\")].type"),
            vec![json!("Other")]
        );
        assert!(f(".spec.missing").is_empty());
        assert!(JsonPath::parse(".a[?(@.x>1)]").is_err());
    }
}
