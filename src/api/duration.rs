//! Go-style duration strings (`30s`, `1m30s`, `250ms`, `1.5h`) as they appear in the spec.
//!
//! Vitess's own flags (`--timeout`, `--max-replication-lag-allowed`) take Go durations, so the
//! spec does too. The schema admits them with [`DURATION_PATTERN`] and a CEL rule per field keeps
//! each in its range; [`parse_duration`] turns one into a [`std::time::Duration`], and
//! `validate()` checks the same ranges again.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use super::validation::{DURATION_MAX_LENGTH, DURATION_PATTERN};

/// Why a duration string could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The string was empty.
    #[error("duration is empty")]
    Empty,
    /// A number was expected at this byte offset.
    #[error("expected a number at offset {offset} in {input:?}")]
    ExpectedNumber {
        /// The whole input.
        input: String,
        /// Byte offset of the problem.
        offset: usize,
    },
    /// A unit (`ms`, `s`, `m`, `h`) was expected at this byte offset.
    #[error("expected a unit (ms, s, m or h) at offset {offset} in {input:?}")]
    ExpectedUnit {
        /// The whole input.
        input: String,
        /// Byte offset of the problem.
        offset: usize,
    },
    /// The value does not fit in a `Duration`.
    #[error("duration {input:?} is too large")]
    Overflow {
        /// The whole input.
        input: String,
    },
}

/// Parses a Go-style duration made of one or more `<number>[.<fraction>]<unit>` terms with the
/// units `ms`, `s`, `m` and `h` (the language of [`DURATION_PATTERN`]).
///
/// Fractions are kept to the nanosecond and truncated beyond it. Signs, spaces and other units
/// are rejected.
///
/// ```
/// use std::time::Duration;
/// use vtmove::api::duration::parse_duration;
/// assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
/// assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
/// assert!(parse_duration("30").is_err());
/// ```
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    if input.is_empty() {
        return Err(DurationError::Empty);
    }
    let bytes = input.as_bytes();
    let overflow = || DurationError::Overflow {
        input: input.to_string(),
    };
    let mut total: u128 = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Whole part.
        let start = i;
        let mut whole: u128 = 0;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            whole = whole
                .checked_mul(10)
                .and_then(|w| w.checked_add(u128::from(bytes[i] - b'0')))
                .ok_or_else(overflow)?;
            i += 1;
        }
        if i == start {
            return Err(DurationError::ExpectedNumber {
                input: input.to_string(),
                offset: i,
            });
        }
        // Fraction, kept as nanosecond-scaled digits (at most nine are significant).
        let mut frac_nanos: u128 = 0;
        if i < bytes.len() && bytes[i] == b'.' {
            i += 1;
            let frac_start = i;
            let mut scale: u128 = 100_000_000;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                frac_nanos += u128::from(bytes[i] - b'0') * scale;
                scale /= 10;
                i += 1;
            }
            if i == frac_start {
                return Err(DurationError::ExpectedNumber {
                    input: input.to_string(),
                    offset: i,
                });
            }
        }
        // Unit.
        let rest = &input[i..];
        let (unit_nanos, unit_len): (u128, usize) = if rest.starts_with("ms") {
            (1_000_000, 2)
        } else if rest.starts_with('s') {
            (1_000_000_000, 1)
        } else if rest.starts_with('m') {
            (60_000_000_000, 1)
        } else if rest.starts_with('h') {
            (3_600_000_000_000, 1)
        } else {
            return Err(DurationError::ExpectedUnit {
                input: input.to_string(),
                offset: i,
            });
        };
        i += unit_len;
        let term = whole
            .checked_mul(unit_nanos)
            .and_then(|t| t.checked_add(frac_nanos * unit_nanos / 1_000_000_000))
            .ok_or_else(overflow)?;
        total = total.checked_add(term).ok_or_else(overflow)?;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| overflow())?;
    // The remainder is below one second, so it fits in u32.
    let nanos = u32::try_from(total % 1_000_000_000).map_err(|_| overflow())?;
    Ok(Duration::new(secs, nanos))
}

