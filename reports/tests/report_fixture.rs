//! The generator over a small fixture `results/` tree (tests/fixtures/results): parsing,
//! decisions, the markdown, the plots and the binary end to end.

use std::path::{Path, PathBuf};
use std::process::Command;

use flowengine_reports::{analysis::Analysis, decide, plots, report, results::Results};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/results")
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fe-reports-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn loads_every_kind_of_result() {
    let r = Results::load(&fixture()).unwrap();
    assert!(r.notes.is_empty(), "{:?}", r.notes);
    assert_eq!(r.machine.as_ref().unwrap().cores, 2);
    assert_eq!(r.criterion.len(), 24);
    assert_eq!(r.gungraun.len(), 1);
    assert_eq!(r.gungraun[0].id, "instructions::rows::read_name.dictionary");
    assert_eq!(r.gungraun[0].instructions, 1234);
    assert_eq!(r.dhat.len(), 4);
    assert_eq!(r.e2e.len(), 1);
    assert_eq!(r.peers.len(), 2);
    assert_eq!(r.ab.len(), 7);
}

#[test]
fn applies_the_seed_rules_to_the_fixture() {
    let r = Results::load(&fixture()).unwrap();
    let a = Analysis::new(&r).unwrap();
    let d = decide::decide(&r, &a, "fixture-commit");
    // No criterion samples in the fixture: the rows decision keeps the engine's columnar.
    assert_eq!(d.defaults.row_representation.to_string(), "columnar");
    assert!(!d.decisions["row_representation"].measured);
    // The engine rejected Settings.Engine: port flavour and pooling are not measured.
    assert_eq!(d.defaults.port_flavour.to_string(), "chunked-crossbeam");
    assert_eq!(d.defaults.pooling.to_string(), "lock-free");
    for k in ["port_flavour", "pooling"] {
        let x = &d.decisions[k];
        assert!(!x.measured);
        assert!(x.rationale.contains("not measured (engine switch missing)"), "{}", x.rationale);
    }
    // chunk size: 50000 is 1.11× faster, a tie inside the 1.5× bar; 500 is slower.
    assert_eq!(d.defaults.chunk_size, 5000);
    let c = &d.decisions["chunk_size"];
    assert!(c.measured);
    assert!(c.rationale.contains("tie (within noise)"), "{}", c.rationale);
    assert!(c.evidence.iter().any(|e| e.outcome == "loss"), "{:?}", c.evidence);
    // buffer size: 1 chunk halves the wall time: adopted, with a positive margin.
    assert_eq!(d.defaults.buffer_size_chunks, 1);
    let b = &d.decisions["buffer_size_chunks"];
    assert!(
        b.evidence.iter().any(|e| e.outcome == "adopt" && e.margin > 0.0),
        "{:?}",
        b.evidence
    );
    // two 5000-row chunks of 1000-byte rows fit in the engine's 16 MiB.
    assert_eq!(d.defaults.port_byte_budget_bytes, 16 * 1024 * 1024);
    assert!(d.decisions["port_byte_budget"].measured);
    assert_eq!(d.decisions["spill_threshold"].decision, "80 %");
    assert!(!d.decisions["spill_threshold"].measured);
    assert_eq!(d.run_date, "2026-11-22");
    assert_eq!(d.rules_commit, "fixture-commit");
}

#[test]
fn renders_report_with_machine_tables_and_intervals() {
    let r = Results::load(&fixture()).unwrap();
    let a = Analysis::new(&r).unwrap();
    let d = decide::decide(&r, &a, "fixture-commit");
    let md = report::render(&r, &a, &d, &report::PlotLinks::default());
    assert!(md.contains("| CPU | Fixture CPU @ 2.0GHz |"));
    assert!(md.contains("| rustc | rustc 1.95.0 (fixture) |"));
    assert!(md.contains("| Memory | 24.0 GiB |"));
    // read by name, array, with its 95 % interval and its speed-up over dictionary.
    assert!(md.contains("8.00 ns [7.76, 8.24] (speed-up 3.75×"), "{md}");
    assert!(md.contains("| Component | Baseline | Alternative(s) | Decision | Rationale |"));
    assert!(md.contains("commit `fixture-commit`"), "{md}");
    assert!(md.contains("tie (within noise)"), "{md}");
    assert!(md.contains("| `engine-ab/chunk-size/default` | 5000 (incumbent) | 5 |"), "{md}");
    for row in [
        "| row representation |",
        "| port/channel flavour |",
        "| pooling |",
        "| chunk size |",
        "| channel buffer size (chunks) |",
    ] {
        assert!(md.contains(row), "decision matrix lacks {row}");
    }
    // Unmeasured questions say so rather than show numbers.
    assert!(md.contains("## 7. Core scaling"));
    assert!(md.contains("_Not measured in this run._"));
    assert!(md.contains("`instructions::rows::read_name.dictionary` | 1234"));
}

