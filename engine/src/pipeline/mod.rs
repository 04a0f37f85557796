//! A pipeline: planned once (`plan.rs`: every check that needs no data, each error with the
//! `file:line` of the step or connection at fault), then executed (`execute.rs`: a thread per
//! step, bounded ports, the ordered worker pool of `workers.rs`, two-phase publish).
//!
//! The first error cancels every step; outputs are published (temp files renamed into
//! place) only when every step succeeded.

mod execute;
mod plan;
mod workers;

use std::path::Path;
use std::sync::Arc;

use crate::config::PipelineConfig;
use crate::error::Result;
use crate::port::CancelToken;
use crate::steps::{Registry, StepKind, StepRuntime};
pub use crate::summary::{Progress, RunSummary};

/// A validated, ready-to-run pipeline.
pub struct Pipeline {
    config: PipelineConfig,
    plan: plan::Plan,
    options: RunOptions,
}

/// What a run does beyond its pipeline file: CLI switches.
#[derive(Default, Clone)]
pub(crate) struct RunOptions {
    /// `run --limit`: rows each source may send.
    pub row_limit: Option<u64>,
    /// Debug taps: (step, output, tap).
    pub taps: Vec<(String, crate::steps::OutputId, Arc<crate::tap::Tap>)>,
    /// `run --profile-memory`: sample memory every this long.
    pub memory_profile: Option<std::time::Duration>,
}

impl Pipeline {
    /// Loads and builds a pipeline file. `vars` override its `Variables`.
    ///
    /// # Errors
    /// Any load or build error (see [`Pipeline::build`]).
    pub fn from_file(path: impl AsRef<Path>, vars: &[(String, String)]) -> Result<Pipeline> {
        Self::from_file_with_registry(path, vars, &Registry::new())
    }

    /// Loads and builds a pipeline file that may use the step types of `registry`.
    ///
    /// # Errors
    /// Any load or build error.
    pub fn from_file_with_registry(path: impl AsRef<Path>, vars: &[(String, String)], registry: &Registry) -> Result<Pipeline> {
        Pipeline::build(PipelineConfig::from_file_with_registry(path.as_ref(), vars, registry)?)
    }

    /// Loads a pipeline from YAML text; relative paths resolve against `base_dir`.
    ///
    /// # Errors
    /// Any load or build error.
    pub fn from_yaml_str(yaml: &str, base_dir: impl AsRef<Path>, vars: &[(String, String)]) -> Result<Pipeline> {
        Pipeline::build(PipelineConfig::from_yaml_str(yaml, "<inline>", base_dir.as_ref(), vars)?)
    }

    /// Builds the DAG from a config (parsed, or built in code with [`crate::StepConfig::new`]
    /// and [`Registry::plugin_config`]).
    ///
    /// # Errors
    /// [`crate::Error::Plan`] naming the step and its `file:line` for: a duplicate name, a
    /// connection to an unknown step, output or named input (`To: Step.input`), a named
    /// input sharing an upstream step with the main input, a connection listed twice, a cycle (listing
    /// its steps), a step without input (or a source with one), an unconnected output, a
    /// fan-in schema mismatch, two outputs on one file or an output on an input, several
    /// instances of a stateful transform; plus whatever a step's builder reports (e.g. a
    /// source file's header not matching its schema).
    ///
    /// A step's `DeadLetterFilePath` becomes a `DelimitedSink` named
    /// `<step>.DeadLetterFilePath` on its error output (see [`crate::dead_letter`]); it is in
    /// [`Pipeline::config`] and the run's summary like any other step.
    pub fn build(config: PipelineConfig) -> Result<Pipeline> {
        Self::build_projecting(config, true)
    }

