//! The `Keyspace` custom resource: a Vitess keyspace that vtmove looks after.
//!
//! vtmove creates the keyspace if it does not exist or adopts it if it does, reports its shards,
//! primaries, tablet health and denied tables, and detects topology drift: denied tables and
//! routing rules that no MoveTablesWorkflow explains, and a VSchema that differs from
//! `spec.vschema`. With `driftPolicy: Repair` it removes the former and restores the latter.
//! It never deletes the Vitess keyspace unless `deletionPolicy: Delete` says so.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::condition::{self, ConditionUpdate};
use super::schema::drop_type_description;
use super::validation::{
    DURABILITY_POLICY_MAX_LENGTH, DURABILITY_POLICY_PATTERN, FieldError, MAX_CELLS, MAX_SHARDS,
    NAME_MAX_LENGTH, NAME_PATTERN, SHARD_NAME_MAX_LENGTH, SHARD_NAME_PATTERN,
    SIDECAR_DB_MAX_LENGTH, SIDECAR_DB_PATTERN, check_name, check_name_list,
};
use crate::vitess::proto::vschema as vschema_proto;
use crate::vitess::vschema_json::{VSchemaJsonError, keyspace_from_json};

/// Default for `durabilityPolicy`.
pub const DEFAULT_DURABILITY_POLICY: &str = "none";
/// Default for `sidecarDbName`, Vitess's default sidecar database.
pub const DEFAULT_SIDECAR_DB_NAME: &str = "_vt";

/// Declares a Vitess keyspace that vtmove creates or adopts, and then watches.
// Clippy reads the repeated `type_ = "string"` of the printer columns as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "vtmove.dev",
    version = "v1alpha1",
    kind = "Keyspace",
    plural = "keyspaces",
    shortname = "vks",
    category = "vtmove",
    namespaced,
    status = "KeyspaceStatus",
    derive = "PartialEq",
    doc = "A Vitess keyspace that vtmove creates or adopts, then watches: it reports shards, \
           primaries, tablet health and denied tables, and detects topology drift.",
    printcolumn(
        name = "Keyspace",
        type_ = "string",
        json_path = ".status.keyspace",
        description = "Name of the Vitess keyspace"
    ),
    printcolumn(
        name = "Shards",
        type_ = "string",
        json_path = ".spec.shards",
        description = "Declared shards"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the keyspace matches the spec and is healthy"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.name) == has(oldSelf.name)").message("name is immutable")
)]
pub struct KeyspaceSpec {
    /// Name of the Vitess keyspace. Defaults to metadata.name, which must then be a valid
    /// keyspace name (no dots). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = NAME_MAX_LENGTH), regex(pattern = NAME_PATTERN))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("name is immutable"))]
    pub name: Option<String>,

    /// The keyspace's shards: `0` (or `-`) for an unsharded keyspace, otherwise hex key ranges
    /// that together cover the whole key space without overlap, e.g. `-80` and `80-`.
    #[schemars(
        length(min = 1, max = MAX_SHARDS),
        inner(length(min = 1, max = SHARD_NAME_MAX_LENGTH), regex(pattern = SHARD_NAME_PATTERN))
    )]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub shards: Vec<String>,

    /// Cells the keyspace is served in (where its SrvKeyspace is built). Empty: every cell.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = MAX_CELLS),
        inner(length(min = 1, max = NAME_MAX_LENGTH), regex(pattern = NAME_PATTERN))
    )]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub cells: Vec<String>,

    /// Durability policy of the keyspace (vtctldclient CreateKeyspace `--durability-policy`):
    /// `none`, `semi_sync`, `cross_cell`, or a custom registered policy. Default `none`.
    #[serde(default = "default_durability_policy")]
    #[schemars(
        length(min = 1, max = DURABILITY_POLICY_MAX_LENGTH),
        regex(pattern = DURABILITY_POLICY_PATTERN)
    )]
    pub durability_policy: String,

    /// Name of the Vitess sidecar database on the keyspace's tablets (vtctldclient
    /// CreateKeyspace `--sidecar-db-name`). Default `_vt`. Fixed when the keyspace is created.
    #[serde(default = "default_sidecar_db_name")]
    #[schemars(
        length(min = 1, max = SIDECAR_DB_MAX_LENGTH),
        regex(pattern = SIDECAR_DB_PATTERN)
    )]
    #[x_kube(
        validation = Rule::new("self == oldSelf")
            .message("sidecarDbName is fixed when the keyspace is created")
    )]
    pub sidecar_db_name: String,

    /// The keyspace's VSchema as Vitess JSON (`sharded`, `vindexes`, `tables`, ... as
    /// `vtctldclient ApplyVSchema` takes it; a field Vitess's VSchema does not have is a
    /// validation error). When set, vtmove writes it when it creates the keyspace, or when it
    /// adopts one that has no VSchema, and rebuilds every cell's SrvVSchema. Afterwards each pass
    /// compares it with the keyspace's VSchema: a declared vindex or table that is missing or
    /// different, or `sharded` differing, is drift (reason `VSchemaDrift`); `driftPolicy: Repair`
    /// restores the declared vindexes and tables, but never flips `sharded` and never removes a
    /// table the spec does not declare (MoveTables adds moved tables to an unsharded target's
    /// VSchema). Unset: vtmove leaves the VSchema alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub vschema: Option<serde_json::Value>,

    /// What to do about denied tables and routing rules that no MoveTablesWorkflow explains,
    /// and about a VSchema that differs from spec.vschema: `Report` (default) sets
    /// TopologyConsistent=False and lists them under status.drift; `Repair` also removes the
    /// denied tables and rules and restores the declared vindexes and tables.
    #[serde(default)]
    pub drift_policy: DriftPolicy,

    /// What happens to the Vitess keyspace when this resource is deleted: `Retain` (default)
    /// leaves it; `Delete` deletes it from the topology (its data on the tablets is untouched).
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

