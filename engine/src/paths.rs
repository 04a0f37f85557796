//! Every path in a pipeline file goes through [`resolve`].
//!
//! - `~`, `${VAR}` and `%VAR%` are expanded from the environment (an unset variable is an
//!   error, not an empty string: `${DATA}/in.csv` must not silently become `/in.csv`);
//! - relative paths resolve against the pipeline file's directory, not the working
//!   directory, so a pipeline runs the same from anywhere (an input found only relative to
//!   the working directory, as the original resolved it, is used with a note:
//!   `ParseEnv::input_path`);
//! - on Linux a Windows drive path `C:\dir\file.csv` maps to the WSL mount
//!   `/mnt/c/dir/file.csv`; on Windows `/mnt/c/dir` maps to `C:\dir`;
//! - a UNC path (`\\server\share\...`) cannot be opened on Linux and gets a clear error.

use std::path::{Path, PathBuf};

/// Which path convention to resolve for (the current OS unless testing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// Linux, WSL, macOS.
    Unix,
    /// Windows.
    Windows,
}

impl Platform {
    /// The platform this binary runs on.
    pub fn current() -> Platform {
        if cfg!(windows) {
            Platform::Windows
        } else {
            Platform::Unix
        }
    }
}

/// Expands `~`, `${VAR}` and `%VAR%` using `lookup`.
///
/// # Errors
/// When a referenced variable is not set.
pub fn expand_env(raw: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut s = String::with_capacity(raw.len());
    let mut rest = raw;
    if let Some(tail) = rest.strip_prefix('~') {
        if tail.is_empty() || tail.starts_with('/') || tail.starts_with('\\') {
            let home = lookup("HOME")
                .or_else(|| lookup("USERPROFILE"))
                .ok_or("'~' used but HOME is not set")?;
            s.push_str(&home);
            rest = tail;
        }
    }
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("${") {
            let end = after.find('}').ok_or_else(|| format!("unclosed '${{' in '{raw}'"))?;
            let name = &after[..end];
            s.push_str(&lookup(name).ok_or_else(|| format!("environment variable '{name}' is not set (used in '{raw}')"))?);
            rest = &after[end + 1..];
        } else if let Some(after) = rest.strip_prefix('%') {
            match after.find('%') {
                Some(end) if end > 0 && after[..end].chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                    let name = &after[..end];
                    s.push_str(&lookup(name).ok_or_else(|| format!("environment variable '{name}' is not set (used in '{raw}')"))?);
                    rest = &after[end + 1..];
                }
                _ => {
                    s.push('%');
                    rest = after;
                }
            }
        } else {
            let c = rest.chars().next().unwrap_or_default();
            s.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    Ok(s)
}

/// Maps a path between Windows and WSL conventions for `platform`.
///
/// # Errors
/// A UNC path on Unix.
pub fn map_platform(path: &str, platform: Platform) -> Result<String, String> {
    let bytes = path.as_bytes();
    match platform {
        Platform::Unix => {
            if path.starts_with("\\\\") {
                return Err(format!(
                    "'{path}' is a UNC network path, which cannot be opened on Linux; mount the share (e.g. under /mnt) and use that path"
                ));
            }
            if bytes.len() >= 2
                && bytes[0].is_ascii_alphabetic()
                && bytes[1] == b':'
                && (bytes.len() == 2 || bytes[2] == b'\\' || bytes[2] == b'/')
            {
                let drive = (bytes[0] as char).to_ascii_lowercase();
                let rest = path[2..].replace('\\', "/");
                let rest = rest.trim_start_matches('/');
                return Ok(if rest.is_empty() {
                    format!("/mnt/{drive}")
                } else {
                    format!("/mnt/{drive}/{rest}")
                });
            }
            Ok(path.to_owned())
        }
        Platform::Windows => {
            let lower = path.to_ascii_lowercase();
            if lower.starts_with("/mnt/") && bytes.len() >= 6 && bytes[5].is_ascii_alphabetic() && (bytes.len() == 6 || bytes[6] == b'/') {
                let drive = (bytes[5] as char).to_ascii_uppercase();
                let rest = path.get(7..).unwrap_or("").replace('/', "\\");
                return Ok(format!("{drive}:\\{rest}"));
            }
            Ok(path.to_owned())
        }
    }
}

