//! criterion: `JavaScriptTransform` end to end (CSV in -> JS -> CSV out) over 50,000
//! customer rows, with the benchmark script of `examples/customers-js-bench.yaml` (5 fields
//! read, 5 computed with string operations, some rows copied to a second queue).
//!
//! Ids: `js-e2e/workers-1`, `js-e2e/workers-default`, with element throughput (rows/s).
//! The 1M-row figure comes from the CLI run described in that YAML file.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flowengine::Pipeline;

const ROWS: usize = 50_000;

fn input(dir: &Path) {
    let first = ["Lucas", "Aaron", "Taylor", "Angela", "Robert", "Eric", "Sean", "David"];
    let last = ["Rogers", "Young", "Marshall", "Long", "Foster", "Martinez", "Powell", "Brooks"];
    let domains = ["gmail.com", "yahoo.com", "hotmail.com", "outlook.com", "company.com"];
    let mut csv = String::from("customer_id,first_name,last_name,age,email,account_value\n");
    for i in 0..ROWS {
        let (f, l) = (first[i % 8], last[(i / 8) % 8]);
        let age = 18 + (i * 7) % 63;
        let value = (i * 7919) % 250_000;
        writeln!(
            csv,
            "{},{f},{l},{age},{}.{}@{},{value}.{:02}",
            i + 1,
            f.to_lowercase(),
            l.to_lowercase(),
            domains[i % 5],
            i % 100
        )
        .unwrap();
    }
    std::fs::write(dir.join("customers.csv"), csv).unwrap();
}

fn js_e2e(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let yaml_path = root.join("examples/customers-js-bench.yaml");
    let yaml = std::fs::read_to_string(&yaml_path).unwrap();
    let dir = tempfile_dir();
    input(&dir);
    let mut g = c.benchmark_group("js-e2e");
    g.throughput(Throughput::Elements(ROWS as u64))
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    for (label, workers) in [("workers-1", "1"), ("workers-default", "0")] {
        let vars = vec![
            ("InputFile".to_owned(), dir.join("customers.csv").display().to_string()),
            ("OutputDir".to_owned(), dir.display().to_string()),
            ("Workers".to_owned(), workers.to_owned()),
        ];
        g.bench_function(label, |b| {
            b.iter(|| {
                let p = Pipeline::from_yaml_str(&yaml, root.join("examples"), &vars).unwrap();
                let s = p.run().unwrap();
                assert_eq!(s.step("Enrich").unwrap().rows_in, ROWS as u64);
            })
        });
    }
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A scratch directory in the system temp dir (the benches crate has no tempfile).
fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("flowengine-js-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

criterion_group!(benches, js_e2e);
criterion_main!(benches);
