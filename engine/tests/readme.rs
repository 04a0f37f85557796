//! README.md is checked, so it cannot drift: every ```yaml block that is a complete pipeline
//! runs (outputs in a temp directory), the others are marked `<!-- fragment -->` and must
//! still be YAML; the step keys it lists are the registry's; the newcomer's commands name
//! files that exist.

use std::path::{Path, PathBuf};

const README: &str = include_str!("../../README.md");

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

struct Block {
    /// 1-based line of the opening fence.
    line: usize,
    text: String,
    fragment: bool,
}

/// The ```yaml blocks, indentation removed; a block is a fragment when the line before it
/// (blank lines skipped) is `<!-- fragment -->`.
fn yaml_blocks() -> Vec<Block> {
    let lines: Vec<&str> = README.lines().collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        if l.trim_start().starts_with("```yaml") {
            let indent = l.len() - l.trim_start().len();
            let fragment = lines[..i]
                .iter()
                .rev()
                .find(|p| !p.trim().is_empty())
                .is_some_and(|p| p.trim() == "<!-- fragment -->");
            let mut text = String::new();
            let mut j = i + 1;
            while j < lines.len() && lines[j].trim() != "```" {
                text.push_str(lines[j].get(indent..).unwrap_or(lines[j].trim_start()));
                text.push('\n');
                j += 1;
            }
            assert!(j < lines.len(), "README.md:{}: unterminated ```yaml block", i + 1);
            blocks.push(Block {
                line: i + 1,
                text,
                fragment,
            });
            i = j;
        }
        i += 1;
    }
    blocks
}

/// Every unmarked block runs as a pipeline, from a temp directory holding the shipped data
/// (`data/customers.csv`), with `{OutputDir}` (when it uses it) in that directory.
#[test]
fn every_complete_pipeline_in_the_readme_runs() {
    let blocks = yaml_blocks();
    let mut ran = 0;
    for b in blocks.iter().filter(|b| !b.fragment) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        std::fs::copy(root().join("examples/data/customers.csv"), dir.path().join("data/customers.csv")).unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        let p = dir.path().join("pipeline.yaml");
        std::fs::write(&p, &b.text).unwrap();
        let vars: Vec<(String, String)> = if b.text.contains("{OutputDir}") {
            vec![("OutputDir".into(), out.display().to_string())]
        } else {
            Vec::new()
        };
        let summary = flowengine::Pipeline::from_file(&p, &vars)
            .and_then(|p| p.run())
            .unwrap_or_else(|e| {
                panic!(
                    "README.md:{}: this ```yaml block is not a pipeline that runs ({e}); fix it, or mark it with <!-- fragment --> on the line before",
                    b.line
                )
            });
        let written: u64 = summary.steps.iter().map(|s| s.rows_written).sum();
        assert!(written > 0, "README.md:{}: the pipeline wrote no rows: {summary:?}", b.line);
        if b.text.contains("{OutputDir}") {
            assert!(
                std::fs::read_dir(&out).unwrap().next().is_some(),
                "README.md:{}: nothing in OutputDir",
                b.line
            );
        }
        ran += 1;
    }
    // The Pipeline files example and the JavaScriptTransform example, at least.
    assert!(ran >= 2, "only {ran} README pipelines ran");
}

#[test]
fn fragments_are_yaml() {
    let blocks = yaml_blocks();
    assert!(blocks.iter().any(|b| b.fragment));
    for b in blocks.iter().filter(|b| b.fragment) {
        flowengine::config::tree::parse_yaml(&b.text, "README.md")
            .unwrap_or_else(|e| panic!("README.md:{}: the fragment is not YAML: {e}", b.line));
    }
}

fn registry_keys(name: &str) -> Vec<&'static str> {
    let types = flowengine::Registry::new().built_ins();
    let t = types
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no step type {name}"));
    flowengine::steps::keys::keys_of(t).into_iter().map(|k| k.name).collect()
}

/// The backticked words of `text`.
fn ticked(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// The key table of `### JavaScriptTransform` names exactly the keys the step's parser reads.
#[test]
fn the_javascript_key_table_matches_the_registry() {
    let section = README
        .split("\n### JavaScriptTransform\n")
        .nth(1)
        .expect("README has a ### JavaScriptTransform section");
    let mut documented: Vec<&str> = section
        .lines()
        .take_while(|l| !l.starts_with("## "))
        .filter(|l| l.starts_with("| `"))
        .flat_map(|l| ticked(l.split('|').nth(1).unwrap_or("")))
        .collect();
    let mut registry = registry_keys("JavaScriptTransform");
    documented.sort_unstable();
    registry.sort_unstable();
    assert_eq!(
        documented, registry,
        "README's JavaScriptTransform table vs `flowengine steps JavaScriptTransform`"
    );
}

/// The list under `<!-- step-keys -->`: one line per built-in step type with its keys, as
/// `flowengine steps TYPE` prints them, in order.
#[test]
fn every_built_in_steps_keys_are_listed_as_the_registry_has_them() {
    let list = README
        .split("<!-- step-keys -->\n")
        .nth(1)
        .expect("README has a <!-- step-keys --> list");
    let lines: Vec<&str> = list.lines().take_while(|l| l.starts_with("- ")).collect();
    let types = flowengine::Registry::new().built_ins();
    let mut expected = Vec::new();
    for t in &types {
        let keys: Vec<String> = registry_keys(t.name).iter().map(|k| format!("`{k}`")).collect();
        expected.push(format!("- `{}`: {}", t.name, keys.join(", ")));
    }
    assert_eq!(
        lines.join("\n"),
        expected.join("\n"),
        "README's step-keys list differs from the registry; replace it with the expected lines"
    );
}

/// The "Two commands for a newcomer" name files that exist.
#[test]
fn the_newcomer_commands_name_files_that_exist() {
    let section = README
        .split("## Two commands for a newcomer")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("README has the newcomer section");
    let mut checked = 0;
    for block in section.split("```sh").skip(1) {
        let commands = block.split("```").next().unwrap_or("");
        for word in commands.split_whitespace() {
            let is_file = [".yaml", ".sh", ".csv", ".py", ".js"].iter().any(|ext| word.ends_with(ext));
            if is_file {
                assert!(
                    root().join(word).is_file(),
                    "README's newcomer command names {word}, which does not exist"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 2, "{checked} files checked in:\n{section}");
}