#[test]
fn draws_the_plots() {
    let r = Results::load(&fixture()).unwrap();
    let a = Analysis::new(&r).unwrap();
    let dir = scratch("plots");
    plots::register_fonts().unwrap();
    let d = decide::decide(&r, &a, "fixture-commit");
    let links = plots::draw_all(&r, &a, &d, &dir).unwrap();
    for name in [&links.rows, &links.fan_out, &links.peers, &links.pooling] {
        let name = name.as_ref().expect("plot drawn");
        let svg = std::fs::read_to_string(dir.join(name)).unwrap();
        assert!(svg.starts_with("<svg"), "{name}");
        assert!(svg.contains("<text"), "{name} has no text");
    }
    let rows = std::fs::read_to_string(dir.join("rows.svg")).unwrap();
    assert!(rows.contains("dictionary") && rows.contains("columnar"));
    let peers = std::fs::read_to_string(dir.join("peers.svg")).unwrap();
    assert!(peers.contains("polars"));
    assert!(rows.contains("seed 001: row operations"), "the 100 ns line is labelled");
    // One plot per decision with evidence: the alternatives against the bar.
    for key in ["chunk_size", "buffer_size_chunks"] {
        let name = links.decisions.get(key).unwrap_or_else(|| panic!("no plot for {key}"));
        let svg = std::fs::read_to_string(dir.join(name)).unwrap();
        assert!(svg.contains("bar 1.50×") && svg.contains("1× = incumbent"), "{name}");
    }
    // The fixture's e2e run has a peak RSS: the memory plot is drawn, with the 2× line.
    let memory = std::fs::read_to_string(dir.join(links.memory.as_ref().expect("memory plot"))).unwrap();
    assert!(memory.contains("2× the raw data"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn binary_writes_report_plots_and_decisions() {
    let dir = scratch("bin");
    let out = Command::new(env!("CARGO_BIN_EXE_flowengine-reports"))
        .arg("--results")
        .arg(fixture())
        .arg("--report")
        .arg(dir.join("performance-report.md"))
        .arg("--plots")
        .arg(dir.join("plots"))
        .arg("--decisions")
        .arg(dir.join("decisions.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let md = std::fs::read_to_string(dir.join("performance-report.md")).unwrap();
    assert!(md.contains("![Row variants: read by name and with](plots/rows.svg)"));
    assert!(dir.join("plots/fan-out.svg").is_file());
    assert!(
        md.contains("](plots/decision-chunk-size.svg)"),
        "the matrix embeds each decision's plot"
    );
    let toml = std::fs::read_to_string(dir.join("decisions.toml")).unwrap();
    let d = decide::Decisions::from_toml(&toml).unwrap();
    assert_eq!(d.defaults.pooling.to_string(), "lock-free");
    assert_ne!(d.rules_commit, "");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn empty_results_produce_a_report_of_unmeasured_questions() {
    let dir = scratch("empty");
    let out = Command::new(env!("CARGO_BIN_EXE_flowengine-reports"))
        .arg("--results")
        .arg(dir.join("no-such-results"))
        .arg("--report")
        .arg(dir.join("r.md"))
        .arg("--plots")
        .arg(dir.join("plots"))
        .arg("--decisions")
        .arg(dir.join("d.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let md = std::fs::read_to_string(dir.join("r.md")).unwrap();
    assert!(md.contains("Date and machine: _Not measured in this run._"));
    assert!(!dir.join("plots/rows.svg").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_unknown_bench_id_fails_the_report() {
    let dir = scratch("unknown-id");
    let results = dir.join("results");
    let bench = results.join("criterion/rows-read-name/hashmap/width-5/new");
    std::fs::create_dir_all(&bench).unwrap();
    std::fs::copy(
        fixture().join("criterion/rows-read-name/array/width-5/new/estimates.json"),
        bench.join("estimates.json"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_flowengine-reports"))
        .arg("--results")
        .arg(&results)
        .arg("--report")
        .arg(dir.join("r.md"))
        .arg("--plots")
        .arg(dir.join("plots"))
        .arg("--decisions")
        .arg(dir.join("d.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown bench id `rows-read-name/hashmap/width-5`"), "{err}");
    assert!(!dir.join("d.toml").exists(), "nothing is written when an id is unknown");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_quick_run_never_writes_the_requested_decisions() {
    let dir = scratch("quick");
    let results = dir.join("results");
    std::fs::create_dir_all(&results).unwrap();
    let machine = std::fs::read_to_string(fixture().join("machine.json")).unwrap();
    let machine = machine.replacen('{', "{\n  \"mode\": \"quick\",", 1);
    std::fs::write(results.join("machine.json"), machine).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_flowengine-reports"))
        .arg("--results")
        .arg(&results)
        .arg("--report")
        .arg(dir.join("r.md"))
        .arg("--plots")
        .arg(dir.join("plots"))
        .arg("--decisions")
        .arg(dir.join("d.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!dir.join("d.toml").exists() && !dir.join("r.md").exists());
    assert!(results.join("quick-report/decisions.toml").is_file());
    assert!(String::from_utf8_lossy(&out.stderr).contains("scratch"));
    std::fs::remove_dir_all(&dir).unwrap();
}
