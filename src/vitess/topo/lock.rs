//! Vitess-compatible topology locks (`docs/design/topology.md`, "Locks"), written once over the [`TopoStore`]
//! primitives so the etcd and in-memory stores share the algorithm.
//!
//! A lock on a resource directory `<root>/<dir>` is the key `<root>/<dir>/locks/<leaseID>` (the
//! lease id as a signed decimal), attached to a lease and holding an indented JSON descriptor.
//! Ownership goes to the oldest key by creation revision: after writing its key at revision `R`,
//! a contender looks for the newest lock key with a ModRevision of at most `R - 1`; if there is
//! none it holds the lock, otherwise it waits for that key to be deleted (watching from `R`, so a
//! deletion in between is not missed) and looks again. Waiters form a FIFO queue in revision
//! order, each watching only its predecessor. vtctld, vtorc and vttablet follow the same recipe on
//! the same keys, so vtmove excludes them and is excluded by them.
//!
//! Where vtmove differs from Vitess, deliberately:
//! * Vitess stops renewing the lease once the lock is acquired, so its locks live about one TTL
//!   after the last check. vtmove renews the lease in a background task every TTL/3 for as long
//!   as the guard lives, because its critical sections (a write cutover with tablet refreshes)
//!   can outlast a TTL.
//! * [`LockHandle::check`] renews the lease *and* confirms the lock key still exists, and the
//!   renewal task does the same, so a lock key deleted by hand is noticed too.
//! * Named locks use the same TTL and renewal as the others instead of Vitess's 24 h lease: a
//!   crashed vtmove then frees the workflow name within one TTL instead of blocking it for a day,
//!   while a live vtmove keeps it as long as it needs.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::error::{Result, TopoError};
use super::path::{join, join_all, names::LOCKS_PATH};
use super::store::{LeaseId, TopoStore, Version, ttl_seconds};

/// Default lease TTL of vtmove's locks. Vitess's `--topo-etcd-lease-ttl` defaults to 30 s, but
/// Vitess never renews a lock's lease while vtmove renews it every TTL/3 and checks it before
/// every mutation: a live holder keeps its lock at any TTL, and a crashed vtmove's locks (and
/// the interrupted cutover they guard) are free to heal after 10 s instead of 30 s. The cost: an
/// operator stalled for longer than the TTL (etcd unreachable, the process frozen) loses its
/// locks, and its next mutation fails on the lost lease instead of writing unprotected.
pub const DEFAULT_LOCK_TTL: Duration = Duration::from_secs(10);
/// Default bound on acquiring a lock, Vitess's `--lock-timeout` default.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(45);

/// How locks are taken: the lease TTL (renewed every TTL/3 while held) and how long acquisition
/// may wait before giving up with Timeout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockOptions {
    /// Lease TTL, in whole seconds (at least one; etcd may raise very small values).
    pub ttl: Duration,
    /// Upper bound on the whole acquisition, waiting in the queue included.
    pub acquire_timeout: Duration,
}

impl Default for LockOptions {
    fn default() -> Self {
        LockOptions {
            ttl: DEFAULT_LOCK_TTL,
            acquire_timeout: DEFAULT_LOCK_TIMEOUT,
        }
    }
}

/// The JSON descriptor Vitess writes as a lock key's value. Field order is part of the format.
#[derive(Serialize)]
struct LockDescriptor<'a> {
    #[serde(rename = "Action")]
    action: &'a str,
    #[serde(rename = "HostName")]
    host_name: &'a str,
    #[serde(rename = "UserName")]
    user_name: &'a str,
    #[serde(rename = "Time")]
    time: String,
    #[serde(rename = "Options")]
    options: EmptyOptions,
    #[serde(rename = "Status")]
    status: &'a str,
}

/// Vitess's lock options have no exported fields, so they always serialize as `{}`.
#[derive(Serialize)]
struct EmptyOptions {}

/// The lock descriptor for `action`, as written into the lock key: JSON indented with two
/// spaces, fields `Action`, `HostName`, `UserName`, `Time`, `Options`, `Status`.
pub fn lock_descriptor_json(action: &str, now: SystemTime) -> Result<String> {
    let descriptor = LockDescriptor {
        action,
        host_name: host_name(),
        user_name: user_name(),
        time: format_rfc3339_utc(now),
        options: EmptyOptions {},
        status: "Running",
    };
    serde_json::to_string_pretty(&descriptor)
        .map_err(|e| TopoError::InvalidArgument(format!("cannot encode lock descriptor: {e}")))
}

