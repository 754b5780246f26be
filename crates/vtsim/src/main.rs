//! `vtsim`: runs a simulated tablet fleet against a real etcd topology, for the sandbox and kind.
//!
//! ```text
//! vtsim --topo-global-server-address 127.0.0.1:2379 --topo-global-root /vitess/global \
//!       --layout layout.yaml
//! ```
//!
//! It creates the cells, keyspaces, shards and serving records the layout describes (keeping
//! those that exist), seeds the tables, starts every tablet on a loopback port, prints one line
//! per tablet and runs until interrupted. The whole fleet lives in this one process: streams
//! between keyspaces of two different vtsim processes are not possible.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use vtmove::vitess::topo::{EtcdStore, EtcdStoreOptions, TopoServer, TopoStore};
use vtsim::{Fleet, FleetOptions, Layout};

#[derive(Debug, Parser)]
#[command(
    name = "vtsim",
    about = "A simulated vttablet fleet on a real etcd topology"
)]
struct Args {
    /// Topology implementation (only etcd2 is supported).
    #[arg(long, default_value = "etcd2", alias = "topo_implementation")]
    topo_implementation: String,
    /// Comma-separated etcd endpoints of the global topology.
    #[arg(long, alias = "topo_global_server_address", env = "VTSIM_TOPO_ADDRESS")]
    topo_global_server_address: String,
    /// Root of the global topology.
    #[arg(long, default_value = "/vitess/global", alias = "topo_global_root")]
    topo_global_root: String,
    /// Cell roots are `<prefix>/<cell>` for cells vtsim creates.
    #[arg(long, default_value = "/vitess")]
    cell_root_prefix: String,
    /// Layout file (YAML).
    #[arg(long)]
    layout: std::path::PathBuf,
    /// Host the tablets listen on and register.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    anyhow::ensure!(
        args.topo_implementation == "etcd2",
        "unsupported topology implementation {:?}: vtsim speaks etcd2",
        args.topo_implementation
    );
    let text = std::fs::read_to_string(&args.layout)
        .with_context(|| format!("reading {}", args.layout.display()))?;
    let layout = Layout::from_yaml(&text)?;
    let store: Arc<dyn TopoStore> = Arc::new(EtcdStore::new(
        EtcdStoreOptions::from_server_address(&args.topo_global_server_address),
    )?);
    let topo = Arc::new(TopoServer::new(
        store,
        &args.topo_global_root,
        EtcdStore::factory(Duration::from_secs(10)),
    ));
    let mut options = FleetOptions {
        cell_server_address: args.topo_global_server_address.clone(),
        cell_root_prefix: args.cell_root_prefix.clone(),
        ..FleetOptions::default()
    };
    options.tablet.host = args.host.clone();
    let fleet = Fleet::start(topo, layout, options).await?;
    for t in fleet.tablets() {
        println!(
            "{} {}/{} {} {}",
            t.alias_string(),
            t.keyspace(),
            t.shard(),
            t.tablet_type().as_str_name(),
            t.addr()
        );
    }
    tracing::info!(tablets = fleet.tablets().len(), "Simulated fleet started");
    tokio::signal::ctrl_c().await?;
    fleet.shutdown().await;
    Ok(())
}
