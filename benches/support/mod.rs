//! What vtmove's benchmark harnesses share: the smoke switch, flag parsing, percentiles and the
//! JSON report. Each harness includes it with `mod support;`.

#![allow(dead_code)] // Each harness uses its own subset.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The command-line flags of a harness run.
pub struct Args {
    /// `cargo test --bench X` runs the harness without `--bench`: a small smoke version then,
    /// so the harness cannot rot; `cargo bench` passes `--bench` and gets the full run.
    pub smoke: bool,
    flags: Vec<String>,
}

impl Args {
    /// This process's arguments.
    pub fn from_env() -> Args {
        let flags: Vec<String> = std::env::args().skip(1).collect();
        Args {
            smoke: !flags.iter().any(|a| a == "--bench"),
            flags,
        }
    }

    /// The value after `--name`, parsed; `default` when absent.
    pub fn value<T>(&self, name: &str, default: T) -> anyhow::Result<T>
    where
        T: std::str::FromStr,
        T::Err: std::fmt::Display,
    {
        let mut it = self.flags.iter();
        while let Some(flag) = it.next() {
            if flag == name {
                let value = it
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("{name} needs a value"))?;
                return value
                    .parse()
                    .map_err(|e| anyhow::anyhow!("{name} {value}: {e}"));
            }
        }
        Ok(default)
    }

    /// `--json PATH`, or `target/bench/<name>.json` (`<name>-smoke.json` for a smoke run) in the
    /// workspace.
    pub fn json_path(&self, name: &str) -> anyhow::Result<PathBuf> {
        let file = if self.smoke {
            format!("{name}-smoke.json")
        } else {
            format!("{name}.json")
        };
        let default = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/bench")
            .join(file);
        self.value("--json", default.display().to_string())
            .map(PathBuf::from)
    }
}

/// The `p`-th percentile (nearest rank) of `sorted`; zero when empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Milliseconds, for tables and JSON.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// p50, p99 and max of `samples` in milliseconds, as JSON.
pub fn summary_json(samples: &[Duration]) -> serde_json::Value {
    let mut sorted = samples.to_vec();
    sorted.sort();
    serde_json::json!({
        "samples": sorted.len(),
        "p50_ms": ms(percentile(&sorted, 50.0)),
        "p99_ms": ms(percentile(&sorted, 99.0)),
        "max_ms": ms(sorted.last().copied().unwrap_or_default()),
    })
}

/// Writes `doc` as pretty JSON to `path`, creating its directory.
pub fn write_json(path: &Path, doc: &serde_json::Value) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(doc)?)?;
    println!("\nwrote {}", path.display());
    Ok(())
}

/// Runs engine passes over `desired` until one plans nothing (converged) without error, at most
/// two minutes; returns the steps executed on the way.
pub async fn converge(
    engine: &vtmove::engine::Engine,
    desired: &vtmove::engine::Desired,
    memory: &mut vtmove::engine::EngineMemory,
) -> anyhow::Result<Vec<vtmove::engine::StepRecord>> {
    converge_within(engine, desired, memory, Duration::from_secs(120)).await
}

/// [`converge`] with a time limit of `limit`.
pub async fn converge_within(
    engine: &vtmove::engine::Engine,
    desired: &vtmove::engine::Desired,
    memory: &mut vtmove::engine::EngineMemory,
    limit: Duration,
) -> anyhow::Result<Vec<vtmove::engine::StepRecord>> {
    let deadline = std::time::Instant::now() + limit;
    let mut executed = Vec::new();
    loop {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "workflow {} did not converge within {limit:?}",
            desired.workflow
        );
        let report = engine.pass(desired, memory).await;
        if let Some(e) = &report.error {
            eprintln!("pass error: {e}");
        }
        let done = report.error.is_none()
            && report.executed.is_none()
            && report.plan.as_ref().is_some_and(|p| p.converged());
        let idle = report.executed.is_none();
        executed.extend(report.executed);
        if done {
            return Ok(executed);
        }
        if idle {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
