//! `flowengine echo`: a pipeline file as the engine resolved it, written back as a pipeline
//! file — variables substituted, paths absolute, each step's settings with the defaults its
//! parser confirms, the run's settings under their file key names, and every connection
//! (the implicit chain written out) with its channel. `flowengine run` runs the output as it
//! runs the original.
//!
//! A default is written only when the step's own parser, given the key with that value,
//! returns exactly the settings it returns without it: so the echo never changes what a step
//! does, and a default that cannot be written as a value (e.g. "no limit") is left out.

use std::path::{Path, PathBuf};

use super::tree::{self, norm_key, Ctx, Obj, YKind, YNode};
use super::{ChannelConfig, ParseEnv, PipelineConfig, Settings, TapDestination};
use crate::error::Result;
use crate::steps::{Registry, StepType};

/// The pipeline file at `path` (with `vars` overriding its variables), resolved, as YAML.
///
/// # Errors
/// Whatever loading or planning the pipeline reports: the echo of a pipeline that does not
/// build is refused.
pub fn to_yaml(path: &Path, vars: &[(String, String)], registry: &Registry) -> Result<String> {
    let config = PipelineConfig::from_file_with_registry(path, vars, registry)?;
    crate::Pipeline::build(config.clone())?;
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| crate::Error::io(path, e, "cannot read the pipeline file"))?;
    let ctx = Ctx { file: &file };
    let mut root = tree::parse_yaml(&text, &file)?;
    let variables = super::read_variables(&root, ctx.clone(), vars, Some(path))?;
    super::substitute(&mut root, &variables, "", ctx)?;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let base_dir = config.settings.base_directory.clone().unwrap_or_else(|| dir.to_path_buf());
    let items = child(&root, &["pipeline"])
        .and_then(|p| child(p, &["plugins", "steps"]))
        .map(|n| match &n.kind {
            YKind::Seq(items) => items.clone(),
            _ => Vec::new(),
        })
        .unwrap_or_default();
    let mut plugins = Vec::new();
    for (i, def) in config.steps.iter().enumerate() {
        let raw = items
            .get(i)
            .and_then(|item| child(item, &["config", "configuration", "settings"]))
            .cloned()
            .unwrap_or(YNode {
                kind: YKind::Map(Vec::new()),
                line: 0,
            });
        let cfg = step_config(&config, i, raw, registry, &base_dir);
        plugins.push(map(vec![
            ("Name", str_node(&def.name)),
            ("Type", str_node(def.config.type_name())),
            ("Config", cfg),
        ]));
    }
    let mut pipeline = vec![("Name", str_node(&config.name))];
    if let Some(v) = &config.version {
        pipeline.push(("Version", str_node(v)));
    }
    if let Some(d) = &config.description {
        pipeline.push(("Description", str_node(d)));
    }
    pipeline.push(("Plugins", seq(plugins)));
    pipeline.push(("Connections", connections(&config)));
    pipeline.push(("Settings", settings(&config.settings)));
    let mut out = format!(
        "# pipeline '{}' from {}, as the engine resolved it: variables substituted, paths\n# absolute, defaults filled in, the connections written out. `flowengine run` runs it.\n",
        config.name,
        std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()).display()
    );
    emit(&map(vec![("Pipeline", map(pipeline))]).kind, 0, &mut out);
    for n in &config.notes {
        out.push_str(&format!("# note: {}\n", n.replace('\n', " ")));
    }
    Ok(out)
}

