//! Benchmark (not a test): how long a reverse write cutover hit by a tablet roll stays broken
//! once the tablet is back, through the whole operator — kube-sim, the real controllers with
//! their etcd watch triggers, real etcd, a vtsim fleet — with the product's resync period
//! (5 min), so only the trigger path can wake the workflow quickly. The measurements and the two
//! variants are described in `vtmove_sandbox::heal`.
//!
//! With `--probe both` the same load also goes through the real vtgate (`scripts/peers`), which
//! holds and retries writes that meet denied tables: the run reports its failed writes and, per
//! sample (from the fault to the reverse reported), the longest time its writes were blocked,
//! beside the model probe's outages.
//!
//! ```sh
//! cargo bench --bench heal -- [--samples 20] [--downtime-ms 1000] [--lock-ttl-ms 1000] \
//!     [--probe model|both] [--json target/bench/heal.json]
//! ```
//!
//! `cargo test --bench heal` runs a smoke version (one sample of each variant, both probes).

mod support;

use std::time::Duration;

use serde_json::json;
use support::{ms, percentile, summary_json};
use vtmove_sandbox::heal::{HealSample, Variant};
use vtmove_sandbox::{Sandbox, SandboxOptions};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = support::Args::from_env();
    let samples: usize = args.value("--samples", if args.smoke { 1 } else { 20 })?;
    let downtime = Duration::from_millis(args.value("--downtime-ms", 1000)?);
    let lock_ttl = Duration::from_millis(args.value("--lock-ttl-ms", 1000)?);
    let json_path = args.json_path("heal")?;
    let probe = args.value(
        "--probe",
        if args.smoke { "both" } else { "model" }.to_string(),
    )?;
    anyhow::ensure!(
        probe == "model" || probe == "both",
        "--probe {probe}: expected model or both"
    );

    let kubeconfig = json_path.with_extension("kubeconfig");
    let mut options = SandboxOptions::new(&kubeconfig);
    options.etcd = true;
    options.progress = false;
    options.write_rate = 500;
    options.resync_period = Duration::from_secs(300);
    options.lock_ttl = lock_ttl;
    if probe == "both" {
        options.vtgate = Some(vtmove_sandbox::vtgate::built_vtgate()?);
    }
    let sandbox = Sandbox::start(options).await?;
    sandbox.prepare_heal_samples().await?;

    let mut all: Vec<HealSample> = Vec::new();
    for variant in [Variant::TabletDown, Variant::Abandoned] {
        for i in 0..samples {
            let sample = sandbox.heal_sample(variant, downtime).await?;
            println!(
                "{} #{i}: writes as desired {:.1} ms after the tablet was back{}, write outage {:.1} ms, status reported {:.1} ms after, I1 violations {}",
                variant.name(),
                ms(sample.after_tablet_back),
                sample
                    .after_locks_free
                    .map(|d| format!(" ({:.1} ms after the locks expired)", ms(d)))
                    .unwrap_or_default(),
                ms(sample.write_outage),
                ms(sample.reported_after_tablet_back),
                sample.violations,
            );
            all.push(sample);
        }
    }
    let report = sandbox.finish_benchmark().await;
    // Through vtgate, per sample: the longest time its writes were blocked from the fault to
    // the reverse reported.
    let vtgate_blocked = |s: &HealSample| {
        report
            .vtgate
            .as_ref()
            .map(|g| g.drive.longest_blocked_between(s.window.0, s.window.1))
    };
    if report.vtgate.is_some() {
        for (i, sample) in all.iter().enumerate() {
            println!(
                "{} sample {i}: from the fault to the reverse reported, writes blocked through vtgate at most {:.1} ms; the model probe's longest gap {:.1} ms",
                sample.variant.name(),
                ms(vtgate_blocked(sample).unwrap_or_default()),
                ms(sample.model_longest_gap),
            );
        }
    }

    println!();
    println!(
        "| variant | samples | after tablet back p50 | p99 | max | after locks expired p99 | write outage p99 | model longest gap p99 | vtgate blocked p50 | p99 | max | status reported p99 | I1 violations |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut results = Vec::new();
    for variant in [Variant::TabletDown, Variant::Abandoned] {
        let of = |f: fn(&HealSample) -> Option<Duration>| -> Vec<Duration> {
            let mut v: Vec<Duration> = all
                .iter()
                .filter(|s| s.variant == variant)
                .filter_map(f)
                .collect();
            v.sort();
            v
        };
        let back = of(|s| Some(s.after_tablet_back));
        let locks = of(|s| s.after_locks_free);
        let outage = of(|s| Some(s.write_outage));
        let model_gap = of(|s| Some(s.model_longest_gap));
        let reported = of(|s| Some(s.reported_after_tablet_back));
        let blocked = {
            let mut v: Vec<Duration> = all
                .iter()
                .filter(|s| s.variant == variant)
                .filter_map(vtgate_blocked)
                .collect();
            v.sort();
            v
        };
        let violations: usize = all
            .iter()
            .filter(|s| s.variant == variant)
            .map(|s| s.violations)
            .sum();
        let p99 = |v: &[Duration]| {
            if v.is_empty() {
                "-".to_string()
            } else {
                format!("{:.1} ms", ms(percentile(v, 99.0)))
            }
        };
        let (blocked_p50, blocked_max) = if blocked.is_empty() {
            ("-".to_string(), "-".to_string())
        } else {
            (
                format!("{:.1} ms", ms(percentile(&blocked, 50.0))),
                format!("{:.1} ms", ms(blocked.last().copied().unwrap_or_default())),
            )
        };
        println!(
            "| {} | {} | {:.1} ms | {} | {:.1} ms | {} | {} | {} | {blocked_p50} | {} | {blocked_max} | {} | {violations} |",
            variant.name(),
            back.len(),
            ms(percentile(&back, 50.0)),
            p99(&back),
            ms(back.last().copied().unwrap_or_default()),
            p99(&locks),
            p99(&outage),
            p99(&model_gap),
            p99(&blocked),
            p99(&reported),
        );
        results.push(json!({
            "variant": variant.name(),
            "after_tablet_back": summary_json(&back),
            "after_locks_expired": summary_json(&locks),
            "write_outage": summary_json(&outage),
            "model_longest_gap": summary_json(&model_gap),
            "status_reported_after_tablet_back": summary_json(&reported),
            "vtgate_blocked": (!blocked.is_empty()).then(|| summary_json(&blocked)),
            "i1_violations": violations,
        }));
    }
    println!(
        "probe: {} writes accepted, {} failed; lost writes: {}",
        report.writes_ok,
        report.writes_failed,
        report.lost_writes.len()
    );
    if let Some(g) = &report.vtgate {
        println!(
            "through the real vtgate: {} writes acknowledged, {} failed, longest blocked {:.1} ms over the run; lost writes: {}{}",
            g.writes_ok,
            g.writes_failed,
            ms(g.longest_blocked),
            g.lost_writes.len(),
            g.first_error
                .as_deref()
                .map(|e| format!(" (first error: {e})"))
                .unwrap_or_default()
        );
    }
    let vtgate = report.vtgate.as_ref().map(|g| {
        json!({
            "writes_acknowledged": g.writes_ok,
            "writes_failed": g.writes_failed,
            "longest_blocked_ms": ms(g.longest_blocked),
            "lost_writes": g.lost_writes.len(),
        })
    });
    support::write_json(
        &json_path,
        &json!({
            "vtgate": vtgate,
            "benchmark": "heal",
            "samples_per_variant": samples,
            "tablet_downtime_ms": ms(downtime),
            "lock_ttl_ms": ms(lock_ttl),
            "resync_period_s": 300,
            "results": results,
            "probe_writes_accepted": report.writes_ok,
            "probe_writes_failed": report.writes_failed,
            "lost_writes": report.lost_writes.len(),
        }),
    )?;
    let violations: usize = all.iter().map(|s| s.violations).sum();
    anyhow::ensure!(violations == 0, "{violations} I1 violations");
    anyhow::ensure!(
        report.lost_writes.is_empty(),
        "lost writes: {:?}",
        report.lost_writes
    );
    if let Some(g) = &report.vtgate {
        anyhow::ensure!(
            g.lost_writes.is_empty(),
            "writes acknowledged by vtgate lost: {:?}",
            g.lost_writes
        );
    }
    Ok(())
}
