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
//!     Format: json-array                   # json-array (default): [{..},{..}]; json-lines: one object per line
//!     BatchSize: 100                       # rows per request; 1..=100000
//!     Headers: { Authorization: "Bearer ${Token}" }
//!     TimeoutSeconds: 30                   # whole request, connect to last byte; >0..=3600
//!     DecimalFormat: string                # string (default) or number
//!     Retry: { MaxAttempts: 3, InitialDelayMs: 100, MaxDelayMs: 10000, Multiplier: 2, Jitter: full }
//!     CircuitBreaker: { FailureThreshold: 5, ResetTimeoutSeconds: 30, HalfOpenMaxCalls: 1 }
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
//! # Failures
//! A 2xx answer delivers the batch. Transient failures are retried with the `Retry`
//! policy: connection errors, timeouts, 408, 429 and 5xx. A `Retry-After: <seconds>` header
//! on such an answer replaces the backoff delay, capped at `MaxDelayMs`. Permanent failures
//! are not retried: any other status (other 4xx; 1xx and 3xx — redirects are not followed,
//! a POST body must not silently become a GET) and errors such as a TLS failure.
//!
//! The circuit breaker counts consecutive transient failures (and permanent transport
//! errors) across batches; a permanent HTTP answer (e.g. 400) shows the service is up and
//! counts as a success for it. While it is open, attempts fail fast without a request: the
//! batch fails at once (`_error_attempts` counts only requests actually made).
//!
//! When a batch cannot be delivered: `OnError: Fail` (the default) fails the run with
//! [`crate::Error::Delivery`] naming the step, method, URL, status (or transport error) and
//! attempts; `OnError: DeadLetter` writes the batch's rows to `DeadLetterFilePath`
//! (required; see [`crate::dead_letter`]) with the reason — `HTTP <status>: <start of the
//! response body>`, the transport error, or `circuit breaker open` — and goes on; `Skip`
//! is the same with the dead-letter file optional. Rows not delivered count as rejected
//! (and dead-lettered when written there).
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
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::breaker::{BreakerConfig, CircuitBreaker};
use crate::chunk::{Chunk, Column};
use crate::config::{Obj, ParseEnv};
use crate::dead_letter::DeadLetters;
use crate::error::{Error, Result};
use crate::metrics::StepMetrics;
use crate::port::CancelToken;
use crate::retry::{Attempt, RetryPolicy, Rng};
use crate::schema::SchemaRef;
use crate::steps::{BuildContext, PathRole, Sink, StepConfig, StepKind, StepRuntime, StepSettings, StepType};
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
}

/// How decimals are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecimalFormat {
    /// A JSON string of the exact text (default).
    String,
    /// A JSON number with the exact digits.
    Number,
}

/// What to do with a batch that cannot be delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Fail the run (default).
    Fail,
    /// Count the rows as rejected, write them to `DeadLetterFilePath` when set, go on.
    Skip,
    /// As `Skip`, with `DeadLetterFilePath` required.
    DeadLetter,
}

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
    /// Undeliverable batches.
    pub on_error: OnError,
    /// Where undelivered rows go.
    pub dead_letter_file: Option<PathBuf>,
}

