//! API semantics, one test per behaviour clients depend on: create, list (paging,
//! selectors), watch (resume, 410, bookmarks, initial events, timeouts), update
//! preconditions, the patch formats, server-side apply ownership, the status
//! subresource and generation, no-op writes, finalizers and deletion, error bodies.

#![recursion_limit = "256"]

mod common;

use std::time::{Duration, Instant};

use common::{api_err, dynobj, raw, tm, tm_api};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent, Namespace};
use kube::ResourceExt;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use serde_json::{Value, json};

const TM_PATH: &str = "/apis/test.vtmove.dev/v1alpha1/namespaces/default/tablemoves";

async fn setup() -> (kube_sim::Handle, kube::Client) {
    let sim = common::start().await;
    let client = sim.client();
    common::install_crd(&client).await;
    (sim, client)
}

fn rv_of(o: &kube::api::DynamicObject) -> u64 {
    o.resource_version().unwrap().parse().unwrap()
}

#[tokio::test]
async fn create_sets_server_metadata_and_conflicts() {
    let (sim, client) = setup().await;
    let api = tm_api(&client, "default");
    let o = api
        .create(&PostParams::default(), &dynobj(tm("a")))
        .await
        .unwrap();
    assert_eq!(o.metadata.generation, Some(1));
    assert_eq!(o.uid().unwrap().len(), 36);
    assert!(o.creation_timestamp().is_some());
    assert!(rv_of(&o) > 0);
    // Defaults from the schema were applied.
    assert_eq!(o.data["spec"]["lifecycle"], "Active");
    assert_eq!(
        o.data["spec"]["traffic"],
        json!({"replica": "Source", "rdonly": "Source", "primary": "Source"})
    );
    assert_eq!(
        o.data["spec"]["cutover"],
        json!({"maxReplicationLagSeconds": 30, "timeout": "30s"})
    );

    let e = api_err(
        api.create(&PostParams::default(), &dynobj(tm("a")))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(e.message, "tablemoves.test.vtmove.dev \"a\" already exists");

    let mut gen_named = tm("");
    gen_named["metadata"] = json!({"generateName": "move-"});
    let g = api
        .create(&PostParams::default(), &dynobj(gen_named))
        .await
        .unwrap();
    assert!(
        g.name_any().starts_with("move-") && g.name_any().len() == 10,
        "{}",
        g.name_any()
    );

    // A namespace that does not exist is a 404 on the namespace.
    let e = api_err(
        tm_api(&client, "nowhere")
            .create(&PostParams::default(), &dynobj(tm("b")))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (e.code, e.message.as_str()),
        (404, "namespaces \"nowhere\" not found")
    );

    // Status is dropped on create when the status subresource is enabled.
    let mut with_status = tm("c");
    with_status["status"] = json!({"phase": "Done"});
    let c = api
        .create(&PostParams::default(), &dynobj(with_status))
        .await
        .unwrap();
    assert!(c.data.get("status").is_none());

    // dryRun persists nothing.
    let dry = api
        .create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &dynobj(tm("d")),
        )
        .await
        .unwrap();
    assert_eq!(dry.name_any(), "d");
    assert!(api.get_opt("d").await.unwrap().is_none());
    drop(sim);
}

#[tokio::test]
async fn list_paging_is_a_consistent_snapshot() {
    let (sim, client) = setup().await;
    let api = tm_api(&client, "default");
    for i in 0..5 {
        api.create(&PostParams::default(), &dynobj(tm(&format!("p{i}"))))
            .await
            .unwrap();
    }
    let first = api.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(first.items.len(), 2);
    assert_eq!(first.metadata.remaining_item_count, Some(3));
    let snapshot_rv = first.metadata.resource_version.clone().unwrap();
    // Changes after the first page do not show in later pages.
    api.delete("p3", &DeleteParams::default()).await.unwrap();
    api.create(&PostParams::default(), &dynobj(tm("p9")))
        .await
        .unwrap();
    let mut names: Vec<String> = first.items.iter().map(|o| o.name_any()).collect();
    let mut token = first.metadata.continue_.clone();
    while let Some(t) = token.filter(|t| !t.is_empty()) {
        let page = api
            .list(&ListParams::default().limit(2).continue_token(&t))
            .await
            .unwrap();
        assert_eq!(
            page.metadata.resource_version.as_deref(),
            Some(snapshot_rv.as_str())
        );
        names.extend(page.items.iter().map(|o| o.name_any()));
        token = page.metadata.continue_.clone();
    }
    assert_eq!(names, vec!["p0", "p1", "p2", "p3", "p4"]);
    let all = api.list(&ListParams::default()).await.unwrap();
    assert!(
        all.metadata
            .resource_version
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > snapshot_rv.parse::<u64>().unwrap()
    );
    assert!(all.metadata.continue_.is_none());

    // resourceVersionMatch=Exact lists the state as of that resourceVersion.
    let exact = api
        .list(
            &ListParams::default()
                .at(&snapshot_rv)
                .matching(kube::api::VersionMatch::Exact),
        )
        .await
        .unwrap();
    let exact_names: Vec<String> = exact.items.iter().map(|o| o.name_any()).collect();
    assert_eq!(exact_names, vec!["p0", "p1", "p2", "p3", "p4"]);
    // A continue token older than the history is a 410 Expired.
    let page = api.list(&ListParams::default().limit(1)).await.unwrap();
    sim.force_compact();
    let e = api_err(
        api.list(
            &ListParams::default()
                .limit(1)
                .continue_token(page.metadata.continue_.as_deref().unwrap()),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (410, "Expired"));
}

#[tokio::test]
async fn label_and_field_selectors() {
    let (_sim, client) = setup().await;
    let api = tm_api(&client, "default");
    for (name, tier, src) in [
        ("a", "gold", "commerce"),
        ("b", "silver", "commerce"),
        ("c", "gold", "legacy"),
    ] {
        let mut o = tm(name);
        o["metadata"]["labels"] = json!({"tier": tier});
        o["spec"]["sourceKeyspace"] = json!(src);
        api.create(&PostParams::default(), &dynobj(o))
            .await
            .unwrap();
    }
    let names = |l: kube::core::ObjectList<kube::api::DynamicObject>| {
        l.items.iter().map(|o| o.name_any()).collect::<Vec<_>>()
    };
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("tier=gold"))
                .await
                .unwrap()
        ),
        vec!["a", "c"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("tier in (silver),tier!=gold"))
                .await
                .unwrap()
        ),
        vec!["b"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("!tier"))
                .await
                .unwrap()
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().fields("metadata.name=b"))
                .await
                .unwrap()
        ),
        vec!["b"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().fields("metadata.name!=b,metadata.namespace=default"))
                .await
                .unwrap()
        ),
        vec!["a", "c"]
    );
    // The CRD's selectableFields.
    assert_eq!(
        names(
            api.list(&ListParams::default().fields("spec.sourceKeyspace=legacy"))
                .await
                .unwrap()
        ),
        vec!["c"]
    );
    let e = api_err(
        api.list(&ListParams::default().fields("spec.targetKeyspace=x"))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (e.code, e.message.as_str()),
        (400, "field label not supported: spec.targetKeyspace")
    );
    let e = api_err(
        api.list(&ListParams::default().labels("tier in (gold"))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 400);
    // Cluster-wide list sees every namespace.
    let all: Api<kube::api::DynamicObject> = Api::all_with(client.clone(), &common::ar());
    assert_eq!(
        all.list(&ListParams::default()).await.unwrap().items.len(),
        3
    );
}

