//! TLS end to end: vtmove's etcd store against the vendored etcd serving mutual TLS, with the
//! settings `vtmove run` builds from `--topo-etcd-tls-ca/cert/key`, and vtmove's tablet client
//! against vtsim tablets serving TLS, with the settings built from
//! `--tablet-manager-grpc-ca/cert/key/server-name`; then the `vtmove plan` and `vtmove run`
//! binaries with those flags, over TLS to both. Certificates are generated at test time (rcgen)
//! into a temporary directory; no key is committed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use vtmove::testing::{LocalEtcd, LocalEtcdTls};
use vtmove::vitess::proto::topodata::{CellInfo, Keyspace};
use vtmove::vitess::tablet::{
    TabletAddr, TabletClient, TabletClientConfig, TabletError, TabletRpc, TlsOptions,
};
use vtmove::vitess::topo::{
    EtcdStore, EtcdStoreOptions, EtcdTls, MemoryStore, TopoError, TopoServer, TopoStore,
};

/// A certificate authority made for one test.
struct Ca {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate and its key, in PEM.
struct Leaf {
    cert_pem: String,
    key_pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("CA certificate");
        Ca {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for `names` (DNS names or IP addresses), usable by servers and clients.
    fn leaf(&self, common_name: &str, names: &[&str]) -> Leaf {
        let key = KeyPair::generate().expect("leaf key");
        let mut params = CertificateParams::new(
            names
                .iter()
                .map(|n| (*n).to_owned())
                .collect::<Vec<String>>(),
        )
        .expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

fn write(dir: &Path, name: &str, pem: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, pem).expect("writing a PEM file");
    path
}

/// The etcd store options `vtmove run --topo-global-server-address <addr>` builds with the
/// given TLS flags (`TlsArgs::etcd` in src/main.rs): a bare `host:port`, turned into https.
fn run_options(address: &str, tls: EtcdTls) -> EtcdStoreOptions {
    let mut options = EtcdStoreOptions::from_server_address(address).with_tls(tls);
    options.connect_timeout = Duration::from_secs(3);
    options.with_op_timeout(Duration::from_secs(3))
}

/// `host:port` of an `https://host:port` endpoint.
fn bare(endpoint: &str) -> &str {
    endpoint
        .strip_prefix("https://")
        .expect("a TLS etcd has an https endpoint")
}

/// A TLS etcd requiring client certificates signed by `client_ca`, with its server certificate
/// signed by `server_ca`.
struct TlsEtcd {
    etcd: LocalEtcd,
    _dir: tempfile::TempDir,
}

async fn tls_etcd(server_ca: &Ca, client_ca: &Ca, probe_client: &Leaf) -> TlsEtcd {
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = server_ca.leaf("etcd", &["127.0.0.1", "localhost"]);
    let tls = LocalEtcdTls {
        cert_file: write(dir.path(), "server.crt", &server.cert_pem),
        key_file: write(dir.path(), "server.key", &server.key_pem),
        client_ca_file: Some(write(dir.path(), "client-ca.crt", &client_ca.cert_pem)),
        client: EtcdTls {
            ca_pem: Some(server_ca.cert_pem.clone().into_bytes()),
            identity: Some((
                probe_client.cert_pem.clone().into_bytes(),
                probe_client.key_pem.clone().into_bytes(),
            )),
        },
    };
    let etcd = LocalEtcd::start_tls(tls)
        .await
        .expect("etcd with TLS must start");
    assert!(
        etcd.endpoint().starts_with("https://"),
        "{}",
        etcd.endpoint()
    );
    TlsEtcd { etcd, _dir: dir }
}

/// How long a refused TLS connection may take to be reported: the connect timeout (3 s) plus
/// slack. A hang would blow through it.
const REFUSAL_DEADLINE: Duration = Duration::from_secs(8);

/// Over mutual TLS, with the settings `vtmove run` builds from `--topo-etcd-tls-ca/cert/key`,
/// vtmove's etcd store writes and reads a keyspace record, takes and checks a keyspace lock, and
/// reaches a cell registered with a bare address; a plaintext client on the port is refused in
/// time.
#[tokio::test]
async fn etcd_over_mutual_tls_writes_reads_and_locks() {
    let ca = Ca::new("vtmove test CA");
    let client = ca.leaf("vtmove", &[]);
    let server = tls_etcd(&ca, &ca, &client).await;
    let address = bare(server.etcd.endpoint()).to_owned();

    let options = run_options(
        &address,
        EtcdTls {
            ca_pem: Some(ca.cert_pem.clone().into_bytes()),
            identity: Some((
                client.cert_pem.clone().into_bytes(),
                client.key_pem.clone().into_bytes(),
            )),
        },
    );
    assert_eq!(options.endpoints, vec![format!("https://{address}")]);
    let store = EtcdStore::connect(options.clone())
        .await
        .expect("connecting over mutual TLS");
    let topo = TopoServer::new(
        std::sync::Arc::new(store),
        "/vitess/global",
        EtcdStore::factory_like(&options),
    );

    // Write and read back a keyspace record.
    let record = Keyspace {
        durability_policy: "semi_sync".to_owned(),
        ..Keyspace::default()
    };
    topo.create_keyspace("commerce", &record)
        .await
        .expect("writing over TLS");
    let read = topo
        .get_keyspace("commerce")
        .await
        .expect("reading over TLS");
    assert_eq!(read.value.durability_policy, "semi_sync");

    // A keyspace lock: a lease, a key and a check, all over TLS.
    let lock = topo
        .lock_keyspace("commerce", "tls test")
        .await
        .expect("locking over TLS");
    lock.check().await.expect("the held lock checks out");
    drop(lock);

    // A cell registered with a bare address is reached with the same TLS settings.
    topo.create_cell_info(
        "zone1",
        &CellInfo {
            server_address: address.clone(),
            root: "/vitess/zone1".to_owned(),
        },
    )
    .await
    .expect("writing the cell info");
    let cell = topo.cell("zone1").await.expect("opening the cell");
    cell.store
        .create("/vitess/zone1/probe", b"over tls")
        .await
        .expect("writing through the cell's store over TLS");
    let (value, _) = cell
        .store
        .get("/vitess/zone1/probe")
        .await
        .expect("reading through the cell's store over TLS");
    assert_eq!(value, b"over tls");

    // The server really demands TLS: a plaintext client on the same port gets nowhere.
    let mut plain = EtcdStoreOptions::new([format!("http://{address}")]);
    plain.connect_timeout = Duration::from_secs(3);
    let plain = EtcdStore::new(plain.with_op_timeout(Duration::from_secs(3))).expect("store");
    let started = Instant::now();
    let error = TopoStore::get(&plain, "/vitess/global/keyspaces/commerce/Keyspace")
        .await
        .expect_err("plaintext must not reach a TLS etcd");
    assert!(
        started.elapsed() < REFUSAL_DEADLINE,
        "took {:?}",
        started.elapsed()
    );
    assert!(
        matches!(
            error,
            TopoError::Unavailable { .. } | TopoError::Timeout { .. }
        ),
        "{error:?}"
    );
}

/// The control: the complete settings read (a missing key) from the etcd that refuses the others.
async fn accepted(address: &str, ca: &Ca, client: &Leaf) {
    let tls = EtcdTls {
        ca_pem: Some(ca.cert_pem.clone().into_bytes()),
        identity: Some((
            client.cert_pem.clone().into_bytes(),
            client.key_pem.clone().into_bytes(),
        )),
    };
    let store = EtcdStore::connect(run_options(address, tls))
        .await
        .expect("the complete settings connect");
    match TopoStore::get(&store, "/vitess/global/keyspaces/x/Keyspace").await {
        Err(TopoError::NoNode { .. }) => {}
        other => panic!("the complete settings should read a missing key: {other:?}"),
    }
}

/// Connects with `tls` and reads a key, returning the error and checking it came in time.
async fn refused(address: &str, tls: EtcdTls) -> TopoError {
    let started = Instant::now();
    let outcome = async {
        let store = EtcdStore::connect(run_options(address, tls)).await?;
        TopoStore::get(&store, "/vitess/global/keyspaces/x/Keyspace").await
    }
    .await;
    let elapsed = started.elapsed();
    let error = match outcome {
        Ok(_) => panic!("the connection must be refused"),
        Err(TopoError::NoNode { .. }) => panic!("the read reached etcd despite bad TLS"),
        Err(e) => e,
    };
    assert!(elapsed < REFUSAL_DEADLINE, "took {elapsed:?}: {error}");
    println!("refused in {elapsed:?}: {error}");
    error
}

/// A CA that did not sign etcd's certificate is refused within the connect deadline, with an
/// error saying the certificate was not trusted, where the right CA reads.
#[tokio::test]
async fn etcd_with_the_wrong_ca_is_refused_clearly_and_in_time() {
    let ca = Ca::new("vtmove test CA");
    let client = ca.leaf("vtmove", &[]);
    let server = tls_etcd(&ca, &ca, &client).await;
    accepted(bare(server.etcd.endpoint()), &ca, &client).await;
    let other = Ca::new("some other CA");

    let error = refused(
        bare(server.etcd.endpoint()),
        EtcdTls {
            ca_pem: Some(other.cert_pem.clone().into_bytes()),
            identity: Some((
                client.cert_pem.clone().into_bytes(),
                client.key_pem.clone().into_bytes(),
            )),
        },
    )
    .await;
    assert!(matches!(error, TopoError::Unavailable { .. }), "{error:?}");
    let text = error.to_string().to_lowercase();
    assert!(
        text.contains("certificate") || text.contains("unknownissuer"),
        "the error should say the certificate was not trusted: {error}"
    );
}

/// Without a client certificate, an etcd with `--client-cert-auth` is unreachable within the
/// deadline, and the error names `--topo-etcd-tls-cert`, where the complete settings read.
#[tokio::test]
async fn etcd_without_a_client_certificate_is_refused_clearly_and_in_time() {
    let ca = Ca::new("vtmove test CA");
    let client = ca.leaf("vtmove", &[]);
    let server = tls_etcd(&ca, &ca, &client).await;
    accepted(bare(server.etcd.endpoint()), &ca, &client).await;

    let error = refused(
        bare(server.etcd.endpoint()),
        EtcdTls {
            ca_pem: Some(ca.cert_pem.clone().into_bytes()),
            identity: None,
        },
    )
    .await;
    assert!(matches!(error, TopoError::Unavailable { .. }), "{error:?}");
    let text = error.to_string().to_lowercase();
    assert!(
        text.contains("--topo-etcd-tls-cert"),
        "the error should point at the missing client certificate: {error}"
    );
}

// ----- Tablets ---------------------------------------------------------------------------------

/// The name on the simulated tablets' certificate: not their address (127.0.0.1), so a client
/// must be told it (`--tablet-manager-grpc-server-name`), as with one certificate shared by all
/// tablets.
const TABLET_NAME: &str = "vttablet.vitess.test";

/// A one-tablet fleet serving TLS with a certificate for [`TABLET_NAME`] signed by `ca`,
/// requiring client certificates signed by `client_ca` when given.
async fn tls_fleet(ca: &Ca, client_ca: Option<&Ca>) -> (vtsim::Fleet, TabletAddr) {
    use vtsim::{KeyspaceLayout, Layout, LayoutTabletType};
    let server = ca.leaf("vttablet", &[TABLET_NAME]);
    let memory = MemoryStore::new();
    let topo = std::sync::Arc::new(TopoServer::new(
        std::sync::Arc::new(memory.clone()),
        "/vitess/global",
        memory.shared_factory(),
    ));
    let layout = Layout::new(["zone1"]).keyspace(
        KeyspaceLayout::unsharded("commerce").tablets("zone1", &[LayoutTabletType::Primary]),
    );
    let options = vtsim::FleetOptions {
        tablet: vtsim::TabletConfig {
            tls: Some(vtsim::ServerTls {
                cert_pem: server.cert_pem.into_bytes(),
                key_pem: server.key_pem.into_bytes(),
                client_ca_pem: client_ca.map(|c| c.cert_pem.clone().into_bytes()),
            }),
            ..vtsim::TabletConfig::default()
        },
        ..vtsim::FleetOptions::default()
    };
    let fleet = vtsim::Fleet::start(topo, layout, options)
        .await
        .unwrap_or_else(|e| panic!("fleet: {e}"));
    let addr = fleet
        .primary("commerce", "0")
        .expect("the commerce primary")
        .addr();
    (fleet, addr)
}

/// The tablet client `vtmove run` builds from `--tablet-manager-grpc-ca/cert/key/server-name`
/// (`TlsArgs::tablets` in src/main.rs), with short deadlines.
fn tablet_client(ca: &Ca, client: Option<&Leaf>, server_name: Option<&str>) -> TabletClient {
    let mut config = TabletClientConfig {
        connect_timeout: Duration::from_secs(3),
        default_timeout: Duration::from_secs(3),
        ..TabletClientConfig::default()
    };
    config.tls = Some(TlsOptions {
        ca_pem: ca.cert_pem.clone().into_bytes(),
        client_identity: client.map(|c| {
            (
                c.cert_pem.clone().into_bytes(),
                c.key_pem.clone().into_bytes(),
            )
        }),
        server_name: server_name.map(str::to_owned),
    });
    TabletClient::new(config)
}

/// Calls PrimaryPosition, which must fail in time; returns the error.
async fn tablet_refused(client: &TabletClient, addr: &TabletAddr) -> TabletError {
    let started = Instant::now();
    let outcome = client.primary_position(addr, None).await;
    let elapsed = started.elapsed();
    let error = match outcome {
        Ok(_) => panic!("the call must be refused"),
        Err(e) => e,
    };
    println!("refused in {elapsed:?}: {error}");
    assert!(elapsed < REFUSAL_DEADLINE, "took {elapsed:?}: {error}");
    error
}

/// A TLS tablet answers PrimaryPosition to vtmove's client with the right CA and server name,
/// and refuses, in time and saying why, plaintext, a CA that did not sign its certificate, and
/// a server name (given, or the address) its certificate does not carry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tablet_over_tls_needs_the_right_ca_and_server_name() {
    let ca = Ca::new("vtmove test CA");
    let (_fleet, addr) = tls_fleet(&ca, None).await;

    let good = tablet_client(&ca, None, Some(TABLET_NAME));
    let position = good
        .primary_position(&addr, None)
        .await
        .expect("PrimaryPosition over TLS with the right CA and server name");
    assert!(!position.position.is_empty(), "{position:?}");

    // The server really speaks TLS: a plaintext client gets nowhere.
    let plain = TabletClient::new(TabletClientConfig {
        connect_timeout: Duration::from_secs(3),
        default_timeout: Duration::from_secs(3),
        ..TabletClientConfig::default()
    });
    let error = tablet_refused(&plain, &addr).await;
    assert!(error.is_retryable(), "{error:?}");

    // A CA that did not sign the tablet's certificate.
    let other = Ca::new("some other CA");
    let error = tablet_refused(&tablet_client(&other, None, Some(TABLET_NAME)), &addr).await;
    assert!(
        matches!(error, TabletError::Unavailable { .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("UnknownIssuer"),
        "the error should say the certificate was not trusted: {error}"
    );
    assert!(
        !error.to_string().contains("--tablet-manager-grpc-cert"),
        "no client-certificate hint for a rejected server certificate: {error}"
    );

    // The right CA, but the certificate names another server: checked against the tablet's
    // host (127.0.0.1) when no server name is given, and against the given name otherwise.
    for server_name in [None, Some("other.vitess.test")] {
        let error = tablet_refused(&tablet_client(&ca, None, server_name), &addr).await;
        assert!(
            matches!(error, TabletError::Unavailable { .. }),
            "{error:?}"
        );
        assert!(
            error.to_string().contains("not valid for name"),
            "the error should say the certificate names another server ({server_name:?}): {error}"
        );
    }
}

/// A tablet requiring client certificates answers a client presenting one its CA signed, and
/// refuses in time a client without one (the error names `--tablet-manager-grpc-cert`) or with
/// one from another CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tablet_requiring_client_certificates_gets_one() {
    let ca = Ca::new("vtmove test CA");
    let (_fleet, addr) = tls_fleet(&ca, Some(&ca)).await;
    let client = ca.leaf("vtmove", &[]);

    let good = tablet_client(&ca, Some(&client), Some(TABLET_NAME));
    good.primary_position(&addr, None)
        .await
        .expect("PrimaryPosition with a client certificate");

    let error = tablet_refused(&tablet_client(&ca, None, Some(TABLET_NAME)), &addr).await;
    assert!(
        matches!(error, TabletError::Unavailable { .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("--tablet-manager-grpc-cert"),
        "the error should point at the missing client certificate: {error}"
    );

    // A client certificate from a CA the tablet does not trust.
    let stranger = Ca::new("some other CA").leaf("vtmove", &[]);
    let error = tablet_refused(
        &tablet_client(&ca, Some(&stranger), Some(TABLET_NAME)),
        &addr,
    )
    .await;
    assert!(
        matches!(error, TabletError::Unavailable { .. }),
        "{error:?}"
    );
}

/// vtmove ships no root store, so an etcd client certificate without the CA that signed the
/// servers trusts no server at all: why `vtmove run` refuses `--topo-etcd-tls-cert` without
/// `--topo-etcd-tls-ca` (src/main.rs).
#[tokio::test]
async fn etcd_client_certificate_without_a_ca_trusts_no_server() {
    let ca = Ca::new("vtmove test CA");
    let client = ca.leaf("vtmove", &[]);
    let server = tls_etcd(&ca, &ca, &client).await;
    accepted(bare(server.etcd.endpoint()), &ca, &client).await;

    let error = refused(
        bare(server.etcd.endpoint()),
        EtcdTls {
            ca_pem: None,
            identity: Some((
                client.cert_pem.clone().into_bytes(),
                client.key_pem.clone().into_bytes(),
            )),
        },
    )
    .await;
    assert!(matches!(error, TopoError::Unavailable { .. }), "{error:?}");
    assert!(error.to_string().contains("UnknownIssuer"), "{error}");
}

// ----- `vtmove plan` over TLS ------------------------------------------------------------------

const PLAN_LAYOUT: &str = r#"
cells: [zone1]
keyspaces:
  - name: commerce
    tablets: {zone1: [primary, replica]}
    tables:
      - create: "create table customer (id bigint not null, email varchar(128), primary key (id))"
        seed_rows: 50
  - name: customer
    tablets: {zone1: [primary, replica]}
    tables:
      - create: "create table customer (id bigint not null, email varchar(128), primary key (id))"
        vschema_only: true
"#;

const PLAN_WORKFLOW: &str = r#"
apiVersion: vtmove.dev/v1alpha1
kind: MoveTablesWorkflow
metadata:
  name: wf
spec:
  sourceKeyspace: commerce
  targetKeyspace: customer
  tables: [customer]
  traffic:
    replica: Target
    rdonly: Target
    primary: Target
"#;

/// Runs `vtmove plan -f <file> --topo-global-server-address=<address> <flags>`, within a
/// deadline; returns whether it succeeded, its stdout, its stderr and how long it took.
async fn vtmove_plan(
    file: &Path,
    address: &str,
    flags: &[String],
) -> (bool, String, String, Duration) {
    let started = Instant::now();
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_vtmove"))
            .arg("plan")
            .arg("-f")
            .arg(file)
            .arg(format!("--topo-global-server-address={address}"))
            .args(flags)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("vtmove plan must finish within a minute")
    .expect("running vtmove plan");
    let elapsed = started.elapsed();
    println!("vtmove plan {flags:?} took {elapsed:?} ({})", output.status);
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        elapsed,
    )
}

/// Everything over TLS: an etcd requiring client certificates holds the global and the cell
/// topology, vtsim tablets require client certificates too, and an engine pass with the tablet
/// client `vtmove run` builds has created and copied workflow `wf` (nothing switched). The CA,
/// the client certificate and its key are in files, for the flags.
struct TlsWorld {
    server: TlsEtcd,
    /// etcd's bare `host:port`, as `--topo-global-server-address` and `CellInfo` hold it.
    address: String,
    fleet: vtsim::Fleet,
    dir: tempfile::TempDir,
    ca_file: String,
    cert_file: String,
    key_file: String,
}

impl TlsWorld {
    async fn start() -> TlsWorld {
        use vtmove::engine::{Desired, Engine, EngineMemory};
        use vtmove::testing::world::test_config;

        let ca = Ca::new("vtmove test CA");
        let client = ca.leaf("vtmove", &[]);
        let server = tls_etcd(&ca, &ca, &client).await;
        let address = bare(server.etcd.endpoint()).to_owned();
        let options = server.etcd.options();
        let topo = std::sync::Arc::new(TopoServer::new(
            server.etcd.dyn_store().expect("store"),
            "/vitess/global",
            EtcdStore::factory_like(&options),
        ));
        let tablet_cert = ca.leaf("vttablet", &[TABLET_NAME]);
        let fleet_options = vtsim::FleetOptions {
            // As Vitess registers it: a bare address, reached with the global store's TLS.
            cell_server_address: address.clone(),
            tablet: vtsim::TabletConfig {
                tls: Some(vtsim::ServerTls {
                    cert_pem: tablet_cert.cert_pem.clone().into_bytes(),
                    key_pem: tablet_cert.key_pem.clone().into_bytes(),
                    client_ca_pem: Some(ca.cert_pem.clone().into_bytes()),
                }),
                ..vtsim::TabletConfig::default()
            },
            ..vtsim::FleetOptions::default()
        };
        let layout = vtsim::Layout::from_yaml(PLAN_LAYOUT).expect("layout");
        let fleet = vtsim::Fleet::start(topo.clone(), layout, fleet_options)
            .await
            .unwrap_or_else(|e| panic!("fleet: {e}"));

        // Engine passes over TLS tablets: the workflow is created and copied, nothing switched.
        let tablets: std::sync::Arc<dyn TabletRpc> =
            std::sync::Arc::new(tablet_client(&ca, Some(&client), Some(TABLET_NAME)));
        let engine = Engine::new(topo.clone(), tablets, test_config());
        let created = Desired::new("wf", "commerce", "customer", ["customer"]);
        let mut memory = EngineMemory::default();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let report = engine.pass(&created, &mut memory).await;
            if report.executed.is_none()
                && report.error.is_none()
                && report.plan.as_ref().is_some_and(|p| p.converged())
            {
                break;
            }
            assert!(Instant::now() < deadline, "not created: {report:?}");
            if report.executed.is_none() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }

        let dir = tempfile::tempdir().expect("temporary directory");
        let path = |name: &str, pem: &str| write(dir.path(), name, pem).display().to_string();
        let ca_file = path("ca.crt", &ca.cert_pem);
        let cert_file = path("client.crt", &client.cert_pem);
        let key_file = path("client.key", &client.key_pem);
        TlsWorld {
            server,
            address,
            fleet,
            dir,
            ca_file,
            cert_file,
            key_file,
        }
    }

    /// `--topo-etcd-tls-ca`, and the client certificate and key when `with_identity`.
    fn etcd_flags(&self, with_identity: bool) -> Vec<String> {
        let mut flags = vec![format!("--topo-etcd-tls-ca={}", self.ca_file)];
        if with_identity {
            flags.push(format!("--topo-etcd-tls-cert={}", self.cert_file));
            flags.push(format!("--topo-etcd-tls-key={}", self.key_file));
        }
        flags
    }

    /// `--tablet-manager-grpc-ca` and `-server-name`, and the client certificate and key when
    /// `with_identity`.
    fn tablet_flags(&self, with_identity: bool) -> Vec<String> {
        let mut flags = vec![
            format!("--tablet-manager-grpc-ca={}", self.ca_file),
            format!("--tablet-manager-grpc-server-name={TABLET_NAME}"),
        ];
        if with_identity {
            flags.push(format!("--tablet-manager-grpc-cert={}", self.cert_file));
            flags.push(format!("--tablet-manager-grpc-key={}", self.key_file));
        }
        flags
    }
}

/// In the [`TlsWorld`], the `vtmove plan` binary, given `--topo-etcd-tls-ca/cert/key` and
/// `--tablet-manager-grpc-ca/cert/key/server-name`, reads the global topology, the cell (its
/// tablets) and the tablets, and lists the three steps to the spec, writing nothing. Without
/// the etcd client certificate it fails in time naming the missing flag; without the tablet
/// client certificate it reports the tablets unreachable as blockers naming the missing flag,
/// instead of steps; with a CA file holding no certificate it fails at startup naming the flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_binary_runs_over_tls_to_etcd_and_tablets() {
    let world = TlsWorld::start().await;
    let file = write(world.dir.path(), "wf.yaml", PLAN_WORKFLOW);
    let (server, address, key_file) = (&world.server, &world.address, &world.key_file);
    let etcd_flags = |with_identity| world.etcd_flags(with_identity);
    let tablet_flags = |with_identity| world.tablet_flags(with_identity);
    let before = server
        .etcd
        .store()
        .expect("store")
        .list("/vitess/")
        .await
        .expect("listing the topology");

    // The complete settings: the plan of plan_cli.rs, read entirely over TLS.
    let flags = [etcd_flags(true), tablet_flags(true)].concat();
    let (ok, stdout, stderr, _) = vtmove_plan(&file, address, &flags).await;
    assert!(ok, "{stdout}\n{stderr}");
    println!("{stdout}");
    let summaries: Vec<&str> = stdout.lines().filter(|l| l.starts_with("Step ")).collect();
    assert_eq!(summaries.len(), 3, "{stdout}");
    assert!(
        summaries[0].starts_with("Step 1 of 3: Verification dry run results"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Switch routing from keyspace commerce to keyspace customer"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Traffic State: Reads Not Switched. Writes Not Switched"),
        "{stdout}"
    );
    let after = server
        .etcd
        .store()
        .expect("store")
        .list("/vitess/")
        .await
        .expect("listing the topology");
    let versions = |kvs: &[vtmove::vitess::topo::KeyValue]| -> Vec<(String, i64)> {
        kvs.iter()
            .map(|kv| (kv.key.clone(), kv.version.0))
            .collect()
    };
    assert_eq!(versions(&before), versions(&after), "plan wrote to etcd");

    // No etcd client certificate: refused, in time, naming the flag.
    let flags = [etcd_flags(false), tablet_flags(true)].concat();
    let (ok, stdout, stderr, elapsed) = vtmove_plan(&file, address, &flags).await;
    println!("without an etcd client certificate:\n{stderr}");
    assert!(!ok, "{stdout}\n{stderr}");
    assert!(stderr.contains("--topo-etcd-tls-cert"), "{stderr}");
    // vtmove plan's etcd deadlines: connect 5 s, call 10 s. A refusal comes well before.
    assert!(elapsed < Duration::from_secs(15), "took {elapsed:?}");

    // No tablet client certificate: the plan cannot see the tablets, and says why.
    let flags = [etcd_flags(true), tablet_flags(false)].concat();
    let (ok, stdout, stderr, _) = vtmove_plan(&file, address, &flags).await;
    println!("without a tablet client certificate:\n{stdout}");
    assert!(
        ok,
        "the plan reports unreachable tablets as blockers: {stdout}\n{stderr}"
    );
    assert!(!stdout.contains("Step 1 of 3"), "{stdout}");
    assert!(stdout.contains("TabletUnreachable"), "{stdout}");
    assert!(stdout.contains("--tablet-manager-grpc-cert"), "{stdout}");

    // A CA file without a certificate (here the client key) is refused at startup, naming the
    // flag, instead of trusting no tablet.
    let flags = [
        etcd_flags(true),
        vec![
            format!("--tablet-manager-grpc-ca={key_file}"),
            format!("--tablet-manager-grpc-server-name={TABLET_NAME}"),
        ],
    ]
    .concat();
    let (ok, stdout, stderr, _) = vtmove_plan(&file, address, &flags).await;
    assert!(!ok, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("--tablet-manager-grpc-ca") && stderr.contains("no PEM certificate"),
        "{stderr}"
    );

    world.fleet.shutdown().await;
}

/// A server that accepts TCP connections and never answers, not even the TLS handshake: a hung
/// etcd or tablet. Returns its port; the connections are held until the task is dropped.
async fn silent_server() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding a loopback port");
    let port = listener.local_addr().expect("local address").port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    (port, task)
}

/// A TLS handshake that never completes (the server accepts and stays silent) ends at vtmove's
/// deadlines, for etcd (connect timeout) and for tablets (connect timeout, call deadline): an
/// error, never a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_a_silent_server_ends_at_the_deadline() {
    let ca = Ca::new("vtmove test CA");
    let client = ca.leaf("vtmove", &[]);
    let (port, server) = silent_server().await;
    let address = format!("127.0.0.1:{port}");

