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
    /// Print the resource reference (every spec and status field) as Markdown.
    Reference,
    /// Show, without changing anything, every step vtmove would take from the observed state to a
    /// MoveTablesWorkflow's spec, each in Vitess's dry-run style.
    Plan(Box<PlanArgs>),
    /// Run the operator: reconcile MoveTablesWorkflow and Keyspace resources against the Vitess
    /// topology.
    Run(Box<RunArgs>),
}

/// Topology implementation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum TopoImplementation {
    /// Vitess's etcd2 topology.
    Etcd2,
    /// An empty in-process topology (for trying vtmove out; nothing reaches a real Vitess).
    Memory,
}

/// TLS to etcd and to the tablets, the same for `vtmove run` and `vtmove plan`.
#[derive(Debug, Args)]
struct TlsArgs {
    /// CA certificate (PEM) of the etcd servers; turns TLS on.
    #[arg(long, value_name = "FILE")]
    topo_etcd_tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for etcd. Needs the CA: vtmove has no root store, so without it
    /// no etcd server would be trusted.
    #[arg(long, value_name = "FILE", requires_all = ["topo_etcd_tls_key", "topo_etcd_tls_ca"])]
    topo_etcd_tls_cert: Option<PathBuf>,
    /// Client key (PEM) for etcd.
    #[arg(long, value_name = "FILE", requires_all = ["topo_etcd_tls_cert", "topo_etcd_tls_ca"])]
    topo_etcd_tls_key: Option<PathBuf>,
    /// CA certificate (PEM) of the tablets' gRPC servers; turns TLS on.
    #[arg(long, value_name = "FILE")]
    tablet_manager_grpc_ca: Option<PathBuf>,
    /// Client certificate (PEM) for tablets. Needs the CA: without it the connection would be
    /// plaintext.
    #[arg(long, value_name = "FILE", requires_all = ["tablet_manager_grpc_key", "tablet_manager_grpc_ca"])]
    tablet_manager_grpc_cert: Option<PathBuf>,
    /// Client key (PEM) for tablets.
    #[arg(long, value_name = "FILE", requires_all = ["tablet_manager_grpc_cert", "tablet_manager_grpc_ca"])]
    tablet_manager_grpc_key: Option<PathBuf>,
    /// Name to verify the tablets' certificates against (needs the CA).
    #[arg(long, value_name = "NAME", requires = "tablet_manager_grpc_ca")]
    tablet_manager_grpc_server_name: Option<String>,
}

impl TlsArgs {
    /// Adds the etcd TLS settings to `options`, reading the PEM files.
    fn etcd(
        &self,
        options: vtmove::vitess::topo::EtcdStoreOptions,
    ) -> anyhow::Result<vtmove::vitess::topo::EtcdStoreOptions> {
        if self.topo_etcd_tls_ca.is_none() && self.topo_etcd_tls_cert.is_none() {
            return Ok(options);
        }
        let ca_pem = match &self.topo_etcd_tls_ca {
            Some(p) => Some(read_pem(
                p,
                "etcd CA certificate",
                "--topo-etcd-tls-ca",
                Pem::Certificates,
            )?),
            None => None,
        };
        let identity = match (&self.topo_etcd_tls_cert, &self.topo_etcd_tls_key) {
            (Some(c), Some(k)) => Some((
                read_pem(
                    c,
                    "etcd client certificate",
                    "--topo-etcd-tls-cert",
                    Pem::Certificates,
                )?,
                read_pem(k, "etcd client key", "--topo-etcd-tls-key", Pem::PrivateKey)?,
            )),
            _ => None,
        };
        Ok(options.with_tls(vtmove::vitess::topo::EtcdTls { ca_pem, identity }))
    }