fn default_durability_policy() -> String {
    DEFAULT_DURABILITY_POLICY.to_string()
}

fn default_sidecar_db_name() -> String {
    DEFAULT_SIDECAR_DB_NAME.to_string()
}

/// Schema of a free-form JSON object: any keys, kept as given.
fn free_form_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "nullable": true,
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// What to do about topology drift.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[schemars(transform = drop_type_description)]
pub enum DriftPolicy {
    /// Report drift in status and conditions only.
    #[default]
    Report,
    /// Report drift and repair it.
    Repair,
}

/// What happens to the Vitess keyspace when the resource is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[schemars(transform = drop_type_description)]
pub enum DeletionPolicy {
    /// Leave the Vitess keyspace in place.
    #[default]
    Retain,
    /// Delete the Vitess keyspace from the topology.
    Delete,
}

// ---------------------------------------------------------------------------------------------
// Status
// ---------------------------------------------------------------------------------------------

/// What vtmove observes of a keyspace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KeyspaceStatus {
    /// The metadata.generation of the spec this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// The Vitess keyspace name, recorded before vtmove's first change to it; cleanup uses this,
    /// never the spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyspace: Option<String>,

    /// Standard conditions: Ready, TopologyConsistent, TabletsHealthy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// One row per shard found in the topology.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardStatus>,

    /// Drift found on the latest pass; empty when the topology is consistent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<DriftFinding>,
}

impl KeyspaceStatus {
    /// Sets one condition; see [`condition::set_condition`].
    pub fn set_condition(
        &mut self,
        update: ConditionUpdate,
        observed_generation: Option<i64>,
        now: &Time,
    ) -> bool {
        condition::set_condition(&mut self.conditions, update, observed_generation, now)
    }

    /// Adds every Keyspace condition that is missing, as `Unknown`.
    pub fn ensure_conditions(&mut self, observed_generation: Option<i64>, now: &Time) -> bool {
        condition::ensure_conditions(
            &mut self.conditions,
            &condition::types::KEYSPACE,
            observed_generation,
            now,
        )
    }
}

/// One shard as found in the topology.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShardStatus {
    /// Shard name, e.g. `-80`.
    pub name: String,
    /// The shard's key range as `start-end` in hex; `-` for the whole key space.
    pub key_range: String,
    /// Alias of the shard's primary tablet, e.g. `zone1-0000000100`. Unset when the shard has
    /// none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,
    /// Whether the shard record says the primary serves. Unset when not known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_primary_serving: Option<bool>,
    /// How many of the shard's tablets are healthy and serving.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub serving_tablets: i64,
    /// The shard's tablets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tablets: Vec<TabletStatus>,
    /// Tables denied per tablet type (the shard's tablet controls).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denied_tables: Vec<DeniedTables>,
}

/// One tablet of a shard.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TabletStatus {
    /// Tablet alias, e.g. `zone1-0000000101`.
    pub alias: String,
    /// The tablet's type as the tablet itself reports it. `Unknown` when it does not say (older
    /// vttablets leave the field unset) or cannot be asked; never guessed.
    #[serde(rename = "type", default)]
    pub tablet_type: TabletType,
    /// The tablet's health.
    #[serde(default)]
    pub health: TabletHealth,
    /// Detail on the health, e.g. the health-check error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A Vitess tablet type.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[schemars(transform = drop_type_description)]