/// Step `i`'s `Config` block: the keys as written (substituted; path keys absolute), then
/// the defaults the step's parser confirms.
fn step_config(config: &PipelineConfig, i: usize, raw: YNode, registry: &Registry, base_dir: &Path) -> YNode {
    let mut entries = match raw.kind {
        YKind::Map(e) => e,
        _ => Vec::new(),
    };
    for k in config.path_keys.iter().filter(|k| k.step == i) {
        let last = k.key.rsplit('.').next().unwrap_or(&k.key);
        if let Some((_, v)) = entries.iter_mut().find(|(name, _)| norm_key(name) == norm_key(last)) {
            if k.path.as_os_str() != "-" {
                let abs = std::path::absolute(&k.path).unwrap_or_else(|_| k.path.clone());
                v.kind = YKind::Str(abs.display().to_string());
            }
        }
    }
    let ty = registry
        .built_ins()
        .into_iter()
        .find(|t| t.name == config.steps[i].config.type_name());
    let Some(ty) = ty else {
        return YNode {
            kind: YKind::Map(entries),
            line: 0,
        };
    };
    let Some(expected) = parse_debug(&ty, &entries, config, registry, base_dir) else {
        return YNode {
            kind: YKind::Map(entries),
            line: 0,
        };
    };
    for key in crate::steps::keys::keys_of(&ty) {
        let given = entries.iter().any(|(name, _)| {
            std::iter::once(key.name)
                .chain(key.aliases.iter().copied())
                .any(|k| norm_key(k) == norm_key(name))
        });
        let Some(default) = key.default.as_deref().filter(|_| !given) else {
            continue;
        };
        for candidate in candidates(default) {
            entries.push((key.name.to_owned(), YNode { kind: candidate, line: 0 }));
            if parse_debug(&ty, &entries, config, registry, base_dir).as_deref() == Some(expected.as_str()) {
                break;
            }
            entries.pop();
        }
    }
    YNode {
        kind: YKind::Map(entries),
        line: 0,
    }
}

/// The step's settings as `{:?}`, parsed from `entries` (`None` when the parser refuses them).
fn parse_debug(
    ty: &StepType,
    entries: &[(String, YNode)],
    config: &PipelineConfig,
    registry: &Registry,
    base_dir: &Path,
) -> Option<String> {
    let node = YNode {
        kind: YKind::Map(entries.to_vec()),
        line: 0,
    };
    let mut notes = Vec::new();
    let mut path_keys = Vec::new();
    let mut env = ParseEnv {
        base_dir,
        registry,
        notes: &mut notes,
        config_only: true,
        engine: config.settings.engine,
        path_keys: &mut path_keys,
    };
    let mut obj = Obj::new(Ctx { file: "<echo>" }, &node, "Config").ok()?;
    let parsed = (ty.parse)(&mut obj, &mut env).ok()?;
    obj.finish().ok()?;
    Some(format!("{parsed:?}"))
}

/// Values a default printed by [`crate::steps::keys`] may stand for, most likely first.
fn candidates(default: &str) -> Vec<YKind> {
    let d = default.trim();
    if let Some(inner) = d.strip_prefix("Some(").and_then(|r| r.strip_suffix(')')) {
        return candidates(inner);
    }
    if d == "None" {
        return Vec::new();
    }
    if let Ok(b) = d.parse::<bool>() {
        return vec![YKind::Bool(b)];
    }
    if let Ok(i) = d.parse::<i64>() {
        return vec![YKind::Int(i), YKind::Str(d.to_owned())];
    }
    if let Ok(f) = d.parse::<f64>() {
        return vec![YKind::Float(f), YKind::Str(d.to_owned())];
    }
    // A string or a character, in Rust's quoting.
    if d.len() >= 2 && d.starts_with('"') && d.ends_with('"') {
        return serde_json::from_str::<String>(d).map(YKind::Str).into_iter().collect();
    }
    if d.len() >= 3 && d.starts_with('\'') && d.ends_with('\'') {
        let inner = &d[1..d.len() - 1];
        let c = match inner {
            "\\t" => Some("\t".to_owned()),
            "\\n" => Some("\n".to_owned()),
            "\\\\" => Some("\\".to_owned()),
            "\\'" => Some("'".to_owned()),
            "\\\"" => Some("\"".to_owned()),
            s if s.chars().count() == 1 => Some(s.to_owned()),
            _ => None,
        };
        return c.map(YKind::Str).into_iter().collect();
    }
    // A duration (`30s`, `100ms`): as seconds, or as milliseconds for a `…Ms` key.
    for (unit, secs) in [("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9), ("s", 1.0)] {
        if let Some(n) = d.strip_suffix(unit).and_then(|n| n.parse::<f64>().ok()) {
            let s = n * secs;
            let ms = s * 1e3;
            return vec![number(s), number(ms)];
        }
    }
    if d == "[]" {
        return vec![YKind::Seq(Vec::new())];
    }
    // An enum variant (`Fail`, `Utf8`).
    if !d.is_empty() && d.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return vec![YKind::Str(d.to_owned())];
    }
    Vec::new()
}

