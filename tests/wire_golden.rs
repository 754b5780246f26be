//! Golden wire tests: vtmove's prost types must produce the exact bytes Vitess reads and writes.
//!
//! Every expected vector below was derived by hand from the field numbers in
//! Vitess's protobuf definitions (its field numbers) and the protobuf encoding rules, not by running the code
//! under test:
//!
//! * a tag byte is `field_number << 3 | wire_type`, wire type 0 = varint, 2 = length-delimited;
//! * strings, bytes and nested messages are `tag, length (varint), payload`;
//! * proto3 scalars equal to their default are not written; fields come out in field-number order;
//! * a map field is a repeated nested message per entry, with the key as field 1 and the value as
//!   field 2 (prost leaves out a key or value equal to its default).
//!
//! Each test encodes a value and compares with the vector, then decodes the vector and compares
//! with the value.

use std::collections::{BTreeMap, HashMap};

use prost::Message;
use vtmove::vitess::proto::{topodata, vschema};
use vtmove::vitess::routing::{MovedTables, RoutingState, table_rules, update_routing_rules};

/// Concatenates hand-written fragments (tags and lengths as literals, ASCII payloads as `b"…"`).
fn bytes(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn assert_round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(
    value: &M,
    expected: &[u8],
) {
    assert_eq!(value.encode_to_vec(), expected, "encoding of {value:?}");
    assert_eq!(value.encoded_len(), expected.len());
    let decoded = M::decode(expected).unwrap_or_else(|e| panic!("decoding golden bytes: {e}"));
    assert_eq!(&decoded, value);
}

#[test]
fn shard_with_primary_key_range_and_denied_tables() {
    let shard = topodata::Shard {
        primary_alias: Some(topodata::TabletAlias {
            cell: "zone1".to_owned(),
            uid: 100,
        }),
        key_range: Some(topodata::KeyRange {
            start: vec![0x80],
            end: vec![],
        }),
        tablet_controls: vec![topodata::shard::TabletControl {
            tablet_type: topodata::TabletType::Primary as i32,
            denied_tables: vec!["t1".to_owned(), "t2".to_owned()],
            ..Default::default()
        }],
        is_primary_serving: true,
        ..Default::default()
    };
    let expected = bytes(&[
        // 1 primary_alias (LEN): 0x0a, 9 bytes
        &[0x0a, 0x09],
        //   1 cell (LEN) "zone1": 0x0a, 5 bytes
        &[0x0a, 0x05],
        b"zone1",
        //   2 uid (VARINT) 100 = 0x64: 0x10
        &[0x10, 0x64],
        // 2 key_range (LEN): 0x12, 3 bytes  ("80-": start 0x80, end empty so omitted)
        &[0x12, 0x03],
        //   1 start (LEN): 0x0a, 1 byte 0x80
        &[0x0a, 0x01, 0x80],
        // 6 tablet_controls (LEN): 6<<3|2 = 0x32, 10 bytes
        &[0x32, 0x0a],
        //   1 tablet_type (VARINT) PRIMARY = 1: 0x08
        &[0x08, 0x01],
        //   4 denied_tables (LEN): 4<<3|2 = 0x22, "t1" then "t2"
        &[0x22, 0x02],
        b"t1",
        &[0x22, 0x02],
        b"t2",
        // 7 is_primary_serving (VARINT) true: 7<<3|0 = 0x38
        &[0x38, 0x01],
    ]);
    assert_eq!(expected.len(), 2 + 9 + 2 + 3 + 2 + 10 + 2);
    assert_round_trip(&shard, &expected);
}

/// `to_tables` (field 2, LEN) with the single target `src.t` (5 bytes): 7 bytes in all.
const TO_SRC_T: &[u8] = b"\x12\x05src.t";

#[test]
fn routing_rules_of_one_table_in_state_a() {
    let moved = MovedTables::new("src", "dst", ["t"]);
    let rules = update_routing_rules(
        &vschema::RoutingRules::default(),
        &moved,
        RoutingState::CREATED,
    )
    .rules;
    // Same rules straight from the table of rules, in row order.
    let direct = vschema::RoutingRules {
        rules: table_rules(
            &moved.source,
            &moved.target,
            &moved.tables[0],
            RoutingState::CREATED,
        )
        .iter()
        .map(|rule| rule.to_proto())
        .collect(),
    };
    assert_eq!(rules, direct);

    // Each rule is a `rules` entry (field 1, LEN: 0x0a), then its payload length, then
    // from_table (field 1, LEN: 0x0a, key length, key) and TO_SRC_T.
    let expected = bytes(&[
        // "t": payload 2 + 1 + 7 = 10
        &[0x0a, 0x0a, 0x0a, 0x01],
        b"t",
        TO_SRC_T,
        // "t@replica": 2 + 9 + 7 = 18 = 0x12
        &[0x0a, 0x12, 0x0a, 0x09],
        b"t@replica",
        TO_SRC_T,
        // "t@rdonly": 2 + 8 + 7 = 17 = 0x11
        &[0x0a, 0x11, 0x0a, 0x08],
        b"t@rdonly",
        TO_SRC_T,
        // "dst.t": 2 + 5 + 7 = 14 = 0x0e
        &[0x0a, 0x0e, 0x0a, 0x05],
        b"dst.t",
        TO_SRC_T,
        // "dst.t@replica": 2 + 13 + 7 = 22 = 0x16
        &[0x0a, 0x16, 0x0a, 0x0d],
        b"dst.t@replica",
        TO_SRC_T,
        // "dst.t@rdonly": 2 + 12 + 7 = 21 = 0x15
        &[0x0a, 0x15, 0x0a, 0x0c],
        b"dst.t@rdonly",
        TO_SRC_T,
        // "src.t": 14
        &[0x0a, 0x0e, 0x0a, 0x05],
        b"src.t",
        TO_SRC_T,
        // "src.t@replica": 22
        &[0x0a, 0x16, 0x0a, 0x0d],
        b"src.t@replica",
        TO_SRC_T,
        // "src.t@rdonly": 21
        &[0x0a, 0x15, 0x0a, 0x0c],
        b"src.t@rdonly",
        TO_SRC_T,
    ]);
    // Nine entries of (2 + payload): 12 + 20 + 19 + 16 + 24 + 23 + 16 + 24 + 23.
    assert_eq!(expected.len(), 177);
    assert_round_trip(&rules, &expected);
}

#[test]
fn srv_vschema_with_one_keyspace_and_one_rule() {
    let keyspaces = BTreeMap::from([(
        "src".to_owned(),
        vschema::Keyspace {
            sharded: true,
            ..Default::default()
        },
    )]);
    let rules = vschema::RoutingRules {
        rules: vec![vschema::RoutingRule {
            from_table: "t".to_owned(),
            to_tables: vec!["src.t".to_owned()],
        }],
    };
    let srv =
        vtmove::vitess::srv_vschema::build_srv_vschema(&keyspaces, Some(&rules), None, None, None);
    let expected = bytes(&[
        // 1 keyspaces (map entry, LEN): 0x0a, 9 bytes
        &[0x0a, 0x09],
        //   1 key (LEN) "src": 0x0a, 3 bytes
        &[0x0a, 0x03],
        b"src",
        //   2 value (LEN) vschema.Keyspace: 0x12, 2 bytes
        &[0x12, 0x02],
        //     1 sharded (VARINT) true: 0x08
        &[0x08, 0x01],
        // 2 routing_rules (LEN): 0x12, 12 bytes
        &[0x12, 0x0c],
        //   1 rules (LEN): 0x0a, 10 bytes
        &[0x0a, 0x0a],
        //     1 from_table "t"
        &[0x0a, 0x01],
        b"t",
        //     2 to_tables "src.t"
        &[0x12, 0x05],
        b"src.t",
        // 3 shard_routing_rules: present and empty, as Vitess's rebuild writes it: 3<<3|2 = 0x1a
        &[0x1a, 0x00],
        // 4 keyspace_routing_rules: absent (missing key reads as nil)
        // 5 mirror_rules: present and empty: 5<<3|2 = 0x2a
        &[0x2a, 0x00],
    ]);
    assert_eq!(expected.len(), 29);
    assert_round_trip(&srv, &expected);
}

#[test]
fn map_entries_with_an_explicit_empty_value_decode_the_same() {
    // {"ks": Keyspace{}}: prost leaves the default value out of the entry ...
    let srv = vschema::SrvVSchema {
        keyspaces: HashMap::from([("ks".to_owned(), vschema::Keyspace::default())]),
        ..Default::default()
    };
    let short = bytes(&[
        // 1 keyspaces entry (LEN), 4 bytes: key "ks" only
        &[0x0a, 0x04],
        &[0x0a, 0x02],
        b"ks",
    ]);
    assert_round_trip(&srv, &short);
    // ... while an encoder that writes the empty value (field 2, length 0) must decode the same.
    let explicit = bytes(&[&[0x0a, 0x06], &[0x0a, 0x02], b"ks", &[0x12, 0x00]]);
    assert_eq!(
        vschema::SrvVSchema::decode(explicit.as_slice()).ok(),
        Some(srv)
    );
}

#[test]
fn keyspace_record_with_durability_and_sidecar_db() {
    let keyspace = topodata::Keyspace {
        durability_policy: "semi_sync".to_owned(),
        sidecar_db_name: "_vt".to_owned(),
        ..Default::default()
    };
    let expected = bytes(&[
        // 8 durability_policy (LEN): 8<<3|2 = 0x42, 9 bytes
        &[0x42, 0x09],
        b"semi_sync",
        // 10 sidecar_db_name (LEN): 10<<3|2 = 0x52, 3 bytes
        &[0x52, 0x03],
        b"_vt",
    ]);
    assert_eq!(expected.len(), 16);
    assert_round_trip(&keyspace, &expected);
}

#[test]
fn tablet_record_with_grpc_port() {
    let tablet = topodata::Tablet {
        alias: Some(topodata::TabletAlias {
            cell: "zone1".to_owned(),
            uid: 101,
        }),
        hostname: "vt-101".to_owned(),
        port_map: HashMap::from([("grpc".to_owned(), 15999)]),
        keyspace: "dst".to_owned(),
        shard: "-80".to_owned(),
        r#type: topodata::TabletType::Replica as i32,
        ..Default::default()
    };
    let expected = bytes(&[
        // 1 alias (LEN): 0x0a, 9 bytes
        &[0x0a, 0x09],
        //   1 cell "zone1"
        &[0x0a, 0x05],
        b"zone1",
        //   2 uid (VARINT) 101 = 0x65
        &[0x10, 0x65],
        // 2 hostname (LEN) "vt-101": 0x12, 6 bytes
        &[0x12, 0x06],
        b"vt-101",
        // 4 port_map entry (LEN): 4<<3|2 = 0x22, 9 bytes
        &[0x22, 0x09],
        //   1 key (LEN) "grpc": 0x0a, 4 bytes
        &[0x0a, 0x04],
        b"grpc",
        //   2 value (VARINT) 15999 = 124 * 128 + 127: low group 0x7f | 0x80 = 0xff, then 0x7c
        &[0x10, 0xff, 0x7c],
        // 5 keyspace (LEN) "dst": 5<<3|2 = 0x2a
        &[0x2a, 0x03],
        b"dst",
        // 6 shard (LEN) "-80": 6<<3|2 = 0x32
        &[0x32, 0x03],
        b"-80",
        // 8 type (VARINT) REPLICA = 2: 8<<3|0 = 0x40
        &[0x40, 0x02],
    ]);
    assert_eq!(expected.len(), 11 + 8 + 11 + 5 + 5 + 2);
    assert_round_trip(&tablet, &expected);
}
