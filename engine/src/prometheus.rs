//! A Prometheus endpoint for a running pipeline: [`MetricsServer`] serves the run's live
//! metrics at `/metrics` in the OpenMetrics text format (which Prometheus scrapes natively),
//! encoded by the `prometheus-client` crate.
//!
//! Nothing is recorded for it: every scrape reads the counters the engine keeps anyway
//! ([`crate::StepMetrics`], the ports' fill levels, the memory pool), so a run that nobody
//! scrapes pays nothing.
//!
//! | metric | type | labels | what |
//! |---|---|---|---|
//! | `flowengine_rows_total` | counter | `step`, `direction` = `in`, `out`, `rejected`, `dropped`, `filtered`, `dead_lettered`, `discarded` (sent to an output nothing reads) | rows through each step (a sink's `out` is what it wrote) |
//! | `flowengine_input_bytes_total` | counter | `step` | bytes a source consumed from its input |
//! | `flowengine_chunk_seconds` | histogram | `step` | processing time per chunk, waits on ports excluded |
//! | `flowengine_blocked_seconds_total` | counter | `step` | time waiting for room on a full output (downstream is slower) |
//! | `flowengine_starved_seconds_total` | counter | `step` | time waiting for input (upstream is slower) |
//! | `flowengine_backpressure_waits_total` | counter | `step` | sends that found the port full |
//! | `flowengine_breaker_transitions_total` | counter | `step` (sinks), `to` = `open`, `half_open`, `closed` | state changes of the sink's circuit breaker (`HttpSink`) |
//! | `flowengine_breaker_wait_seconds_total` | counter | `step` (sinks) | time batches waited for an open breaker (`WhenOpen: Wait`) |
//! | `flowengine_port_fill_ratio` | gauge | `from`, `to` | chunks buffered / `BufferSize` |
//! | `flowengine_port_buffered_chunks` | gauge | `from`, `to` | chunks buffered |
//! | `flowengine_port_buffered_bytes` | gauge | `from`, `to` | bytes buffered |
//! | `flowengine_memory_bytes` | gauge | `step` | bytes the step reserves from the run's budget now |
//! | `flowengine_memory_peak_bytes` | gauge | `step` | most bytes the step reserved at once |
//! | `flowengine_spill_bytes_total` | counter | `step` | bytes the step spilled to disk |
//! | `flowengine_memory_limit_bytes` | gauge | | the run's memory budget |
//! | `flowengine_memory_reserved_bytes` | gauge | | bytes reserved now, all steps together |
//! | `flowengine_process_resident_memory_bytes` | gauge | | resident memory of the process |
//! | `flowengine_run_seconds` | gauge | | time since the endpoint started |

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::error::{Error, Result};
use crate::metrics::CHUNK_BUCKETS_NANOS;
use crate::steps::StepKind;
use crate::summary::Progress;

/// The content type of the OpenMetrics text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Reads a run's live numbers on each scrape.
struct RunCollector {
    progress: Progress,
    started: Instant,
}

impl std::fmt::Debug for RunCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunCollector").field("steps", &self.progress.steps.len()).finish()
    }
}

type Enc<'a> = DescriptorEncoder<'a>;

