//! Key construction: the Vitess topology layout (`docs/design/topology.md`, "Stores and roots") and Go-style path
//! joining.
//!
//! Vitess builds every etcd key as `path.Join(root, relative)`, and Go's `path.Join` cleans the
//! result. A key that differs by one slash is a different etcd key, invisible to vtctld, so the
//! joining rules are reproduced exactly here and every key in vtmove goes through [`join`].
//!
//! Names that end up inside keys (cells, keyspaces, shards, lock names) are validated first: a
//! keyspace called `..` would otherwise be cleaned into a key outside its directory.

use super::error::{Result, TopoError};

/// File and directory names of the Vitess layout (`go/vt/topo/server.go` constants).
pub mod names {
    /// File holding a `topodata.CellInfo`.
    pub const CELL_INFO_FILE: &str = "CellInfo";
    /// File holding a `topodata.Keyspace`.
    pub const KEYSPACE_FILE: &str = "Keyspace";
    /// File holding a `topodata.Shard`.
    pub const SHARD_FILE: &str = "Shard";
    /// File holding a keyspace's `vschema.Keyspace`.
    pub const VSCHEMA_FILE: &str = "VSchema";
    /// File holding a cell's `topodata.ShardReplication`.
    pub const SHARD_REPLICATION_FILE: &str = "ShardReplication";
    /// File holding a `topodata.Tablet`.
    pub const TABLET_FILE: &str = "Tablet";
    /// File holding a cell's `vschema.SrvVSchema`.
    pub const SRV_VSCHEMA_FILE: &str = "SrvVSchema";
    /// File holding a cell's `topodata.SrvKeyspace`.
    pub const SRV_KEYSPACE_FILE: &str = "SrvKeyspace";
    /// Global file holding `vschema.RoutingRules`.
    pub const ROUTING_RULES_FILE: &str = "RoutingRules";
    /// Global file holding `vschema.ShardRoutingRules`.
    pub const SHARD_ROUTING_RULES_FILE: &str = "ShardRoutingRules";
    /// Global file holding `vschema.MirrorRules`.
    pub const MIRROR_RULES_FILE: &str = "MirrorRules";
    /// Directory of cells in the global topo.
    pub const CELLS_PATH: &str = "cells";
    /// Directory of keyspaces.
    pub const KEYSPACES_PATH: &str = "keyspaces";
    /// Directory of shards inside a keyspace directory.
    pub const SHARDS_PATH: &str = "shards";
    /// Directory of tablets in a cell topo.
    pub const TABLETS_PATH: &str = "tablets";
    /// Relative key of the keyspace routing rules.
    pub const KEYSPACE_ROUTING_RULES_KEY: &str = "routing_rules/keyspace/Rules";
    /// Directory of named locks.
    pub const NAMED_LOCKS_PATH: &str = "internal/named_locks";
    /// Directory, inside a locked resource's directory, that holds the lock keys.
    pub const LOCKS_PATH: &str = "locks";
}

/// Joins `root` and `rel` exactly like Go's `path.Join`: empty parts are skipped, and the result
/// is cleaned (no doubled or trailing slash, `.` and `..` resolved).
pub fn join(root: &str, rel: &str) -> String {
    join_all(&[root, rel])
}

/// [`join`] for any number of parts.
pub fn join_all(parts: &[&str]) -> String {
    let non_empty: Vec<&str> = parts.iter().copied().filter(|p| !p.is_empty()).collect();
    if non_empty.is_empty() {
        return String::new();
    }
    clean(&non_empty.join("/"))
}

/// Go's `path.Clean`: the shortest equivalent path by purely lexical processing.
pub fn clean(path: &str) -> String {
    if path.is_empty() {
        return ".".to_string();
    }
    let rooted = path.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for element in path.split('/') {
        match element {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|last| *last != "..") {
                    out.pop();
                } else if !rooted {
                    // A relative path keeps leading `..`; a rooted one cannot go above `/`.
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    let body = out.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".to_string(),
        (false, false) => body,
    }
}

/// Checks that `name` can be used as one path element of a key: non-empty, no `/`, not `.` or
/// `..`, no control characters.
pub fn validate_name(kind: &str, name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name == "."
        || name == ".."
        || name.contains('/')
        || name.chars().any(char::is_control);
    if bad {
        return Err(TopoError::InvalidArgument(format!(
            "invalid {kind} name {name:?}: it must be one non-empty path element"
        )));
    }
    Ok(())
}

/// Checks a named-lock name: one or more valid path elements separated by `/` (vtmove uses
/// `<targetKeyspace>/<workflow>`, as VReplication does).
pub fn validate_lock_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(TopoError::InvalidArgument(
            "lock name must not be empty".to_string(),
        ));
    }
    for element in name.split('/') {
        validate_name("lock", element).map_err(|_| {
            TopoError::InvalidArgument(format!(
                "invalid lock name {name:?}: every '/'-separated part must be non-empty and not '.' or '..'"
            ))
        })?;
    }
    Ok(())
}

