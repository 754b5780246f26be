//! Typed MySQL GTID positions, as Vitess reports them (`MySQL56/<uuid>:1-N[,<uuid>:1-M]`).
//!
//! vtmove needs one question answered without a database: *has this side applied everything up to
//! that position?* It is the proof behind invariant I2 (no lost write): after the old side stopped
//! accepting writes, vtmove records its primary position, and the cutover may only complete once
//! the new side's stream position **contains** it. A string comparison cannot answer that (GTID
//! sets are sets of intervals per server UUID, and their text form is not canonical), so positions
//! are parsed into a normalised interval set and compared as sets.
//!
//! Accepted text: an optional flavor prefix `MySQL56/` (the only flavor vtmove's targets use;
//! `MariaDB/` and `FilePos/` are rejected with a typed error), then comma-separated entries
//! `<uuid>(:<interval>|:<tag>)*`, where an interval is `N` or `N-M` and a tag is the MySQL 8.4
//! tagged-GTID identifier that applies to the intervals after it. Whitespace and newlines (as in
//! `@@gtid_executed` output) are ignored. The empty string and `MySQL56/` are the empty set.

use std::collections::BTreeMap;
use std::fmt;

/// The flavor prefix Vitess writes before a MySQL GTID set.
pub const MYSQL56_FLAVOR: &str = "MySQL56";

/// Why a position string could not be parsed. Positions come from tablets, so a bad one is a
/// reportable observation, never a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GtidParseError {
    /// The position names a flavor vtmove does not compare (MariaDB, FilePos, ...).
    #[error("unsupported position flavor {0:?}: only MySQL56 GTID sets can be compared")]
    UnsupportedFlavor(String),
    /// A server UUID is not 32 hex digits in the 8-4-4-4-12 layout.
    #[error("invalid server uuid {0:?} in GTID set")]
    InvalidUuid(String),
    /// An interval is not `N` or `N-M` with `1 <= N <= M`.
    #[error("invalid GTID interval {0:?}")]
    InvalidInterval(String),
    /// A tag is not an identifier (letter or underscore, then letters, digits, underscores).
    #[error("invalid GTID tag {0:?}")]
    InvalidTag(String),
    /// A UUID entry is followed by nothing (`uuid` alone or `uuid:`).
    #[error("GTID entry {0:?} has no intervals")]
    MissingIntervals(String),
    /// The text is longer than any position a tablet produces ([`MAX_POSITION_LEN`]).
    #[error(
        "GTID position of {0} bytes is longer than the {MAX_POSITION_LEN} bytes vtmove accepts"
    )]
    TooLong(usize),
}

/// The longest position text vtmove parses. Positions come from tablets, which are not trusted
/// to be sane: a GTID set of thousands of server UUIDs (one per reparent, ~40 bytes each) stays
/// far below this, and a larger one is refused before any work is done on it.
pub const MAX_POSITION_LEN: usize = 1 << 20;

/// One transaction source: a server UUID (as 128 bits) plus an optional MySQL 8.4 tag.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GtidSource {
    /// Server UUID as a 128-bit number, so case and formatting differences do not matter.
    pub uuid: u128,
    /// Tag of tagged GTIDs (lower-cased, as MySQL normalises them); empty for untagged ones.
    pub tag: String,
}

impl fmt::Display for GtidSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = format!("{:032x}", self.uuid);
        write!(
            f,
            "{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        )?;
        if !self.tag.is_empty() {
            write!(f, ":{}", self.tag)?;
        }
        Ok(())
    }
}

/// A normalised GTID set: for each source, sorted, disjoint, non-adjacent closed intervals.
///
/// Normalisation (merging `1-5` and `6-9` into `1-9`) is what makes [`GtidSet::contains`] a simple
/// per-interval check and makes [`fmt::Display`] canonical.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GtidSet {
    sources: BTreeMap<GtidSource, Vec<(u64, u64)>>,
}

