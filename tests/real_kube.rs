//! vtmove against the real kube-apiserver (v1.37.2, built by `scripts/peers`), beside kube-sim.
//!
//! - The control plane itself: the pinned version, RBAC enforced (`tests/common/real_kube.rs`).
//! - Admission, differentially: every admission case of `tests/common/admission.rs` goes to
//!   kube-sim and to the real server; accept/reject, HTTP status and reason, the message and
//!   every cause (field, reason, message) must agree, and what is stored must be the same.
//! - The kubectl tour of the examples (`tests/common/tour.rs`) on the real server.
//! - The end-to-end walk of the examples (`tests/common/walk.rs`) with `vtmove run` as a
//!   separate process, on the real server and on kube-sim.
//! - The chart's RBAC for real: `helm install`, a token for the chart's ServiceAccount
//!   (`kubectl create token`), `vtmove run` as a separate process with that token; the whole
//!   lifecycle of a workflow and a Keyspace succeeds with no 403 in the operator's log. Then
//!   each grant of the chart is removed in turn, and `vtmove run` stops naming it; and again
//!   with the permission check off, to measure which grants a lifecycle really uses.
//! - Leader election on a real Lease: two `vtmove run`, the leader SIGKILLed mid-lifecycle, the
//!   other finishes, I1 holding throughout.
//! - The API server restarted mid-lifecycle over the same etcd: the watches reconnect and the
//!   workflow converges. Waiting out the server's 290 s watch timeout is one ignored test
//!   (`--ignored`), for its length.
//!
//! One control plane is shared by the tests of this binary (each in its own namespaces); the
//! restart test has its own. Without the kube-apiserver binary every test fails, saying how to
//! build it.

#![recursion_limit = "256"]

#[path = "common/admission.rs"]
mod admission;
mod common;
#[path = "common/real_kube.rs"]
mod real;
#[path = "common/tour.rs"]
mod tour;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::FutureExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::Role;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube_sim::testing::Kubectl;
use serde_json::{Value, json};

use admission::{admitted_cases, refused_cases, send};
use common::sim::create_strict;
use common::walk::{WORKFLOW, Walk};
use common::{keyspace, mtw, with};
use real::{ADMIN_TOKEN, ControlPlane, KUBE_VERSION};
use vtmove::api::{Keyspace, MoveTablesWorkflow};
use vtmove::testing::LocalEtcd;
use vtmove::vitess::topo::{EtcdStore, TopoServer};
use vtsim::{Fleet, FleetOptions, Layout};

/// Deadline of one step of a lifecycle.
const STEP: Duration = Duration::from_secs(120);

/// Creates namespace `name` (a real server refuses objects in a namespace that does not exist).
async fn create_namespace(client: &kube::Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    match Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("creating namespace {name}: {e}"),
    }
}

/// kubectl for the shared plane, as the admin, in `namespace`.
fn admin_kubectl(plane: &ControlPlane, namespace: &str) -> Kubectl {
    let path = plane.kubeconfig_for(&format!("admin-{namespace}"), ADMIN_TOKEN, namespace);
    Kubectl::new(&path)
}

// ---------------------------------------------------------------------------------------------
// The control plane
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_control_plane_is_the_pinned_kube_apiserver_with_rbac_enforced() {
    let plane = ControlPlane::shared();
    let client = plane.client().await;
    let version = client.apiserver_version().await.expect("/version");
    assert_eq!(version.git_version, KUBE_VERSION);

    // A ServiceAccount with no grants authenticates (TokenRequest) and is refused: RBAC runs.
    let ns = "rbac-enforced";
    create_namespace(&client, ns).await;
    let k = admin_kubectl(plane, ns);
    k.ok(&["create", "serviceaccount", "nobody"]).await;
    let token = k.ok(&["create", "token", "nobody"]).await;
    let nobody = real::client_from(&plane.kubeconfig_for("nobody", token.trim(), ns)).await;
    let err = Api::<MoveTablesWorkflow>::namespaced(nobody, ns)
        .list(&Default::default())
        .await
        .expect_err("a ServiceAccount without grants is refused");
    let kube::Error::Api(status) = err else {
        panic!("expected a 403, got {err}")
    };
    assert_eq!((status.code, status.reason.as_str()), (403, "Forbidden"));
    assert!(
        status.message.contains(&format!(
            "\"system:serviceaccount:{ns}:nobody\" cannot list resource \"movetablesworkflows\" \
             in API group \"vtmove.dev\" in the namespace \"{ns}\""
        )),
        "{}",
        status.message
    );
}

// ---------------------------------------------------------------------------------------------
// Admission, differentially
// ---------------------------------------------------------------------------------------------

/// What a server answered to one write, in the terms the two servers are compared on.
#[derive(Debug, PartialEq)]
enum Answer {
    /// Admitted; the stored spec.
    Stored(Value),
    /// Refused: code, reason, message and causes (field, reason, message).
    Refused {
        code: u16,
        reason: String,
        message: String,
        causes: Vec<(String, String, String)>,
    },
}

fn answer(result: Result<kube::api::DynamicObject, kube::Error>) -> Answer {
    match result {
        Ok(stored) => Answer::Stored(serde_json::to_value(stored).unwrap()["spec"].clone()),
        Err(kube::Error::Api(status)) => Answer::Refused {
            code: status.code,
            reason: status.reason.clone(),
            message: status.message.clone(),
            causes: status
                .details
                .iter()
                .flat_map(|d| d.causes.iter())
                .map(|c| (c.field.clone(), c.reason.clone(), c.message.clone()))
                .collect(),
        },
        Err(other) => panic!("expected an answer from the server, got {other}"),
    }
}

