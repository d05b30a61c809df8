//! OpenTelemetry trace export (`[telemetry]`): herald's `tracing` spans, sampled, batched
//! and sent to the operator's collector over OTLP/HTTP (protobuf).
//!
//! Nothing here runs without `[telemetry]`: no layer, no exporter, no thread. With it, the
//! export can never slow a delivery or the API down: a finished span is handed to a
//! bounded queue ([`QUEUE`] spans; over it the span is dropped, counted and the first
//! drop logged at warn) and the SDK's batch processor exports from its own thread, its
//! requests running on the server's runtime with a timeout. A failing collector is
//! logged once at warn (and once at info when it answers again), never per batch.
//! Shutdown flushes what is queued within [`FLUSH`].
//!
//! Every string in an exported span (names, attributes, events, status) passes through
//! the configuration's redactor first. The collector is the operator's own endpoint, so
//! the outbound guard of `[outbound]` (which is about destinations) does not apply to it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use herald_connectors::redact::Redactor;
use opentelemetry::trace::{Status, TracerProvider as _};
use opentelemetry::{Array, Context, KeyValue, StringValue, Value};
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider, Span, SpanData,
    SpanExporter, SpanProcessor,
};
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::filter_fn;

use crate::config::TelemetryConfig;
use crate::logging::TracesLayer;

/// The most finished spans waiting for export; more are dropped.
pub const QUEUE: usize = 4096;
/// The longest one export request may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest shutdown waits for the last spans to be exported.
pub const FLUSH: Duration = Duration::from_secs(5);
/// The largest collector answer read (an OTLP answer is a few bytes).
const MAX_ANSWER: usize = 64 * 1024;

/// The running exporter: shut it down to flush.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
    counters: Arc<Counters>,
    traces_url: String,
}

/// What happened to spans on their way out.
#[derive(Debug, Default)]
struct Counters {
    /// Spans handed to the batch processor and not yet exported (or lost).
    queued: AtomicUsize,
    /// Spans dropped because the queue was full.
    dropped: AtomicU64,
    /// Spans in batches the collector did not take.
    failed: AtomicU64,
    /// Whether the last export failed (so a failure is logged once per outage).
    failing: AtomicBool,
    /// Why the last request did not reach the collector (the exporter's own error only
    /// says "network error").
    transport_error: std::sync::Mutex<Option<String>>,
}

/// Builds the exporter for `config` (spans go from the batch thread over `runtime`) and
/// the `tracing` layer that feeds it, for [`crate::logging::init`].
///
/// # Errors
/// When the HTTP client or the exporter cannot be built.
pub fn start(
    config: &TelemetryConfig,
    node_id: &str,
    redactor: Redactor,
    runtime: tokio::runtime::Handle,
) -> anyhow::Result<(Telemetry, TracesLayer)> {
    let client = reqwest::Client::builder()
        .timeout(EXPORT_TIMEOUT)
        .connect_timeout(EXPORT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .context("cannot build the HTTP client for trace export")?;
    let headers: HashMap<String, String> = config.headers.iter().cloned().collect();
    let counters = Arc::new(Counters::default());
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(Collector { client, runtime, counters: Arc::clone(&counters) })
        .with_endpoint(config.traces_url.clone())
        .with_protocol(Protocol::HttpBinary)
        .with_timeout(EXPORT_TIMEOUT)
        .with_headers(headers)
        .build()
        .map_err(|error| anyhow::anyhow!("cannot build the trace exporter: {error}"))?;
    let exporter = Scrubbing { inner: exporter, redactor, counters: Arc::clone(&counters) };
    // The processor's own queue is larger than ours, so it never drops silently: `Bounded`
    // counts every span that is not yet exported and refuses over QUEUE.
    let batch = BatchConfigBuilder::default().with_max_queue_size(QUEUE + 1024).build();
    let processor = Bounded {
        inner: BatchSpanProcessor::builder(exporter).with_batch_config(batch).build(),
        counters: Arc::clone(&counters),
    };
    let sampler = if config.sample_ratio >= 1.0 {
        Sampler::ParentBased(Box::new(Sampler::AlwaysOn))
    } else {
        Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sample_ratio)))
    };
    let resource = Resource::builder()
        .with_service_name(config.service_name.clone())
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("service.instance.id", node_id.to_owned()),
        ])
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(sampler)
        .with_resource(resource)
        .build();
    let layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("herald"))
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_filter(filter_fn(|meta| exported(meta.target(), meta.is_span(), *meta.level())));
    let telemetry = Telemetry { provider, counters, traces_url: config.traces_url.clone() };
    Ok((telemetry, Box::new(layer)))
}

/// What becomes part of a trace: herald's own spans (info and above) and the warnings
/// and errors logged inside them (as span events). Dependencies' spans stay out.
fn exported(target: &str, is_span: bool, level: tracing::Level) -> bool {
    target.starts_with("herald")
        && if is_span { level <= tracing::Level::INFO } else { level <= tracing::Level::WARN }
}

