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
    apply_status_at(api, name, status, None, deadline).await
}

/// [`apply_status`] that applies only while the object still has `resource_version` (the
/// version read fresh before an irreversible step): 409 Conflict once anything changed it, so a
/// status computed from what was read never lands on an object that moved on.
pub async fn apply_status_at<K, S>(
    api: &Api<K>,
    name: &str,
    status: &S,
    resource_version: Option<&str>,
    deadline: Duration,
) -> Result<(), ApiError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
    S: Serialize,
{
    let mut patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    if let Some(version) = resource_version {
        patch["metadata"] = json!({ "resourceVersion": version });
    }
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

/// The Event's `action`. The Recorder folds Events with the same type, reason and action into
/// one series and keeps the first note, so two steps of one kind with different messages (the
/// routing rules written at creation, then for switching reads) would show one message. The
/// action carries a digest of the note: identical repeats still aggregate, different messages
/// each keep their own Event.
fn event_action(note: &str) -> String {
    // FNV-1a: stable across processes and releases, unlike std's hasher.
    let digest = note.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("Reconcile-{digest:016x}")
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
        action: event_action(note),
        secondary: None,
    };
    let reference = object.object_ref(&());
    match tokio::time::timeout(deadline, recorder.publish(&event, &reference)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, reason, "Publishing an Event failed"),
        Err(_) => tracing::warn!(reason, "Publishing an Event timed out"),
    }
}