    let mut options = EtcdStoreOptions::from_server_address(&address).with_tls(EtcdTls {
        ca_pem: Some(ca.cert_pem.clone().into_bytes()),
        identity: Some((
            client.cert_pem.clone().into_bytes(),
            client.key_pem.clone().into_bytes(),
        )),
    });
    options.connect_timeout = Duration::from_secs(1);
    let options = options.with_op_timeout(Duration::from_secs(1));
    let started = Instant::now();
    let outcome = tokio::time::timeout(REFUSAL_DEADLINE, async {
        let store = EtcdStore::connect(options).await?;
        TopoStore::get(&store, "/vitess/global/keyspaces/x/Keyspace").await
    })
    .await
    .expect("the etcd store must give up by its own deadline");
    let error = match outcome {
        Ok(_) => panic!("a silent server cannot answer"),
        Err(e) => e,
    };
    println!("etcd gave up in {:?}: {error}", started.elapsed());
    assert!(
        matches!(
            error,
            TopoError::Timeout { .. } | TopoError::Unavailable { .. }
        ),
        "{error:?}"
    );

    let mut config = TabletClientConfig {
        connect_timeout: Duration::from_secs(1),
        default_timeout: Duration::from_secs(2),
        ..TabletClientConfig::default()
    };
    config.tls = Some(TlsOptions {
        ca_pem: ca.cert_pem.clone().into_bytes(),
        client_identity: None,
        server_name: Some(TABLET_NAME.to_owned()),
    });
    let tablets = TabletClient::new(config);
    let started = Instant::now();
    let error = tokio::time::timeout(
        REFUSAL_DEADLINE,
        tablets.primary_position(&TabletAddr::new("127.0.0.1", port), None),
    )
    .await
    .expect("the tablet client must give up by its own deadline")
    .expect_err("a silent server cannot answer");
    println!("tablet client gave up in {:?}: {error}", started.elapsed());
    assert!(error.is_retryable(), "{error:?}");
    server.abort();
}

