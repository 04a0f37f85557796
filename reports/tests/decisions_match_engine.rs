//! The committed `reports/decisions.toml` and the engine's defaults (`engine/src/defaults.rs`)
//! must agree. After a new benchmark run, `scripts/report.sh` rewrites decisions.toml; this
//! test then fails until the engine's constants are updated to match (or the other way round).

use flowengine::{defaults, Pooling, PortFlavour};
use flowengine_reports::decide::{Decisions, Defaults};
use flowengine_reports::rules::SPILL_PRIOR_PERCENT;

fn committed() -> Decisions {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("decisions.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    Decisions::from_toml(&text).unwrap_or_else(|e| panic!("parsing {}: {e:#}", path.display()))
}

/// The spill threshold: `[defaults] spill_threshold_percent` when decided; a decisions file
/// without the key (written before the spill was decided) means "not decided yet", and the
/// engine must then be at seed 000's prior, 80 %. `None` when they agree.
fn spill_mismatch(d: &Defaults, engine: f64) -> Option<String> {
    let (percent, source) = match d.spill_threshold_percent {
        Some(p) => (p, "reports/decisions.toml has spill_threshold_percent ="),
        None => (
            SPILL_PRIOR_PERCENT,
            "reports/decisions.toml has no spill_threshold_percent (not decided yet), so seed 000's prior is",
        ),
    };
    let want = f64::from(percent) / 100.0;
    ((engine - want).abs() > 1e-9)
        .then(|| format!("DEFAULT_SPILL_THRESHOLD: engine/src/defaults.rs has {engine}, {source} {percent} ({want})"))
}

#[test]
fn spill_threshold_check_treats_a_missing_key_as_the_prior() {
    let mut d = committed().defaults;
    d.spill_threshold_percent = None;
    assert_eq!(spill_mismatch(&d, 0.8), None);
    assert!(spill_mismatch(&d, 0.7).is_some_and(|m| m.contains("not decided yet")));
    d.spill_threshold_percent = Some(60);
    assert_eq!(spill_mismatch(&d, 0.6), None);
    assert!(spill_mismatch(&d, 0.8).is_some_and(|m| m.contains("spill_threshold_percent = 60")));
}

#[test]
fn engine_defaults_match_committed_decisions() {
    let d = committed().defaults;
    let mut mismatches = Vec::new();
    mismatches.extend(spill_mismatch(&d, defaults::DEFAULT_SPILL_THRESHOLD));
    let mut check = |name: &str, engine: String, decided: String| {
        if engine != decided {
            mismatches.push(format!(
                "{name}: engine/src/defaults.rs has {engine}, reports/decisions.toml has {decided}"
            ));
        }
    };
    check(
        "DEFAULT_CHUNK_SIZE",
        defaults::DEFAULT_CHUNK_SIZE.to_string(),
        d.chunk_size.to_string(),
    );
    check(
        "DEFAULT_BUFFER_SIZE_CHUNKS",
        defaults::DEFAULT_BUFFER_SIZE_CHUNKS.to_string(),
        d.buffer_size_chunks.to_string(),
    );
    check(
        "DEFAULT_PORT_BYTE_BUDGET",
        defaults::DEFAULT_PORT_BYTE_BUDGET.to_string(),
        d.port_byte_budget_bytes.to_string(),
    );
    check(
        "ROW_REPRESENTATION",
        defaults::ROW_REPRESENTATION.to_owned(),
        d.row_representation.to_string(),
    );
    // The switches are typed in the engine: the decision (`chunked-crossbeam`, `lock-free`)
    // must name one of the engine's values, and that value must be the engine's default.
    match d.port_flavour.0.name().parse::<PortFlavour>() {
        Ok(f) if f == defaults::DEFAULT_PORT_FLAVOUR => {}
        Ok(f) => mismatches.push(format!(
            "DEFAULT_PORT_FLAVOUR: engine/src/defaults.rs has PortFlavour::{:?}, reports/decisions.toml has {} (PortFlavour::{f:?})",
            defaults::DEFAULT_PORT_FLAVOUR,
            d.port_flavour
        )),
        Err(e) => mismatches.push(format!(
            "DEFAULT_PORT_FLAVOUR: reports/decisions.toml has {}, which is not an engine port flavour ({e})",
            d.port_flavour
        )),
    }
    match d.pooling.name().parse::<Pooling>() {
        Ok(p) if p == defaults::DEFAULT_POOLING => {}
        Ok(p) => mismatches.push(format!(
            "DEFAULT_POOLING: engine/src/defaults.rs has Pooling::{:?}, reports/decisions.toml has {} (Pooling::{p:?})",
            defaults::DEFAULT_POOLING,
            d.pooling
        )),
        Err(e) => mismatches.push(format!(
            "DEFAULT_POOLING: reports/decisions.toml has {}, which is not an engine pooling strategy ({e})",
            d.pooling
        )),
    }
    assert!(
        mismatches.is_empty(),
        "the engine's defaults disagree with the committed decisions:\n  {}\n\
         Regenerate with scripts/report.sh and copy [defaults] into engine/src/defaults.rs.",
        mismatches.join("\n  ")
    );
}

#[test]
fn every_matrix_row_has_a_rationale() {
    let d = committed();
    for key in flowengine_reports::decide::DECISION_ORDER {
        let dec = d
            .decisions
            .get(key)
            .unwrap_or_else(|| panic!("decisions.toml lacks [decisions.{key}]"));
        assert!(!dec.rationale.is_empty(), "{key} has no rationale");
        assert!(!dec.rule.is_empty(), "{key} has no rule");
    }
}