/// This machine's host name for lock descriptors: the kernel's, `/etc/hostname`, `$HOSTNAME`,
/// or `unknown`.
pub fn host_name() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        let from_file = |path: &str| {
            std::fs::read_to_string(path)
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        };
        from_file("/proc/sys/kernel/hostname")
            .or_else(|| from_file("/etc/hostname"))
            .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
            .unwrap_or_else(|| "unknown".to_string())
    })
}

/// The OS user for lock descriptors: `$USER`, or `unknown`.
pub fn user_name() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        std::env::var("USER")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "unknown".to_string())
    })
}

/// Formats a time as RFC 3339 in UTC with whole seconds, e.g. `2025-01-02T15:04:05Z`.
pub fn format_rfc3339_utc(time: SystemTime) -> String {
    let secs = match time.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    };
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        of_day / 3600,
        (of_day % 3600) / 60,
        of_day % 60
    )
}

/// Proleptic Gregorian (year, month, day) of a count of days since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Shift the epoch to 0000-03-01 so leap days fall at the end of a 400-year era.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

/// State shared between a lock handle and its renewal task.
struct Shared {
    store: Arc<dyn TopoStore>,
    lease: LeaseId,
    /// Absolute directory of the locked resource.
    dir: String,
    /// Absolute lock key: `<dir>/locks/<lease>`.
    key: String,
    ttl: Duration,
    /// `Some(reason)` once the lock is known to be lost.
    lost: watch::Sender<Option<String>>,
    last_renewal: Mutex<Instant>,
    /// Set once the lock key has been written; before that its absence means nothing.
    key_written: AtomicBool,
}

impl Shared {
    fn mark_lost(&self, reason: String) {
        self.lost.send_if_modified(|current| {
            if current.is_none() {
                tracing::warn!(key = %self.key, %reason, "Lost topology lock");
                *current = Some(reason);
                true
            } else {
                false
            }
        });
    }

    fn lost_reason(&self) -> Option<String> {
        self.lost.borrow().clone()
    }

    fn lost_error(&self, reason: String) -> TopoError {
        TopoError::LockLost {
            key: self.key.clone(),
            reason,
        }
    }

    fn renewed(&self) {
        *self
            .last_renewal
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }

    fn since_renewal(&self) -> Duration {
        self.last_renewal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .elapsed()
    }

    /// Renews the lease once and confirms the lock key still exists. `Ok(Err(reason))` when the
    /// lock is definitely gone; `Err` when the store could not answer.
    async fn renew(&self) -> Result<std::result::Result<(), String>> {
        if !self.store.keep_alive_once(self.lease).await? {
            return Ok(Err(format!("lease {} expired or was revoked", self.lease)));
        }
        self.renewed();
        if !self.key_written.load(Ordering::SeqCst) {
            return Ok(Ok(()));
        }
        match self.store.get(&self.key).await {
            Ok(_) => Ok(Ok(())),
            Err(TopoError::NoNode { .. }) => Ok(Err("the lock key was deleted".to_string())),
            Err(e) => Err(e),
        }
    }
}

/// Renews the lease every TTL/3 until the lock is lost or the task is aborted. A lock counts as
/// lost when the lease or key is gone, or when no renewal has succeeded for a whole TTL (the
/// server has then expired it, or will at any moment).
async fn renew_loop(shared: Arc<Shared>) {
    let interval = (shared.ttl / 3).max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(interval).await;
        if shared.lost_reason().is_some() {
            return;
        }
        let failure = match tokio::time::timeout(interval, shared.renew()).await {
            Ok(Ok(Ok(()))) => continue,
            Ok(Ok(Err(reason))) => {
                shared.mark_lost(reason);
                return;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "lease renewal timed out".to_string(),
        };
        tracing::debug!(key = %shared.key, error = %failure, "Lock lease renewal failed");
        if shared.since_renewal() >= shared.ttl {
            shared.mark_lost(format!(
                "the lease could not be renewed for a whole TTL ({}s): {failure}",
                shared.ttl.as_secs()
            ));
            return;
        }
    }
}

/// A held topology lock. Renews its lease in the background while it lives; [`unlock`] releases
/// it, and dropping it releases it on a best-effort basis (a spawned revoke; the lease expires
/// within one TTL if even that fails).
///
/// [`unlock`]: LockHandle::unlock
pub struct LockHandle {
    shared: Arc<Shared>,
    renewal: Option<JoinHandle<()>>,
    released: bool,
}

impl fmt::Debug for LockHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockHandle")
            .field("key", &self.shared.key)
            .field("lost", &self.shared.lost_reason())
            .finish()
    }
}

