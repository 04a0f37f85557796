//! A YAML tree that remembers lines, and a lenient, strict-about-unknown-keys reader over it.
//!
//! The original FlowEngine files mix `PascalCase` and `camelCase` keys (`Pipeline:` and
//! `pipeline:`, `FilePath` and `filePath`), so keys are matched case-insensitively. Every
//! key a reader does not ask for is an error naming its path and line, with a "did you
//! mean" — except inside `Custom` blocks, which belong to the user.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use crate::error::{Error, Result};

/// A YAML value with the line it starts on.
#[derive(Debug, Clone, PartialEq)]
pub struct YNode {
    /// The value.
    pub kind: YKind,
    /// 1-based line (0 when unknown).
    pub line: usize,
}

/// The shape of a YAML value.
#[derive(Debug, Clone, PartialEq)]
pub enum YKind {
    /// `~` / `null` / empty.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// A sequence.
    Seq(Vec<YNode>),
    /// A mapping, in file order.
    Map(Vec<(String, YNode)>),
}

impl<'de> Deserialize<'de> for YNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let kind = d.deserialize_any(KindVisitor)?;
        Ok(YNode { kind, line: 0 })
    }
}

fn spanned(s: Spanned<YNode>) -> YNode {
    let mut n = s.value;
    n.line = s.referenced.line() as usize;
    n
}

struct KindVisitor;

