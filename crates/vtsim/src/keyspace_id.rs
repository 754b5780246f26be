//! Keyspace ids, key ranges and the one vindex vtsim implements.
//!
//! **Choice of vindex.** Every sharded keyspace in vtsim uses Vitess's `reverse_bits` vindex on
//! the table's integer primary key as its primary vindex: the keyspace id of a row is the 64-bit
//! primary key with its bits reversed, as 8 big-endian bytes. It is a real Vitess vindex, it is
//! a bijection (so "every row lands in exactly one shard" is easy to check), and consecutive keys
//! spread over all shards (key 1 has the top bit set and lands in `80-`, key 2 in `40-80`, ...),
//! so a small key space already exercises every shard. The vtgate probe and the VReplication
//! filters (`in_keyrange(id, 'reverse_bits', '-80')`) use the same function, so routing and
//! copying agree by construction, as they do in Vitess.

use vtmove::vitess::proto::topodata::KeyRange;

/// The only vindex type vtsim understands.
pub const REVERSE_BITS: &str = "reverse_bits";

/// The keyspace id of integer primary key `pk` under `reverse_bits`.
pub fn reverse_bits(pk: i64) -> [u8; 8] {
    (pk as u64).reverse_bits().to_be_bytes()
}

/// Parses a shard name into its key range. `0`, `-` and names without a `-` (Vitess's unsharded
/// shard names) are the whole key space and give `None`, as Vitess stores a nil key range for
/// them.
pub fn shard_key_range(name: &str) -> Result<Option<KeyRange>, String> {
    if name == "0" || name == "-" || !name.contains('-') {
        return Ok(None);
    }
    let (start, end) = name
        .split_once('-')
        .ok_or_else(|| format!("shard {name:?} is not a key range"))?;
    let start = decode_hex(start).ok_or_else(|| format!("bad start in shard {name:?}"))?;
    let end = decode_hex(end).ok_or_else(|| format!("bad end in shard {name:?}"))?;
    if !start.is_empty() && !end.is_empty() && start >= end {
        return Err(format!("shard {name:?} has start >= end"));
    }
    Ok(Some(KeyRange { start, end }))
}

/// Parses a key range written as in a filter (`-80`, `80-`, `40-80`, `-`).
pub fn parse_key_range(text: &str) -> Result<KeyRange, String> {
    let text = text.trim();
    if text == "-" || text.is_empty() {
        return Ok(KeyRange::default());
    }
    if !text.contains('-') {
        return Err(format!("{text:?} is not a key range"));
    }
    Ok(shard_key_range(text)?.unwrap_or_default())
}

/// Whether `range` (`None` = the whole key space) holds keyspace id `id`: start inclusive, end
/// exclusive, compared byte-wise as Vitess does.
pub fn key_range_contains(range: Option<&KeyRange>, id: &[u8]) -> bool {
    let Some(range) = range else {
        return true;
    };
    range.start.as_slice() <= id && (range.end.is_empty() || id < range.end.as_slice())
}

/// The shard name of a key range (`-80`, `80-`, `0` for the whole key space).
pub fn key_range_name(range: Option<&KeyRange>) -> String {
    match range {
        None => "0".to_owned(),
        Some(r) if r.start.is_empty() && r.end.is_empty() => "-".to_owned(),
        Some(r) => format!("{}-{}", hex(&r.start), hex(&r.end)),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_bits_spreads_small_keys() {
        assert_eq!(reverse_bits(1), [0x80, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(reverse_bits(2), [0x40, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(reverse_bits(0), [0; 8]);
        let low = shard_key_range("-80").ok().flatten();
        let high = shard_key_range("80-").ok().flatten();
        for pk in 0..1000 {
            let id = reverse_bits(pk);
            assert_ne!(
                key_range_contains(low.as_ref(), &id),
                key_range_contains(high.as_ref(), &id),
                "key {pk} must be in exactly one half"
            );
        }
        assert!(key_range_contains(high.as_ref(), &reverse_bits(1)));
    }

    #[test]
    fn shard_names() {
        assert_eq!(shard_key_range("0"), Ok(None));
        let r = shard_key_range("40-80").ok().flatten();
        assert_eq!(
            r,
            Some(KeyRange {
                start: vec![0x40],
                end: vec![0x80]
            })
        );
        assert_eq!(key_range_name(r.as_ref()), "40-80");
        assert!(shard_key_range("80-40").is_err());
        assert!(shard_key_range("8-").is_err());
        assert!(parse_key_range("-").is_ok_and(|r| r.start.is_empty() && r.end.is_empty()));
    }
}
