//! Unit tests of the pieces that integration tests cannot reach (script scanning, logs).

use super::runtime::scan_queues;

#[test]
fn queues_are_found_in_string_literals() {
    let s = r#"
        if (a) context.route.send('errors');
        context.route.sendCopy( "audit" );
        route.send(`vip`);
        route.send(name);
        route.send(`q${x}`);
        route.sendCopy('audit');
    "#;
    assert_eq!(scan_queues(s), vec!["errors", "vip", "audit"]);
}