#[tokio::test]
async fn update_preconditions() {
    let (sim, client) = setup().await;
    let api = tm_api(&client, "default");
    let o = api
        .create(&PostParams::default(), &dynobj(tm("u")))
        .await
        .unwrap();
    let mut stale = o.clone();
    let mut fresh = o.clone();
    fresh.data["spec"]["paused"] = json!(true);
    let updated = api
        .replace("u", &PostParams::default(), &fresh)
        .await
        .unwrap();
    assert_eq!(updated.metadata.generation, Some(2));
    stale.data["spec"]["paused"] = json!(false);
    let e = api_err(
        api.replace("u", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert!(
        e.message.contains("the object has been modified"),
        "{}",
        e.message
    );
    // Custom resources require a resourceVersion on PUT.
    let mut no_rv = updated.clone();
    no_rv.metadata.resource_version = None;
    let e = api_err(
        api.replace("u", &PostParams::default(), &no_rv)
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 422);
    assert!(
        e.message.contains("metadata.resourceVersion"),
        "{}",
        e.message
    );
    // PUT of something that does not exist is a 404; a body whose name differs from
    // the URL's is a 400.
    let e = api_err(
        api.replace("other", &PostParams::default(), &updated)
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 404);
    let mut renamed = serde_json::to_value(&updated).unwrap();
    renamed["metadata"]["name"] = json!("x");
    let r = raw(
        &sim,
        "PUT",
        &format!("{TM_PATH}/u"),
        &[("Content-Type", "application/json")],
        &renamed.to_string(),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("does not match the name on the URL")
    );
    // Leases allow unconditional updates, and a stale resourceVersion is still a 409.
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    let l: Lease =
        serde_json::from_value(json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": "a"}}))
            .unwrap();
    let l = leases.create(&PostParams::default(), &l).await.unwrap();
    let mut l2 = l.clone();
    l2.spec.as_mut().unwrap().holder_identity = Some("b".into());
    leases
        .replace("l", &PostParams::default(), &l2)
        .await
        .unwrap();
    let e = api_err(
        leases
            .replace("l", &PostParams::default(), &l2)
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 409);
    let mut l3 = l2.clone();
    l3.metadata.resource_version = None;
    l3.spec.as_mut().unwrap().holder_identity = Some("c".into());
    assert_eq!(
        leases
            .replace("l", &PostParams::default(), &l3)
            .await
            .unwrap()
            .spec
            .unwrap()
            .holder_identity
            .as_deref(),
        Some("c")
    );
}

#[tokio::test]
async fn json_merge_and_strategic_patches() {
    let (sim, client) = setup().await;
    let api = tm_api(&client, "default");
    api.create(&PostParams::default(), &dynobj(tm("j")))
        .await
        .unwrap();
    // The finalizer helper's patch: test for null on an absent path, then add.
    let add: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/finalizers", "value": null},
        {"op": "add", "path": "/metadata/finalizers", "value": ["x.io/f"]}
    ]))
    .unwrap();
    let o = api
        .patch(
            "j",
            &PatchParams::default(),
            &Patch::<()>::Json(add.clone()),
        )
        .await
        .unwrap();
    assert_eq!(o.finalizers(), &["x.io/f".to_string()]);
    // Now the test fails: 422.
    let e = api_err(
        api.patch("j", &PatchParams::default(), &Patch::<()>::Json(add))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 422);
    // Merge patch with null deletes.
    let o = api
        .patch(
            "j",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}, "spec": {"cells": ["z1"]}})),
        )
        .await
        .unwrap();
    assert!(o.finalizers().is_empty());
    assert_eq!(o.data["spec"]["cells"], json!(["z1"]));
    // Custom resources refuse strategic merge patches, like a real server.
    let r = raw(
        &sim,
        "PATCH",
        &format!("{TM_PATH}/j"),
        &[("Content-Type", "application/strategic-merge-patch+json")],
        "{}",
    )
    .await;
    assert_eq!(r.status, 415);
    assert_eq!(r.json()["reason"], "UnsupportedMediaType");
    // Built-ins take them (approximated as merge).
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "cm"}, "data": {"a": "1"}})).unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let cm = cms
        .patch(
            "cm",
            &PatchParams::default(),
            &Patch::Strategic(json!({"data": {"b": "2"}})),
        )
        .await
        .unwrap();
    assert_eq!(cm.data.unwrap().len(), 2);
    // Patching something missing is a 404; a malformed patch a 400.
    let e = api_err(
        api.patch("nope", &PatchParams::default(), &Patch::Merge(json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 404);
    let r = raw(
        &sim,
        "PATCH",
        &format!("{TM_PATH}/j"),
        &[("Content-Type", "application/json-patch+json")],
        "{not json",
    )
    .await;
    assert_eq!(r.status, 400);
    let r = raw(
        &sim,
        "PATCH",
        &format!("{TM_PATH}/j"),
        &[("Content-Type", "text/plain")],
        "{}",
    )
    .await;
    assert_eq!(r.status, 415);
}

#[tokio::test]
async fn server_side_apply_owns_fields() {
    let (_sim, client) = setup().await;
    let api = tm_api(&client, "default");
    // Create on apply.
    let mut cfg = tm("s");
    cfg["spec"]["cells"] = json!(["z1"]);
    cfg["spec"]["paused"] = json!(true);
    let o = api
        .patch("s", &PatchParams::apply("alice"), &Patch::Apply(&cfg))
        .await
        .unwrap();
    assert_eq!(o.metadata.generation, Some(1));
    let mf = o.metadata.managed_fields.clone().unwrap();
    assert_eq!(mf[0].manager.as_deref(), Some("alice"));
    assert_eq!(mf[0].operation.as_deref(), Some("Apply"));
    // The same manager leaving a field out removes it.
    let mut cfg2 = tm("s");
    cfg2["spec"]["cells"] = json!(["z1"]);
    let o = api
        .patch("s", &PatchParams::apply("alice"), &Patch::Apply(&cfg2))
        .await
        .unwrap();
    assert!(o.data["spec"].get("paused").is_none(), "{}", o.data);
    // Applying the same again is a no-op.
    let again = api
        .patch("s", &PatchParams::apply("alice"), &Patch::Apply(&cfg2))
        .await
        .unwrap();
    assert_eq!(again.resource_version(), o.resource_version());
    // Another manager setting a different value conflicts...
    let mut bob = tm("s");
    bob["spec"]["cells"] = json!(["z2"]);
    let e = api_err(
        api.patch("s", &PatchParams::apply("bob"), &Patch::Apply(&bob))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert!(
        e.message.contains("conflict with \"alice\""),
        "{}",
        e.message
    );
    // ...unless forced, which takes ownership.
    let o = api
        .patch("s", &PatchParams::apply("bob").force(), &Patch::Apply(&bob))
        .await
        .unwrap();
    assert_eq!(o.data["spec"]["cells"], json!(["z2"]));
    // Same value from a second manager: shared ownership, no conflict.
    let o = api
        .patch("s", &PatchParams::apply("carol"), &Patch::Apply(&bob))
        .await
        .unwrap();
    let managers: Vec<String> = o
        .metadata
        .managed_fields
        .unwrap()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(
        managers.contains(&"carol".to_string()) && managers.contains(&"bob".to_string()),
        "{managers:?}"
    );
    // An ordinary update takes ownership from appliers; a later non-forced apply of a
    // different value conflicts with the updater.
    api.patch(
        "s",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"cells": ["z3"]}})),
    )
    .await
    .unwrap();
    let e = api_err(
        api.patch("s", &PatchParams::apply("bob"), &Patch::Apply(&bob))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 409);
    // Apply requires a field manager.
    let r = raw(
        &_sim,
        "PATCH",
        &format!("{TM_PATH}/s"),
        &[("Content-Type", "application/apply-patch+yaml")],
        &serde_json::to_string(&bob).unwrap(),
    )
    .await;
    assert_eq!(r.status, 422);
    // force is only for apply.
    let r = raw(
        &_sim,
        "PATCH",
        &format!("{TM_PATH}/s?force=true"),
        &[("Content-Type", "application/merge-patch+json")],
        "{}",
    )
    .await;
    assert_eq!(r.status, 422);
}