impl Telemetry {
    /// Where spans are sent.
    pub fn traces_url(&self) -> &str {
        &self.traces_url
    }

    /// Exports what is queued (within [`FLUSH`]) and stops the exporter; logs how many
    /// spans were lost, if any.
    pub async fn shutdown(self) {
        let provider = self.provider;
        // The SDK waits on a channel: off the runtime's workers, while the export it
        // waits for runs on them.
        let flush = tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(FLUSH));
        match tokio::time::timeout(FLUSH + Duration::from_secs(1), flush).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => {
                tracing::warn!(%error, "Could not export the last spans before stopping.");
            }
            Ok(Err(_)) | Err(_) => {
                tracing::warn!("Could not export the last spans before stopping (timed out).");
            }
        }
        let dropped = self.counters.dropped.load(Ordering::Relaxed);
        let failed = self.counters.failed.load(Ordering::Relaxed);
        if dropped > 0 || failed > 0 {
            tracing::warn!(
                dropped,
                failed,
                "Spans lost during this run: `dropped` found the export queue full, `failed` \
                 were in batches the collector did not take."
            );
        }
    }
}

/// The batch processor behind a bound on spans not yet exported.
#[derive(Debug)]
struct Bounded {
    inner: BatchSpanProcessor,
    counters: Arc<Counters>,
}

