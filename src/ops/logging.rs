//! Process-wide logging: JSON lines for clusters, text for people (`docs/design/overview.md`, "Running it").
//!
//! The JSON format puts the fields of every enclosing span at the top level of each line, next
//! to the event's own fields. The controllers open one span per reconcile with `workflow`,
//! `keyspace` and `namespace`; with the fields flattened, every line logged inside it (however
//! deeply nested in step or RPC spans) can be filtered on `workflow` by a log pipeline without
//! knowing the span structure. When two spans set the same field, the innermost wins, and the
//! event's own fields win over all spans.
//!
//! `RUST_LOG`, when set, overrides the filter given on the command line, so an operator can turn
//! up one module without changing the Deployment's arguments.

use std::fmt;
use std::io;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line, span fields flattened in: what log pipelines ingest.
    #[default]
    Json,
    /// Human-readable text with span context, for a terminal.
    Text,
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// The filter (the flag, or `RUST_LOG` when set) does not parse.
    #[error("invalid log filter {filter:?}: {message}")]
    InvalidFilter {
        /// The filter text.
        filter: String,
        /// What is wrong with it.
        message: String,
    },
    /// A global subscriber is already installed (for example `init` was called twice).
    #[error("logging is already initialised: {0}")]
    AlreadyInitialised(String),
}

/// The filter in effect: `RUST_LOG` when it is set and not empty, else `flag`.
fn env_filter(flag: &str) -> Result<EnvFilter, LoggingError> {
    let env = std::env::var(EnvFilter::DEFAULT_ENV).ok();
    parse_filter(filter_text(flag, env.as_deref()))
}

/// Which filter text wins: a non-blank `RUST_LOG` over the flag.
fn filter_text<'a>(flag: &'a str, rust_log: Option<&'a str>) -> &'a str {
    match rust_log {
        Some(env) if !env.trim().is_empty() => env,
        _ => flag,
    }
}

fn parse_filter(text: &str) -> Result<EnvFilter, LoggingError> {
    EnvFilter::try_new(text).map_err(|e| LoggingError::InvalidFilter {
        filter: text.to_string(),
        message: e.to_string(),
    })
}

/// A subscriber writing `format` lines to `writer`, filtered by `filter`. Split from [`init`] so
/// tests can capture the output without installing anything globally.
fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Json => Box::new(
            builder
                .fmt_fields(JsonFields::new())
                .event_format(FlatJson)
                .finish(),
        ),
        LogFormat::Text => Box::new(builder.with_ansi(false).finish()),
    }
}

/// Installs the process-wide subscriber writing to standard output. The second call returns
/// [`LoggingError::AlreadyInitialised`] rather than panicking, so tests and embedders that set
/// up their own logging can call it unconditionally.
pub fn init(format: LogFormat, filter: &str) -> Result<(), LoggingError> {
    let subscriber = subscriber(format, env_filter(filter)?, io::stdout);
    tracing::subscriber::set_global_default(subscriber)
        .map_err(|e| LoggingError::AlreadyInitialised(e.to_string()))
}

