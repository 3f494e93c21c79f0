//! Metrics in Prometheus text format (`GET /metrics`), through the
//! `prometheus-client` crate: counters and histograms recorded where things
//! happen, gauges read from their owners when scraped.
//!
//! Label values come from closed sets (sources, known event types, outcomes),
//! never from what a request carried, so a hostile sender cannot grow the
//! series without bound.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// A delivery's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    pub source: &'static str,
    /// A known event type, or `other`, or `unknown` when it was not read.
    pub event_type: &'static str,
    /// accepted, duplicate, ping, rejected_400, rejected_401, conflict,
    /// too_large, unavailable.
    pub outcome: &'static str,
}

/// A source's label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: &'static str,
}

/// Every metric the server keeps.
pub struct Metrics {
    registry: Registry,
    pub deliveries: Family<DeliveryLabels, Counter>,
    pub ingest_latency: Family<SourceLabels, Histogram>,
    pub batch_size: Histogram,
    pub writer_queue_depth: Gauge,
    pub log_head: Gauge,
    pub projection_position: Gauge,
    pub projection_lag_events: Gauge,
    pub projection_lag_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub projector_running: Gauge,
    pub rebuilds: Counter,
    pub rebuild_running: Gauge,
    pub quarantine_pending: Gauge,
    pub quarantine_evictions: Gauge,
    pub unauthenticated_shed: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("registrar");
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "deliveries",
            "Webhook deliveries answered, by source, event type and outcome",
            deliveries.clone(),
        );
        // 0.25 ms .. ~2 s: an fsync'd group commit sits in the low milliseconds.
        let ingest_latency = Family::<SourceLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_25, 2.0, 14))
        });
        registry.register(
            "ingest_latency_seconds",
            "Time from a delivery's arrival to its answer",
            ingest_latency.clone(),
        );
        let batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 11));
        registry.register(
            "writer_batch_size",
            "Deliveries committed per log transaction (group commit)",
            batch_size.clone(),
        );
        let writer_queue_depth = Gauge::default();
        registry.register(
            "writer_queue_depth",
            "Deliveries waiting for the log writer",
            writer_queue_depth.clone(),
        );
        let log_head = Gauge::default();
        registry.register("log_head_seq", "The log's newest seq", log_head.clone());
        let projection_position = Gauge::default();
        registry.register(
            "projection_position_seq",
            "The log seq the projections have reached",
            projection_position.clone(),
        );
        let projection_lag_events = Gauge::default();
        registry.register(
            "projection_lag_events",
            "Events in the log not yet in the projections",
            projection_lag_events.clone(),
        );
        let projection_lag_seconds = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "projection_lag_seconds",
            "How long the projections have been behind the log",
            projection_lag_seconds.clone(),
        );
        let projector_running = Gauge::default();
        registry.register(
            "projector_running",
            "1 while the projector follows the log, 0 once it stopped",
            projector_running.clone(),
        );
        let rebuilds = Counter::default();
        registry.register("rebuilds", "Projection rebuilds started", rebuilds.clone());
        let rebuild_running = Gauge::default();
        registry.register(
            "rebuild_running",
            "1 while a rebuild is under way",
            rebuild_running.clone(),
        );
        let quarantine_pending = Gauge::default();
        registry.register(
            "quarantine_pending",
            "Rejected deliveries kept and not readmitted",
            quarantine_pending.clone(),
        );
        let quarantine_evictions = Gauge::default();
        registry.register(
            "quarantine_evictions",
            "Rejected deliveries evicted because the quarantine was full (ever)",
            quarantine_evictions.clone(),
        );
        let unauthenticated_shed = Counter::default();
        registry.register(
            "unauthenticated_shed",
            "Unauthenticated rejects answered but not kept (over the rate, or the quarantine full of authenticated ones)",
            unauthenticated_shed.clone(),
        );
        Metrics {
            unauthenticated_shed,
            registry,
            deliveries,
            ingest_latency,
            batch_size,
            writer_queue_depth,
            log_head,
            projection_position,
            projection_lag_events,
            projection_lag_seconds,
            projector_running,
            rebuilds,
            rebuild_running,
            quarantine_pending,
            quarantine_evictions,
        }
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
