//! `GET /metrics`: the server's counters in the Prometheus / OpenMetrics text format.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of `dlp_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route (`/v1/chat/completions`, ...).
    pub endpoint: String,
    /// The HTTP status answered.
    pub status: u16,
}

/// Labels of `dlp_adapter_routed_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdapterLabels {
    /// The adapter's name.
    pub adapter: String,
}

/// Everything `/metrics` reports. Metrics are atomics: the HTTP side and the engine thread
/// update them without locks.
pub struct Metrics {
    registry: Registry,
    /// Requests answered, by endpoint and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Prompt tokens admitted.
    pub prompt_tokens: Counter,
    /// Prompt tokens copied from a running sequence's KV rows instead of computed.
    pub prefix_shared_tokens: Counter,
    /// Tokens generated.
    pub generation_tokens: Counter,
    /// Sequences cancelled because their client went away.
    pub cancelled: Counter,
    /// Output formats compiled (one at a time).
    pub format_compiles: Counter,
    /// Output formats not compiled: their client left while they waited for the compile lock.
    pub format_compiles_abandoned: Counter,
    /// Sequences waiting for a KV slot.
    pub queue_length: Gauge,
    /// Sequences in KV slots.
    pub running: Gauge,
    /// KV slots (sequences) the cache holds.
    pub kv_slots_total: Gauge,
    /// KV positions in use by running sequences.
    pub kv_positions_used: Gauge,
    /// Adapters loaded.
    pub adapters_loaded: Gauge,
    /// Seconds per engine step (one forward pass and its sampling).
    pub step_seconds: Histogram,
    /// Tokens per engine step.
    pub step_tokens: Histogram,
    /// Seconds from a request's arrival to its first generated token.
    pub time_to_first_token: Histogram,
    /// How often each adapter was part of a routed or requested mixture (per segment).
    pub adapter_routed: Family<AdapterLabels, Counter>,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut m = Metrics {
            registry: Registry::default(),
            requests: Family::default(),
            prompt_tokens: Counter::default(),
            prefix_shared_tokens: Counter::default(),
            generation_tokens: Counter::default(),
            cancelled: Counter::default(),
            format_compiles: Counter::default(),
            format_compiles_abandoned: Counter::default(),
            queue_length: Gauge::default(),
            running: Gauge::default(),
            kv_slots_total: Gauge::default(),
            kv_positions_used: Gauge::default(),
            adapters_loaded: Gauge::default(),
            step_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            step_tokens: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            time_to_first_token: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            adapter_routed: Family::default(),
        };
        let r = &mut m.registry;
        r.register(
            "dlp_requests",
            "HTTP requests, by endpoint and status (499: the client closed the connection before the answer)",
            m.requests.clone(),
        );
        r.register(
            "dlp_prompt_tokens",
            "Prompt tokens of the sequences accepted into the scheduler, queued for a KV slot or running (one cancelled while queued counts too), per sequence (a request with n: 3 counts its prompt three times; its usage.prompt_tokens once)",
            m.prompt_tokens.clone(),
        );
        r.register(
            "dlp_prefix_shared_tokens",
            "Prompt tokens whose KV-cache rows were copied from a running sequence that shares them (not computed; --no-prefix-sharing turns this off)",
            m.prefix_shared_tokens.clone(),
        );
        r.register(
            "dlp_generation_tokens",
            "Tokens generated, each answer's end token included (as usage.completion_tokens counts them)",
            m.generation_tokens.clone(),
        );
        r.register(
            "dlp_cancelled_sequences",
            "Sequences cancelled: their client disconnected, or another choice of their streamed request failed",
            m.cancelled.clone(),
        );
        r.register(
            "dlp_format_compiles",
            "Output formats compiled (JSON schemas, grammars, regexes, choices, forced tool calls), one at a time",
            m.format_compiles.clone(),
        );
        r.register(
            "dlp_format_compiles_abandoned",
            "Output formats not compiled because their client closed the request while they waited for the compile before them",
            m.format_compiles_abandoned.clone(),
        );
        r.register(
            "dlp_queue_length",
            "Sequences waiting for a KV slot",
            m.queue_length.clone(),
        );
        r.register(
            "dlp_running_sequences",
            "Sequences in KV slots (being prefilled or decoded)",
            m.running.clone(),
        );
        r.register(
            "dlp_kv_slots_used",
            "KV-cache slots in use (one per running sequence)",
            m.running.clone(),
        );
        r.register(
            "dlp_kv_slots",
            "KV-cache slots in all (--max-concurrent)",
            m.kv_slots_total.clone(),
        );
        r.register(
            "dlp_kv_positions_used",
            "KV-cache positions held by running sequences",
            m.kv_positions_used.clone(),
        );
        r.register(
            "dlp_adapters_loaded",
            "LoRA adapters loaded",
            m.adapters_loaded.clone(),
        );
        r.register(
            "dlp_step_seconds",
            "Seconds per engine step (one forward pass for every running sequence)",
            m.step_seconds.clone(),
        );
        r.register(
            "dlp_step_tokens",
            "Tokens per engine step (decode tokens plus prompt chunks)",
            m.step_tokens.clone(),
        );
        r.register(
            "dlp_time_to_first_token_seconds",
            "Seconds from a request's arrival to each of its sequences' first generated token (n: 3 observes three)",
            m.time_to_first_token.clone(),
        );
        r.register(
            "dlp_adapter_routed",
            "Mixture segments that gave each adapter a weight above 0 (routed or requested)",
            m.adapter_routed.clone(),
        );
        m
    }

    /// The OpenMetrics text exposition (`application/openmetrics-text; version=1.0.0`).
    pub fn render(&self) -> String {
        let mut s = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut s, &self.registry);
        s
    }

    /// The Prometheus text format 0.0.4 (`text/plain; version=0.0.4`), what vLLM's server
    /// answers a scraper that does not ask for OpenMetrics: [`Self::render`] with each
    /// counter family named by its samples' `_total` name, no `# UNIT` lines and no `# EOF`.
    pub fn render_text(&self) -> String {
        openmetrics_to_text(&self.render())
    }

    /// Counts one answered request.
    pub fn request(&self, endpoint: &str, status: u16) {
        self.requests
            .get_or_create(&RequestLabels {
                endpoint: endpoint.to_string(),
                status,
            })
            .inc();
    }

    /// Drops `adapter`'s series, once it is unloaded: names come and go at runtime, and
    /// series of every name ever loaded would grow `/metrics` without bound.
    pub fn forget_adapter(&self, adapter: &str) {
        self.adapter_routed.remove(&AdapterLabels {
            adapter: adapter.to_string(),
        });
    }

    /// Counts one segment under `mixture` for each adapter it gives a weight above 0 (a weight
    /// of 0 adds nothing: that adapter did no work).
    pub fn routed_mixture(&self, mixture: &[(String, f32)]) {
        for (adapter, _) in mixture.iter().filter(|(_, w)| *w > 0.0) {
            self.adapter_routed
                .get_or_create(&AdapterLabels {
                    adapter: adapter.clone(),
                })
                .inc();
        }
    }
}

