//! `HttpSink`: sends rows as JSON to an HTTP endpoint, `BatchSize` rows per request, with
//! retries (exponential backoff and jitter, [`crate::retry`]) and a circuit breaker
//! ([`crate::breaker`]).
//!
//! ```yaml
//! - Name: Post
//!   Type: HttpSink
//!   Config:
//!     Url: https://example.com/ingest      # http:// or https://
//!     Method: POST                         # POST (default) or PUT
//!     Format: json-array                   # json-array (default): [{..},{..}]; json-lines: one object per line; csv: a header, then RFC 4180 rows
//!     BatchSize: 100                       # rows per request; 1..=100000
//!     BatchBytes: 1048576                  # also send once the body would pass this many bytes (default: no limit)
//!     Concurrency: 1                       # batches in flight at once; 1..=64
//!     Headers: { Authorization: "Bearer ${Token}" }
//!     TimeoutSeconds: 30                   # whole request, connect to last byte; >0..=3600
//!     DecimalFormat: string                # string (default) or number
//!     Retry: { MaxAttempts: 3, InitialDelayMs: 100, MaxDelayMs: 10000, Multiplier: 2, Jitter: full }
//!     CircuitBreaker: { FailureThreshold: 5, ResetTimeoutSeconds: 30, HalfOpenRequests: 1, WhenOpen: ErrorPolicy, MaxOpenSeconds: 300 }
//!     OnError: Fail                        # Fail (default), DeadLetter, or Skip
//!     DeadLetterFilePath: failed.csv
//! ```
//!
//! # Rows as JSON
//! Each row is an object with the step's input columns in order. Types are kept: ints are
//! JSON numbers (exact digits; a receiver that reads numbers as doubles loses digits of an
//! int64 beyond 2^53), doubles are numbers in their shortest round-trip form (NaN and
//! ±Infinity, which JSON cannot hold, are the strings `"NaN"`, `"Infinity"`,
//! `"-Infinity"`), booleans are `true`/`false`, null is `null`, dates, date-times and times
//! are ISO strings. Decimals are JSON **strings** of their exact text by default (`"12.50"`),
//! so no receiver rounds them through a double; `DecimalFormat: number` writes the same
//! digits as a bare JSON number instead. Either way no digit is lost in the request.
//!
//! # Concurrency
//! `Concurrency: n` (default 1) sends up to n batches at once, each on its own thread with
//! its own retries; the circuit breaker is shared. Every batch is still acknowledged or
//! rejected before the run succeeds, but batches (and their error rows) may complete out of
//! order — a receiver that needs input order wants `Concurrency: 1`.
//!
//! # Idempotency
//! Every request carries `Idempotency-Key: <run id>-<batch number>` (a random run id per run,
//! batches numbered from 1): a retried batch sends the same key, so a receiver that keeps the
//! keys it has stored can drop the copy. A `Headers` entry of that name replaces it.
//!
//! # Failures
//! A 2xx answer delivers the batch. Transient failures are retried with the `Retry`
//! policy: connection errors, timeouts, 408, 429 and 5xx. A `Retry-After: <seconds>` header
//! on such an answer replaces the backoff delay, capped at `MaxDelayMs`. Permanent failures
//! are not retried: any other status (other 4xx; 1xx and 3xx — redirects are not followed,
//! a POST body must not silently become a GET) and errors such as a TLS failure.
//!
//! The circuit breaker counts consecutive transient failures (and permanent transport
//! errors) across batches; a permanent HTTP answer (e.g. 400) shows the service is up and
//! counts as a success for it. While it is open, under `WhenOpen: ErrorPolicy` (the default)
//! attempts fail fast without a request: the batch fails at once (`_error_attempts` counts
//! only requests actually made). Under `WhenOpen: Wait` the batch waits for the half-open
//! trial call instead (holding the step, so its input backs up), and a transient failure that
//! leaves the breaker open does not use up its retries; after `MaxOpenSeconds` of outage it
//! goes to the error policy with the reason `circuit breaker open for N s, past
//! MaxOpenSeconds`. State changes are logged on the step and counted in its metrics.
//!
//! When a batch cannot be delivered, the step's error policy decides ([`crate::dead_letter`]):
//! `OnError: Fail` (the default) fails the run with [`crate::Error::Delivery`] naming the
//! step, method, URL, status (or transport error) and attempts; `OnError: DeadLetter` sends
//! the batch's rows to the step's error output (`From: Post.errors`, or
//! `DeadLetterFilePath`) with the reason — `HTTP <status>: <start of the response body>`,
//! the transport error, or `circuit breaker open` — and goes on; `Skip` is the same with the
//! error output optional. Rows not delivered count as rejected (and dead-lettered when sent
//! on); `MaxErrors` (rows, unlimited by default) and `MaxErrorRate` bound them.
//!
//! # Delivery guarantees — the limit of two-phase publish
//! A batch is published when the server accepts it (2xx), during the run: **an HTTP sink
//! cannot be rolled back**. When the run later fails or is cancelled, every other output is
//! discarded (files are published only on success) but rows already accepted by the server
//! stay there. The dead-letter file itself is an ordinary output, published only when the run
//! succeeds. A retry re-sends the whole batch: the server should store a batch only when it
//! answers 2xx (then a retried batch is never stored twice); a server that stores rows and
//! then fails the request (or a timeout after the server stored them) sees them again — make
//! the endpoint idempotent if that matters. Cancelling the run stops a backoff wait within
//! milliseconds; a request under way runs to its `TimeoutSeconds`.