fn number(x: f64) -> YKind {
    if x.fract() == 0.0 && x.abs() < 9e15 {
        YKind::Int(x as i64)
    } else {
        YKind::Float(x)
    }
}

/// The connections, the implicit chain written out, each with its channel resolved.
fn connections(config: &PipelineConfig) -> YNode {
    let channel_of = |c: &Option<ChannelConfig>| channel(c.as_ref().unwrap_or(&config.settings.default_channel));
    if config.connections.is_empty() {
        return seq(config
            .steps
            .windows(2)
            .map(|w| {
                map(vec![
                    ("From", str_node(&w[0].name)),
                    ("To", str_node(&w[1].name)),
                    ("Channel", channel_of(&None)),
                ])
            })
            .collect());
    }
    seq(config
        .connections
        .iter()
        .map(|c| {
            let mut e = vec![("From", str_node(&c.from))];
            if let Some(p) = &c.from_port {
                e.push(("FromPort", str_node(p)));
            }
            e.push(("To", str_node(&c.to)));
            if let Some(p) = &c.to_port {
                e.push(("ToPort", str_node(p)));
            }
            e.push(("Channel", channel_of(&c.channel)));
            map(e)
        })
        .collect())
}

fn channel(c: &ChannelConfig) -> YNode {
    let mode = match c.full_mode {
        super::FullMode::Wait => "Wait",
        super::FullMode::DropOldest => "DropOldest",
        super::FullMode::DropNewest => "DropNewest",
        super::FullMode::ThrowException => "ThrowException",
        super::FullMode::Spill => "Spill",
    };
    map(vec![
        ("BufferSize", int(c.buffer_size as u64)),
        ("BackpressureThreshold", int(u64::from(c.backpressure_threshold))),
        ("FullMode", str_node(mode)),
        ("TimeoutSeconds", node(number(c.timeout.as_secs_f64()))),
        ("MaxBytes", int(c.max_bytes as u64)),
    ])
}

/// The run's settings under the file's key names, every value the run will use.
fn settings(s: &Settings) -> YNode {
    let mut e = vec![
        (
            "Engine",
            map(vec![
                ("PortFlavour", str_node(s.engine.port_flavour.as_str())),
                ("Pooling", str_node(s.engine.pooling.as_str())),
                ("ChunkSize", int(s.engine.chunk_size as u64)),
                ("BufferSize", int(s.engine.buffer_size as u64)),
            ]),
        ),
        ("DefaultChannel", channel(&s.default_channel)),
    ];
    let m = &s.memory;
    let mut memory = Vec::new();
    if let Some(limit) = m.limit {
        memory.push(("Limit", str_node(&limit.to_string())));
    }
    memory.push(("SpillThreshold", node(YKind::Float(m.spill_threshold))));
    if let Some(p) = &m.spill_path {
        memory.push(("SpillPath", path_node(p)));
    }
    memory.push(("EnableSpill", node(YKind::Bool(m.enable_spill))));
    e.push(("Memory", map(memory)));
    if m.from_cgroup {
        e.push(("dynamicMemoryLimits", node(YKind::Bool(true))));
    }
    if let Some(t) = s.isolation.default_timeout {
        e.push(("isolation", map(vec![("defaultTimeoutSeconds", node(number(t.as_secs_f64())))])));
    }
    if let Some(p) = s.memory_pools.chunk_pool {
        let mut pool = vec![("initialSize", int(p.initial))];
        if p.max > 0 {
            pool.push(("maxSize", int(p.max)));
        }
        e.push(("memoryPools", map(vec![("chunkPool", map(pool))])));
    }
    let mo = &s.monitoring;
    e.push((
        "Monitoring",
        map(vec![
            ("EnableMetrics", node(YKind::Bool(mo.enable_metrics))),
            ("MetricsIntervalSeconds", node(number(mo.metrics_interval.as_secs_f64()))),
            ("EnableTracing", node(YKind::Bool(mo.enable_tracing))),
            ("EnableDetailedMetrics", node(YKind::Bool(mo.enable_detailed_metrics))),
        ]),
    ));
    if let Some(b) = &s.performance.baseline_file {
        e.push((
            "Performance",
            map(vec![
                ("BaselineFile", path_node(b)),
                ("FailOnRegression", node(YKind::Bool(s.performance.fail_on_regression))),
                ("MaxRegressionPercent", node(number(s.performance.max_regression_percent))),
            ]),
        ));
    }
    if !s.debug_taps.is_empty() {
        let taps = s
            .debug_taps
            .iter()
            .map(|t| {
                let mut e = vec![("Step", str_node(&t.step))];
                if !t.output.is_empty() {
                    e.push(("Output", str_node(&t.output)));
                }
                e.push(("SampleRate", node(YKind::Float(t.tap.sample_rate))));
                e.push(("MaskFields", seq(t.tap.mask_fields.iter().map(|f| str_node(f)).collect())));
                e.push(("MaxRows", int(t.tap.max_rows)));
                e.push(("Seed", int(t.tap.seed)));
                e.push((
                    "Destination",
                    match &t.destination {
                        TapDestination::Stderr => str_node("stderr"),
                        TapDestination::File(p) => path_node(p),
                    },
                ));
                map(e)
            })
            .collect();
        e.push(("DebugTaps", seq(taps)));
    }
    if !s.custom.is_null() {
        e.push(("Custom", from_json(&s.custom)));
    }
    map(e)
}