#[tokio::test]
async fn status_subresource_and_generation() {
    let (_sim, client) = setup().await;
    let api = tm_api(&client, "default");
    let o = api
        .create(&PostParams::default(), &dynobj(tm("g")))
        .await
        .unwrap();
    assert_eq!(o.metadata.generation, Some(1));
    // Status writes do not bump generation, and ignore spec changes.
    let st = json!({"spec": {"paused": true}, "status": {"phase": "Copying", "conditions": [{"type": "Ready", "status": "False"}]}});
    let o2 = api
        .patch_status("g", &PatchParams::default(), &Patch::Merge(&st))
        .await
        .unwrap();
    assert_eq!(o2.metadata.generation, Some(1));
    assert_eq!(o2.data["status"]["phase"], "Copying");
    assert!(o2.data["spec"].get("paused").is_none());
    assert!(rv_of(&o2) > rv_of(&o));
    // Main-resource writes ignore status changes; spec changes bump generation.
    let o3 = api
        .patch(
            "g",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"paused": true}, "status": {"phase": "Hacked"}})),
        )
        .await
        .unwrap();
    assert_eq!(o3.metadata.generation, Some(2));
    assert_eq!(o3.data["status"]["phase"], "Copying");
    // Metadata-only changes do not bump generation.
    let o4 = api
        .patch(
            "g",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(o4.metadata.generation, Some(2));
    // SSA of status by a controller.
    let apply = json!({"apiVersion": "test.vtmove.dev/v1alpha1", "kind": "TableMove", "status": {"phase": "Running", "observedGeneration": 2}});
    let o5 = api
        .patch_status(
            "g",
            &PatchParams::apply("ctrl").force(),
            &Patch::Apply(&apply),
        )
        .await
        .unwrap();
    assert_eq!(o5.metadata.generation, Some(2));
    assert_eq!(o5.data["status"]["phase"], "Running");
    // GET on the status subresource returns the object.
    let got = api.get_status("g").await.unwrap();
    assert_eq!(got.data["status"]["observedGeneration"], 2);
    // PUT on status replaces only the status.
    let mut put = got.clone();
    put.data["status"] = json!({"phase": "Done"});
    put.data["spec"]["paused"] = json!(false);
    let o6 = api
        .replace_status("g", &PostParams::default(), &put)
        .await
        .unwrap();
    assert_eq!(o6.data["status"], json!({"phase": "Done"}));
    assert_eq!(o6.data["spec"]["paused"], json!(true));
}