/// One write sent to both servers.
struct Case {
    what: String,
    before: Option<Value>,
    object: Value,
    /// Sent with `fieldValidation=Strict` (what kubectl sends) instead of the default.
    strict: bool,
    /// Whether the case expects a refusal (a check on the case list, not on the servers).
    refused: bool,
}

async fn send_case(client: &kube::Client, case: &Case) -> Answer {
    if case.strict {
        answer(create_strict(client, &case.object).await)
    } else {
        answer(send(client, case.before.as_ref(), &case.object).await)
    }
}

/// Every admission case: the refused and admitted cases of `tests/common/admission.rs`, plus
/// unknown fields under Strict and by default and nulls, in namespace `ns`, each with a unique name.
fn differential_cases(ns: &str) -> Vec<Case> {
    let place = |o: &Value, name: &str| {
        with(
            &with(o, "/metadata/name", json!(name)),
            "/metadata/namespace",
            json!(ns),
        )
    };
    let mut cases = Vec::new();
    for (i, c) in refused_cases().into_iter().enumerate() {
        let name = format!("refused-{i}");
        cases.push(Case {
            what: c.what.to_string(),
            before: c.before.as_ref().map(|b| place(b, &name)),
            object: place(&c.object, &name),
            strict: false,
            refused: true,
        });
    }
    for (i, c) in admitted_cases().into_iter().enumerate() {
        let name = format!("admitted-{i}");
        cases.push(Case {
            what: c.what.to_string(),
            before: c.before.as_ref().map(|b| place(b, &name)),
            object: place(&c.object, &name),
            strict: false,
            refused: false,
        });
    }
    let typo = with(
        &with(&mtw(), "/spec/tabels", json!(["customer"])),
        "/spec/traffic/writes",
        json!("Target"),
    );
    let unknown = [
        ("unknown fields under Strict", typo.clone(), true, true),
        (
            "an unknown keyspace field under Strict",
            with(&keyspace(), "/spec/shard", json!("0")),
            true,
            true,
        ),
        ("unknown fields pruned by default", typo, false, false),
        (
            "null in a field that is not nullable: dropped, then defaulted",
            with(&mtw(), "/spec/lifecycle", Value::Null),
            false,
            false,
        ),
        (
            "null in a nullable field",
            with(&mtw(), "/spec/workflow", Value::Null),
            false,
            false,
        ),
        (
            "a VSchema keeps unknown fields even under Strict",
            with(
                &keyspace(),
                "/spec/vschema",
                json!({"sharded": true, "vindexes": {"hash": {"type": "hash"}}, "anything": {"else": [1]}}),
            ),
            true,
            false,
        ),
    ];
    for (i, (what, object, strict, refused)) in unknown.into_iter().enumerate() {
        cases.push(Case {
            what: what.to_string(),
            before: None,
            object: place(&object, &format!("unknown-{i}")),
            strict,
            refused,
        });
    }
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_real_apiserver_and_kube_sim_agree() {
    let plane = ControlPlane::shared();
    let real = plane.client().await;
    let sim = common::sim::start_with_crds().await;
    let simulated = sim.client();
    let ns = "admission";
    create_namespace(&real, ns).await;
    create_namespace(&simulated, ns).await;

    let cases = differential_cases(ns);
    let refused = cases.iter().filter(|c| c.refused).count();
    let mut disagreements = Vec::new();
    let mut wrong_expectation = Vec::new();
    for case in &cases {
        let on_real = send_case(&real, case).await;
        let on_sim = send_case(&simulated, case).await;
        if matches!(on_real, Answer::Refused { .. }) != case.refused {
            wrong_expectation.push(format!(
                "{}: the real server answered {on_real:#?}",
                case.what
            ));
        }
        if on_real != on_sim {
            disagreements.push(format!(
                "{}:\n  real:     {on_real:?}\n  kube-sim: {on_sim:?}",
                case.what
            ));
        }
    }
    println!(
        "admission: {} cases ({refused} refused, {} admitted), {} disagreements",
        cases.len(),
        cases.len() - refused,
        disagreements.len()
    );
    assert!(
        disagreements.is_empty(),
        "kube-sim and the real kube-apiserver disagree on {} of {} cases:\n{}",
        disagreements.len(),
        cases.len(),
        disagreements.join("\n")
    );
    assert!(
        wrong_expectation.is_empty(),
        "{}",
        wrong_expectation.join("\n")
    );
    assert!(refused >= 80, "{refused} refused cases");
}

// ---------------------------------------------------------------------------------------------
// kubectl
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_tour_of_the_examples_on_the_real_apiserver() {
    let plane = ControlPlane::shared();
    let ns = "tour";
    create_namespace(&plane.client().await, ns).await;
    tour::examples_tour(&admin_kubectl(plane, ns)).await;
}

// ---------------------------------------------------------------------------------------------
// vtmove run against the real server
// ---------------------------------------------------------------------------------------------

/// A Vitess world for one test: etcd holding the topology and a vtsim fleet from the
/// playground layout (`commerce` unsharded, `customer` with two shards).
struct Vitess {
    etcd: LocalEtcd,
    topo: Arc<TopoServer>,
    _fleet: Fleet,
}

async fn vitess() -> Vitess {
    let path = common::sim::repo_path("crates/vtsim/layouts/commerce-customer.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
    let mut last = String::new();
    // A fresh etcd now and then refuses its first connections on a loaded machine: retry.
    for _ in 0..3 {
        let etcd = LocalEtcd::start().await.expect("etcd for the topology");
        let topo = Arc::new(TopoServer::new(
            etcd.dyn_store().expect("an etcd store"),
            "/vitess/global",
            EtcdStore::factory(Duration::from_secs(5)),
        ));
        let layout = Layout::from_yaml(&text).unwrap_or_else(|e| panic!("layout: {e}"));
        match Fleet::start(
            topo.clone(),
            layout,
            FleetOptions {
                cell_server_address: etcd.endpoint().to_string(),
                ..FleetOptions::default()
            },
        )
        .await
        {
            Ok(fleet) => {
                return Vitess {
                    etcd,
                    topo,
                    _fleet: fleet,
                };
            }
            Err(e) => last = e.to_string(),
        }
    }
    panic!("fleet: {last}");
}

/// `vtmove run` as a separate process, killed when dropped.
struct Operator {
    child: tokio::process::Child,
    log: PathBuf,
    name: String,
}

/// How to start one `vtmove run`.
struct RunOptions<'a> {
    name: &'a str,
    kubeconfig: &'a Path,
    topo: &'a str,
    /// The namespace it watches.
    namespace: &'a str,
    /// The namespace of its Lease (leader election on), or `None` (off).
    lease_namespace: Option<&'a str>,
    log_dir: &'a Path,
    /// More flags for `vtmove run`.
    extra: &'a [&'a str],
}

