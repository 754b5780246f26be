//! The resource types kube-sim serves: a fixed set of built-in types plus one type per
//! established CustomResourceDefinition.
//!
//! The registry is rebuilt from the stored CRDs whenever one is written, so a CRD is
//! served as soon as its create returns (what `kubectl apply -f crds/` followed by
//! `kubectl apply -f sample.yaml` needs). Schemas and CEL rules are compiled once here.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::error::FieldError;
use crate::meta::{NameRule, is_dns_label, is_dns_subdomain};
use crate::schema::{Schema, child, index};

/// Where a type's objects are kept. Two types share storage when they are two views of
/// the same objects (core `v1` Events and `events.k8s.io/v1` Events).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StorageId {
    /// API group of the storing type.
    pub group: String,
    /// Resource plural of the storing type.
    pub plural: String,
}

/// The built-in types, which are decoded through their k8s-openapi structs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Builtin {
    /// core/v1 Namespace.
    Namespace,
    /// core/v1 ConfigMap.
    ConfigMap,
    /// core/v1 Secret.
    Secret,
    /// core/v1 Event.
    CoreEvent,
    /// events.k8s.io/v1 Event (stored as core Events).
    EventsV1Event,
    /// coordination.k8s.io/v1 Lease.
    Lease,
    /// apiextensions.k8s.io/v1 CustomResourceDefinition.
    Crd,
}

/// Built-in or custom.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// One of the built-in types.
    Builtin(Builtin),
    /// Served from a CRD.
    Custom,
}

/// One `additionalPrinterColumns` entry.
#[derive(Clone, Debug)]
pub struct Column {
    /// Column header.
    pub name: String,
    /// `integer`, `number`, `string`, `boolean` or `date`.
    pub ctype: String,
    /// Optional format.
    pub format: String,
    /// Description.
    pub description: String,
    /// 0 shows by default; higher shows with `-o wide`.
    pub priority: i64,
    /// JSONPath of the value.
    pub json_path: String,
}

/// One served version of a type.
#[derive(Clone, Debug)]
pub struct TypeVersion {
    /// Version name (`v1alpha1`).
    pub name: String,
    /// Whether the status subresource is enabled.
    pub status: bool,
    /// The structural schema, for custom types.
    pub schema: Option<Arc<Schema>>,
    /// The schema as written, for the OpenAPI document.
    pub raw_schema: Option<Value>,
    /// Printer columns (custom types, or the built-in defaults).
    pub columns: Vec<Column>,
    /// Extra field-selector paths (`selectableFields`).
    pub selectable: Vec<String>,
}

/// A served resource type.
#[derive(Clone, Debug)]
pub struct ResourceType {
    /// API group ("" for core).
    pub group: String,
    /// Plural resource name.
    pub plural: String,
    /// Singular name.
    pub singular: String,
    /// Kind.
    pub kind: String,
    /// Kind of lists.
    pub list_kind: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Short names (`mtw`).
    pub short_names: Vec<String>,
    /// Categories (`all`).
    pub categories: Vec<String>,
    /// Served versions, storage version first.
    pub versions: Vec<TypeVersion>,
    /// Built-in or custom.
    pub flavor: Flavor,
    /// Where objects live.
    pub storage: StorageId,
    /// How names are checked.
    pub name_rule: NameRule,
    /// Whether PUT without a resourceVersion is allowed.
    pub unconditional_update: bool,
    /// Whether objects carry `metadata.generation`.
    pub has_generation: bool,
}

impl ResourceType {
    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{}", self.group, version)
        }
    }

    /// The served version called `name`.
    pub fn version(&self, name: &str) -> Option<&TypeVersion> {
        self.versions.iter().find(|v| v.name == name)
    }

    /// Whether the status subresource exists in any version.
    pub fn any_status(&self) -> bool {
        self.versions.iter().any(|v| v.status)
    }

    /// Whether this is a custom type.
    pub fn is_custom(&self) -> bool {
        self.flavor == Flavor::Custom
    }
}