impl<'de> Visitor<'de> for KindVisitor {
    type Value = YKind;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> std::result::Result<YKind, E> {
        Ok(YKind::Null)
    }
    fn visit_none<E>(self) -> std::result::Result<YKind, E> {
        Ok(YKind::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> std::result::Result<YKind, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_bool<E>(self, v: bool) -> std::result::Result<YKind, E> {
        Ok(YKind::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> std::result::Result<YKind, E> {
        Ok(YKind::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<YKind, E> {
        i64::try_from(v).map(YKind::Int).or(Ok(YKind::Float(v as f64)))
    }
    fn visit_f64<E>(self, v: f64) -> std::result::Result<YKind, E> {
        Ok(YKind::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> std::result::Result<YKind, E> {
        Ok(YKind::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> std::result::Result<YKind, E> {
        Ok(YKind::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<YKind, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<YNode>>()? {
            items.push(spanned(item));
        }
        Ok(YKind::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<YKind, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<YNode>>()? {
            let key_line = key.referenced.line() as usize;
            let key = match key.value.kind {
                YKind::Str(s) => s,
                YKind::Int(i) => i.to_string(),
                YKind::Bool(b) => b.to_string(),
                other => return Err(de::Error::custom(format!("line {key_line}: unsupported mapping key {other:?}"))),
            };
            let mut value = spanned(map.next_value::<Spanned<YNode>>()?);
            if value.line == 0 || matches!(value.kind, YKind::Map(_) | YKind::Seq(_) | YKind::Null) {
                value.line = key_line;
            }
            entries.push((key, value));
        }
        Ok(YKind::Map(entries))
    }
}

/// Deepest nesting accepted (`[`/`{` and indentation). The YAML parser's own limits apply to block nesting;
/// flow brackets are checked here first, because each level costs stack in the recursive
/// deserializer and a library user's thread may have a small stack.
const MAX_FLOW_DEPTH: usize = 24;

/// The line where flow brackets first nest deeper than [`MAX_FLOW_DEPTH`] (quoted text and
/// comments skipped), if they do.
fn too_deep(text: &str) -> Option<usize> {
    let (mut depth, mut line) = (0usize, 1usize);
    let mut quote: Option<char> = None;
    let mut comment = false;
    let mut prev = ' ';
    for c in text.chars() {
        if c == '\n' {
            line += 1;
            comment = false;
        } else if comment {
        } else if let Some(q) = quote {
            if c == q {
                quote = None;
            }
        } else {
            match c {
                '"' | '\'' if matches!(prev, ' ' | '[' | '{' | ',' | ':' | '\n') => quote = Some(c),
                '#' if prev.is_whitespace() => comment = true,
                '[' | '{' => {
                    depth += 1;
                    if depth > MAX_FLOW_DEPTH {
                        return Some(line);
                    }
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        prev = c;
    }
    None
}

/// Parses YAML text into a tree.
///
/// # Errors
/// [`Error::Config`] with the YAML parser's message (which carries the line).
pub fn parse_yaml(text: &str, file: &str) -> Result<YNode> {
    if let Some(line) = too_deep(text) {
        return Err(Error::Config {
            file: file.to_owned(),
            line: Some(line),
            path: String::new(),
            message: format!("brackets nest deeper than {MAX_FLOW_DEPTH} levels; a pipeline file needs a handful"),
        });
    }
    // Pipeline files nest a few levels; each level costs stack in the recursive
    // deserializer, so keep well below what a small thread stack survives.
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_FLOW_DEPTH;
    budget.max_events = 200_000;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    let node: Spanned<YNode> = serde_saphyr::from_str_with_options(text, options).map_err(|e| {
        // The parser names the text `<input>` and puts the line in its message: name the
        // file, and give the line to the error.
        let shown = e.to_string().replace("<input>", file);
        let shown = shown.strip_prefix("error: ").unwrap_or(&shown).to_owned();
        let line = shown
            .split_once("line ")
            .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|d| d.parse().ok());
        Error::Config {
            file: file.to_owned(),
            line,
            path: "YAML syntax".to_owned(),
            message: format!("invalid YAML: {shown}"),
        }
    })?;
    let mut n = spanned(node);
    if n.line == 0 {
        n.line = 1;
    }
    Ok(n)
}

/// Normalises a key for comparison: lower case, without `_`, `-` and spaces.
pub fn norm_key(k: &str) -> String {
    k.chars()
        .filter(|c| !matches!(c, '_' | '-' | ' '))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Where we are while reading: the file and the key path.
#[derive(Debug, Clone)]
pub struct Ctx<'a> {
    /// Pipeline file name, for messages.
    pub file: &'a str,
}

impl Ctx<'_> {
    /// A config error at `node`'s line.
    pub fn err(&self, path: &str, line: usize, message: impl Into<String>) -> Error {
        Error::Config {
            file: self.file.to_owned(),
            line: (line > 0).then_some(line),
            path: path.to_owned(),
            message: message.into(),
        }
    }
}

/// A mapping being read: every key must be asked for, or [`Obj::finish`] reports it.
pub struct Obj<'a> {
    ctx: Ctx<'a>,
    path: String,
    line: usize,
    entries: Vec<(&'a str, &'a YNode, bool)>,
    known: Vec<&'static str>,
    /// Every key asked for, with its aliases, in the order asked (`flowengine steps TYPE`
    /// lists a step's keys from it).
    asked: Vec<Vec<&'static str>>,
}

impl<'a> Obj<'a> {
    /// Starts reading `node`, which must be a mapping.
    ///
    /// # Errors
    /// When `node` is not a mapping.
    pub fn new(ctx: Ctx<'a>, node: &'a YNode, path: impl Into<String>) -> Result<Obj<'a>> {
        let path = path.into();
        match &node.kind {
            YKind::Map(entries) => Ok(Obj {
                ctx,
                path,
                line: node.line,
                entries: entries.iter().map(|(k, v)| (k.as_str(), v, false)).collect(),
                known: Vec::new(),
                asked: Vec::new(),
            }),
            YKind::Null => Ok(Obj {
                ctx,
                path,
                line: node.line,
                entries: Vec::new(),
                known: Vec::new(),
                asked: Vec::new(),
            }),
            other => Err(ctx.err(&path, node.line, format!("expected a mapping of keys, found {}", describe(other)))),
        }
    }

    /// Every key asked for so far, each with its aliases (canonical name first).
    pub fn asked(&self) -> &[Vec<&'static str>] {
        &self.asked
    }

    /// The dotted path of this mapping.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The line this mapping starts on.
    pub fn line(&self) -> usize {
        self.line
    }

    /// The reading context.
    pub fn ctx(&self) -> Ctx<'a> {
        self.ctx.clone()
    }

    /// Takes the value of the first of `names` present (case-insensitive; the first name is
    /// the canonical one shown in messages). Two aliases of the same key is an error.
    ///
    /// # Errors
    /// When two spellings of one key are both present.
    pub fn take(&mut self, names: &[&'static str]) -> Result<Option<Node<'a>>> {
        self.known.push(names[0]);
        self.asked.push(names.to_vec());
        let wanted: Vec<String> = names.iter().map(|n| norm_key(n)).collect();
        let mut found: Option<(usize, &'a str)> = None;
        for (i, (k, _, used)) in self.entries.iter_mut().enumerate() {
            if wanted.contains(&norm_key(k)) {
                if let Some((_, first)) = found {
                    let line = self.entries[i].1.line;
                    return Err(self.ctx.err(
                        &self.path,
                        line,
                        format!("'{first}' and '{}' are the same setting; keep one", self.entries[i].0),
                    ));
                }
                *used = true;
                found = Some((i, k));
            }
        }
        Ok(found.map(|(i, k)| Node {
            ctx: self.ctx.clone(),
            node: self.entries[i].1,
            path: join(&self.path, k),
        }))
    }

    /// Like [`Obj::take`] but the key must be present.
    ///
    /// # Errors
    /// When the key is missing.
    pub fn require(&mut self, names: &[&'static str]) -> Result<Node<'a>> {
        match self.take(names)? {
            Some(n) => Ok(n),
            None => {
                // A key nobody asked for that is an edit or two (one per four letters) from
                // the missing one is its typo: report that, at its line.
                let wanted: Vec<String> = names.iter().map(|n| norm_key(n)).collect();
                let typo = self.entries.iter().find(|(k, _, used)| {
                    let nk = norm_key(k);
                    !used
                        && nk.len() >= 3
                        && wanted
                            .iter()
                            .any(|w| w.len() >= 4 && strsim::damerau_levenshtein(&nk, w) <= (w.len() / 4).max(1))
                });
                match typo {
                    Some((k, v, _)) => Err(self.ctx.err(
                        &join(&self.path, k),
                        v.line,
                        format!("unknown key '{k}' (did you mean '{}'?)", names[0]),
                    )),
                    None => Err(self.ctx.err(&self.path, self.line, format!("missing required key '{}'", names[0]))),
                }
            }
        }
    }

    /// Takes a key whose whole content is the user's (a `Custom` block): no checks inside.
    ///
    /// # Errors
    /// As [`Obj::take`].
    pub fn take_free(&mut self, names: &[&'static str]) -> Result<Option<&'a YNode>> {
        Ok(self.take(names)?.map(|n| n.node))
    }

    /// Takes every key not taken yet, in file order: for blocks whose keys are the user's
    /// (variables, a plugin's own config).
    pub fn take_rest(&mut self) -> Vec<(String, Node<'a>)> {
        let mut out = Vec::new();
        for (k, v, used) in &mut self.entries {
            if !*used {
                *used = true;
                out.push((
                    (*k).to_owned(),
                    Node {
                        ctx: self.ctx.clone(),
                        node: v,
                        path: join(&self.path, k),
                    },
                ));
            }
        }
        out
    }

    /// Reports every key nobody asked for.
    ///
    /// # Errors
    /// The first unknown key, its path and line, and the closest known key.
    pub fn finish(self) -> Result<()> {
        for (k, v, used) in &self.entries {
            if !used {
                let nk = norm_key(k);
                let normalized: Vec<String> = self.known.iter().map(|c| norm_key(c)).collect();
                let best = crate::error::suggest(&nk, normalized.iter().map(String::as_str))
                    .and_then(|b| normalized.iter().position(|n| n == b))
                    .map(|i| self.known[i]);
                let hint = match best {
                    Some(c) => format!(" (did you mean '{c}'?)"),
                    _ if !self.known.is_empty() => format!(" (known keys here: {})", self.known.join(", ")),
                    _ => String::new(),
                };
                return Err(self.ctx.err(&join(&self.path, k), v.line, format!("unknown key '{k}'{hint}")));
            }
        }
        Ok(())
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn describe(k: &YKind) -> &'static str {
    match k {
        YKind::Null => "nothing",
        YKind::Bool(_) => "a boolean",
        YKind::Int(_) => "an integer",
        YKind::Float(_) => "a number",
        YKind::Str(_) => "a string",
        YKind::Seq(_) => "a list",
        YKind::Map(_) => "a mapping",
    }
}

/// One value being read, with its path.
#[derive(Clone)]
pub struct Node<'a> {
    pub(crate) ctx: Ctx<'a>,
    /// The YAML value.
    pub node: &'a YNode,
    /// Dotted path.
    pub path: String,
}

impl<'a> Node<'a> {
    /// An error at this value.
    pub fn err(&self, message: impl Into<String>) -> Error {
        self.ctx.err(&self.path, self.node.line, message)
    }

    /// A scalar as text (numbers and booleans are rendered).
    ///
    /// # Errors
    /// When the value is a list or mapping.
    pub fn string(&self) -> Result<String> {
        match &self.node.kind {
            YKind::Str(s) => Ok(s.clone()),
            YKind::Int(i) => Ok(i.to_string()),
            YKind::Float(f) => Ok(f.to_string()),
            YKind::Bool(b) => Ok(b.to_string()),
            YKind::Null => Ok(String::new()),
            other => Err(self.err(format!("expected text, found {}", describe(other)))),
        }
    }

    /// A boolean (`true`/`false`, also as text).
    ///
    /// # Errors
    /// When it is not a boolean.
    pub fn bool(&self) -> Result<bool> {
        match &self.node.kind {
            YKind::Bool(b) => Ok(*b),
            YKind::Str(s) => crate::value::parse_bool(s).map_err(|m| self.err(m)),
            other => Err(self.err(format!("expected true or false, found {}", describe(other)))),
        }
    }

    /// A non-negative integer (also as text).
    ///
    /// # Errors
    /// When it is not one.
    pub fn u64(&self) -> Result<u64> {
        match &self.node.kind {
            YKind::Int(i) if *i >= 0 => Ok(*i as u64),
            YKind::Str(s) => s
                .trim()
                .parse()
                .map_err(|_| self.err(format!("expected a whole number ≥ 0, found '{s}'"))),
            YKind::Float(f) if *f >= 0.0 && f.fract() == 0.0 => Ok(*f as u64),
            other => Err(self.err(format!("expected a whole number ≥ 0, found {}", describe(other)))),
        }
    }

    /// A whole number within `lo..=hi`: every numeric setting goes through a range check,
    /// so no value in a pipeline file can overflow a conversion or allocate without bound.
    ///
    /// # Errors
    /// Not a whole number, or out of range (the message gives the allowed range).
    pub fn u64_in(&self, lo: u64, hi: u64) -> Result<u64> {
        let range = |shown: String| self.err(format!("{shown} is out of range; allowed: {lo} to {hi}"));
        let v: i128 = match &self.node.kind {
            YKind::Int(i) => i128::from(*i),
            YKind::Float(f) if f.is_finite() && f.fract() == 0.0 => {
                if f.abs() > 1e30 {
                    return Err(range(f.to_string()));
                }
                *f as i128
            }
            YKind::Str(t) => t.trim().parse::<i128>().map_err(|_| {
                self.err(format!(
                    "expected a whole number from {lo} to {hi}, found '{}'",
                    crate::error::clip(t)
                ))
            })?,
            other => return Err(self.err(format!("expected a whole number from {lo} to {hi}, found {}", describe(other)))),
        };
        if v < i128::from(lo) || v > i128::from(hi) {
            return Err(range(v.to_string()));
        }
        Ok(v as u64)
    }

    /// A duration in seconds (fractions allowed) from 0 to `max_secs`.
    ///
    /// # Errors
    /// Not a number, negative, not finite, or above `max_secs`.
    pub fn seconds_in(&self, max_secs: f64) -> Result<std::time::Duration> {
        let v = self.f64()?;
        if !v.is_finite() || !(0.0..=max_secs).contains(&v) {
            return Err(self.err(format!("{v} seconds is out of range; allowed: 0 to {max_secs}")));
        }
        std::time::Duration::try_from_secs_f64(v).map_err(|e| self.err(format!("{v} seconds: {e}")))
    }

    /// A number (also as text).
    ///
    /// # Errors
    /// When it is not one.
    pub fn f64(&self) -> Result<f64> {
        match &self.node.kind {
            YKind::Int(i) => Ok(*i as f64),
            YKind::Float(f) => Ok(*f),
            YKind::Str(s) => s.trim().parse().map_err(|_| self.err(format!("expected a number, found '{s}'"))),
            other => Err(self.err(format!("expected a number, found {}", describe(other)))),
        }
    }

    /// A mapping reader.
    ///
    /// # Errors
    /// When it is not a mapping.
    pub fn obj(&self) -> Result<Obj<'a>> {
        Obj::new(self.ctx.clone(), self.node, self.path.clone())
    }

    /// The items of a list, each with its `[i]` path.
    ///
    /// # Errors
    /// When it is not a list.
    pub fn list(&self) -> Result<Vec<Node<'a>>> {
        match &self.node.kind {
            YKind::Seq(items) => Ok(items
                .iter()
                .enumerate()
                .map(|(i, n)| Node {
                    ctx: self.ctx.clone(),
                    node: n,
                    path: format!("{}[{i}]", self.path),
                })
                .collect()),
            YKind::Null => Ok(Vec::new()),
            other => Err(self.err(format!("expected a list, found {}", describe(other)))),
        }
    }
}

/// Converts a subtree to JSON (for `Custom` blocks and user steps' configs).
pub fn to_json(n: &YNode) -> serde_json::Value {
    use serde_json::Value as J;
    match &n.kind {
        YKind::Null => J::Null,
        YKind::Bool(b) => J::Bool(*b),
        YKind::Int(i) => J::from(*i),
        YKind::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        YKind::Str(s) => J::String(s.clone()),
        YKind::Seq(items) => J::Array(items.iter().map(to_json).collect()),
        YKind::Map(entries) => J::Object(entries.iter().map(|(k, v)| (k.clone(), to_json(v))).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_kept_and_unknown_keys_are_named() {
        let y = parse_yaml("a:\n  FilePath: x\n  filePth: y\n", "p.yaml").unwrap();
        let ctx = Ctx { file: "p.yaml" };
        let mut root = Obj::new(ctx, &y, "").unwrap();
        let a = root.require(&["A"]).unwrap();
        let mut a = a.obj().unwrap();
        assert_eq!(a.take(&["FilePath"]).unwrap().unwrap().string().unwrap(), "x");
        let e = a.finish().unwrap_err().to_string();
        assert!(e.contains("p.yaml:3"), "{e}");
        assert!(e.contains("a.filePth"), "{e}");
        assert!(e.contains("did you mean 'FilePath'"), "{e}");
    }

    #[test]
    fn a_missing_required_key_with_a_near_miss_is_reported_as_the_typo() {
        let y = parse_yaml("Plugns: []\nTo: x\n", "p.yaml").unwrap();
        let mut o = Obj::new(Ctx { file: "p.yaml" }, &y, "Pipeline").unwrap();
        let e = o.require(&["Plugins", "Steps"]).err().unwrap().to_string();
        assert_eq!(e, "p.yaml:1: Pipeline.Plugns: unknown key 'Plugns' (did you mean 'Plugins'?)");
        // Short names are not guessed at: `Type` is no typo of `To`.
        let y = parse_yaml("From: a\nType: b\n", "p.yaml").unwrap();
        let mut o = Obj::new(Ctx { file: "p.yaml" }, &y, "c").unwrap();
        let e = o.require(&["To", "Target"]).err().unwrap().to_string();
        assert_eq!(e, "p.yaml:1: c: missing required key 'To'");
    }

    #[test]
    fn aliases_of_one_key_conflict() {
        let y = parse_yaml("HasHeaders: true\nincludeHeaders: false\n", "p.yaml").unwrap();
        let mut o = Obj::new(Ctx { file: "p.yaml" }, &y, "").unwrap();
        let e = o.take(&["HasHeaders", "IncludeHeaders"]).err().unwrap().to_string();
        assert!(e.contains("same setting"), "{e}");
    }
}