impl Operator {
    fn spawn(o: RunOptions<'_>) -> Operator {
        let log = o.log_dir.join(format!("{}.log", o.name));
        let file = std::fs::File::create(&log).expect("operator log");
        let mut args = vec![
            "run".to_string(),
            "--topo-implementation=etcd2".into(),
            format!("--topo-global-server-address={}", o.topo),
            "--topo-global-root=/vitess/global".into(),
            format!("--metrics-address=127.0.0.1:{}", real::free_port()),
            format!("--namespace={}", o.namespace),
            "--log-format=text".into(),
            "--log-level=info".into(),
            "--cutover-flush-delay=5ms".into(),
        ];
        match o.lease_namespace {
            Some(ns) => args.extend([
                "--leader-election=true".to_string(),
                format!("--leader-election-namespace={ns}"),
                format!("--leader-election-identity={}", o.name),
            ]),
            None => args.push("--leader-election=false".into()),
        }
        if !o.extra.iter().any(|a| a.starts_with("--resync-period")) {
            args.push("--resync-period=20s".into());
        }
        args.extend(o.extra.iter().map(|a| a.to_string()));
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_vtmove"))
            .args(&args)
            .env("KUBECONFIG", o.kubeconfig)
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .expect("vtmove run starts");
        Operator {
            child,
            log,
            name: o.name.to_string(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Lines of the log that show the API server refusing vtmove (403 Forbidden).
    fn forbidden(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| {
                // kube's errors read "... is forbidden: User ... (Forbidden)" or name the code.
                let l = l.to_ascii_lowercase();
                l.contains("forbidden") || l.contains("code: 403") || l.contains("\"code\":403")
            })
            .map(str::to_string)
            .collect()
    }

    /// Fails the test if the process has exited.
    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited ({status}):\n{}",
                self.name,
                real::log_tail(&self.log)
            );
        }
    }

    /// SIGKILL, as a node failure would.
    async fn kill(&mut self) {
        self.child.kill().await.expect("SIGKILL");
    }

    /// Waits for the process to exit by itself; its status and log.
    async fn exited_within(&mut self, within: Duration) -> (std::process::ExitStatus, String) {
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => (status.expect("wait"), self.log()),
            Err(_) => panic!(
                "{} still runs after {within:?} (a silent hang):\n{}",
                self.name,
                real::log_tail(&self.log)
            ),
        }
    }
}

/// `helm` from `VTMOVE_HELM`, else PATH (as `tests/helm_chart.rs` finds it).
fn helm() -> PathBuf {
    if let Some(p) = std::env::var_os("VTMOVE_HELM") {
        return PathBuf::from(p);
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("helm"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "helm not found: set VTMOVE_HELM or put helm on PATH (`.ci/run` installs it). \
                 The real-kube tests never skip."
            )
        })
}

