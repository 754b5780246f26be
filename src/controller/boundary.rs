//! The boundary between namespaces and keyspaces (the model is described in `README.md`, "Who
//! may touch which keyspace").
//!
//! Creating a namespaced resource must not give power over Vitess keyspaces that belong to
//! another team. So:
//!
//! * a Vitess keyspace is **claimed** by exactly one namespace, through a `Keyspace` resource:
//!   the first resource to record the claim (condition `Claimed=True` in its status) holds it
//!   until it is deleted; any other resource naming the same keyspace gets `Conflict` and does
//!   nothing to, and reports nothing of, that keyspace;
//! * a `MoveTablesWorkflow` may only name keyspaces claimed in its own namespace. An operator
//!   flag (`--allow-unclaimed-keyspaces`, off by default) lets single-tenant installs name
//!   keyspaces nobody claims; a keyspace claimed by another namespace stays refused even then.
//!   Once a workflow has recorded its identity (it acted legitimately), a keyspace that stops
//!   being claimed (its resource deleted) does not stop it finishing;
//! * a Vitess workflow (target keyspace and workflow name) belongs to the resource that first
//!   recorded it as its identity; another resource naming the same one is refused.
//!
//! Claims and identities are recorded one at a time in this process ([`Boundary::arbiter`]),
//! each after a fresh list from the API server, so two resources cannot both win; only the
//! leader runs the controllers. The decisions are pure functions of the resources, below.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::FutureExt;
use kube::api::ListParams;
use kube::runtime::reflector::Store;
use kube::{Api, Client, ResourceExt};

use super::wiring::NamespaceScope;
use super::{ApiError, with_deadline};
use crate::api::condition::{find_condition, reasons, types};
use crate::api::movetables::WorkflowIdentity;
use crate::api::{Keyspace, MoveTablesWorkflow};

/// What the boundary needs to know about resources, for both controllers.
pub struct Boundary {
    keyspace_stores: Mutex<Vec<Store<Keyspace>>>,
    workflow_stores: Mutex<Vec<Store<MoveTablesWorkflow>>>,
    keyspace_apis: Vec<Api<Keyspace>>,
    workflow_apis: Vec<Api<MoveTablesWorkflow>>,
    arbiter: tokio::sync::Mutex<()>,
    /// Identities this process recorded, by resource uid: they count before the caches show
    /// them (see [`Boundary::workflow_owner`]).
    recorded: Mutex<HashMap<String, WorkflowIdentity>>,
    allow_unclaimed: bool,
    api_timeout: Duration,
}

impl std::fmt::Debug for Boundary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Boundary")
            .field("allow_unclaimed", &self.allow_unclaimed)
            .finish_non_exhaustive()
    }
}

impl Boundary {
    /// The boundary over the namespaces of `scope`.
    pub fn new(
        client: &Client,
        scope: &NamespaceScope,
        allow_unclaimed: bool,
        api_timeout: Duration,
    ) -> Self {
        Boundary {
            keyspace_stores: Mutex::new(Vec::new()),
            workflow_stores: Mutex::new(Vec::new()),
            keyspace_apis: scope.apis(client),
            workflow_apis: scope.apis(client),
            arbiter: tokio::sync::Mutex::new(()),
            recorded: Mutex::new(HashMap::new()),
            allow_unclaimed,
            api_timeout,
        }
    }

    /// Adds a cache of Keyspace resources.
    pub fn add_keyspace_store(&self, store: Store<Keyspace>) {
        self.keyspace_stores
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(store);
    }

    /// Adds a cache of MoveTablesWorkflows.
    pub fn add_workflow_store(&self, store: Store<MoveTablesWorkflow>) {
        self.workflow_stores
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(store);
    }

    /// Whether workflows may name keyspaces nobody claims.
    pub fn allow_unclaimed(&self) -> bool {
        self.allow_unclaimed
    }

    /// The Keyspace resources in the caches; `None` while a cache has not loaded yet.
    pub fn cached_keyspaces(&self) -> Option<Vec<Arc<Keyspace>>> {
        cached(&self.keyspace_stores)
    }

