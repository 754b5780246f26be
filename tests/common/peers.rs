//! The real peers the tests are judged by (kube-apiserver, vtctldclient, vtgate, the Vitess lock
//! holder), located through `scripts/peers --list`. The tests never build them (a cold build
//! takes tens of minutes; `.ci/run` runs `scripts/peers --check` first): a missing peer fails the
//! test with the command that builds it, never a skip.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The path of the peer binary `name` (as `scripts/peers` names it). Panics, saying how to
/// build it, when it is missing.
pub fn peer(name: &str) -> PathBuf {
    static PEERS: OnceLock<BTreeMap<String, PathBuf>> = OnceLock::new();
    let peers = PEERS.get_or_init(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/peers");
        let output = Command::new(script)
            .arg("--list")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
        assert!(
            output.status.success(),
            "scripts/peers --list failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                let name = fields.next()?;
                let _version = fields.next()?;
                Some((name.to_owned(), PathBuf::from(fields.next()?)))
            })
            .collect()
    });
    let path = peers
        .get(name)
        .unwrap_or_else(|| panic!("scripts/peers does not know a peer named {name}"))
        .clone();
    assert!(
        path.is_file(),
        "the real peer {name} is missing at {}: run `scripts/peers` (a cold build takes tens of \
         minutes on two cores). Tests that need a peer never skip.",
        path.display()
    );
    path
}