/// One labelled sample per item, under one descriptor.
fn counters<L: prometheus_client::encoding::EncodeLabelSet>(
    enc: &mut Enc<'_>,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (L, f64)>,
) -> std::fmt::Result {
    let mut family = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in samples {
        ConstCounter::new(v).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauges<L: prometheus_client::encoding::EncodeLabelSet>(
    enc: &mut Enc<'_>,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (L, f64)>,
) -> std::fmt::Result {
    let mut family = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in samples {
        ConstGauge::new(v).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauge(enc: &mut Enc<'_>, name: &str, help: &str, v: f64) -> std::fmt::Result {
    let family = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(v).encode(family)
}

impl Collector for RunCollector {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> std::fmt::Result {
        use std::sync::atomic::Ordering::Relaxed;
        let p = &self.progress;
        let steps: Vec<(&str, StepKind, &crate::StepMetrics)> = p
            .steps
            .iter()
            .zip(&p.kinds)
            .map(|((name, m), kind)| (name.as_str(), *kind, &**m))
            .collect();
        let mut rows = Vec::new();
        for &(step, kind, m) in &steps {
            let out = if kind == StepKind::Sink { &m.rows_written } else { &m.rows_out };
            for (direction, c) in [
                ("in", &m.rows_in),
                ("out", out),
                ("rejected", &m.rows_rejected),
                ("dropped", &m.rows_dropped),
                ("filtered", &m.rows_filtered),
                ("dead_lettered", &m.rows_dead_lettered),
                ("discarded", &m.rows_discarded),
            ] {
                rows.push(([("step", step), ("direction", direction)], c.load(Relaxed) as f64));
            }
        }
        counters(&mut enc, "flowengine_rows", "Rows through each step, by direction.", rows)?;
        counters(
            &mut enc,
            "flowengine_input_bytes",
            "Bytes a source consumed from its input.",
            steps
                .iter()
                .filter(|s| s.1 == StepKind::Source)
                .map(|&(step, _, m)| ([("step", step)], m.bytes_read.load(Relaxed) as f64)),
        )?;
        {
            let mut family = enc.encode_descriptor(
                "flowengine_chunk_seconds",
                "Processing time per chunk, waits on ports excluded.",
                None,
                MetricType::Histogram,
            )?;
            for &(step, _, m) in &steps {
                let h = m.chunk_time.snapshot();
                let buckets: Vec<(f64, u64)> = CHUNK_BUCKETS_NANOS
                    .iter()
                    .map(|&b| b as f64 / 1e9)
                    .chain(std::iter::once(f64::MAX))
                    .zip(h.buckets.iter().copied())
                    .collect();
                family
                    .encode_family(&[("step", step)])?
                    .encode_histogram::<NoLabelSet>(h.sum.as_secs_f64(), h.count, &buckets, None)?;
            }
        }
        let nanos = |f: fn(&crate::StepMetrics) -> &std::sync::atomic::AtomicU64| {
            steps
                .iter()
                .map(move |&(step, _, m)| ([("step", step)], f(m).load(Relaxed) as f64 / 1e9))
                .collect::<Vec<_>>()
        };
        counters(
            &mut enc,
            "flowengine_blocked_seconds",
            "Time a step waited for room on a full output (downstream is slower).",
            nanos(|m| &m.blocked_nanos),
        )?;
        counters(
            &mut enc,
            "flowengine_starved_seconds",
            "Time a step waited for input (upstream is slower).",
            nanos(|m| &m.starved_nanos),
        )?;
        counters(
            &mut enc,
            "flowengine_backpressure_waits",
            "Sends that found the port full.",
            steps
                .iter()
                .map(|&(step, _, m)| ([("step", step)], m.backpressure_waits.load(Relaxed) as f64)),
        )?;
        let mut changes = Vec::new();
        for &(step, kind, m) in &steps {
            if kind != StepKind::Sink {
                continue;
            }
            for (to, c) in [
                ("open", &m.breaker_opened),
                ("half_open", &m.breaker_half_opened),
                ("closed", &m.breaker_closed),
            ] {
                changes.push(([("step", step), ("to", to)], c.load(Relaxed) as f64));
            }
        }
        counters(
            &mut enc,
            "flowengine_breaker_transitions",
            "State changes of a sink's circuit breaker, by the state it went to.",
            changes,
        )?;
        counters(
            &mut enc,
            "flowengine_breaker_wait_seconds",
            "Time a sink held batches waiting for its open circuit breaker (WhenOpen: Wait).",
            steps
                .iter()
                .filter(|s| s.1 == StepKind::Sink)
                .map(|&(step, _, m)| ([("step", step)], m.breaker_wait_nanos.load(Relaxed) as f64 / 1e9)),
        )?;
        let fills = p.ports.fills();
        let port = |f: &crate::port::PortFill| [("from", f.from.clone()), ("to", f.to.clone())];
        gauges(
            &mut enc,
            "flowengine_port_fill_ratio",
            "Chunks buffered in a connection over its BufferSize.",
            fills.iter().map(|f| (port(f), f.ratio())),
        )?;
        gauges(
            &mut enc,
            "flowengine_port_buffered_chunks",
            "Chunks buffered in a connection.",
            fills.iter().map(|f| (port(f), f.buffered as f64)),
        )?;
        gauges(
            &mut enc,
            "flowengine_port_buffered_bytes",
            "Bytes buffered in a connection.",
            fills.iter().map(|f| (port(f), f.bytes as f64)),
        )?;
        let consumers = p.memory.consumers();
        // Summed as integers: an empty f64 sum is -0.0, which would print as "-0.0".
        let per_step = |f: fn(&crate::memory::ConsumerStats) -> u64| {
            steps
                .iter()
                .map(|&(step, _, _)| {
                    let v: u64 = consumers.iter().filter(|c| c.step == step).map(|c| f(c)).sum();
                    ([("step", step)], v as f64)
                })
                .collect::<Vec<_>>()
        };
        gauges(
            &mut enc,
            "flowengine_memory_bytes",
            "Bytes a step reserves from the run's memory budget now.",
            per_step(|c| c.current.load(Relaxed) as u64),
        )?;
        gauges(
            &mut enc,
            "flowengine_memory_peak_bytes",
            "Most bytes each of a step's reservations held at once (summed).",
            per_step(|c| c.peak.load(Relaxed) as u64),
        )?;
        counters(
            &mut enc,
            "flowengine_spill_bytes",
            "Bytes a step spilled to disk.",
            per_step(|c| c.spill_bytes.load(Relaxed)),
        )?;
        gauge(
            &mut enc,
            "flowengine_memory_limit_bytes",
            "The run's memory budget.",
            p.memory.limit() as f64,
        )?;
        gauge(
            &mut enc,
            "flowengine_memory_reserved_bytes",
            "Bytes reserved from the budget now, all steps together.",
            p.memory.used() as f64,
        )?;
        if let Some(rss) = crate::metrics::rss_bytes() {
            gauge(
                &mut enc,
                "flowengine_process_resident_memory_bytes",
                "Resident memory of the process.",
                rss as f64,
            )?;
        }
        gauge(
            &mut enc,
            "flowengine_run_seconds",
            "Time since the metrics endpoint started.",
            self.started.elapsed().as_secs_f64(),
        )
    }
}

/// The exposition text of a run's metrics now (what `/metrics` answers).
///
/// # Errors
/// [`Error::Internal`] if encoding fails (it writes to a `String`, so it does not).
pub fn render(progress: &Progress) -> Result<String> {
    render_with(&registry(progress.clone(), Instant::now()))
}

fn registry(progress: Progress, started: Instant) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(RunCollector { progress, started }));
    registry
}

fn render_with(registry: &Registry) -> Result<String> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)
        .map_err(|e| Error::Internal(format!("cannot encode the metrics: {e}")))?;
    Ok(text)
}

