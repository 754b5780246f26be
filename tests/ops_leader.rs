//! Leader election (`vtmove::ops::leader`) against kube-sim: kube-lease-manager's real requests
//! (server-side apply without force to take the Lease, strategic merge patches to renew and
//! release it) decide who leads.
//!
//! - Two candidates for one Lease: exactly one leads, and never both at any sampled moment.
//! - The leader releases: the other takes over within seconds, the Lease names it, and each
//!   instance's `vtmove_leader` gauge follows.
//! - The leader is cut off from the API server (its connections dropped, as in a network
//!   partition or a frozen process): it stops leading on its own before the Lease expires, and
//!   the other takes over after expiry; again never both at once.

use std::net::SocketAddr;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep};
use vtmove::ops::{LeaderElection, LeaderHandle, LeaderOptions, Metrics};

const NAMESPACE: &str = "default";

fn short_lease() -> LeaderOptions {
    LeaderOptions {
        duration: Duration::from_secs(2),
        grace: Duration::from_secs(1),
    }
}

async fn start_sim() -> kube_sim::Handle {
    kube_sim::KubeSim::start(kube_sim::Options::default())
        .await
        .expect("kube-sim starts")
}

/// Waits up to `limit` for `pred`, sampling every 20 ms and checking on every sample that the
/// two candidates never both lead.
async fn wait_exclusive(
    a: &LeaderHandle,
    b: &LeaderHandle,
    limit: Duration,
    what: &str,
    pred: impl Fn(bool, bool) -> bool,
) {
    let start = Instant::now();
    loop {
        let (la, lb) = (a.is_leader(), b.is_leader());
        assert!(!(la && lb), "both candidates lead at once ({what})");
        if pred(la, lb) {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "{what}: not reached within {limit:?} (a leads: {la}, b leads: {lb})"
        );
        sleep(Duration::from_millis(20)).await;
    }
}

/// Waits up to 2 s for the `vtmove_leader` gauge line `line`.
async fn wait_for_gauge(metrics: &Metrics, line: &str) {
    let start = Instant::now();
    while !metrics.encode().lines().any(|l| l == line) {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "no {line:?} in\n{}",
            metrics.encode()
        );
        sleep(Duration::from_millis(10)).await;
    }
}

async fn holder(sim: &kube_sim::Handle, name: &str) -> Option<String> {
    let api: Api<Lease> = Api::namespaced(sim.client(), NAMESPACE);
    api.get(name)
        .await
        .expect("lease readable")
        .spec
        .and_then(|s| s.holder_identity)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_two_leads_and_the_other_takes_over_after_release() {
    let sim = start_sim().await;
    let a = LeaderElection::start(sim.client(), NAMESPACE, "vtmove", "a", short_lease())
        .await
        .expect("a starts");
    let b = LeaderElection::start(sim.client(), NAMESPACE, "vtmove", "b", short_lease())
        .await
        .expect("b starts");

    wait_exclusive(
        &a,
        &b,
        Duration::from_secs(10),
        "someone leads",
        |la, lb| la || lb,
    )
    .await;
    // Several renewal periods with one leader throughout.
    let first_is_a = a.is_leader();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        wait_exclusive(&a, &b, Duration::ZERO, "stable", |_, _| true).await;
        assert_eq!(a.is_leader(), first_is_a, "leadership flapped");
        assert_eq!(b.is_leader(), !first_is_a, "leadership flapped");
        sleep(Duration::from_millis(50)).await;
    }
    let (leader, follower) = if first_is_a { (&a, &b) } else { (&b, &a) };
    assert_eq!(
        holder(&sim, "vtmove").await.as_deref(),
        Some(leader.identity())
    );
    let mut changes = follower.subscribe();
    assert!(!*changes.borrow_and_update());
    let leader_metrics = Metrics::new();
    let follower_metrics = Metrics::new();
    let _reporters = (
        leader.report_to(leader_metrics.clone()),
        follower.report_to(follower_metrics.clone()),
    );
    wait_for_gauge(&leader_metrics, "vtmove_leader 1").await;
    wait_for_gauge(&follower_metrics, "vtmove_leader 0").await;

    leader.release().await.expect("release");
    assert!(!leader.is_leader(), "released leadership ends at once");
    // Released, not expired: the follower may take over at once; allow its polling and backoff.
    wait_exclusive(&a, &b, Duration::from_secs(5), "takeover", |la, lb| {
        if first_is_a { lb && !la } else { la && !lb }
    })
    .await;
    tokio::time::timeout(Duration::from_secs(2), changes.wait_for(|l| *l))
        .await
        .expect("the follower's channel reports the gain")
        .expect("channel open");
    assert_eq!(
        holder(&sim, "vtmove").await.as_deref(),
        Some(follower.identity())
    );
    wait_for_gauge(&leader_metrics, "vtmove_leader 0").await;
    wait_for_gauge(&follower_metrics, "vtmove_leader 1").await;
    follower.release().await.expect("release");
    assert_eq!(holder(&sim, "vtmove").await, None, "released Lease is free");
}

/// A TCP forwarder to kube-sim that can be cut, standing for a network partition between one
/// candidate and the API server.
struct Partition {
    addr: SocketAddr,
    tasks: JoinSet<()>,
}

impl Partition {
    async fn to(target: SocketAddr) -> Partition {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                conns.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Partition { addr, tasks }
    }

    fn client(&self) -> kube::Client {
        let url: http::Uri = format!("http://{}", self.addr).parse().expect("url");
        let mut config = kube::Config::new(url);
        config.default_namespace = NAMESPACE.into();
        config.read_timeout = Some(Duration::from_millis(500));
        config.connect_timeout = Some(Duration::from_millis(500));
        kube::Client::try_from(config).expect("client")
    }

    /// Drops the listener and every open connection (the accept task owns them).
    fn cut(&mut self) {
        self.tasks.abort_all();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_steps_down_before_the_other_takes_over() {
    let sim = start_sim().await;
    let mut partition = Partition::to(sim.addr()).await;
    let a = LeaderElection::start(partition.client(), NAMESPACE, "vtmove", "a", short_lease())
        .await
        .expect("a starts");
    let start = Instant::now();
    while !a.is_leader() {
        assert!(start.elapsed() < Duration::from_secs(10), "a never led");
        sleep(Duration::from_millis(20)).await;
    }
    let b = LeaderElection::start(sim.client(), NAMESPACE, "vtmove", "b", short_lease())
        .await
        .expect("b starts");
    sleep(Duration::from_millis(500)).await;
    assert!(a.is_leader() && !b.is_leader(), "the first holder keeps it");

    let cut_at = Instant::now();
    partition.cut();
    // a can no longer renew: it must stop leading within one Lease duration of its last renewal
    // (at most 2 s ago), without anyone telling it.
    wait_exclusive(&a, &b, Duration::from_secs(3), "a steps down", |la, _| !la).await;
    let stepped_down = cut_at.elapsed();
    wait_exclusive(&a, &b, Duration::from_secs(8), "b takes over", |_, lb| lb).await;
    assert!(
        cut_at.elapsed() > stepped_down,
        "b led before a stepped down"
    );
    assert_eq!(holder(&sim, "vtmove").await.as_deref(), Some("b"));
    b.release().await.expect("release");
    // a's release cannot reach the server; it must still end (with an error or not) promptly.
    let _ = tokio::time::timeout(Duration::from_secs(5), a.release())
        .await
        .expect("a's release ends");
}