impl SpanProcessor for Bounded {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.counters.queued.fetch_add(1, Ordering::AcqRel) >= QUEUE {
            self.counters.queued.fetch_sub(1, Ordering::AcqRel);
            if self.counters.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!(
                    queue = QUEUE,
                    "The trace export queue is full (the collector is slow or unreachable); \
                     spans are dropped until it drains. Deliveries are not affected. Logged \
                     once; the count is logged at shutdown."
                );
            }
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The OTLP exporter behind the redactor, counting and logging failures.
#[derive(Debug)]
struct Scrubbing<E> {
    inner: E,
    redactor: Redactor,
    counters: Arc<Counters>,
}

impl<E: SpanExporter> SpanExporter for Scrubbing<E> {
    async fn export(&self, mut batch: Vec<SpanData>) -> OTelSdkResult {
        let count = batch.len();
        if !self.redactor.is_empty() {
            for span in &mut batch {
                scrub(span, &self.redactor);
            }
        }
        let result = self.inner.export(batch).await;
        self.counters.queued.fetch_sub(count, Ordering::AcqRel);
        match &result {
            Ok(()) => {
                if self.counters.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("The trace collector takes spans again.");
                }
            }
            Err(error) => {
                self.counters.failed.fetch_add(count as u64, Ordering::Relaxed);
                if !self.counters.failing.swap(true, Ordering::Relaxed) {
                    let cause = self
                        .counters
                        .transport_error
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .take()
                        .unwrap_or_default();
                    tracing::warn!(
                        %error,
                        %cause,
                        "Cannot export traces to the collector ([telemetry] otlp_endpoint); \
                         their spans are lost until it answers. Deliveries are not affected. \
                         Logged once per outage."
                    );
                }
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// `span` without any configured secret in its name, attributes, events or status.
fn scrub(span: &mut SpanData, redactor: &Redactor) {
    if let Some(clean) = redacted(&span.name, redactor) {
        span.name = clean.into();
    }
    scrub_attributes(&mut span.attributes, redactor);
    for event in &mut span.events.events {
        if let Some(clean) = redacted(&event.name, redactor) {
            event.name = clean.into();
        }
        scrub_attributes(&mut event.attributes, redactor);
    }
    if let Status::Error { description } = &span.status
        && let Some(clean) = redacted(description, redactor)
    {
        span.status = Status::error(clean);
    }
}

fn scrub_attributes(attributes: &mut [KeyValue], redactor: &Redactor) {
    for attribute in attributes {
        match &mut attribute.value {
            Value::String(text) => {
                if let Some(clean) = redacted(text.as_str(), redactor) {
                    *text = StringValue::from(clean);
                }
            }
            Value::Array(Array::String(texts)) => {
                for text in texts {
                    if let Some(clean) = redacted(text.as_str(), redactor) {
                        *text = StringValue::from(clean);
                    }
                }
            }
            _ => {}
        }
    }
}

/// `text` redacted, or `None` when it holds no secret.
fn redacted(text: &str, redactor: &Redactor) -> Option<String> {
    match redactor.redact(text) {
        std::borrow::Cow::Borrowed(_) => None,
        std::borrow::Cow::Owned(clean) => Some(clean),
    }
}

/// The exporter's HTTP client: reqwest (rustls) on the server's runtime. The SDK's batch
/// thread drives exports with a plain executor, so each request is spawned onto the
/// runtime that has the reactor, and awaited from there.
#[derive(Debug)]
struct Collector {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
    counters: Arc<Counters>,
}

#[async_trait::async_trait]
impl HttpClient for Collector {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let client = self.client.clone();
        let answer = self.runtime.spawn(async move {
            let mut response = client.execute(request).await?;
            let status = response.status();
            let headers = std::mem::take(response.headers_mut());
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await? {
                if body.len() + chunk.len() > MAX_ANSWER {
                    return Err::<_, HttpError>(Box::new(
                        opentelemetry_http::ResponseBodyTooLarge::new(),
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok((status, headers, body))
        });
        let answered = answer.await?;
        let (status, headers, body) = answered.inspect_err(|error| {
            let mut text = error.to_string();
            let mut source = error.source();
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            let mut slot = self
                .counters
                .transport_error
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *slot = Some(text);
        })?;
        let mut response = http::Response::new(Bytes::from(body));
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        Ok(response)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_heralds_spans_and_its_warnings_are_exported() {
        use tracing::Level;
        assert!(exported("herald_engine::attempt", true, Level::INFO));
        assert!(!exported("herald_engine::attempt", true, Level::DEBUG));
        assert!(exported("herald_api::routes", false, Level::WARN));
        assert!(!exported("herald_api::routes", false, Level::INFO));
        assert!(!exported("tower_http::trace", true, Level::INFO));
        assert!(!exported("sqlx::query", false, Level::ERROR));
    }

    /// A finished span with a secret planted in each of its strings.
    fn span() -> SpanData {
        SpanData {
            span_context: opentelemetry::trace::SpanContext::empty_context(),
            parent_span_id: opentelemetry::trace::SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: opentelemetry::trace::SpanKind::Internal,
            name: "GET /planted-secret-value".into(),
            start_time: std::time::SystemTime::UNIX_EPOCH,
            end_time: std::time::SystemTime::UNIX_EPOCH,
            attributes: vec![
                KeyValue::new("error", "rejected planted-secret-value"),
                KeyValue::new("herald.attempt", 2),
                KeyValue::new(
                    "list",
                    Value::Array(Array::String(vec!["a planted-secret-value".into(), "b".into()])),
                ),
            ],
            dropped_attributes_count: 0,
            events: opentelemetry_sdk::trace::SpanEvents::default(),
            links: opentelemetry_sdk::trace::SpanLinks::default(),
            status: Status::error("failed with planted-secret-value"),
            instrumentation_scope: opentelemetry::InstrumentationScope::builder("t").build(),
        }
    }

    #[test]
    fn secrets_leave_every_string_of_a_span() {
        let redactor = Redactor::new(["planted-secret-value"]);
        let mut span = span();
        span.events.events.push(opentelemetry::trace::Event::new(
            "planted-secret-value in a log line",
            std::time::SystemTime::UNIX_EPOCH,
            vec![KeyValue::new("message", "x planted-secret-value")],
            0,
        ));
        scrub(&mut span, &redactor);
        let text = format!("{span:?}");
        assert!(!text.contains("planted-secret-value"), "{text}");
        assert_eq!(span.name, "GET /[redacted]");
        assert_eq!(span.attributes[0].value.as_str(), "rejected [redacted]");
        assert_eq!(span.attributes[1].value, Value::I64(2));
        assert_eq!(span.events.events[0].name, "[redacted] in a log line");
        assert_eq!(span.status, Status::error("failed with [redacted]"));
    }

    /// Waits for `release` on every export, like a collector that does not answer.
    #[derive(Debug)]
    struct Stalled(std::sync::Mutex<std::sync::mpsc::Receiver<()>>);

    impl SpanExporter for Stalled {
        async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
            let _ = self.0.lock().unwrap().recv();
            Ok(())
        }
    }

    #[test]
    fn at_most_queue_spans_wait_for_export_and_the_rest_are_dropped_and_counted() {
        let counters = Arc::new(Counters::default());
        let (release, stalled) = std::sync::mpsc::channel();
        let exporter = Scrubbing {
            inner: Stalled(std::sync::Mutex::new(stalled)),
            redactor: Redactor::default(),
            counters: Arc::clone(&counters),
        };
        let batch = BatchConfigBuilder::default().with_max_queue_size(QUEUE + 1024).build();
        let processor = Bounded {
            inner: BatchSpanProcessor::builder(exporter).with_batch_config(batch).build(),
            counters: Arc::clone(&counters),
        };
        // The first batch's export hangs, so nothing leaves the queue: whatever the
        // batch thread does meanwhile, exactly QUEUE spans are taken.
        for _ in 0..QUEUE + 10 {
            processor.on_end(span());
        }
        assert_eq!(counters.dropped.load(Ordering::Relaxed), 10);
        assert_eq!(counters.queued.load(Ordering::Relaxed), QUEUE);
        // The collector answers again: the queue drains, and shutdown exports the rest.
        drop(release);
        processor.shutdown_with_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(counters.queued.load(Ordering::Relaxed), 0);
        assert_eq!(counters.failed.load(Ordering::Relaxed), 0);
    }
}