/// The JSON line format: `timestamp`, `level`, `target`, `span` (the innermost span's name), the
/// fields of every enclosing span from the outermost in, then the event's fields (`message`
/// among them).
struct FlatJson;

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            Value::String(k8s_openapi::jiff::Timestamp::now().to_string()),
        );
        line.insert("level".into(), Value::String(meta.level().to_string()));
        line.insert("target".into(), Value::String(meta.target().to_string()));
        if let Some(scope) = ctx.event_scope() {
            let mut innermost = None;
            for span in scope.from_root() {
                innermost = Some(span.name());
                let extensions = span.extensions();
                // The span's fields, formatted as a JSON object by `JsonFields` when it was
                // created (and when fields were recorded later).
                let Some(fields) = extensions.get::<FormattedFields<N>>() else {
                    continue;
                };
                if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(&fields.fields) {
                    line.extend(map);
                }
            }
            if let Some(name) = innermost {
                line.insert("span".into(), Value::String(name.to_string()));
            }
        }
        let mut visitor = JsonVisitor(&mut line);
        event.record(&mut visitor);
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// Collects an event's fields into a JSON map, keeping numbers and booleans typed.
struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        let v = serde_json::Number::from_f64(value)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(value.to_string()));
        self.0.insert(field.name().into(), v);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Value::Bool(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().into(), Value::String(value.to_string()));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().into(), Value::String(value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::String(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A writer collecting everything into one buffer.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Capture {
        type Writer = Capture;
        fn make_writer(&'w self) -> Self::Writer {
            self.clone()
        }
    }

    impl Capture {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap_or_else(|e| e.into_inner()).clone())
                .expect("utf-8 logs")
        }
    }

    fn filter(text: &str) -> EnvFilter {
        EnvFilter::try_new(text).expect("filter")
    }

    #[test]
    fn json_lines_carry_the_fields_of_every_enclosing_span() {
        let out = Capture::default();
        let sub = subscriber(LogFormat::Json, filter("info"), out.clone());
        tracing::subscriber::with_default(sub, || {
            let reconcile = tracing::info_span!(
                "reconcile",
                workflow = "commerce2customer",
                namespace = "prod",
                keyspace = tracing::field::Empty
            );
            let _r = reconcile.enter();
            reconcile.record("keyspace", "customer");
            tracing::info!(step = "SwitchReads", "Executed step");
            let step = tracing::info_span!("step", step = "SwitchWrites", shard = "-80");
            let _s = step.enter();
            tracing::warn!(elapsed_ms = 12u64, "Denied writes");
            tracing::debug!("filtered out");
        });
        let text = out.text();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(lines.len(), 2, "{text}");

        let first = &lines[0];
        assert_eq!(first["message"], "Executed step");
        assert_eq!(first["level"], "INFO");
        assert_eq!(first["workflow"], "commerce2customer");
        assert_eq!(first["namespace"], "prod");
        assert_eq!(first["keyspace"], "customer", "a field recorded later");
        assert_eq!(first["step"], "SwitchReads", "the event's field wins");
        assert_eq!(first["span"], "reconcile");

        let second = &lines[1];
        assert_eq!(second["message"], "Denied writes");
        assert_eq!(second["level"], "WARN");
        assert_eq!(second["workflow"], "commerce2customer", "outer span field");
        assert_eq!(second["step"], "SwitchWrites", "inner span field");
        assert_eq!(second["shard"], "-80");
        assert_eq!(second["elapsed_ms"], 12);
        assert_eq!(second["span"], "step");
        assert!(
            second["timestamp"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z'))
        );
    }

    #[test]
    fn text_lines_show_span_context() {
        let out = Capture::default();
        let sub = subscriber(LogFormat::Text, filter("info"), out.clone());
        tracing::subscriber::with_default(sub, || {
            let span = tracing::info_span!("reconcile", workflow = "w1");
            let _e = span.enter();
            tracing::info!("Observed workflow");
        });
        let text = out.text();
        assert!(text.contains("Observed workflow"), "{text}");
        assert!(
            text.contains("workflow=\"w1\"") || text.contains("workflow=w1"),
            "{text}"
        );
        assert!(!text.trim_start().starts_with('{'), "{text}");
    }

    #[test]
    fn rust_log_overrides_the_flag_and_bad_filters_are_errors() {
        assert_eq!(filter_text("info", None), "info");
        assert_eq!(filter_text("info", Some("  ")), "info");
        assert_eq!(filter_text("info", Some("vtmove=debug")), "vtmove=debug");
        assert!(parse_filter("info,vtmove::engine=trace").is_ok());
        let err = parse_filter("vtmove=notalevel").expect_err("invalid");
        assert!(matches!(err, LoggingError::InvalidFilter { .. }), "{err}");
        assert!(err.to_string().contains("vtmove=notalevel"), "{err}");
    }

    #[test]
    fn init_twice_is_an_error_not_a_panic() {
        // The first call may find a subscriber another test binary component installed; either
        // way the second one must fail cleanly. "off" keeps the test output clean.
        let _ = init(LogFormat::Json, "off");
        let err = init(LogFormat::Text, "off").expect_err("second init");
        assert!(matches!(err, LoggingError::AlreadyInitialised(_)), "{err}");
    }
}
