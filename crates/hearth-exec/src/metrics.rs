//! The node's Prometheus metrics: pool sizes, placements, init durations,
//! evictions, queue depth and wait time. Rendered at `/metrics`.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric the supervisor and pool manager update.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// `hearth_placements_total{source}`.
    pub placements: IntCounterVec,
    /// `hearth_placement_seconds{source}`: from admission to a sandbox ready for the event.
    pub placement_seconds: HistogramVec,
    /// `hearth_init_duration_seconds{warmth}`: runtime init, by the warmth it started from.
    pub init_seconds: HistogramVec,
    /// `hearth_pool_sandboxes{pool,profile,warmth,account}`.
    pub pool_size: IntGaugeVec,
    /// `hearth_pool_target{profile}` and the forecast it came from.
    pub pool_target: IntGaugeVec,
    pub pool_forecast: prometheus::GaugeVec,
    /// `hearth_evictions_total{reason}`.
    pub evictions: IntCounterVec,
    /// `hearth_queue_depth{account}` and `hearth_queue_wait_seconds`.
    pub queue_depth: IntGaugeVec,
    pub queue_wait_seconds: HistogramVec,
    /// `hearth_invocations_total{outcome}`.
    pub invocations: IntCounterVec,
    /// `hearth_vm_phase_seconds{phase}`: a microVM invocation's phases
    /// (queue, restore, specialise, reset, guest, guest_cpu).
    pub vm_phase_seconds: HistogramVec,
    /// `hearth_sandbox_start_stage_seconds{stage}`: each stage of a process
    /// sandbox's start, from the daemon's preparation to the runtime's exec.
    pub sandbox_start_stage_seconds: HistogramVec,
    /// `hearth_vm_exits_total`: exits from microVM guests while invoked.
    pub vm_exits: prometheus::IntCounter,
    /// `hearth_vm_cow_pages_total`: pages microVMs copied on write while invoked.
    pub vm_cow_pages: prometheus::IntCounter,
}

/// Microsecond-scale phases: 5 µs to 10 s.
const VM_PHASE_BUCKETS: &[f64] = &[
    0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
    0.025, 0.05, 0.1, 0.25, 1.0, 10.0,
];

const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

impl Metrics {
    /// Builds and registers every metric. Registration of fresh, uniquely
    /// named metrics into a fresh registry cannot fail; an error here is a
    /// programming error in this function, reported as such.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let placements = IntCounterVec::new(
            Opts::new(
                "hearth_placements_total",
                "Invocations placed, by where the sandbox came from",
            ),
            &["source"],
        )?;
        let placement_seconds = HistogramVec::new(
            HistogramOpts::new(
                "hearth_placement_seconds",
                "Time to a sandbox ready for the event",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["source"],
        )?;
        let init_seconds = HistogramVec::new(
            HistogramOpts::new(
                "hearth_init_duration_seconds",
                "Runtime init (Init Duration)",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["warmth"],
        )?;
        let pool_size = IntGaugeVec::new(
            Opts::new(
                "hearth_pool_sandboxes",
                "Sandboxes held, by pool, profile, warmth and account",
            ),
            &["pool", "profile", "warmth", "account"],
        )?;
        let pool_target = IntGaugeVec::new(
            Opts::new(
                "hearth_pool_target",
                "Target size of each general sub-pool profile",
            ),
            &["profile"],
        )?;
        let pool_forecast = prometheus::GaugeVec::new(
            Opts::new(
                "hearth_pool_forecast",
                "Forecast draws per refill horizon, per profile",
            ),
            &["profile"],
        )?;
        let evictions = IntCounterVec::new(
            Opts::new(
                "hearth_evictions_total",
                "Sandboxes destroyed by the pool manager, by reason",
            ),
            &["reason"],
        )?;
        let queue_depth = IntGaugeVec::new(
            Opts::new(
                "hearth_queue_depth",
                "Invocations waiting for capacity, per account",
            ),
            &["account"],
        )?;
        let queue_wait_seconds = HistogramVec::new(
            HistogramOpts::new(
                "hearth_queue_wait_seconds",
                "Time invocations waited for capacity",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["outcome"],
        )?;
        let invocations = IntCounterVec::new(
            Opts::new("hearth_invocations_total", "Invocations by outcome"),
            &["outcome"],
        )?;
        let vm_phase_seconds = HistogramVec::new(
            HistogramOpts::new(
                "hearth_vm_phase_seconds",
                "MicroVM invocations: time in each phase (queue, restore, specialise, reset, guest, guest_cpu)",
            )
            .buckets(VM_PHASE_BUCKETS.to_vec()),
            &["phase"],
        )?;
        let sandbox_start_stage_seconds = HistogramVec::new(
            HistogramOpts::new(
                "hearth_sandbox_start_stage_seconds",
                "Process sandbox starts: time in each stage (host_prepare, launcher_exec, await_request, cgroup_join, unshare, runtime_api_socket, fork_init, mounts, privileges_seccomp, runtime_exec, ready_report)",
            )
            .buckets(VM_PHASE_BUCKETS.to_vec()),
            &["stage"],
        )?;
        let vm_exits = prometheus::IntCounter::new(
            "hearth_vm_exits_total",
            "Exits from microVM guests during invocations",
        )?;
        let vm_cow_pages = prometheus::IntCounter::new(
            "hearth_vm_cow_pages_total",
            "Pages microVMs copied on write during invocations",
        )?;
        registry.register(Box::new(vm_phase_seconds.clone()))?;
        registry.register(Box::new(vm_exits.clone()))?;
        registry.register(Box::new(sandbox_start_stage_seconds.clone()))?;
        registry.register(Box::new(vm_cow_pages.clone()))?;
        registry.register(Box::new(placements.clone()))?;
        registry.register(Box::new(placement_seconds.clone()))?;
        registry.register(Box::new(init_seconds.clone()))?;
        registry.register(Box::new(pool_size.clone()))?;
        registry.register(Box::new(pool_target.clone()))?;
        registry.register(Box::new(pool_forecast.clone()))?;
        registry.register(Box::new(evictions.clone()))?;
        registry.register(Box::new(queue_depth.clone()))?;
        registry.register(Box::new(queue_wait_seconds.clone()))?;
        registry.register(Box::new(invocations.clone()))?;
        Ok(Self {
            registry,
            placements,
            placement_seconds,
            init_seconds,
            pool_size,
            pool_target,
            pool_forecast,
            evictions,
            queue_depth,
            queue_wait_seconds,
            invocations,
            vm_phase_seconds,
            sandbox_start_stage_seconds,
            vm_exits,
            vm_cow_pages,
        })
    }

    /// The registry, for other parts of the node to add their metrics to.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::new().unwrap();
        m.placements.with_label_values(&["warm"]).inc();
        m.pool_size
            .with_label_values(&["general", "python:128", "runtime", ""])
            .set(3);
        let text = m.render();
        assert!(text.contains("hearth_placements_total{source=\"warm\"} 1"));
        assert!(text.contains("hearth_pool_sandboxes{account=\"\",pool=\"general\",profile=\"python:128\",warmth=\"runtime\"} 3"));
    }
}
