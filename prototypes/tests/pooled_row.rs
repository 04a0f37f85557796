//! `PooledRow` returns its vector to the pool on drop and reuses it reset.
//! (Its own test binary: the pool is process-wide, so counts are only exact
//! when no other test shares the process.)

use flowengine_prototypes::data::Width;
use flowengine_prototypes::rows::{row_pool_idle, IndexedRow, PooledRow, Row};

#[test]
fn pooled_rows_go_back_on_drop_and_come_back_reset() {
    let wide = Width::Wide20.schema();
    assert_eq!(row_pool_idle(), 0);
    let a = PooledRow::build(&wide, &Width::Wide20.row(1));
    let b = a.with("c17", Width::Wide20.new_value());
    assert_eq!(row_pool_idle(), 0);
    drop(a);
    drop(b);
    assert_eq!(row_pool_idle(), 2);
    // A reused 20-value vector now holds 5 values: reset, nothing stale.
    let narrow = Width::Customer5.schema();
    let c = PooledRow::build(&narrow, &Width::Customer5.row(2));
    assert_eq!(row_pool_idle(), 1);
    assert_eq!(c.to_values(&narrow), Width::Customer5.row(2));
    assert_eq!(c.get_index(5), None);
    drop(c);
    assert_eq!(row_pool_idle(), 2);
}
