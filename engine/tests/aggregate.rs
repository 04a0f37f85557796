//! `Aggregate` in a pipeline: CSV in, groups out; forced to spill under a small memory
//! budget, it writes the same rows as in memory, reports its spill files and leaves no
//! spill directory behind.

mod common;

use common::Scenario;

/// `rows` customers; `groups` distinct (last_name, age) pairs; some nulls.
fn write_input(s: &Scenario, rows: u64) {
    let mut text = String::from("customer_id,last_name,age,email,account_value\n");
    for i in 0..rows {
        let name = format!("name{}", (i * 7919) % 4999);
        let age = if i % 97 == 0 {
            String::new()
        } else {
            (18 + (i * 31) % 70).to_string()
        };
        let value = if i % 53 == 0 {
            String::new()
        } else {
            format!("{}.{:02}", (i * 104_729) % 100_000, i % 100)
        };
        text.push_str(&format!("{i},{name},{age},user{}@example.com,{value}\n", i % 1000));
    }
    s.write("in.csv", &text);
}

fn pipeline(settings: &str, out: &str) -> String {
    format!(
        r#"
Pipeline:
  Name: agg
  Plugins:
    - Name: src
      Type: DelimitedSource
      Config:
        FilePath: in.csv
        OutputSchema:
          Columns:
            - {{ Name: customer_id, Type: int32, IsNullable: false }}
            - {{ Name: last_name, Type: string, IsNullable: false }}
            - {{ Name: age, Type: int32, IsNullable: true }}
            - {{ Name: email, Type: string, IsNullable: false }}
            - {{ Name: account_value, Type: decimal, IsNullable: true }}
    - Name: totals
      Type: Aggregate
      Config:
        GroupBy: [last_name, age]
        Aggregates:
          - {{ Function: count, As: "n" }}
          - {{ Function: sum, Column: account_value, As: total }}
          - {{ Function: max, Column: account_value, As: top }}
          - {{ Function: min, Column: age, As: youngest }}
          - {{ Function: avg, Column: account_value, As: mean }}
          - {{ Function: count_distinct, Column: email, As: emails }}
    - Name: out
      Type: DelimitedSink
      Config: {{ FilePath: {out}, OverwriteExisting: true }}
  Settings:
{settings}
"#
    )
}

fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let header = lines.remove(0);
    lines.sort();
    lines.insert(0, header);
    lines
}

#[test]
fn spilled_aggregation_writes_what_the_in_memory_one_writes() {
    let s = Scenario::new();
    write_input(&s, 120_000);
    let spill_dir = s.path("spill");
    std::fs::create_dir_all(&spill_dir).unwrap();

    let in_memory = s.run(&pipeline("    Custom: {}", "mem.csv")).unwrap();
    let m = &in_memory.step("totals").unwrap().memory;
    assert_eq!((m.spill_files, m.spill_rows), (0, 0), "the in-memory run spilled");

    let settings = format!(
        "    Memory: {{ Limit: 16MiB, SpillThreshold: 0.05, SpillPath: {} }}",
        spill_dir.display()
    );
    let spilled = s.run(&pipeline(&settings, "spilled.csv")).unwrap();
    let step = spilled.step("totals").unwrap();
    assert!(
        step.memory.spill_files > 0 && step.memory.spill_rows > 0,
        "no spill under 16 MiB × 0.05: {:?}",
        step.memory
    );
    assert_eq!(step.rows_in, 120_000);

    let want = sorted_lines(&s.read("mem.csv"));
    let got = sorted_lines(&s.read("spilled.csv"));
    assert_eq!(want[0], "last_name,age,n,total,top,youngest,mean,emails");
    // 4999 names × ages: every row's group is there once.
    assert!(want.len() > 50_000, "{} groups", want.len() - 1);
    assert_eq!(got.len(), want.len());
    assert!(got == want, "the spilled run's rows differ from the in-memory run's");
    let counted: u64 = want[1..].iter().map(|l| l.split(',').nth(2).unwrap().parse::<u64>().unwrap()).sum();
    assert_eq!(counted, 120_000);

    let left: Vec<_> = std::fs::read_dir(&spill_dir).unwrap().collect();
    assert!(left.is_empty(), "spill files left behind: {left:?}");
}

#[test]
fn sort_by_group_and_an_empty_input_without_group_by() {
    let s = Scenario::new();
    s.write("in.csv", "customer_id,last_name,age,email,account_value\n");
    let yaml = pipeline("    Custom: {}", "out.csv").replace("GroupBy: [last_name, age]", "GroupBy: []");
    s.run(&yaml).unwrap();
    assert_eq!(s.read("out.csv"), "n,total,top,youngest,mean,emails\n0,,,,,0\n");

    write_input(&s, 3000);
    let yaml = pipeline("    Custom: {}", "sorted.csv").replace("GroupBy: [last_name, age]", "GroupBy: [age]\n        SortBy: group");
    s.run(&yaml).unwrap();
    let text = s.read("sorted.csv");
    let ages: Vec<&str> = text.lines().skip(1).map(|l| l.split(',').next().unwrap()).collect();
    let mut want: Vec<&str> = ages.clone();
    want.sort_by_key(|a| (a.is_empty(), a.parse::<i32>().unwrap_or(0)));
    assert_eq!(ages, want);
    assert_eq!(ages.last(), Some(&""), "the null age group goes last");
    assert_eq!(ages.len(), 71);
}

