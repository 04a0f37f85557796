//! The end-to-end prototype on small inputs: every row comes out with
//! `processed = true` appended and nothing else changed.

use flowengine_prototypes::e2e;

fn check(input: &std::path::Path, rows: usize, columns: usize) {
    let output = input.with_extension("out.csv");
    let stats = e2e::run(input, &output).unwrap();
    assert_eq!(stats.rows, rows as u64);
    assert_eq!(stats.columns, columns);
    let mut a = csv::Reader::from_path(input).unwrap();
    let mut b = csv::Reader::from_path(&output).unwrap();
    let mut ha: Vec<String> = a.headers().unwrap().iter().map(String::from).collect();
    ha.push("processed".into());
    assert_eq!(b.headers().unwrap().iter().collect::<Vec<_>>(), ha);
    let mut n = 0;
    for (ra, rb) in a.records().zip(b.records()) {
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        let mut expected: Vec<&str> = ra.iter().collect();
        expected.push("true");
        assert_eq!(rb.iter().collect::<Vec<_>>(), expected);
        n += 1;
    }
    assert_eq!(n, rows);
}

#[test]
fn wide_and_customer_files_pass_through_with_processed_column() {
    let dir = tempfile::tempdir().unwrap();
    let wide = dir.path().join("wide.csv");
    let bytes = e2e::generate_wide(&wide, 2_500, 20, 50).unwrap();
    // ~50 bytes per cell plus separators.
    assert!(bytes > 2_500 * 20 * 50 && bytes < 2_500 * 20 * 56, "{bytes}");
    check(&wide, 2_500, 20);
    let customers = dir.path().join("customers.csv");
    e2e::generate_customers(&customers, 3_000).unwrap();
    check(&customers, 3_000, 5);
}