pub enum TabletType {
    /// A primary.
    Primary,
    /// A replica.
    Replica,
    /// A read-only (batch) replica.
    Rdonly,
    /// A spare.
    Spare,
    /// An experimental tablet.
    Experimental,
    /// Taking a backup.
    Backup,
    /// Restoring from a backup.
    Restore,
    /// Drained.
    Drained,
    /// Not reported or not known.
    #[default]
    Unknown,
}

/// A tablet's health.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[schemars(transform = drop_type_description)]
pub enum TabletHealth {
    /// Answers its health check and serves.
    Healthy,
    /// Answers but does not serve, or reports an error.
    Unhealthy,
    /// Does not answer.
    Unreachable,
    /// Not checked yet.
    #[default]
    Unknown,
}

/// Tables denied to one tablet type on a shard.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeniedTables {
    /// The tablet type the tables are denied to.
    pub tablet_type: TabletType,
    /// The denied tables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<String>,
}

/// One piece of topology drift.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DriftFinding {
    /// CamelCase kind of drift, e.g. `UnexplainedDeniedTables`, `UnexplainedRoutingRule`,
    /// `ShardMissing`.
    pub reason: String,
    /// What is drifted: a shard (`keyspace/shard`), a routing rule key, a table.
    pub subject: String,
    /// What is wrong, and what `Repair` would do about it.
    pub message: String,
    /// Whether vtmove has repaired it (`driftPolicy: Repair`).
    #[serde(default)]
    pub repaired: bool,
}

// ---------------------------------------------------------------------------------------------
// Names and validation
// ---------------------------------------------------------------------------------------------

impl Keyspace {
    /// The Vitess keyspace name: `spec.name`, or metadata.name when unset.
    pub fn keyspace_name(&self) -> String {
        self.spec.name.clone().unwrap_or_else(|| self.name_any())
    }

