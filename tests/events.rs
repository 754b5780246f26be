//! Events keep each step's own message: kube-runtime's Recorder folds Events with the same type,
//! reason and action into one series, keeping the first note.

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event as KubeEvent;
use kube::Api;
use kube::api::{ListParams, ObjectMeta};
use kube::runtime::events::{EventType, Recorder, Reporter};
use vtmove::controller::kube_calls::publish;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_with_one_reason_keep_their_own_messages_and_repeats_aggregate() {
    let sim = kube_sim::KubeSim::start(kube_sim::Options::default())
        .await
        .expect("kube-sim starts");
    let client = sim.client();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "vtmove".into(),
            instance: Some("test".into()),
        },
    );
    let object = ConfigMap {
        metadata: ObjectMeta {
            name: Some("commerce2customer".into()),
            namespace: Some("default".into()),
            uid: Some("7d3b6c1e-0000-4000-8000-000000000001".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let deadline = Duration::from_secs(5);
    let created = "writing the routing rules that keep the moved tables on the source";
    let switched = "switching replica and rdonly reads to the target";
    for note in [created, switched, switched] {
        publish(
            &recorder,
            &object,
            EventType::Normal,
            "SetRoutingRules",
            note,
            deadline,
        )
        .await;
    }

    let events: Api<KubeEvent> = Api::namespaced(client, "default");
    let mut seen: Vec<(String, i32)> = events
        .list(&ListParams::default())
        .await
        .expect("events listed")
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("SetRoutingRules"))
        .map(|e| (e.note.unwrap_or_default(), e.series.map_or(1, |s| s.count)))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [(switched.to_string(), 2), (created.to_string(), 1)],
        "one Event per distinct message, repeats counted in its series"
    );
}
