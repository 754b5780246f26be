//! How topology records are encoded so that Vitess reads them as vtmove meant them.
//!
//! Vitess decodes records with vtprotobuf-generated code, which leaves a map entry whose value
//! field is absent as a nil message; vtctld's and vtgate's VSchema builders then dereference it
//! (an unsharded keyspace's `tables: {"t": {}}` crashes them). prost, like the protobuf spec
//! allows, omits a map value equal to its default. So every record with message-valued maps
//! writes each entry's value explicitly, even when it is an empty message, as Go's encoders do.
//! Records without such maps are encoded by prost unchanged. The real `vtctldclient` checks
//! this in `tests/real_vitess.rs`.

use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint};

use crate::vitess::proto::topodata::{
    self, CellInfo, Shard, ShardReplication, SrvKeyspace, Tablet, ThrottlerConfig,
};
use crate::vitess::proto::vschema::{self, RoutingRules, SrvVSchema};

/// A record stored in the topology, with the encoding Vitess reads without surprises.
pub trait TopoRecord: Message + Default {
    /// The record's bytes as written to the topology.
    fn encode_record(&self) -> Vec<u8> {
        self.encode_to_vec()
    }
}

impl TopoRecord for CellInfo {}
impl TopoRecord for Shard {}
impl TopoRecord for ShardReplication {}
impl TopoRecord for SrvKeyspace {}
impl TopoRecord for Tablet {}
impl TopoRecord for RoutingRules {}
impl TopoRecord for vschema::ShardRoutingRules {}
impl TopoRecord for vschema::KeyspaceRoutingRules {}
impl TopoRecord for vschema::MirrorRules {}

impl TopoRecord for vschema::Keyspace {
    fn encode_record(&self) -> Vec<u8> {
        let rest = vschema::Keyspace {
            vindexes: Default::default(),
            tables: Default::default(),
            ..self.clone()
        };
        let mut buf = rest.encode_to_vec();
        for (name, vindex) in sorted(&self.vindexes) {
            push_map_entry(&mut buf, 2, name, &vindex.encode_to_vec());
        }
        for (name, table) in sorted(&self.tables) {
            push_map_entry(&mut buf, 3, name, &table.encode_to_vec());
        }
        buf
    }
}

impl TopoRecord for SrvVSchema {
    fn encode_record(&self) -> Vec<u8> {
        let rest = SrvVSchema {
            keyspaces: Default::default(),
            ..self.clone()
        };
        let mut buf = rest.encode_to_vec();
        for (name, keyspace) in sorted(&self.keyspaces) {
            push_map_entry(&mut buf, 1, name, &keyspace.encode_record());
        }
        buf
    }
}

impl TopoRecord for topodata::Keyspace {
    fn encode_record(&self) -> Vec<u8> {
        let Some(throttler) = &self.throttler_config else {
            return self.encode_to_vec();
        };
        let rest = topodata::Keyspace {
            throttler_config: None,
            ..self.clone()
        };
        let mut buf = rest.encode_to_vec();
        push_message(&mut buf, 9, &encode_throttler_config(throttler));
        buf
    }
}

fn encode_throttler_config(config: &ThrottlerConfig) -> Vec<u8> {
    let rest = ThrottlerConfig {
        throttled_apps: Default::default(),
        app_checked_metrics: Default::default(),
        ..config.clone()
    };
    let mut buf = rest.encode_to_vec();
    for (name, rule) in sorted(&config.throttled_apps) {
        push_map_entry(&mut buf, 5, name, &rule.encode_to_vec());
    }
    for (name, metrics) in sorted(&config.app_checked_metrics) {
        push_map_entry(&mut buf, 6, name, &metrics.encode_to_vec());
    }
    buf
}

/// A map's entries in key order, so equal records always encode to equal bytes.
fn sorted<'a, V>(map: impl IntoIterator<Item = (&'a String, &'a V)>) -> Vec<(&'a String, &'a V)> {
    let mut entries: Vec<_> = map.into_iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

/// Appends a length-delimited field `tag` holding `bytes`, even when `bytes` is empty.
fn push_message(buf: &mut Vec<u8>, tag: u32, bytes: &[u8]) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(bytes.len() as u64, buf);
    buf.extend_from_slice(bytes);
}