use std::io::Read;
use std::ops::Range;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::breaker::{BreakerConfig, BreakerState, CircuitBreaker, Transition, WaitHint, WhenOpen};
use crate::chunk::{Chunk, Column};
use crate::config::{Obj, ParseEnv};
use crate::dead_letter::{ErrorOutput, ErrorPolicy, ErrorRows};
use crate::error::{Error, Result};
use crate::metrics::StepMetrics;
use crate::port::CancelToken;
use crate::retry::{Attempt, RetryPolicy, Rng};
use crate::schema::SchemaRef;
use crate::steps::{BuildContext, Sink, StepConfig, StepKind, StepRuntime, StepSettings, StepType};
use crate::value::Value;

/// The `HttpSink` step type.
pub const STEP_TYPE: StepType = StepType {
    name: "HttpSink",
    aliases: &["Http", "HttpOutput", "WebhookSink"],
    kind: StepKind::Sink,
    parse: |o, env| Ok(StepConfig::new("HttpSink", HttpSinkConfig::parse(o, env)?)),
    summary: "Sends rows as JSON to an HTTP endpoint in batches, with retries and a circuit breaker (cannot be rolled back)",
};

/// Longest part of a response body quoted in errors and dead letters.
pub const BODY_SNIPPET_BYTES: usize = 512;

/// The HTTP method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// POST (default).
    Post,
    /// PUT.
    Put,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Put => "PUT",
        }
    }
}

/// How a batch is laid out in the request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `[{..},{..}]`, `Content-Type: application/json` (default).
    JsonArray,
    /// One object per line, `Content-Type: application/x-ndjson`.
    JsonLines,
    /// A header line, then one RFC 4180 record per row (exact text, as `DelimitedSink`
    /// writes it), `Content-Type: text/csv`.
    Csv,
}

/// How decimals are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecimalFormat {
    /// A JSON string of the exact text (default).
    String,
    /// A JSON number with the exact digits.
    Number,
}

/// What to do with a batch that cannot be delivered: the policy every step shares.
pub use crate::dead_letter::OnError;

/// Config of `HttpSink`.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSinkConfig {
    /// The endpoint.
    pub url: String,
    /// POST or PUT.
    pub method: Method,
    /// Body layout.
    pub format: Format,
    /// Rows per request.
    pub batch_size: usize,
    /// Batches in flight at once (`Concurrency`, default 1).
    pub concurrency: usize,
    /// Most bytes of one request body (`BatchBytes`): a batch is sent before the row that
    /// would pass it (a single larger row goes alone). `None`: no limit.
    pub batch_bytes: Option<usize>,
    /// Extra request headers, in file order.
    pub headers: Vec<(String, String)>,
    /// Limit of one request, connect to last byte.
    pub timeout: Duration,
    /// Decimals as strings or numbers.
    pub decimals: DecimalFormat,
    /// Retries of transient failures.
    pub retry: RetryPolicy,
    /// The circuit breaker.
    pub breaker: BreakerConfig,
    /// Undeliverable batches (`OnError`, `MaxErrors` — rows, unlimited by default,
    /// `MaxErrorRate`, `DeadLetterFilePath`).
    pub errors: ErrorPolicy,
}

impl Default for HttpSinkConfig {
    fn default() -> Self {
        HttpSinkConfig {
            url: String::new(),
            method: Method::Post,
            format: Format::JsonArray,
            batch_size: 100,
            batch_bytes: None,
            concurrency: 1,
            headers: Vec::new(),
            timeout: Duration::from_secs(30),
            decimals: DecimalFormat::String,
            retry: RetryPolicy::default(),
            breaker: BreakerConfig::default(),
            errors: ErrorPolicy {
                max_errors: u64::MAX,
                ..ErrorPolicy::default()
            },
        }
    }
}

/// Checks a URL: http or https, with a host.
fn check_url(url: &str) -> std::result::Result<(), String> {
    let uri: ureq::http::Uri = url
        .parse()
        .map_err(|e| format!("'{}' is not a URL: {e}", crate::error::clip(url)))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(format!("'{}' must start with http:// or https://", crate::error::clip(url))),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("'{}' has no host", crate::error::clip(url)));
    }
    Ok(())
}