#[tokio::test]
async fn no_op_writes_change_nothing() {
    let (sim, client) = setup().await;
    let api = tm_api(&client, "default");
    let o = api
        .create(&PostParams::default(), &dynobj(tm("n")))
        .await
        .unwrap();
    let rv = o.resource_version().unwrap();
    let before = sim.resource_version();
    let same = api
        .patch(
            "n",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"sourceKeyspace": "commerce"}})),
        )
        .await
        .unwrap();
    assert_eq!(same.resource_version().unwrap(), rv);
    let replaced = api
        .replace("n", &PostParams::default(), &same)
        .await
        .unwrap();
    assert_eq!(replaced.resource_version().unwrap(), rv);
    let st = json!({"apiVersion": "test.vtmove.dev/v1alpha1", "kind": "TableMove", "status": {"phase": "X"}});
    let s1 = api
        .patch_status("n", &PatchParams::apply("c").force(), &Patch::Apply(&st))
        .await
        .unwrap();
    let s2 = api
        .patch_status("n", &PatchParams::apply("c").force(), &Patch::Apply(&st))
        .await
        .unwrap();
    assert_eq!(s1.resource_version(), s2.resource_version());
    assert_eq!(
        sim.resource_version(),
        before + 1,
        "only the first status apply wrote"
    );
    // And no watch event: a watch from the latest resourceVersion sees only bookmarks.
    let r = raw(
        &sim,
        "GET",
        &format!(
            "{TM_PATH}?watch=true&timeoutSeconds=1&resourceVersion={}",
            s2.resource_version().unwrap()
        ),
        &[],
        "",
    )
    .await;
    let kinds: Vec<Value> = r.events().iter().map(|e| e["type"].clone()).collect();
    assert!(kinds.is_empty(), "{kinds:?}");
    let _ = api
        .patch(
            "n",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"lifecycle": "Active"}})),
        )
        .await
        .unwrap();
    assert_eq!(sim.resource_version(), before + 1);
}