/// Serves a run's metrics over HTTP at `/metrics` until dropped (or [`MetricsServer::stop`]).
///
/// One thread answers one connection at a time (`Connection: close`); a slow client is cut
/// off after two seconds. It binds where it is told: the CLI gives it a loopback address
/// unless the user names another interface.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How often the accept loop looks at the stop flag.
const ACCEPT_POLL: Duration = Duration::from_millis(25);
/// How long one client may take to send its request or read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

impl MetricsServer {
    /// Binds `addr` (port 0: any free port, see [`MetricsServer::local_addr`]) and serves
    /// `progress` from a background thread.
    ///
    /// # Errors
    /// [`Error::Io`] when the address cannot be bound (in use, not local, no permission).
    pub fn start(addr: SocketAddr, progress: Progress) -> Result<MetricsServer> {
        let hint = "is another process using this port? pick another with --metrics-addr";
        let listener = TcpListener::bind(addr).map_err(|e| Error::io(addr.to_string(), e, hint))?;
        let addr = listener.local_addr().map_err(|e| Error::io(addr.to_string(), e, ""))?;
        listener.set_nonblocking(true).map_err(|e| Error::io(addr.to_string(), e, ""))?;
        let stop = Arc::new(AtomicBool::new(false));
        let registry = registry(progress, Instant::now());
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("metrics-http".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match listener.accept() {
                            Ok((stream, _)) => {
                                // A client that misbehaves only loses its own answer.
                                let _ = serve(stream, &registry);
                            }
                            Err(_) => std::thread::sleep(ACCEPT_POLL),
                        }
                    }
                })
                .map_err(|e| Error::Internal(format!("cannot start the metrics thread: {e}")))?
        };
        Ok(MetricsServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving and waits for the thread to end.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Answers one HTTP/1.x request: `GET /metrics` (or `HEAD`), `/` (a pointer to `/metrics`),
/// 404 otherwise.
fn serve(mut stream: TcpStream, registry: &Registry) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let mut request = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    // Read the request head (a scrape has no body); give up on anything huge.
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 << 10 {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&request);
    let mut first = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => match render_with(registry) {
            Ok(text) => ("200 OK", CONTENT_TYPE, text),
            Err(e) => ("500 Internal Server Error", "text/plain; charset=utf-8", format!("{e}\n")),
        },
        ("GET" | "HEAD", "/") => (
            "200 OK",
            "text/plain; charset=utf-8",
            "flowengine: the run's metrics are at /metrics\n".to_owned(),
        ),
        ("GET" | "HEAD", _) => ("404 Not Found", "text/plain; charset=utf-8", "not found; try /metrics\n".to_owned()),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "only GET and HEAD\n".to_owned(),
        ),
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if method != "HEAD" {
        response.push_str(&body);
    }
    stream.write_all(response.as_bytes())?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