impl LockHandle {
    /// Starts renewing `lease` for a lock under `dir`; the lock key itself is written by the
    /// caller. Dropping the result revokes the lease.
    fn start(
        store: Arc<dyn TopoStore>,
        dir: String,
        lease: LeaseId,
        ttl: Duration,
    ) -> Result<Self> {
        let key = join_all(&[&dir, LOCKS_PATH, &lease.to_string()]);
        let (lost, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            store,
            lease,
            dir,
            key,
            ttl,
            lost,
            last_renewal: Mutex::new(Instant::now()),
            key_written: AtomicBool::new(false),
        });
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            TopoError::InvalidArgument(
            "topology locks must be taken inside a tokio runtime (they renew their lease in a task)"
                .to_string(),
        )
        })?;
        let renewal = runtime.spawn(renew_loop(shared.clone()));
        Ok(LockHandle {
            shared,
            renewal: Some(renewal),
            released: false,
        })
    }

    /// The absolute lock key, `<root>/<dir>/locks/<leaseID>`.
    pub fn key(&self) -> &str {
        &self.shared.key
    }

    /// The absolute directory of the locked resource (`<root>/keyspaces/<ks>`, ...).
    pub fn dir(&self) -> &str {
        &self.shared.dir
    }

    /// The lease the lock key is attached to.
    pub fn lease_id(&self) -> LeaseId {
        self.shared.lease
    }

    /// The lease TTL this lock was taken with.
    pub fn ttl(&self) -> Duration {
        self.shared.ttl
    }

    /// True once the renewal task (or a [`check`](Self::check)) found the lock gone: the lease
    /// or key no longer exists, or no renewal succeeded for a whole TTL (so the server has
    /// expired the lease). `true` is certain; `false` proves nothing, since the flag is only as
    /// fresh as the last renewal: call `check` before a write.
    pub fn is_lost(&self) -> bool {
        self.shared.lost_reason().is_some()
    }

    /// Renews the lease and confirms the lock key exists. LockLost when the lock is gone; the
    /// store's error (Unavailable, Timeout) when it cannot be confirmed either way. Every
    /// mutation made under a guard calls this first.
    pub async fn check(&self) -> Result<()> {
        if let Some(reason) = self.shared.lost_reason() {
            return Err(self.shared.lost_error(reason));
        }
        match self.shared.renew().await? {
            Ok(()) => Ok(()),
            Err(reason) => {
                self.shared.mark_lost(reason.clone());
                Err(self.shared.lost_error(reason))
            }
        }
    }

    /// Resolves once the lock is known to be lost, with the reason.
    async fn lost(&self) -> String {
        let mut receiver = self.shared.lost.subscribe();
        // Copy the reason out before any other await: the borrowed value must not be held
        // across one (it would make lock futures non-Send).
        let reason = match receiver.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone(),
            Err(_) => None,
        };
        match reason {
            Some(reason) => reason,
            // The sender lives in `shared`, which `self` keeps alive, so the channel cannot
            // close: wait forever rather than report a loss that did not occur.
            None => std::future::pending().await,
        }
    }

    /// Releases the lock by revoking its lease (which deletes the key and wakes the next
    /// waiter). LockLost if the lease was already gone, meaning the lock stopped protecting
    /// anything at some point before this call.
    pub async fn unlock(mut self) -> Result<()> {
        self.released = true;
        if let Some(task) = self.renewal.take() {
            task.abort();
        }
        match self.shared.store.revoke_lease(self.shared.lease).await {
            Ok(true) => match self.shared.lost_reason() {
                Some(reason) => Err(self.shared.lost_error(reason)),
                None => Ok(()),
            },
            Ok(false) => Err(self.shared.lost_error(format!(
                "lease {} had already expired or been revoked",
                self.shared.lease
            ))),
            Err(e) => Err(e),
        }
    }

    /// Stops renewing the lease and forgets the lock without revoking it, as a process that dies
    /// would: the lock key stays until its lease expires (one TTL). Crash simulations use this to
    /// reproduce what another holder sees after vtmove is killed mid-operation.
    pub fn abandon_like_a_crash(mut self) {
        self.released = true;
        if let Some(task) = self.renewal.take() {
            task.abort();
        }
    }

    /// Revokes the lease after a failed acquisition, ignoring errors (the lease expires anyway).
    async fn abandon(mut self) {
        self.released = true;
        if let Some(task) = self.renewal.take() {
            task.abort();
        }
        if let Err(e) = self.shared.store.revoke_lease(self.shared.lease).await {
            tracing::warn!(key = %self.shared.key, error = %e, "Could not revoke the lease of an abandoned lock; it expires with its TTL");
        }
    }
}

