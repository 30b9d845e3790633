//! Logs and traces.
//!
//! Logs: structured, filtered by RUST_LOG (default info), JSON with GRANTLINE_LOG=json.
//!
//! Traces: exported over OTLP/HTTP (protobuf) when `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, and not at all otherwise. The exporter reads the
//! standard variables itself (endpoints, `OTEL_EXPORTER_OTLP_HEADERS`, `..._TIMEOUT`,
//! `..._COMPRESSION`), the SDK reads `OTEL_TRACES_SAMPLER`/`OTEL_TRACES_SAMPLER_ARG`,
//! `OTEL_BSP_*` and `OTEL_RESOURCE_ATTRIBUTES`; `service.name` is `OTEL_SERVICE_NAME`, else
//! `grantline`. Spans at INFO and above are exported whatever RUST_LOG says (it filters the
//! logs only): the job spans of the workers and the connector spans inside them.
//!
//! Spans are batched on the SDK's own thread; [`shutdown`] flushes them and must run before
//! the process exits (`main` calls it).

use std::sync::Mutex;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// The service name when neither `OTEL_SERVICE_NAME` nor `OTEL_RESOURCE_ATTRIBUTES` names one.
pub const DEFAULT_SERVICE_NAME: &str = "grantline";

/// The instrumentation scope of grantline's spans.
const SCOPE: &str = "grantline";

/// The provider [`init`] installed, kept for [`shutdown`].
static PROVIDER: Mutex<Option<SdkTracerProvider>> = Mutex::new(None);

/// Whether the environment asks for trace export.
pub fn export_configured() -> bool {
    ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|s| !s.trim().is_empty()))
}

/// The resource spans are exported with: the SDK's detectors (`OTEL_SERVICE_NAME`,
/// `OTEL_RESOURCE_ATTRIBUTES`, the SDK's own attributes), with grantline's default name.
pub fn resource() -> Resource {
    let detected = Resource::builder().build();
    let named = detected
        .get(&opentelemetry::Key::new("service.name"))
        .is_some_and(|v| !v.as_str().starts_with("unknown_service"));
    if named { detected } else { Resource::builder().with_service_name(DEFAULT_SERVICE_NAME).build() }
}

/// A tracer provider exporting over OTLP/HTTP protobuf with a batch span processor.
pub fn otlp_provider() -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .build()?;
    Ok(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource()).build())
}

/// The tracing layer that turns spans into OpenTelemetry spans of `provider`, INFO and up.
pub fn otel_layer<S>(provider: &SdkTracerProvider) -> impl Layer<S> + Send + Sync + 'static
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span> + Send + Sync,
{
    let tracer = provider.tracer_with_scope(
        opentelemetry::InstrumentationScope::builder(SCOPE).with_version(env!("CARGO_PKG_VERSION")).build(),
    );
    tracing_opentelemetry::layer().with_tracer(tracer).with_filter(LevelFilter::INFO)
}

fn fmt_layer(default_level: &str, file: Option<std::fs::File>) -> Box<dyn Layer<Registry> + Send + Sync> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let json = std::env::var("GRANTLINE_LOG").is_ok_and(|v| v == "json");
    match file {
        Some(f) => {
            let fmt = tracing_subscriber::fmt::layer().with_ansi(false).with_writer(std::sync::Mutex::new(f));
            if json { fmt.json().with_filter(filter).boxed() } else { fmt.compact().with_filter(filter).boxed() }
        }
        None => {
            let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
            if json { fmt.json().with_filter(filter).boxed() } else { fmt.compact().with_filter(filter).boxed() }
        }
    }
}

/// Installs the global subscriber: logs always, trace export when configured (see the
/// module docs). The W3C trace-context propagator is installed either way. Call once, early;
/// a second call changes nothing.
pub fn init() {
    init_with_default("info");
}

/// As [`init`], logging at `default_level` unless `RUST_LOG` says otherwise.
pub fn init_with_default(default_level: &str) {
    install(default_level, None);
}

/// As [`init_with_default`], the log lines going to `file` instead of standard error (the
/// demo keeps its terminal for the timeline).
pub fn init_to_file(default_level: &str, file: std::fs::File) {
    install(default_level, Some(file));
}

fn install(default_level: &str, file: Option<std::fs::File>) {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let provider = if export_configured() {
        match otlp_provider() {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("warning: trace export is configured but its exporter could not be built: {e}");
                None
            }
        }
    } else {
        None
    };
    let otel = provider.as_ref().map(otel_layer);
    if tracing_subscriber::registry().with(fmt_layer(default_level, file)).with(otel).try_init().is_err() {
        // a subscriber was already installed: this provider would never see a span
        if let Some(p) = provider {
            let _ = p.shutdown();
        }
        return;
    }
    if let Some(p) = provider {
        opentelemetry::global::set_tracer_provider(p.clone());
        if let Ok(mut slot) = PROVIDER.lock() {
            *slot = Some(p);
        }
    }
}

/// Flushes the spans not yet exported and stops the exporter. Safe to call when nothing was
/// installed, and more than once.
pub fn shutdown() {
    let provider = match PROVIDER.lock() {
        Ok(mut slot) => slot.take(),
        Err(poisoned) => poisoned.into_inner().take(),
    };
    if let Some(Err(e)) = provider.map(|p| p.shutdown()) {
        eprintln!("warning: flushing traces at exit failed: {e}");
    }
}

/// Calls [`shutdown`] when dropped: hold one for as long as spans may be produced.
#[derive(Debug)]
#[must_use = "spans are flushed when the guard is dropped"]
pub struct FlushGuard(());

impl Drop for FlushGuard {
    fn drop(&mut self) {
        shutdown();
    }
}

/// A guard that flushes and stops trace export when dropped (see [`shutdown`]).
pub fn flush_on_drop() -> FlushGuard {
    FlushGuard(())
}