    /// The tablet client settings, reading the PEM files.
    fn tablets(&self) -> anyhow::Result<vtmove::vitess::tablet::TabletClientConfig> {
        let mut tablets = vtmove::vitess::tablet::TabletClientConfig::default();
        if let Some(ca) = &self.tablet_manager_grpc_ca {
            let client_identity = match (
                &self.tablet_manager_grpc_cert,
                &self.tablet_manager_grpc_key,
            ) {
                (Some(c), Some(k)) => Some((
                    read_pem(
                        c,
                        "tablet client certificate",
                        "--tablet-manager-grpc-cert",
                        Pem::Certificates,
                    )?,
                    read_pem(
                        k,
                        "tablet client key",
                        "--tablet-manager-grpc-key",
                        Pem::PrivateKey,
                    )?,
                )),
                _ => None,
            };
            tablets.tls = Some(vtmove::vitess::tablet::TlsOptions {
                ca_pem: read_pem(
                    ca,
                    "tablet CA certificate",
                    "--tablet-manager-grpc-ca",
                    Pem::Certificates,
                )?,
                client_identity,
                server_name: self.tablet_manager_grpc_server_name.clone(),
            });
        }
        Ok(tablets)
    }
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Topology implementation.
    #[arg(long, value_enum, default_value = "etcd2")]
    topo_implementation: TopoImplementation,
    /// Comma-separated etcd endpoints of the global topology (required for etcd2).
    #[arg(
        long,
        value_name = "ADDRESSES",
        required_if_eq("topo_implementation", "etcd2")
    )]
    topo_global_server_address: Option<String>,
    /// Root of the global topology.
    #[arg(long, default_value = "/vitess/global")]
    topo_global_root: String,
    #[command(flatten)]
    tls: TlsArgs,
    /// Namespace to watch; repeat for several; none watches all namespaces.
    #[arg(long = "namespace", value_name = "NAMESPACE")]
    namespaces: Vec<String>,
    /// Resources of one kind reconciled at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    concurrency: u16,
    /// Let MoveTablesWorkflows name keyspaces that no Keyspace resource claims. For
    /// single-tenant installs only: without it, a workflow may name only keyspaces claimed by a
    /// Keyspace resource in its own namespace.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    allow_unclaimed_keyspaces: bool,
    /// Address of /metrics, /healthz and /readyz (no authentication: limit who can reach it).
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_address: std::net::SocketAddr,
    /// Publish row data in workflow status and Events: copy bookmarks' last primary keys and
    /// values quoted in MySQL errors. Off: anyone who may read a workflow sees progress, not data.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    publish_row_data: bool,
    /// Campaign for a Lease and reconcile only while holding it (needed with several replicas).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Before starting, ask the API server (SelfSubjectAccessReview) for every permission vtmove
    /// needs, and stop naming the missing ones. Off: start anyway and let calls fail with 403.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    check_permissions: bool,
    /// Namespace of the leader Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    leader_election_namespace: String,
    /// Name of the leader Lease.
    #[arg(long, default_value = "vtmove")]
    leader_election_lease_name: String,
    /// This replica's identity in the Lease (the pod name).
    #[arg(long, env = "POD_NAME")]
    leader_election_identity: Option<String>,
    /// Log format.
    #[arg(long, value_enum, default_value = "json")]
    log_format: vtmove::ops::LogFormat,
    /// Log filter (`info`, `vtmove=debug`, ...); RUST_LOG overrides it.
    #[arg(long, default_value = "info")]
    log_level: String,
    /// How often a converged resource is looked at again.
    #[arg(long, default_value = "5m", value_parser = parse_duration_flag)]
    resync_period: std::time::Duration,
    /// How long each watch of the Kubernetes API server lasts before the server ends it and
    /// vtmove starts the next (1s to 290s).
    #[arg(long, default_value = "290s", value_parser = parse_watch_timeout)]
    watch_timeout: std::time::Duration,
    /// Pause between the two LOCK TABLES flush cycles of a write cutover (Vitess uses 100ms).
    #[arg(long, default_value = "100ms", value_parser = parse_duration_flag)]
    cutover_flush_delay: std::time::Duration,
    /// Lease TTL of the Vitess locks vtmove takes (whole seconds). vtmove renews its leases every
    /// third of it and checks them before every mutation, so a short TTL costs a live holder
    /// nothing and frees the locks of a crashed vtmove sooner.
    #[arg(long, default_value = "10s", value_parser = parse_duration_flag)]
    lock_ttl: std::time::Duration,
    /// How long taking a lock may wait, queueing behind other holders included (Vitess's
    /// `--lock-timeout`).
    #[arg(long, default_value = "45s", value_parser = parse_duration_flag)]
    lock_timeout: std::time::Duration,
}

