//! Writes through the real vtgate (Vitess v0.24, from `scripts/peers`) on its MySQL port: the
//! sandbox's `--vtgate` load and the cutover-window benchmark's second column.
//!
//! vtsim's probe routes with vtmove's own model of vtgate and fails a write the moment it meets
//! a denied table. The real vtgate does not: outside a transaction it holds a write refused with
//! "enforce denied tables", waits for a newer SrvVSchema and retries, so a cutover shows up
//! through it as latency more than as failures. This driver therefore records every write's
//! start and end, and a cutover's figure is the longest time writes were *blocked*: from the
//! start of the first write that did not succeed promptly to the start of the next one that
//! did, failures included.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use tokio_util::sync::CancellationToken;

use crate::vtgate::Vtgate;

/// A write that succeeds within this is prompt; a slower one is blocked.
pub const PROMPT: Duration = Duration::from_millis(50);
/// How long one write may take before the driver gives up on it (vtgate may hold a write for
/// 30 s per retry when no newer SrvVSchema comes).
const WRITE_TIMEOUT: Duration = Duration::from_secs(65);

/// One write through vtgate.
#[derive(Clone, Debug)]
pub struct Attempt {
    /// Since the drive started.
    pub start: Duration,
    /// Since the drive started.
    pub end: Duration,
    /// Whether vtgate acknowledged it.
    pub ok: bool,
    /// Its primary key.
    pub pk: i64,
}

/// What one drive saw.
#[derive(Clone, Debug, Default)]
pub struct DriveReport {
    /// Every write, in the order they were issued.
    pub attempts: Vec<Attempt>,
    /// The first error message seen, if any.
    pub first_error: Option<String>,
}

impl DriveReport {
    /// Writes vtgate refused or that timed out.
    pub fn failed(&self) -> usize {
        self.attempts.iter().filter(|a| !a.ok).count()
    }

    /// Acknowledged and failed writes among those that started at or after `since`.
    pub fn counts_since(&self, since: Duration) -> (u64, u64) {
        self.attempts
            .iter()
            .filter(|a| a.start >= since)
            .fold((0, 0), |(ok, failed), a| {
                if a.ok {
                    (ok + 1, failed)
                } else {
                    (ok, failed + 1)
                }
            })
    }

    /// The longest period writes were blocked: from the start of a write that did not succeed
    /// within [`PROMPT`] to the start of the next write that did.
    pub fn longest_blocked(&self) -> Duration {
        self.longest_blocked_between(Duration::ZERO, Duration::MAX)
    }

    /// [`DriveReport::longest_blocked`] over the writes that started between `from` and `to`
    /// (a part of the drive, such as one measured fault).
    pub fn longest_blocked_between(&self, from: Duration, to: Duration) -> Duration {
        let mut attempts: Vec<Attempt> = self
            .attempts
            .iter()
            .filter(|a| a.start >= from && a.start <= to)
            .cloned()
            .collect();
        attempts.sort_by_key(|a| a.start);
        let mut longest = Duration::ZERO;
        let mut open: Option<Duration> = None;
        for a in &attempts {
            let prompt = a.ok && a.end.saturating_sub(a.start) <= PROMPT;
            match (prompt, open) {
                (true, Some(since)) => {
                    longest = longest.max(a.start.saturating_sub(since));
                    open = None;
                }
                (false, None) => open = Some(a.start),
                _ => {}
            }
        }
        if let (Some(since), Some(last)) = (open, attempts.iter().map(|a| a.end).max()) {
            longest = longest.max(last.saturating_sub(since));
        }
        longest
    }
}

/// A connection pool to vtgate's MySQL port.
pub fn pool(vtgate: &Vtgate) -> mysql_async::Pool {
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(vtgate.mysql_port)
        .user(Some("vtmove"))
        .prefer_socket(false)
        // Given here, the client does not ask the server for them (vtgate would pass the
        // `select @@...` to a tablet).
        .max_allowed_packet(Some(16 << 20))
        .wait_timeout(Some(28_800))
        .pool_opts(
            mysql_async::PoolOpts::default()
                .with_constraints(mysql_async::PoolConstraints::new(8, 128).unwrap_or_default()),
        );
    mysql_async::Pool::new(opts)
}

