//! The JavaScript test pipeline shared by the JavaScript test files.

use std::fmt::Write as _;
use std::path::Path;

use flowengine::{Pipeline, RunSummary};

/// One test pipeline: `Src` (CSV) -> `JS` -> `Out` (CSV), plus sinks for `queues`.
pub struct Case {
    pub dir: tempfile::TempDir,
    csv: String,
    columns: Vec<(String, &'static str)>,
    chunk_size: usize,
    script: String,
    fields: Vec<(&'static str, &'static str, bool)>,
    js_extra: String,
    queues: Vec<&'static str>,
}

impl Case {
    pub fn new(csv: &str, columns: &[(&str, &'static str)], script: &str, fields: &[(&'static str, &'static str, bool)]) -> Case {
        Case {
            dir: tempfile::tempdir().unwrap(),
            csv: csv.to_owned(),
            columns: columns.iter().map(|(n, t)| ((*n).to_owned(), *t)).collect(),
            chunk_size: 1000,
            script: script.to_owned(),
            fields: fields.to_vec(),
            js_extra: String::new(),
            queues: Vec::new(),
        }
    }

    pub fn extra(mut self, yaml: &str) -> Case {
        self.js_extra.push_str(yaml);
        self.js_extra.push('\n');
        self
    }

    pub fn queues(mut self, q: &[&'static str]) -> Case {
        self.queues = q.to_vec();
        self
    }

    pub fn chunk_size(mut self, n: usize) -> Case {
        self.chunk_size = n;
        self
    }

    pub fn yaml(&self) -> String {
        let mut y = String::new();
        writeln!(y, "Pipeline:\n  Name: test\n  Plugins:").unwrap();
        writeln!(
            y,
            "    - Name: Src\n      Type: DelimitedSource\n      Config:\n        FilePath: in.csv\n        HasHeaders: true\n        ChunkSize: {}\n        OutputSchema:\n          Columns:",
            self.chunk_size
        )
        .unwrap();
        for (name, ty) in &self.columns {
            writeln!(y, "            - {{ Name: \"{name}\", Type: \"{ty}\", IsNullable: true }}").unwrap();
        }
        writeln!(
            y,
            "    - Name: JS\n      Type: JavaScriptTransform\n      Config:\n        Script: |"
        )
        .unwrap();
        for line in self.script.lines() {
            writeln!(y, "          {line}").unwrap();
        }
        writeln!(y, "        OutputSchema:\n          Fields:").unwrap();
        for (name, ty, required) in &self.fields {
            writeln!(y, "            - {{ Name: \"{name}\", Type: \"{ty}\", Required: {required} }}").unwrap();
        }
        for line in self.js_extra.lines() {
            writeln!(y, "        {line}").unwrap();
        }
        writeln!(
            y,
            "    - Name: Out\n      Type: DelimitedSink\n      Config:\n        FilePath: out.csv"
        )
        .unwrap();
        for q in &self.queues {
            writeln!(
                y,
                "    - Name: Sink_{q}\n      Type: DelimitedSink\n      Config:\n        FilePath: {q}.csv"
            )
            .unwrap();
        }
        writeln!(y, "  Connections:\n    - {{ From: Src, To: JS }}\n    - {{ From: JS, To: Out }}").unwrap();
        for q in &self.queues {
            writeln!(y, "    - {{ From: \"JS.{q}\", To: Sink_{q} }}").unwrap();
        }
        y
    }

    pub fn build(&self) -> flowengine::Result<Pipeline> {
        std::fs::write(self.dir.path().join("in.csv"), &self.csv).unwrap();
        Pipeline::from_yaml_str(&self.yaml(), self.dir.path(), &[])
    }

    pub fn run(&self) -> flowengine::Result<RunSummary> {
        self.build()?.run()
    }

    /// Runs and expects success.
    pub fn ok(&self) -> RunSummary {
        self.run().unwrap_or_else(|e| panic!("run failed: {e}\n{}", self.yaml()))
    }

    /// Lines of an output file, without the header.
    pub fn rows(&self, file: &str) -> Vec<String> {
        read_rows(&self.dir.path().join(file))
    }
}

pub fn read_rows(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().skip(1).map(str::to_owned).collect()
}

impl Case {
    /// Runs on another thread; panics when the run has not ended within `limit` (a hang).
    pub fn run_within(self, limit: std::time::Duration) -> flowengine::Result<RunSummary> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let r = self.run();
            let _ = tx.send(r);
            drop(self);
        });
        rx.recv_timeout(limit)
            .unwrap_or_else(|_| panic!("the run did not end within {limit:?}: the deadline does not cover it"))
    }
}