/// Resolves a path from a pipeline file: expand, map, anchor at `base_dir`.
///
/// # Errors
/// An unset variable, or a UNC path on Linux; the message says what to do.
pub fn resolve_with(raw: &str, base_dir: &Path, platform: Platform, lookup: &dyn Fn(&str) -> Option<String>) -> Result<PathBuf, String> {
    if raw.trim().is_empty() {
        return Err("the path is empty".into());
    }
    let expanded = expand_env(raw, lookup)?;
    let mapped = map_platform(&expanded, platform)?;
    let p = PathBuf::from(&mapped);
    let absolute = match platform {
        Platform::Unix => mapped.starts_with('/'),
        Platform::Windows => p.is_absolute() || mapped.as_bytes().get(1) == Some(&b':'),
    };
    Ok(if absolute { p } else { base_dir.join(p) })
}

/// [`resolve_with`] for this OS and the process environment.
///
/// # Errors
/// As [`resolve_with`].
pub fn resolve(raw: &str, base_dir: &Path) -> Result<PathBuf, String> {
    resolve_with(raw, base_dir, Platform::current(), &|k| std::env::var(k).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "TEMP" => Some("/tmp".into()),
            "HOME" => Some("/home/ann".into()),
            "DATA" => Some("/srv/data".into()),
            _ => None,
        }
    }

    fn unix(raw: &str) -> Result<PathBuf, String> {
        resolve_with(raw, Path::new("/pipelines"), Platform::Unix, &env)
    }

    #[test]
    fn seed_cases_all_resolve_to_rooted_paths() {
        // The four inputs of seed 000, task 4.2.
        assert_eq!(unix("C:\\Data\\file.csv").unwrap(), PathBuf::from("/mnt/c/Data/file.csv"));
        assert_eq!(unix("/mnt/c/Data/file.csv").unwrap(), PathBuf::from("/mnt/c/Data/file.csv"));
        assert_eq!(unix("${TEMP}/file.csv").unwrap(), PathBuf::from("/tmp/file.csv"));
        assert_eq!(unix("../data/file.csv").unwrap(), PathBuf::from("/pipelines/../data/file.csv"));
    }

    #[test]
    fn home_percent_vars_and_forward_slash_drives() {
        assert_eq!(unix("~/in.csv").unwrap(), PathBuf::from("/home/ann/in.csv"));
        assert_eq!(unix("%DATA%/in.csv").unwrap(), PathBuf::from("/srv/data/in.csv"));
        assert_eq!(unix("D:/x/y.csv").unwrap(), PathBuf::from("/mnt/d/x/y.csv"));
        assert_eq!(unix("data/in.csv").unwrap(), PathBuf::from("/pipelines/data/in.csv"));
        assert_eq!(unix("50%off.csv").unwrap(), PathBuf::from("/pipelines/50%off.csv"));
    }

    #[test]
    fn errors_say_what_to_do() {
        let e = unix("${NOPE}/x.csv").unwrap_err();
        assert!(e.contains("'NOPE' is not set"), "{e}");
        let e = unix("\\\\server\\share\\x.csv").unwrap_err();
        assert!(e.contains("UNC") && e.contains("mount"), "{e}");
        assert!(unix("").is_err());
    }

    #[test]
    fn windows_maps_wsl_mounts_back() {
        assert_eq!(
            map_platform("/mnt/c/Data/file.csv", Platform::Windows).unwrap(),
            "C:\\Data\\file.csv"
        );
        assert_eq!(map_platform("C:\\Data\\file.csv", Platform::Windows).unwrap(), "C:\\Data\\file.csv");
        assert_eq!(map_platform("/mnt/data/x", Platform::Windows).unwrap(), "/mnt/data/x");
    }
}