impl GtidSet {
    /// Parses a bare GTID set (no flavor prefix), e.g. `3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7-9`.
    ///
    /// Linear in the text's length plus a sort of each source's intervals: positions come from
    /// tablets, so a hostile one must not cost quadratic time on a runtime worker.
    pub fn parse(text: &str) -> Result<Self, GtidParseError> {
        if text.len() > MAX_POSITION_LEN {
            return Err(GtidParseError::TooLong(text.len()));
        }
        let mut sources: BTreeMap<GtidSource, Vec<(u64, u64)>> = BTreeMap::new();
        for entry in text.split(',') {
            let entry: String = entry.chars().filter(|c| !c.is_whitespace()).collect();
            if entry.is_empty() {
                continue;
            }
            let mut parts = entry.split(':');
            let uuid_text = parts.next().unwrap_or_default();
            let uuid = parse_uuid(uuid_text)?;
            let mut tag = String::new();
            let mut saw_interval = false;
            let mut intervals = Vec::new();
            for part in parts {
                if part.starts_with(|c: char| c.is_ascii_digit()) {
                    intervals.push(parse_interval(part)?);
                    saw_interval = true;
                } else {
                    if !intervals.is_empty() {
                        sources
                            .entry(GtidSource {
                                uuid,
                                tag: tag.clone(),
                            })
                            .or_default()
                            .append(&mut intervals);
                    }
                    tag = parse_tag(part)?;
                }
            }
            if !saw_interval {
                return Err(GtidParseError::MissingIntervals(entry));
            }
            if !intervals.is_empty() {
                sources
                    .entry(GtidSource { uuid, tag })
                    .or_default()
                    .append(&mut intervals);
            }
        }
        for intervals in sources.values_mut() {
            normalise(intervals);
        }
        Ok(GtidSet { sources })
    }

    /// True when the set holds no transaction at all.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// Adds the closed interval `[start, end]` for `source`, keeping the set normalised.
    pub fn insert(&mut self, source: GtidSource, interval: (u64, u64)) {
        let intervals = self.sources.entry(source).or_default();
        intervals.push(interval);
        normalise(intervals);
    }

    /// True when every transaction in `other` is also in `self` ("`self` has applied `other`").
    pub fn contains(&self, other: &GtidSet) -> bool {
        other.sources.iter().all(|(source, wanted)| {
            let Some(have) = self.sources.get(source) else {
                return false;
            };
            // Both lists are sorted and disjoint, so one forward walk over `have` answers for all
            // of `wanted`: each wanted interval must sit inside one held interval.
            let mut held = have.iter().peekable();
            wanted.iter().all(|&(s, e)| {
                while held.next_if(|&&(_, he)| he < s).is_some() {}
                held.peek().is_some_and(|&&(hs, he)| hs <= s && e <= he)
            })
        })
    }

    /// Merges `other` into `self`.
    pub fn union_with(&mut self, other: &GtidSet) {
        for (source, intervals) in &other.sources {
            let mine = self.sources.entry(source.clone()).or_default();
            mine.extend_from_slice(intervals);
            normalise(mine);
        }
    }

    /// The intervals held for each source, in canonical order.
    pub fn sources(&self) -> impl Iterator<Item = (&GtidSource, &[(u64, u64)])> {
        self.sources.iter().map(|(s, i)| (s, i.as_slice()))
    }

    /// Number of transactions in the set (saturating), handy for progress displays and tests.
    pub fn transaction_count(&self) -> u64 {
        self.sources
            .values()
            .flatten()
            .fold(0u64, |acc, &(s, e)| acc.saturating_add(e - s + 1))
    }
}

impl fmt::Display for GtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Untagged and tagged intervals of one UUID print as separate entries; MySQL accepts both.
        for (i, (source, intervals)) in self.sources.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{source}")?;
            for &(s, e) in intervals {
                if s == e {
                    write!(f, ":{s}")?;
                } else {
                    write!(f, ":{s}-{e}")?;
                }
            }
        }
        Ok(())
    }
}

/// A Vitess replication position of the `MySQL56` flavor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Position {
    /// The executed GTID set the position stands for.
    pub gtids: GtidSet,
}

impl Position {
    /// Parses `MySQL56/<gtid set>`; a bare GTID set without a flavor is accepted too, and the
    /// empty string is the empty position (a stream that has not started has position `""`).
    pub fn parse(text: &str) -> Result<Self, GtidParseError> {
        if text.len() > MAX_POSITION_LEN {
            return Err(GtidParseError::TooLong(text.len()));
        }
        let text = text.trim();
        let set_text = match text.split_once('/') {
            Some((flavor, rest)) if flavor.eq_ignore_ascii_case(MYSQL56_FLAVOR) => rest,
            Some((flavor, _)) => return Err(GtidParseError::UnsupportedFlavor(flavor.to_owned())),
            None => text,
        };
        Ok(Position {
            gtids: GtidSet::parse(set_text)?,
        })
    }

    /// True when this position includes every transaction of `other`: a stream at `self` has
    /// applied everything the source had committed at `other`.
    pub fn contains(&self, other: &Position) -> bool {
        self.gtids.contains(&other.gtids)
    }

    /// True for the empty position.
    pub fn is_empty(&self) -> bool {
        self.gtids.is_empty()
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{MYSQL56_FLAVOR}/{}", self.gtids)
    }
}

