//! Helpers shared by the scenario tests.
#![allow(dead_code)]

pub mod js;

use std::path::{Path, PathBuf};

use flowengine::{Error, Pipeline, RunSummary};

/// A temp directory holding a pipeline file and its data.
pub struct Scenario {
    pub dir: tempfile::TempDir,
}

impl Scenario {
    pub fn new() -> Scenario {
        Scenario {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }

    pub fn write_bytes(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// Builds and runs `pipeline.yaml` written with `yaml`.
    pub fn run(&self, yaml: &str) -> Result<RunSummary, Error> {
        let p = self.write("pipeline.yaml", yaml);
        Pipeline::from_file(&p, &[])?.run()
    }

    pub fn build(&self, yaml: &str) -> Result<Pipeline, Error> {
        let p = self.write("pipeline.yaml", yaml);
        Pipeline::from_file(&p, &[])
    }

    /// Every file in the directory except the pipeline and `keep`.
    pub fn files(&self) -> Vec<String> {
        let mut v: Vec<String> = walk(self.dir.path())
            .into_iter()
            .map(|p| p.strip_prefix(self.dir.path()).unwrap().display().to_string())
            .collect();
        v.sort();
        v
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A source → sink pipeline over `in.csv` with the given column lines and source extras.
pub fn csv_pipeline(columns: &str, source_extra: &str, sink_extra: &str) -> String {
    format!(
        r#"
Pipeline:
  Name: test
  Plugins:
    - Name: src
      Type: DelimitedSource
      Config:
        FilePath: in.csv
        {source_extra}
        OutputSchema:
          Columns:
{columns}
    - Name: out
      Type: DelimitedSink
      Config:
        FilePath: out.csv
        {sink_extra}
"#
    )
}

pub const CUSTOMER_COLUMNS: &str = r#"            - { Name: id, Type: int32, IsNullable: false }
            - { Name: name, Type: string, IsNullable: true }
            - { Name: balance, Type: decimal, IsNullable: true }"#;