/// `helm install` of the chart as release `vtmove` in `release_ns`, watching `watched` only,
/// with leader election; returns a token of the chart's ServiceAccount.
async fn install_chart(
    plane: &ControlPlane,
    release_ns: &str,
    watched: &str,
    topo: &str,
) -> String {
    let out = tokio::process::Command::new(helm())
        .args(["install", "vtmove"])
        .arg(common::sim::repo_path("charts/vtmove"))
        .args([
            "--namespace",
            release_ns,
            "--create-namespace",
            "--kubeconfig",
        ])
        .arg(plane.kubeconfig_path())
        .args([
            "--set",
            &format!("topology.globalServerAddress={topo}"),
            "--set",
            &format!("namespaces={{{watched}}}"),
            "--wait=false",
        ])
        .env("HOME", plane.dir())
        .output()
        .await
        .expect("helm runs");
    assert!(
        out.status.success(),
        "helm install failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let token = admin_kubectl(plane, release_ns)
        .ok(&["create", "token", "vtmove", "--duration=2h"])
        .await;
    token.trim().to_string()
}

/// Checks I1 on the topology every 50 ms until stopped; the violations seen.
fn watch_i1(
    topo: Arc<TopoServer>,
    client: kube::Client,
    ns: String,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(usize, Vec<String>)> {
    tokio::spawn(async move {
        let workflows: Api<MoveTablesWorkflow> = Api::namespaced(client, &ns);
        let mut checks = 0;
        let mut seen = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            if let Ok(wf) = workflows.get(WORKFLOW).await {
                let desired = vtmove::engine::Desired::from_spec(&wf.spec, WORKFLOW)
                    .expect("the example is a valid workflow");
                if let Ok(violations) =
                    vtmove::engine::invariants::check_single_writer_in_topology(&topo, &desired)
                        .await
                {
                    checks += 1;
                    seen.extend(violations.iter().map(|v| format!("{v:?}")));
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (checks, seen)
    })
}

/// Deletes the workflow and the `customer` Keyspace and waits until both are gone (their
/// finalizers removed by the operator).
async fn delete_and_wait_gone(walk: &Walk) {
    delete_and_wait_gone_within(walk, STEP).await
}

async fn delete_and_wait_gone_within(walk: &Walk, within: Duration) {
    let dp = DeleteParams::default();
    walk.workflows()
        .delete(WORKFLOW, &dp)
        .await
        .expect("delete the workflow");
    walk.keyspaces()
        .delete("customer", &dp)
        .await
        .expect("delete the keyspace");
    let deadline = Instant::now() + within;
    loop {
        let wf = walk.workflows().get_opt(WORKFLOW).await.expect("get");
        let ks = walk.keyspaces().get_opt("customer").await.expect("get");
        if wf.is_none() && ks.is_none() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not deleted within {within:?}: workflow {:?}, keyspace {:?}",
            wf.map(|w| w.metadata),
            ks.map(|k| k.metadata)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_charts_service_account_runs_the_whole_lifecycle_with_no_403() {
    let plane = ControlPlane::shared();
    let admin = plane.client().await;
    let (ns, release_ns) = ("lifecycle", "vtmove-lifecycle");
    create_namespace(&admin, ns).await;
    let vitess = vitess().await;
    let token = install_chart(plane, release_ns, ns, vitess.etcd.endpoint()).await;
    let kubeconfig = plane.kubeconfig_for("lifecycle-operator", &token, release_ns);
    let logs = tempfile::tempdir().unwrap();
    let mut operator = Operator::spawn(RunOptions {
        name: "operator",
        kubeconfig: &kubeconfig,
        topo: vitess.etcd.endpoint(),
        namespace: ns,
        lease_namespace: Some(release_ns),
        log_dir: logs.path(),
        extra: &[],
    });

    let mut walk = Walk::new(admin.clone(), ns, STEP);
    walk.all().await;
    operator.assert_running();

    // Events through kubectl describe, as a user reads them.
    let out = admin_kubectl(plane, ns)
        .ok(&["describe", "mtw", WORKFLOW])
        .await;
    assert!(
        out.contains("Events:") && out.contains("vtmove"),
        "describe shows vtmove's Events:\n{out}"
    );
    // The operator holds its Lease in the release namespace.
    let lease = Api::<Lease>::namespaced(admin.clone(), release_ns)
        .get("vtmove")
        .await
        .expect("the leader Lease");
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some("operator")
    );

    delete_and_wait_gone(&walk).await;
    operator.assert_running();
    let forbidden = operator.forbidden();
    assert!(
        forbidden.is_empty(),
        "the chart's grants fall short:\n{}",
        forbidden.join("\n")
    );
    println!(
        "lifecycle with the chart's ServiceAccount: {:.1?} for the walk",
        walk.total()
    );
}

/// One grant of the chart: `verb` on `resource` (of `group`) by Role `role` in `namespace`.
struct Grant {
    namespace: String,
    role: String,
    group: String,
    resource: String,
    verb: String,
}

impl Grant {
    fn name(&self) -> String {
        format!("without-{}-{}", self.verb, self.resource.replace('/', "-"))
    }
}

/// The chart's Roles for a release in `release_ns` watching `ns`: (namespace, name).
fn chart_roles<'a>(ns: &'a str, release_ns: &'a str) -> [(&'a str, &'static str); 2] {
    [(ns, "vtmove"), (release_ns, "vtmove-leader-election")]
}

/// Every (resource, verb) the chart's Roles grant, one [`Grant`] each.
async fn chart_grants(admin: &kube::Client, roles: &[(&str, &str)]) -> Vec<Grant> {
    let mut out = Vec::new();
    for (namespace, role) in roles {
        let api: Api<Role> = Api::namespaced(admin.clone(), namespace);
        let rules = api.get(role).await.expect("the chart's Role").rules;
        for rule in rules.unwrap_or_default() {
            let group = rule
                .api_groups
                .as_ref()
                .and_then(|g| g.first())
                .cloned()
                .unwrap_or_default();
            for resource in rule.resources.clone().unwrap_or_default() {
                for verb in &rule.verbs {
                    out.push(Grant {
                        namespace: namespace.to_string(),
                        role: role.to_string(),
                        group: group.clone(),
                        resource: resource.clone(),
                        verb: verb.clone(),
                    });
                }
            }
        }
    }
    let granted: usize = vtmove::rbac::REQUIRED_ACCESS
        .iter()
        .map(|a| a.verbs.len())
        .sum();
    assert_eq!(
        out.len(),
        granted,
        "the chart grants what src/rbac.rs lists"
    );
    out
}

/// Removes `grant` from its Role (the rest of the Role unchanged), runs `body`, puts the Role
/// back; waits each time until the authorizer (as the operator, `k`) sees the change.
async fn without_grant<T>(
    admin: &kube::Client,
    k: &Kubectl,
    grant: &Grant,
    body: impl AsyncFnOnce() -> T,
) -> T {
    use k8s_openapi::api::rbac::v1::PolicyRule;
    let api: Api<Role> = Api::namespaced(admin.clone(), &grant.namespace);
    let rules = api
        .get(&grant.role)
        .await
        .expect("the chart's Role")
        .rules
        .unwrap_or_default();
    let mut cut: Vec<PolicyRule> = Vec::new();
    for rule in &rules {
        let covers = rule
            .resources
            .iter()
            .flatten()
            .any(|r| *r == grant.resource)
            && rule.verbs.contains(&grant.verb);
        if !covers {
            cut.push(rule.clone());
            continue;
        }
        // The rule split in two: its other resources as they were, and this resource without
        // the verb.
        let mut rest = rule.clone();
        rest.resources = Some(
            rule.resources
                .iter()
                .flatten()
                .filter(|r| **r != grant.resource)
                .cloned()
                .collect(),
        );
        let mut narrowed = rule.clone();
        narrowed.resources = Some(vec![grant.resource.clone()]);
        narrowed.verbs.retain(|v| *v != grant.verb);
        for r in [rest, narrowed] {
            if !r.resources.as_ref().is_none_or(Vec::is_empty) && !r.verbs.is_empty() {
                cut.push(r);
            }
        }
    }
    let qualified = qualified(&grant.resource, &grant.group);
    set_rules(&api, &grant.role, cut).await;
    wait_can_i(k, &grant.verb, &qualified, &grant.namespace, false).await;
    let out = body().await;
    set_rules(&api, &grant.role, rules).await;
    wait_can_i(k, &grant.verb, &qualified, &grant.namespace, true).await;
    out
}

/// The same lifecycle, the same separate `vtmove run` (permission check and leader election
/// on), on kube-sim: the twin of the test above.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_lifecycle_with_vtmove_run_on_kube_sim() {
    let sim = common::sim::start_with_crds().await;
    let client = sim.client();
    let ns = "lifecycle";
    create_namespace(&client, ns).await;
    let vitess = vitess().await;
    let logs = tempfile::tempdir().unwrap();
    let mut operator = Operator::spawn(RunOptions {
        name: "operator",
        kubeconfig: sim.kubeconfig_path(),
        topo: vitess.etcd.endpoint(),
        namespace: ns,
        lease_namespace: Some(ns),
        log_dir: logs.path(),
        extra: &[],
    });
    let mut walk = Walk::new(client, ns, STEP);
    walk.all().await;
    delete_and_wait_gone(&walk).await;
    operator.assert_running();
    println!("lifecycle on kube-sim: {:.1?} for the walk", walk.total());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_missing_grant_of_the_chart_stops_vtmove_run_naming_it() {
    let plane = ControlPlane::shared();
    let admin = plane.client().await;
    let (ns, release_ns) = ("grants", "vtmove-grants");
    create_namespace(&admin, ns).await;
    // No topology is reached: the permission check comes first.
    let topo = "127.0.0.1:1";
    let token = install_chart(plane, release_ns, ns, topo).await;
    let kubeconfig = plane.kubeconfig_for("grants-operator", &token, release_ns);
    let as_operator = Kubectl::new(&kubeconfig);
    let logs = tempfile::tempdir().unwrap();

    let grants = chart_grants(&admin, &chart_roles(ns, release_ns)).await;
    for grant in &grants {
        let name = grant.name();
        let (status, log) = without_grant(&admin, &as_operator, grant, async || {
            let mut operator = Operator::spawn(RunOptions {
                name: &name,
                kubeconfig: &kubeconfig,
                topo,
                namespace: ns,
                lease_namespace: Some(release_ns),
                log_dir: logs.path(),
                extra: &[],
            });
            operator.exited_within(Duration::from_secs(60)).await
        })
        .await;
        assert!(!status.success(), "{name}: vtmove run succeeded:\n{log}");
        let expected = format!(
            "cannot {} {:?} in API group {:?} in namespace {:?}",
            grant.verb, grant.resource, grant.group, grant.namespace
        );
        assert!(
            log.contains(&expected),
            "{name}: the error does not name the missing grant ({expected}):\n{log}"
        );
    }
    println!(
        "RBAC: {} grants removed one at a time, each named by vtmove run",
        grants.len()
    );
}

/// What a short lifecycle did without one grant.
#[derive(Debug)]
enum Without {
    /// The API server refused vtmove the call, and vtmove logged it (the line).
    Refused(String),
    /// The lifecycle finished: nothing in it needed the grant on this server.
    NotNeeded,
    /// The lifecycle did not finish, and no 403 for the grant was logged (a silent hang).
    Stuck(String),
}

/// Admin removes every vtmove object of `ns`, finalizers included, and waits until none is
/// left (whatever an operator without some grant left behind).
async fn clear_namespace(admin: &kube::Client, ns: &str) {
    let drop_finalizers = Patch::Merge(json!({"metadata": {"finalizers": null}}));
    let pp = PatchParams::default();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let workflows: Api<MoveTablesWorkflow> = Api::namespaced(admin.clone(), ns);
        let keyspaces: Api<Keyspace> = Api::namespaced(admin.clone(), ns);
        let wfs = workflows.list(&Default::default()).await.expect("list");
        let kss = keyspaces.list(&Default::default()).await.expect("list");
        if wfs.items.is_empty() && kss.items.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "{ns} not cleared");
        for name in wfs.items.iter().filter_map(|o| o.metadata.name.clone()) {
            let _ = workflows.patch(&name, &pp, &drop_finalizers).await;
            let _ = workflows.delete(&name, &DeleteParams::default()).await;
        }
        for name in kss.items.iter().filter_map(|o| o.metadata.name.clone()) {
            let _ = keyspaces.patch(&name, &pp, &drop_finalizers).await;
            let _ = keyspaces.delete(&name, &DeleteParams::default()).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Least privilege, measured rather than compared with a table: with the permission check off,
/// each grant of the chart is removed in turn and a short lifecycle runs (keyspaces Ready, a
/// workflow copied, both deleted). A missing grant either makes a call fail with a 403 that
/// vtmove logs, or the lifecycle finishes without it (the list [`NOT_EXERCISED`], asserted
/// exactly); it never stalls vtmove silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_grant_of_the_chart_is_used_by_a_lifecycle() {
    let plane = ControlPlane::shared();
    let admin = plane.client().await;
    let (ns, release_ns) = ("used", "vtmove-used");
    create_namespace(&admin, ns).await;
    let token = install_chart(plane, release_ns, ns, "unused:2379").await;
    let kubeconfig = plane.kubeconfig_for("used-operator", &token, release_ns);
    let as_operator = Kubectl::new(&kubeconfig);
    let logs = tempfile::tempdir().unwrap();

    let grants = chart_grants(&admin, &chart_roles(ns, release_ns)).await;
    let mut outcomes = Vec::new();
    for grant in &grants {
        let name = grant.name();
        let outcome = without_grant(&admin, &as_operator, grant, async || {
            let vitess = vitess().await;
            let lease = format!("--leader-election-lease-name={name}");
            let mut operator = Operator::spawn(RunOptions {
                name: &name,
                kubeconfig: &kubeconfig,
                topo: vitess.etcd.endpoint(),
                namespace: ns,
                lease_namespace: Some(release_ns),
                log_dir: logs.path(),
                extra: &["--check-permissions=false", &lease],
            });
            let lifecycle = async {
                let mut walk = Walk::new(admin.clone(), ns, Duration::from_secs(30));
                walk.keyspaces_ready().await;
                walk.create_workflow().await;
                walk.copied().await;
                delete_and_wait_gone_within(&walk, Duration::from_secs(30)).await;
            };
            // The API server's message: `cannot patch resource "keyspaces/status"`.
            let refused = format!("cannot {} resource {:?}", grant.verb, grant.resource);
            let logged = async {
                loop {
                    if let Some(line) = operator.log().lines().find(|l| l.contains(&refused)) {
                        return line.to_string();
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            };
            let outcome = tokio::select! {
                line = logged => Without::Refused(line),
                done = std::panic::AssertUnwindSafe(lifecycle).catch_unwind() => match done {
                    Ok(()) => Without::NotNeeded,
                    Err(panic) => Without::Stuck(
                        panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default(),
                    ),
                },
            };
            operator.kill().await;
            clear_namespace(&admin, ns).await;
            outcome
        })
        .await;
        let what = format!("RBAC without {} {}", grant.verb, grant.resource);
        match &outcome {
            Without::Refused(line) => println!("{what}: refused and logged: {line}"),
            Without::NotNeeded => println!("{what}: the lifecycle finished without it"),
            Without::Stuck(why) => println!("{what}: STALLED without a logged 403: {why}"),
        }
        outcomes.push((name, outcome));
    }
    // What this lifecycle does not exercise, measured (see NOT_EXERCISED for why).
    let not_exercised: Vec<&str> = outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Without::NotNeeded))
        .map(|(name, _)| name.as_str())
        .collect();
    let stuck: Vec<_> = outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Without::Stuck(_)))
        .collect();
    assert!(
        stuck.is_empty(),
        "missing grants that stalled vtmove without a logged 403: {stuck:#?}"
    );
    assert_eq!(
        not_exercised, NOT_EXERCISED,
        "the grants a lifecycle does not use changed; update NOT_EXERCISED (and the chart)"
    );
    println!(
        "RBAC: {} of {} grants refused at a lifecycle call; not exercised: {not_exercised:?}",
        outcomes.len() - not_exercised.len(),
        outcomes.len()
    );
}

/// Grants of the chart the short lifecycle runs without (measured by
/// `each_grant_of_the_chart_is_used_by_a_lifecycle`):
/// - `get` on workflows, keyspaces and their status: vtmove reads them from its watch caches,
///   never with a GET;
/// - `patch` on keyspaces: only the finalizer of a keyspace with `deletionPolicy: Delete`;
/// - `update` on the finalizers subresources: only for API servers that check them when a
///   finalizer is set;
/// - `patch` on events: only a repeated, identical Event is patched (its series count); every
///   step of a lifecycle has its own message, so its own Event;
/// - `update` on leases: the Lease is written with patches.
const NOT_EXERCISED: &[&str] = &[
    "without-get-movetablesworkflows",
    "without-get-keyspaces",
    "without-patch-keyspaces",
    "without-get-movetablesworkflows-status",
    "without-get-keyspaces-status",
    "without-update-movetablesworkflows-finalizers",
    "without-update-keyspaces-finalizers",
    "without-patch-events",
    "without-update-leases",
];

/// `resource.group` and `--subresource=...` as `kubectl auth can-i` takes them (a `/` would
/// name an object).
fn qualified(resource: &str, group: &str) -> Vec<String> {
    match resource.split_once('/') {
        Some((r, sub)) => vec![format!("{r}.{group}"), format!("--subresource={sub}")],
        None => vec![format!("{resource}.{group}")],
    }
}

async fn set_rules(
    api: &Api<Role>,
    name: &str,
    rules: Vec<k8s_openapi::api::rbac::v1::PolicyRule>,
) {
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "rules": rules })),
    )
    .await
    .unwrap_or_else(|e| panic!("patching Role {name}: {e}"));
}