fn from_json(v: &serde_json::Value) -> YNode {
    use serde_json::Value as J;
    node(match v {
        J::Null => YKind::Null,
        J::Bool(b) => YKind::Bool(*b),
        J::Number(n) => n.as_i64().map_or_else(|| YKind::Float(n.as_f64().unwrap_or(0.0)), YKind::Int),
        J::String(s) => YKind::Str(s.clone()),
        J::Array(a) => YKind::Seq(a.iter().map(from_json).collect()),
        J::Object(o) => YKind::Map(o.iter().map(|(k, v)| (k.clone(), from_json(v))).collect()),
    })
}

fn child<'n>(n: &'n YNode, names: &[&str]) -> Option<&'n YNode> {
    match &n.kind {
        YKind::Map(entries) => entries.iter().find(|(k, _)| names.contains(&norm_key(k).as_str())).map(|(_, v)| v),
        _ => None,
    }
}

fn node(kind: YKind) -> YNode {
    YNode { kind, line: 0 }
}
fn str_node(s: &str) -> YNode {
    node(YKind::Str(s.to_owned()))
}
fn path_node(p: &PathBuf) -> YNode {
    str_node(&std::path::absolute(p).unwrap_or_else(|_| p.clone()).display().to_string())
}
fn int(i: u64) -> YNode {
    node(i64::try_from(i).map_or(YKind::Float(i as f64), YKind::Int))
}
fn map(entries: Vec<(&str, YNode)>) -> YNode {
    node(YKind::Map(entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
}
fn seq(items: Vec<YNode>) -> YNode {
    node(YKind::Seq(items))
}

/// Block-style YAML for `kind` at `indent` spaces (a mapping or a sequence; scalars inline).
fn emit(kind: &YKind, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match kind {
        YKind::Map(entries) => {
            for (k, v) in entries {
                out.push_str(&format!("{pad}{}:", key(k)));
                value(v, indent, out);
            }
        }
        YKind::Seq(items) => {
            for item in items {
                match &item.kind {
                    YKind::Map(e) if !e.is_empty() => {
                        // The mapping at indent + 2, its first line starting with "- ".
                        let mut inner = String::new();
                        emit(&item.kind, indent + 2, &mut inner);
                        out.push_str(&pad);
                        out.push_str("- ");
                        out.push_str(&inner[indent + 2..]);
                    }
                    _ => {
                        out.push_str(&format!("{pad}-"));
                        value(item, indent, out);
                    }
                }
            }
        }
        other => {
            out.push_str(&pad);
            out.push_str(&scalar(other, indent));
            out.push('\n');
        }
    }
}

/// What follows `key:` or `-`: a scalar on the same line, or a nested block below.
fn value(v: &YNode, indent: usize, out: &mut String) {
    match &v.kind {
        YKind::Map(e) if e.is_empty() => out.push_str(" {}\n"),
        YKind::Seq(s) if s.is_empty() => out.push_str(" []\n"),
        YKind::Map(_) | YKind::Seq(_) => {
            out.push('\n');
            emit(&v.kind, indent + 2, out);
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other, indent + 2));
            out.push('\n');
        }
    }
}