impl Drop for LockHandle {
    fn drop(&mut self) {
        if let Some(task) = self.renewal.take() {
            task.abort();
        }
        if self.released {
            return;
        }
        let shared = self.shared.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(e) = shared.store.revoke_lease(shared.lease).await {
                        tracing::warn!(key = %shared.key, error = %e, "Could not release a dropped lock; it expires with its TTL");
                    }
                });
            }
            Err(_) => {
                tracing::warn!(key = %shared.key, "Dropped a lock outside a tokio runtime; it expires with its TTL");
            }
        }
    }
}

/// Acquires the lock on the absolute resource directory `dir`, following the Vitess recipe.
///
/// With `require_existing_dir`, the directory must contain at least one key (NoNode otherwise),
/// so a keyspace or shard that does not exist cannot be locked. The whole acquisition, queueing
/// included, is bounded by `options.acquire_timeout` (Timeout); on any failure the lease is
/// revoked before returning, so no stale lock key is left behind.
pub async fn acquire(
    store: Arc<dyn TopoStore>,
    dir: &str,
    action: &str,
    options: &LockOptions,
    require_existing_dir: bool,
) -> Result<LockHandle> {
    let deadline = Instant::now() + options.acquire_timeout;
    let timeout = || TopoError::Timeout {
        op: "lock",
        key: dir.to_string(),
    };
    let descriptor = lock_descriptor_json(action, SystemTime::now())?;

    if require_existing_dir {
        tokio::time::timeout_at(deadline, store.list_dir(dir))
            .await
            .map_err(|_| timeout())??;
    }
    // The lease TTL as the store grants it (whole seconds), so the renewal task never believes
    // the lease lives longer than it does.
    let ttl = Duration::from_secs(u64::try_from(ttl_seconds(options.ttl)).unwrap_or(1));
    let lease = tokio::time::timeout_at(deadline, store.grant_lease(ttl))
        .await
        .map_err(|_| timeout())??;
    let handle = match LockHandle::start(store.clone(), dir.to_string(), lease, ttl) {
        Ok(handle) => handle,
        Err(e) => {
            let _ = store.revoke_lease(lease).await;
            return Err(e);
        }
    };

    let queued = async {
        let revision = store
            .create_with_lease(handle.key(), descriptor.as_bytes(), lease)
            .await?;
        handle.shared.key_written.store(true, Ordering::SeqCst);
        wait_for_turn(&handle, revision).await?;
        // Waiting may have taken longer than a TTL: make sure the lease and key survived it.
        handle.check().await
    };
    match tokio::time::timeout_at(deadline, queued).await {
        Ok(Ok(())) => {
            tracing::debug!(key = %handle.key(), action, "Acquired topology lock");
            Ok(handle)
        }
        Ok(Err(e)) => {
            handle.abandon().await;
            Err(e)
        }
        Err(_) => {
            handle.abandon().await;
            Err(timeout())
        }
    }
}

/// Waits until no lock key older than ours (created at `revision`) remains under the locks
/// directory. Fails with LockLost as soon as our own lease is found gone.
async fn wait_for_turn(handle: &LockHandle, revision: Version) -> Result<()> {
    let store = &handle.shared.store;
    let locks_prefix = format!("{}/", join(handle.dir(), LOCKS_PATH));
    loop {
        let older = store
            .newest_under_prefix(&locks_prefix, Version(revision.0 - 1))
            .await?;
        let Some(older) = older else {
            return Ok(());
        };
        tracing::debug!(key = %handle.key(), waiting_for = %older.key, "Queued behind an older topology lock");
        // The deadline of the wait itself is enforced by the caller's timeout.
        let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
        tokio::select! {
            waited = store.wait_for_delete(&older.key, revision, far) => waited?,
            reason = handle.lost() => return Err(handle.shared.lost_error(reason)),
        }
    }
}

/// Guard: the keyspace lock (`<root>/keyspaces/<ks>/locks/...`). Required by every function that
/// changes a keyspace's record, denied tables, VSchema or routing rules (invariant I3).
#[derive(Debug)]
pub struct KeyspaceLock {
    keyspace: String,
    handle: LockHandle,
}

/// Guard: the shard lock (`<root>/keyspaces/<ks>/shards/<shard>/locks/...`), the lock vtctld
/// takes for reparents. Accepted for generic shard-record updates.
#[derive(Debug)]
pub struct ShardLock {
    keyspace: String,
    shard: String,
    handle: LockHandle,
}

/// Guard: a named lock (`<root>/internal/named_locks/<name>/locks/...`). vtmove names workflow
/// locks `<targetKeyspace>/<workflow>`, as VReplication does.
#[derive(Debug)]
pub struct NamedLock {
    name: String,
    handle: LockHandle,
}

