//! The `vtmove` command line. It parses arguments and calls into the library; errors from the
//! library are typed, and only turned into `anyhow` here.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

/// vtmove runs Vitess MoveTables workflows declaratively, as Kubernetes resources.
#[derive(Debug, Parser)]
#[command(name = "vtmove", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions (MoveTablesWorkflow, Keyspace) as YAML.
    Crds(CrdsArgs),
    /// Show, without changing anything, the step vtmove would take now for a MoveTablesWorkflow,
    /// in Vitess's dry-run style.
    Plan(PlanArgs),
}

#[derive(Debug, Args)]
struct PlanArgs {
    /// The MoveTablesWorkflow resource (YAML).
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    file: PathBuf,
    /// Topology implementation (only etcd2 reaches a real Vitess).
    #[arg(long, default_value = "etcd2", value_parser = ["etcd2"])]
    topo_implementation: String,
    /// Comma-separated etcd endpoints of the global topology.
    #[arg(long, value_name = "ADDRESSES")]
    topo_global_server_address: String,
    /// Root of the global topology.
    #[arg(long, default_value = "/vitess/global")]
    topo_global_root: String,
}

#[derive(Debug, Args)]
struct CrdsArgs {
    /// Write one file per CRD into DIR (`<plural>.vtmove.dev.yaml`) instead of printing them.
    #[arg(long, value_name = "DIR")]
    output_dir: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crds(args) => crds(args),
        Command::Plan(args) => plan(args),
    }
}

fn plan(args: PlanArgs) -> anyhow::Result<()> {
    use std::sync::Arc;
    use vtmove::api::MoveTablesWorkflow;
    use vtmove::engine::{Desired, Engine, EngineConfig, EngineMemory};
    use vtmove::vitess::tablet::{TabletClient, TabletClientConfig, TabletRpc};
    use vtmove::vitess::topo::{EtcdStore, EtcdStoreOptions, TopoServer, TopoStore};

    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let resource: MoveTablesWorkflow =
        serde_saphyr::from_str(&text).context("parsing the MoveTablesWorkflow")?;
    let name = resource.metadata.name.clone().unwrap_or_default();
    let desired = Desired::from_spec(&resource.spec, &name)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    runtime.block_on(async {
        let timeout = vtmove::vitess::topo::DEFAULT_OP_TIMEOUT;
        let store: Arc<dyn TopoStore> = Arc::new(EtcdStore::new(
            EtcdStoreOptions::from_server_address(&args.topo_global_server_address)
                .with_op_timeout(timeout),
        )?);
        let topo = Arc::new(TopoServer::new(
            store,
            &args.topo_global_root,
            EtcdStore::factory(timeout),
        ));
        let tablets: Arc<dyn TabletRpc> =
            Arc::new(TabletClient::new(TabletClientConfig::default()));
        let engine = Engine::new(topo, tablets, EngineConfig::default());
        let (observed, plan) = engine
            .plan_only(&desired, &EngineMemory::default())
            .await
            .context("observing the workflow")?;
        let rendered = vtmove::engine::dry_run::render(
            &desired,
            &observed,
            &plan,
            std::time::SystemTime::now(),
        );
        let mut stdout = std::io::stdout().lock();
        write!(stdout, "{rendered}").context("writing to stdout")?;
        if let Some(state) = &plan.traffic_state {
            writeln!(stdout, "\nTraffic State: {state}").context("writing to stdout")?;
        }
        anyhow::Ok(())
    })
}

fn crds(args: CrdsArgs) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match args.output_dir {
        Some(dir) => {
            for path in vtmove::api::write_crds(&dir)? {
                writeln!(stdout, "wrote {}", path.display()).context("writing to stdout")?;
            }
        }
        None => {
            let yaml = vtmove::api::crd_yaml()?;
            stdout
                .write_all(yaml.as_bytes())
                .context("writing to stdout")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn crds_takes_an_output_dir() {
        let cli = Cli::try_parse_from(["vtmove", "crds", "--output-dir", "crds"]).unwrap();
        let Command::Crds(args) = cli.command else {
            panic!("expected crds");
        };
        assert_eq!(args.output_dir, Some(PathBuf::from("crds")));
        assert!(Cli::try_parse_from(["vtmove"]).is_err());
    }
}
