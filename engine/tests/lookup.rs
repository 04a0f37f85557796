//! `Lookup` and named inputs, through whole YAML pipelines: two delimited sources joined
//! into a delimited sink, in memory and as a grace hash join on disk; the plan errors of
//! named inputs.

mod common;

use common::Scenario;

/// `main.csv`: 30,000 customers, every 97th with no customer id (a null key);
/// `segments.csv`: segments of every even id below 40,000 (so half the customers match).
fn write_data(s: &Scenario) {
    let mut main = String::from("customer_id,name\n");
    for i in 0..30_000 {
        if i % 97 == 0 {
            main.push_str(&format!(",nobody{i}\n"));
        } else {
            main.push_str(&format!("{i},name{i}\n"));
        }
    }
    s.write("main.csv", &main);
    let mut side = String::from("customer_id,segment,region\n");
    for i in (0..40_000).step_by(2) {
        side.push_str(&format!("{i},seg{},region{}\n", i % 7, i % 5));
    }
    s.write("segments.csv", &side);
}

fn pipeline(join: &str, settings: &str, to_lookup: &str) -> String {
    format!(
        r#"
Pipeline:
  Name: lookup
  Plugins:
    - Name: customers
      Type: DelimitedSource
      Config:
        FilePath: main.csv
        OutputSchema:
          Columns:
            - {{ Name: customer_id, Type: int32, IsNullable: true }}
            - {{ Name: name, Type: string }}
    - Name: segments
      Type: DelimitedSource
      Config:
        FilePath: segments.csv
        OutputSchema:
          Columns:
            - {{ Name: customer_id, Type: int64 }}
            - {{ Name: segment, Type: string }}
            - {{ Name: region, Type: string }}
    - Name: Enrich
      Type: Lookup
      Config:
        Keys: [customer_id]
        Columns: [segment, {{ Column: region, As: customer_region }}]
        JoinType: {join}
    - Name: out
      Type: DelimitedSink
      Config: {{ FilePath: out.csv, OverwriteExisting: true }}
  Connections:
    - {{ From: customers, To: Enrich }}
    - {{ From: segments, {to_lookup} }}
    - {{ From: Enrich, To: out }}
{settings}
"#
    )
}

fn sorted_lines(text: &str) -> (String, Vec<String>) {
    let mut lines = text.lines().map(str::to_owned);
    let header = lines.next().unwrap_or_default();
    let mut rows: Vec<String> = lines.collect();
    rows.sort();
    (header, rows)
}

#[test]
fn a_left_lookup_in_memory_and_as_a_grace_join_on_disk_give_the_same_rows() {
    let s = Scenario::new();
    write_data(&s);
    let mem = s.run(&pipeline("left", "", "To: Enrich.lookup")).unwrap();
    let in_memory = s.read("out.csv");
    let e = mem.step("Enrich").unwrap();
    assert_eq!((e.rows_in, e.rows_out, e.rows_filtered), (30_000, 30_000, 0));
    assert_eq!(e.memory.spill_files, 0);
    // In memory the output keeps the main input's order.
    let lines: Vec<&str> = in_memory.lines().collect();
    assert_eq!(lines[0], "customer_id,name,segment,customer_region");
    assert_eq!(lines[1], ",nobody0,,");
    assert_eq!(lines[2], "1,name1,,");
    assert_eq!(lines[3], "2,name2,seg2,region2");
    assert_eq!(lines.len(), 30_001);

    let spill = tempfile::tempdir().unwrap();
    let settings = format!(
        "  Settings: {{ Memory: {{ Limit: 16MiB, SpillThreshold: 0.05, SpillPath: \"{}\" }} }}",
        spill.path().display()
    );
    let disk = s.run(&pipeline("left", &settings, "To: Enrich, ToPort: lookup")).unwrap();
    let e = disk.step("Enrich").unwrap();
    assert!(e.memory.spill_files > 0, "no spill: {:?}", e.memory);
    assert_eq!((e.rows_in, e.rows_out, e.rows_filtered), (30_000, 30_000, 0));
    assert_eq!(sorted_lines(&s.read("out.csv")), sorted_lines(&in_memory));
    let left: Vec<_> = std::fs::read_dir(spill.path()).unwrap().collect();
    assert!(left.is_empty(), "spill directory left behind: {left:?}");
}