    /// The MoveTablesWorkflows in the caches; `None` while a cache has not loaded yet.
    pub fn cached_workflows(&self) -> Option<Vec<Arc<MoveTablesWorkflow>>> {
        cached(&self.workflow_stores)
    }

    /// Every Keyspace resource in scope, read from the API server now.
    pub async fn list_keyspaces(&self) -> Result<Vec<Keyspace>, ApiError> {
        list(&self.keyspace_apis, self.api_timeout, "listing Keyspaces").await
    }

    /// Every MoveTablesWorkflow in scope, read from the API server now. Fails when one of them
    /// cannot be read (for example a newer CRD's value this vtmove does not know).
    pub async fn list_workflows(&self) -> Result<Vec<MoveTablesWorkflow>, ApiError> {
        list(
            &self.workflow_apis,
            self.api_timeout,
            "listing MoveTablesWorkflows",
        )
        .await
    }

    /// Serialises recording claims and identities in this process.
    pub async fn arbiter(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.arbiter.lock().await
    }

    /// Notes that this process recorded `identity` in the status of the resource `uid` (call it
    /// after the write succeeded, holding the [`arbiter`](Self::arbiter)'s turn).
    pub fn identity_recorded(&self, uid: &str, identity: WorkflowIdentity) {
        self.recorded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(uid.to_string(), identity);
    }

    /// [`workflow_owner`] over the cached workflows, with the identities this process recorded
    /// and the caches may not show yet. Checking a new workflow against that under the arbiter
    /// costs no request: the caches hold every identity recorded before this process started
    /// its controllers (their first list comes after it became the leader, so after the
    /// previous leader's last write), and this process's own writes are in `recorded` from the
    /// moment they succeed. `None` while a cache has not loaded yet.
    pub fn workflow_owner(&self, me: &MoveTablesWorkflow) -> Option<Option<String>> {
        let cached = self.cached_workflows()?;
        let recorded = self.recorded.lock().unwrap_or_else(PoisonError::into_inner);
        Some(owner_among(me, &cached, &recorded))
    }
}

fn cached<K>(stores: &Mutex<Vec<Store<K>>>) -> Option<Vec<Arc<K>>>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    let stores = stores.lock().unwrap_or_else(PoisonError::into_inner);
    let mut out = Vec::new();
    for store in stores.iter() {
        // Ready once its first list completed (`now_or_never`: no waiting).
        if !matches!(store.wait_until_ready().now_or_never(), Some(Ok(()))) {
            return None;
        }
        out.extend(store.state());
    }
    Some(out)
}

async fn list<K>(
    apis: &[Api<K>],
    deadline: Duration,
    what: &'static str,
) -> Result<Vec<K>, ApiError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut out = Vec::new();
    for api in apis {
        let page = with_deadline(deadline, what, api.list(&ListParams::default())).await?;
        out.extend(page.items);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Keyspace claims
// ---------------------------------------------------------------------------------------------

/// `namespace/name` of a resource.
pub fn full_name<K: kube::Resource>(object: &K) -> String {
    format!(
        "{}/{}",
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}

/// Whether a Keyspace resource has recorded its claim.
pub fn records_claim(ks: &Keyspace) -> bool {
    ks.status
        .as_ref()
        .and_then(|s| find_condition(&s.conditions, types::CLAIMED))
        .is_some_and(|c| c.status == "True")
}

/// The order in which simultaneous claims are settled: older first, then by namespace/name.
fn rank<K: kube::Resource>(object: &K) -> (Option<i64>, String) {
    (
        object
            .meta()
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_second()),
        full_name(object),
    )
}

/// Where a Keyspace resource stands with its Vitess keyspace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyspaceClaim {
    /// It holds the claim.
    Holds,
    /// Nobody holds it: this resource may record the claim.
    Free,
    /// Another resource (`namespace/name`) holds it.
    Conflict {
        /// The holder.
        holder: String,
    },
}

