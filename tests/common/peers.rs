//! The real peers the tests are judged by (kube-apiserver, vtctldclient, vtgate, the Vitess lock
//! holder), located through `scripts/peers --check`, which builds what is missing into its cache
//! and fails with a clear message when a peer cannot be had. A test that needs a peer fails,
//! never skips, when it is absent.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The path of the peer binary `name` (as `scripts/peers` names it). Panics with the script's
/// own message when the peers are not available.
pub fn peer(name: &str) -> PathBuf {
    static PEERS: OnceLock<BTreeMap<String, PathBuf>> = OnceLock::new();
    let peers = PEERS.get_or_init(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/peers");
        let output = Command::new(script)
            .arg("--check")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
        assert!(
            output.status.success(),
            "the real peers are not available (run scripts/peers):\n{}",
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
    peers
        .get(name)
        .unwrap_or_else(|| panic!("scripts/peers does not know a peer named {name}"))
        .clone()
}