#[test]
fn an_inner_lookup_drops_unmatched_rows_as_filtered_in_memory_and_on_disk() {
    let s = Scenario::new();
    write_data(&s);
    let spill = tempfile::tempdir().unwrap();
    let settings = format!(
        "  Settings: {{ Memory: {{ Limit: 16MiB, SpillThreshold: 0.05, SpillPath: \"{}\" }} }}",
        spill.path().display()
    );
    // Matched: even ids that are not multiples of 97 (0..30000).
    let matched = (0..30_000).filter(|i| i % 2 == 0 && i % 97 != 0).count() as u64;
    let mut outputs = Vec::new();
    for settings in ["", settings.as_str()] {
        let r = s.run(&pipeline("inner", settings, "To: Enrich.lookup")).unwrap();
        let e = r.step("Enrich").unwrap();
        assert_eq!((e.rows_in, e.rows_out, e.rows_filtered), (30_000, matched, 30_000 - matched));
        assert_eq!(r.step("out").unwrap().rows_written, matched);
        outputs.push(sorted_lines(&s.read("out.csv")));
    }
    assert_eq!(outputs[0], outputs[1]);
}

#[test]
fn a_duplicate_lookup_key_fails_naming_both_source_lines() {
    let s = Scenario::new();
    write_data(&s);
    s.write("segments.csv", "customer_id,segment,region\n1,a,x\n2,b,y\n1,c,z\n");
    let e = s.run(&pipeline("left", "", "To: Enrich.lookup")).unwrap_err();
    let msg = e.to_string();
    assert_eq!(e.kind(), "data", "{msg}");
    assert!(
        msg.contains("duplicate key customer_id=1") && msg.contains("source lines 2 and 4"),
        "{msg}"
    );
    assert!(!s.path("out.csv").exists());
}

#[test]
fn describe_and_graph_show_named_inputs() {
    let s = Scenario::new();
    write_data(&s);
    let p = s.build(&pipeline("left", "", "To: Enrich.lookup")).unwrap();
    let d = p.describe();
    assert!(d.contains("segments -> Enrich.lookup (BufferSize"), "{d}");
    assert!(d.contains("customers -> Enrich (BufferSize"), "{d}");
    assert!(d.contains("Enrich [transform] -> (customer_id"), "{d}");
    let dot = p.to_dot();
    assert!(dot.contains("-> lookup"), "{dot}");
}

fn plan_error(s: &Scenario, yaml: &str) -> String {
    let e = s.build(yaml).err().expect("a plan error");
    assert_eq!(e.kind(), "config", "{e}");
    e.to_string()
}