/// The source feeds only the Aggregate, which reads three of its five columns: the plan
/// sends just those, yet every declared column is still checked, so the same rows are
/// rejected (and dead-lettered with all their fields) and the groups are the same as when a
/// second consumer needs every column.
#[test]
fn a_source_feeding_only_an_aggregate_sends_the_read_columns_and_still_checks_the_rest() {
    let s = Scenario::new();
    let mut text = String::from("customer_id,last_name,age,email,account_value\n");
    for i in 0..5000u32 {
        let id = match i {
            17 => "x17".to_owned(), // an unread int32 that does not parse
            _ => i.to_string(),
        };
        let email = if i == 400 { String::new() } else { format!("u{i}@example.com") }; // unread, non-nullable
        let value = if i == 999 {
            "1.2.3".to_owned()
        } else {
            format!("{}.{:02}", i % 977, i % 100)
        };
        text.push_str(&format!("{id},name{},{},{email},{value}\n", i % 37, 20 + i % 9));
    }
    s.write("in.csv", &text);
    let yaml = |extra: &str| {
        let mut y = pipeline("    Custom: {}", "out.csv")
            .replace(
                "        FilePath: in.csv\n",
                "        FilePath: in.csv\n        OnError: Skip\n        DeadLetterFilePath: bad.csv\n",
            )
            .replace("          - {{ Function: min, Column: age, As: youngest }}\n", "")
            .replace("          - { Function: avg, Column: account_value, As: mean }\n", "")
            .replace("          - { Function: count_distinct, Column: email, As: emails }\n", "")
            .replace("          - { Function: min, Column: age, As: youngest }\n", "");
        y.push_str(extra);
        y
    };
    let pruned = s.build(&yaml("")).unwrap();
    let described = pruned.describe();
    let src = described.lines().find(|l| l.starts_with("src ")).unwrap();
    assert!(src.contains("checked, not sent"), "{described}");
    assert!(
        !src.contains("customer_id") && !src.contains("email") && src.contains("account_value"),
        "{src}"
    );
    let summary = pruned.run().unwrap();
    let step = summary.step("src").unwrap();
    assert_eq!((step.rows_in, step.rows_out, step.rows_rejected), (5000, 4997, 3));
    let pruned_out = s.read("out.csv");
    let bad = s.read("bad.csv");
    assert!(
        bad.lines().next().unwrap().contains("customer_id") && bad.contains("x17") && bad.contains("1.2.3"),
        "{bad}"
    );
    assert_eq!(bad.lines().count(), 4, "{bad}");

    // A second consumer that needs every column: nothing is left out, same groups.
    let full = yaml("").replace(
        "    - Name: out\n",
        "    - { Name: all, Type: DelimitedSink, Config: { FilePath: all.csv, OverwriteExisting: true } }\n    - Name: out\n",
    ) + "  Connections:\n    - { From: src, To: totals }\n    - { From: src, To: all }\n    - { From: totals, To: out }\n";
    let both = s.build(&full).unwrap();
    assert!(!both.describe().contains("checked, not sent"), "{}", both.describe());
    both.run().unwrap();
    assert_eq!(sorted_lines(&s.read("out.csv")), sorted_lines(&pruned_out));
    assert!(s.read("all.csv").lines().next().unwrap().contains("email"));

    // A tap shows what the source sends; built for every column (`flowengine tap`), it
    // shows every declared column, with the same groups.
    for every in [false, true] {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let sink = std::sync::Arc::clone(&seen);
        let tap = flowengine::tap::Tap::new(flowengine::tap::TapConfig::default(), move |row| {
            sink.lock().unwrap().push(row.to_owned())
        });
        let config = flowengine::PipelineConfig::from_yaml_str(&yaml(""), "<t>", &s.path(""), &[]).unwrap();
        let built = if every {
            flowengine::Pipeline::build_every_column(config)
        } else {
            flowengine::Pipeline::build(config)
        };
        let tapped = built.unwrap().with_tap("src", "", std::sync::Arc::new(tap)).unwrap();
        assert_eq!(tapped.describe().contains("checked, not sent"), !every);
        tapped.run().unwrap();
        let first = seen.lock().unwrap()[0].clone();
        assert_eq!(first.contains("customer_id"), every, "{first}");
        assert!(first.contains("account_value"), "{first}");
        assert_eq!(sorted_lines(&s.read("out.csv")), sorted_lines(&pruned_out));
    }
}
