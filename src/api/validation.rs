//! Name patterns shared by the CRD schemas and the pure `validate()` functions, and the error type
//! those functions return.
//!
//! Each pattern is used twice: as the OpenAPI `pattern` the API server checks at admission, and by
//! [`matches_pattern`] in `validate()`, which the controller runs as a backstop (an API server
//! without these schemas, or an object written before a schema change, still gets checked). Keeping
//! one constant per rule means the two can never disagree.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

/// Vitess keyspace, cell and workflow names: letters, digits, `_` and `-`, not starting with `-`.
pub const NAME_PATTERN: &str = r"^[A-Za-z0-9_][A-Za-z0-9_-]*$";
/// Longest keyspace, cell or workflow name vtmove accepts.
pub const NAME_MAX_LENGTH: usize = 63;

/// MySQL table names as MoveTables takes them: unquoted identifier characters, no wildcards.
pub const TABLE_NAME_PATTERN: &str = r"^[A-Za-z0-9_$]+$";
/// MySQL's identifier length limit.
pub const TABLE_NAME_MAX_LENGTH: usize = 64;
/// Most tables one workflow may move (bounds the cost of the CEL immutability rule).
pub const MAX_TABLES: usize = 4096;

/// Shard names: `0` or `-` for an unsharded keyspace, otherwise a hex key range `start-end` where
/// either bound may be empty (`-80`, `80-`, `40-80`).
pub const SHARD_NAME_PATTERN: &str = r"^(0|[0-9a-fA-F]{0,16}-[0-9a-fA-F]{0,16})$";
/// Longest shard name the pattern admits (two 16-digit bounds and the dash).
pub const SHARD_NAME_MAX_LENGTH: usize = 33;
/// Most shards one keyspace may declare.
pub const MAX_SHARDS: usize = 1024;

/// Most cells a list of cells may hold.
pub const MAX_CELLS: usize = 64;

/// MySQL database names used for the Vitess sidecar database.
pub const SIDECAR_DB_PATTERN: &str = r"^[A-Za-z0-9_]+$";
/// MySQL's database name length limit.
pub const SIDECAR_DB_MAX_LENGTH: usize = 64;

/// Durability policy names (`none`, `semi_sync`, `cross_cell`, or a custom registered policy).
pub const DURABILITY_POLICY_PATTERN: &str = r"^[A-Za-z0-9_-]+$";
/// Longest durability policy name.
pub const DURABILITY_POLICY_MAX_LENGTH: usize = 63;

/// Durations written as Go-style strings with the units `ms`, `s`, `m` and `h`, e.g. `30s`,
/// `1m30s`, `1.5h`, `250ms`. Parsed by [`crate::api::duration::parse_duration`].
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";
/// Longest duration string.
pub const DURATION_MAX_LENGTH: usize = 32;

/// The suffix Vitess gives a reverse workflow. A forward workflow must not carry it, or Vitess
/// would take it for the reverse of another workflow.
pub const REVERSE_WORKFLOW_SUFFIX: &str = "_reverse";

/// One problem with one field of a spec, as reported by `validate()`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// Path of the offending field, e.g. `spec.tables[2]`.
    pub field: String,
    /// What is wrong, for people.
    pub message: String,
}

