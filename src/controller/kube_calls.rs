//! The Kubernetes calls both reconcilers make, each under the API-call deadline: finalizer
//! patches guarded by resourceVersion, the server-side-apply status patch, and best-effort
//! Events.

use std::fmt::Debug;
use std::time::Duration;

use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::{ApiError, FIELD_MANAGER, FINALIZER, with_deadline};

/// Adds vtmove's finalizer and returns the object as stored. The resourceVersion makes the
/// patch fail rather than overwrite a concurrent change of the list.
pub async fn add_finalizer<K>(api: &Api<K>, object: &K, deadline: Duration) -> Result<K, ApiError>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let mut finalizers = object.finalizers().to_vec();
    finalizers.push(FINALIZER.to_string());
    set_finalizers(api, object, finalizers, deadline, "adding the finalizer").await
}

/// Removes vtmove's finalizer; an object already gone is success.
pub async fn remove_finalizer<K>(
    api: &Api<K>,
    object: &K,
    deadline: Duration,
) -> Result<(), ApiError>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let finalizers: Vec<String> = object
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    match set_finalizers(api, object, finalizers, deadline, "removing the finalizer").await {
        Err(ApiError::Kube {
            source: kube::Error::Api(status),
            ..
        }) if status.code == 404 => Ok(()),
        other => other.map(|_| ()),
    }
}

async fn set_finalizers<K>(
    api: &Api<K>,
    object: &K,
    finalizers: Vec<String>,
    deadline: Duration,
    what: &'static str,
) -> Result<K, ApiError>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let patch = json!({
        "metadata": {
            "finalizers": finalizers,
            "resourceVersion": object.resource_version(),
        }
    });
    with_deadline(
        deadline,
        what,
        api.patch(
            &object.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        ),
    )
    .await
}

/// Writes the whole status with one forced server-side apply under vtmove's field manager.
pub async fn apply_status<K, S>(
    api: &Api<K>,
    name: &str,
    status: &S,
    deadline: Duration,
) -> Result<(), ApiError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
    S: Serialize,
{
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    with_deadline(
        deadline,
        "patching the status",
        api.patch_status(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        ),
    )
    .await
    .map(|_| ())
}

/// Publishes an Event about `object`; a failure is logged, never fatal (Events are best effort).
pub async fn publish<K>(
    recorder: &Recorder,
    object: &K,
    type_: EventType,
    reason: &str,
    note: &str,
    deadline: Duration,
) where
    K: Resource<DynamicType = ()>,
{
    let event = Event {
        type_,
        reason: reason.chars().take(128).collect(),
        note: Some(note.chars().take(1000).collect()),
        action: "Reconcile".to_string(),
        secondary: None,
    };
    let reference = object.object_ref(&());
    match tokio::time::timeout(deadline, recorder.publish(&event, &reference)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, reason, "Publishing an Event failed"),
        Err(_) => tracing::warn!(reason, "Publishing an Event timed out"),
    }
}