/// OpenMetrics text (as prometheus-client writes it: `# HELP`, `# TYPE`, then the samples of
/// each family) in the Prometheus text format 0.0.4: a counter family `x` (samples
/// `x_total`) is named `x_total` in its `# HELP` and `# TYPE` lines, `unknown` is `untyped`,
/// and the `# UNIT` and `# EOF` lines, which 0.0.4 lacks, go.
fn openmetrics_to_text(om: &str) -> String {
    let mut out = String::with_capacity(om.len());
    let lines: Vec<&str> = om.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        // A family's metadata lines, then its samples.
        let start = i;
        while i < lines.len() && lines[i].starts_with('#') {
            i += 1;
        }
        let meta = &lines[start..i];
        let kind = meta
            .iter()
            .find_map(|l| l.strip_prefix("# TYPE "))
            .and_then(|t| t.rsplit(' ').next());
        for l in meta {
            let Some((tag, rest)) = l.strip_prefix("# ").and_then(|r| r.split_once(' ')) else {
                continue;
            };
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            match tag {
                "HELP" | "TYPE" => {
                    let name = match kind {
                        Some("counter") if !name.ends_with("_total") => format!("{name}_total"),
                        _ => name.to_string(),
                    };
                    let tail = if tag == "TYPE" && tail == "unknown" {
                        "untyped"
                    } else {
                        tail
                    };
                    out.push_str(&format!("# {tag} {name} {tail}\n"));
                }
                _ => {} // UNIT, EOF
            }
        }
        while i < lines.len() && !lines[i].starts_with('#') {
            out.push_str(lines[i]);
            out.push('\n');
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_take_their_samples_names_and_openmetrics_lines_go() {
        let om = "# HELP dlp_requests HTTP requests.\n# TYPE dlp_requests counter\n\
                  dlp_requests_total{endpoint=\"/health\",status=\"200\"} 1\n\
                  # HELP dlp_queue_length Waiting.\n# TYPE dlp_queue_length gauge\n\
                  # UNIT dlp_queue_length sequences\ndlp_queue_length 0\n\
                  # HELP dlp_step_seconds Step.\n# TYPE dlp_step_seconds histogram\n\
                  dlp_step_seconds_sum 0.5\ndlp_step_seconds_count 2\n\
                  dlp_step_seconds_bucket{le=\"+Inf\"} 2\n# EOF\n";
        let text = openmetrics_to_text(om);
        assert_eq!(
            text,
            "# HELP dlp_requests_total HTTP requests.\n# TYPE dlp_requests_total counter\n\
             dlp_requests_total{endpoint=\"/health\",status=\"200\"} 1\n\
             # HELP dlp_queue_length Waiting.\n# TYPE dlp_queue_length gauge\n\
             dlp_queue_length 0\n\
             # HELP dlp_step_seconds Step.\n# TYPE dlp_step_seconds histogram\n\
             dlp_step_seconds_sum 0.5\ndlp_step_seconds_count 2\n\
             dlp_step_seconds_bucket{le=\"+Inf\"} 2\n"
        );
        // The server's own families: every sample keeps its line, every counter is renamed.
        let m = Metrics::new();
        m.request("/health", 200);
        m.routed_mixture(&[("a".into(), 0.5), ("b".into(), 0.0)]);
        assert!(m
            .render()
            .contains("dlp_adapter_routed_total{adapter=\"a\"} 1"));
        assert!(!m.render().contains("adapter=\"b\""));
        let (om, text) = (m.render(), m.render_text());
        let samples = |s: &str| s.lines().filter(|l| !l.starts_with('#')).count();
        assert_eq!(samples(&om), samples(&text));
        assert!(text.contains("# TYPE dlp_requests_total counter"), "{text}");
        assert!(!text.contains("# EOF") && !text.contains("# TYPE dlp_requests counter"));
    }
}