/// Kills the child process when dropped, so a failing test leaves no `vtmove run` behind.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// In the [`TlsWorld`], `vtmove run` with every TLS flag (against kube-sim) switches the
/// workflow's reads and writes: it reads and locks the topology in the TLS etcd, reaches the cell
/// with the same TLS, and calls the TLS tablets with its client certificate, up to the write
/// cutover (its LOCK TABLES flush, positions, stream changes). The workflow reports
/// `All Reads Switched. Writes Switched`, and the routing rules in etcd send the table to the
/// target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_binary_switches_traffic_over_tls() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Api, PostParams};
    use vtmove::api::MoveTablesWorkflow;
    use vtmove::api::condition::{find_condition, types};

    let world = TlsWorld::start().await;
    let kube = kube_sim::KubeSim::start(kube_sim::Options {
        kubeconfig: Some(world.dir.path().join("kubeconfig")),
        ..kube_sim::Options::default()
    })
    .await
    .expect("kube-sim must start");
    let client = kube.try_client().expect("a kube client");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in vtmove::api::crds() {
        crds.create(&PostParams::default(), &crd)
            .await
            .expect("creating the CRDs");
    }
    let api: Api<MoveTablesWorkflow> = Api::namespaced(client, "default");
    let mut workflow: MoveTablesWorkflow =
        serde_saphyr::from_str(PLAN_WORKFLOW).expect("the workflow parses");
    workflow.metadata.namespace = Some("default".to_owned());
    api.create(&PostParams::default(), &workflow)
        .await
        .expect("creating the workflow");

    let metrics = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let flags = [world.etcd_flags(true), world.tablet_flags(true)].concat();
    let mut operator = KillOnDrop(
        std::process::Command::new(env!("CARGO_BIN_EXE_vtmove"))
            .arg("run")
            .arg(format!("--topo-global-server-address={}", world.address))
            .arg(format!("--metrics-address={metrics}"))
            .args([
                "--leader-election=false",
                "--log-format=text",
                "--log-level=warn",
                // The example workflow names keyspaces no Keyspace resource claims.
                "--allow-unclaimed-keyspaces",
            ])
            .args(&flags)
            .env("KUBECONFIG", kube.kubeconfig_path())
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("starting vtmove run"),
    );

    let started = Instant::now();
    let deadline = started + Duration::from_secs(90);
    let status = loop {
        if let Some(exit) = operator.0.try_wait().expect("polling vtmove run") {
            panic!("vtmove run exited: {exit}");
        }
        let current = api.get("wf").await.expect("reading the workflow");
        if let Some(status) = current.status {
            let is_true =
                |t: &str| find_condition(&status.conditions, t).is_some_and(|c| c.status == "True");
            if status.observed_generation == current.metadata.generation
                && is_true(types::WRITES_SWITCHED)
                && is_true(types::READY)
            {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "not switched after 90 s: {status:#?}"
            );
        } else {
            assert!(Instant::now() < deadline, "no status after 90 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!("switched over TLS in {:?}", started.elapsed());
    assert_eq!(
        status.traffic_state.as_deref(),
        Some("All Reads Switched. Writes Switched")
    );
    drop(operator);

    // What vtmove wrote over TLS: the routing rules send the table to the target.
    let store = world.server.etcd.store().expect("store");
    let (rules, _) = TopoStore::get(&store, "/vitess/global/RoutingRules")
        .await
        .expect("reading the routing rules");
    let rules =
        <vtmove::vitess::proto::vschema::RoutingRules as prost::Message>::decode(rules.as_slice())
            .expect("decoding the routing rules");
    let customer = rules
        .rules
        .iter()
        .find(|r| r.from_table == "customer")
        .unwrap_or_else(|| panic!("no rule for customer: {rules:?}"));
    assert_eq!(customer.to_tables, vec!["customer.customer"], "{rules:?}");
    world.fleet.shutdown().await;
}