/// Appends one entry of the map field `tag` with a string key and an explicit message value.
fn push_map_entry(buf: &mut Vec<u8>, tag: u32, key: &str, value: &[u8]) {
    let mut entry = Vec::with_capacity(key.len() + value.len() + 8);
    push_message(&mut entry, 1, key.as_bytes());
    push_message(&mut entry, 2, value);
    push_message(buf, tag, &entry);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Map entries as (key, value present) pairs, read off the wire without prost (the records
    /// here hold only length-delimited fields).
    fn entries(bytes: &[u8], map_tag: u32) -> BTreeMap<String, bool> {
        let mut out = BTreeMap::new();
        let mut buf = bytes;
        while !buf.is_empty() {
            let (tag, wire) = prost::encoding::decode_key(&mut buf).unwrap();
            assert_eq!(wire, WireType::LengthDelimited, "only messages here");
            let len = prost::encoding::decode_varint(&mut buf).unwrap() as usize;
            let (field, rest) = buf.split_at(len);
            buf = rest;
            if tag != map_tag {
                continue;
            }
            let mut entry = field;
            let mut key = String::new();
            let mut has_value = false;
            while !entry.is_empty() {
                let (t, _) = prost::encoding::decode_key(&mut entry).unwrap();
                let l = prost::encoding::decode_varint(&mut entry).unwrap() as usize;
                let (f, r) = entry.split_at(l);
                entry = r;
                match t {
                    1 => key = String::from_utf8(f.to_vec()).unwrap(),
                    2 => has_value = true,
                    _ => panic!("unexpected field {t} in a map entry"),
                }
            }
            out.insert(key, has_value);
        }
        out
    }

    fn unsharded_with(tables: &[&str]) -> vschema::Keyspace {
        vschema::Keyspace {
            tables: tables
                .iter()
                .map(|t| (t.to_string(), vschema::Table::default()))
                .collect(),
            ..vschema::Keyspace::default()
        }
    }

    #[test]
    fn empty_tables_keep_an_explicit_value() {
        let ks = unsharded_with(&["customer", "order"]);
        // What prost alone writes: entries without values, which Vitess decodes as nil tables.
        assert_eq!(
            entries(&ks.encode_to_vec(), 3),
            BTreeMap::from([("customer".into(), false), ("order".into(), false)])
        );
        assert_eq!(
            entries(&ks.encode_record(), 3),
            BTreeMap::from([("customer".into(), true), ("order".into(), true)])
        );
        assert_eq!(
            vschema::Keyspace::decode(&ks.encode_record()[..]).unwrap(),
            ks
        );
    }

    #[test]
    fn srv_vschema_keyspaces_and_their_tables_keep_explicit_values() {
        let srv = SrvVSchema {
            keyspaces: [
                ("commerce".to_string(), unsharded_with(&["customer"])),
                ("empty".to_string(), vschema::Keyspace::default()),
            ]
            .into(),
            routing_rules: Some(RoutingRules::default()),
            ..SrvVSchema::default()
        };
        let bytes = srv.encode_record();
        assert_eq!(
            entries(&bytes, 1),
            BTreeMap::from([("commerce".into(), true), ("empty".into(), true)])
        );
        assert_eq!(SrvVSchema::decode(&bytes[..]).unwrap(), srv);
        assert_eq!(bytes, srv.clone().encode_record(), "deterministic");
    }

    #[test]
    fn throttled_apps_keep_explicit_values() {
        let ks = topodata::Keyspace {
            throttler_config: Some(ThrottlerConfig {
                throttled_apps: [("".to_string(), Default::default())].into(),
                ..ThrottlerConfig::default()
            }),
            ..topodata::Keyspace::default()
        };
        let bytes = ks.encode_record();
        assert_eq!(topodata::Keyspace::decode(&bytes[..]).unwrap(), ks);
        let mut buf = &bytes[..];
        let (tag, _) = prost::encoding::decode_key(&mut buf).unwrap();
        assert_eq!(tag, 9);
        let len = prost::encoding::decode_varint(&mut buf).unwrap() as usize;
        assert_eq!(entries(&buf[..len], 5), BTreeMap::from([("".into(), true)]));
    }
}
