//! The keys of a step type's `Config` block, found by asking its own parser (so the list
//! cannot drift from what pipeline files accept): `flowengine steps TYPE` prints them.
//!
//! The parser is run on a block that starts empty. Every key it asks for is recorded, with
//! its aliases ([`crate::config::Obj::asked`]). When it stops at a key it requires, that key
//! is given a placeholder value (text, then a number, a boolean, a mapping, a list, until
//! one is accepted) and the parser runs again, until it accepts the block. The settings it
//! then returns hold every default; a default is shown for each key whose name matches a
//! settings field (`RowCount` ↔ `row_count`).

use crate::config::tree::{norm_key, Ctx, YKind, YNode};
use crate::config::{Obj, ParseEnv};
use crate::error::Error;
use crate::steps::{Registry, StepType};

/// One key of a step's `Config` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The canonical spelling.
    pub name: &'static str,
    /// Other spellings the parser accepts.
    pub aliases: Vec<&'static str>,
    /// The parser stops without it.
    pub required: bool,
    /// The value the step uses when the key is absent, as the engine prints it (`None`: no
    /// default to show, e.g. a required key or a setting without a field of its name).
    pub default: Option<String>,
    /// The keys of a shared sub-block (`CircuitBreaker`, `Retry`), asked of its own parser;
    /// empty for other keys.
    pub nested: Vec<KeyInfo>,
}