fn col(name: &str, ctype: &str, json_path: &str) -> Column {
    Column {
        name: name.into(),
        ctype: ctype.into(),
        format: String::new(),
        description: String::new(),
        priority: 0,
        json_path: json_path.into(),
    }
}

// One argument per property of the table of built-ins below; a builder would only
// rename them.
#[allow(clippy::too_many_arguments)]
fn builtin(
    group: &str,
    version: &str,
    plural: &str,
    kind: &str,
    namespaced: bool,
    b: Builtin,
    status: bool,
    columns: Vec<Column>,
) -> ResourceType {
    ResourceType {
        group: group.into(),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        kind: kind.into(),
        list_kind: format!("{kind}List"),
        namespaced,
        short_names: Vec::new(),
        categories: Vec::new(),
        versions: vec![TypeVersion {
            name: version.into(),
            status,
            schema: None,
            raw_schema: None,
            columns,
            selectable: Vec::new(),
        }],
        flavor: Flavor::Builtin(b),
        storage: StorageId {
            group: group.into(),
            plural: plural.into(),
        },
        name_rule: NameRule::Subdomain,
        unconditional_update: true,
        has_generation: false,
    }
}

/// The built-in types.
pub fn builtins() -> Vec<ResourceType> {
    let age = || col("Age", "date", ".metadata.creationTimestamp");
    let mut ns = builtin(
        "",
        "v1",
        "namespaces",
        "Namespace",
        false,
        Builtin::Namespace,
        true,
        vec![col("Status", "string", ".status.phase"), age()],
    );
    ns.short_names = vec!["ns".into()];
    ns.name_rule = NameRule::Label;
    let mut cm = builtin(
        "",
        "v1",
        "configmaps",
        "ConfigMap",
        true,
        Builtin::ConfigMap,
        false,
        vec![col("Data", "integer", "#count(.data,.binaryData)"), age()],
    );
    cm.short_names = vec!["cm".into()];
    let secret = builtin(
        "",
        "v1",
        "secrets",
        "Secret",
        true,
        Builtin::Secret,
        false,
        vec![
            col("Type", "string", ".type"),
            col("Data", "integer", "#count(.data)"),
            age(),
        ],
    );
    let mut ev = builtin(
        "",
        "v1",
        "events",
        "Event",
        true,
        Builtin::CoreEvent,
        false,
        vec![
            col("Last Seen", "date", "#lastSeen"),
            col("Type", "string", ".type"),
            col("Reason", "string", ".reason"),
            col("Object", "string", "#involved"),
            col("Message", "string", ".message"),
        ],
    );
    ev.short_names = vec!["ev".into()];
    let mut ev1 = builtin(
        "events.k8s.io",
        "v1",
        "events",
        "Event",
        true,
        Builtin::EventsV1Event,
        false,
        vec![
            col("Last Seen", "date", "#lastSeen"),
            col("Type", "string", ".type"),
            col("Reason", "string", ".reason"),
            col("Object", "string", "#involved"),
            col("Message", "string", ".note"),
        ],
    );
    ev1.short_names = vec!["ev".into()];
    ev1.storage = ev.storage.clone();
    let lease = builtin(
        "coordination.k8s.io",
        "v1",
        "leases",
        "Lease",
        true,
        Builtin::Lease,
        false,
        vec![col("Holder", "string", ".spec.holderIdentity"), age()],
    );
    let mut crd = builtin(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
        Builtin::Crd,
        true,
        vec![col("Created At", "date", "#createdAt")],
    );
    crd.short_names = vec!["crd".into(), "crds".into()];
    crd.categories = vec!["api-extensions".into()];
    crd.unconditional_update = false;
    crd.has_generation = true;
    vec![ns, cm, secret, ev, ev1, lease, crd]
}

/// The set of served types.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    types: Vec<Arc<ResourceType>>,
    by_gvr: HashMap<(String, String, String), Arc<ResourceType>>,
}

