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
    let n = {
        let mut s = seen.lock().unwrap();
        s.requests += 1;
        s.methods.push(request_line.split(' ').next().unwrap_or("").to_owned());
        s.content_types.push(content_type);
        s.requests - 1
    };
    let (status, headers, text) = rule(n);
    if (200..300).contains(&status) {
        let body = String::from_utf8(body).unwrap();
        let rows: Vec<serde_json::Value> = if body.trim_start().starts_with('[') {
            serde_json::from_str::<Vec<serde_json::Value>>(&body).unwrap()
        } else {
            body.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
        };
        seen.lock().unwrap().stored.extend(rows);
    }
    let reply = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n{text}",
        text.len()
    );
    out.write_all(reply.as_bytes())?;
    out.flush()
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
    assert_eq!(
        header(&text),
        vec!["id", "name", "_error_step", "_error_reason", "_error_line", "_error_attempts"]
    );
    let recs = records(&text);
    assert_eq!(recs.len(), 100, "every row");
    for (i, r) in recs.iter().enumerate() {
        let id = i + 1;
        assert_eq!(r[0], id.to_string());
        assert_eq!(r[1], format!("name {id}"));
        assert_eq!(r[2], "Post");
        assert_eq!(r[4], (id + 1).to_string(), "source line");
        match id {
            1..=10 => assert_eq!((r[3].as_str(), r[5].as_str()), ("HTTP 503: overloaded, try later", "3")),
            11..=20 => {
                // Its one request failed, which opened the breaker: its second attempt failed fast.
                assert!(
                    r[3].starts_with("HTTP 503: overloaded, try later; then circuit breaker open"),
                    "{}",
                    r[3]
                );
                assert_eq!(r[5], "1");
            }
            _ => {
                assert!(r[3].starts_with("circuit breaker open"), "{}", r[3]);
                assert_eq!(r[5], "0", "no request made");
            }
        }
    }
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
    assert_eq!(
        header(&text),
        vec!["id", "name", "_error_step", "_error_reason", "_error_line", "_error_attempts"]
    );
    let mut recs = records(&text);
    recs.sort_by_key(|r| r[0].parse::<u64>().unwrap());
    let expected: Vec<u64> = (1..=500).filter(|i| i % 7 == 0).collect();
    assert_eq!(recs.iter().map(|r| r[0].parse::<u64>().unwrap()).collect::<Vec<_>>(), expected);
    for r in &recs {
        let id: u64 = r[0].parse().unwrap();
        assert_eq!(r[1], format!("name {id}"));
        assert_eq!(r[2], "JS");
        assert!(r[3].contains(&format!("id {id} is a multiple of 7")), "{}", r[3]);
        assert_eq!(r[4], (id + 1).to_string());
        assert_eq!(r[5], "1");
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