/// Waits until the authorizer answers `allowed` for the operator (RBAC changes apply within
/// moments, through the server's informers).
async fn wait_can_i(k: &Kubectl, verb: &str, resource: &[String], ns: &str, allowed: bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut args = vec!["auth", "can-i", verb, "-n", ns];
    args.extend(resource.iter().map(String::as_str));
    loop {
        let out = k.run(&args).await;
        if out.stdout.trim() == if allowed { "yes" } else { "no" } {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "can-i {verb} {resource:?} -n {ns} is not {allowed}: {out:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_leader_is_killed_mid_lifecycle_and_the_other_finishes() {
    let plane = ControlPlane::shared();
    let admin = plane.client().await;
    let (ns, lease_ns) = ("leader", "leader-ops");
    create_namespace(&admin, ns).await;
    create_namespace(&admin, lease_ns).await;
    let vitess = vitess().await;
    let logs = tempfile::tempdir().unwrap();
    let kubeconfig = plane.kubeconfig_path();
    let mut operators: Vec<Operator> = ["a", "b"]
        .into_iter()
        .map(|name| {
            Operator::spawn(RunOptions {
                name,
                kubeconfig: &kubeconfig,
                topo: vitess.etcd.endpoint(),
                namespace: ns,
                lease_namespace: Some(lease_ns),
                log_dir: logs.path(),
                extra: &[],
            })
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let i1 = watch_i1(
        vitess.topo.clone(),
        admin.clone(),
        ns.to_string(),
        stop.clone(),
    );

    let mut walk = Walk::new(admin.clone(), ns, STEP);
    walk.keyspaces_ready().await;
    walk.create_workflow().await;
    walk.copied().await;
    walk.switch_reads().await;
    walk.reads_switched().await;

    // Mid-lifecycle: the writes are asked for, and the leader dies before it reports them.
    let leases: Api<Lease> = Api::namespaced(admin.clone(), lease_ns);
    let holder = leases
        .get("vtmove")
        .await
        .expect("the Lease")
        .spec
        .and_then(|s| s.holder_identity)
        .expect("a holder");
    let (leader, other) = if holder == "a" { (0, 1) } else { (1, 0) };
    assert_eq!(operators[leader].name, holder);
    walk.switch_writes().await;
    operators[leader].kill().await;
    let killed = Instant::now();

    walk.writes_switched().await;
    walk.complete().await;
    operators[other].assert_running();
    let holder = leases
        .get("vtmove")
        .await
        .expect("the Lease")
        .spec
        .and_then(|s| s.holder_identity);
    assert_eq!(holder.as_deref(), Some(operators[other].name.as_str()));
    stop.store(true, Ordering::SeqCst);
    let (checks, violations) = i1.await.expect("the I1 watcher");
    assert!(checks > 20, "I1 was checked only {checks} times");
    assert!(violations.is_empty(), "I1 broke: {violations:#?}");
    println!(
        "leader {} SIGKILLed; {} finished {:.1?} later; I1 checked {checks} times",
        operators[leader].name,
        operators[other].name,
        killed.elapsed()
    );
}

/// kube-apiserver ends each watch after the `timeoutSeconds` the client asks for (290 s by
/// default, `--watch-timeout` here 5 s so the test waits out two of them in 12 s); the controllers
/// must open a new one and keep seeing changes. With a 1 h resync, only a working watch can show
/// the operator a spec change made after the timeouts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_after_the_apiservers_watch_timeout_still_reach_the_operator() {
    let plane = ControlPlane::shared();
    let admin = plane.client().await;
    let ns = "watch-timeout";
    create_namespace(&admin, ns).await;
    let vitess = vitess().await;
    let logs = tempfile::tempdir().unwrap();
    let mut operator = Operator::spawn(RunOptions {
        name: "operator",
        kubeconfig: &plane.kubeconfig_path(),
        topo: vitess.etcd.endpoint(),
        namespace: ns,
        lease_namespace: None,
        log_dir: logs.path(),
        extra: &["--resync-period=1h", "--watch-timeout=5s"],
    });
    let mut walk = Walk::new(admin.clone(), ns, STEP);
    walk.keyspaces_ready().await;
    walk.create_workflow().await;
    walk.copied().await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    operator.assert_running();
    let asked = Instant::now();
    walk.switch_reads().await;
    walk.reads_switched().await;
    let took = asked.elapsed();
    assert!(
        took < Duration::from_secs(30),
        "the change reached the operator only after {took:?}"
    );
    println!("after a watch timeout: reads switched {took:.1?} after the change");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kube_apiserver_restart_mid_lifecycle_loses_nothing() {
    // Its own control plane: the restart would disturb the other tests.
    let mut plane = ControlPlane::start();
    plane.apply_crds();
    let admin = plane.client().await;
    let ns = "restart";
    create_namespace(&admin, ns).await;
    let vitess = vitess().await;
    let logs = tempfile::tempdir().unwrap();
    let mut operator = Operator::spawn(RunOptions {
        name: "operator",
        kubeconfig: &plane.kubeconfig_path(),
        topo: vitess.etcd.endpoint(),
        namespace: ns,
        lease_namespace: None,
        log_dir: logs.path(),
        extra: &[],
    });

    let mut walk = Walk::new(admin.clone(), ns, STEP);
    walk.keyspaces_ready().await;
    walk.create_workflow().await;
    walk.copied().await;

    // The reads are asked for while the server is down: the change is made right after it
    // comes back, and the operator has to see it through a new watch.
    plane.stop_apiserver();
    let down = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    operator.assert_running();
    assert!(plane.etcd_running());
    plane.start_apiserver();
    println!("kube-apiserver down for {:.1?}", down.elapsed());
    let admin = plane.client().await;
    walk.client = admin.clone();
    let restarted = Instant::now();
    walk.switch_reads().await;
    walk.reads_switched().await;
    // The watches reconnect after the client's backoff (up to some 15 s after an outage).
    println!(
        "reads switched {:.1?} after kube-apiserver came back",
        restarted.elapsed()
    );
    walk.switch_writes().await;
    walk.writes_switched().await;
    walk.complete().await;
    operator.assert_running();

    // Nothing lost: the keyspaces and the workflow are all there, with their finalizers.
    let workflows: Api<MoveTablesWorkflow> = Api::namespaced(admin.clone(), ns);
    let keyspaces: Api<Keyspace> = Api::namespaced(admin.clone(), ns);
    assert_eq!(
        workflows
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    assert_eq!(
        keyspaces
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .len(),
        2
    );
    delete_and_wait_gone(&walk).await;
    for line in operator.log().lines().filter(|l| !l.contains(" INFO ")) {
        println!("operator: {line}");
    }
}

/// The status of a pass whose irreversible step ran on a fresh read is applied against that
/// read's resourceVersion (`kube_calls::apply_status_at`): once the object changed (a spec
/// edit), the server refuses it with 409 and a status computed for the old spec never lands on
/// the new one; against the current version it applies. The real server and kube-sim agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_applies_only_against_the_version_read() {
    use vtmove::api::movetables::MoveTablesWorkflowStatus;
    use vtmove::controller::kube_calls::apply_status_at;
    let ns = "status-precondition";
    let plane = ControlPlane::shared();
    let real_client = plane.client().await;
    let sim = common::sim::start_with_crds().await;
    for (server, client) in [("kube-apiserver", real_client), ("kube-sim", sim.client())] {
        create_namespace(&client, ns).await;
        let api: Api<MoveTablesWorkflow> = Api::namespaced(client, ns);
        let mut object = mtw();
        object["metadata"] = json!({"name": "raced", "namespace": ns});
        let object: MoveTablesWorkflow = serde_json::from_value(object).expect("a workflow");
        api.create(&PostParams::default(), &object)
            .await
            .unwrap_or_else(|e| panic!("{server}: create: {e}"));
        let read = api.get("raced").await.expect("readable");
        let version = read.metadata.resource_version.clone().expect("a version");
        api.patch(
            "raced",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"paused": true}})),
        )
        .await
        .unwrap_or_else(|e| panic!("{server}: spec edit: {e}"));
        let status = MoveTablesWorkflowStatus {
            traffic_state: Some("Reads Not Switched. Writes Switched".to_string()),
            ..Default::default()
        };
        let err = apply_status_at(&api, "raced", &status, Some(&version), STEP)
            .await
            .expect_err("a status against a version the object left behind");
        assert!(err.is_conflict(), "{server}: {err}");
        let now = api.get("raced").await.expect("readable");
        assert!(
            now.status
                .as_ref()
                .is_none_or(|s| s.traffic_state.is_none()),
            "{server}: the refused status landed"
        );
        apply_status_at(
            &api,
            "raced",
            &status,
            now.metadata.resource_version.as_deref(),
            STEP,
        )
        .await
        .unwrap_or_else(|e| panic!("{server}: against the current version: {e}"));
        let now = api.get("raced").await.expect("readable");
        assert_eq!(
            now.status.and_then(|s| s.traffic_state).as_deref(),
            Some("Reads Not Switched. Writes Switched"),
            "{server}"
        );
    }
}