impl Default for HttpSinkConfig {
    fn default() -> Self {
        HttpSinkConfig {
            url: String::new(),
            method: Method::Post,
            format: Format::JsonArray,
            batch_size: 100,
            headers: Vec::new(),
            timeout: Duration::from_secs(30),
            decimals: DecimalFormat::String,
            retry: RetryPolicy::default(),
            breaker: BreakerConfig::default(),
            on_error: OnError::Fail,
            dead_letter_file: None,
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
                _ => return Err(v.err(format!("unknown Format '{}'; use json-lines or json-array", crate::error::clip(&s)))),
            };
        }
        if let Some(v) = o.take(&["BatchSize"])? {
            c.batch_size = v.u64_in(1, 100_000)? as usize;
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
        let on_error = o.take(&["OnError", "ErrorPolicy"])?;
        if let Some(v) = &on_error {
            let s = v.string()?;
            c.on_error = match s.trim().to_ascii_lowercase().as_str() {
                "fail" | "stop" => OnError::Fail,
                "skip" | "continue" => OnError::Skip,
                "deadletter" | "dead-letter" | "dead_letter" => OnError::DeadLetter,
                _ => {
                    return Err(v.err(format!(
                        "unknown OnError '{}'; use Fail, DeadLetter or Skip",
                        crate::error::clip(&s)
                    )))
                }
            };
        }
        let dl = o.take(&["DeadLetterFilePath", "DeadLetterFile", "RejectFilePath"])?;
        if let Some(n) = &dl {
            c.dead_letter_file = Some(env.path(n)?);
            if c.on_error == OnError::Fail {
                env.notes.push(format!("{} (line {}) has no effect: OnError is Fail, so an undeliverable batch fails the run; set OnError: DeadLetter to keep rejected rows", n.path, n.node.line));
            }
        }
        if let (Some(v), None, OnError::DeadLetter) = (&on_error, &dl, c.on_error) {
            return Err(v.err("OnError: DeadLetter needs DeadLetterFilePath (where undelivered rows go)"));
        }
        Ok(c)
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<StepRuntime> {
        let schema = ctx.require_input()?;
        let dead_letters = match (&self.dead_letter_file, self.on_error) {
            (Some(path), OnError::Skip | OnError::DeadLetter) => {
                crate::dead_letter::check_schema(ctx.name, &schema)?;
                Some(DeadLetters::new(path, ctx.name, &schema))
            }
            _ => None,
        };
        Ok(StepRuntime::Sink(Box::new(HttpSink::new(
            ctx.name,
            self.clone(),
            schema,
            dead_letters,
        ))))
    }
}

impl StepSettings for HttpSinkConfig {
    fn build(&self, ctx: &BuildContext<'_>) -> Result<StepRuntime> {
        HttpSinkConfig::build(self, ctx)
    }
    fn file_paths(&self) -> Vec<(PathRole, &'static str, &std::path::Path)> {
        // Under `OnError: Fail` the file is never written.
        match (&self.dead_letter_file, self.on_error) {
            (Some(d), OnError::Skip | OnError::DeadLetter) => vec![(PathRole::Output, "DeadLetterFilePath", d.as_path())],
            _ => Vec::new(),
        }
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
    breaker: CircuitBreaker,
    rng: Rng,
    cancel: CancelToken,
    metrics: Arc<StepMetrics>,
    pending: Batch,
    pending_rows: usize,
    dead_letters: Option<DeadLetters>,
}

impl HttpSink {
    fn new(step: &str, cfg: HttpSinkConfig, schema: SchemaRef, dead_letters: Option<DeadLetters>) -> HttpSink {
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
            breaker: CircuitBreaker::new(cfg.breaker.clone()),
            cfg,
            keys,
            agent,
            rng: Rng::from_entropy(),
            cancel: CancelToken::new(),
            metrics: Arc::new(StepMetrics::default()),
            pending: Vec::new(),
            pending_rows: 0,
            dead_letters,
        }
    }

