//! `vtmove-sandbox`: vtmove's local playground (not the product; see the library docs and
//! README.md). Starts kube-sim, a topology, a vtsim fleet and the operator in one process,
//! applies the examples and plays a scenario, or stays up for `kubectl` experiments.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use vtmove_sandbox::{Sandbox, SandboxOptions, Scenario};

#[derive(Debug, Parser)]
#[command(
    name = "vtmove-sandbox",
    about = "vtmove's local playground: kube-sim + topology + vtsim fleet + the operator, playing a MoveTables scenario"
)]
struct Args {
    /// Where to write the kubeconfig for kubectl.
    #[arg(long, default_value = "sandbox.kubeconfig")]
    kubeconfig: PathBuf,
    /// Spawn a real etcd for the topology (default: in-memory).
    #[arg(long)]
    etcd: bool,
    /// The scenario to play.
    #[arg(long, value_enum, default_value_t = Scenario::Lifecycle)]
    scenario: Scenario,
    /// Set everything up, play no scenario, and keep running until Ctrl-C.
    #[arg(long, conflicts_with = "scenario")]
    interactive: bool,
    /// Another fleet layout (YAML) instead of examples/sandbox/layout.yaml.
    #[arg(long)]
    layout: Option<PathBuf>,
    /// Probe writes per second.
    #[arg(long, default_value_t = 100)]
    write_rate: u32,
    /// Seconds the complete-keep-data scenario watches the Keyspaces under driftPolicy Repair.
    #[arg(long, default_value_t = 60)]
    drift_watch_secs: u64,
    /// Also write through the real vtgate that scripts/peers built (needs --etcd); the report
    /// shows its figures beside the model probe's.
    #[arg(long, requires = "etcd")]
    vtgate: bool,
    /// The vtgate binary to use with --vtgate (default: the one scripts/peers built).
    #[arg(long, requires = "vtgate")]
    vtgate_binary: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .init();
    let args = Args::parse();
    // A signal ends the run by dropping it, which stops the operator, the fleet and etcd and
    // removes their temporary directories (SIGTERM as well as Ctrl-C).
    let outcome = tokio::select! {
        outcome = run(args) => outcome,
        () = vtmove::ops::shutdown_signal() => {
            eprintln!("vtmove-sandbox: stopped by a signal");
            Ok(true)
        }
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("vtmove-sandbox: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Whether the scenario passed (interactive runs pass when they end cleanly).
async fn run(args: Args) -> anyhow::Result<bool> {
    let mut options = SandboxOptions::new(&args.kubeconfig);
    options.etcd = args.etcd;
    options.write_rate = args.write_rate;
    options.drift_watch = std::time::Duration::from_secs(args.drift_watch_secs);
    if args.vtgate {
        options.vtgate = Some(match args.vtgate_binary {
            Some(path) => path,
            None => vtmove_sandbox::vtgate::built_vtgate()?,
        });
    }
    if let Some(path) = &args.layout {
        options.layout_yaml = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    }
    let sandbox = Sandbox::start(options).await?;
    if args.interactive {
        sandbox.interactive().await?;
        return Ok(true);
    }
    println!("scenario: {:?}", args.scenario);
    let report = sandbox.play(args.scenario).await?;
    print!("{}", report.summary());
    Ok(report.passed())
}