impl FieldError {
    /// An error on `field` saying `message`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Joins field errors into one line each, for logs, Events and condition messages.
pub fn describe_errors(errors: &[FieldError]) -> String {
    let mut out = String::new();
    for (i, error) in errors.iter().enumerate() {
        if i > 0 {
            out.push_str("; ");
        }
        out.push_str(&error.to_string());
    }
    out
}

/// A compiled pattern from this module.
struct Pattern {
    source: &'static str,
    regex: LazyLock<Regex>,
}

macro_rules! pattern {
    ($name:ident, $source:expr) => {
        static $name: Pattern = Pattern {
            source: $source,
            regex: LazyLock::new(|| {
                // The sources are constants of this module; a unit test compiles every one.
                Regex::new($source).expect("vtmove's own name patterns are valid regexes")
            }),
        };
    };
}

pattern!(NAME_RE, NAME_PATTERN);
pattern!(TABLE_NAME_RE, TABLE_NAME_PATTERN);
pattern!(SHARD_NAME_RE, SHARD_NAME_PATTERN);
pattern!(SIDECAR_DB_RE, SIDECAR_DB_PATTERN);
pattern!(DURABILITY_POLICY_RE, DURABILITY_POLICY_PATTERN);
pattern!(DURATION_RE, DURATION_PATTERN);

static PATTERNS: [&Pattern; 6] = [
    &NAME_RE,
    &TABLE_NAME_RE,
    &SHARD_NAME_RE,
    &SIDECAR_DB_RE,
    &DURABILITY_POLICY_RE,
    &DURATION_RE,
];

/// Whether `value` matches `pattern`, one of this module's `*_PATTERN` constants.
///
/// Returns `false` for any other pattern string, so a typo cannot silently accept everything.
pub fn matches_pattern(pattern: &str, value: &str) -> bool {
    PATTERNS
        .iter()
        .find(|p| p.source == pattern)
        .is_some_and(|p| p.regex.is_match(value))
}

/// Checks a name against a pattern and a length limit, pushing an error for `field` if it fails.
pub(crate) fn check_name(
    errors: &mut Vec<FieldError>,
    field: &str,
    value: &str,
    pattern: &'static str,
    max_length: usize,
    what: &str,
) {
    if value.is_empty() {
        errors.push(FieldError::new(field, format!("{what} must not be empty")));
    } else if value.len() > max_length {
        errors.push(FieldError::new(
            field,
            format!("{what} {value:?} is longer than {max_length} characters"),
        ));
    } else if !matches_pattern(pattern, value) {
        errors.push(FieldError::new(
            field,
            format!("{what} {value:?} does not match {pattern}"),
        ));
    }
}

/// Checks a list of names: each against the pattern, no duplicates, at most `max_items`.
pub(crate) fn check_name_list(
    errors: &mut Vec<FieldError>,
    field: &str,
    values: &[String],
    pattern: &'static str,
    max_length: usize,
    max_items: usize,
    what: &str,
) {
    if values.len() > max_items {
        errors.push(FieldError::new(
            field,
            format!(
                "{} entries given, at most {max_items} are allowed",
                values.len()
            ),
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, value) in values.iter().enumerate() {
        let item = format!("{field}[{i}]");
        check_name(errors, &item, value, pattern, max_length, what);
        if !seen.insert(value.as_str()) {
            errors.push(FieldError::new(item, format!("duplicate {what} {value:?}")));
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pattern_compiles() {
        for p in PATTERNS {
            assert!(Regex::new(p.source).is_ok(), "{p}");
        }
    }

    #[test]
    fn unknown_pattern_never_matches() {
        assert!(!matches_pattern("^.*$", "anything"));
    }

    #[test]
    fn names() {
        for ok in ["commerce", "customer_v2", "zone-1", "0", "_x"] {
            assert!(matches_pattern(NAME_PATTERN, ok), "{ok}");
        }
        for bad in ["", "-zone", "a.b", "a/b", "a b", "ü"] {
            assert!(!matches_pattern(NAME_PATTERN, bad), "{bad}");
        }
    }

    #[test]
    fn table_names() {
        for ok in ["customer", "corder", "t$1", "_hidden", "Order2"] {
            assert!(matches_pattern(TABLE_NAME_PATTERN, ok), "{ok}");
        }
        for bad in ["", "cust*", "a.b", "`t`", "a-b", "a b"] {
            assert!(!matches_pattern(TABLE_NAME_PATTERN, bad), "{bad}");
        }
    }

    #[test]
    fn shard_names() {
        for ok in ["0", "-", "-80", "80-", "40-80", "-4000", "A0-C0"] {
            assert!(matches_pattern(SHARD_NAME_PATTERN, ok), "{ok}");
        }
        for bad in ["", "1", "80", "x-80", "-80-", "00000000000000000-"] {
            assert!(!matches_pattern(SHARD_NAME_PATTERN, bad), "{bad}");
        }
    }

    #[test]
    fn durations() {
        for ok in ["30s", "1m30s", "1.5h", "250ms", "0s", "10m"] {
            assert!(matches_pattern(DURATION_PATTERN, ok), "{ok}");
        }
        for bad in ["", "30", "s", "1d", "-1s", "1.s", " 1s", "1 s"] {
            assert!(!matches_pattern(DURATION_PATTERN, bad), "{bad}");
        }
    }

    #[test]
    fn name_list_reports_each_problem_with_its_index() {
        let mut errors = Vec::new();
        let values = vec!["a".to_string(), "b*".to_string(), "a".to_string()];
        check_name_list(
            &mut errors,
            "spec.tables",
            &values,
            TABLE_NAME_PATTERN,
            TABLE_NAME_MAX_LENGTH,
            MAX_TABLES,
            "table",
        );
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].field, "spec.tables[1]");
        assert_eq!(errors[1].field, "spec.tables[2]");
        assert!(errors[1].message.contains("duplicate"));
    }

    #[test]
    fn describe_joins_errors() {
        let errors = vec![FieldError::new("a", "x"), FieldError::new("b", "y")];
        assert_eq!(describe_errors(&errors), "a: x; b: y");
    }
}