    /// The request body of a batch.
    fn encode(&self, batch: &Batch) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 * self.pending_rows.max(1));
        if self.cfg.format == Format::JsonArray {
            out.push(b'[');
        }
        let mut first = true;
        for (chunk, rows) in batch {
            for r in rows.clone() {
                if self.cfg.format == Format::JsonArray && !first {
                    out.push(b',');
                }
                first = false;
                out.push(b'{');
                for (i, col) in chunk.columns().iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(&self.keys[i]);
                    write_json(col, r, self.cfg.decimals, &mut out);
                }
                out.push(b'}');
                if self.cfg.format == Format::JsonLines {
                    out.push(b'\n');
                }
            }
        }
        if self.cfg.format == Format::JsonArray {
            out.push(b']');
        }
        out
    }

    /// One request: the status, `Retry-After` and a body snippet, or a transport error.
    fn send_once(
        agent: &ureq::Agent,
        cfg: &HttpSinkConfig,
        body: &[u8],
    ) -> std::result::Result<(u16, Option<Duration>, String), ureq::Error> {
        let mut req = match cfg.method {
            Method::Post => agent.post(&cfg.url),
            Method::Put => agent.put(&cfg.url),
        };
        if !cfg.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
            let ct = match cfg.format {
                Format::JsonArray => "application/json",
                Format::JsonLines => "application/x-ndjson",
            };
            req = req.header("Content-Type", ct);
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

    /// Sends one batch with retries; `Ok(Err((problem, requests)))` when it was not
    /// delivered.
    fn deliver(&mut self, body: &[u8]) -> Result<std::result::Result<u32, (Problem, u32)>> {
        let mut requests = 0u32;
        let cancel = self.cancel.clone();
        let mut sleep = |d: Duration| crate::retry::sleep_cancellable(d, &cancel);
        let (agent, cfg, breaker) = (&self.agent, &self.cfg, &mut self.breaker);
        let mut last: Option<Problem> = None;
        let outcome = crate::retry::run(&cfg.retry, &mut self.rng, &mut sleep, |_| {
            if cancel.is_cancelled() {
                return Attempt::Permanent(None);
            }
            if !breaker.allow() {
                return Attempt::Permanent(Some(Problem::BreakerOpen {
                    retry_in: breaker.remaining_open(),
                    last: last.take().map(Box::new),
                }));
            }
            requests += 1;
            let attempt = match HttpSink::send_once(agent, cfg, body) {
                Ok((code, _, _)) if (200..300).contains(&code) => {
                    breaker.on_success();
                    Attempt::Done(())
                }
                Ok((code, after, text)) if transient_status(code) => {
                    breaker.on_failure();
                    Attempt::Transient {
                        error: Some(Problem::Status { code, body: text }),
                        retry_after: after,
                    }
                }
                Ok((code, _, text)) => {
                    breaker.on_success();
                    Attempt::Permanent(Some(Problem::Status { code, body: text }))
                }
                Err(e) => {
                    breaker.on_failure();
                    let problem = Some(Problem::Transport(format!("{e}")));
                    if transient_error(&e) {
                        Attempt::Transient {
                            error: problem,
                            retry_after: None,
                        }
                    } else {
                        Attempt::Permanent(problem)
                    }
                }
            };
            if let Attempt::Transient { error: Some(p), .. } = &attempt {
                last = Some(p.clone());
            }
            attempt
        });
        match outcome? {
            Ok(((), _)) => Ok(Ok(requests)),
            Err(failed) => match failed.error {
                None => Err(Error::Cancelled),
                Some(p) => Ok(Err((p, requests))),
            },
        }
    }

    /// Sends the pending rows as one batch.
    fn flush(&mut self) -> Result<()> {
        if self.pending_rows == 0 {
            return Ok(());
        }
        if self.cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        let batch = std::mem::take(&mut self.pending);
        let n = std::mem::take(&mut self.pending_rows) as u64;
        let body = self.encode(&batch);
        match self.deliver(&body)? {
            Ok(_) => StepMetrics::add(&self.metrics.rows_written, n),
            Err((problem, requests)) => {
                if self.cfg.on_error == OnError::Fail {
                    let lines: Vec<u64> = batch.iter().flat_map(|(c, rows)| rows.clone().filter_map(|r| c.line(r))).collect();
                    let lines = match (lines.first(), lines.last()) {
                        (Some(a), Some(b)) if a != b => format!(" (source lines {a} to {b})"),
                        (Some(a), _) => format!(" (source line {a})"),
                        _ => String::new(),
                    };
                    return Err(Error::Delivery {
                        step: self.step.clone(),
                        target: self.cfg.url.clone(),
                        attempts: requests,
                        message: format!(
                            "{} {} failed after {requests} attempt{}: {problem}; a batch of {n} rows{lines} was not delivered (batches before it were; an HTTP sink cannot be rolled back)",
                            self.cfg.method.as_str(),
                            self.cfg.url,
                            if requests == 1 { "" } else { "s" },
                        ),
                    });
                }
                StepMetrics::add(&self.metrics.rows_rejected, n);
                if let Some(d) = &mut self.dead_letters {
                    let reason = problem.to_string();
                    for (chunk, rows) in &batch {
                        for r in rows.clone() {
                            d.write(chunk, r, &reason, chunk.line(r), requests)?;
                        }
                    }
                    StepMetrics::add(&self.metrics.rows_dead_lettered, n);
                }
            }
        }
        Ok(())
    }
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
    }

    fn counts_rows(&self) -> bool {
        true
    }

    fn write(&mut self, chunk: &Chunk) -> Result<()> {
        let mut start = 0;
        while start < chunk.len() {
            let take = (self.cfg.batch_size - self.pending_rows).min(chunk.len() - start);
            self.pending.push((chunk.clone(), start..start + take));
            self.pending_rows += take;
            start += take;
            if self.pending_rows >= self.cfg.batch_size {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.flush()
    }

    fn prepare(&mut self) -> Result<()> {
        match &mut self.dead_letters {
            Some(d) => d.prepare(),
            None => Ok(()),
        }
    }

    fn commit(&mut self) -> Result<()> {
        match &mut self.dead_letters {
            Some(d) => d.commit(),
            None => Ok(()),
        }
    }

    fn rollback(&mut self) {
        if let Some(d) = &mut self.dead_letters {
            d.rollback();
        }
    }

    fn abort(&mut self) {
        self.pending.clear();
        if let Some(d) = &mut self.dead_letters {
            d.abort();
        }
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
        (HttpSink::new("H", cfg, schema, None), chunk)
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
