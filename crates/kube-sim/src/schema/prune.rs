//! Pruning of undeclared fields and applying defaults, the two steps that shape a custom
//! resource before it is validated.

use serde_json::Value;

use super::{AdditionalProps, Schema, child, index};

impl Schema {
    /// Whether this node keeps fields it does not declare.
    fn keeps_unknown(&self) -> bool {
        self.preserve_unknown || matches!(self.additional, AdditionalProps::Any)
    }

    /// Removes fields the schema does not declare (unless preserved) and `null`s of
    /// non-nullable fields, recording the dotted paths of removed unknown fields in
    /// `pruned`. At the root of a resource (`root`), `apiVersion`, `kind` and `metadata`
    /// are left alone.
    pub fn prune(&self, v: &mut Value, path: &str, pruned: &mut Vec<String>, root: bool) {
        match v {
            Value::Object(m) => {
                let keys: Vec<String> = m.keys().cloned().collect();
                for k in keys {
                    if (root || self.embedded)
                        && matches!(k.as_str(), "apiVersion" | "kind" | "metadata")
                    {
                        continue;
                    }
                    let sub = match self.properties.get(&k) {
                        Some(p) => Some(p),
                        None => match &self.additional {
                            AdditionalProps::Schema(s) => Some(s.as_ref()),
                            _ => None,
                        },
                    };
                    match sub {
                        Some(p) => {
                            let cp = child(path, &k);
                            let Some(val) = m.get_mut(&k) else { continue };
                            if val.is_null() && !p.nullable {
                                m.remove(&k);
                            } else {
                                p.prune(val, &cp, pruned, false);
                            }
                        }
                        None if self.keeps_unknown() => {}
                        None => {
                            m.remove(&k);
                            pruned.push(child(path, &k));
                        }
                    }
                }
            }
            Value::Array(a) => {
                if let Some(items) = &self.items {
                    for (i, item) in a.iter_mut().enumerate() {
                        items.prune(item, &index(path, i), pruned, false);
                    }
                }
            }
            _ => {}
        }
    }

    /// Applies `default`s top-down: an absent (or non-nullable null) property with a
    /// default gets a copy of it, and defaults inside it then apply too.
    pub fn apply_defaults(&self, v: &mut Value) {
        match v {
            Value::Object(m) => {
                for (k, p) in &self.properties {
                    if let Some(d) = &p.default {
                        let missing = match m.get(k) {
                            None => true,
                            Some(Value::Null) => !p.nullable,
                            Some(_) => false,
                        };
                        if missing {
                            m.insert(k.clone(), d.clone());
                        }
                    }
                }
                for (k, val) in m.iter_mut() {
                    if let Some(p) = self.properties.get(k) {
                        p.apply_defaults(val);
                    } else if let AdditionalProps::Schema(s) = &self.additional {
                        s.apply_defaults(val);
                    }
                }
            }
            Value::Array(a) => {
                if let Some(items) = &self.items {
                    for item in a {
                        items.apply_defaults(item);
                    }
                }
            }
            _ => {}
        }
    }
}
