//! `ConsoleOutput` (the original's `…Examples.ConsoleOutputPlugin`): an aligned table on
//! stdout. Rows past `MaxRows` are consumed and counted but not printed.
//!
//! Memory is bounded whatever `MaxRows` says: values are kept already cut to
//! `MaxColumnWidth`, and at most [`BUFFERED_ROWS`] rows wait for the end of the run (so
//! their columns can be aligned). Past that, the table is printed as rows arrive, with every
//! column `MaxColumnWidth` wide — so a run that fails after that point has printed part of
//! its rows (a console is a stream, not a published file).

use std::io::Write;

use crate::chunk::Chunk;
use crate::config::{Obj, ParseEnv};
use crate::error::{Error, Result};
use crate::schema::SchemaRef;
use crate::steps::{BuildContext, Sink, StepRuntime};

/// Config of `ConsoleOutput`.
#[derive(Debug, Clone, PartialEq)]
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
    pub(crate) fn parse(o: &mut Obj<'_>, env: &mut ParseEnv<'_>) -> Result<Self> {
        let mut c = ConsoleOutputConfig::default();
        env.accept_ignored(o, &["Name"], "the step's name is its Name in Plugins")?;
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
            c.max_column_width = n.u64_in(1, 100_000)? as usize;
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
            printed: 0,
            fixed: None,
        })))
    }
}

/// Rows held back for alignment before the table is streamed.
pub const BUFFERED_ROWS: usize = 1000;

/// The running `ConsoleOutput`.
pub struct ConsoleOutput {
    cfg: ConsoleOutputConfig,
    schema: SchemaRef,
    rows: Vec<Vec<String>>,
    total: u64,
    /// Rows printed so far (streaming mode, once more than [`BUFFERED_ROWS`] were kept).
    printed: u64,
    /// Column widths once streaming.
    fixed: Option<Vec<usize>>,
}

impl ConsoleOutput {
    fn cut(&self, s: &str) -> String {
        if s.chars().count() > self.cfg.max_column_width {
            let mut t: String = s.chars().take(self.cfg.max_column_width.saturating_sub(1)).collect();
            t.push('…');
            t
        } else {
            s.to_owned()
        }
    }

    fn header(&self) -> Vec<String> {
        let mut header: Vec<String> = self.schema.names().map(|n| self.cut(n)).collect();
        if self.cfg.show_row_numbers {
            header.insert(0, "#".into());
        }
        header
    }

    fn numbered(&self, first: u64) -> Vec<Vec<String>> {
        self.rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut v = r.clone();
                if self.cfg.show_row_numbers {
                    v.insert(0, (first + i as u64 + 1).to_string());
                }
                v
            })
            .collect()
    }

    fn line(&self, cells: &[String], widths: &[usize]) -> String {
        let padded: Vec<String> = cells.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        padded.join(&self.cfg.delimiter).trim_end().to_owned() + "\n"
    }

    fn head_text(&self, widths: &[usize]) -> String {
        let mut out = String::new();
        if self.cfg.show_headers {
            out.push_str(&self.line(&self.header(), widths));
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            out.push_str(&self.line(&rule, widths));
        }
        out
    }

    fn summary_text(&self) -> String {
        if !self.cfg.show_summary {
            return String::new();
        }
        let shown = self.printed + self.rows.len() as u64;
        if shown < self.total {
            format!("({} rows, {} shown; raise MaxRows to see more)\n", self.total, shown)
        } else {
            format!("({} rows)\n", self.total)
        }
    }

    /// Renders what is left to print (what `commit` prints): the whole table, or in
    /// streaming mode the rows still held and the summary.
    pub fn render(&self) -> String {
        let rows = self.numbered(self.printed);
        let mut out = String::new();
        let widths = match &self.fixed {
            Some(w) => w.clone(),
            None => {
                let header = self.header();
                let mut widths: Vec<usize> = header
                    .iter()
                    .map(|h| if self.cfg.show_headers { h.chars().count() } else { 0 })
                    .collect();
                for r in &rows {
                    for (w, v) in widths.iter_mut().zip(r) {
                        *w = (*w).max(v.chars().count());
                    }
                }
                out.push_str(&self.head_text(&widths));
                widths
            }
        };
        for r in &rows {
            out.push_str(&self.line(r, &widths));
        }
        out.push_str(&self.summary_text());
        out
    }

    /// Switches to streaming: prints the header and the rows held, with fixed widths.
    fn stream_out(&mut self) -> Result<()> {
        let mut text = String::new();
        if self.fixed.is_none() {
            let mut widths: Vec<usize> = self
                .header()
                .iter()
                .map(|h| h.chars().count().max(self.cfg.max_column_width))
                .collect();
            if self.cfg.show_row_numbers {
                widths[0] = 10;
            }
            text.push_str(&self.head_text(&widths));
            self.fixed = Some(widths);
        }
        let widths = self.fixed.clone().unwrap_or_default();
        for r in self.numbered(self.printed) {
            text.push_str(&self.line(&r, &widths));
        }
        self.printed += self.rows.len() as u64;
        self.rows.clear();
        print_out(&text)
    }
}

