//! One list of step types. Each built-in step describes itself once, next to its code, as a
//! [`StepType`] (names and aliases, kind, config parser); the [`Registry`] starts with them
//! and a library user's [`StepPlugin`]s join the same list. A parsed step is a
//! [`StepConfig`]: its type name plus its validated settings, which build the runtime.

use std::any::Any;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::config::{tree, Obj, ParseEnv};
use crate::error::{Error, Result};
use crate::steps::{BuildContext, StepKind, StepRuntime};

/// Whether a step reads or writes a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathRole {
    /// Read.
    Input,
    /// Written.
    Output,
}

/// A step's validated settings: what its config block said, ready to build the runtime.
pub trait StepSettings: std::fmt::Debug + Send + Sync + 'static {
    /// Builds the runtime (the input schema is known now).
    ///
    /// # Errors
    /// [`Error::Plan`] for a config that does not fit its input (or its file's header).
    fn build(&self, ctx: &BuildContext<'_>) -> Result<StepRuntime>;
    /// The files the step reads and writes, with the config key naming each (for the
    /// planner's check that no two outputs, or an output and an input, are one file).
    fn file_paths(&self) -> Vec<(PathRole, &'static str, &Path)> {
        Vec::new()
    }
    /// The named inputs the step accepts besides its main input (`To: Step.name` in a
    /// connection), in the order the engine reads them (see [`crate::steps::Transform`]).
    /// Default: none. The planner refuses a connection to any other input.
    fn input_names(&self) -> Vec<String> {
        Vec::new()
    }
    /// The step's error policy (`OnError`, `MaxErrors`, `MaxErrorRate`,
    /// `DeadLetterFilePath`; see [`crate::dead_letter`]), for a step that rejects rows.
    /// Default: none (the step rejects nothing).
    fn error_policy(&self) -> Option<&crate::dead_letter::ErrorPolicy> {
        None
    }
    /// The columns of its main input the step reads, when it reads only some and passes
    /// none of the others on (an `Aggregate`): the planner then lets a source feeding
    /// only such steps skip building the other columns (it still validates them).
    /// Default: `None`, every column.
    fn read_columns(&self) -> Option<Vec<String>> {
        None
    }
    /// For downcasting to the concrete config type ([`StepConfig::settings`]).
    fn as_any(&self) -> &dyn Any;
}

/// A parsed step: its type and its settings.
#[derive(Debug, Clone)]
pub struct StepConfig {
    type_name: String,
    settings: Arc<dyn StepSettings>,
}

impl StepConfig {
    /// A step of `type_name` with these settings (built-ins: e.g.
    /// `StepConfig::new("DataGenerator", DataGeneratorConfig { .. })`).
    pub fn new(type_name: impl Into<String>, settings: impl StepSettings) -> StepConfig {
        StepConfig {
            type_name: type_name.into(),
            settings: Arc::new(settings),
        }
    }

    /// The step's type name.
    pub fn type_name(&self) -> &str {
        &self.type_name
    }

    /// The settings as their concrete type, e.g. `settings::<JavaScriptConfig>()`.
    pub fn settings<T: 'static>(&self) -> Option<&T> {
        self.settings.as_any().downcast_ref::<T>()
    }

    /// See [`StepSettings::file_paths`].
    pub fn file_paths(&self) -> Vec<(PathRole, &'static str, &Path)> {
        self.settings.file_paths()
    }

    /// See [`StepSettings::input_names`].
    pub fn input_names(&self) -> Vec<String> {
        self.settings.input_names()
    }

    /// See [`StepSettings::error_policy`].
    pub fn error_policy(&self) -> Option<&crate::dead_letter::ErrorPolicy> {
        self.settings.error_policy()
    }

    /// See [`StepSettings::read_columns`].
    pub fn read_columns(&self) -> Option<Vec<String>> {
        self.settings.read_columns()
    }

    pub(crate) fn build(&self, ctx: &BuildContext<'_>) -> Result<StepRuntime> {
        self.settings.build(ctx)
    }
}

/// Parses a step's `Config` block.
pub type ParseFn = fn(&mut Obj<'_>, &mut ParseEnv<'_>) -> Result<StepConfig>;

/// A built-in step type, declared next to its code.
#[derive(Clone, Copy)]
pub struct StepType {
    /// The canonical name (`DelimitedSource`).
    pub name: &'static str,
    /// Other names pipeline files use (besides `<Name>Plugin` and qualified forms).
    pub aliases: &'static [&'static str],
    /// What it does with rows.
    pub kind: StepKind,
    /// Its config parser.
    pub parse: ParseFn,
    /// One line for `flowengine steps`.
    pub summary: &'static str,
}