    /// Validates the spec (see [`KeyspaceSpec::validate`]) and, when `spec.name` is unset, that
    /// metadata.name can serve as the keyspace name.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = self.spec.validate().err().unwrap_or_default();
        if self.spec.name.is_none() {
            let before = errors.len();
            check_name(
                &mut errors,
                "metadata.name",
                &self.name_any(),
                NAME_PATTERN,
                NAME_MAX_LENGTH,
                "keyspace name",
            );
            for e in &mut errors[before..] {
                e.message
                    .push_str(" (spec.name is unset, so metadata.name is the keyspace name)");
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// A shard's key range as two byte strings; an empty bound is open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRange {
    /// Inclusive start; empty means the start of the key space.
    pub start: Vec<u8>,
    /// Exclusive end; empty means the end of the key space.
    pub end: Vec<u8>,
}

impl KeyRange {
    /// Parses a shard name: `0` and `-` are the whole key space, otherwise `start-end` in hex
    /// with an even number of digits per bound and `start < end` when both are set.
    pub fn parse_shard_name(name: &str) -> Result<Self, String> {
        if name == "0" || name == "-" {
            return Ok(Self {
                start: vec![],
                end: vec![],
            });
        }
        let Some((start, end)) = name.split_once('-') else {
            return Err(format!("shard {name:?} is not a key range"));
        };
        let start = decode_hex(start).ok_or_else(|| format!("bad start in shard {name:?}"))?;
        let end = decode_hex(end).ok_or_else(|| format!("bad end in shard {name:?}"))?;
        if !start.is_empty() && !end.is_empty() && start >= end {
            return Err(format!("shard {name:?} has start >= end"));
        }
        Ok(Self { start, end })
    }

    /// Whether the range is the whole key space.
    pub fn is_full(&self) -> bool {
        self.start.is_empty() && self.end.is_empty()
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let digit = |b: u8| char::from(b).to_digit(16);
    s.as_bytes()
        .chunks(2)
        .map(|pair| u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok())
        .collect()
}

/// Compares key range bounds as Vitess does: byte strings, with trailing zero bytes ignored
/// (`80` and `8000` are the same boundary).
fn normalize(bound: &[u8]) -> &[u8] {
    let mut end = bound.len();
    while end > 0 && bound[end - 1] == 0 {
        end -= 1;
    }
    &bound[..end]
}

impl KeyspaceSpec {
    /// The declared VSchema as vtmove's proto (`None` when `spec.vschema` is unset). An error
    /// when it cannot be read, which [`KeyspaceSpec::validate`] reports first.
    pub fn declared_vschema(&self) -> Result<Option<vschema_proto::Keyspace>, VSchemaJsonError> {
        self.vschema.as_ref().map(keyspace_from_json).transpose()
    }

    /// Checks everything about the spec that does not need Vitess: name patterns, and that the
    /// shards parse as key ranges and together cover the key space exactly once.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        if let Some(name) = &self.name {
            check_name(
                &mut errors,
                "spec.name",
                name,
                NAME_PATTERN,
                NAME_MAX_LENGTH,
                "keyspace name",
            );
        }
        if self.shards.is_empty() {
            errors.push(FieldError::new(
                "spec.shards",
                "at least one shard is required",
            ));
        }
        let before = errors.len();
        check_name_list(
            &mut errors,
            "spec.shards",
            &self.shards,
            SHARD_NAME_PATTERN,
            SHARD_NAME_MAX_LENGTH,
            MAX_SHARDS,
            "shard",
        );
        if errors.len() == before && !self.shards.is_empty() {
            check_shard_coverage(&mut errors, &self.shards);
        }
        check_name_list(
            &mut errors,
            "spec.cells",
            &self.cells,
            NAME_PATTERN,
            NAME_MAX_LENGTH,
            MAX_CELLS,
            "cell",
        );
        check_name(
            &mut errors,
            "spec.durabilityPolicy",
            &self.durability_policy,
            DURABILITY_POLICY_PATTERN,
            DURABILITY_POLICY_MAX_LENGTH,
            "durability policy",
        );
        check_name(
            &mut errors,
            "spec.sidecarDbName",
            &self.sidecar_db_name,
            SIDECAR_DB_PATTERN,
            SIDECAR_DB_MAX_LENGTH,
            "sidecar database name",
        );
        if let Some(vschema) = &self.vschema {
            if !vschema.is_object() {
                errors.push(FieldError::new(
                    "spec.vschema",
                    "vschema must be a JSON object",
                ));
            } else if let Err(e) = keyspace_from_json(vschema) {
                errors.push(FieldError::new(
                    format!("spec.vschema.{}", e.path),
                    e.message,
                ));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// Checks that the shards tile the key space: sorted by start, each starts where the previous
/// ended, the first is open at the start and the last open at the end.
fn check_shard_coverage(errors: &mut Vec<FieldError>, shards: &[String]) {
    let mut ranges = Vec::with_capacity(shards.len());
    for (i, name) in shards.iter().enumerate() {
        match KeyRange::parse_shard_name(name) {
            Ok(r) => ranges.push((name.as_str(), r)),
            Err(message) => errors.push(FieldError::new(format!("spec.shards[{i}]"), message)),
        }
    }
    if ranges.len() != shards.len() {
        return;
    }
    if ranges.len() == 1 {
        if !ranges[0].1.is_full() {
            errors.push(FieldError::new(
                "spec.shards",
                format!(
                    "a single shard must cover the whole key space (0 or -), not {:?}",
                    ranges[0].0
                ),
            ));
        }
        return;
    }
    if let Some((name, _)) = ranges.iter().find(|(_, r)| r.is_full()) {
        errors.push(FieldError::new(
            "spec.shards",
            format!("shard {name:?} covers the whole key space, so it must be the only shard"),
        ));
        return;
    }
    ranges.sort_by(|a, b| normalize(&a.1.start).cmp(normalize(&b.1.start)));
    let mut expected_start: &[u8] = &[];
    for (name, range) in &ranges {
        let start = normalize(&range.start);
        if start != expected_start {
            let problem = if start < expected_start {
                "overlaps the previous shard"
            } else {
                "leaves a gap before it"
            };
            errors.push(FieldError::new(
                "spec.shards",
                format!("shard {name:?} {problem}"),
            ));
            return;
        }
        if range.end.is_empty() {
            expected_start = &[];
            if *name != ranges[ranges.len() - 1].0 {
                errors.push(FieldError::new(
                    "spec.shards",
                    format!("shard {name:?} is open at the end but is not the last shard"),
                ));
                return;
            }
        } else {
            expected_start = normalize(&range.end);
        }
    }
    if !expected_start.is_empty() {
        errors.push(FieldError::new(
            "spec.shards",
            "the shards do not reach the end of the key space (the last shard must end in -)",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(shards: &[&str]) -> KeyspaceSpec {
        KeyspaceSpec {
            name: None,
            shards: shards.iter().map(|s| s.to_string()).collect(),
            cells: vec![],
            durability_policy: DEFAULT_DURABILITY_POLICY.into(),
            sidecar_db_name: DEFAULT_SIDECAR_DB_NAME.into(),
            vschema: None,
            drift_policy: DriftPolicy::default(),
            deletion_policy: DeletionPolicy::default(),
        }
    }

    fn messages(s: &KeyspaceSpec) -> Vec<String> {
        s.validate()
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn defaults() {
        let s: KeyspaceSpec = serde_json::from_value(serde_json::json!({"shards": ["0"]})).unwrap();
        assert_eq!(s.durability_policy, "none");
        assert_eq!(s.sidecar_db_name, "_vt");
        assert_eq!(s.drift_policy, DriftPolicy::Report);
        assert_eq!(s.deletion_policy, DeletionPolicy::Retain);
        assert_eq!(s.validate(), Ok(()));
    }

    #[test]
    fn valid_shard_layouts() {
        for shards in [
            &["0"][..],
            &["-"],
            &["-80", "80-"],
            &["80-", "-80"],
            &["-40", "40-80", "80-c0", "c0-"],
            &["-4000", "40-80", "80-"],
        ] {
            assert_eq!(spec(shards).validate(), Ok(()), "{shards:?}");
        }
    }

    #[test]
    fn broken_shard_layouts() {
        let cases: [(&[&str], &str); 9] = [
            (
                &["-80", "80-", "c0-d0"],
                "open at the end but is not the last",
            ),
            (&["-80"], "single shard must cover"),
            (&["0", "80-"], "must be the only shard"),
            (&["-80", "40-"], "overlaps"),
            (&["-40", "80-"], "gap"),
            (&["-40", "40-80"], "do not reach the end"),
            (&["40-80", "80-"], "gap"),
            (&["-8", "80-"], "bad end"),
            (&["80-40", "-80"], "start >= end"),
        ];
        for (shards, expected) in cases {
            let m = messages(&spec(shards));
            assert_eq!(m.len(), 1, "{shards:?}: {m:?}");
            assert!(m[0].contains(expected), "{shards:?}: {m:?}");
        }
    }

    #[test]
    fn malformed_names() {
        let mut s = spec(&["-80", "80-", "80-"]);
        s.cells = vec!["zone 1".into()];
        s.sidecar_db_name = "my-sidecar".into();
        s.name = Some("a/b".into());
        s.vschema = Some(serde_json::json!([1, 2]));
        let fields: Vec<_> = s
            .validate()
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            [
                "spec.name",
                "spec.shards[2]",
                "spec.cells[0]",
                "spec.sidecarDbName",
                "spec.vschema"
            ]
        );
    }

    #[test]
    fn keyspace_name_defaults_to_metadata_name() {
        let mut ks = Keyspace::new("commerce", spec(&["0"]));
        assert_eq!(ks.keyspace_name(), "commerce");
        assert_eq!(ks.validate(), Ok(()));
        ks.metadata.name = Some("commerce.prod".into());
        let errors = ks.validate().unwrap_err();
        assert_eq!(errors[0].field, "metadata.name");
        ks.spec.name = Some("commerce".into());
        assert_eq!(ks.validate(), Ok(()));
        assert_eq!(ks.keyspace_name(), "commerce");
    }

    #[test]
    fn unknown_tablet_type_stays_unknown() {
        let t: TabletStatus =
            serde_json::from_value(serde_json::json!({"alias": "zone1-100"})).unwrap();
        assert_eq!(t.tablet_type, TabletType::Unknown);
        assert_eq!(t.health, TabletHealth::Unknown);
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(v["type"], "Unknown");
    }

    #[test]
    fn vschema_fields_vtmove_cannot_hold_are_validation_errors() {
        let mut s = spec(&["-80", "80-"]);
        s.vschema = Some(serde_json::json!({
            "sharded": true,
            "tables": {"customer": {"column_vindexes": [{"column": "id", "nmae": "hash"}]}}
        }));
        let errors = s.validate().unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].field,
            "spec.vschema.tables.customer.column_vindexes[0].nmae"
        );
        assert!(errors[0].message.contains("unknown VSchema field"));
        s.vschema =
            Some(serde_json::json!({"sharded": true, "vindexes": {"hash": {"type": "hash"}}}));
        assert_eq!(s.validate(), Ok(()));
        assert!(s.declared_vschema().unwrap().unwrap().sharded);
    }

    #[test]
    fn vschema_is_kept_as_given() {
        let vschema = serde_json::json!({
            "sharded": true,
            "vindexes": {"hash": {"type": "hash"}},
            "tables": {"customer": {"column_vindexes": [{"column": "customer_id", "name": "hash"}]}}
        });
        let mut s = spec(&["-80", "80-"]);
        s.vschema = Some(vschema.clone());
        let back: KeyspaceSpec = serde_json::from_value(serde_json::to_value(&s).unwrap()).unwrap();
        assert_eq!(back.vschema, Some(vschema));
    }
}