#[test]
fn named_input_plan_errors_give_the_line_and_what_to_do() {
    let s = Scenario::new();
    write_data(&s);
    let good = pipeline("left", "", "To: Enrich.lookup");
    let line_of = |yaml: &str, needle: &str| yaml.lines().position(|l| l.contains(needle)).unwrap() + 1;

    // A misspelt input of a step that has named inputs.
    let yaml = good.replace("To: Enrich.lookup", "To: Enrich.lokup");
    let e = plan_error(&s, &yaml);
    let at = format!("pipeline.yaml:{}", line_of(&yaml, "Enrich.lokup"));
    assert!(
        e.contains(&at) && e.contains("no input 'lokup'") && e.contains("did you mean 'Enrich.lookup'"),
        "{e}"
    );

    // A named input of a step that has none.
    let yaml = good.replace("{ From: Enrich, To: out }", "{ From: Enrich, To: out.lookup }");
    let e = plan_error(&s, &yaml);
    let at = format!("pipeline.yaml:{}", line_of(&yaml, "out.lookup"));
    assert!(e.contains(&at) && e.contains("has only its main input"), "{e}");

    // A Lookup with nothing connected to `lookup`.
    let yaml = good.replace(
        "    - { From: segments, To: Enrich.lookup }\n",
        "    - { From: segments, To: out }\n",
    );
    let e = plan_error(&s, &yaml);
    let at = format!("pipeline.yaml:{}", line_of(&yaml, "Name: Enrich"));
    assert!(
        e.contains(&at) && e.contains("no lookup input") && e.contains("To: Enrich.lookup"),
        "{e}"
    );

    // A key missing on the lookup side (did you mean), with the key's line.
    let yaml = good.replace(
        "Keys: [customer_id]",
        "Keys:\n          - { Main: customer_id, Lookup: customerid }",
    );
    let e = plan_error(&s, &yaml);
    assert!(
        e.contains(&format!("(line {})", line_of(&yaml, "Lookup: customerid")))
            && e.contains("lookup input")
            && e.contains("did you mean 'customer_id'"),
        "{e}"
    );

    // A key missing on the main side.
    let yaml = good.replace("Keys: [customer_id]", "Keys: [{ Main: customer, Lookup: customer_id }]");
    let e = plan_error(&s, &yaml);
    assert!(
        e.contains("'customer' is not a column of the main input") && e.contains("did you mean 'customer_id'"),
        "{e}"
    );

    // An added column clashing with a main column.
    let yaml = good.replace("{ Column: region, As: customer_region }", "{ Column: region, As: name }");
    let e = plan_error(&s, &yaml);
    assert!(e.contains("'name' clashes with a column of the main input"), "{e}");

    // Main and lookup input from one upstream step would stall.
    let yaml = good.replace("{ From: segments, To: Enrich.lookup }", "{ From: customers, To: Enrich.lookup }");
    let e = plan_error(&s, &yaml);
    assert!(e.contains("both come from 'customers'") && e.contains("a second source"), "{e}");

    // Fan-in per input: two lookup connections must agree on their schema.
    s.write("other.csv", "customer_id,segment\n1,a\n");
    let yaml = good
        .replace(
            "    - Name: Enrich\n",
            "    - { Name: other, Type: DelimitedSource, Config: { FilePath: other.csv } }\n    - Name: Enrich\n",
        )
        .replace(
            "    - { From: Enrich, To: out }",
            "    - { From: Enrich, To: out }\n    - { From: other, To: Enrich.lookup }",
        );
    let e = plan_error(&s, &yaml);
    assert!(e.contains("schema mismatch on fan-in") && e.contains("Enrich.lookup"), "{e}");
}

/// `examples/bench/lookup.yaml` runs as shipped, on a few generated rows.
#[test]
fn the_bench_pipeline_runs_on_small_data() {
    let s = Scenario::new();
    let mut customers = String::from("customer_id,first_name,last_name,age,email,account_value\n");
    for i in 1..=50 {
        customers.push_str(&format!("{i},F{i},L{i},30,f{i}@x.org,{i}.50\n"));
    }
    s.write("c.csv", &customers);
    let mut segments = String::from("customer_id,segment\n");
    for i in (1..=40).rev() {
        segments.push_str(&format!("{i},s{}\n", i % 3));
    }
    s.write("s.csv", &segments);
    let yaml = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/bench/lookup.yaml");
    let var = |k: &str, v: &str| (k.to_owned(), s.path(v).display().to_string());
    let vars = [var("In", "c.csv"), var("Segments", "s.csv"), var("Out", "o.csv")];
    let r = flowengine::Pipeline::from_file(yaml, &vars).unwrap().run().unwrap();
    assert_eq!(r.step("Sink").unwrap().rows_written, 50);
    let out = s.read("o.csv");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "customer_id,first_name,last_name,age,email,account_value,segment");
    assert_eq!(lines[3], "3,F3,L3,30,f3@x.org,3.50,s0");
    assert_eq!(lines[50], "50,F50,L50,30,f50@x.org,50.50,");
}