macro_rules! guard_common {
    ($ty:ty) => {
        impl $ty {
            /// The underlying lock.
            pub fn handle(&self) -> &LockHandle {
                &self.handle
            }

            /// The absolute lock key.
            pub fn key(&self) -> &str {
                self.handle.key()
            }

            /// The lease the lock key is attached to.
            pub fn lease_id(&self) -> LeaseId {
                self.handle.lease_id()
            }

            /// True once the lock is known to be lost (see [`LockHandle::is_lost`]).
            pub fn is_lost(&self) -> bool {
                self.handle.is_lost()
            }

            /// Renews the lease and confirms the lock is still held (see [`LockHandle::check`]).
            pub async fn check(&self) -> Result<()> {
                self.handle.check().await
            }

            /// Releases the lock (see [`LockHandle::unlock`]).
            pub async fn unlock(self) -> Result<()> {
                self.handle.unlock().await
            }

            /// Forgets the lock without releasing it, as a crashed process would (see
            /// [`LockHandle::abandon_like_a_crash`]).
            pub fn abandon_like_a_crash(self) {
                self.handle.abandon_like_a_crash()
            }
        }
    };
}

guard_common!(KeyspaceLock);
guard_common!(ShardLock);
guard_common!(NamedLock);

impl KeyspaceLock {
    pub(crate) fn new(keyspace: &str, handle: LockHandle) -> Self {
        KeyspaceLock {
            keyspace: keyspace.to_string(),
            handle,
        }
    }

    /// The locked keyspace.
    pub fn keyspace(&self) -> &str {
        &self.keyspace
    }
}

impl ShardLock {
    pub(crate) fn new(keyspace: &str, shard: &str, handle: LockHandle) -> Self {
        ShardLock {
            keyspace: keyspace.to_string(),
            shard: shard.to_string(),
            handle,
        }
    }

    /// The keyspace of the locked shard.
    pub fn keyspace(&self) -> &str {
        &self.keyspace
    }

    /// The locked shard.
    pub fn shard(&self) -> &str {
        &self.shard
    }
}

impl NamedLock {
    pub(crate) fn new(name: &str, handle: LockHandle) -> Self {
        NamedLock {
            name: name.to_string(),
            handle,
        }
    }

    /// The lock name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::KeyspaceLock {}
    impl Sealed for super::ShardLock {}
}

/// A guard that may authorize a shard-record update: the shard's keyspace lock or the shard's
/// own lock. Sealed: only the guard types of this module implement it. Denied-table changes
/// accept only the keyspace lock (invariant I3).
pub trait ShardGuard: sealed::Sealed + Send + Sync {
    /// The underlying lock.
    fn lock_handle(&self) -> &LockHandle;
    /// A short description for error messages.
    fn describe(&self) -> String;
}

impl ShardGuard for KeyspaceLock {
    fn lock_handle(&self) -> &LockHandle {
        &self.handle
    }
    fn describe(&self) -> String {
        format!("keyspace lock on {}", self.keyspace)
    }
}

impl ShardGuard for ShardLock {
    fn lock_handle(&self) -> &LockHandle {
        &self.handle
    }
    fn describe(&self) -> String {
        format!("shard lock on {}/{}", self.keyspace, self.shard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formatting() {
        let at = |secs: u64| UNIX_EPOCH + Duration::from_secs(secs);
        assert_eq!(format_rfc3339_utc(at(0)), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339_utc(at(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(
            format_rfc3339_utc(at(1_735_830_245)),
            "2025-01-02T15:04:05Z"
        );
        assert_eq!(
            format_rfc3339_utc(at(4_107_542_399)),
            "2100-02-28T23:59:59Z"
        );
        assert_eq!(
            format_rfc3339_utc(UNIX_EPOCH - Duration::from_secs(1)),
            "1969-12-31T23:59:59Z"
        );
    }

    #[test]
    fn descriptor_shape() {
        let json = lock_descriptor_json(
            "MoveTables",
            UNIX_EPOCH + Duration::from_secs(1_735_830_245),
        )
        .unwrap();
        let expected = format!(
            "{{\n  \"Action\": \"MoveTables\",\n  \"HostName\": {},\n  \"UserName\": {},\n  \"Time\": \"2025-01-02T15:04:05Z\",\n  \"Options\": {{}},\n  \"Status\": \"Running\"\n}}",
            serde_json::to_string(host_name()).unwrap(),
            serde_json::to_string(user_name()).unwrap()
        );
        assert_eq!(json, expected);
    }
}