/// Formats a duration the way the spec writes them, with the largest units first: `1h2m3s`,
/// `30s`, `250ms`, `0s`. Sub-millisecond parts are dropped. The result always parses back.
pub fn format_duration(d: Duration) -> String {
    let total_ms = d.as_millis();
    if total_ms == 0 {
        return "0s".to_string();
    }
    let hours = total_ms / 3_600_000;
    let minutes = (total_ms / 60_000) % 60;
    let seconds = (total_ms / 1000) % 60;
    let millis = total_ms % 1000;
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    if seconds > 0 {
        out.push_str(&format!("{seconds}s"));
    }
    if millis > 0 {
        out.push_str(&format!("{millis}ms"));
    }
    out
}

/// A duration as written in the spec: a Go-style string such as `30s`.
///
/// It is kept as the user wrote it (so a round trip through the API server changes nothing) and
/// parsed on demand with [`DurationString::to_duration`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DurationString(String);

impl DurationString {
    /// Wraps a duration string without checking it; [`DurationString::to_duration`] checks.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The string as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parses the string.
    pub fn to_duration(&self) -> Result<Duration, DurationError> {
        parse_duration(&self.0)
    }
}

impl fmt::Display for DurationString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for DurationString {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl From<Duration> for DurationString {
    fn from(value: Duration) -> Self {
        Self(format_duration(value))
    }
}

impl JsonSchema for DurationString {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "DurationString".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "maxLength": DURATION_MAX_LENGTH,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_terms() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn several_terms_add_up() {
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(
            parse_duration("1h1m1s1ms"),
            Ok(Duration::new(3661, 1_000_000))
        );
        // Go accepts repeated and unordered units; so do we.
        assert_eq!(parse_duration("1s1s"), Ok(Duration::from_secs(2)));
    }

    #[test]
    fn fractions() {
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0.5m"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1.5ms"), Ok(Duration::from_micros(1500)));
        // Beyond nanoseconds the digits are dropped.
        assert_eq!(parse_duration("0.0000000001s"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_what_the_pattern_rejects() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert!(matches!(
            parse_duration("30"),
            Err(DurationError::ExpectedUnit { offset: 2, .. })
        ));
        assert!(matches!(
            parse_duration("s"),
            Err(DurationError::ExpectedNumber { offset: 0, .. })
        ));
        assert!(matches!(
            parse_duration("1.s"),
            Err(DurationError::ExpectedNumber { offset: 2, .. })
        ));
        for bad in ["-1s", "1d", "1 s", " 1s", "1s ", "1us", "1S"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pattern_and_parser_agree() {
        use crate::api::validation::matches_pattern;
        for s in [
            "30s", "1m30s", "1.5h", "250ms", "0s", "", "30", "s", "1.s", "-1s", "1d", "1 s", "1us",
            "1ms5s", ".5s", "1..5s",
        ] {
            assert_eq!(
                matches_pattern(DURATION_PATTERN, s),
                parse_duration(s).is_ok(),
                "{s:?}"
            );
        }
    }

    #[test]
    fn overflow_is_an_error_not_a_panic() {
        assert!(matches!(
            parse_duration("99999999999999999999999999999999999999999h"),
            Err(DurationError::Overflow { .. })
        ));
        assert!(matches!(
            parse_duration("9999999999999999999999h"),
            Err(DurationError::Overflow { .. })
        ));
    }

    #[test]
    fn format_round_trips() {
        for (d, s) in [
            (Duration::ZERO, "0s"),
            (Duration::from_secs(30), "30s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_millis(3_723_004), "1h2m3s4ms"),
            (Duration::from_millis(250), "250ms"),
        ] {
            assert_eq!(format_duration(d), s);
            assert_eq!(parse_duration(s), Ok(d));
        }
    }

    #[test]
    fn duration_string_is_transparent() {
        let d: DurationString = serde_json::from_str("\"45s\"").unwrap();
        assert_eq!(d.as_str(), "45s");
        assert_eq!(d.to_duration(), Ok(Duration::from_secs(45)));
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"45s\"");
    }
}