impl HttpSinkConfig {
    pub(crate) fn parse(o: &mut Obj<'_>, env: &mut ParseEnv<'_>) -> Result<Self> {
        let mut c = HttpSinkConfig::default();
        let url = o.require(&["Url", "Endpoint"])?;
        c.url = url.string()?.trim().to_owned();
        check_url(&c.url).map_err(|m| url.err(m))?;
        if let Some(v) = o.take(&["Method"])? {
            let s = v.string()?;
            c.method = match s.trim().to_ascii_uppercase().as_str() {
                "POST" => Method::Post,
                "PUT" => Method::Put,
                _ => return Err(v.err(format!("unknown Method '{}'; use POST or PUT", crate::error::clip(&s)))),
            };
        }
        if let Some(v) = o.take(&["Format"])? {
            let s = v.string()?;
            c.format = match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
                "json-array" | "array" | "json" => Format::JsonArray,
                "json-lines" | "jsonlines" | "ndjson" | "jsonl" => Format::JsonLines,
                "csv" | "text/csv" => Format::Csv,
                _ => {
                    return Err(v.err(format!(
                        "unknown Format '{}'; use json-array, json-lines or csv",
                        crate::error::clip(&s)
                    )))
                }
            };
        }
        if let Some(v) = o.take(&["BatchSize"])? {
            c.batch_size = v.u64_in(1, 100_000)? as usize;
        }
        if let Some(v) = o.take(&["Concurrency", "MaxConcurrency"])? {
            c.concurrency = v.u64_in(1, 64)? as usize;
        }
        if let Some(v) = o.take(&["BatchBytes", "MaxBatchBytes"])? {
            c.batch_bytes = Some(v.u64_in(1, 1 << 30)? as usize);
        }
        if let Some(v) = o.take(&["Headers"])? {
            let mut h = v.obj()?;
            for (name, value) in h.take_rest() {
                let text = value.string()?;
                ureq::http::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| value.err(format!("'{}' is not a valid header name", crate::error::clip(&name))))?;
                ureq::http::HeaderValue::from_str(&text)
                    .map_err(|_| value.err("a header value must be visible ASCII or spaces, without line breaks"))?;
                c.headers.push((name, text));
            }
        }
        if let Some(v) = o.take(&["TimeoutSeconds", "Timeout"])? {
            let t = v.seconds_in(3600.0)?;
            if t.is_zero() {
                return Err(v.err("TimeoutSeconds must be above 0"));
            }
            c.timeout = t;
        }
        if let Some(v) = o.take(&["DecimalFormat", "Decimals"])? {
            let s = v.string()?;
            c.decimals = match s.trim().to_ascii_lowercase().as_str() {
                "string" => DecimalFormat::String,
                "number" => DecimalFormat::Number,
                _ => return Err(v.err(format!("unknown DecimalFormat '{}'; use string or number", crate::error::clip(&s)))),
            };
        }
        if let Some(v) = o.take(&["Retry", "RetryPolicy"])? {
            c.retry = RetryPolicy::parse(&v)?;
        }
        if let Some(v) = o.take(&["CircuitBreaker", "Breaker"])? {
            c.breaker = BreakerConfig::parse(&v)?;
        }
        c.errors = ErrorPolicy::parse_over(o, env, c.errors.clone())?;
        Ok(c)
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<StepRuntime> {
        let schema = ctx.require_input()?;
        Ok(StepRuntime::Sink(Box::new(HttpSink::new(ctx.name, self.clone(), schema))))
    }
}

impl StepSettings for HttpSinkConfig {
    fn build(&self, ctx: &BuildContext<'_>) -> Result<StepRuntime> {
        HttpSinkConfig::build(self, ctx)
    }
    fn error_policy(&self) -> Option<&ErrorPolicy> {
        Some(&self.errors)
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Why a batch was not delivered.
#[derive(Debug, Clone, PartialEq)]
enum Problem {
    /// The server answered with a status that is not 2xx.
    Status { code: u16, body: String },
    /// The request did not get an answer (connect, timeout, I/O) or could not be made.
    Transport(String),
    /// The circuit breaker refused the call; `last` is the batch's own last failure, when
    /// it had one before the breaker opened.
    BreakerOpen { retry_in: Duration, last: Option<Box<Problem>> },
    /// `WhenOpen: Wait`, and the breaker stayed open past `MaxOpenSeconds`: the batch stopped
    /// waiting. `last` as above.
    GaveUp {
        outage: Duration,
        max_open: Duration,
        last: Option<Box<Problem>>,
    },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Status { code, body } if body.is_empty() => write!(f, "HTTP {code}"),
            Problem::Status { code, body } => write!(f, "HTTP {code}: {body}"),
            Problem::Transport(m) => f.write_str(m),
            Problem::BreakerOpen { retry_in, last } => {
                if let Some(last) = last {
                    write!(f, "{last}; then ")?;
                }
                write!(
                    f,
                    "circuit breaker open (too many consecutive failures; next trial call in {:.1} s)",
                    retry_in.as_secs_f64()
                )
            }
            Problem::GaveUp { outage, max_open, last } => {
                if let Some(last) = last {
                    write!(f, "{last}; then ")?;
                }
                write!(
                    f,
                    "circuit breaker open for {:.1} s, past MaxOpenSeconds ({} s): stopped waiting for the destination (WhenOpen: Wait); raise MaxOpenSeconds to wait longer",
                    outage.as_secs_f64(),
                    max_open.as_secs_f64()
                )
            }
        }
    }
}

/// Is this status worth retrying?
fn transient_status(code: u16) -> bool {
    code == 408 || code == 429 || (500..=599).contains(&code)
}

/// Is this transport error worth retrying?
fn transient_error(e: &ureq::Error) -> bool {
    matches!(
        e,
        ureq::Error::Timeout(_) | ureq::Error::Io(_) | ureq::Error::ConnectionFailed | ureq::Error::HostNotFound | ureq::Error::Protocol(_)
    )
}