/// Where `me` stands among `all` (which may include `me`) for its Vitess keyspace.
pub fn keyspace_claim<K: Borrow<Keyspace>>(me: &Keyspace, all: &[K]) -> KeyspaceClaim {
    let name = me.keyspace_name();
    let uid = me.uid();
    let mut holders: Vec<&Keyspace> = all
        .iter()
        .map(Borrow::borrow)
        .filter(|k| k.uid() != uid && k.keyspace_name() == name && records_claim(k))
        .collect();
    holders.sort_by_key(|k| rank(*k));
    match holders.first() {
        // Two recorded claims (only possible from before the boundary existed, or a lost race
        // between two processes): the older one keeps it.
        Some(other) if !records_claim(me) || rank(*other) < rank(me) => KeyspaceClaim::Conflict {
            holder: full_name(*other),
        },
        _ if records_claim(me) => KeyspaceClaim::Holds,
        _ => KeyspaceClaim::Free,
    }
}

/// The namespace and `namespace/name` of the resource that holds the claim on `keyspace`, if
/// any.
pub fn claim_holder<K: Borrow<Keyspace>>(keyspace: &str, all: &[K]) -> Option<(String, String)> {
    let mut holders: Vec<&Keyspace> = all
        .iter()
        .map(Borrow::borrow)
        .filter(|k| k.keyspace_name() == keyspace && records_claim(k))
        .collect();
    holders.sort_by_key(|k| rank(*k));
    holders
        .first()
        .map(|k| (k.namespace().unwrap_or_default(), full_name(*k)))
}

// ---------------------------------------------------------------------------------------------
// Workflows
// ---------------------------------------------------------------------------------------------

/// Why a workflow may not act.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The condition reason.
    pub reason: &'static str,
    /// For people.
    pub message: String,
}

/// Whether a workflow in `namespace` may name `keyspaces`, given who claims them (`holder`
/// answers `(namespace, namespace/name)` of a keyspace's claim). `recorded` says the workflow
/// already recorded its identity.
pub fn workflow_boundary(
    namespace: &str,
    keyspaces: &[&str],
    holder: impl Fn(&str) -> Option<(String, String)>,
    allow_unclaimed: bool,
    recorded: bool,
) -> Result<(), Refusal> {
    for keyspace in keyspaces {
        match holder(keyspace) {
            Some((ns, _)) if ns == namespace => {}
            Some((ns, resource)) => {
                return Err(Refusal {
                    reason: reasons::KEYSPACE_CLAIMED_ELSEWHERE,
                    message: format!(
                        "keyspace {keyspace} is claimed by namespace {ns} (Keyspace {resource}); \
                         a MoveTablesWorkflow in namespace {namespace} may only name keyspaces \
                         claimed by a Keyspace resource in {namespace}"
                    ),
                });
            }
            None if allow_unclaimed || recorded => {}
            None => {
                return Err(Refusal {
                    reason: reasons::KEYSPACE_NOT_CLAIMED,
                    message: format!(
                        "keyspace {keyspace} is not claimed by any Keyspace resource; create one \
                         for it in namespace {namespace} (single-tenant installs may run the \
                         operator with --allow-unclaimed-keyspaces)"
                    ),
                });
            }
        }
    }
    Ok(())
}

/// The resource (`namespace/name`) that owns the Vitess workflow `me` names, when it is another
/// one: the oldest other resource that recorded the same target keyspace and workflow name as
/// its identity, if `me` has not recorded it first.
pub fn workflow_owner<K: Borrow<MoveTablesWorkflow>>(
    me: &MoveTablesWorkflow,
    all: &[K],
) -> Option<String> {
    owner_among(me, all, &HashMap::new())
}