impl std::str::FromStr for Position {
    type Err = GtidParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Position::parse(s)
    }
}

/// Sorts `intervals` and merges overlapping and adjacent ones (`1-5` and `6-9` become `1-9`).
fn normalise(intervals: &mut Vec<(u64, u64)>) {
    intervals.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(intervals.len());
    for &(s, e) in intervals.iter() {
        match merged.last_mut() {
            Some(last) if s <= last.1.saturating_add(1) => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    *intervals = merged;
}

fn parse_uuid(text: &str) -> Result<u128, GtidParseError> {
    let bad = || GtidParseError::InvalidUuid(text.to_owned());
    let groups: Vec<&str> = text.split('-').collect();
    let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    if lens != [8, 4, 4, 4, 12] {
        return Err(bad());
    }
    let hex: String = groups.concat();
    if !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(bad());
    }
    u128::from_str_radix(&hex, 16).map_err(|_| bad())
}

fn parse_interval(text: &str) -> Result<(u64, u64), GtidParseError> {
    let bad = || GtidParseError::InvalidInterval(text.to_owned());
    let number = |s: &str| {
        if s.is_empty() || !s.chars().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse::<u64>().map_err(|_| bad())
    };
    let (start, end) = match text.split_once('-') {
        Some((a, b)) => (number(a)?, number(b)?),
        None => {
            let n = number(text)?;
            (n, n)
        }
    };
    if start == 0 || end < start {
        return Err(bad());
    }
    Ok((start, end))
}

fn parse_tag(text: &str) -> Result<String, GtidParseError> {
    let mut chars = text.chars();
    let valid = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && text.len() <= 32;
    if valid {
        Ok(text.to_ascii_lowercase())
    } else if text.is_empty() {
        Err(GtidParseError::MissingIntervals(text.to_owned()))
    } else {
        Err(GtidParseError::InvalidTag(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const B: &str = "8b1c0a3e-9f02-11ef-8a55-0242ac120002";

    fn pos(s: &str) -> Position {
        match Position::parse(s) {
            Ok(p) => p,
            Err(e) => panic!("parse {s:?}: {e}"),
        }
    }

    #[test]
    fn parses_single_uuid_range() {
        let p = pos(&format!("MySQL56/{A}:1-100"));
        assert_eq!(p.gtids.transaction_count(), 100);
        assert_eq!(p.to_string(), format!("MySQL56/{A}:1-100"));
    }

    #[test]
    fn empty_positions() {
        assert!(pos("").is_empty());
        assert!(pos("MySQL56/").is_empty());
        assert!(pos(&format!("MySQL56/{A}:1-3")).contains(&pos("")));
        assert!(!pos("").contains(&pos(&format!("MySQL56/{A}:1"))));
    }

    #[test]
    fn multi_uuid_containment() {
        let big = pos(&format!("MySQL56/{A}:1-100,{B}:1-50"));
        let small = pos(&format!("MySQL56/{B}:1-50,{A}:1-99"));
        assert!(big.contains(&small));
        assert!(!small.contains(&big));
        // A UUID the container has never seen is never contained.
        let other = pos(&format!("MySQL56/{A}:1-10,{B}:51"));
        assert!(!big.contains(&other));
        let only_a = pos(&format!("MySQL56/{A}:1-100"));
        assert!(!only_a.contains(&big));
        assert!(big.contains(&only_a));
    }

    #[test]
    fn intervals_with_gaps() {
        let gappy = pos(&format!("MySQL56/{A}:1-5:7-9"));
        assert_eq!(gappy.gtids.transaction_count(), 8);
        assert!(gappy.contains(&pos(&format!("MySQL56/{A}:1-5"))));
        assert!(gappy.contains(&pos(&format!("MySQL56/{A}:7-9:2-3"))));
        assert!(gappy.contains(&pos(&format!("MySQL56/{A}:8"))));
        // Transaction 6 is missing: anything needing it is not contained.
        assert!(!gappy.contains(&pos(&format!("MySQL56/{A}:1-9"))));
        assert!(!gappy.contains(&pos(&format!("MySQL56/{A}:6"))));
        // Filling the gap makes it contiguous and canonical.
        let full = pos(&format!("MySQL56/{A}:1-5:7-9:6"));
        assert_eq!(full.to_string(), format!("MySQL56/{A}:1-9"));
        assert!(full.contains(&gappy));
    }

    #[test]
    fn adjacent_and_overlapping_intervals_merge() {
        let p = pos(&format!("MySQL56/{A}:1-5:6-9:3-4,{A}:10"));
        assert_eq!(p.to_string(), format!("MySQL56/{A}:1-10"));
    }

    #[test]
    fn case_whitespace_and_newlines_do_not_matter() {
        let upper = pos(&format!(
            "MySQL56/{},\n{B}:1-2",
            format!("{A}:1-5").to_uppercase()
        ));
        let lower = pos(&format!("MySQL56/{A}:1-5,{B}:1-2"));
        assert_eq!(upper, lower);
        assert!(upper.contains(&lower) && lower.contains(&upper));
    }

    #[test]
    fn tagged_gtids_are_separate_sources() {
        let p = pos(&format!("MySQL56/{A}:1-5:vtmove:1-3"));
        assert!(p.contains(&pos(&format!("MySQL56/{A}:VTMOVE:2"))));
        assert!(!p.contains(&pos(&format!("MySQL56/{A}:vtmove:4"))));
        assert!(!p.contains(&pos(&format!("MySQL56/{A}:other:1"))));
    }

    #[test]
    fn bare_gtid_set_without_flavor() {
        assert_eq!(pos(&format!("{A}:1-3")), pos(&format!("MySQL56/{A}:1-3")));
    }

    #[test]
    fn malformed_positions_are_errors() {
        let cases = [
            "MariaDB/0-1-100".to_owned(),
            "FilePos/binlog.000001:4".to_owned(),
            format!("MySQL56/{A}"),
            format!("MySQL56/{A}:"),
            format!("MySQL56/{A}:0-5"),
            format!("MySQL56/{A}:5-1"),
            format!("MySQL56/{A}:1-x"),
            format!("MySQL56/{A}:1-"),
            format!("MySQL56/{A}:99999999999999999999999"),
            "MySQL56/not-a-uuid:1-5".to_owned(),
            "MySQL56/3e11fa47-71ca-11e1-9e33-c80aa942956z:1".to_owned(),
            format!("MySQL56/{A}:-tag:1"),
        ];
        for case in cases {
            assert!(Position::parse(&case).is_err(), "{case:?} should not parse");
        }
        assert!(matches!(
            Position::parse("MariaDB/0-1-100"),
            Err(GtidParseError::UnsupportedFlavor(f)) if f == "MariaDB"
        ));
    }

    #[test]
    fn union_accumulates() {
        let mut s = GtidSet::parse(&format!("{A}:1-3")).unwrap_or_default();
        let t = GtidSet::parse(&format!("{A}:4-6,{B}:1")).unwrap_or_default();
        s.union_with(&t);
        assert_eq!(s.to_string(), format!("{A}:1-6,{B}:1"));
    }

    #[test]
    fn hostile_positions_are_refused_or_parsed_in_linear_time() {
        // Longer than any tablet produces: refused before parsing.
        let huge = format!("MySQL56/{A}:{}", "1:".repeat(MAX_POSITION_LEN));
        assert!(matches!(
            Position::parse(&huge),
            Err(GtidParseError::TooLong(len)) if len == huge.len()
        ));
        // Just under the cap: 100,000 disjoint intervals in reverse order (the worst case for
        // inserting one at a time, which re-sorted the whole list each time) parse at once.
        let intervals: Vec<String> = (0..100_000u64)
            .rev()
            .map(|i| format!("{}", 2 * i + 1))
            .collect();
        let text = format!("{A}:{}", intervals.join(":"));
        assert!(text.len() < MAX_POSITION_LEN);
        let started = std::time::Instant::now();
        let set = GtidSet::parse(&text).expect("parses");
        let elapsed = started.elapsed();
        assert_eq!(set.transaction_count(), 100_000);
        assert!(set.contains(&set.clone()));
        let mut odd_and_even = set.clone();
        odd_and_even.insert(
            GtidSource {
                uuid: parse_uuid(A).expect("uuid"),
                tag: String::new(),
            },
            (1, 200_000),
        );
        assert!(odd_and_even.contains(&set));
        assert!(!set.contains(&odd_and_even));
        // Quadratic work on this input took minutes in a debug build; linear work, milliseconds.
        assert!(
            elapsed < std::time::Duration::from_secs(5),
            "parsing took {elapsed:?}"
        );
    }

    #[test]
    fn contains_walks_sorted_intervals() {
        let have = pos(&format!("{A}:1-3:5-9:20-30"));
        for (wanted, expected) in [
            ("1-3", true),
            ("1-3:5-9", true),
            ("2:6-7:25", true),
            ("3-5", false),
            ("4", false),
            ("9-10", false),
            ("31", false),
            ("1:21:30", true),
        ] {
            assert_eq!(
                have.contains(&pos(&format!("{A}:{wanted}"))),
                expected,
                "{wanted}"
            );
        }
    }
}
