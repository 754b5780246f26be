//! vtmove's CRDs on kube-sim: a server with the committed `crds/*.yaml` installed, dynamic APIs
//! that send raw JSON past vtmove's own types (so the server, not serde, judges it), and helpers
//! to read the `Status` of a refused write.

use std::path::{Path, PathBuf};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use kube::core::Status;
use serde_json::Value;
use vtmove::api::{Keyspace, MoveTablesWorkflow};

/// A path inside the repository.
pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// The YAML documents of a committed file (`crds/...`, `examples/...`) as JSON.
pub fn yaml_documents(relative: &str) -> Vec<Value> {
    let path = repo_path(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The committed CRDs, read from `crds/*.yaml`: exactly what `kubectl apply -f crds/` sends.
pub fn committed_crds() -> Vec<Value> {
    let mut files: Vec<String> = std::fs::read_dir(repo_path("crds"))
        .expect("crds/ exists")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| yaml_documents(&format!("crds/{f}")))
        .collect()
}

/// A fresh kube-sim (no CRDs yet).
pub async fn start() -> kube_sim::Handle {
    kube_sim::KubeSim::start(kube_sim::Options::default())
        .await
        .expect("kube-sim starts")
}

/// A fresh kube-sim with the committed CRDs created through `kube::Client` and established.
pub async fn start_with_crds() -> kube_sim::Handle {
    let sim = start().await;
    let crds: Api<CustomResourceDefinition> = Api::all(sim.client());
    for crd in committed_crds() {
        let name = crd["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let crd: CustomResourceDefinition =
            serde_json::from_value(crd).unwrap_or_else(|e| panic!("{name} decodes: {e}"));
        let created = crds
            .create(&PostParams::default(), &crd)
            .await
            .unwrap_or_else(|e| panic!("kube-sim refuses the committed CRD {name}: {e}"));
        let established = created
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        assert!(established, "{name} is not established at once");
    }
    sim
}

/// The API resource of a vtmove kind (`MoveTablesWorkflow` or `Keyspace`).
pub fn resource(kind: &str) -> ApiResource {
    match kind {
        "MoveTablesWorkflow" => ApiResource::erase::<MoveTablesWorkflow>(&()),
        "Keyspace" => ApiResource::erase::<Keyspace>(&()),
        other => panic!("not a vtmove kind: {other}"),
    }
}

/// The namespace of `object` (`metadata.namespace`, else `default`).
pub fn namespace_of(object: &Value) -> &str {
    object["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default")
}

/// A dynamic API in the namespace of `object` for its kind (its `kind` field).
pub fn api_for(client: &kube::Client, object: &Value) -> Api<DynamicObject> {
    let kind = object["kind"].as_str().expect("the object has a kind");
    Api::namespaced_with(client.clone(), namespace_of(object), &resource(kind))
}

/// A DynamicObject carrying `object` as is, whatever its spec holds.
pub fn dynamic(object: &Value) -> DynamicObject {
    serde_json::from_value(object.clone()).expect("apiVersion, kind and metadata decode")
}

/// Creates `object` with `kube::Client` (no `fieldValidation`, so the server default applies).
pub async fn create(client: &kube::Client, object: &Value) -> Result<DynamicObject, kube::Error> {
    api_for(client, object)
        .create(&PostParams::default(), &dynamic(object))
        .await
}

/// Creates `object` with `fieldValidation=Strict` (what kubectl sends), through
/// `kube::Client::request` because kube's `PostParams` has no such field.
pub async fn create_strict(
    client: &kube::Client,
    object: &Value,
) -> Result<DynamicObject, kube::Error> {
    let kind = object["kind"].as_str().expect("the object has a kind");
    let url = format!(
        "/apis/{}/namespaces/{}/{}?fieldValidation=Strict",
        vtmove::api::API_VERSION,
        namespace_of(object),
        resource(kind).plural
    );
    let request = http::Request::post(url)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(object).unwrap())
        .unwrap();
    client.request::<DynamicObject>(request).await
}

/// The `Status` of a write the server refused; panics if it succeeded or failed otherwise.
pub fn refusal<T: std::fmt::Debug>(result: Result<T, kube::Error>, what: &str) -> Status {
    match result {
        Err(kube::Error::Api(status)) => *status,
        Err(other) => panic!("{what}: expected an API error, got {other}"),
        Ok(created) => panic!("{what}: expected a refusal, but the server admitted {created:?}"),
    }
}
