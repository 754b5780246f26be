//! The Helm chart in `charts/vtmove`, checked by rendering it with the real `helm` binary.
//!
//! - Its RBAC grants exactly what `src/rbac.rs` lists (`REQUIRED_ACCESS`), in both directions,
//!   bound to the chart's ServiceAccount in the right namespaces, with no wildcards.
//! - The Deployment runs non-root with a read-only root filesystem, probes `/healthz` and
//!   `/readyz` on the metrics port, passes the flags `vtmove run` knows, turns leader election on
//!   whenever it runs more than one replica, and mounts the TLS Secrets read-only when configured.
//! - Every rendered object of a core kind parses as the k8s-openapi type without losing a field,
//!   which catches misspelt or misplaced keys (kubeconform is not available here).
//! - `charts/vtmove/crds/` is what the Rust types generate, and the chart's appVersion is the
//!   crate version.
//!
//! helm comes from `VTMOVE_HELM` (set by `.ci/run`), else from `PATH`. Without it these tests
//! fail: a chart check that silently skips is a chart check that never runs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use vtmove::api::crd_files;
use vtmove::rbac::{REQUIRED_ACCESS, Scope, required_triples};

const RELEASE: &str = "vtmove";
const RELEASE_NS: &str = "vtmove-system";
/// Two etcd endpoints; `--set` needs the comma escaped.
const TOPO: &str = r"topology.globalServerAddress=etcd-0.etcd:2379\,etcd-1.etcd:2379";
/// The same endpoints as a list, which the chart joins with commas.
const TOPO_LIST: &str = "topology.globalServerAddress={etcd-0.etcd:2379,etcd-1.etcd:2379}";

/// Every flag of `vtmove run` the chart may pass (the operator's command line, `vtmove run --help`).
const RUN_FLAGS: &[&str] = &[
    "--topo-implementation",
    "--topo-global-server-address",
    "--topo-global-root",
    "--topo-etcd-tls-ca",
    "--topo-etcd-tls-cert",
    "--topo-etcd-tls-key",
    "--tablet-manager-grpc-ca",
    "--tablet-manager-grpc-cert",
    "--tablet-manager-grpc-key",
    "--tablet-manager-grpc-server-name",
    "--namespace",
    "--concurrency",
    "--metrics-address",
    "--leader-election",
    "--leader-election-namespace",
    "--leader-election-lease-name",
    "--leader-election-identity",
    "--log-format",
    "--log-level",
    "--resync-period",
    "--lock-ttl",
    "--lock-timeout",
    "--cutover-flush-delay",
    "--allow-unclaimed-keyspaces",
    "--publish-row-data",
    "--check-permissions",
    "--watch-timeout",
];

type Triple = (String, String, String);

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn chart_dir() -> PathBuf {
    root().join("charts/vtmove")
}

/// The helm binary: `VTMOVE_HELM`, else `helm` on `PATH`; panics with how to get it otherwise.
fn helm() -> PathBuf {
    if let Some(path) = std::env::var_os("VTMOVE_HELM") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "VTMOVE_HELM={} is not a file; run .ci/run or `scripts/install-tools DIR` and point \
             VTMOVE_HELM at DIR/helm",
            path.display()
        );
        return path;
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("helm"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "helm not found: set VTMOVE_HELM or put helm on PATH (`scripts/install-tools` \
                 installs it). The chart tests never skip."
            )
        })
}

fn run_helm(args: &[&str]) -> Output {
    let helm = helm();
    Command::new(&helm)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", helm.display()))
}

fn template_args<'a>(sets: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "template",
        RELEASE,
        "charts/vtmove",
        "--namespace",
        RELEASE_NS,
    ];
    for s in sets {
        args.push("--set");
        args.push(s);
    }
    args
}

