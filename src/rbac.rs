//! The Kubernetes API access vtmove's code makes, as data.
//!
//! This table is the single source of truth for vtmove's RBAC. The Helm chart's ClusterRole and
//! Roles are written by hand (Helm cannot read Rust), so `tests/helm_chart.rs` renders the chart
//! and checks, in both directions, that the granted `(group, resource, verb)` triples are exactly
//! the ones listed here. Code that starts calling a new API (or a new verb) must add it here
//! first; the chart test then fails until the chart grants it, and a verb the chart grants beyond
//! this table fails the same test.
//!
//! `vtmove run` asks the API server for each of these permissions before starting
//! ([`access_checks`], [`missing_permissions`]) and stops naming the missing ones.
//! `tests/real_kube.rs` enforces the chart on a real kube-apiserver and measures which grants a
//! lifecycle actually exercises.

use k8s_openapi::api::rbac::v1::PolicyRule;

/// Where a grant has to be made: the chart binds the two scopes differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Every namespace vtmove watches (all of them when no `--namespace` is given): the chart
    /// grants these through a ClusterRole, or through one Role per watched namespace.
    WatchedNamespaces,
    /// Only the namespace vtmove itself runs in (`--leader-election-namespace`): the chart grants
    /// these through a Role there, never cluster-wide.
    OperatorNamespace,
}

/// One API resource vtmove uses, the verbs it needs on it, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiAccess {
    /// API group (`""` would be the core group; vtmove uses none of it).
    pub group: &'static str,
    /// Resource plural, with `/<subresource>` for subresources (`keyspaces/status`).
    pub resource: &'static str,
    /// Verbs, as RBAC spells them.
    pub verbs: &'static [&'static str],
    /// Whether the resource is namespaced, so a Role (not only a ClusterRole) can grant it.
    pub namespaced: bool,
    /// Where the grant is needed.
    pub scope: Scope,
    /// Which code makes these calls, so a reviewer can judge whether each verb is still needed.
    pub why: &'static str,
}

/// Every API call vtmove makes, grouped by resource. Nothing else may be granted to it.
pub const REQUIRED_ACCESS: &[ApiAccess] = &[
    ApiAccess {
        group: "vtmove.dev",
        resource: "movetablesworkflows",
        verbs: &["get", "list", "watch", "patch"],
        namespaced: true,
        scope: Scope::WatchedNamespaces,
        why: "The workflow controller lists and watches MoveTablesWorkflows, reads one per \
              reconcile, and patches metadata to add or remove its finalizer.",
    },
    ApiAccess {
        group: "vtmove.dev",
        resource: "keyspaces",
        verbs: &["get", "list", "watch", "patch"],
        namespaced: true,
        scope: Scope::WatchedNamespaces,
        why: "The keyspace controller lists and watches Keyspaces (and the workflow controller \
              reads them to resolve source and target), patching metadata for its finalizer.",
    },
    ApiAccess {
        group: "vtmove.dev",
        resource: "movetablesworkflows/status",
        verbs: &["get", "patch"],
        namespaced: true,
        scope: Scope::WatchedNamespaces,
        why: "Each pass writes the workflow's status (conditions, phase, streams) with one \
              server-side apply patch on the status subresource.",
    },
    ApiAccess {
        group: "vtmove.dev",
        resource: "keyspaces/status",
        verbs: &["get", "patch"],
        namespaced: true,
        scope: Scope::WatchedNamespaces,
        why: "The keyspace controller reports topology and tablet health with one server-side \
              apply patch on the status subresource.",
    },
    ApiAccess {
        group: "vtmove.dev",
        resource: "movetablesworkflows/finalizers",
        verbs: &["update"],
        namespaced: true,
        scope: Scope::WatchedNamespaces,
        why: "API servers that enforce OwnerReferencesPermissionEnforcement require update on \
              the finalizers subresource to set a finalizer.",
    },
    ApiAccess {
        group: "vtmove.dev",
        resource: "keyspaces/finalizers",
        verbs: &["update"],
        namespaced: true,
        scope: Scope::WatchedNamespaces,
        why: "Same as for movetablesworkflows/finalizers, for the Keyspace finalizer.",
    },
    ApiAccess {
        group: "events.k8s.io",
        resource: "events",
        verbs: &["create", "patch"],
        namespaced: true,
        scope: Scope::WatchedNamespaces,
        why: "kube-runtime's event Recorder creates an Event in the object's namespace for each \
              step and warning, and patches it to count repeats of the same event.",
    },
    ApiAccess {
        group: "coordination.k8s.io",
        resource: "leases",
        verbs: &["get", "create", "update", "patch"],
        namespaced: true,
        scope: Scope::OperatorNamespace,
        why: "Leader election (kube-lease-manager) reads the Lease, creates it when missing, \
              takes it with a server-side apply and renews it, so one replica writes at a time.",
    },
];