/// `Retry-After` in delta-seconds (an HTTP date is ignored: the backoff applies).
fn retry_after(resp: &ureq::http::Response<ureq::Body>) -> Option<Duration> {
    let v = resp.headers().get("retry-after")?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The start of a response body, as text on one line.
fn snippet(resp: &mut ureq::http::Response<ureq::Body>) -> String {
    let mut buf = Vec::new();
    let _ = resp
        .body_mut()
        .as_reader()
        .take(BODY_SNIPPET_BYTES as u64 + 1)
        .read_to_end(&mut buf);
    let cut = buf.len() > BODY_SNIPPET_BYTES;
    buf.truncate(BODY_SNIPPET_BYTES);
    let mut s: String = String::from_utf8_lossy(&buf)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned();
    if cut {
        s.push('…');
    }
    s
}

/// Rows waiting for their batch: pieces of received chunks (chunks share their columns, so
/// holding one is cheap).
type Batch = Vec<(Chunk, Range<usize>)>;

/// The running `HttpSink`.
pub struct HttpSink {
    step: String,
    cfg: HttpSinkConfig,
    /// `"name":` per column, JSON-escaped.
    keys: Vec<Vec<u8>>,
    agent: ureq::Agent,
    /// Shared by the threads of `Concurrency`.
    breaker: Arc<Mutex<CircuitBreaker>>,
    rng: Rng,
    /// The sending threads under `Concurrency` > 1, started at the first batch.
    pool: Option<SendPool>,
    cancel: CancelToken,
    metrics: Arc<StepMetrics>,
    pending: Batch,
    pending_rows: usize,
    /// Encoded size of the pending rows (counted only under `BatchBytes`).
    pending_bytes: usize,
    /// This run's id, the first part of every `Idempotency-Key`.
    run_id: String,
    /// Batches sent so far (the second part).
    batches: u64,
    /// One encoded row, for measuring it.
    scratch: Vec<u8>,
    /// The header line of a CSV body.
    csv_header: Vec<u8>,
    schema: SchemaRef,
    /// Where undelivered rows go (`From: Post.errors`).
    errors: ErrorOutput,
    /// Rows rejected so far.
    rejected: AtomicU64,
}

impl HttpSink {
    fn new(step: &str, cfg: HttpSinkConfig, schema: SchemaRef) -> HttpSink {
        let keys = schema
            .fields()
            .iter()
            .map(|f| {
                let mut k = serde_json::to_vec(&f.name).unwrap_or_else(|_| b"\"\"".to_vec());
                k.push(b':');
                k
            })
            .collect();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(cfg.timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!("flowengine/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        HttpSink {
            step: step.to_owned(),
            breaker: Arc::new(Mutex::new(CircuitBreaker::new(cfg.breaker.clone()))),
            pool: None,
            cfg,
            keys,
            agent,
            rng: Rng::from_entropy(),
            cancel: CancelToken::new(),
            metrics: Arc::new(StepMetrics::default()),
            pending: Vec::new(),
            pending_rows: 0,
            pending_bytes: 0,
            run_id: uuid::Uuid::new_v4().simple().to_string(),
            batches: 0,
            scratch: Vec::new(),
            csv_header: csv_header(&schema),
            schema,
            errors: ErrorOutput::default(),
            rejected: AtomicU64::new(0),
        }
    }

    /// The request body of a batch.
    fn encode(&self, batch: &Batch) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 * self.pending_rows.max(1));
        match self.cfg.format {
            Format::JsonArray => out.push(b'['),
            Format::JsonLines => {}
            Format::Csv => out.extend_from_slice(&self.csv_header),
        }
        let mut first = true;
        let mut scratch = Vec::new();
        for (chunk, rows) in batch {
            if self.cfg.format == Format::Csv {
                let part = chunk.take(&rows.clone().collect::<Vec<usize>>());
                crate::steps::delimited_sink::format_chunk(
                    &part,
                    b',',
                    crate::steps::delimited_sink::LineEnding::Lf,
                    &mut out,
                    &mut scratch,
                );
                continue;
            }
            for r in rows.clone() {
                if self.cfg.format == Format::JsonArray && !first {
                    out.push(b',');
                }
                first = false;
                self.encode_row(chunk, r, &mut out);
            }
        }
        if self.cfg.format == Format::JsonArray {
            out.push(b']');
        }
        out
    }

    /// Row `r` of `chunk` as the body holds it (without the separator of a JSON array).
    fn encode_row(&self, chunk: &Chunk, r: usize, out: &mut Vec<u8>) {
        if self.cfg.format == Format::Csv {
            let mut scratch = Vec::new();
            crate::steps::delimited_sink::format_chunk(
                &chunk.take(&[r]),
                b',',
                crate::steps::delimited_sink::LineEnding::Lf,
                out,
                &mut scratch,
            );
            return;
        }
        out.push(b'{');
        for (i, col) in chunk.columns().iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&self.keys[i]);
            write_json(col, r, self.cfg.decimals, out);
        }
        out.push(b'}');
        if self.cfg.format == Format::JsonLines {
            out.push(b'\n');
        }
    }

    /// The body bytes row `r` of `chunk` adds (with a JSON array's comma).
    fn row_bytes(&mut self, chunk: &Chunk, r: usize) -> usize {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        self.encode_row(chunk, r, &mut scratch);
        let n = scratch.len() + usize::from(self.cfg.format == Format::JsonArray);
        self.scratch = scratch;
        n
    }

    /// The bytes a body holds besides its rows' (`[`…`]` less one comma; a CSV header).
    fn body_overhead(&self) -> usize {
        match self.cfg.format {
            Format::JsonArray => 1,
            Format::JsonLines => 0,
            Format::Csv => self.csv_header.len(),
        }
    }

    /// One request: the status, `Retry-After` and a body snippet, or a transport error.
    fn send_once(
        agent: &ureq::Agent,
        cfg: &HttpSinkConfig,
        body: &[u8],
        key: &str,
    ) -> std::result::Result<(u16, Option<Duration>, String), ureq::Error> {
        let mut req = match cfg.method {
            Method::Post => agent.post(&cfg.url),
            Method::Put => agent.put(&cfg.url),
        };
        if !cfg.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
            let ct = match cfg.format {
                Format::JsonArray => "application/json",
                Format::JsonLines => "application/x-ndjson",
                Format::Csv => "text/csv",
            };
            req = req.header("Content-Type", ct);
        }
        if !cfg.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("idempotency-key")) {
            req = req.header("Idempotency-Key", key);
        }
        for (k, v) in &cfg.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let mut resp = req.send(body)?;
        let code = resp.status().as_u16();
        let after = retry_after(&resp);
        let text = if (200..300).contains(&code) {
            // Read (a bounded part of) the answer so the connection can be reused.
            let _ = std::io::copy(&mut resp.body_mut().as_reader().take(1 << 20), &mut std::io::sink());
            String::new()
        } else {
            snippet(&mut resp)
        };
        Ok((code, after, text))
    }

    /// Sends the pending rows as one batch (on the pool's threads under `Concurrency` > 1).
    fn flush(&mut self) -> Result<()> {
        if self.pending_rows == 0 {
            return Ok(());
        }
        if self.cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        let batch = std::mem::take(&mut self.pending);
        let n = std::mem::take(&mut self.pending_rows) as u64;
        self.pending_bytes = 0;
        let body = self.encode(&batch);
        self.batches += 1;
        let key = format!("{}-{}", self.run_id, self.batches);
        if self.cfg.concurrency <= 1 {
            let outcome = deliver(
                &self.agent,
                &self.cfg,
                &self.breaker,
                &mut self.rng,
                &self.cancel,
                &self.metrics,
                &body,
                &key,
            );
            return self.settle(batch, n, outcome);
        }
        if self.pool.is_none() {
            self.pool = Some(SendPool::start(self)?);
        }
        let done = match &mut self.pool {
            Some(pool) => pool.submit(Job { batch, n, body, key })?,
            None => Vec::new(),
        };
        for (batch, n, outcome) in done {
            self.settle(batch, n, outcome)?;
        }
        Ok(())
    }

    /// Every batch sent on the pool has been answered (or rejected).
    fn drain(&mut self) -> Result<()> {
        let Some(pool) = self.pool.take() else {
            return Ok(());
        };
        for (batch, n, outcome) in pool.finish()? {
            self.settle(batch, n, outcome)?;
        }
        Ok(())
    }

    /// A batch's outcome: rows written, or rejected by the error policy.
    fn settle(&mut self, batch: Batch, n: u64, outcome: Result<std::result::Result<u32, (Problem, u32)>>) -> Result<()> {
        match outcome? {
            Ok(_) => StepMetrics::add(&self.metrics.rows_written, n),
            Err((problem, requests)) => {
                let failed = {
                    let lines: Vec<u64> = batch.iter().flat_map(|(c, rows)| rows.clone().filter_map(|r| c.line(r))).collect();
                    let lines = match (lines.first(), lines.last()) {
                        (Some(a), Some(b)) if a != b => format!(" (source lines {a} to {b})"),
                        (Some(a), _) => format!(" (source line {a})"),
                        _ => String::new(),
                    };
                    Error::Delivery {
                        step: self.step.clone(),
                        target: self.cfg.url.clone(),
                        attempts: requests,
                        message: format!(
                            "{} {} failed after {requests} attempt{}: {problem}; a batch of {n} rows{lines} was not delivered (batches before it were; an HTTP sink cannot be rolled back)",
                            self.cfg.method.as_str(),
                            self.cfg.url,
                            if requests == 1 { "" } else { "s" },
                        ),
                    }
                };
                let reason = problem.to_string();
                let seen = self.metrics.rows_in.load(std::sync::atomic::Ordering::Relaxed);
                self.cfg
                    .errors
                    .reject(&self.step, &self.metrics, &self.rejected, n, seen, None, &reason, failed)?;
                if self.errors.connected() {
                    let mut rows = ErrorRows::new(&self.step, &self.schema, false, None);
                    for (chunk, range) in &batch {
                        for r in range.clone() {
                            rows.push_row(chunk, r, None, &reason, requests);
                        }
                    }
                    if let Some(c) = rows.take() {
                        self.errors.send(c)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Locks the shared breaker (a poisoned lock still holds a usable breaker).
fn lock(b: &Mutex<CircuitBreaker>) -> std::sync::MutexGuard<'_, CircuitBreaker> {
    b.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sends one batch with retries; `Ok(Err((problem, requests)))` when it was not delivered.
///
/// Under `WhenOpen: Wait`, a call the breaker refuses — and a transient failure after which
/// the breaker is open (it opened it, or a trial failed) — does not end the batch: it waits
/// for the breaker ([`wait_for_breaker`]) and starts its retries afresh, until the outage
/// passes `MaxOpenSeconds`.
#[allow(clippy::too_many_arguments)]
fn deliver(
    agent: &ureq::Agent,
    cfg: &HttpSinkConfig,
    breaker: &Mutex<CircuitBreaker>,
    rng: &mut Rng,
    cancel: &CancelToken,
    metrics: &StepMetrics,
    body: &[u8],
    key: &str,
) -> Result<std::result::Result<u32, (Problem, u32)>> {
    let wait_mode = cfg.breaker.when_open == WhenOpen::Wait;
    let mut requests = 0u32;
    // The batch's own last failure, quoted when the breaker refuses it afterwards.
    let mut last: Option<Problem> = None;
    loop {
        // A transient failure left the breaker open: wait for it instead of retrying.
        let mut took_over = false;
        // The server's Retry-After on that failure, honoured before the trial call too.
        let mut asked_wait: Option<Duration> = None;
        let mut sleep = |d: Duration| crate::retry::sleep_cancellable(d, cancel);
        let outcome = crate::retry::run(&cfg.retry, rng, &mut sleep, |_| {
            if cancel.is_cancelled() {
                return Attempt::Permanent(None);
            }
            {
                let mut b = lock(breaker);
                if !b.allow() {
                    return Attempt::Permanent(Some(Problem::BreakerOpen {
                        retry_in: b.remaining_open(),
                        last: last.clone().map(Box::new),
                    }));
                }
            }
            requests += 1;
            // Reports a failure; under Wait, true when the breaker is open after it.
            let failed = || {
                let mut b = lock(breaker);
                b.on_failure();
                wait_mode && b.state() != BreakerState::Closed
            };
            let attempt = match HttpSink::send_once(agent, cfg, body, key) {
                Ok((code, _, _)) if (200..300).contains(&code) => {
                    lock(breaker).on_success();
                    Attempt::Done(())
                }
                Ok((code, after, text)) if transient_status(code) => {
                    took_over = failed();
                    let error = Some(Problem::Status { code, body: text });
                    if took_over {
                        asked_wait = after;
                        Attempt::Permanent(error)
                    } else {
                        Attempt::Transient { error, retry_after: after }
                    }
                }
                Ok((code, _, text)) => {
                    lock(breaker).on_success();
                    Attempt::Permanent(Some(Problem::Status { code, body: text }))
                }
                Err(e) => {
                    let transient = transient_error(&e);
                    let open = failed();
                    let problem = Some(Problem::Transport(format!("{e}")));
                    if transient && open {
                        took_over = true;
                        Attempt::Permanent(problem)
                    } else if transient {
                        Attempt::Transient {
                            error: problem,
                            retry_after: None,
                        }
                    } else {
                        Attempt::Permanent(problem)
                    }
                }
            };
            match &attempt {
                Attempt::Transient { error: Some(p), .. } => last = Some(p.clone()),
                Attempt::Permanent(Some(p)) if took_over => last = Some(p.clone()),
                _ => {}
            }
            attempt
        });
        let problem = match outcome? {
            Ok(((), _)) => return Ok(Ok(requests)),
            Err(failed) => match failed.error {
                None => return Err(Error::Cancelled),
                Some(p) => p,
            },
        };
        let refused = matches!(problem, Problem::BreakerOpen { .. });
        if !(wait_mode && (refused || took_over)) {
            return Ok(Err((problem, requests)));
        }
        if let Some(d) = asked_wait {
            // At least what the server asked for (capped at MaxDelayMs), then the breaker.
            let start = std::time::Instant::now();
            crate::retry::sleep_cancellable(cfg.retry.capped(d), cancel)?;
            StepMetrics::add(&metrics.breaker_wait_nanos, start.elapsed().as_nanos() as u64);
        }
        if let Some(outage) = wait_for_breaker(breaker, cancel, metrics)? {
            return Ok(Err((
                Problem::GaveUp {
                    outage,
                    max_open: cfg.breaker.max_open,
                    last: last.map(Box::new),
                },
                requests,
            )));
        }
    }
}

/// Under `WhenOpen: Wait`: sleeps (cancellably) until the breaker lets a call through.
/// `Ok(None)`: go on; `Ok(Some(outage))`: the outage passed `MaxOpenSeconds`, do not wait.
/// The time spent counts in the step's `breaker_wait_nanos`.
///
/// # Errors
/// [`Error::Cancelled`] within [`crate::retry::CANCEL_POLL`] of the run's cancellation.
fn wait_for_breaker(breaker: &Mutex<CircuitBreaker>, cancel: &CancelToken, metrics: &StepMetrics) -> Result<Option<Duration>> {
    let start = std::time::Instant::now();
    let outcome = loop {
        let hint = lock(breaker).wait_hint();
        match hint {
            WaitHint::Go => break Ok(None),
            WaitHint::GiveUp(outage) => break Ok(Some(outage)),
            WaitHint::Sleep(d) => {
                if let Err(e) = crate::retry::sleep_cancellable(d.max(Duration::from_millis(1)), cancel) {
                    break Err(e);
                }
            }
        }
    };
    StepMetrics::add(&metrics.breaker_wait_nanos, start.elapsed().as_nanos() as u64);
    outcome
}

/// Logs a state change of a step's breaker and counts it in the step's metrics.
fn observe(step: String, metrics: Arc<StepMetrics>, when_open: WhenOpen) -> crate::breaker::Observer {
    Box::new(move |t: &Transition| {
        use crate::log::Level;
        let (level, counter, text) = match t.to {
            BreakerState::Open if t.from == BreakerState::Closed => (
                Level::WARN,
                &metrics.breaker_opened,
                format!(
                    "circuit breaker opened after {} consecutive failures; next trial call in {:.1} s ({})",
                    t.failures,
                    t.retry_in.as_secs_f64(),
                    match when_open {
                        WhenOpen::Wait => "WhenOpen: Wait — batches wait",
                        WhenOpen::ErrorPolicy => "WhenOpen: ErrorPolicy — batches go to OnError meanwhile",
                    }
                ),
            ),
            BreakerState::Open => (
                Level::WARN,
                &metrics.breaker_opened,
                format!(
                    "circuit breaker opened again: the trial call failed (down for {:.1} s); next trial call in {:.1} s",
                    t.outage.as_secs_f64(),
                    t.retry_in.as_secs_f64()
                ),
            ),
            BreakerState::HalfOpen => (
                Level::INFO,
                &metrics.breaker_half_opened,
                format!(
                    "circuit breaker half-open: trial call allowed (down for {:.1} s)",
                    t.outage.as_secs_f64()
                ),
            ),
            BreakerState::Closed => (
                Level::INFO,
                &metrics.breaker_closed,
                format!(
                    "circuit breaker closed: the trial succeeded after {:.1} s down",
                    t.outage.as_secs_f64()
                ),
            ),
        };
        StepMetrics::add(counter, 1);
        crate::log::event(level, Some(&step), &text);
    })
}

/// A batch for a sending thread.
struct Job {
    batch: Batch,
    n: u64,
    body: Vec<u8>,
    key: String,
}

/// What a sending thread gives back: the batch, its rows, and how its delivery went.
type Done = (Batch, u64, Result<std::result::Result<u32, (Problem, u32)>>);

/// `Concurrency` threads sending batches. At most `Concurrency` batches wait for a thread
/// besides those being sent; answers come back to the sink's thread, which counts them and
/// applies the error policy.
struct SendPool {
    jobs: Option<crossbeam_channel::Sender<Job>>,
    done: crossbeam_channel::Receiver<Done>,
    handles: Vec<std::thread::JoinHandle<()>>,
    cancel: CancelToken,
}

impl SendPool {
    fn start(sink: &HttpSink) -> Result<SendPool> {
        let n = sink.cfg.concurrency;
        let (jobs, rx) = crossbeam_channel::bounded::<Job>(n);
        let (done_tx, done) = crossbeam_channel::unbounded::<Done>();
        let mut handles = Vec::with_capacity(n);
        for i in 0..n {
            let (rx, done_tx) = (rx.clone(), done_tx.clone());
            let (agent, cfg, breaker, cancel) = (sink.agent.clone(), sink.cfg.clone(), Arc::clone(&sink.breaker), sink.cancel.clone());
            let metrics = Arc::clone(&sink.metrics);
            let mut rng = Rng::seeded(sink.rng.clone().next_u64() ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let h = std::thread::Builder::new()
                .name(format!("{}-send-{i}", sink.step))
                .spawn(move || {
                    for job in rx {
                        let outcome = deliver(&agent, &cfg, &breaker, &mut rng, &cancel, &metrics, &job.body, &job.key);
                        if done_tx.send((job.batch, job.n, outcome)).is_err() {
                            break;
                        }
                    }
                })
                .map_err(|e| Error::Internal(format!("cannot start a sending thread: {e}")))?;
            handles.push(h);
        }
        Ok(SendPool {
            jobs: Some(jobs),
            done,
            handles,
            cancel: sink.cancel.clone(),
        })
    }

    /// Queues a batch (waiting while `Concurrency` batches are queued), and returns the
    /// answers that have come back meanwhile.
    fn submit(&mut self, job: Job) -> Result<Vec<Done>> {
        let Some(jobs) = &self.jobs else {
            return Err(Error::Internal("the sending threads were stopped".into()));
        };
        let mut job = Some(job);
        let mut done = Vec::new();
        while let Some(j) = job.take() {
            match jobs.send_timeout(j, crate::retry::CANCEL_POLL) {
                Ok(()) => {}
                Err(crossbeam_channel::SendTimeoutError::Timeout(j)) => {
                    if self.cancel.is_cancelled() {
                        return Err(Error::Cancelled);
                    }
                    job = Some(j);
                }
                Err(crossbeam_channel::SendTimeoutError::Disconnected(_)) => {
                    return Err(Error::Internal("the sending threads stopped".into()))
                }
            }
            done.extend(self.done.try_iter());
        }
        Ok(done)
    }

    /// No more batches: waits for every answer.
    fn finish(mut self) -> Result<Vec<Done>> {
        self.jobs = None;
        let mut done: Vec<Done> = Vec::new();
        for h in std::mem::take(&mut self.handles) {
            if h.join().is_err() {
                return Err(Error::Internal("a sending thread panicked".into()));
            }
        }
        done.extend(self.done.try_iter());
        Ok(done)
    }
}

/// The header line of a CSV body: the column names, quoted where needed.
fn csv_header(schema: &crate::schema::Schema) -> Vec<u8> {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    // Writing to memory cannot fail.
    let _ = w.write_record(schema.names());
    w.into_inner().unwrap_or_default()
}

/// Writes the value at row `r` of `col` as JSON.
fn write_json(col: &Column, r: usize, decimals: DecimalFormat, out: &mut Vec<u8>) {
    let quoted = |out: &mut Vec<u8>, text: &dyn Fn(&mut Vec<u8>)| {
        out.push(b'"');
        text(out);
        out.push(b'"');
    };
    match col.get(r) {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
        Value::Float64(f) if f.is_nan() => out.extend_from_slice(b"\"NaN\""),
        Value::Float64(f) if f.is_infinite() => out.extend_from_slice(if f > 0.0 { b"\"Infinity\"" } else { b"\"-Infinity\"" }),
        v @ (Value::Int32(_) | Value::Int64(_) | Value::Float64(_)) => v.write_to(out),
        Value::Decimal(d) => match decimals {
            DecimalFormat::Number => d.write_to(out),
            DecimalFormat::String => quoted(out, &|o| d.write_to(o)),
        },
        Value::String(s) => {
            let _ = serde_json::to_writer(&mut *out, &s);
        }
        v @ (Value::Date(_) | Value::DateTime(_) | Value::Time(_)) => quoted(out, &|o| v.write_to(o)),
    }
}

impl Sink for HttpSink {
    fn bind_run(&mut self, cancel: &CancelToken, metrics: &Arc<StepMetrics>) {
        self.cancel = cancel.clone();
        self.metrics = Arc::clone(metrics);
        let observer = observe(self.step.clone(), Arc::clone(metrics), self.cfg.breaker.when_open);
        lock(&self.breaker).set_observer(observer);
    }

    fn bind_errors(&mut self, errors: ErrorOutput) {
        self.errors = errors;
    }

    fn counts_rows(&self) -> bool {
        true
    }

    fn write(&mut self, chunk: &Chunk) -> Result<()> {
        let mut start = 0;
        while start < chunk.len() {
            let room = (self.cfg.batch_size - self.pending_rows).min(chunk.len() - start);
            let mut take = room;
            if let Some(max) = self.cfg.batch_bytes {
                // The rows that fit in BatchBytes; the first row of a batch always does.
                take = 0;
                while take < room {
                    if self.pending_rows + take == 0 {
                        self.pending_bytes = self.body_overhead();
                    }
                    let size = self.row_bytes(chunk, start + take);
                    if self.pending_rows + take > 0 && self.pending_bytes + size > max {
                        break;
                    }
                    self.pending_bytes += size;
                    take += 1;
                }
            }
            if take > 0 {
                self.pending.push((chunk.clone(), start..start + take));
                self.pending_rows += take;
                start += take;
            }
            if self.pending_rows >= self.cfg.batch_size || take < room {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.flush()?;
        self.drain()
    }

    fn commit(&mut self) -> Result<()> {
        Ok(())
    }

    fn abort(&mut self) {
        self.pending.clear();
        // Threads still sending finish their request (bounded by TimeoutSeconds) and stop.
        self.pool = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{DataType, Field, Schema};

    fn sink(format: Format, decimals: DecimalFormat) -> (HttpSink, Chunk) {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("amount", DataType::Decimal, true),
            Field::new("name \"q\"", DataType::String, true),
            Field::new("x", DataType::Float64, true),
            Field::new("d", DataType::Date, true),
            Field::new("ok", DataType::Bool, true),
        ])
        .interned();
        let mut cols: Vec<Column> = schema.fields().iter().map(|f| Column::with_capacity(f.data_type, 2)).collect();
        for (i, t) in [
            "9007199254740993",
            "12345678901234567890.123456789",
            "é\n\"",
            "NaN",
            "2024-01-31",
            "true",
        ]
        .iter()
        .enumerate()
        {
            cols[i].push_text(t).unwrap();
        }
        for (i, t) in ["-1", "0.10", "", "0.1", "", "false"].iter().enumerate() {
            if t.is_empty() {
                cols[i].push_null();
            } else {
                cols[i].push_text(t).unwrap();
            }
        }
        let chunk = Chunk::from_columns(Arc::clone(&schema), cols, vec![2, 3]);
        let cfg = HttpSinkConfig {
            url: "http://127.0.0.1:9/x".into(),
            format,
            decimals,
            ..HttpSinkConfig::default()
        };
        (HttpSink::new("H", cfg, schema), chunk)
    }

    #[test]
    fn rows_keep_their_types_and_every_digit() {
        let (s, c) = sink(Format::JsonLines, DecimalFormat::String);
        let body = String::from_utf8(s.encode(&vec![(c.clone(), 0..2)])).unwrap();
        assert_eq!(
            body,
            "{\"id\":9007199254740993,\"amount\":\"12345678901234567890.123456789\",\"name \\\"q\\\"\":\"é\\n\\\"\",\"x\":\"NaN\",\"d\":\"2024-01-31\",\"ok\":true}\n\
             {\"id\":-1,\"amount\":\"0.10\",\"name \\\"q\\\"\":null,\"x\":0.1,\"d\":null,\"ok\":false}\n"
        );
        for line in body.lines() {
            serde_json::from_str::<serde_json::Value>(line).unwrap();
        }
        let (s, c) = sink(Format::JsonArray, DecimalFormat::Number);
        let body = String::from_utf8(s.encode(&vec![(c.clone(), 0..1), (c, 1..2)])).unwrap();
        assert!(
            body.starts_with("[{\"id\":9007199254740993,\"amount\":12345678901234567890.123456789,"),
            "{body}"
        );
        assert!(body.contains("},{\"id\":-1,\"amount\":0.10,"), "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 2);
    }

    #[test]
    fn statuses_are_classified() {
        for code in [408, 429, 500, 502, 503, 504, 599] {
            assert!(transient_status(code), "{code}");
        }
        for code in [200, 301, 400, 401, 403, 404, 409, 413, 422] {
            assert!(!transient_status(code), "{code}");
        }
        assert!(check_url("https://example.com/x?y=1").is_ok());
        assert!(check_url("ftp://example.com").unwrap_err().contains("http://"));
        assert!(check_url("not a url").is_err());
        assert_eq!(
            Problem::Status {
                code: 503,
                body: "busy".into()
            }
            .to_string(),
            "HTTP 503: busy"
        );
    }
}