/// A library user's own step type. Register it with [`Registry::register`]; pipeline files
/// then use it by its [`StepPlugin::type_name`], and its whole `Config` block is handed over
/// as JSON.
pub trait StepPlugin: Send + Sync {
    /// The `Type` pipeline files use.
    fn type_name(&self) -> &str;
    /// Validates `config` and builds the runtime.
    ///
    /// # Errors
    /// Return [`Error::Plan`] naming the step for a bad config.
    fn build(&self, config: &serde_json::Value, ctx: &BuildContext<'_>) -> Result<StepRuntime>;
    /// Named inputs besides the main one (see [`StepSettings::input_names`]). Default: none.
    fn input_names(&self, _config: &serde_json::Value) -> Vec<String> {
        Vec::new()
    }
    /// True for a step that rejects rows under the engine's error policy: the engine then
    /// takes `OnError`, `MaxErrors`, `MaxErrorRate`, `DeadLetterFilePath` (and the
    /// `SkipMalformedRows` / `ContinueOnError` shorthands) out of the config block, with the
    /// same meaning as on the built-in steps, and hands the policy to [`StepPlugin::build`]
    /// as [`BuildContext::error_policy`]; the step applies it with
    /// [`crate::dead_letter::ErrorPolicy::reject`] and sends rejected rows with
    /// [`crate::steps::Emitter::emit_errors`]. Default: false (the block is the plugin's).
    fn uses_error_policy(&self) -> bool {
        false
    }
}

/// A user plugin's settings: its config block as JSON, validated when built.
#[derive(Clone)]
pub struct PluginSettings {
    plugin: Arc<dyn StepPlugin>,
    /// The config block as written (less the error-policy keys, for a plugin that
    /// [uses the error policy](StepPlugin::uses_error_policy)).
    pub config: serde_json::Value,
    policy: Option<crate::dead_letter::ErrorPolicy>,
}

impl std::fmt::Debug for PluginSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.plugin.type_name(), self.config)
    }
}