#[tokio::test]
async fn watch_resume_ordering_and_selectors() {
    let (sim, client) = setup().await;
    let api = tm_api(&client, "default");
    let a = api
        .create(&PostParams::default(), &dynobj(tm("wa")))
        .await
        .unwrap();
    let start = a.resource_version().unwrap();
    let mut b = tm("wb");
    b["metadata"]["labels"] = json!({"sel": "yes"});
    api.create(&PostParams::default(), &dynobj(b))
        .await
        .unwrap();
    api.patch(
        "wa",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"sel": "yes"}}})),
    )
    .await
    .unwrap();
    api.patch(
        "wb",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"sel": "no"}}})),
    )
    .await
    .unwrap();
    api.delete("wa", &DeleteParams::default()).await.unwrap();

    // Resume from a resourceVersion replays what happened after it, in order (both
    // one-second watches run concurrently).
    let all_path = format!("{TM_PATH}?watch=true&timeoutSeconds=1&resourceVersion={start}");
    let sel_path = format!(
        "{TM_PATH}?watch=true&timeoutSeconds=1&labelSelector=sel%3Dyes&resourceVersion={start}"
    );
    let (r, selected) = tokio::join!(
        raw(&sim, "GET", &all_path, &[], ""),
        raw(&sim, "GET", &sel_path, &[], ""),
    );
    assert_eq!(r.status, 200);
    let evs = r.events();
    let seen: Vec<(String, String)> = evs
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_string(),
                e["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    let expect = [
        ("ADDED", "wb"),
        ("MODIFIED", "wa"),
        ("MODIFIED", "wb"),
        ("DELETED", "wa"),
    ];
    assert_eq!(seen, expect.map(|(a, b)| (a.to_string(), b.to_string())));
    let rvs: Vec<u64> = evs
        .iter()
        .map(|e| {
            e["object"]["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(rvs.windows(2).all(|w| w[0] < w[1]), "{rvs:?}");

    // With a selector, entering the selection is ADDED and leaving it DELETED.
    let r = selected;
    let seen: Vec<(String, String)> = r
        .events()
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_string(),
                e["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    let expect = [
        ("ADDED", "wb"),
        ("ADDED", "wa"),
        ("DELETED", "wb"),
        ("DELETED", "wa"),
    ];
    assert_eq!(seen, expect.map(|(a, b)| (a.to_string(), b.to_string())));

    // Without a resourceVersion: synthetic ADDED for what exists, then live events.
    let watch_api = tm_api(&client, "default");
    let mut stream = watch_api
        .watch(&WatchParams::default().timeout(5), "0")
        .await
        .unwrap()
        .boxed();
    use futures::StreamExt;
    match stream.next().await.unwrap().unwrap() {
        WatchEvent::Added(o) => assert_eq!(o.name_any(), "wb"),
        other => panic!("unexpected {other:?}"),
    }
    api.create(&PostParams::default(), &dynobj(tm("wc")))
        .await
        .unwrap();
    match stream.next().await.unwrap().unwrap() {
        WatchEvent::Added(o) => assert_eq!(o.name_any(), "wc"),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn watch_410_bookmarks_initial_events_and_timeout() {
    let (sim, client) = setup().await;
    let api = tm_api(&client, "default");
    let a = api
        .create(&PostParams::default(), &dynobj(tm("x")))
        .await
        .unwrap();
    let old_rv = a.resource_version().unwrap();
    sim.force_compact();
    // Too old: HTTP 200 and an ERROR event carrying a 410 Expired Status.
    let r = raw(
        &sim,
        "GET",
        &format!("{TM_PATH}?watch=true&timeoutSeconds=1&resourceVersion={old_rv}"),
        &[],
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    let evs = r.events();
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0]["type"], "ERROR");
    assert_eq!(evs[0]["object"]["code"], 410);
    assert_eq!(evs[0]["object"]["reason"], "Expired");
    // kube's typed watch surfaces it as WatchEvent::Error with code 410.
    use futures::StreamExt;
    let mut s = api
        .watch(&WatchParams::default().timeout(1), &old_rv)
        .await
        .unwrap()
        .boxed();
    match s.next().await.unwrap().unwrap() {
        WatchEvent::Error(e) => assert_eq!(e.code, 410),
        other => panic!("unexpected {other:?}"),
    }

    // Bookmarks when allowed, with the latest resourceVersion; and the stream ends at
    // timeoutSeconds. (The three one-second watches run concurrently.)
    let now_rv = sim.resource_version();
    let with_bookmarks = format!(
        "{TM_PATH}?watch=true&timeoutSeconds=1&allowWatchBookmarks=true&resourceVersion={now_rv}"
    );
    let without = format!("{TM_PATH}?watch=true&timeoutSeconds=1&resourceVersion={now_rv}");
    let initial = format!(
        "{TM_PATH}?watch=true&timeoutSeconds=1&allowWatchBookmarks=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&resourceVersion=0"
    );
    let t0 = Instant::now();
    let (r, plain, streamed) = tokio::join!(
        raw(&sim, "GET", &with_bookmarks, &[], ""),
        raw(&sim, "GET", &without, &[], ""),
        raw(&sim, "GET", &initial, &[], ""),
    );
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
    let evs = r.events();
    assert!(evs.len() >= 2, "{evs:?}");
    assert!(evs.iter().all(|e| e["type"] == "BOOKMARK"));
    assert_eq!(evs[0]["object"]["kind"], "TableMove");
    assert_eq!(
        evs[0]["object"]["metadata"]["resourceVersion"],
        now_rv.to_string()
    );
    // No bookmarks unless asked.
    assert!(plain.events().is_empty());

    // Streaming initial events end with the annotated bookmark.
    let r = streamed;
    let evs = r.events();
    assert_eq!(evs[0]["type"], "ADDED");
    assert_eq!(evs[1]["type"], "BOOKMARK");
    assert_eq!(
        evs[1]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    // sendInitialEvents needs NotOlderThan and bookmarks.
    let r = raw(
        &sim,
        "GET",
        &format!("{TM_PATH}?watch=true&sendInitialEvents=true"),
        &[],
        "",
    )
    .await;
    assert_eq!(r.status, 422);
}

#[tokio::test]
async fn finalizers_and_deletion() {
    let (sim, client) = setup().await;
    let api = tm_api(&client, "default");
    let mut o = tm("f");
    o["metadata"]["finalizers"] = json!(["x.io/a", "x.io/b"]);
    let created = api
        .create(&PostParams::default(), &dynobj(o))
        .await
        .unwrap();
    let from = created.resource_version().unwrap();
    // Delete with finalizers: marked, MODIFIED, generation bumped, still there.
    let d = api.delete("f", &DeleteParams::default()).await.unwrap();
    let marked = d.left().expect("object returned while finalizers remain");
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert_eq!(marked.metadata.generation, Some(2));
    assert!(api.get_opt("f").await.unwrap().is_some());
    // Deleting again changes nothing.
    let again = api
        .delete("f", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .unwrap();
    assert_eq!(again.resource_version(), marked.resource_version());
    // No new finalizers while deleting.
    let e = api_err(
        api.patch(
            "f",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["x.io/a", "x.io/b", "x.io/c"]}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, 422);
    assert!(e.message.contains("no new finalizers"), "{}", e.message);
    // Removing one keeps it; removing the last deletes it.
    api.patch(
        "f",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": ["x.io/b"]}})),
    )
    .await
    .unwrap();
    assert!(api.get_opt("f").await.unwrap().is_some());
    api.patch(
        "f",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(api.get_opt("f").await.unwrap().is_none());
    let r = raw(
        &sim,
        "GET",
        &format!("{TM_PATH}?watch=true&timeoutSeconds=1&resourceVersion={from}"),
        &[],
        "",
    )
    .await;
    let kinds: Vec<String> = r
        .events()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, vec!["MODIFIED", "MODIFIED", "DELETED"]);

    // Without finalizers: gone at once. Preconditions are honoured.
    let g = api
        .create(&PostParams::default(), &dynobj(tm("g")))
        .await
        .unwrap();
    let e = api_err(
        api.delete(
            "g",
            &DeleteParams {
                preconditions: Some(kube::api::Preconditions {
                    uid: Some("nope".into()),
                    resource_version: None,
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, 409);
    let gone = api
        .delete("g", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .unwrap();
    assert_eq!(gone.uid(), g.uid());
    assert!(api.get_opt("g").await.unwrap().is_none());
    let e = api_err(api.delete("g", &DeleteParams::default()).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (404, "NotFound"));
    // Built-ins answer a completed delete with a Status.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "c"}})).unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    assert!(
        cms.delete("c", &DeleteParams::default())
            .await
            .unwrap()
            .right()
            .is_some()
    );
}

#[tokio::test]
async fn garbage_collection_namespaces_and_crd_removal() {
    let (_sim, client) = setup().await;
    let nss: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "scratch"}})).unwrap();
    let ns = nss.create(&PostParams::default(), &ns).await.unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Active"));
    let api = tm_api(&client, "scratch");
    let owner = api
        .create(&PostParams::default(), &dynobj(tm("owner")))
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "scratch");
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "child", "ownerReferences": [{
        "apiVersion": "test.vtmove.dev/v1alpha1", "kind": "TableMove", "name": "owner", "uid": owner.uid().unwrap(), "controller": true
    }]}})).unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    api.delete("owner", &DeleteParams::default()).await.unwrap();
    assert!(
        cms.get_opt("child").await.unwrap().is_none(),
        "dependent garbage-collected"
    );

    // Orphan propagation keeps dependents and drops the reference.
    let owner = api
        .create(&PostParams::default(), &dynobj(tm("owner2")))
        .await
        .unwrap();
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "child2", "ownerReferences": [{
        "apiVersion": "test.vtmove.dev/v1alpha1", "kind": "TableMove", "name": "owner2", "uid": owner.uid().unwrap()
    }]}})).unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    api.delete("owner2", &DeleteParams::orphan()).await.unwrap();
    assert!(
        cms.get("child2")
            .await
            .unwrap()
            .metadata
            .owner_references
            .is_none()
    );

    // The system namespaces cannot be deleted.
    let e = api_err(
        nss.delete("default", &DeleteParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 403);
    // Deleting a namespace deletes its contents; a finalizer holds both until removed.
    let mut held = tm("held");
    held["metadata"]["finalizers"] = json!(["x.io/hold"]);
    api.create(&PostParams::default(), &dynobj(held))
        .await
        .unwrap();
    nss.delete("scratch", &DeleteParams::default())
        .await
        .unwrap();
    let terminating = nss.get("scratch").await.unwrap();
    assert_eq!(
        terminating.status.unwrap().phase.as_deref(),
        Some("Terminating")
    );
    assert!(cms.get_opt("child2").await.unwrap().is_none());
    let e = api_err(
        api.create(&PostParams::default(), &dynobj(tm("late")))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 403);
    api.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(nss.get_opt("scratch").await.unwrap().is_none());

    // Deleting the CRD deletes its objects and stops serving it.
    let d = tm_api(&client, "default");
    d.create(&PostParams::default(), &dynobj(tm("last")))
        .await
        .unwrap();
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    crds.delete("tablemoves.test.vtmove.dev", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        crds.get_opt("tablemoves.test.vtmove.dev")
            .await
            .unwrap()
            .is_none()
    );
    let e = api_err(d.get("last").await.unwrap_err());
    assert_eq!(e.code, 404);
}