/// A scalar: strings double-quoted (JSON's escapes are YAML's), a multi-line string as a
/// literal block indented to `indent`.
fn scalar(k: &YKind, indent: usize) -> String {
    match k {
        YKind::Null => "null".into(),
        YKind::Bool(b) => b.to_string(),
        YKind::Int(i) => i.to_string(),
        YKind::Float(f) if f.is_nan() => ".nan".into(),
        YKind::Float(f) if f.is_infinite() => if *f > 0.0 { ".inf" } else { "-.inf" }.into(),
        YKind::Float(f) => {
            let s = format!("{f:?}");
            if s.contains(['.', 'e', 'E']) {
                s
            } else {
                format!("{s}.0")
            }
        }
        YKind::Str(s) if block_safe(s) => {
            let trailing = s.len() - s.trim_end_matches('\n').len();
            let chomp = match trailing {
                0 => "-",
                1 => "",
                _ => "+",
            };
            let pad = " ".repeat(indent);
            let mut out = format!("|{chomp}\n");
            let body = s.strip_suffix('\n').unwrap_or(s);
            for line in body.split('\n') {
                if !line.is_empty() {
                    out.push_str(&pad);
                    out.push_str(line);
                }
                out.push('\n');
            }
            out.pop();
            out
        }
        YKind::Str(s) => serde_json::Value::String(s.clone()).to_string(),
        YKind::Seq(_) | YKind::Map(_) => String::new(),
    }
}

/// A multi-line string a literal block keeps exactly: no carriage return or other control
/// character but tabs, and a first line that does not start with a blank (which would set
/// the block's indentation).
fn block_safe(s: &str) -> bool {
    s.contains('\n')
        && !s.starts_with([' ', '\t', '\n'])
        && s.chars().all(|c| c == '\n' || c == '\t' || !c.is_control())
        && !s.trim_end_matches('\n').is_empty()
}

/// A mapping key, quoted unless it is a plain word YAML reads as a string.
fn key(k: &str) -> String {
    let plain = k.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && k.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && !matches!(
            k.to_ascii_lowercase().as_str(),
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n"
        );
    if plain {
        k.to_owned()
    } else {
        serde_json::Value::String(k.to_owned()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_emitter_round_trips_through_the_parser() {
        let tree = map(vec![
            ("Name", str_node("a: b # c")),
            ("yes", node(YKind::Bool(true))),
            ("Script", str_node("function process(c) {\n\treturn true;\n}\n\n")),
            ("Inline", str_node(" leading\nblank")),
            (
                "List",
                seq(vec![
                    map(vec![("A", int(1)), ("B", node(YKind::Float(2.0)))]),
                    str_node("x"),
                    seq(vec![]),
                ]),
            ),
            ("Empty", map(vec![])),
            ("Nothing", node(YKind::Null)),
        ]);
        let mut text = String::new();
        emit(&tree.kind, 0, &mut text);
        let back = tree::parse_yaml(&text, "t").unwrap();
        fn strip(n: &YNode) -> YNode {
            node(match &n.kind {
                YKind::Map(e) => YKind::Map(e.iter().map(|(k, v)| (k.clone(), strip(v))).collect()),
                YKind::Seq(s) => YKind::Seq(s.iter().map(strip).collect()),
                other => other.clone(),
            })
        }
        assert_eq!(strip(&back), tree, "{text}");
    }

    #[test]
    fn defaults_become_values() {
        assert_eq!(candidates("Some(5000)")[0], YKind::Int(5000));
        assert_eq!(candidates("','"), vec![YKind::Str(",".into())]);
        assert_eq!(candidates("'\\t'"), vec![YKind::Str("\t".into())]);
        assert_eq!(candidates("30s")[0], YKind::Int(30));
        assert_eq!(candidates("\"utf-8\""), vec![YKind::Str("utf-8".into())]);
        assert!(candidates("None").is_empty());
        assert_eq!(candidates("Fail"), vec![YKind::Str("Fail".into())]);
    }
}