/// [`workflow_owner`], counting `recorded` (uid → identity) as the identity of a resource whose
/// copy in `all` does not show one yet.
fn owner_among<K: Borrow<MoveTablesWorkflow>>(
    me: &MoveTablesWorkflow,
    all: &[K],
    recorded: &HashMap<String, WorkflowIdentity>,
) -> Option<String> {
    let target = &me.spec.target_keyspace;
    let name = me.workflow_name();
    let uid = me.metadata.uid.as_deref();
    // Asked once per new workflow over every cached one: no copies in the loop.
    let owns = |w: &MoveTablesWorkflow| {
        w.status
            .as_ref()
            .and_then(|s| s.identity.as_ref())
            .or_else(|| w.metadata.uid.as_deref().and_then(|uid| recorded.get(uid)))
            .is_some_and(|i| &i.target_keyspace == target && i.workflow == name)
    };
    let mut owners: Vec<&MoveTablesWorkflow> = all
        .iter()
        .map(Borrow::borrow)
        .filter(|w| w.metadata.uid.as_deref() != uid && owns(w))
        .collect();
    owners.sort_by_key(|w| rank(*w));
    let other = owners.first()?;
    if owns(me) && rank(me) < rank(*other) {
        return None;
    }
    Some(full_name(*other))
}