/// Relative keys of the Vitess layout. The callers validate the names they pass in.
pub(crate) mod rel {
    use super::names::*;

    pub fn cell_info(cell: &str) -> String {
        format!("{CELLS_PATH}/{cell}/{CELL_INFO_FILE}")
    }
    pub fn keyspace_dir(keyspace: &str) -> String {
        format!("{KEYSPACES_PATH}/{keyspace}")
    }
    pub fn keyspace(keyspace: &str) -> String {
        format!("{KEYSPACES_PATH}/{keyspace}/{KEYSPACE_FILE}")
    }
    pub fn vschema(keyspace: &str) -> String {
        format!("{KEYSPACES_PATH}/{keyspace}/{VSCHEMA_FILE}")
    }
    pub fn shards_dir(keyspace: &str) -> String {
        format!("{KEYSPACES_PATH}/{keyspace}/{SHARDS_PATH}")
    }
    pub fn shard_dir(keyspace: &str, shard: &str) -> String {
        format!("{KEYSPACES_PATH}/{keyspace}/{SHARDS_PATH}/{shard}")
    }
    pub fn shard(keyspace: &str, shard: &str) -> String {
        format!("{KEYSPACES_PATH}/{keyspace}/{SHARDS_PATH}/{shard}/{SHARD_FILE}")
    }
    pub fn shard_replication(keyspace: &str, shard: &str) -> String {
        format!("{KEYSPACES_PATH}/{keyspace}/{SHARDS_PATH}/{shard}/{SHARD_REPLICATION_FILE}")
    }
    pub fn srv_keyspace(keyspace: &str) -> String {
        format!("{KEYSPACES_PATH}/{keyspace}/{SRV_KEYSPACE_FILE}")
    }
    pub fn tablet(alias: &str) -> String {
        format!("{TABLETS_PATH}/{alias}/{TABLET_FILE}")
    }
    pub fn named_lock_dir(name: &str) -> String {
        format!("{NAMED_LOCKS_PATH}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_matches_go_path_join() {
        assert_eq!(
            join("/vitess/global", "keyspaces/commerce/Keyspace"),
            "/vitess/global/keyspaces/commerce/Keyspace"
        );
        assert_eq!(
            join("/vitess/global/", "/RoutingRules"),
            "/vitess/global/RoutingRules"
        );
        assert_eq!(
            join("/vitess//global", "cells//zone1/"),
            "/vitess/global/cells/zone1"
        );
        assert_eq!(join("/", "SrvVSchema"), "/SrvVSchema");
        assert_eq!(join("/vitess/global", ""), "/vitess/global");
        assert_eq!(join("", ""), "");
        assert_eq!(join("/a/b", "../c"), "/a/c");
        assert_eq!(join("/a", "../../c"), "/c");
        assert_eq!(join("a", "../../c"), "../c");
        assert_eq!(join("/a/./b", "."), "/a/b");
        assert_eq!(
            join_all(&["/r", "keyspaces/ks", "locks", "-5"]),
            "/r/keyspaces/ks/locks/-5"
        );
    }

    #[test]
    fn clean_edge_cases() {
        assert_eq!(clean(""), ".");
        assert_eq!(clean("/"), "/");
        assert_eq!(clean("//"), "/");
        assert_eq!(clean("a/.."), ".");
        assert_eq!(clean("/.."), "/");
    }

    #[test]
    fn names_are_validated() {
        assert!(validate_name("keyspace", "commerce").is_ok());
        assert!(validate_name("shard", "-80").is_ok());
        for bad in ["", ".", "..", "a/b", "a\nb"] {
            assert!(validate_name("keyspace", bad).is_err(), "{bad:?} accepted");
        }
        assert!(validate_lock_name("customer/commerce2customer").is_ok());
        for bad in ["", "/x", "x/", "a//b", "a/../b"] {
            assert!(validate_lock_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