fn parse_duration_flag(value: &str) -> Result<std::time::Duration, String> {
    vtmove::api::parse_duration(value).map_err(|e| e.to_string())
}

fn parse_watch_timeout(value: &str) -> Result<std::time::Duration, String> {
    let timeout = parse_duration_flag(value)?;
    if (1..=290).contains(&timeout.as_secs()) {
        Ok(timeout)
    } else {
        Err(format!(
            "{value}: a watch timeout is between 1s and 290s (the client gives up on a call at 295s)"
        ))
    }
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
    #[command(flatten)]
    tls: TlsArgs,
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
        Command::Reference => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(vtmove::api::reference::reference_markdown().as_bytes())
                .context("writing to stdout")
        }
        Command::Plan(args) => plan(*args),
        Command::Run(args) => run(*args),
    }
}

/// What a TLS file must hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pem {
    /// One or more certificates (a CA, or a certificate chain).
    Certificates,
    /// A private key.
    PrivateKey,
}

/// Reads the PEM file given to `flag` and checks it holds `kind`. TLS libraries take a CA file
/// without a certificate as an empty trust store (every server then fails as `UnknownIssuer`),
/// and a bad key fails only when a connection is made: both are said here, at startup.
fn read_pem(path: &std::path::Path, what: &str, flag: &str, kind: Pem) -> anyhow::Result<Vec<u8>> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};

    let pem = std::fs::read(path)
        .with_context(|| format!("reading the {what} {} ({flag})", path.display()))?;
    let problem = match kind {
        Pem::Certificates => {
            let mut found = 0;
            let mut bad = None;
            for item in CertificateDer::pem_slice_iter(&pem) {
                match item {
                    Ok(_) => found += 1,
                    Err(e) => {
                        bad = Some(e.to_string());
                        break;
                    }
                }
            }
            match bad {
                Some(e) => Some(format!("unreadable PEM: {e}")),
                None if found == 0 => Some("no PEM certificate in it".to_owned()),
                None => None,
            }
        }
        Pem::PrivateKey => match PrivateKeyDer::from_pem_slice(&pem) {
            Ok(_) => None,
            Err(rustls_pki_types::pem::Error::NoItemsFound) => {
                Some("no PEM private key in it".to_owned())
            }
            Err(e) => Some(format!("unreadable PEM: {e}")),
        },
    };
    match problem {
        Some(problem) => anyhow::bail!("the {what} {} ({flag}): {problem}", path.display()),
        None => Ok(pem),
    }
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    use vtmove::controller::operator::{
        LeaderSettings, OperatorOptions, TopologySource, start_operator,
    };
    use vtmove::controller::wiring::NamespaceScope;
    use vtmove::vitess::topo::{EtcdStoreOptions, MemoryStore};

    vtmove::ops::logging::init(args.log_format, &args.log_level).context("setting up logging")?;
    let topology = match args.topo_implementation {
        TopoImplementation::Etcd2 => {
            let address = args
                .topo_global_server_address
                .as_deref()
                .context("--topo-global-server-address is required with etcd2")?;
            let options = args
                .tls
                .etcd(EtcdStoreOptions::from_server_address(address))?;
            TopologySource::Etcd {
                options,
                root: args.topo_global_root.clone(),
            }
        }
        TopoImplementation::Memory => TopologySource::Memory {
            store: MemoryStore::new(),
            root: args.topo_global_root.clone(),
        },
    };
    let tablets = args.tls.tablets()?;
    let identity = args
        .leader_election_identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("vtmove-{}", std::process::id()));
    let leader = args.leader_election.then(|| LeaderSettings {
        namespace: args.leader_election_namespace.clone(),
        lease_name: args.leader_election_lease_name.clone(),
        identity: identity.clone(),
        options: vtmove::ops::LeaderOptions::default(),
    });
    let engine = vtmove::engine::EngineConfig {
        flush_delay: args.cutover_flush_delay,
        ..Default::default()
    };
    let options = OperatorOptions {
        topology,
        tablets,
        engine,
        locks: vtmove::vitess::topo::LockOptions {
            ttl: args.lock_ttl,
            acquire_timeout: args.lock_timeout,
        },
        settings: vtmove::controller::ControllerSettings {
            resync_period: args.resync_period,
            concurrency: args.concurrency,
            publish_row_data: args.publish_row_data,
            allow_unclaimed_keyspaces: args.allow_unclaimed_keyspaces,
            watch_timeout: args.watch_timeout,
            ..Default::default()
        },
        scope: NamespaceScope::from_list(args.namespaces.clone()),
        metrics_address: Some(args.metrics_address),
        leader,
        reporter: kube::runtime::events::Reporter {
            controller: "vtmove".to_string(),
            instance: Some(identity),
        },
    };
    let access = if args.check_permissions {
        vtmove::rbac::access_checks(
            &args.namespaces,
            args.leader_election
                .then_some(args.leader_election_namespace.as_str()),
        )
    } else {
        Vec::new()
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    runtime.block_on(async move {
        let client = kube::Client::try_default()
            .await
            .context("connecting to the Kubernetes API server (in-cluster or KUBECONFIG)")?;
        // A missing grant stops vtmove here, naming it, rather than leaving the controllers
        // retrying 403s.
        let missing =
            vtmove::rbac::missing_permissions(&client, &access, std::time::Duration::from_secs(10))
                .await
                .context("checking vtmove's permissions")?;
        if !missing.is_empty() {
            for check in &missing {
                tracing::error!(%check, "Missing permission");
            }
            anyhow::bail!(
                "vtmove lacks {} permission(s) it needs (grant them, as the Helm chart's \
                 ClusterRole and Roles do):\n  {}",
                missing.len(),
                missing
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n  ")
            );
        }
        let shutdown = tokio_util::sync::CancellationToken::new();
        let operator = start_operator(options, client, shutdown.clone()).await?;
        tracing::info!(
            metrics = ?operator.metrics_address,
            "Started vtmove"
        );
        vtmove::ops::shutdown_signal().await;
        tracing::info!("Shutting down");
        shutdown.cancel();
        // Let reconciles in flight finish and the Lease be released.
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        anyhow::Ok(())
    })
}

