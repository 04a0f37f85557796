//! Every kind of bad input gets an error that says where and what to do.

mod common;

use common::{csv_pipeline, Scenario, CUSTOMER_COLUMNS};
use flowengine::Error;

fn err(s: &Scenario, yaml: &str) -> String {
    match s.run(yaml) {
        Ok(_) => panic!("expected an error for:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

fn two_steps(extra_plugins: &str, connections: &str) -> String {
    format!(
        r#"
Pipeline:
  Name: t
  Plugins:
    - {{ Name: gen, Type: DataGenerator, Config: {{ RowCount: 10 }} }}
    - {{ Name: out, Type: DelimitedSink, Config: {{ FilePath: out.csv }} }}
{extra_plugins}
  Connections:
{connections}
"#
    )
}

#[test]
fn unknown_key_names_its_path_line_and_suggests() {
    let s = Scenario::new();
    s.write("in.csv", "id,name,balance\n1,a,2\n");
    let e = err(&s, &csv_pipeline(CUSTOMER_COLUMNS, "FilePth: x.csv", ""));
    assert!(e.contains("pipeline.yaml:9"), "{e}");
    assert!(e.contains("Pipeline.Plugins[0].Config.FilePth"), "{e}");
    assert!(e.contains("did you mean 'FilePath'"), "{e}");
}

#[test]
fn custom_blocks_are_the_users_own() {
    let s = Scenario::new();
    let yaml = two_steps("", "    - { From: gen, To: out }").replace(
        "  Connections:",
        "  Settings:\n    Custom: { Anything: { Goes: 1 } }\n    Monitoring: { Custom: { LogLevel: x } }\n  Connections:",
    );
    s.run(&yaml).unwrap();
}

#[test]
fn unknown_step_type_suggests_the_closest() {
    let s = Scenario::new();
    let e = err(
        &s,
        &two_steps(
            "    - { Name: x, Type: DelimitedSorce, Config: { A: 1 } }",
            "    - { From: gen, To: out }",
        ),
    );
    assert!(
        e.contains("step 'x'") && e.contains("unknown step type 'DelimitedSorce'") && e.contains("did you mean 'DelimitedSource'"),
        "{e}"
    );
}

#[test]
fn duplicate_names() {
    let s = Scenario::new();
    let e = err(
        &s,
        &two_steps(
            "    - { Name: out, Type: DelimitedSink, Config: { FilePath: b.csv } }",
            "    - { From: gen, To: out }",
        ),
    );
    assert!(e.contains("two plugins are named 'out'"), "{e}");
}

#[test]
fn connection_to_unknown_step_or_output() {
    let s = Scenario::new();
    let e = err(&s, &two_steps("", "    - { From: gen, To: ouput }"));
    assert!(
        e.contains("Connections[0]") && e.contains("'ouput'") && e.contains("did you mean 'out'"),
        "{e}"
    );
    // Every step has an error output (`gen.errors`); other names are refused, listing it.
    let e = err(&s, &two_steps("", "    - { From: gen.rejects, To: out }"));
    assert!(
        e.contains("has no output 'rejects'") && e.contains("its named outputs: errors"),
        "{e}"
    );
}

#[test]
fn cycles_are_named() {
    let s = Scenario::new();
    let yaml = r#"
Pipeline:
  Name: t
  Plugins:
    - { Name: gen, Type: DataGenerator }
    - { Name: a, Type: JavaScriptTransform, Config: { Script: "function process(c) { return true; }", OutputSchema: { Fields: [ { Name: customer_id, Type: integer } ] } } }
    - { Name: b, Type: JavaScriptTransform, Config: { Script: "function process(c) { return true; }", OutputSchema: { Fields: [ { Name: customer_id, Type: integer } ] } } }
    - { Name: out, Type: DelimitedSink, Config: { FilePath: out.csv } }
  Connections:
    - { From: gen, To: out }
    - { From: a, To: b }
    - { From: b, To: a }
"#;
    let e = err(&s, yaml);
    assert!(e.contains("cycle: b -> a -> b"), "{e}");
    assert!(e.contains("pipeline.yaml:7:"), "{e}");
    // A step downstream of the cycle is not part of it and is not named.
    let yaml = yaml
        .replace("- { From: gen, To: out }", "- { From: gen, To: out }\n    - { From: b, To: c }")
        .replace(
            "  Connections:",
            "    - { Name: c, Type: DelimitedSink, Config: { FilePath: c.csv } }\n  Connections:",
        );
    let e = err(&s, &yaml);
    assert!(e.contains("cycle: ") && !e.contains("'c'") && !e.contains("-> c"), "{e}");
}

#[test]
fn plan_errors_carry_file_and_line() {
    let s = Scenario::new();
    let yaml = r#"
Pipeline:
  Name: t
  Plugins:
    - { Name: gen, Type: DataGenerator }
    - { Name: out, Type: DelimitedSink, Config: { FilePath: out.csv } }
    - { Name: x, Type: NoSuchStep }
  Connections:
    - { From: gen, To: out }
    - { From: gen, To: nowhere }
"#;
    let e = err(
        &s,
        &yaml.replace("    - { From: gen, To: nowhere }\n", "    - { From: gen, To: x }\n"),
    );
    assert!(e.contains("pipeline.yaml:7:") && e.contains("NoSuchStep"), "{e}");
    let e = err(&s, &yaml.replace("    - { Name: x, Type: NoSuchStep }\n", ""));
    assert!(
        e.contains("pipeline.yaml:9:") && e.contains("Connections[1]") && e.contains("nowhere"),
        "{e}"
    );
    let e = err(
        &s,
        &yaml
            .replace("    - { Name: x, Type: NoSuchStep }\n", "")
            .replace("    - { From: gen, To: nowhere }\n", "")
            .replace(
                "    - { From: gen, To: out }\n",
                "    - { From: gen, To: out }\n    - { From: out, To: gen }\n",
            ),
    );
    assert!(e.contains("pipeline.yaml:"), "{e}");
}

#[test]
fn steps_without_input_and_sources_with_one() {
    let s = Scenario::new();
    let yaml = two_steps(
        "    - { Name: lonely, Type: DelimitedSink, Config: { FilePath: c.csv } }",
        "    - { From: gen, To: out }",
    );
    let e = err(&s, &yaml);
    assert!(e.contains("step 'lonely'") && e.contains("has no input"), "{e}");
    let yaml = two_steps(
        "    - { Name: gen2, Type: DataGenerator }",
        "    - { From: gen, To: out }\n    - { From: gen2, To: gen }",
    );
    let e = err(&s, &yaml);
    assert!(e.contains("is a source"), "{e}");
}

#[test]
fn unconnected_output_would_lose_rows() {
    let s = Scenario::new();
    let yaml = two_steps("    - { Name: gen2, Type: DataGenerator }", "    - { From: gen, To: out }");
    let e = err(&s, &yaml);
    assert!(e.contains("'gen2' is not connected"), "{e}");
}

#[test]
fn fan_in_schema_mismatch_names_both_sides() {
    let s = Scenario::new();
    s.write("in.csv", "id,name,balance\n1,a,2\n");
    let yaml = r#"
Pipeline:
  Name: t
  Plugins:
    - { Name: gen, Type: DataGenerator }
    - { Name: csv, Type: DelimitedSource, Config: { FilePath: in.csv, InferSchema: true } }
    - { Name: out, Type: DelimitedSink, Config: { FilePath: out.csv } }
  Connections:
    - { From: gen, To: out }
    - { From: csv, To: out }
"#;
    let e = err(&s, yaml);
    assert!(e.contains("step 'out'") && e.contains("schema mismatch on fan-in"), "{e}");
}

#[test]
fn bad_type_name_and_bad_full_mode() {
    let s = Scenario::new();
    s.write("in.csv", "id\n1\n");
    let e = err(&s, &csv_pipeline("            - { Name: id, Type: integr }", "", ""));
    assert!(e.contains("unknown type 'integr'") && e.contains("Columns[0].Type"), "{e}");
    let yaml = two_steps("", "    - { From: gen, To: out, Channel: { FullMode: DropSome } }");
    let e = err(&s, &yaml);
    assert!(e.contains("unknown FullMode 'DropSome'") && e.contains("DropOldest"), "{e}");
}

#[test]
fn missing_input_file() {
    let s = Scenario::new();
    let e = err(&s, &csv_pipeline(CUSTOMER_COLUMNS, "", ""));
    assert!(e.contains("in.csv") && e.contains("check FilePath"), "{e}");
}

#[test]
fn header_that_does_not_match_the_schema() {
    let s = Scenario::new();
    s.write("in.csv", "id,nmae,balance\n1,a,2\n");
    let e = err(&s, &csv_pipeline(CUSTOMER_COLUMNS, "", ""));
    assert!(e.contains("'name' (Index 1) is 'nmae'"), "{e}");
}

#[test]
fn malformed_rows_fail_with_file_line_and_field() {
    let cases: [(&[u8], &str, &str); 4] = [
        (b"id,name,balance\n1,a,2\n2,b\n", ":3: field '#2'", "expected 3 fields, found 2"),
        (
            b"id,name,balance\n1,a,2\n2,b,lots\n",
            ":3: field 'balance'",
            "'lots' is not a decimal",
        ),
        (b"id,name,balance\n1,\xc3\x28,2\n", ":2: field 'name'", "invalid UTF-8"),
        (b"id,name,balance\n,a,2\n", ":2: field 'id'", "non-nullable"),
    ];
    for (input, place, reason) in cases {
        let s = Scenario::new();
        s.write_bytes("in.csv", input);
        let e = err(&s, &csv_pipeline(CUSTOMER_COLUMNS, "", ""));
        assert!(
            e.contains("in.csv") && e.contains(place) && e.contains(reason) && e.contains("step 'src'"),
            "{e}"
        );
        assert_eq!(s.files(), vec!["in.csv", "pipeline.yaml"], "a failed run leaves no output");
    }
}

#[test]
fn too_many_errors() {
    let s = Scenario::new();
    s.write("in.csv", "id,name,balance\nx,a,1\ny,b,2\nz,c,3\n");
    let e = err(
        &s,
        &csv_pipeline(CUSTOMER_COLUMNS, "SkipMalformedRows: true\n        MaxErrors: 2", ""),
    );
    assert!(e.contains("3 malformed rows exceed MaxErrors = 2") && e.contains("'z'"), "{e}");
}

#[test]
fn overwrite_existing_false_refuses() {
    let s = Scenario::new();
    s.write("in.csv", "id,name,balance\n1,a,2\n");
    s.write("out.csv", "precious\n");
    let e = err(&s, &csv_pipeline(CUSTOMER_COLUMNS, "", "OverwriteExisting: false"));
    assert!(e.contains("OverwriteExisting is false"), "{e}");
    assert_eq!(s.read("out.csv"), "precious\n");
}

#[test]
fn unknown_variable_and_unset_env() {
    let s = Scenario::new();
    let yaml = two_steps("", "    - { From: gen, To: out }").replace("FilePath: out.csv", "FilePath: \"{OutDir}/out.csv\"");
    let e = err(&s, &yaml);
    assert!(e.contains("unknown variable '{OutDir}'") && e.contains("--var OutDir=VALUE"), "{e}");
    let yaml =
        two_steps("", "    - { From: gen, To: out }").replace("FilePath: out.csv", "FilePath: \"${FLOWENGINE_SURELY_UNSET}/out.csv\"");
    let e = err(&s, &yaml);
    assert!(e.contains("FLOWENGINE_SURELY_UNSET' is not set"), "{e}");
}

#[test]
fn unc_path_on_linux() {
    let s = Scenario::new();
    let yaml = two_steps("", "    - { From: gen, To: out }").replace("FilePath: out.csv", "FilePath: '\\\\server\\share\\out.csv'");
    let e = err(&s, &yaml);
    assert!(e.contains("UNC") && e.contains("FilePath"), "{e}");
}

#[test]
fn invalid_yaml_is_reported_with_position() {
    let s = Scenario::new();
    let e = err(&s, "Pipeline:\n  Name: [unclosed\n");
    assert!(e.contains("invalid YAML") && e.contains("pipeline.yaml"), "{e}");
}

#[test]
fn missing_pipeline_file() {
    let e = flowengine::Pipeline::from_file("/nonexistent/p.yaml", &[]).err().unwrap();
    assert!(
        matches!(e, Error::Io { .. }) && e.to_string().contains("/nonexistent/p.yaml"),
        "{e}"
    );
}
