//! Tests of `vreplication`.

use super::*;
use vtmove::vitess::proto::binlogdata::{Filter, Rule};

fn bls(rules: &[(&str, &str)]) -> BinlogSource {
    BinlogSource {
        keyspace: "commerce".into(),
        shard: "0".into(),
        filter: Some(Filter {
            rules: rules
                .iter()
                .map(|(m, f)| Rule {
                    r#match: (*m).into(),
                    filter: (*f).into(),
                    ..Rule::default()
                })
                .collect(),
            ..Filter::default()
        }),
        ..BinlogSource::default()
    }
}

#[test]
fn backquoted_names_are_read_whole() {
    for (filter, table) in [
        ("select * from `order`", "order"),
        (
            "select * from `my-table` where in_keyrange(`key`, 'reverse_bits', '-80')",
            "my-table",
        ),
        ("select * from `commerce`.`key`", "key"),
        ("select * from plain", "plain"),
    ] {
        let (parsed, _) = parse_select_filter(filter, "fallback", None)
            .unwrap_or_else(|e| panic!("{filter}: {e}"));
        assert_eq!(parsed, table, "{filter}");
    }
    // Unquoted, a reserved word is a syntax error on a real tablet.
    for filter in [
        "select * from order",
        "select * from commerce.key",
        "select * from t where in_keyrange(key, 'reverse_bits', '-80')",
    ] {
        let error = parse_select_filter(filter, "t", None).expect_err(filter);
        assert!(error.contains("syntax error"), "{error}");
    }
}

#[test]
fn filters_follow_the_binlog_source() {
    let tables: BTreeMap<String, ()> =
        [("customer".to_owned(), ()), ("corder".to_owned(), ())].into();
    let p = plan_tables(
        &bls(&[(
            "customer",
            "select * from customer where in_keyrange(id, 'reverse_bits', '-80')",
        )]),
        &tables,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p[0].source, "customer");
    assert_eq!(
        p[0].key_range.as_ref().map(|k| k.end.clone()),
        Some(vec![0x80])
    );
    let all = plan_tables(&bls(&[("/.*", ""), ("corder", "exclude")]), &tables)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].key_range, None);
    assert!(
        plan_tables(
            &bls(&[(
                "customer",
                "select * from customer where in_keyrange(id, 'hash', '-80')"
            )]),
            &tables
        )
        .is_err()
    );
    assert!(plan_tables(&bls(&[("missing", "select * from missing")]), &tables).is_err());
    assert!(
        plan_tables(
            &bls(&[("customer", "select * from customer where id > 5")]),
            &tables
        )
        .is_err()
    );
    let kr = plan_tables(&bls(&[("customer", "80-")]), &tables).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        kr[0].key_range.as_ref().map(|k| k.start.clone()),
        Some(vec![0x80])
    );
}

#[test]
fn in_keyrange_names_a_vindex_type_or_a_keyspace_vindex() {
    for vindex in ["reverse_bits", "customer.reverse_bits"] {
        let filter = format!("select * from customer where in_keyrange(id, '{vindex}', '80-')");
        let (table, range) = parse_select_filter(&filter, "customer", None)
            .unwrap_or_else(|e| panic!("{filter}: {e}"));
        assert_eq!(table, "customer");
        assert_eq!(range, Some(parse_key_range("80-").unwrap()), "{filter}");
    }
    let filter = "select * from customer where in_keyrange(id, 'customer.hash', '80-')";
    let error = parse_select_filter(filter, "customer", None).expect_err(filter);
    assert!(error.contains("unsupported vindex"), "{error}");
}