impl ApiAccess {
    /// This entry as an RBAC rule granting exactly its verbs on its resource.
    pub fn policy_rule(&self) -> PolicyRule {
        PolicyRule {
            api_groups: Some(vec![self.group.to_string()]),
            resources: Some(vec![self.resource.to_string()]),
            verbs: self.verbs.iter().map(|v| v.to_string()).collect(),
            ..PolicyRule::default()
        }
    }

    /// The `(group, resource, verb)` triples this entry grants, the unit the chart test compares.
    pub fn triples(&self) -> impl Iterator<Item = (&'static str, &'static str, &'static str)> {
        let (group, resource) = (self.group, self.resource);
        self.verbs.iter().map(move |verb| (group, resource, *verb))
    }
}

/// The rules a Role or ClusterRole needs for the entries of [`REQUIRED_ACCESS`] in `scope`, one
/// rule per resource: what a chart template or a generated manifest should contain.
pub fn policy_rules(scope: Scope) -> Vec<PolicyRule> {
    REQUIRED_ACCESS
        .iter()
        .filter(|a| a.scope == scope)
        .map(ApiAccess::policy_rule)
        .collect()
}

/// Every `(group, resource, verb)` triple of [`REQUIRED_ACCESS`] with the scope it is needed in.
pub fn required_triples()
-> impl Iterator<Item = (Scope, (&'static str, &'static str, &'static str))> {
    REQUIRED_ACCESS
        .iter()
        .flat_map(|a| a.triples().map(move |t| (a.scope, t)))
}

/// One permission check: may vtmove `verb` `resource` (of `group`) in `namespace` (`None`: in
/// every namespace, which only a ClusterRole grants)?
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessCheck {
    /// RBAC verb.
    pub verb: &'static str,
    /// API group.
    pub group: &'static str,
    /// Resource plural, with `/<subresource>` for subresources.
    pub resource: &'static str,
    /// Namespace, or `None` for all namespaces.
    pub namespace: Option<String>,
    /// Why vtmove makes the call (from [`REQUIRED_ACCESS`]).
    pub why: &'static str,
}

impl std::fmt::Display for AccessCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = if self.group.is_empty() {
            "the core API group".to_string()
        } else {
            format!("API group {:?}", self.group)
        };
        let place = match &self.namespace {
            Some(ns) => format!("in namespace {ns:?}"),
            None => "in all namespaces (cluster-wide)".to_string(),
        };
        write!(
            f,
            "cannot {} {:?} in {group} {place}; needed because: {}",
            self.verb, self.resource, self.why
        )
    }
}

/// Every check [`REQUIRED_ACCESS`] implies for a run watching `watched` namespaces (empty: all
/// of them) with its Lease in `lease_namespace` (`None`: leader election off).
pub fn access_checks(watched: &[String], lease_namespace: Option<&str>) -> Vec<AccessCheck> {
    let watched: Vec<Option<String>> = if watched.is_empty() {
        vec![None]
    } else {
        watched.iter().cloned().map(Some).collect()
    };
    let mut out = Vec::new();
    for access in REQUIRED_ACCESS {
        let namespaces: Vec<Option<String>> = match access.scope {
            Scope::WatchedNamespaces => watched.clone(),
            Scope::OperatorNamespace => match lease_namespace {
                Some(ns) => vec![Some(ns.to_string())],
                None => continue,
            },
        };
        for namespace in namespaces {
            for verb in access.verbs {
                out.push(AccessCheck {
                    verb,
                    group: access.group,
                    resource: access.resource,
                    namespace: namespace.clone(),
                    why: access.why,
                });
            }
        }
    }
    out
}