Pipeline:
  Name: prom
  Plugins:
    - { Name: gen, Type: DataGenerator, Config: { RowCount: 3000, BatchSize: 500 } }
    - { Name: out, Type: DelimitedSink, Config: { FilePath: out.csv } }
"#;

    fn value(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    }

    /// After a run, the collector reports what the steps did, in the exposition format.
    #[test]
    fn renders_rows_histograms_and_memory() {
        let dir = tempfile::tempdir().unwrap();
        let p = crate::Pipeline::from_yaml_str(YAML, dir.path(), &[]).unwrap();
        let progress = p.progress();
        p.run().unwrap();
        let text = render(&progress).unwrap();
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(text.contains("# TYPE flowengine_rows counter"), "{text}");
        assert_eq!(value(&text, r#"flowengine_rows_total{step="gen",direction="out"}"#), 3000.0);
        assert_eq!(value(&text, r#"flowengine_rows_total{step="out",direction="in"}"#), 3000.0);
        assert_eq!(value(&text, r#"flowengine_rows_total{step="out",direction="out"}"#), 3000.0);
        assert!(text.contains("# TYPE flowengine_chunk_seconds histogram"), "{text}");
        // Six chunks of 500 rows through each step: the +Inf bucket holds them all.
        let inf = text
            .lines()
            .find(|l| l.starts_with("flowengine_chunk_seconds_bucket{") && l.contains(r#"le="+Inf""#) && l.contains(r#"step="out""#))
            .unwrap_or_else(|| panic!("no +Inf bucket in\n{text}"));
        assert!(inf.ends_with(" 6"), "{inf}");
        assert_eq!(value(&text, r#"flowengine_chunk_seconds_count{step="gen"}"#), 6.0);
        assert!(value(&text, "flowengine_memory_limit_bytes") > 0.0);
        // A step that reserves nothing reads 0, not -0.
        assert!(!text.contains("-0.0"), "{text}");
        assert_eq!(value(&text, r#"flowengine_rows_total{step="gen",direction="discarded"}"#), 0.0);
        // A sink's breaker state changes, by the state it went to (none in this run).
        assert_eq!(value(&text, r#"flowengine_breaker_transitions_total{step="out",to="open"}"#), 0.0);
        assert_eq!(value(&text, r#"flowengine_breaker_wait_seconds_total{step="out"}"#), 0.0);
        assert!(
            !text.contains(r#"flowengine_breaker_transitions_total{step="gen""#),
            "sinks only: {text}"
        );
        // A source that nothing reads: its rows are read and counted as discarded.
        let source_only =
            "Pipeline:\n  Name: lone\n  Plugins:\n    - { Name: gen, Type: DataGenerator, Config: { RowCount: 1200, BatchSize: 500 } }\n";
        let p = crate::Pipeline::from_yaml_str(source_only, dir.path(), &[]).unwrap();
        let progress = p.progress();
        p.run().unwrap();
        let text = render(&progress).unwrap();
        assert_eq!(value(&text, r#"flowengine_rows_total{step="gen",direction="discarded"}"#), 1200.0);
        assert_eq!(value(&text, r#"flowengine_memory_bytes{step="gen"}"#), 0.0);
        // The ports are gone once the run has ended.
        assert!(!text.contains("flowengine_port_fill_ratio{"), "{text}");
    }

    /// The server answers `/metrics`, `/` and 404 over loopback, and stops when dropped.
    #[test]
    fn serves_metrics_over_http_on_loopback() {
        let dir = tempfile::tempdir().unwrap();
        let p = crate::Pipeline::from_yaml_str(YAML, dir.path(), &[]).unwrap();
        let server = MetricsServer::start("127.0.0.1:0".parse().unwrap(), p.progress()).unwrap();
        let addr = server.local_addr();
        assert!(addr.ip().is_loopback() && addr.port() != 0);
        let get = |path: &str| {
            let mut s = TcpStream::connect(addr).unwrap();
            write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        };
        let metrics = get("/metrics");
        assert!(metrics.starts_with("HTTP/1.1 200 OK\r\n"), "{metrics}");
        assert!(metrics.contains(CONTENT_TYPE), "{metrics}");
        assert!(
            metrics.contains(r#"flowengine_rows_total{step="gen",direction="in"} 0"#),
            "{metrics}"
        );
        assert!(get("/").contains("/metrics"));
        assert!(get("/nope").starts_with("HTTP/1.1 404"));
        drop(server);
        assert!(TcpStream::connect(addr).is_err(), "still listening after drop");
    }
}
