//! The value keywords of one schema node (bounds, lengths, patterns, formats, list types,
//! required and property counts, enums), reported in the order a real apiserver uses.

use serde_json::{Map, Value};

use super::{Schema, child, display_path, index};
use crate::error::{FieldError, show};

fn fmt_num(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

impl Schema {
    pub(super) fn check_keywords(&self, v: &Value, path: &str, errs: &mut Vec<FieldError>) {
        let dp = display_path(path);
        // A real apiserver runs its validators in a fixed order (string, format, number and
        // list keywords, then enum, then object keywords), which is the order of the causes.
        let mut enum_error = self
            .enum_values
            .as_ref()
            .filter(|values| !values.contains(v))
            .map(|values| {
                let supported: Vec<String> = values.iter().map(show).collect();
                FieldError::not_supported(path, &show(v), &supported)
            });
        match v {
            Value::Number(n) => {
                let f = n.as_f64().unwrap_or(0.0);
                if let Some((max, excl)) = self.maximum
                    && (f > max || (excl && f == max))
                {
                    let rel = if excl {
                        "less than"
                    } else {
                        "less than or equal to"
                    };
                    errs.push(FieldError::invalid(
                        path,
                        &show(v),
                        &format!("{dp} in body should be {rel} {}", fmt_num(max)),
                    ));
                }
                if let Some((min, excl)) = self.minimum
                    && (f < min || (excl && f == min))
                {
                    let rel = if excl {
                        "greater than"
                    } else {
                        "greater than or equal to"
                    };
                    errs.push(FieldError::invalid(
                        path,
                        &show(v),
                        &format!("{dp} in body should be {rel} {}", fmt_num(min)),
                    ));
                }
                if let Some(m) = self.multiple_of
                    && m != 0.0
                    && (f / m).fract().abs() > 1e-9
                {
                    errs.push(FieldError::invalid(
                        path,
                        &show(v),
                        &format!("{dp} in body should be a multiple of {}", fmt_num(m)),
                    ));
                }
                if let Some(fmt) = &self.format {
                    let range = match fmt.as_str() {
                        "int32" => Some((i32::MIN as f64, i32::MAX as f64)),
                        "int64" => Some((i64::MIN as f64, i64::MAX as f64)),
                        _ => None,
                    };
                    if let Some((lo, hi)) = range
                        && (f < lo || f > hi)
                    {
                        errs.push(FieldError::invalid(
                            path,
                            &show(v),
                            &format!("{dp} in body must be of type {fmt}: {}", show(v)),
                        ));
                    }
                }
            }
            Value::String(s) => {
                // Only the first of maxLength, minLength and pattern that fails is reported,
                // as by the apiserver's string validator.
                let len = s.chars().count() as u64;
                let string_error = if let Some(max) = self.max_length
                    && len > max
                {
                    Some(FieldError::too_long(path, max))
                } else if let Some(min) = self.min_length
                    && len < min
                {
                    Some(FieldError::invalid(
                        path,
                        &show(v),
                        &format!("{dp} in body should be at least {min} chars long"),
                    ))
                } else if let Some((p, re)) = &self.pattern
                    && !re.is_match(s)
                {
                    Some(FieldError::invalid(
                        path,
                        &show(v),
                        &format!("{dp} in body should match '{p}'"),
                    ))
                } else {
                    None
                };
                errs.extend(string_error);
                if let Some(fmt) = &self.format
                    && !format_ok(fmt, s)
                {
                    errs.push(FieldError::invalid(
                        path,
                        &show(v),
                        &format!("{dp} in body must be of type {fmt}: {}", show(v)),
                    ));
                }
            }
            Value::Array(a) => {
                if let Some(max) = self.max_items
                    && a.len() as u64 > max
                {
                    errs.push(FieldError::too_many(path, a.len(), max));
                }
                if let Some(min) = self.min_items
                    && (a.len() as u64) < min
                {
                    errs.push(FieldError::invalid(
                        path,
                        &a.len().to_string(),
                        &format!("{dp} in body should have at least {min} items"),
                    ));
                }
                match self.list_type.as_deref() {
                    Some("set") => {
                        for (i, x) in a.iter().enumerate() {
                            if a[..i].contains(x) {
                                errs.push(FieldError::duplicate(index(path, i), &show(x)));
                            }
                        }
                    }
                    Some("map") => {
                        let key_of = |x: &Value| -> Value {
                            Value::Object(
                                self.list_map_keys
                                    .iter()
                                    .filter_map(|k| x.get(k).map(|kv| (k.clone(), kv.clone())))
                                    .collect::<Map<String, Value>>(),
                            )
                        };
                        for (i, x) in a.iter().enumerate() {
                            let k = key_of(x);
                            if a[..i].iter().any(|y| key_of(y) == k) {
                                errs.push(FieldError::duplicate(index(path, i), &k.to_string()));
                            }
                        }
                    }
                    _ if self.unique_items => {
                        for (i, x) in a.iter().enumerate() {
                            if a[..i].contains(x) {
                                errs.push(FieldError::duplicate(index(path, i), &show(x)));
                            }
                        }
                    }
                    _ => {}
                }
            }
            Value::Object(m) => {
                errs.extend(enum_error.take());
                for r in &self.required {
                    if !m.contains_key(r) {
                        errs.push(FieldError::required(child(path, r), ""));
                    }
                }
                if let Some(max) = self.max_properties
                    && m.len() as u64 > max
                {
                    errs.push(FieldError::too_many(path, m.len(), max));
                }
                if let Some(min) = self.min_properties
                    && (m.len() as u64) < min
                {
                    errs.push(FieldError::invalid(
                        path,
                        &m.len().to_string(),
                        &format!("{dp} in body should have at least {min} properties"),
                    ));
                }
                if self.embedded {
                    for k in ["apiVersion", "kind"] {
                        if m.get(k).and_then(Value::as_str).is_none_or(str::is_empty) {
                            errs.push(FieldError::required(child(path, k), "must not be empty"));
                        }
                    }
                }
            }
            _ => {}
        }
        errs.extend(enum_error);
    }
}

/// The string formats the real server checks on custom resources (a subset).
fn format_ok(fmt: &str, s: &str) -> bool {
    match fmt {
        "date-time" => s.parse::<jiff::Timestamp>().is_ok(),
        "date" => s.parse::<jiff::civil::Date>().is_ok() && s.len() == 10,
        "uuid" => {
            s.len() == 36
                && s.char_indices().all(|(i, c)| {
                    if matches!(i, 8 | 13 | 18 | 23) {
                        c == '-'
                    } else {
                        c.is_ascii_hexdigit()
                    }
                })
        }
        "byte" => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(s).is_ok()
        }
        _ => true,
    }
}