/// Why the permissions could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum AccessCheckError {
    /// The API server refused or failed a SelfSubjectAccessReview.
    #[error("asking the API server whether vtmove may {check}: {source}")]
    Api {
        /// What was asked (as "verb resource ...").
        check: String,
        /// The client's error.
        source: kube::Error,
    },
    /// The API server did not answer within the deadline.
    #[error("the API server did not answer a SelfSubjectAccessReview within {0:?}")]
    Timeout(std::time::Duration),
}

/// The checks of `checks` the API server denies this client, asked one by one with a
/// SelfSubjectAccessReview (which every authenticated user may create). `vtmove run` calls it
/// before starting, so a missing grant stops it with an error naming the permission instead of
/// leaving a controller retrying 403s in its log.
pub async fn missing_permissions(
    client: &kube::Client,
    checks: &[AccessCheck],
    timeout: std::time::Duration,
) -> Result<Vec<AccessCheck>, AccessCheckError> {
    use k8s_openapi::api::authorization::v1::{
        ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
    };
    let api: kube::Api<SelfSubjectAccessReview> = kube::Api::all(client.clone());
    let mut missing = Vec::new();
    for check in checks {
        let (resource, subresource) = match check.resource.split_once('/') {
            Some((r, s)) => (r, Some(s.to_string())),
            None => (check.resource, None),
        };
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    group: Some(check.group.to_string()),
                    resource: Some(resource.to_string()),
                    subresource,
                    verb: Some(check.verb.to_string()),
                    namespace: check.namespace.clone(),
                    ..ResourceAttributes::default()
                }),
                ..SelfSubjectAccessReviewSpec::default()
            },
            ..SelfSubjectAccessReview::default()
        };
        let answer = tokio::time::timeout(timeout, api.create(&Default::default(), &review))
            .await
            .map_err(|_| AccessCheckError::Timeout(timeout))?
            .map_err(|source| AccessCheckError::Api {
                check: format!("{} {}", check.verb, check.resource),
                source,
            })?;
        if !answer.status.is_some_and(|s| s.allowed) {
            missing.push(check.clone());
        }
    }
    Ok(missing)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::api::crds::crds;

    /// Every vtmove.dev resource in the table is a CRD plural (or one of its subresources), and
    /// every CRD gets the main resource, `/status` and `/finalizers`, so renaming a CRD or adding
    /// a new one cannot leave RBAC behind.
    #[test]
    fn resources_match_the_crd_plurals() {
        let crds = crds();
        let plurals: BTreeSet<&str> = crds
            .iter()
            .map(|c| {
                assert_eq!(c.spec.group, "vtmove.dev");
                assert_eq!(c.spec.scope, "Namespaced");
                c.spec.names.plural.as_str()
            })
            .collect();
        let ours: Vec<&ApiAccess> = REQUIRED_ACCESS
            .iter()
            .filter(|a| a.group == "vtmove.dev")
            .collect();
        for a in &ours {
            let base = a.resource.split('/').next().unwrap_or_default();
            assert!(
                plurals.contains(base),
                "{} is not a plural of vtmove's CRDs {plurals:?}",
                a.resource
            );
            assert!(a.namespaced, "{}: the CRDs are namespaced", a.resource);
            assert_eq!(a.scope, Scope::WatchedNamespaces, "{}", a.resource);
        }
        let listed: BTreeSet<&str> = ours.iter().map(|a| a.resource).collect();
        let expected: BTreeSet<String> = plurals
            .iter()
            .flat_map(|p| {
                [
                    p.to_string(),
                    format!("{p}/status"),
                    format!("{p}/finalizers"),
                ]
            })
            .collect();
        let expected: BTreeSet<&str> = expected.iter().map(String::as_str).collect();
        assert_eq!(listed, expected);
    }

    /// The exact grants, so a change to the table is a deliberate, reviewed change.
    #[test]
    fn exact_grants() {
        let got: BTreeSet<(Scope, (&str, &str, &str))> = required_triples().collect();
        let mut want = BTreeSet::new();
        for plural in ["movetablesworkflows", "keyspaces"] {
            for verb in ["get", "list", "watch", "patch"] {
                want.insert((Scope::WatchedNamespaces, ("vtmove.dev", plural, verb)));
            }
        }
        for res in ["movetablesworkflows/status", "keyspaces/status"] {
            for verb in ["get", "patch"] {
                want.insert((Scope::WatchedNamespaces, ("vtmove.dev", res, verb)));
            }
        }
        for res in ["movetablesworkflows/finalizers", "keyspaces/finalizers"] {
            want.insert((Scope::WatchedNamespaces, ("vtmove.dev", res, "update")));
        }
        for verb in ["create", "patch"] {
            want.insert((Scope::WatchedNamespaces, ("events.k8s.io", "events", verb)));
        }
        for verb in ["get", "create", "update", "patch"] {
            want.insert((
                Scope::OperatorNamespace,
                ("coordination.k8s.io", "leases", verb),
            ));
        }
        assert_eq!(got, want);
        // One entry per resource, no duplicate verbs, no wildcards, a reason for each.
        let resources: BTreeSet<(&str, &str)> = REQUIRED_ACCESS
            .iter()
            .map(|a| (a.group, a.resource))
            .collect();
        assert_eq!(resources.len(), REQUIRED_ACCESS.len());
        for a in REQUIRED_ACCESS {
            let verbs: BTreeSet<&str> = a.verbs.iter().copied().collect();
            assert_eq!(verbs.len(), a.verbs.len(), "{}: duplicate verb", a.resource);
            assert!(!verbs.contains("*") && !a.resource.contains('*') && !a.group.contains('*'));
            assert!(a.why.len() > 20, "{}: say why", a.resource);
        }
    }

    #[test]
    fn policy_rules_render_each_entry() {
        let rules = policy_rules(Scope::OperatorNamespace);
        assert_eq!(rules.len(), 1);
        assert_eq!(
            serde_json::to_value(&rules[0]).expect("a PolicyRule serializes"),
            serde_json::json!({
                "apiGroups": ["coordination.k8s.io"],
                "resources": ["leases"],
                "verbs": ["get", "create", "update", "patch"],
            })
        );
        let watched = policy_rules(Scope::WatchedNamespaces);
        assert_eq!(watched.len(), REQUIRED_ACCESS.len() - 1);
    }

    #[test]
    fn checks_cover_every_verb_in_each_scope() {
        let all = access_checks(&[], Some("ops"));
        let total: usize = REQUIRED_ACCESS.iter().map(|a| a.verbs.len()).sum();
        assert_eq!(all.len(), total);
        for c in &all {
            let expected = if c.group == "coordination.k8s.io" {
                Some("ops".to_string())
            } else {
                None
            };
            assert_eq!(c.namespace, expected, "{c}");
        }

        // Two watched namespaces double the watched checks; no Lease checks without election.
        let scoped = access_checks(&["a".into(), "b".into()], None);
        let watched: usize = REQUIRED_ACCESS
            .iter()
            .filter(|a| a.scope == Scope::WatchedNamespaces)
            .map(|a| a.verbs.len())
            .sum();
        assert_eq!(scoped.len(), 2 * watched);
        assert!(scoped.iter().all(|c| c.group != "coordination.k8s.io"));
        assert!(scoped.iter().all(|c| c.namespace.is_some()));
    }

    #[test]
    fn a_missing_check_names_verb_resource_group_and_place() {
        let check = AccessCheck {
            verb: "patch",
            group: "vtmove.dev",
            resource: "keyspaces/status",
            namespace: Some("prod".into()),
            why: "status",
        };
        assert_eq!(
            check.to_string(),
            "cannot patch \"keyspaces/status\" in API group \"vtmove.dev\" in namespace \"prod\"; \
             needed because: status"
        );
    }
}
