//! Failure handling (issue 13): dead letters of `JavaScriptTransform` and `HttpSink`,
//! retries with backoff, the circuit breaker, cancellation during a backoff, and that every
//! row is accounted for.
//!
//! The HTTP tests talk to a small server on 127.0.0.1 (std's `TcpListener`), which answers
//! by a fixed rule per request number and stores the rows of the requests it answers 2xx —
//! as an idempotent endpoint would. Every server stops by itself after a bounded time.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

use common::Scenario;
use flowengine::{CancelToken, Error, Pipeline};

/// What the server answers to request `n` (0-based): status, extra headers, body.
type Rule = dyn Fn(u64) -> (u16, &'static str, &'static str) + Send + Sync;

#[derive(Default)]
struct Seen {
    requests: u64,
    /// Rows of requests answered 2xx, as JSON objects.
    stored: Vec<serde_json::Value>,
    methods: Vec<String>,
    content_types: Vec<String>,
    /// The `Idempotency-Key` of each request.
    keys: Vec<String>,
    /// The body size of each request.
    sizes: Vec<usize>,
    /// Rows by idempotency key, stored the first time a key is seen whatever the answer — as
    /// a receiver that deduplicates by key (and stores before it fails) would.
    by_key: BTreeMap<String, Vec<serde_json::Value>>,
    /// When each request's body had arrived.
    times: Vec<Instant>,
}

struct Server {
    url: String,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(rule: Box<Rule>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}/ingest", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (Arc::clone(&seen), Arc::clone(&stop));
        let handle = std::thread::spawn(move || {
            // Bounded: a test server never outlives a minute.
            let end = Instant::now() + Duration::from_secs(60);
            while !stop2.load(Ordering::Relaxed) && Instant::now() < end {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = handle(stream, &*rule, &seen2);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Server {
            url,
            seen,
            stop,
            handle: Some(handle),
        }
    }

    fn requests(&self) -> u64 {
        self.seen.lock().unwrap().requests
    }

    /// Stored rows' `id`s, counted.
    fn ids(&self) -> BTreeMap<i64, u32> {
        let mut m = BTreeMap::new();
        for row in &self.seen.lock().unwrap().stored {
            *m.entry(row["id"].as_i64().unwrap()).or_insert(0) += 1;
        }
        m
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// One request per connection (`Connection: close`).
fn handle(stream: TcpStream, rule: &Rule, seen: &Mutex<Seen>) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut length = 0usize;
    let mut content_type = String::new();
    let mut expect = false;
    let mut key = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':').unwrap_or((line, ""));
        match k.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = v.trim().parse().unwrap_or(0),
            "content-type" => content_type = v.trim().to_owned(),
            "idempotency-key" => key = v.trim().to_owned(),
            "expect" => expect = v.trim().eq_ignore_ascii_case("100-continue"),
            _ => {}
        }
    }
    let mut out = stream;
    if expect {
        out.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let rows = parse_rows(&content_type, &body);
    let n = {
        let mut s = seen.lock().unwrap();
        s.requests += 1;
        s.keys.push(key.clone());
        s.times.push(Instant::now());
        s.sizes.push(body.len());
        s.by_key.entry(key).or_insert_with(|| rows.clone());
        s.methods.push(request_line.split(' ').next().unwrap_or("").to_owned());
        s.content_types.push(content_type);
        s.requests - 1
    };
    let (status, headers, text) = rule(n);
    if (200..300).contains(&status) {
        seen.lock().unwrap().stored.extend(rows);
    }
    let reply = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n{text}",
        text.len()
    );
    out.write_all(reply.as_bytes())?;
    out.flush()
}

