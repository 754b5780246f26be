//! The text form of a tablet alias, `<cell>-<uid as 10 zero-padded digits>` (e.g.
//! `zone1-0000000100`), used in tablet keys (`tablets/<alias>/Tablet`), logs and vtctldclient
//! arguments.

use crate::vitess::proto::topodata::TabletAlias;

use super::error::{Result, TopoError};
use super::path::validate_name;

/// Formats an alias as Vitess does: the cell, a hyphen, then the uid as `%010d`.
pub fn tablet_alias_string(alias: &TabletAlias) -> String {
    format!("{}-{:010}", alias.cell, alias.uid)
}

/// Parses `<cell>-<uid>`. The uid is the decimal number after the last hyphen, so cell names
/// that contain hyphens parse too.
pub fn parse_tablet_alias(text: &str) -> Result<TabletAlias> {
    let invalid = || {
        TopoError::InvalidArgument(format!(
            "invalid tablet alias {text:?}: expected <cell>-<uid>, e.g. zone1-0000000100"
        ))
    };
    let (cell, uid) = text.rsplit_once('-').ok_or_else(invalid)?;
    if cell.is_empty() || uid.is_empty() || !uid.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    validate_name("cell", cell).map_err(|_| invalid())?;
    let uid: u32 = uid.parse().map_err(|_| invalid())?;
    Ok(TabletAlias {
        cell: cell.to_string(),
        uid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses() {
        let alias = TabletAlias {
            cell: "zone1".into(),
            uid: 100,
        };
        assert_eq!(tablet_alias_string(&alias), "zone1-0000000100");
        assert_eq!(parse_tablet_alias("zone1-0000000100").unwrap(), alias);
        assert_eq!(parse_tablet_alias("zone1-100").unwrap(), alias);
        let hyphenated = parse_tablet_alias("us-east-1-0000004294").unwrap();
        assert_eq!(hyphenated.cell, "us-east-1");
        assert_eq!(hyphenated.uid, 4294);
        assert_eq!(
            tablet_alias_string(&TabletAlias {
                cell: "c".into(),
                uid: u32::MAX
            }),
            "c-4294967295"
        );
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "zone1",
            "zone1-",
            "-100",
            "zone1-10a",
            "zone1-+100",
            "a/b-1",
            "zone1-99999999999",
        ] {
            assert!(parse_tablet_alias(bad).is_err(), "{bad:?} accepted");
        }
    }
}