impl StepSettings for PluginSettings {
    fn build(&self, ctx: &BuildContext<'_>) -> Result<StepRuntime> {
        self.plugin.build(&self.config, ctx)
    }
    fn input_names(&self) -> Vec<String> {
        self.plugin.input_names(&self.config)
    }
    fn error_policy(&self) -> Option<&crate::dead_letter::ErrorPolicy> {
        self.policy.as_ref()
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[derive(Clone)]
enum Entry {
    BuiltIn(StepType),
    Plugin(Arc<dyn StepPlugin>),
}

/// Every step type a pipeline can use: the built-ins, plus registered [`StepPlugin`]s.
#[derive(Clone)]
pub struct Registry {
    /// By lower-case canonical name.
    entries: HashMap<String, Entry>,
    /// Names in registration order, for listings.
    order: Vec<String>,
}

impl Default for Registry {
    fn default() -> Self {
        let mut r = Registry {
            entries: HashMap::new(),
            order: Vec::new(),
        };
        for t in super::BUILT_IN {
            r.insert(t.name, Entry::BuiltIn(**t));
        }
        r
    }
}

impl Registry {
    /// The built-in step types.
    pub fn new() -> Self {
        Self::default()
    }

    fn insert(&mut self, name: &str, entry: Entry) {
        let key = name.to_ascii_lowercase();
        if self.entries.insert(key, entry).is_none() {
            self.order.push(name.to_owned());
        }
    }

    /// Adds a step type (replacing a built-in of the same name).
    pub fn register(&mut self, plugin: Arc<dyn StepPlugin>) -> &mut Self {
        let name = plugin.type_name().to_owned();
        self.insert(&name, Entry::Plugin(plugin));
        self
    }

    /// Every type name, built-ins first.
    pub fn known_names(&self) -> Vec<String> {
        self.order.clone()
    }

    /// The built-in types (for listings: name, kind, summary).
    pub fn built_ins(&self) -> Vec<StepType> {
        super::BUILT_IN.iter().map(|t| **t).collect()
    }

    /// `DelimitedSource.DelimitedSourcePlugin`, `FlowEngine.Core.Plugins.Examples.DataGeneratorPlugin`,
    /// `delimitedsource` and aliases all name `DelimitedSource`; `None` when no type matches.
    fn lookup(&self, raw: &str) -> Option<(&str, &Entry)> {
        let last = raw.trim().rsplit('.').next().unwrap_or(raw).trim();
        let stripped = last
            .strip_suffix("Plugin")
            .or_else(|| last.strip_suffix("plugin"))
            .filter(|s| !s.is_empty())
            .unwrap_or(last);
        for candidate in [raw.trim(), last, stripped] {
            if let Some((k, e)) = self.entries.get_key_value(&candidate.to_ascii_lowercase()) {
                return Some((k.as_str(), e));
            }
        }
        super::BUILT_IN
            .iter()
            .find(|t| {
                t.aliases
                    .iter()
                    .any(|a| a.eq_ignore_ascii_case(stripped) || a.eq_ignore_ascii_case(raw.trim()))
            })
            .and_then(|t| self.entries.get_key_value(&t.name.to_ascii_lowercase()))
            .map(|(k, e)| (k.as_str(), e))
    }

    /// The canonical name of a type as written, if it is known.
    pub fn canonical_name(&self, raw: &str) -> Option<String> {
        self.lookup(raw).map(|(_, e)| match e {
            Entry::BuiltIn(t) => t.name.to_owned(),
            Entry::Plugin(p) => p.type_name().to_owned(),
        })
    }

    /// Parses a step's config block by its type.
    ///
    /// # Errors
    /// An unknown type (with "did you mean" and the known types), or the type's own parse
    /// errors; each names the file, line and key.
    pub(crate) fn parse(&self, step: &str, raw_type: &tree::Node<'_>, config: &mut Obj<'_>, env: &mut ParseEnv<'_>) -> Result<StepConfig> {
        let raw = raw_type.string()?;
        match self.lookup(&raw) {
            Some((_, Entry::BuiltIn(t))) => (t.parse)(config, env),
            Some((_, Entry::Plugin(p))) => {
                let policy = if p.uses_error_policy() {
                    Some(crate::dead_letter::ErrorPolicy::parse(config, env)?)
                } else {
                    None
                };
                // Everything else inside belongs to the plugin; it validates its own config.
                let json: serde_json::Map<String, serde_json::Value> =
                    config.take_rest().into_iter().map(|(k, n)| (k, tree::to_json(n.node))).collect();
                Ok(StepConfig::new(
                    p.type_name(),
                    PluginSettings {
                        plugin: Arc::clone(p),
                        config: serde_json::Value::Object(json),
                        policy,
                    },
                ))
            }
            None => {
                let known = self.known_names();
                let best = crate::error::suggest(&raw, known.iter().map(String::as_str))
                    .map(|k| format!(" (did you mean '{k}'?)"))
                    .unwrap_or_default();
                Err(raw_type.err(format!(
                    "step '{}': unknown step type '{}'{best}; known types: {} (library users add their own with Registry::register)",
                    crate::error::clip(step),
                    crate::error::clip(&raw),
                    known.join(", ")
                )))
            }
        }
    }

    /// A user plugin's step built in code: `registry.plugin_config("Uppercase", json)`.
    ///
    /// # Errors
    /// No plugin of that name is registered.
    pub fn plugin_config(&self, type_name: &str, config: serde_json::Value) -> Result<StepConfig> {
        match self.lookup(type_name) {
            Some((_, Entry::Plugin(p))) => Ok(StepConfig::new(
                p.type_name(),
                PluginSettings {
                    plugin: Arc::clone(p),
                    config,
                    policy: p.uses_error_policy().then(crate::dead_letter::ErrorPolicy::default),
                },
            )),
            _ => Err(Error::plan(type_name, format!("no plugin '{type_name}' is registered"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_short_qualified_and_aliases() {
        let r = Registry::new();
        let c = |s: &str| r.canonical_name(s);
        assert_eq!(c("DelimitedSource.DelimitedSourcePlugin").as_deref(), Some("DelimitedSource"));
        assert_eq!(
            c("FlowEngine.Core.Plugins.Examples.DataGeneratorPlugin").as_deref(),
            Some("DataGenerator")
        );
        assert_eq!(c("delimitedsink").as_deref(), Some("DelimitedSink"));
        assert_eq!(
            c("JavaScriptTransform.JavaScriptTransformPlugin").as_deref(),
            Some("JavaScriptTransform")
        );
        // The original's demo source plugin is the generator.
        assert_eq!(c("Phase3TemplatePlugin.TemplatePlugin").as_deref(), Some("DataGenerator"));
        assert_eq!(c("TemplatePlugin").as_deref(), Some("DataGenerator"));
        assert_eq!(c("MyStep"), None);
        // Every built-in is in the one list, once.
        let names = r.known_names();
        assert_eq!(names.len(), super::super::BUILT_IN.len());
    }
}