impl Registry {
    /// Builds the registry from the built-ins plus the given stored CRD objects.
    pub fn build<'a>(crds: impl Iterator<Item = &'a Value>) -> Registry {
        let mut types: Vec<Arc<ResourceType>> = builtins().into_iter().map(Arc::new).collect();
        for crd in crds {
            let mut errs = Vec::new();
            if let Some(t) = type_from_crd(crd, &mut errs) {
                types.push(Arc::new(t));
            }
        }
        let mut by_gvr = HashMap::new();
        for t in &types {
            for v in &t.versions {
                by_gvr.insert(
                    (t.group.clone(), v.name.clone(), t.plural.clone()),
                    t.clone(),
                );
            }
        }
        Registry { types, by_gvr }
    }

    /// The type serving `group/version/plural`.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.by_gvr
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
            .cloned()
    }

    /// Every served type.
    pub fn types(&self) -> &[Arc<ResourceType>] {
        &self.types
    }

    /// The type that owns `storage` (its primary view).
    pub fn owner_of(&self, storage: &StorageId) -> Option<Arc<ResourceType>> {
        self.types
            .iter()
            .find(|t| t.group == storage.group && t.plural == storage.plural)
            .cloned()
    }
}

/// A CRD schema may only restrict `metadata.name` and `metadata.generateName`; the rest
/// of metadata is the server's.
fn check_metadata_schema(root: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let Some(m) = root
        .pointer("/properties/metadata")
        .and_then(Value::as_object)
    else {
        return;
    };
    let mpath = index(&child(path, "properties"), "metadata");
    let extra_keys = m
        .keys()
        .any(|k| !matches!(k.as_str(), "type" | "properties"));
    let extra_props = m
        .get("properties")
        .and_then(Value::as_object)
        .is_some_and(|p| {
            p.keys()
                .any(|k| !matches!(k.as_str(), "name" | "generateName"))
        });
    if extra_keys || extra_props {
        errs.push(FieldError::forbidden(
            mpath,
            "must not specify anything other than name and generateName, but metadata is implicitly specified",
        ));
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Checks a CRD (already decoded into its k8s-openapi struct for type errors) and
/// builds the type it serves. Errors are appended to `errs`; `None` when the CRD cannot
/// be served.
pub fn type_from_crd(crd: &Value, errs: &mut Vec<FieldError>) -> Option<ResourceType> {
    let spec = crd.get("spec").cloned().unwrap_or(Value::Null);
    let name = crd
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let group = spec.get("group").and_then(Value::as_str).unwrap_or("");
    let names = spec.get("names").cloned().unwrap_or(Value::Null);
    let plural = names.get("plural").and_then(Value::as_str).unwrap_or("");
    let kind = names.get("kind").and_then(Value::as_str).unwrap_or("");
    let start = errs.len();
    if group.is_empty() {
        errs.push(FieldError::required("spec.group", ""));
    } else if !is_dns_subdomain(group) || !group.contains('.') {
        errs.push(FieldError::invalid(
            "spec.group",
            &format!("{group:?}"),
            "should be a domain with at least one dot",
        ));
    }
    if plural.is_empty() {
        errs.push(FieldError::required("spec.names.plural", ""));
    } else if !is_dns_label(plural) {
        errs.push(FieldError::invalid(
            "spec.names.plural",
            &format!("{plural:?}"),
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'",
        ));
    }
    if kind.is_empty() {
        errs.push(FieldError::required("spec.names.kind", ""));
    }
    if !plural.is_empty() && !group.is_empty() && name != format!("{plural}.{group}") {
        errs.push(FieldError::invalid(
            "metadata.name",
            &format!("{name:?}"),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    let scope = spec.get("scope").and_then(Value::as_str).unwrap_or("");
    if !matches!(scope, "Namespaced" | "Cluster") {
        errs.push(FieldError::not_supported(
            "spec.scope",
            &format!("{scope:?}"),
            &["\"Cluster\"".into(), "\"Namespaced\"".into()],
        ));
    }
    let raw_versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if raw_versions.is_empty() {
        errs.push(FieldError::invalid(
            "spec.versions",
            "null",
            "must have exactly one version marked as storage version",
        ));
    }
    let storage_count = raw_versions
        .iter()
        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .count();
    if !raw_versions.is_empty() && storage_count != 1 {
        errs.push(FieldError::invalid(
            "spec.versions",
            "[]",
            "must have exactly one version marked as storage version",
        ));
    }
    let mut versions = Vec::new();
    for (i, v) in raw_versions.iter().enumerate() {
        let vpath = index("spec.versions", i);
        let vname = v.get("name").and_then(Value::as_str).unwrap_or("");
        if !is_dns_label(vname) {
            errs.push(FieldError::invalid(
                child(&vpath, "name"),
                &format!("{vname:?}"),
                "must be a DNS-1035 label",
            ));
        }
        let raw_schema = v.pointer("/schema/openAPIV3Schema").cloned();
        let spath = child(&child(&vpath, "schema"), "openAPIV3Schema");
        let schema = match &raw_schema {
            Some(rs) => {
                let s = Schema::parse(rs, &spath, errs);
                check_metadata_schema(rs, &spath, errs);
                if s.stype != Some(crate::schema::SType::Object) {
                    errs.push(FieldError::invalid(
                        child(&spath, "type"),
                        "\"\"",
                        "must be object at the root",
                    ));
                }
                Some(Arc::new(s))
            }
            None => {
                errs.push(FieldError::required(spath, "schemas are required"));
                None
            }
        };
        let mut columns = Vec::new();
        for (ci, c) in v
            .get("additionalPrinterColumns")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let cpath = index(&child(&vpath, "additionalPrinterColumns"), ci);
            let ctype = c.get("type").and_then(Value::as_str).unwrap_or("");
            if !matches!(ctype, "integer" | "number" | "string" | "boolean" | "date") {
                errs.push(FieldError::not_supported(
                    child(&cpath, "type"),
                    &format!("{ctype:?}"),
                    &[
                        "\"boolean\"",
                        "\"date\"",
                        "\"integer\"",
                        "\"number\"",
                        "\"string\"",
                    ]
                    .map(String::from),
                ));
            }
            let jp = c.get("jsonPath").and_then(Value::as_str).unwrap_or("");
            if jp.is_empty() {
                errs.push(FieldError::required(child(&cpath, "jsonPath"), ""));
            } else if let Err(e) = crate::jsonpath::JsonPath::parse(jp) {
                errs.push(FieldError::invalid(
                    child(&cpath, "jsonPath"),
                    &format!("{jp:?}"),
                    &e,
                ));
            }
            columns.push(Column {
                name: c.get("name").and_then(Value::as_str).unwrap_or("").into(),
                ctype: ctype.into(),
                format: c.get("format").and_then(Value::as_str).unwrap_or("").into(),
                description: c
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .into(),
                priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                json_path: jp.into(),
            });
        }
        if columns.is_empty() {
            columns.push(col("Age", "date", ".metadata.creationTimestamp"));
        }
        let selectable = v
            .get("selectableFields")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|f| f.get("jsonPath").and_then(Value::as_str))
                    .map(|p| p.trim_start_matches('.').to_string())
                    .collect()
            })
            .unwrap_or_default();
        let served = v.get("served").and_then(Value::as_bool).unwrap_or(false);
        let storage = v.get("storage").and_then(Value::as_bool).unwrap_or(false);
        let tv = TypeVersion {
            name: vname.into(),
            status: v.pointer("/subresources/status").is_some(),
            schema,
            raw_schema,
            columns,
            selectable,
        };
        if served {
            if storage {
                versions.insert(0, tv);
            } else {
                versions.push(tv);
            }
        }
    }
    if errs.len() > start {
        return None;
    }
    let singular = names
        .get("singular")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| kind.to_lowercase());
    Some(ResourceType {
        group: group.into(),
        plural: plural.into(),
        singular,
        kind: kind.into(),
        list_kind: names
            .get("listKind")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("{kind}List")),
        namespaced: scope == "Namespaced",
        short_names: strings(names.get("shortNames")),
        categories: strings(names.get("categories")),
        versions,
        flavor: Flavor::Custom,
        storage: StorageId {
            group: group.into(),
            plural: plural.into(),
        },
        name_rule: NameRule::Subdomain,
        unconditional_update: false,
        has_generation: true,
    })
}