    /// [`Pipeline::build`] with every source sending every column it declares, even to
    /// steps that read only some (see [`crate::steps::StepSettings::read_columns`]): what
    /// `flowengine tap` builds, so that a tap on a source shows its whole rows. (A plan is
    /// not built twice: a source on stdin has already read its header.)
    ///
    /// # Errors
    /// As [`Pipeline::build`].
    pub fn build_every_column(config: PipelineConfig) -> Result<Pipeline> {
        Self::build_projecting(config, false)
    }

    /// [`Pipeline::build`]; `project` lets sources leave out columns nobody reads.
    fn build_projecting(mut config: PipelineConfig, project: bool) -> Result<Pipeline> {
        plan::expand_dead_letters(&mut config);
        let plan = plan::plan(&config, project)?;
        check_debug_taps(&config, &plan)?;
        Ok(Pipeline {
            config,
            plan,
            options: RunOptions::default(),
        })
    }

    /// Lets each source send at most `rows` rows, then stop as if its input had ended (a
    /// dry run on the head of the data: `flowengine run --limit`). A source still reads the
    /// chunk that reaches the limit, so its `rows_in` may exceed `rows_out`.
    pub fn with_row_limit(mut self, rows: u64) -> Pipeline {
        self.options.row_limit = Some(rows);
        self
    }

    /// Samples resident memory and the budget's reservations every `interval` (at least
    /// 1 ms) while the run lasts, and reports them with each step's peak reservation in
    /// [`RunSummary::memory_profile`] (`flowengine run --profile-memory`).
    pub fn with_memory_profile(mut self, interval: std::time::Duration) -> Pipeline {
        self.options.memory_profile = Some(interval.max(std::time::Duration::from_millis(1)));
        self
    }

    /// Shows `tap` every chunk step `step` sends on `output` (`""`: its main output; see
    /// [`crate::tap`]). The run's outputs and counts are the same with or without it. A
    /// source that sends only the columns the steps it feeds read shows those: build with
    /// [`Pipeline::build_every_column`] to see all.
    ///
    /// # Errors
    /// [`crate::Error::Plan`] when the pipeline has no such step, or the step no such
    /// output (a sink has none).
    pub fn with_tap(mut self, step: &str, output: &str, tap: Arc<crate::tap::Tap>) -> Result<Pipeline> {
        let (step, id) = tap_target(&self.plan, step, output).map_err(|m| crate::Error::plan(step, m))?;
        self.options.taps.push((step, id, tap));
        Ok(self)
    }