fn plan(args: PlanArgs) -> anyhow::Result<()> {
    use std::sync::Arc;
    use vtmove::api::MoveTablesWorkflow;
    use vtmove::engine::{Desired, Engine, EngineConfig, EngineMemory};
    use vtmove::vitess::tablet::{TabletClient, TabletRpc};
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
        let options = args.tls.etcd(
            EtcdStoreOptions::from_server_address(&args.topo_global_server_address)
                .with_op_timeout(timeout),
        )?;
        let store: Arc<dyn TopoStore> = Arc::new(EtcdStore::new(options.clone())?);
        // Cells are reached with the global store's TLS, as `vtmove run` and Vitess reach them.
        let topo = Arc::new(TopoServer::new(
            store,
            &args.topo_global_root,
            EtcdStore::factory_like(&options),
        ));
        let tablets: Arc<dyn TabletRpc> = Arc::new(TabletClient::new(args.tls.tablets()?));
        let engine = Engine::new(topo, tablets, EngineConfig::default());
        let (observed, plan) = engine
            .plan_only(&desired, &EngineMemory::default())
            .await
            .context("observing the workflow")?;
        // Every step from the observed state to the spec, planned pass by pass on a predicted
        // state; nothing is written to Vitess.
        let preview = vtmove::engine::preview::preview(
            &desired,
            &observed,
            &EngineMemory::default(),
            std::time::SystemTime::now(),
        );
        let mut stdout = std::io::stdout().lock();
        write!(stdout, "{preview}").context("writing to stdout")?;
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
    fn run_takes_the_charts_flags() {
        let cli = Cli::try_parse_from([
            "vtmove",
            "run",
            "--topo-implementation=etcd2",
            "--topo-global-server-address=etcd-a:2379,etcd-b:2379",
            "--topo-global-root=/vitess/global",
            "--namespace=a",
            "--namespace=b",
            "--concurrency=4",
            "--metrics-address=0.0.0.0:8080",
            "--leader-election=true",
            "--leader-election-namespace=vtmove",
            "--leader-election-lease-name=vtmove",
            "--leader-election-identity=pod-0",
            "--log-format=json",
            "--log-level=info",
            "--resync-period=5m",
            "--allow-unclaimed-keyspaces=false",
        ])
        .expect("parses");
        let Command::Run(args) = cli.command else {
            panic!("expected run");
        };
        assert!(!args.allow_unclaimed_keyspaces);
        assert_eq!(args.namespaces, vec!["a", "b"]);
        assert_eq!(args.resync_period, std::time::Duration::from_secs(300));
        assert!(args.leader_election);
        assert!(args.check_permissions, "on unless turned off");
        // A half TLS identity is refused.
        assert!(
            Cli::try_parse_from([
                "vtmove",
                "run",
                "--topo-global-server-address=x:1",
                "--topo-etcd-tls-cert=c.pem",
            ])
            .is_err()
        );
        assert!(Cli::try_parse_from(["vtmove", "run", "--topo-implementation=memory"]).is_ok());
        // Tablet TLS settings without the CA would leave the connection in plaintext: refused,
        // naming the missing flag.
        for partial in [
            vec![
                "--tablet-manager-grpc-cert=c.pem",
                "--tablet-manager-grpc-key=k.pem",
            ],
            vec!["--tablet-manager-grpc-server-name=vttablet"],
        ] {
            let mut argv = vec!["vtmove", "run", "--topo-implementation=memory"];
            argv.extend(partial.iter().copied());
            let error = match Cli::try_parse_from(&argv) {
                Ok(_) => panic!("{partial:?} was accepted without a CA"),
                Err(e) => e.to_string(),
            };
            assert!(error.contains("--tablet-manager-grpc-ca"), "{error}");
        }
        assert!(
            Cli::try_parse_from([
                "vtmove",
                "run",
                "--topo-implementation=memory",
                "--tablet-manager-grpc-ca=ca.pem",
                "--tablet-manager-grpc-server-name=vttablet",
            ])
            .is_ok()
        );
    }

    /// Every partial TLS setting of either group is refused at startup, naming a missing flag;
    /// a CA alone (server-authenticated TLS) and the complete groups are accepted.
    #[test]
    fn partial_tls_settings_name_the_missing_flag() {
        let refused: [(&[&str], &str); 10] = [
            // etcd: half an identity, or an identity without the CA (no root store: no etcd
            // server would be trusted; tests/tls.rs shows it).
            (&["--topo-etcd-tls-cert=c.pem"], "--topo-etcd-tls-key"),
            (&["--topo-etcd-tls-key=k.pem"], "--topo-etcd-tls-cert"),
            (
                &["--topo-etcd-tls-cert=c.pem", "--topo-etcd-tls-key=k.pem"],
                "--topo-etcd-tls-ca",
            ),
            (
                &["--topo-etcd-tls-ca=ca.pem", "--topo-etcd-tls-cert=c.pem"],
                "--topo-etcd-tls-key",
            ),
            (
                &["--topo-etcd-tls-ca=ca.pem", "--topo-etcd-tls-key=k.pem"],
                "--topo-etcd-tls-cert",
            ),
            // Tablets: half an identity, with or without the CA.
            (
                &["--tablet-manager-grpc-cert=c.pem"],
                "--tablet-manager-grpc-key",
            ),
            (
                &["--tablet-manager-grpc-key=k.pem"],
                "--tablet-manager-grpc-cert",
            ),
            (
                &[
                    "--tablet-manager-grpc-ca=ca.pem",
                    "--tablet-manager-grpc-cert=c.pem",
                ],
                "--tablet-manager-grpc-key",
            ),
            (
                &[
                    "--tablet-manager-grpc-ca=ca.pem",
                    "--tablet-manager-grpc-key=k.pem",
                ],
                "--tablet-manager-grpc-cert",
            ),
            (
                &[
                    "--tablet-manager-grpc-key=k.pem",
                    "--tablet-manager-grpc-server-name=vttablet",
                ],
                "--tablet-manager-grpc-ca",
            ),
        ];
        for command in ["run", "plan"] {
            let base: Vec<&str> = match command {
                "run" => vec!["vtmove", "run", "--topo-global-server-address=etcd:2379"],
                _ => vec![
                    "vtmove",
                    "plan",
                    "-f",
                    "wf.yaml",
                    "--topo-global-server-address=etcd:2379",
                ],
            };
            for (partial, missing) in refused {
                let mut argv = base.clone();
                argv.extend(partial.iter().copied());
                let error = match Cli::try_parse_from(&argv) {
                    Ok(_) => panic!("{command} accepted {partial:?}"),
                    Err(e) => e.to_string(),
                };
                assert!(
                    error.contains(missing),
                    "{command} {partial:?}: the error should name {missing}: {error}"
                );
            }
            let accepted: [&[&str]; 4] = [
                &["--topo-etcd-tls-ca=ca.pem"],
                &[
                    "--topo-etcd-tls-ca=ca.pem",
                    "--topo-etcd-tls-cert=c.pem",
                    "--topo-etcd-tls-key=k.pem",
                ],
                &["--tablet-manager-grpc-ca=ca.pem"],
                &[
                    "--tablet-manager-grpc-ca=ca.pem",
                    "--tablet-manager-grpc-cert=c.pem",
                    "--tablet-manager-grpc-key=k.pem",
                    "--tablet-manager-grpc-server-name=vttablet",
                ],
            ];
            for complete in accepted {
                let mut argv = base.clone();
                argv.extend(complete.iter().copied());
                if let Err(e) = Cli::try_parse_from(&argv) {
                    panic!("{command} refused {complete:?}: {e}");
                }
            }
        }
    }

    /// A TLS file that does not hold what its flag says (no certificate in a CA or certificate
    /// file, no private key in a key file, a broken PEM block, a missing file) is a startup error
    /// naming the flag, for etcd and for the tablets; the right files are accepted.
    #[test]
    fn tls_files_must_hold_what_their_flag_says() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let generated =
            rcgen::generate_simple_self_signed(vec!["vtmove".to_owned()]).expect("a certificate");
        let file = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("writing a test file");
            path.display().to_string()
        };
        let cert = file("cert.pem", &generated.cert.pem());
        let key = file("key.pem", &generated.signing_key.serialize_pem());
        let empty = file("empty.pem", "");
        let broken = file(
            "broken.pem",
            "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
        );
        let missing = dir.path().join("missing.pem").display().to_string();
        let (cert, key, empty, broken, missing) = (
            cert.as_str(),
            key.as_str(),
            empty.as_str(),
            broken.as_str(),
            missing.as_str(),
        );

        let check = |flags: [(&str, &str); 3]| -> anyhow::Result<()> {
            let mut argv = vec![
                "vtmove".to_owned(),
                "run".to_owned(),
                "--topo-global-server-address=etcd:2379".to_owned(),
            ];
            argv.extend(flags.iter().map(|(flag, path)| format!("{flag}={path}")));
            let cli = Cli::try_parse_from(&argv).expect("parses");
            let Command::Run(args) = cli.command else {
                panic!("expected run");
            };
            args.tls
                .etcd(vtmove::vitess::topo::EtcdStoreOptions::from_server_address(
                    "etcd:2379",
                ))?;
            args.tls.tablets()?;
            Ok(())
        };
        for (ca, cert_flag, key_flag) in [
            (
                "--topo-etcd-tls-ca",
                "--topo-etcd-tls-cert",
                "--topo-etcd-tls-key",
            ),
            (
                "--tablet-manager-grpc-ca",
                "--tablet-manager-grpc-cert",
                "--tablet-manager-grpc-key",
            ),
        ] {
            check([(ca, cert), (cert_flag, cert), (key_flag, key)])
                .unwrap_or_else(|e| panic!("{ca}: the right files are refused: {e:#}"));
            let wrong = [
                (
                    [(ca, key), (cert_flag, cert), (key_flag, key)],
                    ca,
                    "no PEM certificate",
                ),
                (
                    [(ca, empty), (cert_flag, cert), (key_flag, key)],
                    ca,
                    "no PEM certificate",
                ),
                (
                    [(ca, broken), (cert_flag, cert), (key_flag, key)],
                    ca,
                    "unreadable PEM",
                ),
                (
                    [(ca, missing), (cert_flag, cert), (key_flag, key)],
                    ca,
                    "reading",
                ),
                (
                    [(ca, cert), (cert_flag, key), (key_flag, key)],
                    cert_flag,
                    "no PEM certificate",
                ),
                (
                    [(ca, cert), (cert_flag, cert), (key_flag, cert)],
                    key_flag,
                    "no PEM private key",
                ),
                (
                    [(ca, cert), (cert_flag, cert), (key_flag, empty)],
                    key_flag,
                    "no PEM private key",
                ),
            ];
            for (flags, named, problem) in wrong {
                let error = match check(flags) {
                    Ok(()) => panic!("accepted {flags:?}"),
                    Err(e) => format!("{e:#}"),
                };
                assert!(
                    error.contains(named) && error.contains(problem),
                    "{flags:?}: the error should name {named} and say {problem:?}: {error}"
                );
            }
        }
    }

    /// `vtmove plan` reaches the same etcd and tablets as `vtmove run`, so it takes the same TLS
    /// flags, with the same refusal of a tablet TLS setting without its CA.
    #[test]
    fn plan_takes_the_tls_flags_of_run() {
        let cli = Cli::try_parse_from([
            "vtmove",
            "plan",
            "-f",
            "wf.yaml",
            "--topo-global-server-address=etcd:2379",
            "--topo-etcd-tls-ca=etcd-ca.pem",
            "--topo-etcd-tls-cert=etcd.pem",
            "--topo-etcd-tls-key=etcd.key",
            "--tablet-manager-grpc-ca=ca.pem",
            "--tablet-manager-grpc-server-name=vttablet",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let Command::Plan(args) = cli.command else {
            panic!("expected plan");
        };
        assert_eq!(
            args.tls.tablet_manager_grpc_ca.as_deref(),
            Some(std::path::Path::new("ca.pem"))
        );
        assert_eq!(
            args.tls.topo_etcd_tls_key.as_deref(),
            Some(std::path::Path::new("etcd.key"))
        );
        let error = match Cli::try_parse_from([
            "vtmove",
            "plan",
            "-f",
            "wf.yaml",
            "--topo-global-server-address=etcd:2379",
            "--tablet-manager-grpc-server-name=vttablet",
        ]) {
            Ok(_) => panic!("a server name without a CA was accepted"),
            Err(e) => e.to_string(),
        };
        assert!(error.contains("--tablet-manager-grpc-ca"), "{error}");
    }

    #[test]
    fn watch_timeout_stays_below_the_clients_call_timeout() {
        let parse = |value: &str| {
            Cli::try_parse_from([
                "vtmove",
                "run",
                "--topo-implementation=memory",
                &format!("--watch-timeout={value}"),
            ])
            .map(|cli| match cli.command {
                Command::Run(args) => args.watch_timeout,
                _ => panic!("expected run"),
            })
        };
        assert_eq!(parse("10s").ok(), Some(std::time::Duration::from_secs(10)));
        assert_eq!(
            parse("290s").ok(),
            Some(std::time::Duration::from_secs(290))
        );
        assert!(parse("300s").is_err());
        assert!(parse("500ms").is_err());
    }

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