/// Shared sub-blocks whose keys are listed too: the key, and its parser run on an empty
/// block (returning its settings, as `{:?}`, for the defaults).
type NestedParser = fn(&mut Obj<'_>) -> crate::error::Result<String>;
const NESTED: &[(&str, NestedParser)] = &[
    ("CircuitBreaker", |o| {
        crate::breaker::BreakerConfig::parse_obj(o).map(|c| format!("{c:?}"))
    }),
    ("Retry", |o| crate::retry::RetryPolicy::parse_obj(o).map(|(p, _)| format!("{p:?}"))),
];

/// The keys of the sub-block `key` when it is one of [`NESTED`], with their defaults.
fn nested_keys(key: &str) -> Vec<KeyInfo> {
    let Some((_, parse)) = NESTED.iter().find(|(k, _)| *k == key) else {
        return Vec::new();
    };
    let node = YNode {
        kind: YKind::Map(Vec::new()),
        line: 1,
    };
    let Ok(mut obj) = Obj::new(Ctx { file: "<keys>" }, &node, key) else {
        return Vec::new();
    };
    let defaults = parse(&mut obj).map(|s| debug_fields(&s)).unwrap_or_default();
    obj.asked()
        .iter()
        .map(|names| KeyInfo {
            name: names[0],
            aliases: names[1..].to_vec(),
            required: false,
            // A field named after the key or one of its aliases (`HalfOpenRequests` is
            // held as `half_open_max_calls`).
            default: defaults
                .iter()
                .find(|(field, _)| names.iter().any(|n| field.replace('_', "") == norm_key(n)))
                .map(|(_, v)| v.clone()),
            nested: Vec::new(),
        })
        .collect()
}

/// Placeholder values for a required key, tried in turn (a URL for keys that must be one,
/// a list of one name for keys that must list something).
fn placeholders() -> [YKind; 7] {
    [
        YKind::Str("x".into()),
        YKind::Str("http://127.0.0.1:9/".into()),
        YKind::Int(1),
        YKind::Bool(true),
        YKind::Map(Vec::new()),
        YKind::Seq(Vec::new()),
        YKind::Seq(vec![YNode {
            kind: YKind::Str("x".into()),
            line: 1,
        }]),
    ]
}

/// The keys of `t`'s `Config` block, in the order its parser reads them. Keys nested in a
/// sub-block (e.g. `Engine: { Timeout }`) are not listed.
pub fn keys_of(t: &StepType) -> Vec<KeyInfo> {
    let registry = Registry::new();
    let base = std::env::temp_dir();
    // Required keys found so far: canonical name, index of the placeholder in use.
    let mut given: Vec<(&'static str, usize)> = Vec::new();
    let mut required: Vec<&'static str> = Vec::new();
    // Required keys no placeholder satisfies.
    let mut exhausted: Vec<&'static str> = Vec::new();
    let mut asked: Vec<Vec<&'static str>> = Vec::new();
    let mut settings = None;
    // Each round either finishes, adds a required key or moves one key to its next
    // placeholder: bounded by the keys times the placeholders.
    for _ in 0..64 {
        let node = YNode {
            kind: YKind::Map(
                given
                    .iter()
                    .map(|(k, i)| {
                        (
                            (*k).to_owned(),
                            YNode {
                                kind: placeholders()[*i].clone(),
                                line: 1,
                            },
                        )
                    })
                    .collect(),
            ),
            line: 1,
        };
        let mut notes = Vec::new();
        let mut path_keys = Vec::new();
        let mut env = ParseEnv {
            base_dir: &base,
            registry: &registry,
            notes: &mut notes,
            config_only: false,
            engine: Default::default(),
            path_keys: &mut path_keys,
        };
        let Ok(mut obj) = Obj::new(Ctx { file: "<keys>" }, &node, "Config") else {
            break;
        };
        let result = (t.parse)(&mut obj, &mut env);
        asked = obj.asked().to_vec();
        match result {
            Ok(parsed) => {
                settings = Some(format!("{parsed:?}"));
                break;
            }
            Err(e) => {
                let at = match &e {
                    Error::Config { path, .. } => path.rsplit('.').next().map(|k| norm_key(k.split('[').next().unwrap_or(k))),
                    _ => None,
                };
                // The parser stopped at a key we gave (its value was refused), or right after
                // the last key it asked for: that one is required.
                let last = asked.iter().rev().map(|names| names[0]).find(|k| !exhausted.contains(k));
                let refused = given
                    .iter()
                    .position(|(k, _)| at.as_deref() == Some(norm_key(k).as_str()))
                    .or_else(|| given.iter().position(|(k, _)| Some(*k) == last));
                match (refused, last) {
                    // Try the next placeholder for it. When none fits, the parser may want one
                    // of several keys (`GroupBy` or `Aggregates`): give up on this one, and
                    // the key asked before it is tried.
                    (Some(i), _) => {
                        given[i].1 += 1;
                        if given[i].1 >= placeholders().len() {
                            let k = given.remove(i).0;
                            required.retain(|n| *n != k);
                            exhausted.push(k);
                        }
                    }
                    (None, Some(k)) => {
                        given.push((k, 0));
                        // Found as one of several keys: not required by itself.
                        if exhausted.is_empty() {
                            required.push(k);
                        }
                    }
                    (None, None) => break,
                }
            }
        }
    }
    let defaults = settings.map(|s| debug_fields(&s)).unwrap_or_default();
    let mut keys: Vec<KeyInfo> = Vec::new();
    for names in asked {
        let name = names[0];
        if keys.iter().any(|k| k.name == name) {
            continue;
        }
        let is_required = required.contains(&name);
        let default = if is_required {
            None
        } else {
            defaults
                .iter()
                .find(|(field, _)| field.replace('_', "") == norm_key(name))
                .map(|(_, v)| as_char(name, v))
        };
        keys.push(KeyInfo {
            name,
            aliases: names[1..].to_vec(),
            required: is_required,
            default,
            nested: nested_keys(name),
        });
    }
    keys
}

/// A one-character setting (`Delimiter`, `Quote`) is held as a byte: show the character.
fn as_char(key: &str, value: &str) -> String {
    let k = norm_key(key);
    match value.parse::<u8>() {
        Ok(b) if (k.contains("delimiter") || k.contains("quote") || k.contains("escape")) && b.is_ascii() => {
            format!("{:?}", char::from(b))
        }
        _ => value.to_owned(),
    }
}

/// The top-level `field: value` pairs of a `{:?}` rendering (`StepConfig { .., settings:
/// DataGeneratorConfig { row_count: 1000, .. } }`): those of the innermost struct named
/// `settings`, or of the outer one.
fn debug_fields(text: &str) -> Vec<(String, String)> {
    let body = match text.find("settings: ") {
        Some(i) => &text[i + "settings: ".len()..],
        None => text,
    };
    let Some(open) = body.find('{') else {
        return Vec::new();
    };
    let mut fields = Vec::new();
    let (mut depth, mut in_str, mut escaped) = (0i32, false, false);
    let mut start = open + 1;
    for (i, c) in body.char_indices().skip_while(|(i, _)| *i <= open) {
        if in_str {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '{' | '[' | '(' => depth += 1,
            '}' | ']' | ')' if depth > 0 => depth -= 1,
            ',' | '}' if depth == 0 => {
                let part = body[start..i].trim();
                if let Some((k, v)) = part.split_once(": ") {
                    fields.push((k.trim().to_owned(), v.trim().to_owned()));
                }
                start = i + 1;
                if c == '}' {
                    break;
                }
            }
            _ => {}
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(name: &str) -> Vec<KeyInfo> {
        let t = crate::steps::BUILT_IN.iter().find(|t| t.name == name).unwrap();
        keys_of(t)
    }

    #[test]
    fn the_generator_keys_with_defaults_and_aliases() {
        let k = keys("DataGenerator");
        let row_count = k.iter().find(|k| k.name == "RowCount").unwrap();
        assert_eq!(row_count.default.as_deref(), Some("1000"));
        assert!(!row_count.required);
        let delay = k.iter().find(|k| k.name == "DelayMs").unwrap();
        assert_eq!(delay.aliases, vec!["Delay"]);
        assert_eq!(delay.default.as_deref(), Some("0"));
        assert!(k.iter().any(|k| k.name == "Seed"));
    }

    #[test]
    fn required_keys_are_found_by_running_the_parser() {
        let k = keys("DelimitedSource");
        let file = k.iter().find(|k| k.name == "FilePath").unwrap();
        assert!(file.required && file.default.is_none(), "{k:?}");
        assert!(k.len() > 5, "{k:?}");
        let delimiter = k.iter().find(|k| k.name == "Delimiter").unwrap();
        assert_eq!(delimiter.default.as_deref(), Some("','"), "{k:?}");
        // Every built-in type yields at least one key.
        for t in crate::steps::BUILT_IN {
            assert!(!keys_of(t).is_empty(), "{}", t.name);
        }
    }

    /// A URL placeholder gets past `Url`; a parser that wants one of several keys
    /// (`GroupBy` or `Aggregates`) is given the other when one fits no placeholder, and
    /// neither is called required.
    #[test]
    fn parsers_that_need_a_url_or_one_of_two_keys_list_every_key() {
        let http = keys("HttpSink");
        assert!(http.iter().any(|k| k.name == "CircuitBreaker"), "{http:?}");
        assert!(http.iter().find(|k| k.name == "Url").unwrap().required);
        let agg = keys("Aggregate");
        let names: Vec<&str> = agg.iter().map(|k| k.name).collect();
        assert_eq!(names, vec!["GroupBy", "Aggregates", "SortBy", "ChunkSize"], "{agg:?}");
        assert!(agg.iter().all(|k| !k.required), "{agg:?}");
    }

    #[test]
    fn http_sink_keys_include_the_breaker_and_retry_blocks() {
        let k = keys("HttpSink");
        let url = k.iter().find(|k| k.name == "Url").unwrap();
        assert!(url.required, "{k:?}");
        assert!(k.iter().any(|k| k.name == "OnError"), "the keys after the URL are listed: {k:?}");
        let b = k.iter().find(|k| k.name == "CircuitBreaker").unwrap();
        let find = |name: &str| b.nested.iter().find(|k| k.name == name).unwrap_or_else(|| panic!("{name}: {b:?}"));
        assert_eq!(find("HalfOpenRequests").aliases, vec!["HalfOpenMaxCalls"]);
        assert_eq!(find("HalfOpenRequests").default.as_deref(), Some("1"));
        assert_eq!(find("WhenOpen").default.as_deref(), Some("ErrorPolicy"));
        assert_eq!(find("MaxOpenSeconds").default.as_deref(), Some("300s"));
        assert_eq!(find("FailureThreshold").default.as_deref(), Some("5"));
        let r = k.iter().find(|k| k.name == "Retry").unwrap();
        assert!(
            r.nested
                .iter()
                .any(|k| k.name == "MaxAttempts" && k.default.as_deref() == Some("3")),
            "{r:?}"
        );
    }

    #[test]
    fn debug_fields_are_split_at_the_top_level() {
        let f = debug_fields(r#"StepConfig { type_name: "X", settings: Cfg { a: 1, b: Some("x, y"), c: [1, 2], d: E { f: 2 } } }"#);
        assert_eq!(
            f,
            vec![
                ("a".to_owned(), "1".to_owned()),
                ("b".to_owned(), r#"Some("x, y")"#.to_owned()),
                ("c".to_owned(), "[1, 2]".to_owned()),
                ("d".to_owned(), "E { f: 2 }".to_owned()),
            ]
        );
    }
}
