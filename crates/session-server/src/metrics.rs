//! Prometheus metrics of the admin port: sessions held, lifecycle events, and every RPC by
//! method and status code with a latency histogram.

use crate::{
    events::{EventKind, EventLog},
    store::Usage,
};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::{ConstGauge, Gauge},
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};
use std::{sync::Arc, time::Duration};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    code: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppLabels {
    app: String,
}

#[derive(Debug)]
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    latency: Family<MethodLabels, Histogram, fn() -> Histogram>,
    /// Each session method's `ok` counter and latency histogram, looked up once: a family's
    /// lookup (a lock and a hash of the labels) cost more than the rest of the counting.
    answered: Vec<(&'static str, Counter, Histogram)>,
    /// Framed pipeline connections open now.
    framed_connections: Gauge,
    /// Connections to the session port open now, either protocol: what `--max-connections`
    /// bounds.
    connections: Gauge,
    /// Connections turned away at the limit.
    connections_refused: Counter,
}

/// Counts one connection as open for as long as it lives.
#[derive(Debug)]
pub struct Open(Gauge);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        fn histogram() -> Histogram {
            // 20 us to about 0.65 s: loopback calls land in the first few buckets.
            Histogram::new(exponential_buckets(0.000_02, 2.0, 16))
        }
        let requests = Family::<RequestLabels, Counter>::default();
        let latency =
            Family::<MethodLabels, Histogram, fn() -> Histogram>::new_with_constructor(histogram);
        let answered = ["create", "get", "apply", "invalidate", "rotate_id"]
            .into_iter()
            .map(|method| {
                let count = requests
                    .get_or_create(&RequestLabels { method, code: "ok" })
                    .clone();
                let duration = latency.get_or_create(&MethodLabels { method }).clone();
                (method, count, duration)
            })
            .collect();
        Self {
            requests,
            latency,
            answered,
            framed_connections: Gauge::default(),
            connections: Gauge::default(),
            connections_refused: Counter::default(),
        }
    }

    /// Counts one RPC and its latency.
    pub fn observe(&self, method: &'static str, code: tonic::Code, elapsed: Duration) {
        if code == tonic::Code::Ok
            && let Some((_, count, duration)) = self.answered.iter().find(|(m, ..)| *m == method)
        {
            count.inc();
            duration.observe(elapsed.as_secs_f64());
            return;
        }
        self.requests
            .get_or_create(&RequestLabels {
                method,
                code: code_label(code),
            })
            .inc();
        self.latency
            .get_or_create(&MethodLabels { method })
            .observe(elapsed.as_secs_f64());
    }

    /// A framed connection opened: counted until the returned guard drops.
    pub fn framed_connection(&self) -> Open {
        self.framed_connections.inc();
        Open(self.framed_connections.clone())
    }

    /// A connection to the session port opened: counted until the returned guard drops.
    pub fn connection(&self) -> Open {
        self.connections.inc();
        Open(self.connections.clone())
    }

    /// Connections to the session port open now.
    pub fn connections_open(&self) -> usize {
        usize::try_from(self.connections.get()).unwrap_or(0)
    }

    /// A connection turned away at the limit.
    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// The text exposition: request metrics plus the store's, each app's (by name) and the
    /// event log's current counts.
    pub fn render(
        &self,
        usage: Usage,
        by_app: &[(Arc<str>, Usage)],
        events: &Arc<EventLog>,
    ) -> String {
        let mut registry = Registry::with_prefix("session");
        let app_sessions = Family::<AppLabels, Gauge>::default();
        let app_bytes = Family::<AppLabels, Gauge>::default();
        for (app, usage) in by_app {
            let labels = AppLabels {
                app: app.to_string(),
            };
            app_sessions
                .get_or_create(&labels)
                .set(usage.sessions as i64);
            app_bytes.get_or_create(&labels).set(usage.bytes as i64);
        }
        registry.register("app_active", "Sessions each app holds now", app_sessions);
        registry.register(
            "app_bytes_used",
            "Bytes each app's sessions count against its quota and the capacity",
            app_bytes,
        );
        registry.register(
            "active",
            "Sessions held now",
            ConstGauge::new(usage.sessions as i64),
        );
        registry.register(
            "bytes_used",
            "Bytes the held sessions count against the capacity",
            ConstGauge::new(usage.bytes as i64),
        );
        for kind in EventKind::ALL {
            let (name, help) = match kind {
                EventKind::Created => ("created", "Sessions created"),
                EventKind::Changed => ("changes", "Write batches that changed a session"),
                EventKind::Expired => ("expired", "Sessions that expired"),
                EventKind::Evicted => ("evicted", "Sessions evicted to stay within capacity"),
                EventKind::Invalidated => ("invalidated", "Sessions invalidated"),
                EventKind::IdRotated => ("id_rotations", "Session ids rotated"),
            };
            registry.register(name, help, ConstCounter::new(events.count(kind)));
        }
        registry.register(
            "requests",
            "Calls by method and status code, over gRPC or the framed pipeline",
            self.requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Call latency by method, over gRPC or the framed pipeline",
            self.latency.clone(),
        );
        registry.register(
            "framed_connections",
            "Framed pipeline connections open now",
            self.framed_connections.clone(),
        );
        registry.register(
            "connections",
            "Connections to the session port open now, gRPC and framed",
            self.connections.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections turned away because --max-connections were open",
            self.connections_refused.clone(),
        );
        registry.register(
            "watch_buffer_bytes",
            "Bytes the event ring kept for resuming watchers holds now",
            ConstGauge::new(events.bytes() as i64),
        );
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &registry);
        out
    }
}

fn code_label(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "ok",
        Cancelled => "cancelled",
        Unknown => "unknown",
        InvalidArgument => "invalid_argument",
        DeadlineExceeded => "deadline_exceeded",
        NotFound => "not_found",
        AlreadyExists => "already_exists",
        PermissionDenied => "permission_denied",
        ResourceExhausted => "resource_exhausted",
        FailedPrecondition => "failed_precondition",
        Aborted => "aborted",
        OutOfRange => "out_of_range",
        Unimplemented => "unimplemented",
        Internal => "internal",
        Unavailable => "unavailable",
        DataLoss => "data_loss",
        Unauthenticated => "unauthenticated",
    }
}