#[tokio::test]
async fn events_in_both_apis_and_field_selectors() {
    let (_sim, client) = setup().await;
    let ev1: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), "default");
    let e: k8s_openapi::api::events::v1::Event = serde_json::from_value(json!({
        "metadata": {"name": "t1.abc"},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingController": "tm-ctrl", "reportingInstance": "p0",
        "action": "Reconcile", "reason": "Moved", "type": "Normal", "note": "hello",
        "regarding": {"kind": "TableMove", "name": "t1", "namespace": "default", "uid": "u1"}
    }))
    .unwrap();
    ev1.create(&PostParams::default(), &e).await.unwrap();
    let core: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    let l = core
        .list(&ListParams::default().fields("involvedObject.name=t1,involvedObject.uid=u1"))
        .await
        .unwrap();
    assert_eq!(l.items.len(), 1);
    assert_eq!(l.items[0].message.as_deref(), Some("hello"));
    let l = ev1
        .list(&ListParams::default().fields("regarding.name=t1,reason=Moved"))
        .await
        .unwrap();
    assert_eq!(l.items[0].note.as_deref(), Some("hello"));
    assert_eq!(
        ev1.list(&ListParams::default().fields("regarding.name=t2"))
            .await
            .unwrap()
            .items
            .len(),
        0
    );
    // The events.k8s.io API requires what a recorder sets.
    let bad: k8s_openapi::api::events::v1::Event = serde_json::from_value(
        json!({"metadata": {"name": "bad"}, "reason": "R", "type": "Sideways"}),
    )
    .unwrap();
    let err = api_err(ev1.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!(err.code, 422);
    // The recorder's series update is a merge patch.
    let p = ev1
        .patch(
            "t1.abc",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"series": {"count": 2, "lastObservedTime": "2026-01-01T00:00:05.000000Z"}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(p.series.unwrap().count, 2);
}

#[tokio::test]
async fn error_bodies_and_http_edges() {
    let (sim, _client) = setup().await;
    let get = |p: String| {
        let sim = &sim;
        async move { raw(sim, "GET", &p, &[], "").await }
    };
    let r = get(format!("{TM_PATH}/missing")).await;
    assert_eq!(r.status, 404);
    let s = r.json();
    assert_eq!(
        (
            s["kind"].as_str(),
            s["apiVersion"].as_str(),
            s["status"].as_str()
        ),
        (Some("Status"), Some("v1"), Some("Failure"))
    );
    assert_eq!(
        (s["reason"].as_str(), s["code"].as_u64()),
        (Some("NotFound"), Some(404))
    );
    assert_eq!(
        s["details"],
        json!({"name": "missing", "group": "test.vtmove.dev", "kind": "tablemoves"})
    );
    assert_eq!(get("/apis/nope.io/v1/things".into()).await.status, 404);
    // Bad JSON is a 400, not a crash; the server keeps serving.
    let r = raw(
        &sim,
        "POST",
        TM_PATH,
        &[("Content-Type", "application/json")],
        "{\"metadata\":",
    )
    .await;
    assert_eq!(
        (r.status, r.json()["reason"].as_str()),
        (400, Some("BadRequest"))
    );
    let r = raw(
        &sim,
        "POST",
        TM_PATH,
        &[("Content-Type", "application/json")],
        "[1,2]",
    )
    .await;
    assert_eq!(r.status, 400);
    let r = raw(
        &sim,
        "POST",
        TM_PATH,
        &[("Content-Type", "application/json")],
        "",
    )
    .await;
    assert_eq!(r.status, 400);
    let r = raw(
        &sim,
        "POST",
        TM_PATH,
        &[("Content-Type", "application/json")],
        "{\"metadata\": 5}",
    )
    .await;
    assert_eq!(r.status, 400);
    let r = raw(
        &sim,
        "POST",
        TM_PATH,
        &[("Content-Type", "application/json")],
        &json!({"apiVersion": "v1", "kind": "TableMove"}).to_string(),
    )
    .await;
    assert_eq!(r.status, 400, "wrong apiVersion: {}", r.body);
    let r = raw(
        &sim,
        "POST",
        TM_PATH,
        &[("Content-Type", "application/vnd.kubernetes.protobuf")],
        "x",
    )
    .await;
    assert_eq!(r.status, 415);
    // 405 for verbs a path does not serve.
    assert_eq!(raw(&sim, "PUT", TM_PATH, &[], "{}").await.status, 405);
    assert_eq!(
        raw(
            &sim,
            "POST",
            "/apis/test.vtmove.dev/v1alpha1/tablemoves",
            &[],
            "{}"
        )
        .await
        .status,
        405
    );
    // 406 when nothing acceptable is offered.
    assert_eq!(
        raw(
            &sim,
            "GET",
            TM_PATH,
            &[("Accept", "application/vnd.kubernetes.protobuf")],
            ""
        )
        .await
        .status,
        406
    );
    // YAML bodies are accepted.
    let yaml = "apiVersion: test.vtmove.dev/v1alpha1\nkind: TableMove\nmetadata:\n  name: yaml-obj\nspec:\n  sourceKeyspace: a\n  targetKeyspace: b\n  tables: [t]\n";
    let r = raw(
        &sim,
        "POST",
        TM_PATH,
        &[("Content-Type", "application/yaml")],
        yaml,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    // Query strings as kube sends them (`?&`), and invalid parameter values.
    assert_eq!(get(format!("{TM_PATH}?&limit=1&")).await.status, 200);
    assert_eq!(get(format!("{TM_PATH}?limit=x")).await.status, 400);
    assert_eq!(
        get(format!("{TM_PATH}?resourceVersion=abc")).await.status,
        400
    );
    assert_eq!(
        get(format!(
            "{TM_PATH}?resourceVersion=999999&resourceVersionMatch=NotOlderThan"
        ))
        .await
        .status,
        504
    );
    // Discovery and health answer.
    assert_eq!(get("/healthz".into()).await.status, 200);
    assert_eq!(get("/version".into()).await.json()["major"], "1");
}

#[tokio::test]
async fn table_and_metadata_output() {
    let (sim, client) = setup().await;
    let api = tm_api(&client, "default");
    api.create(&PostParams::default(), &dynobj(tm("t")))
        .await
        .unwrap();
    api.patch_status(
        "t",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Copying", "lagSeconds": 3, "conditions": [{"type": "Ready", "status": "True"}]}})),
    )
    .await
    .unwrap();
    let accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
    let r = raw(&sim, "GET", TM_PATH, &[("Accept", accept)], "").await;
    let t = r.json();
    assert_eq!(t["kind"], "Table");
    let cols: Vec<&str> = t["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        cols,
        vec!["Name", "Source", "Target", "Phase", "Ready", "Lag", "Age"]
    );
    let cells = &t["rows"][0]["cells"];
    assert_eq!(
        cells.as_array().unwrap()[0..5],
        [
            json!("t"),
            json!("commerce"),
            json!("customer"),
            json!("Copying"),
            json!("True")
        ]
    );
    assert_eq!(cells[5], json!(3));
    assert!(cells[6].as_str().unwrap().ends_with('s'));
    assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    // Single objects too, and built-ins.
    let r = raw(
        &sim,
        "GET",
        &format!("{TM_PATH}/t"),
        &[("Accept", accept)],
        "",
    )
    .await;
    assert_eq!(r.json()["rows"].as_array().unwrap().len(), 1);
    let r = raw(&sim, "GET", "/api/v1/namespaces", &[("Accept", accept)], "").await;
    assert_eq!(r.json()["columnDefinitions"][1]["name"], "Status");
    // Metadata-only lists.
    let r = raw(
        &sim,
        "GET",
        TM_PATH,
        &[(
            "Accept",
            "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
        )],
        "",
    )
    .await;
    assert_eq!(r.json()["kind"], "PartialObjectMetadataList");
    assert!(r.json()["items"][0].get("spec").is_none());
}

#[tokio::test]
async fn discovery_documents() {
    let (sim, _client) = setup().await;
    let g = raw(&sim, "GET", "/apis", &[], "").await.json();
    let names: Vec<&str> = g["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"test.vtmove.dev") && names.contains(&"coordination.k8s.io"),
        "{names:?}"
    );
    let rl = raw(&sim, "GET", "/apis/test.vtmove.dev/v1alpha1", &[], "")
        .await
        .json();
    let tm = &rl["resources"][0];
    assert_eq!(tm["name"], "tablemoves");
    assert_eq!(tm["singularName"], "tablemove");
    assert_eq!(tm["shortNames"], json!(["tm"]));
    assert_eq!(tm["categories"], json!(["all", "vtmove"]));
    assert_eq!(tm["namespaced"], true);
    assert_eq!(rl["resources"][1]["name"], "tablemoves/status");
    let core = raw(&sim, "GET", "/api/v1", &[], "").await.json();
    assert!(
        core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "configmaps")
    );
    // Aggregated discovery requests fall back to the legacy document.
    let agg = raw(
        &sim,
        "GET",
        "/apis",
        &[(
            "Accept",
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json",
        )],
        "",
    )
    .await;
    assert_eq!(agg.json()["kind"], "APIGroupList");
    assert_eq!(agg.header("content-type"), vec!["application/json"]);
    // OpenAPI v3 advertises fieldValidation on PATCH, with the CRD schema.
    let root = raw(&sim, "GET", "/openapi/v3", &[], "").await.json();
    let url = root["paths"]["apis/test.vtmove.dev/v1alpha1"]["serverRelativeURL"]
        .as_str()
        .unwrap()
        .to_string();
    let doc = raw(&sim, "GET", &url, &[], "").await.json();
    let item =
        &doc["paths"]["/apis/test.vtmove.dev/v1alpha1/namespaces/{namespace}/tablemoves/{name}"];
    assert!(
        item["patch"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation")
    );
    assert!(
        doc["components"]["schemas"]["dev.vtmove.test.v1alpha1.TableMove"]["properties"]["spec"]
            .is_object()
    );
}

#[tokio::test]
async fn lease_locking_by_apply_conflicts() {
    // The lease-manager style: server-side apply without force, where a 409 means
    // another holder owns the lease; renewals by strategic merge patch.
    let (_sim, client) = setup().await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    let claim = |who: &str| {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "leader"},
               "spec": {"holderIdentity": who, "leaseDurationSeconds": 10}})
    };
    let l = leases
        .patch(
            "leader",
            &PatchParams::apply("a"),
            &Patch::Apply(claim("a")),
        )
        .await
        .unwrap();
    assert_eq!(l.spec.unwrap().holder_identity.as_deref(), Some("a"));
    let e = api_err(
        leases
            .patch(
                "leader",
                &PatchParams::apply("b"),
                &Patch::Apply(claim("b")),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    let renewed = leases
        .patch(
            "leader",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"renewTime": "2026-01-01T00:00:00.000000Z"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        renewed.spec.as_ref().unwrap().holder_identity.as_deref(),
        Some("a")
    );
    let taken = leases
        .patch(
            "leader",
            &PatchParams::apply("b").force(),
            &Patch::Apply(claim("b")),
        )
        .await
        .unwrap();
    assert_eq!(taken.spec.unwrap().holder_identity.as_deref(), Some("b"));
    // a lost ownership of holderIdentity, so its own unforced apply now conflicts.
    let e = api_err(
        leases
            .patch(
                "leader",
                &PatchParams::apply("a"),
                &Patch::Apply(claim("a")),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 409);
}

#[tokio::test]
async fn kubeconfig_is_accepted_by_kube() {
    let sim = common::start().await;
    let kc = kube::config::Kubeconfig::read_from(sim.kubeconfig_path()).unwrap();
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .unwrap();
    assert_eq!(config.default_namespace, "default");
    let client = kube::Client::try_from(config).unwrap();
    let nss: Api<Namespace> = Api::all(client);
    let names: Vec<String> = nss
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|n| n.name_any())
        .collect();
    assert_eq!(
        names,
        vec!["default", "kube-node-lease", "kube-public", "kube-system"]
    );
}

#[tokio::test]
async fn the_binary_serves_standalone() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kc");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kube-sim"))
        .arg("--kubeconfig")
        .arg(&kc)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next_line().await.unwrap().unwrap();
    let second = lines.next_line().await.unwrap().unwrap();
    assert_eq!(first, format!("kubeconfig: {}", kc.display()));
    let url = second.strip_prefix("server: ").unwrap().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let text = std::fs::read_to_string(&kc).unwrap();
    assert!(text.contains(&format!("server: {url}")), "{text}");
    let mut config = kube::Config::new(url.parse().unwrap());
    config.default_namespace = "default".into();
    let client = kube::Client::try_from(config).unwrap();
    let v = client.apiserver_version().await.unwrap();
    assert_eq!(v.major, "1");
    child.kill().await.unwrap();
}

