//! `ConsoleOutput` (the original's `…Examples.ConsoleOutputPlugin`): an aligned table on
//! stdout. Rows past `MaxRows` are consumed and counted but not printed.

use std::io::Write;

use serde::{Deserialize, Serialize};

use crate::chunk::Chunk;
use crate::config::{Obj, ParseEnv};
use crate::error::{Error, Result};
use crate::schema::SchemaRef;
use crate::steps::{BuildContext, Sink, StepRuntime};

/// Config of `ConsoleOutput`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsoleOutputConfig {
    /// Print the column names (default true).
    pub show_headers: bool,
    /// Print a row number column (default false).
    pub show_row_numbers: bool,
    /// Rows printed at most (default 100; 0 = all).
    pub max_rows: u64,
    /// Column separator (default ` | `).
    pub delimiter: String,
    /// Longer values are cut with `…` (default 30).
    pub max_column_width: usize,
    /// Print a row count at the end (default true).
    pub show_summary: bool,
}

impl Default for ConsoleOutputConfig {
    fn default() -> Self {
        ConsoleOutputConfig {
            show_headers: true,
            show_row_numbers: false,
            max_rows: 100,
            delimiter: " | ".into(),
            max_column_width: 30,
            show_summary: true,
        }
    }
}

impl ConsoleOutputConfig {
    pub(crate) fn parse(o: &mut Obj<'_>, _env: &mut ParseEnv<'_>) -> Result<Self> {
        let mut c = ConsoleOutputConfig::default();
        if let Some(n) = o.take(&["ShowHeaders", "HasHeaders"])? {
            c.show_headers = n.bool()?;
        }
        if let Some(n) = o.take(&["ShowRowNumbers"])? {
            c.show_row_numbers = n.bool()?;
        }
        if let Some(n) = o.take(&["MaxRows"])? {
            c.max_rows = n.u64()?;
        }
        if let Some(n) = o.take(&["Delimiter", "Separator"])? {
            c.delimiter = n.string()?;
        }
        if let Some(n) = o.take(&["MaxColumnWidth"])? {
            c.max_column_width = (n.u64()? as usize).max(1);
        }
        if let Some(n) = o.take(&["ShowSummary"])? {
            c.show_summary = n.bool()?;
        }
        Ok(c)
    }

    pub(crate) fn build(&self, ctx: &BuildContext<'_>) -> Result<StepRuntime> {
        let schema = ctx.require_input()?;
        Ok(StepRuntime::Sink(Box::new(ConsoleOutput {
            cfg: self.clone(),
            schema,
            rows: Vec::new(),
            total: 0,
        })))
    }
}

/// The running `ConsoleOutput`.
pub struct ConsoleOutput {
    cfg: ConsoleOutputConfig,
    schema: SchemaRef,
    rows: Vec<Vec<String>>,
    total: u64,
}

impl ConsoleOutput {
    /// Renders the table (what `commit` prints).
    pub fn render(&self) -> String {
        let cut = |s: &str| -> String {
            if s.chars().count() > self.cfg.max_column_width {
                let mut t: String = s.chars().take(self.cfg.max_column_width.saturating_sub(1)).collect();
                t.push('…');
                t
            } else {
                s.to_owned()
            }
        };
        let mut header: Vec<String> = self.schema.names().map(cut).collect();
        if self.cfg.show_row_numbers {
            header.insert(0, "#".into());
        }
        let rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut v: Vec<String> = r.iter().map(|s| cut(s)).collect();
                if self.cfg.show_row_numbers {
                    v.insert(0, (i + 1).to_string());
                }
                v
            })
            .collect();
        let mut widths: Vec<usize> = header
            .iter()
            .map(|h| if self.cfg.show_headers { h.chars().count() } else { 0 })
            .collect();
        for r in &rows {
            for (w, v) in widths.iter_mut().zip(r) {
                *w = (*w).max(v.chars().count());
            }
        }
        let line = |cells: &[String]| -> String {
            let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
            padded.join(&self.cfg.delimiter).trim_end().to_owned() + "\n"
        };
        let mut out = String::new();
        if self.cfg.show_headers {
            out.push_str(&line(&header));
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            out.push_str(&line(&rule));
        }
        for r in &rows {
            out.push_str(&line(r));
        }
        if self.cfg.show_summary {
            let shown = self.rows.len() as u64;
            if shown < self.total {
                out.push_str(&format!("({} rows, {} shown; raise MaxRows to see more)\n", self.total, shown));
            } else {
                out.push_str(&format!("({} rows)\n", self.total));
            }
        }
        out
    }
}

impl Sink for ConsoleOutput {
    fn write(&mut self, chunk: &Chunk) -> Result<()> {
        let mut buf = Vec::new();
        for i in 0..chunk.len() {
            self.total += 1;
            if self.cfg.max_rows != 0 && self.rows.len() as u64 >= self.cfg.max_rows {
                continue;
            }
            let row = chunk
                .columns()
                .iter()
                .map(|c| {
                    buf.clear();
                    c.write_text(i, &mut buf);
                    String::from_utf8_lossy(&buf).into_owned()
                })
                .collect();
            self.rows.push(row);
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        Ok(())
    }

    fn commit(&mut self) -> Result<()> {
        let text = self.render();
        let mut stdout = std::io::stdout().lock();
        match stdout.write_all(text.as_bytes()).and_then(|_| stdout.flush()) {
            // A closed pipe (`| head`) is a normal end, not an error.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            Err(e) => Err(Error::io("<stdout>", e, "cannot print the table")),
            Ok(()) => Ok(()),
        }
    }

    fn abort(&mut self) {
        self.rows.clear();
    }
}