/// A request body's rows as JSON objects (a CSV body's values as strings).
fn parse_rows(content_type: &str, body: &[u8]) -> Vec<serde_json::Value> {
    if content_type.starts_with("text/csv") {
        let mut r = csv::Reader::from_reader(body);
        let h = r.headers().unwrap().clone();
        return r
            .records()
            .map(|rec| {
                let rec = rec.unwrap();
                serde_json::Value::Object(h.iter().zip(rec.iter()).map(|(k, v)| (k.to_owned(), v.into())).collect())
            })
            .collect();
    }
    let body = std::str::from_utf8(body).unwrap();
    if body.trim_start().starts_with('[') {
        serde_json::from_str::<Vec<serde_json::Value>>(body).unwrap()
    } else {
        body.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

/// `n` rows `id,name` (ids 1..=n).
fn csv_rows(n: usize) -> String {
    let mut s = String::from("id,name\n");
    for i in 1..=n {
        s.push_str(&format!("{i},name {i}\n"));
    }
    s
}

const SOURCE: &str = "    - Name: Src
      Type: DelimitedSource
      Config:
        FilePath: in.csv
        HasHeaders: true
        ChunkSize: 37
        OutputSchema:
          Columns:
            - { Name: id, Type: int64, IsNullable: false }
            - { Name: name, Type: string, IsNullable: true }
";

fn http_pipeline(url: &str, extra: &str) -> String {
    let mut y =
        format!("Pipeline:\n  Name: http\n  Plugins:\n{SOURCE}    - Name: Post\n      Type: HttpSink\n      Config:\n        Url: {url}\n");
    for line in extra.lines() {
        y.push_str("        ");
        y.push_str(line);
        y.push('\n');
    }
    y
}

/// Reads a CSV file into records.
fn records(text: &str) -> Vec<Vec<String>> {
    csv::Reader::from_reader(text.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

/// The header of an error output's CSV: the record's columns, then the error columns.
fn error_header(record: &[&str]) -> Vec<String> {
    record
        .iter()
        .copied()
        .chain([
            "_error_step",
            "_error_field",
            "_error_reason",
            "_error_file",
            "_error_line",
            "_error_time",
            "_error_attempts",
        ])
        .map(str::to_owned)
        .collect()
}

fn header(text: &str) -> Vec<String> {
    csv::Reader::from_reader(text.as_bytes())
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_flaky_server_gets_every_row_exactly_once() {
    // 30 % of requests fail: numbers 2, 5 and 8 of every ten; 503, or 429 with Retry-After: 0.
    let server = Server::start(Box::new(|n| match n % 10 {
        2 | 8 => (503, "", "busy"),
        5 => (429, "Retry-After: 0\r\n", "slow down"),
        _ => (200, "", "ok"),
    }));
    let s = Scenario::new();
    s.write("in.csv", &csv_rows(1000));
    let yaml = http_pipeline(
        &server.url,
        "Format: json-lines\nBatchSize: 10\nRetry: { MaxAttempts: 5, InitialDelayMs: 1, MaxDelayMs: 5, Jitter: full }\nCircuitBreaker: { FailureThreshold: 10 }",
    );
    let summary = s.run(&yaml).unwrap();
    let ids = server.ids();
    assert_eq!(ids.len(), 1000, "every row arrives");
    assert!(ids.iter().all(|(_, &n)| n == 1), "no row twice");
    assert_eq!(ids.keys().copied().collect::<Vec<_>>(), (1..=1000).collect::<Vec<i64>>());
    let requests = server.requests();
    // 100 batches, each failed request retried: about 100 / 0.7 requests in all.
    assert!((130..=150).contains(&requests), "{requests}");
    let post = summary.step("Post").unwrap();
    assert_eq!(
        (post.rows_in, post.rows_written, post.rows_rejected, post.rows_dead_lettered),
        (1000, 1000, 0, 0)
    );
    assert_eq!(post.rows_out, 1000);
    let seen = server.seen.lock().unwrap();
    assert!(seen.methods.iter().all(|m| m == "POST"));
    assert!(
        seen.content_types.iter().all(|c| c == "application/x-ndjson"),
        "{:?}",
        seen.content_types[0]
    );
}

#[test]
fn a_dead_server_dead_letters_every_row_and_the_breaker_stops_the_requests() {
    let server = Server::start(Box::new(|_| (503, "", "overloaded, try later")));
    let s = Scenario::new();
    s.write("in.csv", &csv_rows(100));
    let yaml = http_pipeline(
        &server.url,
        "Method: PUT\nBatchSize: 10\nRetry: { MaxAttempts: 3, InitialDelayMs: 1, MaxDelayMs: 2 }\nCircuitBreaker: { FailureThreshold: 4, ResetTimeoutSeconds: 60 }\nOnError: DeadLetter\nDeadLetterFilePath: failed/dead.csv",
    );
    let summary = s.run(&yaml).unwrap();
    // Without the breaker: 10 batches × 3 attempts. With it: 3 for the first batch, one
    // more opens it, and the rest fail fast.
    assert_eq!(server.requests(), 4);
    assert!(server.requests() < 10 * 3);
    assert!(server.ids().is_empty());
    let post = summary.step("Post").unwrap();
    assert_eq!(
        (post.rows_in, post.rows_written, post.rows_rejected, post.rows_dead_lettered),
        (100, 0, 100, 100)
    );
    assert!(post.outputs.iter().any(|o| o.ends_with("dead.csv")), "{:?}", post.outputs);
    let text = s.read("failed/dead.csv");
    assert_eq!(header(&text), error_header(&["id", "name"]));
    let recs = records(&text);
    assert_eq!(recs.len(), 100, "every row");
    for (i, r) in recs.iter().enumerate() {
        let id = i + 1;
        assert_eq!(r[0], id.to_string());
        assert_eq!(r[1], format!("name {id}"));
        assert_eq!(r[2], "Post");
        assert_eq!(r[3], "", "no field");
        assert_eq!(r[6], (id + 1).to_string(), "source line");
        match id {
            1..=10 => assert_eq!((r[4].as_str(), r[8].as_str()), ("HTTP 503: overloaded, try later", "3")),
            11..=20 => {
                // Its one request failed, which opened the breaker: its second attempt failed fast.
                assert!(
                    r[4].starts_with("HTTP 503: overloaded, try later; then circuit breaker open"),
                    "{}",
                    r[4]
                );
                assert_eq!(r[8], "1");
            }
            _ => {
                assert!(r[4].starts_with("circuit breaker open"), "{}", r[4]);
                assert_eq!(r[8], "0", "no request made");
            }
        }
    }
    // The summary's top reasons: masked numbers, the HTTP status kept.
    let reasons: Vec<(&str, u64)> = post.top_reasons.iter().map(|r| (r.reason.as_str(), r.count)).collect();
    assert_eq!(reasons[0].1, 80, "{reasons:?}");
    assert!(reasons[0].0.starts_with("circuit breaker open"), "{reasons:?}");
    assert!(reasons.contains(&("HTTP 503: overloaded, try later", 10)), "{reasons:?}");
    assert!(server.seen.lock().unwrap().methods.iter().all(|m| m == "PUT"));
}

#[test]
fn a_permanent_error_is_not_retried_and_fails_the_run_naming_step_url_and_status() {
    let server = Server::start(Box::new(|_| (422, "", "field 'id' is invalid")));
    let s = Scenario::new();
    s.write("in.csv", &csv_rows(25));
    let yaml = http_pipeline(
        &server.url,
        "BatchSize: 10\nRetry: { MaxAttempts: 5, InitialDelayMs: 1, MaxDelayMs: 1 }",
    );
    let err = s.run(&yaml).unwrap_err();
    let Error::Delivery {
        step, target, attempts, ..
    } = &err
    else {
        panic!("expected a delivery error, got {err:?}")
    };
    assert_eq!((step.as_str(), target.as_str(), *attempts), ("Post", server.url.as_str(), 1));
    let msg = err.to_string();
    assert!(msg.contains("step 'Post'") && msg.contains(&server.url), "{msg}");
    assert!(msg.contains("HTTP 422: field 'id' is invalid"), "{msg}");
    assert!(msg.contains("after 1 attempt:"), "{msg}");
    assert!(msg.contains("source lines 2 to 11"), "{msg}");
    assert_eq!(err.exit_code(), 4);
    assert_eq!(server.requests(), 1, "a 4xx is not retried");
}

#[test]
fn exhausted_retries_fail_the_run_with_the_attempts() {
    let server = Server::start(Box::new(|_| (500, "", "")));
    let s = Scenario::new();
    s.write("in.csv", &csv_rows(5));
    let yaml = http_pipeline(
        &server.url,
        "Retry: { MaxAttempts: 3, InitialDelayMs: 1, MaxDelayMs: 1 }\nOnError: Fail\nDeadLetterFilePath: dead.csv",
    );
    let err = s.run(&yaml).unwrap_err().to_string();
    assert!(err.contains("failed after 3 attempts: HTTP 500;"), "{err}");
    assert_eq!(server.requests(), 3);
    assert!(!s.path("dead.csv").exists());
}

#[test]
fn cancelling_during_a_backoff_stops_promptly() {
    let server = Server::start(Box::new(|_| (503, "", "")));
    let s = Scenario::new();
    s.write("in.csv", &csv_rows(10));
    let yaml = http_pipeline(
        &server.url,
        "Retry: { MaxAttempts: 5, InitialDelayMs: 30000, MaxDelayMs: 30000, Jitter: none }\nOnError: DeadLetter\nDeadLetterFilePath: dead.csv",
    );
    let pipeline = s.build(&yaml).unwrap();
    let cancel = CancelToken::new();
    let c2 = cancel.clone();
    let run = std::thread::spawn(move || pipeline.run_with_cancel(c2));
    let wait_end = Instant::now() + Duration::from_secs(20);
    while server.requests() == 0 && Instant::now() < wait_end {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(server.requests(), 1, "the first attempt was made");
    // Now in a 30 s backoff.
    std::thread::sleep(Duration::from_millis(50));
    let cancelled_at = Instant::now();
    cancel.cancel();
    let result = run.join().unwrap();
    let took = cancelled_at.elapsed();
    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
    assert!(took < Duration::from_secs(3), "stopped after {took:?}");
    assert_eq!(server.requests(), 1);
    assert!(!s.path("dead.csv").exists(), "a cancelled run publishes no dead letters");
}

const JS_PIPELINE: &str = "Pipeline:
  Name: js
  Plugins:
__SOURCE__    - Name: JS
      Type: JavaScriptTransform
      Config:
        Script: |
          function process(context) {
            const row = context.input.current();
            if (row.id % 7 === 0) { throw new Error('id ' + row.id + ' is a multiple of 7'); }
            if (row.id % 10 === 0) { return false; }
            context.output.setField('id', row.id);
            context.output.setField('name', row.name);
            return true;
          }
        OutputSchema:
          Fields:
            - { Name: id, Type: long, Required: true }
            - { Name: name, Type: string, Required: false }
        Workers: 2
__EXTRA__
    - Name: Out
      Type: DelimitedSink
      Config:
        FilePath: out.csv
";

fn js_pipeline(extra: &str) -> String {
    let extra: String = extra.lines().map(|l| format!("        {l}\n")).collect();
    JS_PIPELINE.replace("__SOURCE__", SOURCE).replace("__EXTRA__\n", &extra)
}

#[test]
fn a_script_that_throws_dead_letters_exactly_those_rows_with_the_message() {
    let s = Scenario::new();
    s.write("in.csv", &csv_rows(500));
    let summary = s
        .run(&js_pipeline(
            "OnError: DeadLetter\nMaxErrors: 1000\nDeadLetterFilePath: js-dead.csv",
        ))
        .unwrap();
    let text = s.read("js-dead.csv");
    assert_eq!(header(&text), error_header(&["id", "name"]));
    // In input order, with two workers too.
    let recs = records(&text);
    let expected: Vec<u64> = (1..=500).filter(|i| i % 7 == 0).collect();
    assert_eq!(recs.iter().map(|r| r[0].parse::<u64>().unwrap()).collect::<Vec<_>>(), expected);
    for r in &recs {
        let id: u64 = r[0].parse().unwrap();
        assert_eq!(r[1], format!("name {id}"));
        assert_eq!(r[2], "JS");
        assert!(r[4].contains(&format!("id {id} is a multiple of 7")), "{}", r[4]);
        assert_eq!(r[6], (id + 1).to_string());
        assert_eq!(r[8], "1");
    }
    let js = summary.step("JS").unwrap();
    let rejected = expected.len() as u64;
    let filtered = (1..=500u64).filter(|i| i % 10 == 0 && i % 7 != 0).count() as u64;
    assert_eq!(
        (js.rows_rejected, js.rows_dead_lettered, js.rows_filtered),
        (rejected, rejected, filtered)
    );
    assert_eq!(
        js.rows_in,
        js.rows_out + js.rows_filtered + js.rows_rejected,
        "every row accounted for"
    );
    assert_eq!(s.read("out.csv").lines().count() as u64, 1 + js.rows_out);
    assert!(js.outputs.iter().any(|o| o.ends_with("js-dead.csv")), "{:?}", js.outputs);
}

#[test]
fn a_failed_run_publishes_no_dead_letter_file() {
    let s = Scenario::new();
    s.write("in.csv", &csv_rows(500));
    // An old dead-letter file stays as it was.
    s.write("js-dead.csv", "old\n");
    let err = s
        .run(&js_pipeline("OnError: DeadLetter\nMaxErrors: 3\nDeadLetterFilePath: js-dead.csv"))
        .unwrap_err();
    assert!(matches!(err, Error::TooManyErrors { .. }), "{err:?}");
    assert_eq!(s.read("js-dead.csv"), "old\n");
    assert!(!s.path("out.csv").exists());
    // No temp file left behind.
    let mut left: Vec<String> = std::fs::read_dir(s.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, vec!["in.csv", "js-dead.csv", "pipeline.yaml"]);
}

#[test]
fn skip_keeps_working_without_a_dead_letter_file() {
    let s = Scenario::new();
    s.write("in.csv", &csv_rows(100));
    let summary = s.run(&js_pipeline("OnError: Skip")).unwrap();
    let js = summary.step("JS").unwrap();
    assert_eq!((js.rows_rejected, js.rows_dead_lettered), (14, 0));
}

/// The error of a pipeline that must not build.
fn build_error(s: &Scenario, yaml: &str) -> String {
    match s.build(yaml) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn dead_letter_config_errors_name_the_line() {
    let s = Scenario::new();
    s.write("in.csv", &csv_rows(3));
    let err = build_error(&s, &js_pipeline("OnError: DeadLetter"));
    assert!(err.contains("pipeline.yaml:") && err.contains("needs DeadLetterFilePath"), "{err}");
    // A dead-letter file that is another output's file.
    let err = build_error(&s, &js_pipeline("OnError: DeadLetter\nDeadLetterFilePath: out.csv"));
    assert!(err.contains("DeadLetterFilePath") && err.contains("same file"), "{err}");
    let err = build_error(&s, &http_pipeline("ftp://x", ""));
    assert!(err.contains("pipeline.yaml:") && err.contains("http://"), "{err}");
    let err = build_error(&s, &http_pipeline("http://127.0.0.1:9/", "Retry: { MaxAttempts: 0 }"));
    assert!(err.contains("MaxAttempts") && err.contains("allowed: 1 to 100"), "{err}");
    let err = build_error(&s, &http_pipeline("http://127.0.0.1:9/", "OnError: DeadLetter"));
    assert!(err.contains("needs DeadLetterFilePath"), "{err}");
}

#[test]
fn validating_an_http_pipeline_sends_nothing() {
    let server = Server::start(Box::new(|_| (200, "", "")));
    let s = Scenario::new();
    s.write("in.csv", &csv_rows(3));
    let p: Pipeline = s.build(&http_pipeline(&server.url, "")).unwrap();
    drop(p);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(server.requests(), 0);
}

#[test]
fn a_json_array_batch_carries_typed_values() {
    let server = Server::start(Box::new(|_| (201, "", "")));
    let s = Scenario::new();
    s.write("in.csv", "id,name\n9007199254740993,\"a \"\"quoted\"\" name\"\n2,\n");
    let summary = s.run(&http_pipeline(&server.url, "Format: json-array")).unwrap();
    assert_eq!(summary.step("Post").unwrap().rows_written, 2);
    let seen = server.seen.lock().unwrap();
    assert_eq!(seen.content_types, vec!["application/json"]);
    assert_eq!(seen.stored[0]["id"].as_i64(), Some(9_007_199_254_740_993));
    assert_eq!(seen.stored[0]["name"], "a \"quoted\" name");
    assert!(seen.stored[1]["name"].is_null());
}

// ------------------------------------------------------------ the error output of every step

/// Source → `out.csv`; `src.errors` → `dead.csv`, connected explicitly.
fn source_with_error_output(policy: &str, columns: &str) -> String {
    format!(
        "Pipeline:
  Name: errors
  Plugins:
    - Name: src
      Type: DelimitedSource
      Config:
        FilePath: in.csv
        {policy}
        OutputSchema:
          Columns:
{columns}
    - {{ Name: out, Type: DelimitedSink, Config: {{ FilePath: out.csv }} }}
    - {{ Name: dead, Type: DelimitedSink, Config: {{ FilePath: dead.csv }} }}
  Connections:
    - {{ From: src, To: out }}
    - {{ From: src.errors, To: dead }}
"
    )
}

const TYPED_COLUMNS: &str = "            - { Name: id, Type: int32, IsNullable: false }
            - { Name: name, Type: string }
            - { Name: amount, Type: decimal }";

/// Lines 2..=9 of `in.csv`: three good rows, five malformed ones of four kinds.
const MIXED_INPUT: &str = "id,name,amount
1,a,1.5
x,b,2
3,c
4,d,4
5,e,oops
,f,6
7,\"g, quoted\",7
y,h,8
";

#[test]
fn source_parse_errors_go_to_the_error_output_and_every_row_is_accounted_for() {
    let s = Scenario::new();
    s.write("in.csv", MIXED_INPUT);
    let summary = s
        .run(&source_with_error_output(
            "OnError: DeadLetter\n        MaxErrors: 5",
            TYPED_COLUMNS,
        ))
        .unwrap();
    // By hand: 8 records; lines 2, 5 and 8 are good; 3 and 9 have a bad id, 4 misses a
    // field, 6 has a bad amount, 7 an empty id.
    let src = summary.step("src").unwrap();
    assert_eq!((src.rows_in, src.rows_out, src.rows_rejected, src.rows_dead_lettered), (8, 3, 5, 5));
    assert_eq!(
        src.rows_in,
        src.rows_out + src.rows_dead_lettered + (src.rows_rejected - src.rows_dead_lettered),
        "in = out + dead-lettered + skipped"
    );
    assert_eq!(summary.step("out").unwrap().rows_written, 3);
    assert_eq!(summary.step("dead").unwrap().rows_written, 5);
    assert_eq!(s.read("out.csv"), "id,name,amount\n1,a,1.5\n4,d,4\n7,\"g, quoted\",7\n");
    let text = s.read("dead.csv");
    let mut h = error_header(&["id", "name", "amount"]);
    h.push("_error_record".into());
    assert_eq!(header(&text), h);
    let recs = records(&text);
    let got: Vec<[&str; 6]> = recs
        .iter()
        .map(|r| {
            [
                r[0].as_str(),
                r[1].as_str(),
                r[2].as_str(),
                r[4].as_str(),
                r[7].as_str(),
                r[10].as_str(),
            ]
        })
        .collect();
    // fields as text, _error_field, _error_line, _error_record
    assert_eq!(
        got,
        vec![
            ["x", "b", "2", "id", "3", "x,b,2"],
            ["3", "c", "", "#2", "4", "3,c"],
            ["5", "e", "oops", "amount", "6", "5,e,oops"],
            ["", "f", "6", "id", "7", ",f,6"],
            ["y", "h", "8", "id", "9", "y,h,8"],
        ]
    );
    for r in &recs {
        assert_eq!(r[3], "src");
        assert!(!r[5].is_empty(), "a reason");
        assert!(r[6].ends_with("in.csv"), "source file: {}", r[6]);
        assert!(r[8].len() >= 20 && r[8].ends_with('Z'), "time: {}", r[8]);
        assert_eq!(r[9], "1");
    }
    assert!(recs[1][5].contains("expected 3 fields, found 2"), "{}", recs[1][5]);
    // The top reasons, values masked: the two bad ids are one reason.
    let top = &src.top_reasons;
    assert_eq!(top.len(), 4, "{top:?}");
    assert_eq!(top[0].count, 2, "{top:?}");
    assert!(top[0].reason.starts_with("id: '…'"), "{top:?}");
    assert_eq!(top.iter().map(|r| r.count).sum::<u64>(), 5);
    // `run --json` prints the summary as serialized here.
    let json = serde_json::to_value(&summary).unwrap();
    assert_eq!(json["steps"][0]["top_reasons"][0]["count"], 2);

    // The dead-letter CSV is an input as it stands: the same source config (the column types
    // fixed) reads its records back and ignores the error columns.
    let fixed = "            - { Name: id, Type: string }
            - { Name: name, Type: string }
            - { Name: amount, Type: string }";
    std::fs::rename(s.path("dead.csv"), s.path("in.csv")).unwrap();
    let again = s.run(&source_with_error_output("OnError: DeadLetter", fixed)).unwrap();
    let src = again.step("src").unwrap();
    assert_eq!((src.rows_in, src.rows_out, src.rows_rejected), (5, 5, 0));
    assert_eq!(s.read("out.csv"), "id,name,amount\nx,b,2\n3,c,\n5,e,oops\n,f,6\ny,h,8\n");
}

#[test]
fn skip_without_an_error_output_counts_the_rows_as_skipped() {
    let s = Scenario::new();
    s.write("in.csv", MIXED_INPUT);
    let yaml = source_with_error_output("SkipMalformedRows: true", TYPED_COLUMNS)
        .replace("    - { From: src.errors, To: dead }\n", "")
        .replace("    - { Name: dead, Type: DelimitedSink, Config: { FilePath: dead.csv } }\n", "");
    let summary = s.run(&yaml).unwrap();
    let src = summary.step("src").unwrap();
    assert_eq!((src.rows_in, src.rows_out, src.rows_rejected, src.rows_dead_lettered), (8, 3, 5, 0));
    // OnError: DeadLetter with nowhere to send the rows is refused before anything runs.
    let yaml = yaml.replace("SkipMalformedRows: true", "OnError: DeadLetter");
    let err = build_error(&s, &yaml);
    assert!(err.contains("pipeline.yaml:") && err.contains("From: src.errors"), "{err}");
}

#[test]
fn max_error_rate_is_checked_after_a_sample_and_lifts_the_default_max_errors() {
    let s = Scenario::new();
    // 3,000 rows, every 10th with a bad id: 10 % (300 rows, past the default MaxErrors).
    let mut text = String::from("id,name,amount\n");
    for i in 1..=3000 {
        if i % 10 == 0 {
            text.push_str(&format!("bad{i},n,1\n"));
        } else {
            text.push_str(&format!("{i},n,1\n"));
        }
    }
    s.write("in.csv", &text);
    let summary = s
        .run(&source_with_error_output("OnError: Skip\n        MaxErrorRate: 0.2", TYPED_COLUMNS))
        .unwrap();
    let src = summary.step("src").unwrap();
    assert_eq!((src.rows_out, src.rows_rejected, src.rows_dead_lettered), (2700, 300, 300));
    std::fs::remove_file(s.path("out.csv")).unwrap();
    std::fs::remove_file(s.path("dead.csv")).unwrap();
    let err = s
        .run(&source_with_error_output(
            "OnError: Skip\n        MaxErrorRate: 0.05",
            TYPED_COLUMNS,
        ))
        .unwrap_err();
    match &err {
        // Checked once 1,000 rows were taken: the 100th rejection is row 1,000.
        Error::ErrorRateExceeded { step, count, seen, .. } => {
            assert_eq!(step, "src");
            assert!(*seen >= 1000 && *count as f64 > 0.05 * *seen as f64, "{err}");
            assert!(*count <= 101, "{err}");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("MaxErrorRate"), "{err}");
    assert!(!s.path("out.csv").exists() && !s.path("dead.csv").exists());
    let err = build_error(&s, &source_with_error_output("MaxErrorRate: 1.5", TYPED_COLUMNS));
    assert!(err.contains("MaxErrorRate") && err.contains("from 0 to 1"), "{err}");
}

const CONVERTING_JS: &str = "Pipeline:
  Name: js
  Plugins:
__SOURCE__    - Name: JS
      Type: JavaScriptTransform
      Config:
        Script: |
          function process(context) {
            const row = context.input.current();
            if (row.id % 7 === 0) { throw new Error('id ' + row.id + ' is a multiple of 7'); }
            if (row.id % 10 === 0) { return false; }
            context.output.setField('id', row.id);
            context.output.setField('name', row.name);
            context.output.setField('num', row.id % 11 === 0 ? 'eleven' : row.id);
            return true;
          }
        OutputSchema:
          Fields:
            - { Name: id, Type: long, Required: true }
            - { Name: name, Type: string, Required: false }
            - { Name: num, Type: int, Required: false }
        Workers: 2
        __POLICY__
    - { Name: Out, Type: DelimitedSink, Config: { FilePath: out.csv } }
    - { Name: Dead, Type: DelimitedSink, Config: { FilePath: js-dead.csv } }
  Connections:
    - { From: Src, To: JS }
    - { From: JS, To: Out }
__ERRORS__";

#[test]
fn script_throws_and_conversion_errors_go_to_the_error_output_and_every_row_is_accounted_for() {
    let s = Scenario::new();
    s.write("in.csv", &csv_rows(100));
    let yaml = CONVERTING_JS
        .replace("__SOURCE__", SOURCE)
        .replace("__POLICY__", "OnError: DeadLetter\n        MaxErrors: 1000")
        .replace("__ERRORS__", "    - { From: JS.errors, To: Dead }\n");
    let summary = s.run(&yaml).unwrap();
    // By hand, ids 1..=100: 14 multiples of 7 throw; 9 multiples of 10 (not of 7) are
    // filtered; 8 multiples of 11 (not of 7 or 10: 11 22 33 44 55 66 88 99) set 'eleven'
    // into an int field; 69 go out.
    let thrown: Vec<u64> = (1..=100).filter(|i| i % 7 == 0).collect();
    let converted: Vec<u64> = (1..=100).filter(|i| i % 11 == 0 && i % 7 != 0 && i % 10 != 0).collect();
    assert_eq!((thrown.len(), converted.len()), (14, 8));
    let js = summary.step("JS").unwrap();
    assert_eq!(
        (js.rows_in, js.rows_out, js.rows_filtered, js.rows_rejected, js.rows_dead_lettered),
        (100, 69, 9, 22, 22),
        "{:?}",
        js.top_reasons
    );
    assert_eq!(
        js.rows_in,
        js.rows_out + js.rows_filtered + js.rows_dead_lettered + (js.rows_rejected - js.rows_dead_lettered)
    );
    assert_eq!(summary.step("Dead").unwrap().rows_written, 22);
    let text = s.read("js-dead.csv");
    assert_eq!(header(&text), error_header(&["id", "name"]));
    let recs = records(&text);
    let mut all: Vec<u64> = thrown.iter().chain(&converted).copied().collect();
    all.sort_unstable();
    assert_eq!(
        recs.iter().map(|r| r[0].parse::<u64>().unwrap()).collect::<Vec<_>>(),
        all,
        "input order"
    );
    for r in &recs {
        let id: u64 = r[0].parse().unwrap();
        assert_eq!((r[1].as_str(), r[2].as_str()), (format!("name {id}").as_str(), "JS"));
        if id.is_multiple_of(7) {
            assert_eq!(r[3], "", "a throw names no field");
            assert!(r[4].contains(&format!("id {id} is a multiple of 7")), "{}", r[4]);
        } else {
            assert_eq!(r[3], "num", "the field that did not convert");
            assert!(r[4].contains("eleven"), "{}", r[4]);
        }
        assert_eq!(r[6], (id + 1).to_string());
    }
    let top: Vec<(String, u64)> = js.top_reasons.iter().map(|r| (r.reason.clone(), r.count)).collect();
    assert_eq!(top.len(), 2, "{top:?}");
    assert_eq!(top[0].1, 14, "{top:?}");
    assert!(top[0].0.contains("id N is a multiple of N"), "{top:?}");
    assert_eq!(top[1].1, 8, "{top:?}");
    assert!(top[1].0.starts_with("num: "), "{top:?}");

    // The same dead letters read back, as they are, by the same source.
    let back = format!(
        "Pipeline:\n  Name: back\n  Plugins:\n{}    - {{ Name: Out, Type: DelimitedSink, Config: {{ FilePath: back.csv }} }}\n",
        SOURCE.replace("FilePath: in.csv", "FilePath: js-dead.csv")
    );
    let summary = s.run(&back).unwrap();
    assert_eq!(summary.step("Src").unwrap().rows_rejected, 0);
    let expected: String = all.iter().map(|i| format!("{i},name {i}\n")).collect();
    assert_eq!(s.read("back.csv"), format!("id,name\n{expected}"));

    // Skip with nothing connected: the same rows, counted as skipped.
    let yaml = CONVERTING_JS
        .replace("__SOURCE__", SOURCE)
        .replace("__POLICY__", "OnError: Skip\n        MaxErrors: 1000")
        .replace("__ERRORS__", "")
        .replace("    - { Name: Dead, Type: DelimitedSink, Config: { FilePath: js-dead.csv } }\n", "");
    let js = s.run(&yaml).unwrap().step("JS").unwrap().clone();
    assert_eq!(
        (js.rows_in, js.rows_out, js.rows_filtered, js.rows_rejected, js.rows_dead_lettered),
        (100, 69, 9, 22, 0)
    );
}

#[test]
fn a_rejected_http_batch_goes_to_a_connected_sink_with_the_response_body() {
    let server = Server::start(Box::new(|_| (400, "", "row 3 has no name")));
    let s = Scenario::new();
    s.write("in.csv", &csv_rows(25));
    let yaml = format!(
        "{}        OnError: Skip\n    - {{ Name: Dead, Type: DelimitedSink, Config: {{ FilePath: dead.csv }} }}\n  Connections:\n    - {{ From: Src, To: Post }}\n    - {{ From: Post.errors, To: Dead }}\n",
        http_pipeline(&server.url, "BatchSize: 10\nRetry: { MaxAttempts: 5, InitialDelayMs: 1, MaxDelayMs: 1 }")
    );
    let summary = s.run(&yaml).unwrap();
    assert_eq!(server.requests(), 3, "a 400 is not retried");
    let post = summary.step("Post").unwrap();
    assert_eq!(
        (post.rows_in, post.rows_written, post.rows_rejected, post.rows_dead_lettered),
        (25, 0, 25, 25)
    );
    let recs = records(&s.read("dead.csv"));
    assert_eq!(recs.len(), 25);
    assert!(
        recs.iter().all(|r| r[4] == "HTTP 400: row 3 has no name" && r[8] == "1"),
        "{:?}",
        recs[0]
    );
    assert_eq!(post.top_reasons[0].count, 25);
}

#[test]
fn a_sources_error_output_can_feed_an_http_sink() {
    let server = Server::start(Box::new(|_| (200, "", "ok")));
    let s = Scenario::new();
    s.write("in.csv", MIXED_INPUT);
    let yaml = format!(
        "Pipeline:
  Name: errors-to-http
  Plugins:
    - Name: src
      Type: DelimitedSource
      Config:
        FilePath: in.csv
        SkipMalformedRows: true
        OutputSchema:
          Columns:
{TYPED_COLUMNS}
    - {{ Name: out, Type: DelimitedSink, Config: {{ FilePath: out.csv }} }}
    - {{ Name: Post, Type: HttpSink, Config: {{ Url: \"{}\", Format: json-lines, BatchSize: 2 }} }}
  Connections:
    - {{ From: src, To: out }}
    - {{ From: src.errors, To: Post }}
",
        server.url
    );
    let summary = s.run(&yaml).unwrap();
    assert_eq!(summary.step("Post").unwrap().rows_written, 5);
    let seen = server.seen.lock().unwrap();
    let lines: Vec<i64> = seen.stored.iter().map(|r| r["_error_line"].as_i64().unwrap()).collect();
    assert_eq!(lines, vec![3, 4, 6, 7, 9]);
    assert_eq!(seen.stored[0]["id"], "x", "the record's fields as text");
    assert_eq!(seen.stored[0]["_error_record"], "x,b,2");
    assert_eq!(seen.stored[1]["_error_field"], "#2");
}

// ------------------------------------------------------------ HttpSink: keys, bytes, CSV

#[test]
fn every_batch_carries_an_idempotency_key_that_its_retries_repeat() {
    // 30 % of requests fail with 503 after the receiver stored the rows: without the key,
    // the retries would store them twice.
    let server = Server::start(Box::new(|n| match n % 10 {
        2 | 5 | 8 => (503, "", "stored, but answered late"),
        _ => (200, "", "ok"),
    }));
    let s = Scenario::new();
    s.write("in.csv", &csv_rows(1000));
    let yaml = http_pipeline(
        &server.url,
        "Format: json-lines\nBatchSize: 10\nRetry: { MaxAttempts: 5, InitialDelayMs: 1, MaxDelayMs: 5 }\nCircuitBreaker: { FailureThreshold: 10 }",
    );
    let summary = s.run(&yaml).unwrap();
    assert_eq!(summary.step("Post").unwrap().rows_written, 1000);
    let seen = server.seen.lock().unwrap();
    assert!(seen.requests > 120, "{}", seen.requests);
    // One key per batch, `<run id>-<batch number>`, repeated by each retry.
    assert_eq!(seen.by_key.len(), 100);
    let run_id = seen.keys[0].split_once('-').unwrap().0.to_owned();
    assert_eq!(run_id.len(), 32, "{run_id}");
    for k in &seen.keys {
        let (id, n) = k.split_once('-').unwrap();
        assert_eq!(id, run_id);
        assert!((1..=100).contains(&n.parse::<u32>().unwrap()), "{k}");
    }
    // Deduplicated by key, every row arrived exactly once.
    let mut ids: Vec<i64> = seen.by_key.values().flatten().map(|r| r["id"].as_i64().unwrap()).collect();
    ids.sort_unstable();
    assert_eq!(ids, (1..=1000).collect::<Vec<i64>>());
    // Without deduplication the stored-then-failed batches would be there twice.
    let all: usize = seen.stored.len();
    assert_eq!(all, 1000, "2xx answers store each batch once");
    drop(seen);
    // A configured header of that name wins.
    let server = Server::start(Box::new(|_| (200, "", "ok")));
    s.write("in.csv", &csv_rows(3));
    s.run(&http_pipeline(&server.url, "Headers: { Idempotency-Key: fixed }")).unwrap();
    assert_eq!(server.seen.lock().unwrap().keys, vec!["fixed"]);
}

#[test]
fn batch_bytes_bounds_every_request_body() {
    let server = Server::start(Box::new(|_| (200, "", "ok")));
    let s = Scenario::new();
    s.write("in.csv", &csv_rows(200));
    let yaml = http_pipeline(&server.url, "Format: json-array\nBatchSize: 1000\nBatchBytes: 300");
    let summary = s.run(&yaml).unwrap();
    assert_eq!(summary.step("Post").unwrap().rows_written, 200);
    let ids = server.ids();
    assert_eq!(ids.len(), 200);
    assert!(ids.values().all(|&n| n == 1));
    let seen = server.seen.lock().unwrap();
    // Rows of about 30 bytes: about ten per request, none past 300 bytes.
    assert!(seen.sizes.iter().all(|&b| b <= 300), "{:?}", seen.sizes);
    assert!((15..=30).contains(&seen.requests), "{}", seen.requests);
    assert!(seen.sizes.iter().rev().skip(1).all(|&b| b > 250), "full batches: {:?}", seen.sizes);
    drop(seen);
    // A row larger than BatchBytes goes alone.
    let server = Server::start(Box::new(|_| (200, "", "ok")));
    let s = Scenario::new();
    s.write("in.csv", &format!("id,name\n1,{}\n2,b\n", "x".repeat(500)));
    s.run(&http_pipeline(&server.url, "BatchBytes: 100")).unwrap();
    assert_eq!(server.requests(), 2);
    assert_eq!(server.ids().len(), 2);
}

#[test]
fn csv_format_sends_a_header_and_exact_rows() {
    let server = Server::start(Box::new(|_| (200, "", "ok")));
    let s = Scenario::new();
    s.write("in.csv", "id,name\n1,\"a, \"\"quoted\"\"\"\n2,\n3,c\n");
    let summary = s.run(&http_pipeline(&server.url, "Format: csv\nBatchSize: 2")).unwrap();
    assert_eq!(summary.step("Post").unwrap().rows_written, 3);
    let seen = server.seen.lock().unwrap();
    assert_eq!(seen.content_types, vec!["text/csv", "text/csv"]);
    let rows: Vec<(String, String)> = seen
        .stored
        .iter()
        .map(|r| (r["id"].as_str().unwrap().to_owned(), r["name"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("1".to_owned(), "a, \"quoted\"".to_owned()),
            ("2".to_owned(), String::new()),
            ("3".to_owned(), "c".to_owned())
        ]
    );
}

/// A server answering each connection on its own thread after `delay`, counting the most
/// requests it held at once.
struct SlowServer {
    url: String,
    stop: Arc<AtomicBool>,
    max_in_flight: Arc<std::sync::atomic::AtomicUsize>,
    seen: Arc<Mutex<Seen>>,
}

impl SlowServer {
    fn start(delay: Duration) -> SlowServer {
        use std::sync::atomic::AtomicUsize;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}/ingest", listener.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (stop2, max2, seen2) = (Arc::clone(&stop), Arc::clone(&max_in_flight), Arc::clone(&seen));
        std::thread::spawn(move || {
            let in_flight = Arc::new(AtomicUsize::new(0));
            let end = Instant::now() + Duration::from_secs(60);
            while !stop2.load(Ordering::Relaxed) && Instant::now() < end {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (in_flight, max2, seen2) = (Arc::clone(&in_flight), Arc::clone(&max2), Arc::clone(&seen2));
                        std::thread::spawn(move || {
                            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                            max2.fetch_max(now, Ordering::SeqCst);
                            std::thread::sleep(delay);
                            in_flight.fetch_sub(1, Ordering::SeqCst);
                            let _ = handle(stream, &|_| (200, "", "ok"), &seen2);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
        });
        SlowServer {
            url,
            stop,
            max_in_flight,
            seen,
        }
    }
}

impl Drop for SlowServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn concurrency_keeps_several_batches_in_flight_and_delivers_each_once() {
    let s = Scenario::new();
    s.write("in.csv", &csv_rows(200));
    for (concurrency, want_max) in [(1usize, 1usize), (4, 4)] {
        let server = SlowServer::start(Duration::from_millis(60));
        let t = Instant::now();
        let summary = s
            .run(&http_pipeline(&server.url, &format!("BatchSize: 10\nConcurrency: {concurrency}")))
            .unwrap();
        let took = t.elapsed();
        assert_eq!(summary.step("Post").unwrap().rows_written, 200);
        let seen = server.seen.lock().unwrap();
        let mut ids: Vec<i64> = seen.stored.iter().map(|r| r["id"].as_i64().unwrap()).collect();
        ids.sort_unstable();
        assert_eq!(ids, (1..=200).collect::<Vec<i64>>(), "every row once");
        assert_eq!(seen.requests, 20);
        let max = server.max_in_flight.load(Ordering::SeqCst);
        if concurrency == 1 {
            assert_eq!(max, 1);
            assert!(took >= Duration::from_millis(20 * 60), "{took:?}");
        } else {
            assert!((2..=want_max).contains(&max), "{max} in flight");
            assert!(took < Duration::from_millis(20 * 60), "{took:?}");
        }
    }
}

// ------------------------------------------------------------ a user step under the policy

/// A user transform that rejects rows with an odd `id`, under the engine's error policy.
struct RejectOdd {
    name: String,
    input: flowengine::SchemaRef,
    policy: flowengine::dead_letter::ErrorPolicy,
    rejected: Arc<std::sync::atomic::AtomicU64>,
}

impl flowengine::steps::Transform for RejectOdd {
    fn output_schema(&self) -> flowengine::SchemaRef {
        Arc::clone(&self.input)
    }
    fn parallel_safe(&self) -> bool {
        true
    }
    fn process(&mut self, chunk: Arc<flowengine::Chunk>, out: &mut flowengine::steps::Emitter) -> flowengine::Result<()> {
        let mut keep = Vec::new();
        let mut rows = flowengine::dead_letter::ErrorRows::new(&self.name, &self.input, false, None);
        let seen = out.metrics().rows_in.load(Ordering::Relaxed);
        for r in 0..chunk.len() {
            let id = match chunk.column(0).get(r) {
                flowengine::Value::Int64(i) => i,
                other => panic!("{other:?}"),
            };
            if id % 2 == 0 {
                keep.push(r);
                continue;
            }
            let reason = format!("id {id} is odd");
            let err = Error::Internal(reason.clone());
            self.policy
                .reject(&self.name, out.metrics(), &self.rejected, 1, seen, Some("id"), &reason, err)?;
            if out.errors_connected() {
                rows.push_row(&chunk, r, Some("id"), &reason, 1);
            }
        }
        out.emit(chunk.take(&keep))?;
        if let Some(c) = rows.take() {
            out.emit_errors(c)?;
        }
        Ok(())
    }
}

struct RejectOddPlugin;

impl flowengine::steps::StepPlugin for RejectOddPlugin {
    fn type_name(&self) -> &str {
        "RejectOdd"
    }
    fn uses_error_policy(&self) -> bool {
        true
    }
    fn build(
        &self,
        config: &serde_json::Value,
        ctx: &flowengine::steps::BuildContext<'_>,
    ) -> flowengine::Result<flowengine::steps::StepRuntime> {
        assert!(config.get("OnError").is_none(), "the policy keys are the engine's: {config}");
        let rejected = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let instances = (0..2)
            .map(|_| {
                Box::new(RejectOdd {
                    name: ctx.name.to_owned(),
                    input: ctx.require_input().unwrap(),
                    policy: ctx.error_policy.clone().expect("a policy"),
                    rejected: Arc::clone(&rejected),
                }) as Box<dyn flowengine::steps::Transform>
            })
            .collect();
        Ok(flowengine::steps::StepRuntime::Transform(instances))
    }
}

fn run_with_plugin(s: &Scenario, policy: &str) -> Result<flowengine::RunSummary, Error> {
    let yaml = format!(
        "Pipeline:\n  Name: user\n  Plugins:\n{SOURCE}    - Name: Odd\n      Type: RejectOdd\n      Config:\n        {policy}\n    - {{ Name: Out, Type: DelimitedSink, Config: {{ FilePath: out.csv }} }}\n"
    );
    let mut registry = flowengine::Registry::new();
    registry.register(Arc::new(RejectOddPlugin));
    let p = s.write("pipeline.yaml", &yaml);
    Pipeline::from_file_with_registry(&p, &[], &registry)?.run()
}

#[test]
fn a_user_step_takes_the_same_policy_keys_and_error_output() {
    let s = Scenario::new();
    s.write("in.csv", &csv_rows(100));
    let summary = run_with_plugin(&s, "OnError: DeadLetter\n        DeadLetterFilePath: odd.csv").unwrap();
    let odd = summary.step("Odd").unwrap();
    assert_eq!(
        (odd.rows_in, odd.rows_out, odd.rows_rejected, odd.rows_dead_lettered),
        (100, 50, 50, 50)
    );
    assert_eq!(odd.top_reasons[0].reason, "id: id N is odd");
    let recs = records(&s.read("odd.csv"));
    let ids: Vec<u64> = recs.iter().map(|r| r[0].parse().unwrap()).collect();
    assert_eq!(
        ids,
        (1..=100).filter(|i| i % 2 == 1).collect::<Vec<u64>>(),
        "input order, two instances"
    );
    assert!(recs.iter().all(|r| r[2] == "Odd" && r[3] == "id"));
    // MaxErrors (default 100 here: 50 pass) and DeadLetter's need for somewhere to go.
    let err = run_with_plugin(&s, "OnError: Skip\n        MaxErrors: 10").unwrap_err();
    // The step runs as two instances sharing the count: the one that fails may report the
    // 11th error or, when the other counted one at the same moment, the 12th; never more.
    assert!(
        matches!(
            err,
            Error::TooManyErrors {
                count: 11 | 12,
                max: 10,
                ..
            }
        ),
        "{err:?}"
    );
    let err = run_with_plugin(&s, "OnError: DeadLetter").unwrap_err().to_string();
    assert!(err.contains("From: Odd.errors"), "{err}");
    // Under Fail (the default), the first odd row fails the run.
    let err = run_with_plugin(&s, "{}").unwrap_err().to_string();
    assert!(err.contains("id 1 is odd"), "{err}");
}

// ------------------------------------------------- the breaker's open mode, Retry-After, drops

/// A rule that answers 503 for `down` after the first request, then 200.
fn down_for(down: Duration) -> Box<Rule> {
    let first = std::sync::OnceLock::new();
    Box::new(move |_| {
        let t0 = *first.get_or_init(Instant::now);
        if t0.elapsed() < down {
            (503, "", "down for maintenance")
        } else {
            (200, "", "ok")
        }
    })
}

#[test]
fn a_server_down_longer_than_the_threshold_opens_the_breaker_and_waiting_loses_nothing() {
    // Down for 0.8 s: past the threshold of 2 failures and several reset timeouts of 0.25 s.
    let server = Server::start(down_for(Duration::from_millis(800)));
    let s = Scenario::new();
    s.write("in.csv", &csv_rows(200));
    let yaml = http_pipeline(
        &server.url,
        "BatchSize: 20\nRetry: { MaxAttempts: 3, InitialDelayMs: 5, MaxDelayMs: 10 }\nCircuitBreaker: { FailureThreshold: 2, ResetTimeoutSeconds: 0.25, HalfOpenRequests: 1, WhenOpen: Wait, MaxOpenSeconds: 20 }",
    );
    let t = Instant::now();
    // OnError is Fail: a batch given up on would fail the run.
    let summary = s.run(&yaml).unwrap();
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(800), "the run waited out the outage: {took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    // Every row exactly once: as stored on 2xx, and after dedup by idempotency key.
    let ids = server.ids();
    assert_eq!(ids.keys().copied().collect::<Vec<_>>(), (1..=200).collect::<Vec<i64>>());
    assert!(ids.values().all(|&n| n == 1), "no row twice");
    let seen = server.seen.lock().unwrap();
    let by_key: Vec<i64> = seen.by_key.values().flatten().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(by_key.len(), 200, "10 keys of 20 rows: a retried batch kept its key");
    assert_eq!(seen.by_key.len(), 10);
    // While it was down, the breaker held the requests to the trial calls: 2 that opened it,
    // then one trial per 0.25 s (about 3), not 3 attempts per batch.
    let t0 = seen.times[0];
    let during = seen.times.iter().filter(|&&t| t - t0 < Duration::from_millis(800)).count();
    assert!((3..=7).contains(&during), "{during} requests during the outage");
    assert_eq!(seen.requests as usize, during + 10, "after it: one request per batch");
    drop(seen);
    let post = summary.step("Post").unwrap();
    assert_eq!((post.rows_in, post.rows_written, post.rows_rejected), (200, 200, 0));
    // Opened once, then each failed trial opened it again; the last trial closed it.
    assert!(post.breaker_opened >= 2, "{post:?}");
    assert_eq!(post.breaker_half_opened, post.breaker_opened, "each opening ended in a trial");
    assert_eq!(post.breaker_closed, 1);
    assert!(post.breaker_wait >= Duration::from_millis(500), "{:?}", post.breaker_wait);
    // `run --json` carries the counts.
    let json = serde_json::to_value(&summary).unwrap();
    assert_eq!(json["steps"][1]["breaker_closed"], 1);
    assert!(json["steps"][1]["breaker_wait"].as_f64().unwrap() >= 0.5);
}

#[test]
fn waiting_stops_at_max_open_seconds_and_the_batches_go_to_the_error_policy() {
    let server = Server::start(Box::new(|_| (503, "", "gone")));
    let s = Scenario::new();
    s.write("in.csv", &csv_rows(50));
    let yaml = http_pipeline(
        &server.url,
        "BatchSize: 10\nRetry: { MaxAttempts: 2, InitialDelayMs: 1, MaxDelayMs: 2 }\nCircuitBreaker: { FailureThreshold: 2, ResetTimeoutSeconds: 0.2, WhenOpen: Wait, MaxOpenSeconds: 0.5 }\nOnError: DeadLetter\nDeadLetterFilePath: dead.csv",
    );
    let t = Instant::now();
    let summary = s.run(&yaml).unwrap();
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(500) && took < Duration::from_secs(4), "{took:?}");
    let post = summary.step("Post").unwrap();
    assert_eq!(
        (post.rows_in, post.rows_written, post.rows_rejected, post.rows_dead_lettered),
        (50, 0, 50, 50)
    );
    assert_eq!(post.breaker_closed, 0);
    let recs = records(&s.read("dead.csv"));
    assert_eq!(recs.len(), 50, "every row dead-lettered");
    // The first batch waited and gave up; the rest fail fast (the breaker stays open).
    assert!(
        recs[0][4].starts_with("HTTP 503: gone; then circuit breaker open for ") && recs[0][4].contains("past MaxOpenSeconds (0.5 s)"),
        "{}",
        recs[0][4]
    );
    assert!(recs.iter().all(|r| r[4].contains("past MaxOpenSeconds")), "{recs:?}");
    // Trial calls every 0.2 s at most, not a request storm.
    assert!(server.requests() <= 8, "{}", server.requests());
}

#[test]
fn retry_after_is_waited_for_and_no_longer() {
    // Request 0: 429 with Retry-After: 1; request 2: 503 with Retry-After: 1.
    let server = Server::start(Box::new(|n| match n {
        0 => (429, "Retry-After: 1\r\n", "slow down"),
        2 => (503, "Retry-After: 1\r\n", "busy"),
        _ => (200, "", "ok"),
    }));
    let s = Scenario::new();
    s.write("in.csv", &csv_rows(20));
    // The backoff alone would be at most 5 ms: only Retry-After explains a 1 s gap.
    let yaml = http_pipeline(
        &server.url,
        "BatchSize: 10\nRetry: { MaxAttempts: 3, InitialDelayMs: 5, MaxDelayMs: 5000 }",
    );
    let summary = s.run(&yaml).unwrap();
    assert_eq!(summary.step("Post").unwrap().rows_written, 20);
    let seen = server.seen.lock().unwrap();
    assert_eq!(seen.requests, 4);
    for (failed, retry) in [(0, 1), (2, 3)] {
        let gap = seen.times[retry] - seen.times[failed];
        assert!(gap >= Duration::from_secs(1), "request {retry} came {gap:?} after {failed}");
        assert!(gap < Duration::from_millis(1600), "request {retry} came {gap:?} after {failed}");
        assert_eq!(seen.keys[retry], seen.keys[failed], "the same batch");
    }
    // A Retry-After above MaxDelayMs is capped.
    drop(seen);
    let server = Server::start(Box::new(|n| match n {
        0 => (503, "Retry-After: 30\r\n", "busy"),
        _ => (200, "", "ok"),
    }));
    let yaml = http_pipeline(
        &server.url,
        "BatchSize: 10\nRetry: { MaxAttempts: 3, InitialDelayMs: 5, MaxDelayMs: 200 }",
    );
    s.run(&yaml).unwrap();
    let seen = server.seen.lock().unwrap();
    let gap = seen.times[1] - seen.times[0];
    assert!(gap >= Duration::from_millis(200) && gap < Duration::from_secs(2), "{gap:?}");
    drop(seen);
    // When that failure opens a breaker under WhenOpen: Wait, the trial call still waits for
    // Retry-After, not just the (shorter) reset timeout.
    let server = Server::start(Box::new(|n| match n {
        0 => (503, "Retry-After: 1\r\n", "busy"),
        _ => (200, "", "ok"),
    }));
    let yaml = http_pipeline(
        &server.url,
        "BatchSize: 10\nRetry: { MaxAttempts: 3, InitialDelayMs: 5, MaxDelayMs: 5000 }\nCircuitBreaker: { FailureThreshold: 1, ResetTimeoutSeconds: 0.1, WhenOpen: Wait }",
    );
    let summary = s.run(&yaml).unwrap();
    let post = summary.step("Post").unwrap();
    assert_eq!((post.rows_written, post.breaker_opened, post.breaker_closed), (20, 1, 1));
    let seen = server.seen.lock().unwrap();
    let gap = seen.times[1] - seen.times[0];
    assert!(gap >= Duration::from_secs(1) && gap < Duration::from_millis(1600), "{gap:?}");
}

#[test]
fn every_row_is_accounted_for_with_drops_dead_letters_filtered_and_skipped_rows() {
    // 2,000 rows → JS (throws on multiples of 7: dead-lettered; filters multiples of 10) →
    // a DropOldest connection of one chunk → an HTTP sink on a slow server that rejects one
    // batch in 13, the first included, with 422 (dead-lettered to a file).
    let server = Server::start(Box::new(|n| {
        std::thread::sleep(Duration::from_millis(8));
        // The first request included: how many batches get past the dropping connection
        // depends on the machine's speed, but the first always does.
        if n % 13 == 0 {
            (422, "", "rejected batch")
        } else {
            (200, "", "ok")
        }
    }));
    let s = Scenario::new();
    s.write("in.csv", &csv_rows(2000));
    let yaml = format!(
        "Pipeline:
  Name: drops
  Plugins:
{SOURCE}    - Name: JS
      Type: JavaScriptTransform
      Config:
        Workers: 1
        OnError: DeadLetter
        MaxErrors: 1000
        Script: |
          function process(context) {{
            const row = context.input.current();
            if (row.id % 7 === 0) {{ throw new Error('id ' + row.id + ' is a multiple of 7'); }}
            if (row.id % 10 === 0) {{ return false; }}
            context.output.setField('id', row.id);
            context.output.setField('name', row.name);
            return true;
          }}
        OutputSchema:
          Fields:
            - {{ Name: id, Type: long, Required: true }}
            - {{ Name: name, Type: string, Required: false }}
    - Name: Post
      Type: HttpSink
      Config:
        Url: {}
        BatchSize: 10
        OnError: DeadLetter
        DeadLetterFilePath: post-dead.csv
    - {{ Name: dead, Type: DelimitedSink, Config: {{ FilePath: dead.csv }} }}
  Connections:
    - {{ From: Src, To: JS }}
    - {{ From: JS, To: Post, Channel: {{ BufferSize: 1, FullMode: DropOldest }} }}
    - {{ From: JS.errors, To: dead }}
",
        server.url
    );
    let summary = s.run(&yaml).unwrap();
    let json = serde_json::to_value(&summary).unwrap();
    let step = |name: &str| {
        json["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()
            .clone()
    };
    let n = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"));
    let (src, js, post) = (step("Src"), step("JS"), step("Post"));
    let rows_in = n(&src, "rows_in");
    assert_eq!(rows_in, 2000);
    let written = n(&post, "rows_written");
    let filtered: u64 = ["Src", "JS", "Post"].iter().map(|s| n(&step(s), "rows_filtered")).sum();
    let dead_lettered: u64 = ["Src", "JS", "Post"].iter().map(|s| n(&step(s), "rows_dead_lettered")).sum();
    let skipped: u64 = ["Src", "JS", "Post"]
        .iter()
        .map(|s| n(&step(s), "rows_rejected") - n(&step(s), "rows_dead_lettered"))
        .sum();
    let dropped: u64 = json["steps"].as_array().unwrap().iter().map(|s| n(s, "rows_dropped")).sum();
    assert_eq!(
        rows_in,
        written + filtered + dead_lettered + skipped + dropped,
        "in {rows_in} = written {written} + filtered {filtered} + dead-lettered {dead_lettered} + skipped {skipped} + dropped {dropped}"
    );
    assert!(dropped > 0, "the slow sink made the connection drop chunks");
    assert_eq!(n(&js, "rows_dropped"), dropped, "drops are counted on the sending step");
    assert_eq!(skipped, 0);
    assert!(n(&post, "rows_dead_lettered") > 0, "a batch was rejected");
    // The counts match what each place holds, row by row.
    let stored: Vec<i64> = server
        .ids()
        .into_iter()
        .map(|(id, c)| {
            assert_eq!(c, 1, "id {id} stored twice");
            id
        })
        .collect();
    assert_eq!(stored.len() as u64, written);
    let dead: Vec<i64> = records(&s.read("dead.csv")).iter().map(|r| r[0].parse().unwrap()).collect();
    assert_eq!(dead.len() as u64, n(&js, "rows_dead_lettered"));
    assert!(dead.iter().all(|id| id % 7 == 0));
    assert_eq!(dead.len(), 2000 / 7, "every throw reached the error output (a Wait connection)");
    let post_dead: Vec<i64> = records(&s.read("post-dead.csv")).iter().map(|r| r[0].parse().unwrap()).collect();
    assert_eq!(post_dead.len() as u64, n(&post, "rows_dead_lettered"));
    assert_eq!(
        n(&js, "rows_filtered"),
        (1..=2000).filter(|i| i % 10 == 0 && i % 7 != 0).count() as u64
    );
    let mut all: Vec<i64> = stored.iter().chain(&dead).chain(&post_dead).copied().collect();
    all.extend((1..=2000).filter(|i| i % 10 == 0 && i % 7 != 0));
    all.sort_unstable();
    let before = all.len();
    all.dedup();
    assert_eq!(all.len(), before, "no row in two places");
    assert_eq!(2000 - all.len() as u64, dropped, "the rows nowhere are exactly the dropped ones");
    let _ = src;
}

#[test]
fn cancelling_while_the_breaker_holds_a_batch_stops_promptly_and_publishes_nothing() {
    let server = Server::start(Box::new(|_| (503, "", "down")));
    let s = Scenario::new();
    s.write("in.csv", &csv_rows(30));
    let yaml = http_pipeline(
        &server.url,
        "BatchSize: 10\nRetry: { MaxAttempts: 3, InitialDelayMs: 1, MaxDelayMs: 1 }\nCircuitBreaker: { FailureThreshold: 1, ResetTimeoutSeconds: 30, WhenOpen: Wait, MaxOpenSeconds: 600 }\nOnError: DeadLetter\nDeadLetterFilePath: dead.csv",
    );
    let pipeline = s.build(&yaml).unwrap();
    let cancel = CancelToken::new();
    let c2 = cancel.clone();
    let run = std::thread::spawn(move || pipeline.run_with_cancel(c2));
    let wait_end = Instant::now() + Duration::from_secs(20);
    while server.requests() == 0 && Instant::now() < wait_end {
        std::thread::sleep(Duration::from_millis(5));
    }
    // The first request opened the breaker: the batch now waits 30 s for the trial call.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(server.requests(), 1, "no request while the breaker is open");
    assert!(!run.is_finished(), "the batch is held");
    let cancelled_at = Instant::now();
    cancel.cancel();
    let result = run.join().unwrap();
    let took = cancelled_at.elapsed();
    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
    assert!(took < Duration::from_secs(2), "stopped after {took:?}");
    assert_eq!(server.requests(), 1);
    assert!(!s.path("dead.csv").exists(), "a cancelled run publishes no dead letters");
}

#[cfg(unix)]
#[test]
fn ctrl_c_while_the_breaker_holds_a_batch_exits_promptly_and_the_opening_was_logged() {
    let server = Server::start(Box::new(|_| (503, "", "down")));
    let s = Scenario::new();
    s.write("in.csv", &csv_rows(30));
    let p = s.write(
        "p.yaml",
        &http_pipeline(
            &server.url,
            "BatchSize: 10\nRetry: { MaxAttempts: 3, InitialDelayMs: 1, MaxDelayMs: 1 }\nCircuitBreaker: { FailureThreshold: 1, ResetTimeoutSeconds: 30, WhenOpen: Wait }\nOnError: DeadLetter\nDeadLetterFilePath: dead.csv",
        ),
    );
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_flowengine"))
        .args(["run", p.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let wait_end = Instant::now() + Duration::from_secs(20);
    while server.requests() == 0 && Instant::now() < wait_end {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(300));
    let sent = Instant::now();
    assert!(std::process::Command::new("kill")
        .args(["-s", "INT", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    let took = sent.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(took < Duration::from_secs(3), "exited {took:?} after Ctrl-C");
    assert!(
        stderr.contains("circuit breaker opened after 1 consecutive failures") && stderr.contains("WhenOpen: Wait"),
        "the opening is logged on the step: {stderr}"
    );
    assert_eq!(server.requests(), 1);
    assert!(!s.path("dead.csv").exists(), "nothing published");
}