#[tokio::test]
async fn malformed_requests_never_take_the_server_down() {
    let (sim, _client) = setup().await;
    let json = ("Content-Type", "application/json");
    let jp = ("Content-Type", "application/json-patch+json");
    let apply = ("Content-Type", "application/apply-patch+yaml");
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, String);
    let cases: Vec<Case> = vec![
        (
            "GET",
            "/api/v1/namespaces/%ZZ/configmaps".into(),
            vec![],
            String::new(),
        ),
        (
            "GET",
            format!("{TM_PATH}?labelSelector=%28%28%28"),
            vec![],
            String::new(),
        ),
        (
            "GET",
            format!("{TM_PATH}?fieldSelector=nonsense"),
            vec![],
            String::new(),
        ),
        (
            "GET",
            format!("{TM_PATH}?continue=%00%01garbage"),
            vec![],
            String::new(),
        ),
        (
            "GET",
            format!("{TM_PATH}?watch=true&resourceVersion=-1"),
            vec![],
            String::new(),
        ),
        (
            "GET",
            format!("{TM_PATH}?watch=true&timeoutSeconds=99999999999999999999"),
            vec![],
            String::new(),
        ),
        (
            "GET",
            format!("{TM_PATH}?includeObject=Weird"),
            vec![("Accept", ";;;,,,as=")],
            String::new(),
        ),
        ("POST", TM_PATH.into(), vec![json], deep),
        ("POST", TM_PATH.into(), vec![json], "\u{0}\u{1}".into()),
        (
            "POST",
            TM_PATH.into(),
            vec![("Content-Type", "application/yaml")],
            "a: [b\n  - : :".into(),
        ),
        (
            "POST",
            TM_PATH.into(),
            vec![json],
            r#"{"apiVersion":5,"kind":[],"metadata":{"name":7}}"#.into(),
        ),
        (
            "POST",
            TM_PATH.into(),
            vec![json],
            r#"{"metadata":{"labels":"x","finalizers":{}},"spec":[]}"#.into(),
        ),
        (
            "PATCH",
            format!("{TM_PATH}/x"),
            vec![jp],
            r#"[{"op":"add"}]"#.into(),
        ),
        (
            "PATCH",
            format!("{TM_PATH}/x"),
            vec![apply],
            "kind: [".into(),
        ),
        (
            "PATCH",
            format!("{TM_PATH}/x?fieldManager=m"),
            vec![apply],
            "- 1\n- 2".into(),
        ),
        ("PUT", format!("{TM_PATH}/x"), vec![json], "null".into()),
        (
            "DELETE",
            format!("{TM_PATH}/x"),
            vec![json],
            "{not json".into(),
        ),
        (
            "DELETE",
            TM_PATH.to_string(),
            vec![json],
            r#"{"propagationPolicy":"Sideways"}"#.into(),
        ),
        ("OPTIONS", TM_PATH.into(), vec![], String::new()),
        (
            "GET",
            "/apis/test.vtmove.dev/v1alpha1/namespaces/default/tablemoves/a/b/c/d".into(),
            vec![],
            String::new(),
        ),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps".into(),
            vec![("Content-Type", "application/vnd.kubernetes.protobuf")],
            "k8s\u{0}\u{a}\u{7f}".into(),
        ),
    ];
    // Create an object so item paths exist.
    let r = raw(&sim, "POST", TM_PATH, &[json], &tm("x").to_string()).await;
    assert_eq!(r.status, 201);
    for (method, path, headers, body) in &cases {
        let r = raw(&sim, method, path, headers, body).await;
        assert!(
            (r.status >= 400 && r.status < 500) || r.status == 200,
            "{method} {path}: {} {}",
            r.status,
            r.body
        );
        if r.status >= 400 {
            assert_eq!(r.json()["kind"], "Status", "{method} {path}");
        }
    }
    assert_eq!(raw(&sim, "GET", "/healthz", &[], "").await.status, 200);
    assert_eq!(
        raw(&sim, "GET", &format!("{TM_PATH}/x"), &[], "")
            .await
            .status,
        200
    );
}