    /// The loaded configuration.
    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }

    /// Step names in execution (topological) order.
    pub fn execution_order(&self) -> Vec<&str> {
        self.plan.order.iter().map(|&i| self.plan.steps[i].name.as_str()).collect()
    }

    /// A short description of the DAG: each step, its kind and output schema, and the edges
    /// with each connection's own channel settings.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let steps = &self.plan.steps;
        for &i in &self.plan.order {
            let s = &steps[i];
            out.push_str(&format!("{} [{}]", s.name, s.kind));
            if let Some(schema) = &s.output_schema {
                out.push_str(&format!(" -> {schema}"));
            }
            if s.projected {
                out.push_str(" (the columns the steps it feeds read; the others are checked, not sent)");
            }
            out.push('\n');
            for e in self.plan.edges.iter().filter(|e| e.from == i) {
                out.push_str(&format!(
                    "    {}{} -> {}{} (BufferSize {}, {:?})\n",
                    s.name,
                    e.output.suffix(),
                    steps[e.to].name,
                    e.input_suffix(),
                    e.channel.buffer_size,
                    e.channel.full_mode
                ));
            }
        }
        out
    }

    /// The DAG in Graphviz DOT: one node per step (name, type, kind), one edge per
    /// connection (output name, `-> input` for a named input, BufferSize, FullMode).
    /// `flowengine graph` prints it.
    pub fn to_dot(&self) -> String {
        let q = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        let mut out = format!("digraph \"{}\" {{\n  rankdir=LR;\n", q(&self.config.name));
        for (i, s) in self.plan.steps.iter().enumerate() {
            let shape = match s.kind {
                StepKind::Source => "invhouse",
                StepKind::Transform => "box",
                StepKind::Sink => "house",
            };
            let ty = self.config.steps[i].config.type_name();
            out.push_str(&format!("  s{i} [label=\"{}\\n{}\", shape={shape}];\n", q(&s.name), q(ty)));
        }
        for e in &self.plan.edges {
            let label = format!(
                "{}{}{} {:?}",
                e.output.suffix().trim_start_matches('.'),
                e.input.as_ref().map(|n| format!(" -> {n} ")).unwrap_or_default(),
                e.channel.buffer_size,
                e.channel.full_mode
            );
            out.push_str(&format!("  s{} -> s{} [label=\"{}\"];\n", e.from, e.to, q(label.trim())));
        }
        out.push_str("}\n");
        out
    }

    /// A handle for watching the run from another thread.
    pub fn progress(&self) -> Progress {
        let steps = &self.plan.steps;
        let sources: Vec<usize> = steps
            .iter()
            .enumerate()
            .filter(|(_, s)| s.kind == StepKind::Source)
            .map(|(i, _)| i)
            .collect();
        let total: Option<u64> = sources
            .iter()
            .map(|&i| match &steps[i].runtime {
                StepRuntime::Source(s) => s.size_hint_bytes(),
                _ => None,
            })
            .sum();
        let total_rows: Option<u64> = sources
            .iter()
            .map(|&i| match &steps[i].runtime {
                StepRuntime::Source(s) => s.size_hint_rows(),
                _ => None,
            })
            .sum();
        Progress {
            steps: steps.iter().map(|s| (s.name.clone(), Arc::clone(&s.metrics))).collect(),
            total_bytes: total,
            total_rows,
            sources,
            kinds: steps.iter().map(|s| s.kind).collect(),
            ports: self.plan.ports.clone(),
            memory: Arc::clone(&self.plan.memory.pool),
        }
    }

    /// Runs to completion. Writes nothing but the pipeline's own outputs: the performance
    /// baseline check (`Settings.Performance`) is [`crate::regression::check`], which the CLI
    /// calls after a run.
    ///
    /// # Errors
    /// The first error of any step (others are cancelled), or [`crate::Error::Cancelled`].
    pub fn run(self) -> Result<RunSummary> {
        self.run_with_cancel(CancelToken::new())
    }

    /// Runs to completion or until `cancel` is set.
    ///
    /// # Errors
    /// As [`Pipeline::run`].
    pub fn run_with_cancel(mut self, cancel: CancelToken) -> Result<RunSummary> {
        // `Settings.DebugTaps`: their files are opened (truncated) now, not when the pipeline
        // is built, so that `validate` writes nothing.
        let mut debug_taps = Vec::new();
        for t in &self.config.settings.debug_taps {
            let (step, id) = tap_target(&self.plan, &t.step, &t.output)
                .map_err(|m| crate::Error::plan_at(&crate::error::Position::new(&self.config.file, t.line), "Settings.DebugTaps", m))?;
            let open = crate::tap::DebugTapFile::open(&step, t)?;
            self.options.taps.push((step, id, Arc::clone(&open.tap)));
            debug_taps.push(open);
        }
        let mut result = execute::execute(&self.config, self.plan, cancel, &self.options);
        // Drop the run's handles on the taps first: each file is then finished exactly once.
        self.options.taps.clear();
        for t in debug_taps {
            let note = t.finish(result.as_ref().err());
            if let Ok(summary) = &mut result {
                summary.notes.push(note);
            }
        }
        result
    }
}

