//! The committed `reports/decisions.toml` and the engine's defaults (`engine/src/defaults.rs`)
//! must agree. After a new benchmark run, `scripts/report.sh` rewrites decisions.toml; this
//! test then fails until the engine's constants are updated to match (or the other way round).

use flowengine::defaults;
use flowengine_reports::decide::Decisions;

fn committed() -> Decisions {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("decisions.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    Decisions::from_toml(&text).unwrap_or_else(|e| panic!("parsing {}: {e:#}", path.display()))
}

#[test]
fn engine_defaults_match_committed_decisions() {
    let d = committed().defaults;
    let mut mismatches = Vec::new();
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
    check("PORT_FLAVOUR", defaults::PORT_FLAVOUR.to_owned(), d.port_flavour.to_string());
    check("POOLING", defaults::POOLING.to_owned(), d.pooling.to_string());
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