/// The table a driver writes: its name, its integer primary key column and a text column.
#[derive(Clone, Copy, Debug)]
pub struct Table<'a> {
    /// The table (unqualified: vtgate routes it).
    pub name: &'a str,
    /// Its integer primary key.
    pub key: &'a str,
    /// A text column the driver fills with [`value_of`].
    pub value: &'a str,
}

impl Table<'_> {
    fn insert(&self, pk: i64, value: &str) -> String {
        format!(
            "insert into {} ({}, {}) values ({pk}, '{value}')",
            self.name, self.key, self.value
        )
    }
}

/// Waits until a write to `table` goes through vtgate (it has discovered the tablets).
pub async fn wait_writable(
    pool: &mysql_async::Pool,
    table: Table<'_>,
    pk: i64,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let result = async {
            let mut conn = pool.get_conn().await?;
            conn.query_drop(table.insert(pk, "ready")).await
        }
        .await;
        match result {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                anyhow::bail!("vtgate does not take writes to {}: {e}", table.name)
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Writes new rows `first_key..` to `table` at `rate` per second for `duration`, at most
/// `max_in_flight` at once, and waits for every write to end. Times are since the call.
pub async fn drive(
    pool: &mysql_async::Pool,
    table: Table<'_>,
    rate: u32,
    duration: Duration,
    first_key: i64,
    max_in_flight: usize,
) -> DriveReport {
    let stop = CancellationToken::new();
    let timer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(duration).await;
            stop.cancel();
        })
    };
    let report = drive_until(
        pool,
        table,
        rate,
        first_key,
        max_in_flight,
        Instant::now(),
        stop,
    )
    .await;
    timer.abort();
    report
}

/// Writes new rows `first_key..` to `table` at `rate` per second until `stop`, at most
/// `max_in_flight` at once, and waits for every write to end. Times are since `origin`.
pub async fn drive_until(
    pool: &mysql_async::Pool,
    table: Table<'_>,
    rate: u32,
    first_key: i64,
    max_in_flight: usize,
    origin: Instant,
    stop: CancellationToken,
) -> DriveReport {
    let report = Arc::new(Mutex::new(DriveReport::default()));
    let slots = Arc::new(tokio::sync::Semaphore::new(max_in_flight));
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let mut next = Instant::now();
    let mut pk = first_key;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep_until(next.into()) => {}
        }
        next += interval;
        let slot = tokio::select! {
            _ = stop.cancelled() => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let pool = pool.clone();
        let report = report.clone();
        let sql = table.insert(pk, &value_of(pk));
        let this_pk = pk;
        pk += 1;
        tasks.spawn(async move {
            let start = origin.elapsed();
            let result = tokio::time::timeout(WRITE_TIMEOUT, async {
                let mut conn = pool.get_conn().await?;
                conn.query_drop(sql).await
            })
            .await;
            let end = origin.elapsed();
            let (ok, error) = match result {
                Ok(Ok(())) => (true, None),
                Ok(Err(e)) => (false, Some(e.to_string())),
                Err(_) => (false, Some(format!("no answer within {WRITE_TIMEOUT:?}"))),
            };
            if let Ok(mut r) = report.lock() {
                r.attempts.push(Attempt {
                    start,
                    end,
                    ok,
                    pk: this_pk,
                });
                if r.first_error.is_none() {
                    r.first_error = error;
                }
            }
            drop(slot);
        });
    }
    while tasks.join_next().await.is_some() {}
    let mut out = report
        .lock()
        .map(|mut r| std::mem::take(&mut *r))
        .unwrap_or_default();
    out.attempts.sort_by_key(|a| a.start);
    out
}

/// The value the driver writes for `pk`: what the serving keyspace must hold afterwards.
pub fn value_of(pk: i64) -> String {
    format!("g{pk}")
}