/// The step and output a tap names: `step` with `output` (`""`: the main output), or
/// `step.output` in one name. Errors say what exists, with a "did you mean".
fn tap_target(plan: &plan::Plan, step: &str, output: &str) -> std::result::Result<(String, crate::steps::OutputId), String> {
    use crate::steps::OutputId;
    let names: Vec<&str> = plan.steps.iter().map(|s| s.name.as_str()).collect();
    let (step, output) = match plan.steps.iter().find(|s| s.name == step) {
        Some(_) => (step, output),
        // `Step: enrich.routed`: a step name may contain dots, so an exact name wins.
        None => match step.rsplit_once('.') {
            Some((s, o)) if output.is_empty() && names.contains(&s) => (s, o),
            _ => {
                let hint = crate::error::suggest(step, names.iter().copied())
                    .map(|n| format!(" (did you mean '{n}'?)"))
                    .unwrap_or_default();
                return Err(format!("no step '{step}' to tap{hint}; steps: {}", names.join(", ")));
            }
        },
    };
    let Some(s) = plan.steps.iter().find(|s| s.name == step) else {
        return Err(format!("no step '{step}' to tap; steps: {}", names.join(", ")));
    };
    let id = OutputId::from_name(output);
    if s.outputs.contains(&id) {
        return Ok((step.to_owned(), id));
    }
    let outputs: Vec<String> = s
        .outputs
        .iter()
        .map(|o| match o {
            OutputId::Main => "(main)".to_owned(),
            OutputId::Named(n) => n.clone(),
        })
        .collect();
    // Every step has the error output; a sink has nothing else.
    if outputs.iter().all(|o| o == crate::dead_letter::ERRORS_OUTPUT) {
        return Err(format!("'{step}' is a sink: it has no output to tap; tap the step that feeds it"));
    }
    let hint = crate::error::suggest(output, outputs.iter().map(String::as_str))
        .map(|n| format!(" (did you mean '{n}'?)"))
        .unwrap_or_default();
    Err(format!(
        "'{step}' has no output '{output}'{hint}; its outputs: {}",
        outputs.join(", ")
    ))
}

