//! The spill manager: driven past its threshold, it spills, reads the rows
//! back intact and removes its files. (Its own test binary, so that the
//! process-memory test does not share a process with other tests.)

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use flowengine_prototypes::data::Width;
use flowengine_prototypes::spill::{FnProbe, MemoryProbe, MemoryUsage, ProcessMemory, SpillManager, DEFAULT_THRESHOLD};
use flowengine_prototypes::value::Value;

fn drain_all<P: MemoryProbe>(m: SpillManager<P>) -> Vec<Vec<Value>> {
    m.drain().collect::<std::io::Result<_>>().expect("read back")
}

#[test]
fn spills_past_the_threshold_reads_back_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let used = Arc::new(AtomicU64::new(100));
    let probe_used = used.clone();
    let probe = FnProbe(move || MemoryUsage {
        used_bytes: probe_used.load(Ordering::SeqCst),
        limit_bytes: 1_000,
    });
    let mut m = SpillManager::new(probe, DEFAULT_THRESHOLD).check_every(1).spill_dir(dir.path());
    let rows = Width::Wide20.rows(300);

    // Below the threshold (10 %): nothing spills.
    for r in &rows[..100] {
        m.push(r.clone()).unwrap();
    }
    assert_eq!(m.metrics().files, 0);
    assert_eq!(m.buffered_rows(), 100);

    // Exactly at the threshold (70 %) the next push spills all 101 rows.
    used.store(700, Ordering::SeqCst);
    m.push(rows[100].clone()).unwrap();
    assert_eq!(m.metrics().files, 1);
    assert_eq!(m.metrics().rows, 101);
    assert!(m.metrics().bytes > 0);
    assert_eq!(m.buffered_rows(), 0);
    let paths: Vec<PathBuf> = m.spill_paths().iter().map(|p| p.to_path_buf()).collect();
    assert_eq!(paths.len(), 1);
    assert!(paths[0].exists());

    // Pressure drops: rows stay in memory again.
    used.store(200, Ordering::SeqCst);
    for r in &rows[101..] {
        m.push(r.clone()).unwrap();
    }
    assert_eq!(m.metrics().files, 1);
    assert_eq!(m.buffered_rows(), 199);

    let back = drain_all(m);
    assert_eq!(back, rows, "rows read back intact, in push order");
    assert!(!paths[0].exists(), "spill file removed");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn dropping_the_manager_removes_unread_spill_files() {
    let dir = tempfile::tempdir().unwrap();
    let probe = FnProbe(|| MemoryUsage {
        used_bytes: 1,
        limit_bytes: 1,
    });
    let mut m = SpillManager::new(probe, 0.5).check_every(10).spill_dir(dir.path());
    for r in Width::Customer5.rows(35) {
        m.push(r).unwrap();
    }
    assert_eq!(m.metrics().files, 3);
    assert_eq!(m.buffered_rows(), 5);
    let paths: Vec<PathBuf> = m.spill_paths().iter().map(|p| p.to_path_buf()).collect();
    assert!(paths.iter().all(|p| p.exists()));
    // Read part of the stream, then drop it.
    let mut drain = m.drain();
    assert_eq!(drain.next().unwrap().unwrap(), Width::Customer5.row(0));
    drop(drain);
    assert!(paths.iter().all(|p| !p.exists()));
}

#[test]
fn every_value_kind_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let probe = FnProbe(|| MemoryUsage {
        used_bytes: 0,
        limit_bytes: 0,
    });
    let mut m = SpillManager::new(probe, 0.7).spill_dir(dir.path());
    let row = vec![
        Value::Null,
        Value::Bool(true),
        Value::Bool(false),
        Value::Int(i64::MIN),
        Value::Float(-0.125),
        Value::Float(f64::INFINITY),
        Value::str(""),
        Value::str("naïve, \"quoted\"\nline"),
    ];
    m.push(row.clone()).unwrap();
    m.spill().unwrap();
    m.push(row.clone()).unwrap();
    assert_eq!(drain_all(m), vec![row.clone(), row]);
}

#[test]
fn real_process_probe_spills_under_a_tiny_threshold() {
    let usage = ProcessMemory.usage().expect("/proc readable");
    assert!(usage.used_bytes > 0 && usage.limit_bytes >= usage.used_bytes);
    let dir = tempfile::tempdir().unwrap();
    // Any resident process is above 0.0001 % of memory.
    let mut m = SpillManager::new(ProcessMemory, 1e-6).check_every(64).spill_dir(dir.path());
    let rows = Width::Customer5.rows(200);
    for r in &rows {
        m.push(r.clone()).unwrap();
    }
    assert_eq!(m.metrics().files, 3);
    assert_eq!(m.metrics().rows, 192);
    let paths: Vec<PathBuf> = m.spill_paths().iter().map(|p| p.to_path_buf()).collect();
    assert_eq!(drain_all(m), rows);
    assert!(paths.iter().all(|p| !p.exists()));
}

#[test]
fn real_process_probe_crosses_a_threshold_set_above_current_usage() {
    let start = ProcessMemory.usage().unwrap();
    // Threshold 16 MiB above where the process stands now; buffering ~48 MiB
    // of rows must cross it.
    let threshold = (start.used_bytes + (16 << 20)) as f64 / start.limit_bytes as f64;
    let dir = tempfile::tempdir().unwrap();
    let mut m = SpillManager::new(ProcessMemory, threshold.min(1.0))
        .check_every(256)
        .spill_dir(dir.path());
    let big = Value::str(&"x".repeat(1_000));
    let n = 48 * 1024;
    for i in 0..n {
        // A fresh string per row, so that the resident set really grows.
        m.push(vec![Value::Int(i as i64), Value::str(&"x".repeat(1_000))]).unwrap();
    }
    assert!(m.metrics().files >= 1, "no spill after ~48 MiB");
    let back: Vec<Vec<Value>> = drain_all(m);
    assert_eq!(back.len(), n);
    assert!(back.iter().enumerate().all(|(i, r)| r[0] == Value::Int(i as i64) && r[1] == big));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
