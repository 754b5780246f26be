//! `kube-sim`: runs the in-memory Kubernetes API server standalone, for playing with
//! kubectl or running a controller by hand. Prints the kubeconfig path and server URL,
//! then serves until interrupted.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Command-line options.
#[derive(Parser, Debug)]
#[command(
    name = "kube-sim",
    version,
    about = "An in-memory Kubernetes API server on loopback HTTP (test and playground infrastructure)"
)]
struct Args {
    /// Where to write the kubeconfig pointing at the server.
    #[arg(long, env = "KUBE_SIM_KUBECONFIG")]
    kubeconfig: PathBuf,
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// How many changes the watch history keeps before resumes get 410 Gone.
    #[arg(long, default_value_t = 10_000)]
    history_limit: usize,
    /// Seconds between watch bookmarks.
    #[arg(long, default_value_t = 60)]
    bookmark_interval_secs: u64,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let options = kube_sim::Options {
        port: args.port,
        kubeconfig: Some(args.kubeconfig),
        history_limit: args.history_limit,
        bookmark_interval: Duration::from_secs(args.bookmark_interval_secs.max(1)),
        ..Default::default()
    };
    let handle = match kube_sim::KubeSim::start(options).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("kube-sim: cannot start: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("kubeconfig: {}", handle.kubeconfig_path().display());
    println!("server: {}", handle.url());
    if tokio::signal::ctrl_c().await.is_err() {
        eprintln!("kube-sim: cannot listen for Ctrl-C; stopping");
    }
    handle.shutdown().await;
    std::process::ExitCode::SUCCESS
}