/// `Settings.DebugTaps` at plan time: every tap names a step and output that exist, masks
/// fields its output has (a misspelt mask would print the value it was meant to hide), and
/// writes a file no step reads or writes and no other tap writes.
fn check_debug_taps(config: &PipelineConfig, plan: &plan::Plan) -> Result<()> {
    use crate::config::TapDestination;
    let mut files: Vec<(&Path, usize)> = Vec::new();
    for (i, t) in config.settings.debug_taps.iter().enumerate() {
        let at = crate::error::Position::new(&config.file, t.line);
        let label = format!("Settings.DebugTaps[{i}]");
        let (step, id) = tap_target(plan, &t.step, &t.output).map_err(|m| crate::Error::plan_at(&at, &label, m))?;
        let planned = plan.steps.iter().find(|s| s.name == step);
        let schema = match &id {
            crate::steps::OutputId::Named(n) if n == crate::dead_letter::ERRORS_OUTPUT => planned.map(|s| Arc::clone(&s.error_schema)),
            _ => planned.and_then(|s| s.output_schema.clone()),
        };
        if let Some(schema) = schema {
            let fields: Vec<&str> = schema.fields().iter().map(|f| f.name.as_str()).collect();
            for m in &t.tap.mask_fields {
                if !fields.iter().any(|f| f.eq_ignore_ascii_case(m)) {
                    let hint = crate::error::suggest(m, fields.iter().copied())
                        .map(|n| format!(" (did you mean '{n}'?)"))
                        .unwrap_or_default();
                    return Err(crate::Error::plan_at(
                        &at,
                        &label,
                        format!(
                            "MaskFields names '{m}', which '{step}' does not send{hint}; its fields: {}",
                            fields.join(", ")
                        ),
                    ));
                }
            }
        }
        let TapDestination::File(path) = &t.destination else { continue };
        if let Some((_, j)) = files.iter().find(|(p, _)| *p == path.as_path()) {
            return Err(crate::Error::plan_at(
                &at,
                &label,
                format!(
                    "Destination {} is also the destination of Settings.DebugTaps[{j}]; give each tap its own file",
                    path.display()
                ),
            ));
        }
        files.push((path, i));
        for def in &config.steps {
            if let Some((_, key, _)) = def.config.file_paths().into_iter().find(|(_, _, p)| same_file(p, path)) {
                return Err(crate::Error::plan_at(
                    &at,
                    &label,
                    format!(
                        "Destination {} is {key} of step '{}'; a tap would overwrite it — write the tap somewhere else",
                        path.display(),
                        def.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Two paths naming one file (as written, or once resolved when both exist).
fn same_file(a: &Path, b: &Path) -> bool {
    a == b || matches!((std::fs::canonicalize(a), std::fs::canonicalize(b)), (Ok(x), Ok(y)) if x == y)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two sinks; the second one's publish fails: the first one's target must be restored.
    #[test]
    fn a_publish_failure_part_way_restores_what_was_published() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.csv"), "OLD A\n").unwrap();
        let yaml = r#"
Pipeline:
  Name: t
  Plugins:
    - { Name: gen, Type: DataGenerator, Config: { RowCount: 10 } }
    - { Name: a, Type: DelimitedSink, Config: { FilePath: a.csv } }
    - { Name: b, Type: DelimitedSink, Config: { FilePath: b.csv } }
  Connections:
    - { From: gen, To: a }
    - { From: gen, To: b }
"#;
        let b = std::fs::canonicalize(dir.path()).unwrap().join("b.csv");
        crate::output_file::failpoint::arm(b.clone());
        let r = Pipeline::from_yaml_str(yaml, dir.path(), &[]).unwrap().run();
        crate::output_file::failpoint::disarm(&b);
        let e = r.unwrap_err().to_string();
        assert!(e.contains("b.csv"), "{e}");
        assert_eq!(std::fs::read_to_string(dir.path().join("a.csv")).unwrap(), "OLD A\n");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 1, "{left:?}");
    }

    /// Dead letters are an output too: a sink failing to publish takes them back.
    #[test]
    fn dead_letters_are_rolled_back_with_the_sinks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("in.csv"), "id\n1\nx\n3\n").unwrap();
        let yaml = r#"
Pipeline:
  Name: t
  Plugins:
    - Name: src
      Type: DelimitedSource
      Config: { FilePath: in.csv, SkipMalformedRows: true, DeadLetterFilePath: dead.csv, OutputSchema: { Columns: [ { Name: id, Type: int32 } ] } }
    - { Name: out, Type: DelimitedSink, Config: { FilePath: out.csv } }
"#;
        let out = std::fs::canonicalize(dir.path()).unwrap().join("out.csv");
        crate::output_file::failpoint::arm(out.clone());
        let r = Pipeline::from_yaml_str(yaml, dir.path(), &[]).unwrap().run();
        crate::output_file::failpoint::disarm(&out);
        assert!(r.is_err());
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("in.csv")], "{left:?}");
    }

    /// A transform's dead letters are published with the run's outputs: committed, then
    /// rolled back (the old file restored) when a sink fails to publish.
    #[test]
    fn a_transforms_dead_letters_are_rolled_back_with_the_sinks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("in.csv"), "id\n1\n2\n3\n").unwrap();
        std::fs::write(dir.path().join("dead.csv"), "OLD\n").unwrap();
        let yaml = r#"
Pipeline:
  Name: t
  Plugins:
    - Name: src
      Type: DelimitedSource
      Config: { FilePath: in.csv, OutputSchema: { Columns: [ { Name: id, Type: int32 } ] } }
    - Name: js
      Type: JavaScriptTransform
      Config:
        Script: "function process(c) { if (c.input.getValue('id') === 2) throw new Error('two'); return true; }"
        OnError: DeadLetter
        DeadLetterFilePath: dead.csv
        Workers: 2
    - { Name: out, Type: DelimitedSink, Config: { FilePath: out.csv } }
"#;
        let out = std::fs::canonicalize(dir.path()).unwrap().join("out.csv");
        crate::output_file::failpoint::arm(out.clone());
        let r = Pipeline::from_yaml_str(yaml, dir.path(), &[]).unwrap().run();
        crate::output_file::failpoint::disarm(&out);
        assert!(r.is_err());
        assert_eq!(std::fs::read_to_string(dir.path().join("dead.csv")).unwrap(), "OLD\n");
        let mut left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        left.sort();
        assert_eq!(left, vec![std::ffi::OsString::from("dead.csv"), "in.csv".into()], "{left:?}");
        // Without the failure, the row is there.
        let s = Pipeline::from_yaml_str(yaml, dir.path(), &[]).unwrap().run().unwrap();
        assert_eq!(
            (s.step("js").unwrap().rows_rejected, s.step("js").unwrap().rows_dead_lettered),
            (1, 1)
        );
        let text = std::fs::read_to_string(dir.path().join("dead.csv")).unwrap();
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some("id,_error_step,_error_field,_error_reason,_error_file,_error_line,_error_time,_error_attempts")
        );
        let row: Vec<&str> = lines.next().unwrap().split(',').collect();
        assert_eq!(
            (row[0], row[1], row[2], row[3], row[4], row[5], row[7]),
            ("2", "js", "", "two", "", "3", "1")
        );
        assert!(row[6].ends_with('Z'), "{text}");
        assert_eq!(lines.next(), None);
    }

    /// Every step has an `errors` output with its own schema: named in errors, checked on
    /// fan-in, and `DeadLetterFilePath` becomes a sink on it.
    #[test]
    fn the_error_output_is_planned_like_any_output() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("in.csv"), "id\n1\n").unwrap();
        let src = "    - { Name: src, Type: DelimitedSource, Config: { FilePath: in.csv, SkipMalformedRows: true, OutputSchema: { Columns: [ { Name: id, Type: int32 } ] } } }\n    - { Name: out, Type: DelimitedSink, Config: { FilePath: out.csv } }\n";
        let yaml = |conns: &str| format!("Pipeline:\n  Name: t\n  Plugins:\n{src}  Connections:\n{conns}");
        let err = |conns: &str| match Pipeline::from_yaml_str(&yaml(conns), dir.path(), &[]) {
            Ok(_) => panic!("expected an error for {conns}"),
            Err(e) => e.to_string(),
        };
        let e = err("    - { From: src, To: out }\n    - { From: src.errors, To: out }\n");
        assert!(e.contains("schema mismatch") && e.contains("_error_step"), "{e}");
        let e = err("    - { From: src.nope, To: out }\n");
        assert!(e.contains("its named outputs: errors"), "{e}");
        let p = Pipeline::from_yaml_str(&yaml("    - { From: src.errors, To: out }\n"), dir.path(), &[]).unwrap();
        assert!(p.describe().contains("src.errors -> out"), "{}", p.describe());
        // The shorthand: a sink named after the key, the implicit chain written out.
        let chain = "Pipeline:\n  Name: t\n  Plugins:\n    - { Name: src, Type: DelimitedSource, Config: { FilePath: in.csv, SkipMalformedRows: true, DeadLetterFilePath: dead.csv } }\n    - { Name: out, Type: DelimitedSink, Config: { FilePath: out.csv } }\n";
        let p = Pipeline::from_yaml_str(chain, dir.path(), &[]).unwrap();
        assert_eq!(p.execution_order(), vec!["src", "out", "src.DeadLetterFilePath"]);
        let d = p.describe();
        assert!(
            d.contains("src -> out") && d.contains("src.errors -> src.DeadLetterFilePath"),
            "{d}"
        );
        let s = p.run().unwrap();
        assert_eq!(s.step("src.DeadLetterFilePath").unwrap().rows_written, 0);
        assert!(std::fs::read_to_string(dir.path().join("dead.csv"))
            .unwrap()
            .starts_with("id,_error_step,"));
    }
}