fn print_out(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|_| stdout.flush()) {
        // A closed pipe (`| head`) is a normal end, not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::io("<stdout>", e, "cannot print the table")),
        Ok(()) => Ok(()),
    }
}

impl Sink for ConsoleOutput {
    fn write(&mut self, chunk: &Chunk) -> Result<()> {
        let mut buf = Vec::new();
        for i in 0..chunk.len() {
            self.total += 1;
            if self.cfg.max_rows != 0 && self.printed + self.rows.len() as u64 >= self.cfg.max_rows {
                continue;
            }
            let row = chunk
                .columns()
                .iter()
                .map(|c| {
                    buf.clear();
                    c.write_text(i, &mut buf);
                    self.cut(&String::from_utf8_lossy(&buf))
                })
                .collect();
            self.rows.push(row);
            if self.rows.len() >= BUFFERED_ROWS {
                self.stream_out()?;
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        Ok(())
    }

    fn commit(&mut self) -> Result<()> {
        let text = self.render();
        self.rows.clear();
        print_out(&text)
    }

    fn rollback(&mut self) {
        // Printed text cannot be taken back.
    }

    fn abort(&mut self) {
        self.rows.clear();
    }
}

/// The `ConsoleOutput` step type.
pub const STEP_TYPE: crate::steps::StepType = crate::steps::StepType {
    name: "ConsoleOutput",
    aliases: &["Console"],
    kind: crate::steps::StepKind::Sink,
    parse: |o, env| Ok(crate::steps::StepConfig::new("ConsoleOutput", ConsoleOutputConfig::parse(o, env)?)),
    summary: "An aligned table on standard output (the original's example sink)",
};

impl crate::steps::StepSettings for ConsoleOutputConfig {
    fn build(&self, ctx: &BuildContext<'_>) -> Result<StepRuntime> {
        ConsoleOutputConfig::build(self, ctx)
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::Column;
    use crate::schema::{DataType, Field, Schema};

    #[test]
    fn memory_stays_bounded_with_max_rows_zero() {
        let schema = Schema::try_new(vec![Field::new("v", DataType::String, true)]).unwrap().interned();
        let mut col = Column::with_capacity(DataType::String, 3000);
        let long = "x".repeat(10_000);
        for _ in 0..3000 {
            col.push_text(&long).unwrap();
        }
        let chunk = Chunk::from_columns(schema.clone(), vec![col], (1..=3000).collect());
        let cfg = ConsoleOutputConfig {
            max_rows: 0,
            show_summary: true,
            ..Default::default()
        };
        let mut sink = ConsoleOutput {
            cfg,
            schema,
            rows: Vec::new(),
            total: 0,
            printed: 0,
            fixed: None,
        };
        sink.write(&chunk).unwrap();
        assert!(sink.rows.len() < BUFFERED_ROWS, "{}", sink.rows.len());
        assert_eq!(sink.printed + sink.rows.len() as u64, 3000);
        // Values are kept cut to the column width, not whole.
        assert!(sink.rows.iter().flatten().all(|v| v.chars().count() <= 30));
        assert!(sink.render().ends_with("(3000 rows)\n"));
    }
}
