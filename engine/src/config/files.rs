//! The files a pipeline names, checked before anything runs (`flowengine validate` without
//! `--config-only`): every input exists and can be opened for reading, and every output's
//! directory exists (or can be created) and accepts new files. Each problem names the step,
//! the key and the line the key is written on, and gives the OS error once.
//!
//! The check does not read data: a source still opens its input when the pipeline is built
//! (to read the header), which `validate` does next.

use std::path::{Path, PathBuf};

use crate::config::PipelineConfig;
use crate::error::{Error, Result};
use crate::steps::PathRole;

/// Where a path-valued key is written, recorded while the file is loaded: the YAML path of
/// the key (`Pipeline.Plugins[0].Config.FilePath`), its line and the path it resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathKey {
    /// Index of the step in [`PipelineConfig::steps`].
    pub step: usize,
    /// Dotted key path.
    pub key: String,
    /// 1-based line of the key (0 when unknown).
    pub line: usize,
    /// The path as resolved (what the step opens).
    pub path: PathBuf,
}

/// One file a step cannot use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProblem {
    /// The step.
    pub step: String,
    /// The config key naming the file (`FilePath`, `DeadLetterFilePath`).
    pub key: String,
    /// 1-based line of that key in the pipeline file (the step's line when unknown).
    pub line: usize,
    /// The file.
    pub path: PathBuf,
    /// What is wrong, with the OS error.
    pub problem: String,
}

/// Checks every file the steps read or write (standard input and output, `-`, excepted).
///
/// # Errors
/// [`Error::Files`] listing every problem found, not only the first.
pub fn check_files(config: &PipelineConfig) -> Result<()> {
    let mut problems = Vec::new();
    for (i, def) in config.steps.iter().enumerate() {
        for (role, key, path) in def.config.file_paths() {
            if path.as_os_str() == "-" {
                continue;
            }
            let problem = match role {
                PathRole::Input => input_problem(path),
                PathRole::Output => output_problem(path),
            };
            let Some(problem) = problem else { continue };
            let line = config
                .path_keys
                .iter()
                .find(|k| k.step == i && k.path == path)
                .map_or(def.line, |k| k.line);
            problems.push(FileProblem {
                step: def.name.clone(),
                key: key.to_owned(),
                line,
                path: path.to_owned(),
                problem,
            });
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Files {
            file: config.file.clone(),
            problems,
        })
    }
}

/// Why `path` cannot be read, if it cannot.
fn input_problem(path: &Path) -> Option<String> {
    let shown = path.display();
    match std::fs::metadata(path) {
        Err(e) => Some(format!("cannot read {shown}: {e}")),
        Ok(m) if m.is_dir() => Some(format!("cannot read {shown}: it is a directory, not a file")),
        Ok(m) if m.is_file() => std::fs::File::open(path).err().map(|e| format!("cannot read {shown}: {e}")),
        // A FIFO or a device: opening a FIFO blocks until a writer comes, so existing is
        // all that is checked.
        Ok(_) => None,
    }
}

/// Why `path` cannot be written, if it cannot: it is a directory, or the nearest existing
/// directory on its way is not a directory or does not accept a new file (checked by
/// creating and removing an empty probe file, which is what the run's temp file needs).
fn output_problem(path: &Path) -> Option<String> {
    let shown = path.display();
    if std::fs::metadata(path).is_ok_and(|m| m.is_dir()) {
        return Some(format!("cannot write {shown}: it is a directory"));
    }
    let mut dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // Missing directories are created by the run: what matters is the first one that exists.
    while std::fs::symlink_metadata(&dir).is_err() {
        match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => dir = p.to_path_buf(),
            _ => {
                dir = PathBuf::from(".");
                break;
            }
        }
    }
    match std::fs::metadata(&dir) {
        Err(e) => Some(format!("cannot write {shown}: {}: {e}", dir.display())),
        Ok(m) if !m.is_dir() => Some(format!("cannot write {shown}: {} is a file, not a directory", dir.display())),
        Ok(_) => tempfile::Builder::new()
            .prefix(".flowengine-validate-")
            .tempfile_in(&dir)
            .err()
            .map(|e| format!("cannot write {shown}: cannot create files in {}: {e}", dir.display())),
    }
}

/// The text of [`Error::Files`]: one problem on one line; several, one per line.
pub(crate) fn describe(file: &str, problems: &[FileProblem]) -> String {
    let line = |p: &FileProblem| format!("{file}:{}: step '{}', {}: {}", p.line, p.step, p.key, p.problem);
    match problems {
        [one] => line(one),
        many => {
            let mut s = format!("{} files the pipeline uses cannot be used:", many.len());
            for p in many {
                s.push_str("\n  ");
                s.push_str(&line(p));
            }
            s
        }
    }
}