/// The refusal of a workflow whose Vitess workflow belongs to `owner`.
pub fn owned_elsewhere(me: &MoveTablesWorkflow, owner: &str) -> Refusal {
    Refusal {
        reason: reasons::WORKFLOW_OWNED_ELSEWHERE,
        message: format!(
            "Vitess workflow {}/{} belongs to MoveTablesWorkflow {owner}, which created or \
             adopted it; give this resource another spec.workflow, or delete {owner} first",
            me.spec.target_keyspace,
            me.workflow_name()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::condition::ConditionStatus;
    use crate::api::condition::ConditionUpdate;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    fn ks(ns: &str, name: &str, keyspace: &str, created: i64, claimed: bool) -> Keyspace {
        let mut k: Keyspace = serde_json::from_value(serde_json::json!({
            "apiVersion": "vtmove.dev/v1alpha1",
            "kind": "Keyspace",
            "metadata": {"name": name, "namespace": ns, "uid": format!("{ns}-{name}"),
                         "creationTimestamp": Timestamp::from_second(created).unwrap().to_string()},
            "spec": {"name": keyspace, "shards": ["0"]},
        }))
        .unwrap();
        if claimed {
            let mut status = crate::api::keyspace::KeyspaceStatus::default();
            status.set_condition(
                ConditionUpdate::new(types::CLAIMED, ConditionStatus::True, reasons::CLAIMED, ""),
                None,
                &Time(Timestamp::UNIX_EPOCH),
            );
            k.status = Some(status);
        }
        k
    }

    #[test]
    fn the_first_recorded_claim_wins() {
        let a = ks("a", "x", "commerce", 10, true);
        let b = ks("b", "y", "commerce", 5, false);
        let all = vec![a.clone(), b.clone()];
        assert_eq!(keyspace_claim(&a, &all), KeyspaceClaim::Holds);
        // Older but later to claim: the recorded claim wins.
        assert_eq!(
            keyspace_claim(&b, &all),
            KeyspaceClaim::Conflict {
                holder: "a/x".into()
            }
        );
        // Nobody holds another keyspace.
        let c = ks("c", "z", "customer", 1, false);
        assert_eq!(keyspace_claim(&c, &all), KeyspaceClaim::Free);
        assert_eq!(
            claim_holder("commerce", &all),
            Some(("a".into(), "a/x".into()))
        );
        assert_eq!(claim_holder("customer", &all), None);
    }

    #[test]
    fn two_recorded_claims_settle_on_the_older() {
        let a = ks("a", "x", "commerce", 10, true);
        let b = ks("b", "y", "commerce", 5, true);
        let all = vec![a.clone(), b.clone()];
        assert_eq!(keyspace_claim(&b, &all), KeyspaceClaim::Holds);
        assert_eq!(
            keyspace_claim(&a, &all),
            KeyspaceClaim::Conflict {
                holder: "b/y".into()
            }
        );
        assert_eq!(claim_holder("commerce", &all).unwrap().0, "b");
    }

    #[test]
    fn workflows_name_only_their_namespace_keyspaces() {
        let holder = |ks: &str| match ks {
            "commerce" | "customer" => Some(("default".to_string(), format!("default/{ks}"))),
            "mine" => Some(("team-b".to_string(), "team-b/mine".to_string())),
            _ => None,
        };
        assert!(
            workflow_boundary("default", &["commerce", "customer"], holder, false, false).is_ok()
        );
        let refused =
            workflow_boundary("team-b", &["mine", "customer"], holder, true, true).unwrap_err();
        assert_eq!(refused.reason, reasons::KEYSPACE_CLAIMED_ELSEWHERE);
        assert!(refused.message.contains("claimed by namespace default"));
        let refused =
            workflow_boundary("team-b", &["mine", "free"], holder, false, false).unwrap_err();
        assert_eq!(refused.reason, reasons::KEYSPACE_NOT_CLAIMED);
        assert!(workflow_boundary("team-b", &["mine", "free"], holder, true, false).is_ok());
        // A workflow that already acted may finish once a keyspace's claim is gone.
        assert!(workflow_boundary("team-b", &["mine", "free"], holder, false, true).is_ok());
    }

    fn wf(ns: &str, name: &str, created: i64, identity: Option<&str>) -> MoveTablesWorkflow {
        let mut w: MoveTablesWorkflow = serde_json::from_value(serde_json::json!({
            "apiVersion": "vtmove.dev/v1alpha1",
            "kind": "MoveTablesWorkflow",
            "metadata": {"name": name, "namespace": ns, "uid": format!("{ns}-{name}"),
                         "creationTimestamp": Timestamp::from_second(created).unwrap().to_string()},
            "spec": {"workflow": "shared", "sourceKeyspace": "commerce",
                     "targetKeyspace": "customer", "tables": ["t"]},
        }))
        .unwrap();
        if let Some(workflow) = identity {
            w.status = Some(crate::api::MoveTablesWorkflowStatus {
                identity: Some(crate::api::movetables::WorkflowIdentity {
                    workflow: workflow.into(),
                    reverse_workflow: format!("{workflow}_reverse"),
                    source_keyspace: "commerce".into(),
                    target_keyspace: "customer".into(),
                    tables: vec!["t".into()],
                }),
                ..Default::default()
            });
        }
        w
    }

    #[test]
    fn a_vitess_workflow_has_one_owner() {
        let first = wf("default", "first", 10, Some("shared"));
        let second = wf("default", "second", 20, None);
        let other = wf("default", "other", 1, Some("different"));
        let all = vec![first.clone(), second.clone(), other];
        assert_eq!(workflow_owner(&first, &all), None);
        assert_eq!(
            workflow_owner(&second, &all).as_deref(),
            Some("default/first")
        );
        // Both recorded (a lost race): the older keeps it.
        let second = wf("default", "second", 20, Some("shared"));
        let all = vec![first.clone(), second.clone()];
        assert_eq!(workflow_owner(&first, &all), None);
        assert_eq!(
            workflow_owner(&second, &all).as_deref(),
            Some("default/first")
        );
    }

    /// An identity this process recorded counts before the cache shows it: a second resource
    /// naming the same Vitess workflow, checked right after, is refused.
    #[test]
    fn an_identity_just_recorded_counts_before_the_cache_shows_it() {
        let recorded_identity = wf("default", "first", 10, Some("shared"))
            .status
            .and_then(|s| s.identity)
            .expect("identity");
        // The cache's copies, neither showing an identity yet.
        let first = wf("default", "first", 10, None);
        let second = wf("default", "second", 20, None);
        let all = vec![first.clone(), second.clone()];
        assert_eq!(owner_among(&second, &all, &HashMap::new()), None);
        let recorded = HashMap::from([("default-first".to_string(), recorded_identity)]);
        assert_eq!(
            owner_among(&second, &all, &recorded).as_deref(),
            Some("default/first")
        );
        assert_eq!(owner_among(&first, &all, &recorded), None);
        // A recorded resource that left the cache (deleted) owns nothing.
        assert_eq!(
            owner_among(&second, std::slice::from_ref(&second), &recorded),
            None
        );
    }
}