/// `helm template` with `--set` overrides, parsed into one JSON value per rendered object.
fn render(sets: &[&str]) -> Vec<Value> {
    let out = run_helm(&template_args(sets));
    assert!(
        out.status.success(),
        "helm template {sets:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("helm prints UTF-8");
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(&text).expect("helm template output is valid YAML");
    let docs: Vec<Value> = docs.into_iter().filter(|d| !d.is_null()).collect();
    assert!(!docs.is_empty(), "helm template {sets:?} rendered nothing");
    for d in &docs {
        check_typed(d);
    }
    docs
}

/// `helm template` that must fail; returns its error output.
fn render_error(sets: &[&str]) -> String {
    let out = run_helm(&template_args(sets));
    assert!(
        !out.status.success(),
        "helm template {sets:?} should have failed"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Parses `doc` as `T` and serializes it again: a key k8s-openapi does not know (a typo, or a key
/// at the wrong level) is dropped on the way and shows up as a difference.
fn round_trip<T: DeserializeOwned + Serialize>(doc: &Value) {
    let typed: T = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{} does not parse: {e}\n{doc:#}", describe(doc)));
    let back = serde_json::to_value(&typed).expect("k8s-openapi types serialize");
    assert_eq!(
        &back,
        doc,
        "{} has fields Kubernetes does not know (or of the wrong type)",
        describe(doc)
    );
}

fn check_typed(doc: &Value) {
    match kind(doc) {
        "Deployment" => round_trip::<Deployment>(doc),
        "Service" => round_trip::<Service>(doc),
        "ServiceAccount" => round_trip::<ServiceAccount>(doc),
        "ClusterRole" => round_trip::<ClusterRole>(doc),
        "ClusterRoleBinding" => round_trip::<ClusterRoleBinding>(doc),
        "Role" => round_trip::<Role>(doc),
        "RoleBinding" => round_trip::<RoleBinding>(doc),
        "NetworkPolicy" => round_trip::<NetworkPolicy>(doc),
        "ServiceMonitor" => assert_eq!(doc["apiVersion"], "monitoring.coreos.com/v1"),
        other => panic!("the chart renders an unexpected kind {other}; add a check for it"),
    }
}

fn kind(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or_default()
}

fn name(doc: &Value) -> &str {
    doc["metadata"]["name"].as_str().unwrap_or_default()
}

fn namespace(doc: &Value) -> Option<&str> {
    doc["metadata"]["namespace"].as_str()
}

fn describe(doc: &Value) -> String {
    match namespace(doc) {
        Some(ns) => format!("{} {ns}/{}", kind(doc), name(doc)),
        None => format!("{} {}", kind(doc), name(doc)),
    }
}

fn of_kind<'a>(docs: &'a [Value], k: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| kind(d) == k).collect()
}

fn one<'a>(docs: &'a [Value], k: &str) -> &'a Value {
    let found = of_kind(docs, k);
    assert_eq!(found.len(), 1, "expected one {k}, got {}", found.len());
    found[0]
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// RBAC

fn required() -> BTreeMap<Triple, Scope> {
    required_triples()
        .map(|(scope, (g, r, v))| ((g.to_string(), r.to_string(), v.to_string()), scope))
        .collect()
}

/// The triples one ClusterRole or Role grants. A wildcard, a non-resource URL or a triple that
/// `REQUIRED_ACCESS` does not list fails here: the chart may grant nothing vtmove does not use.
fn role_triples(role: &Value) -> BTreeSet<Triple> {
    let required = required();
    let mut out = BTreeSet::new();
    let rules = role["rules"].as_array().cloned().unwrap_or_default();
    for rule in &rules {
        let what = describe(role);
        assert!(
            rule.get("nonResourceURLs").is_none() && rule.get("resourceNames").is_none(),
            "{what}: unexpected nonResourceURLs/resourceNames in {rule}"
        );
        for field in ["apiGroups", "resources", "verbs"] {
            let values = strings(&rule[field]);
            assert!(!values.is_empty(), "{what}: rule without {field}: {rule}");
            assert!(
                values.iter().all(|v| !v.contains('*')),
                "{what}: wildcard in {field}: {rule}"
            );
        }
        for g in strings(&rule["apiGroups"]) {
            for r in strings(&rule["resources"]) {
                for v in strings(&rule["verbs"]) {
                    let t = (g.to_string(), r.to_string(), v.to_string());
                    assert!(
                        required.contains_key(&t),
                        "{what} grants {v} on {r} in group {g:?}, which vtmove does not use: \
                         src/rbac.rs REQUIRED_ACCESS does not list it. Remove it from the chart, \
                         or add it to REQUIRED_ACCESS with the reason the code needs it"
                    );
                    if required[&t] == Scope::OperatorNamespace {
                        assert_eq!(
                            kind(role),
                            "Role",
                            "{what}: {v} {r} is needed in the release namespace only, \
                             never cluster-wide"
                        );
                        assert_eq!(namespace(role), Some(RELEASE_NS), "{what}: {v} {r}");
                    }
                    out.insert(t);
                }
            }
        }
    }
    out
}

fn binds_our_service_account(binding: &Value) -> bool {
    binding["subjects"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|s| {
            s["kind"] == "ServiceAccount" && s["name"] == RELEASE && s["namespace"] == RELEASE_NS
        })
}

/// What the chart's ServiceAccount may do: cluster-wide (`ns` None, ClusterRoleBindings only) or
/// in namespace `ns` (also its RoleBindings, to Roles there or to ClusterRoles).
fn granted(docs: &[Value], ns: Option<&str>) -> BTreeSet<Triple> {
    let role = |k: &str, name: &str, in_ns: Option<&str>| -> BTreeSet<Triple> {
        let found: Vec<&Value> = docs
            .iter()
            .filter(|d| kind(d) == k && self::name(d) == name && namespace(d) == in_ns)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "a binding refers to {k} {name}, which is missing"
        );
        role_triples(found[0])
    };
    let mut out = BTreeSet::new();
    for b in of_kind(docs, "ClusterRoleBinding") {
        if binds_our_service_account(b) {
            assert_eq!(b["roleRef"]["kind"], "ClusterRole");
            out.extend(role(
                "ClusterRole",
                b["roleRef"]["name"].as_str().unwrap_or(""),
                None,
            ));
        }
    }
    if let Some(ns) = ns {
        for b in of_kind(docs, "RoleBinding") {
            if namespace(b) == Some(ns) && binds_our_service_account(b) {
                let role_kind = b["roleRef"]["kind"].as_str().unwrap_or("");
                let role_ns = (role_kind == "Role").then_some(ns);
                out.extend(role(
                    role_kind,
                    b["roleRef"]["name"].as_str().unwrap_or(""),
                    role_ns,
                ));
            }
        }
    }
    out
}

/// Checks the rendered RBAC in both directions. `watched` is None for cluster-wide.
fn check_rbac(docs: &[Value], watched: Option<&[&str]>, leader_election: bool) {
    // Nothing granted beyond REQUIRED_ACCESS, by any role (bound or not).
    for k in ["ClusterRole", "Role"] {
        for r in of_kind(docs, k) {
            role_triples(r);
        }
    }
    let required = required();
    let of_scope = |scope: Scope| -> BTreeSet<Triple> {
        required
            .iter()
            .filter(|(_, s)| **s == scope)
            .map(|(t, _)| t.clone())
            .collect()
    };
    let watched_triples = of_scope(Scope::WatchedNamespaces);
    let lease_triples = of_scope(Scope::OperatorNamespace);
    let cluster = granted(docs, None);
    match watched {
        None => {
            let missing: Vec<_> = watched_triples.difference(&cluster).collect();
            assert!(missing.is_empty(), "not granted cluster-wide: {missing:?}");
        }
        Some(namespaces) => {
            assert!(
                cluster.is_empty(),
                "namespaced install grants cluster-wide: {cluster:?}"
            );
            assert!(of_kind(docs, "ClusterRole").is_empty());
            for ns in namespaces {
                let got = granted(docs, Some(ns));
                let missing: Vec<_> = watched_triples.difference(&got).collect();
                assert!(
                    missing.is_empty(),
                    "not granted in namespace {ns}: {missing:?}"
                );
            }
        }
    }
    let home = granted(docs, Some(RELEASE_NS));
    if leader_election {
        let missing: Vec<_> = lease_triples.difference(&home).collect();
        assert!(
            missing.is_empty(),
            "leader election needs {missing:?} in {RELEASE_NS}"
        );
    } else {
        assert!(
            home.is_disjoint(&lease_triples),
            "leases granted without leader election"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Deployment

/// The container's args after `run`, as (flag, value) pairs in order.
fn run_args(container: &Value) -> Vec<(String, String)> {
    let args = strings(&container["args"]);
    assert_eq!(
        args.first(),
        Some(&"run"),
        "the container must run `vtmove run`"
    );
    let mut out = Vec::new();
    for arg in &args[1..] {
        let (flag, value) = arg
            .split_once('=')
            .unwrap_or_else(|| panic!("pass flags as --flag=value: {arg}"));
        assert!(RUN_FLAGS.contains(&flag), "`vtmove run` has no flag {flag}");
        out.push((flag.to_string(), value.to_string()));
    }
    out
}

fn flag<'a>(args: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    args.iter()
        .filter(|(f, _)| f == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn the_container(docs: &[Value]) -> &Value {
    let deployment = one(docs, "Deployment");
    let containers = deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    assert_eq!(containers.len(), 1);
    &containers[0]
}

/// Security, probes, leader election and env, for any rendering.
fn check_deployment(docs: &[Value]) -> Vec<(String, String)> {
    let deployment = one(docs, "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let c = the_container(docs);
    let args = run_args(c);

    assert_eq!(pod["serviceAccountName"], RELEASE);
    // Non-root, read-only, no privileges.
    let sc = &c["securityContext"];
    assert!(
        pod["securityContext"]["runAsNonRoot"] == true || sc["runAsNonRoot"] == true,
        "runAsNonRoot"
    );
    for ctx in [&pod["securityContext"], sc] {
        if let Some(uid) = ctx["runAsUser"].as_i64() {
            assert_ne!(uid, 0, "runs as root");
        }
    }
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert!(strings(&sc["capabilities"]["drop"]).contains(&"ALL"));
    assert!(sc["capabilities"]["add"].is_null(), "adds capabilities");
    assert!(sc["privileged"] != true);
    assert!(
        sc["seccompProfile"]["type"] == "RuntimeDefault"
            || pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    );

    // Probes on the metrics port, whose number matches --metrics-address.
    let metrics = flag(&args, "--metrics-address");
    assert_eq!(metrics.len(), 1);
    let metrics_port: i64 = metrics[0]
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .expect("--metrics-address is host:port");
    let port = c["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["containerPort"] == metrics_port)
        .expect("the container exposes the metrics port");
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert!(
            get["port"] == port["name"] || get["port"] == metrics_port,
            "{probe} is not on the metrics port"
        );
    }

    // Leader election: on whenever there can be two pods writing.
    let replicas = deployment["spec"]["replicas"].as_i64().expect("replicas");
    let le = flag(&args, "--leader-election");
    assert_eq!(le.len(), 1, "--leader-election given once");
    if replicas > 1 {
        assert_eq!(le, ["true"], "{replicas} replicas without leader election");
    }
    if le == ["true"] {
        assert_eq!(
            flag(&args, "--leader-election-namespace"),
            ["$(POD_NAMESPACE)"]
        );
        assert_eq!(flag(&args, "--leader-election-identity"), ["$(POD_NAME)"]);
        assert_eq!(flag(&args, "--leader-election-lease-name").len(), 1);
    } else {
        assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate");
    }
    let env: BTreeMap<&str, &Value> = c["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or(""),
                &e["valueFrom"]["fieldRef"]["fieldPath"],
            )
        })
        .collect();
    assert_eq!(
        env.get("POD_NAME").copied(),
        Some(&Value::from("metadata.name"))
    );
    assert_eq!(
        env.get("POD_NAMESPACE").copied(),
        Some(&Value::from("metadata.namespace"))
    );

    // Required topology flags.
    assert_eq!(flag(&args, "--topo-implementation"), ["etcd2"]);
    assert_eq!(flag(&args, "--topo-global-root"), ["/vitess/global"]);
    assert_eq!(
        flag(&args, "--topo-global-server-address"),
        ["etcd-0.etcd:2379,etcd-1.etcd:2379"]
    );
    args
}

/// The Secret whose volume is mounted at the directory holding `file`, if mounted read-only.
fn secret_holding(docs: &[Value], file: &str) -> Option<String> {
    let deployment = one(docs, "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let c = the_container(docs);
    let mount = c["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| {
            m["mountPath"]
                .as_str()
                .is_some_and(|p| Path::new(file).parent() == Some(Path::new(p)))
        })?;
    assert_eq!(
        mount["readOnly"], true,
        "{file}: TLS mount must be read-only"
    );
    let volume = pod["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == mount["name"])?;
    volume["secret"]["secretName"].as_str().map(str::to_string)
}

fn check_tls(docs: &[Value], args: &[(String, String)], etcd: Option<&str>, tablet: Option<&str>) {
    for (flags, secret) in [
        (
            [
                "--topo-etcd-tls-ca",
                "--topo-etcd-tls-cert",
                "--topo-etcd-tls-key",
            ],
            etcd,
        ),
        (
            [
                "--tablet-manager-grpc-ca",
                "--tablet-manager-grpc-cert",
                "--tablet-manager-grpc-key",
            ],
            tablet,
        ),
    ] {
        for f in flags {
            let files = flag(args, f);
            match secret {
                None => assert!(files.is_empty(), "{f} without a Secret"),
                Some(secret) => {
                    assert_eq!(files.len(), 1, "{f}");
                    assert_eq!(
                        secret_holding(docs, files[0]).as_deref(),
                        Some(secret),
                        "{f}={} is not in a read-only mount of Secret {secret}",
                        files[0]
                    );
                }
            }
        }
    }
    if etcd.is_none() && tablet.is_none() {
        assert!(the_container(docs)["volumeMounts"].is_null());
    }
}

fn check_metrics_service(docs: &[Value]) {
    let svc = one(docs, "Service");
    let c = the_container(docs);
    let port = &svc["spec"]["ports"][0];
    assert!(
        c["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["name"] == port["targetPort"]),
        "the Service targets a port the container does not have"
    );
    let pod_labels = &one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"];
    for (k, v) in svc["spec"]["selector"].as_object().expect("selector") {
        assert_eq!(&pod_labels[k], v, "Service selector {k}");
    }
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn helm_lint_passes() {
    for sets in [
        vec![TOPO],
        vec![TOPO, "namespaces={a,b}"],
        vec![
            TOPO,
            "etcdTLS.secretName=etcd-client",
            "tabletTLS.secretName=tablet-client",
            "metrics.serviceMonitor.enabled=true",
        ],
    ] {
        let mut args = vec!["lint", "--strict", "charts/vtmove"];
        for s in &sets {
            args.extend(["--set", s]);
        }
        let out = run_helm(&args);
        assert!(
            out.status.success(),
            "helm lint {sets:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn default_values_cluster_wide() {
    let docs = render(&[TOPO]);
    check_rbac(&docs, None, true);
    let args = check_deployment(&docs);
    assert_eq!(one(&docs, "Deployment")["spec"]["replicas"], 2);
    assert!(flag(&args, "--namespace").is_empty());
    assert_eq!(flag(&args, "--concurrency"), ["8"]);
    assert_eq!(flag(&args, "--log-format"), ["json"]);
    assert_eq!(flag(&args, "--lock-ttl"), ["10s"]);
    assert_eq!(flag(&args, "--lock-timeout"), ["45s"]);
    assert_eq!(flag(&args, "--cutover-flush-delay"), ["100ms"]);
    // Multi-tenant by default: workflows name only keyspaces their namespace claims.
    assert_eq!(flag(&args, "--allow-unclaimed-keyspaces"), ["false"]);
    check_tls(&docs, &args, None, None);
    check_metrics_service(&docs);
    assert!(of_kind(&docs, "ServiceMonitor").is_empty());
    let kinds: BTreeSet<&str> = docs.iter().map(kind).collect();
    assert_eq!(
        kinds,
        BTreeSet::from([
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "Service",
            "Deployment"
        ])
    );
}

#[test]
fn namespaced_values() {
    let docs = render(&[TOPO_LIST, "namespaces={a,b}"]);
    check_rbac(&docs, Some(&["a", "b"]), true);
    let args = check_deployment(&docs);
    assert_eq!(flag(&args, "--namespace"), ["a", "b"]);
    // One Role per watched namespace plus the lease Role at home.
    let role_namespaces: BTreeSet<&str> = of_kind(&docs, "Role")
        .into_iter()
        .filter_map(|r| namespace(r))
        .collect();
    assert_eq!(role_namespaces, BTreeSet::from(["a", "b", RELEASE_NS]));
}

#[test]
fn tls_and_service_monitor() {
    let docs = render(&[
        TOPO,
        "etcdTLS.secretName=etcd-client",
        "tabletTLS.secretName=tablet-client",
        "tabletTLS.serverName=vttablet.vitess",
        "metrics.serviceMonitor.enabled=true",
    ]);
    check_rbac(&docs, None, true);
    let args = check_deployment(&docs);
    check_tls(&docs, &args, Some("etcd-client"), Some("tablet-client"));
    assert_eq!(
        flag(&args, "--tablet-manager-grpc-server-name"),
        ["vttablet.vitess"]
    );
    check_metrics_service(&docs);
    let sm = one(&docs, "ServiceMonitor");
    let svc = one(&docs, "Service");
    assert_eq!(
        sm["spec"]["endpoints"][0]["port"],
        svc["spec"]["ports"][0]["name"]
    );
    assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
    for (k, v) in sm["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("matchLabels")
    {
        assert_eq!(
            &svc["metadata"]["labels"][k], v,
            "ServiceMonitor selector {k}"
        );
    }
}

/// What operators tune reaches `vtmove run`: lock TTL and timeout, the cutover's flush delay, and
/// any other flag through `extraArgs`, appended after the chart's own.
#[test]
fn tuning_values_reach_the_flags() {
    let docs = render(&[
        TOPO,
        "locks.ttl=5s",
        "locks.timeout=1m",
        "cutoverFlushDelay=250ms",
        "allowUnclaimedKeyspaces=true",
        "extraArgs={--log-level=vtmove=debug}",
    ]);
    let args = check_deployment(&docs);
    assert_eq!(flag(&args, "--allow-unclaimed-keyspaces"), ["true"]);
    assert_eq!(flag(&args, "--lock-ttl"), ["5s"]);
    assert_eq!(flag(&args, "--lock-timeout"), ["1m"]);
    assert_eq!(flag(&args, "--cutover-flush-delay"), ["250ms"]);
    assert_eq!(
        args.last(),
        Some(&("--log-level".to_owned(), "vtmove=debug".to_owned())),
        "extraArgs come last, so they override the chart's own flags"
    );
}

/// The metrics and health server has no authentication: its bind address is a value, and an
/// optional NetworkPolicy admits only the listed peers to the metrics port.
#[test]
fn metrics_bind_address_and_network_policy() {
    let docs = render(&[TOPO]);
    assert!(of_kind(&docs, "NetworkPolicy").is_empty(), "off by default");
    assert_eq!(
        flag(&check_deployment(&docs), "--metrics-address"),
        ["0.0.0.0:8080"]
    );

    let docs = render(&[TOPO, "metrics.bindAddress=$(POD_IP)", "metrics.port=9090"]);
    let args = check_deployment(&docs);
    assert_eq!(flag(&args, "--metrics-address"), ["$(POD_IP):9090"]);
    let env = &the_container(&docs)["env"];
    assert!(
        env.as_array()
            .is_some_and(|env| env.iter().any(|e| e["name"] == "POD_IP"
                && e["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP")),
        "$(POD_IP) needs the variable in the container's environment: {env:#}"
    );
    let docs = render(&[TOPO, "metrics.bindAddress=::"]);
    assert_eq!(
        flag(&check_deployment(&docs), "--metrics-address"),
        ["[::]:8080"]
    );

    // Enabled with no peers: no ingress at all (not a missing field, which would be the same
    // but reads like an omission).
    let docs = render(&[TOPO, "networkPolicy.enabled=true"]);
    let policy = one(&docs, "NetworkPolicy");
    assert_eq!(
        policy["spec"]["policyTypes"],
        serde_json::json!(["Ingress"])
    );
    assert_eq!(policy["spec"]["ingress"], serde_json::json!([]));
    let deployment = one(&docs, "Deployment");
    assert_eq!(
        policy["spec"]["podSelector"]["matchLabels"], deployment["spec"]["selector"]["matchLabels"],
        "the policy selects vtmove's pods"
    );

    let docs = render(&[
        TOPO,
        "networkPolicy.enabled=true",
        "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.team=monitoring",
    ]);
    let policy = one(&docs, "NetworkPolicy");
    assert_eq!(
        policy["spec"]["ingress"],
        serde_json::json!([{
            "from": [{"namespaceSelector": {"matchLabels": {"team": "monitoring"}}}],
            "ports": [{"port": "metrics", "protocol": "TCP"}],
        }])
    );
}

#[test]
fn single_replica_without_leader_election() {
    let docs = render(&[TOPO, "replicas=1", "leaderElection.enabled=false"]);
    check_rbac(&docs, None, false);
    let args = check_deployment(&docs);
    assert_eq!(flag(&args, "--leader-election"), ["false"]);
    assert!(flag(&args, "--leader-election-identity").is_empty());
}

#[test]
fn chart_refuses_unsafe_or_incomplete_values() {
    let err = render_error(&[TOPO, "replicas=3", "leaderElection.enabled=false"]);
    assert!(err.contains("needs leaderElection.enabled"), "{err}");
    let err = render_error(&[]);
    assert!(
        err.contains("topology.globalServerAddress is required"),
        "{err}"
    );
    let err = render_error(&[TOPO, "logFormat=xml"]);
    assert!(err.contains("logFormat must be json or text"), "{err}");
}

/// The check itself must be able to fail: a chart granting one verb more than `REQUIRED_ACCESS`
/// (here `delete` on workflows) and a chart missing one (`watch`) are both rejected.
#[test]
fn rbac_check_catches_extra_and_missing_verbs() {
    let docs = render(&[TOPO]);
    let tamper = |f: &dyn Fn(&mut Vec<Value>)| {
        let mut docs = docs.clone();
        let role = docs
            .iter_mut()
            .find(|d| kind(d) == "ClusterRole")
            .expect("ClusterRole");
        let rules = role["rules"].as_array_mut().expect("rules");
        f(rules);
        std::panic::catch_unwind(|| check_rbac(&docs, None, true)).is_err()
    };
    assert!(tamper(&|rules| rules[0]["verbs"]
        .as_array_mut()
        .expect("verbs")
        .push("delete".into())));
    assert!(tamper(
        &|rules| rules[0]["verbs"] = serde_json::json!(["get", "list", "patch"])
    ));
    assert!(tamper(
        &|rules| rules[0]["resources"] = serde_json::json!(["*"])
    ));
    assert!(tamper(&|rules| rules.push(serde_json::json!({
        "apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get"]
    }))));
    assert!(!tamper(&|_| {}), "the untouched chart passes");
}

#[test]
fn app_version_is_the_crate_version() {
    let text = std::fs::read_to_string(chart_dir().join("Chart.yaml")).expect("Chart.yaml");
    let chart: Value = serde_saphyr::from_str(&text).expect("Chart.yaml parses");
    assert_eq!(chart["apiVersion"], "v2");
    assert_eq!(chart["name"], "vtmove");
    assert_eq!(
        chart["appVersion"],
        env!("CARGO_PKG_VERSION"),
        "set appVersion in charts/vtmove/Chart.yaml to Cargo.toml's version"
    );
}

/// The chart installs the CRDs from its `crds/` directory, so it must hold exactly what the Rust
/// types generate, like the top-level `crds/` (see tests/crd_drift.rs).
#[test]
fn chart_crds_match_the_rust_types() {
    let dir = chart_dir().join("crds");
    let regenerate =
        "run `cargo run -- crds --output-dir charts/vtmove/crds` and commit the result";
    let files = crd_files().expect("the CRDs render");
    for file in &files {
        let path = dir.join(&file.file_name);
        let committed = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}; {regenerate}", path.display()));
        assert!(
            committed == file.yaml,
            "charts/vtmove/crds/{} is out of date with the Rust types; {regenerate}",
            file.file_name
        );
    }
    let generated: BTreeSet<String> = files.into_iter().map(|f| f.file_name).collect();
    let present: BTreeSet<String> = std::fs::read_dir(&dir)
        .expect("charts/vtmove/crds exists")
        .map(|e| {
            e.expect("readable entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        present, generated,
        "stale files in charts/vtmove/crds; {regenerate}"
    );
}

/// `REQUIRED_ACCESS` is not empty and lists each resource once: otherwise the both-ways check
/// above would pass vacuously.
#[test]
fn required_access_is_meaningful() {
    assert!(REQUIRED_ACCESS.len() >= 8);
    assert!(required().len() >= 20);
}

/// Every flag `vtmove run --help` lists can be set from the chart's values: for each, the values
/// that make the chart render it, and the value rendered.
#[test]
fn every_run_flag_is_settable_from_values() {
    let tls = [
        "etcdTLS.secretName=etcd-tls",
        "tabletTLS.secretName=tablet-tls",
        "tabletTLS.serverName=vttablet.example",
    ];
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "--topo-implementation",
            &["topology.implementation=etcd2"],
            "etcd2",
        ),
        (
            "--topo-global-server-address",
            &[],
            "etcd-0.etcd:2379,etcd-1.etcd:2379",
        ),
        (
            "--topo-global-root",
            &["topology.globalRoot=/vt/global"],
            "/vt/global",
        ),
        ("--topo-etcd-tls-ca", &tls, "/etc/vtmove/etcd-tls/ca.crt"),
        ("--topo-etcd-tls-cert", &tls, "/etc/vtmove/etcd-tls/tls.crt"),
        ("--topo-etcd-tls-key", &tls, "/etc/vtmove/etcd-tls/tls.key"),
        (
            "--tablet-manager-grpc-ca",
            &tls,
            "/etc/vtmove/tablet-tls/ca.crt",
        ),
        (
            "--tablet-manager-grpc-cert",
            &tls,
            "/etc/vtmove/tablet-tls/tls.crt",
        ),
        (
            "--tablet-manager-grpc-key",
            &tls,
            "/etc/vtmove/tablet-tls/tls.key",
        ),
        (
            "--tablet-manager-grpc-server-name",
            &tls,
            "vttablet.example",
        ),
        ("--namespace", &["namespaces={team-a}"], "team-a"),
        ("--concurrency", &["concurrency=3"], "3"),
        ("--metrics-address", &["metrics.port=9090"], "0.0.0.0:9090"),
        (
            "--leader-election",
            &["leaderElection.enabled=true"],
            "true",
        ),
        ("--leader-election-namespace", &[], "$(POD_NAMESPACE)"),
        (
            "--leader-election-lease-name",
            &["leaderElection.leaseName=lease-x"],
            "lease-x",
        ),
        ("--leader-election-identity", &[], "$(POD_NAME)"),
        ("--log-format", &["logFormat=text"], "text"),
        ("--log-level", &["logLevel=debug"], "debug"),
        ("--resync-period", &["resyncPeriod=2m"], "2m"),
        ("--lock-ttl", &["locks.ttl=7s"], "7s"),
        ("--lock-timeout", &["locks.timeout=20s"], "20s"),
        ("--cutover-flush-delay", &["cutoverFlushDelay=30ms"], "30ms"),
        (
            "--allow-unclaimed-keyspaces",
            &["allowUnclaimedKeyspaces=true"],
            "true",
        ),
        ("--publish-row-data", &["publishRowData=true"], "true"),
        ("--check-permissions", &["checkPermissions=false"], "false"),
        ("--watch-timeout", &["watchTimeout=60s"], "60s"),
    ];
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_vtmove"))
        .args(["run", "--help"])
        .output()
        .expect("vtmove runs");
    assert!(output.status.success(), "vtmove run --help failed");
    let help = String::from_utf8_lossy(&output.stdout);
    let listed: BTreeSet<&str> = help
        .split_whitespace()
        .filter(|w| w.starts_with("--") && *w != "--help")
        .map(|w| w.trim_end_matches(','))
        .filter(|w| w.len() > 2 && w[2..].chars().all(|c| c.is_ascii_lowercase() || c == '-'))
        .collect();
    let covered: BTreeSet<&str> = cases.iter().map(|(f, _, _)| *f).collect();
    let missing: Vec<&&str> = listed.difference(&covered).collect();
    assert!(
        missing.is_empty(),
        "`vtmove run` flags no chart value sets: {missing:?}"
    );
    for (flag_name, sets, want) in cases {
        let mut all = vec![TOPO];
        all.extend_from_slice(sets);
        let args = run_args(the_container(&render(&all)));
        assert_eq!(flag(&args, flag_name), [*want], "{flag_name} from {sets:?}");
    }
}

/// The chart's default image is the one this repository's Dockerfile builds, tagged with the
/// version (`charts/vtmove/README.md`, "Build the image"): `vtmove:<version>`, the Dockerfile's
/// last stage, and the README's build command tags it that way.
#[test]
fn the_default_image_is_what_the_dockerfile_builds() {
    let docs = render(&[TOPO]);
    assert_eq!(
        the_container(&docs)["image"],
        format!("vtmove:{}", env!("CARGO_PKG_VERSION"))
    );
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).expect("Dockerfile");
    let last_stage = dockerfile
        .lines()
        .rfind(|l| l.starts_with("FROM "))
        .expect("stages");
    assert!(
        last_stage.ends_with(" AS vtmove"),
        "a plain `docker build` must produce the operator: {last_stage}"
    );
    let readme = std::fs::read_to_string(chart_dir().join("README.md")).expect("chart README");
    assert!(
        readme.contains(r#"docker build -t "vtmove:$version" ."#),
        "the chart README shows how to build the default image"
    );
}

/// The flags the chart may pass are exactly the ones `vtmove run` accepts: each is listed by
/// the real binary's `run --help`.
#[test]
fn chart_flags_exist_in_the_binary() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_vtmove"))
        .args(["run", "--help"])
        .output()
        .expect("vtmove runs");
    assert!(output.status.success(), "vtmove run --help failed");
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in RUN_FLAGS {
        assert!(
            help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}=")),
            "`vtmove run` has no flag {flag}:\n{help}"
        );
    }
}
