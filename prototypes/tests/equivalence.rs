//! Equivalence tests: every row variant answers the same, every port delivers
//! every message exactly once and in order to every subscriber, every pool
//! hands back reset objects.

use flowengine_prototypes::data::Width;
use flowengine_prototypes::pooling::{
    run_producer_consumer, run_single, LockFreePool, NoPool, ObjectPool, Pool, RowBuffer, ThreadLocalPool, ValueBuffer, Workload,
};
use flowengine_prototypes::ports::{sequence, Delivery, PortBench, PortKind, ROWS_PER_CHUNK};
use flowengine_prototypes::rows::{ArrayRow, Chunk, ColumnarChunk, DictionaryRow, IndexedRow, PersistentRow, PooledRow, Row, RowChunk};
use flowengine_prototypes::value::{Value, ValueRef};

fn check_row<R: Row>(width: Width) {
    let schema = width.schema();
    for i in [0, 1, 17, 4_999] {
        let values = width.row(i);
        let row = R::build(&schema, &values);
        assert_eq!(row.to_values(&schema), values, "{} build, row {i}", R::NAME);
        for (name, v) in schema.names().iter().zip(&values) {
            assert_eq!(row.get(name), Some(v.as_value_ref()), "{} get {name}", R::NAME);
        }
        assert_eq!(row.get("no-such-column"), None, "{}", R::NAME);

        let col = width.write_column();
        let changed = row.with(col, width.new_value());
        let mut expected = values.clone();
        expected[schema.index_of(col).unwrap()] = width.new_value();
        assert_eq!(changed.to_values(&schema), expected, "{} with", R::NAME);
        // `with` leaves the original untouched.
        assert_eq!(row.to_values(&schema), values, "{} with mutated", R::NAME);
    }
}

fn check_indexed<R: IndexedRow>(width: Width) {
    let schema = width.schema();
    let values = width.row(3);
    let row = R::build(&schema, &values);
    for (i, v) in values.iter().enumerate() {
        assert_eq!(row.get_index(i), Some(v.as_value_ref()), "{} index {i}", R::NAME);
    }
    assert_eq!(row.get_index(values.len()), None);
}

fn chunk_snapshot<C: Chunk>(chunk: &C, width: Width) -> Vec<Vec<Option<Value>>> {
    let schema = width.schema();
    (0..chunk.len())
        .map(|r| schema.names().iter().map(|n| chunk.get(r, n).map(|v| v.to_value())).collect())
        .collect()
}

fn check_chunk<C: Chunk>(width: Width, rows: &[Vec<Value>]) -> Vec<Vec<Option<Value>>> {
    let schema = width.schema();
    let chunk = C::from_rows(&schema, rows);
    assert_eq!(chunk.len(), rows.len());
    let before = chunk_snapshot(&chunk, width);
    let expected: Vec<Vec<Option<Value>>> = rows.iter().map(|r| r.iter().cloned().map(Some).collect()).collect();
    assert_eq!(before, expected, "{} from_rows", C::NAME);
    let after = chunk.set_all(width.write_column(), &width.new_value());
    assert_eq!(chunk_snapshot(&chunk, width), before, "{} set_all mutated", C::NAME);
    chunk_snapshot(&after, width)
}

#[test]
fn row_variants_agree() {
    for width in Width::ALL {
        check_row::<DictionaryRow>(width);
        check_row::<PersistentRow>(width);
        check_row::<ArrayRow>(width);
        check_row::<PooledRow>(width);
        check_indexed::<ArrayRow>(width);
        check_indexed::<PooledRow>(width);
        check_indexed::<DictionaryRow>(width);
        check_indexed::<PersistentRow>(width);
    }
}

fn computed<C: Chunk>(width: Width, rows: &[Vec<Value>]) -> Vec<Vec<Option<Value>>> {
    let chunk = C::from_rows(&width.schema(), rows);
    let before = chunk_snapshot(&chunk, width);
    let (a, b) = width.compute_sources();
    let after = chunk.compute(width.write_column(), a, b);
    assert_eq!(chunk_snapshot(&chunk, width), before, "{} compute mutated", C::NAME);
    chunk_snapshot(&after, width)
}

#[test]
fn computed_field_agrees_across_chunk_variants_and_reads_its_sources() {
    for width in Width::ALL {
        let rows = width.rows(50);
        let want = computed::<RowChunk<DictionaryRow>>(width, &rows);
        let schema = width.schema();
        let (a, b) = width.compute_sources();
        let (t, ia, ib) = (
            schema.index_of(width.write_column()).unwrap(),
            schema.index_of(a).unwrap(),
            schema.index_of(b).unwrap(),
        );
        for (r, row) in rows.iter().enumerate() {
            let text = |v: &Value| match v {
                Value::Str(s) => s.to_string(),
                other => panic!("{other:?}"),
            };
            let expect = Value::str(&format!("{} {}", text(&row[ia]), text(&row[ib])));
            assert_eq!(want[r][t], Some(expect), "row {r}");
        }
        assert_eq!(computed::<RowChunk<PersistentRow>>(width, &rows), want);
        assert_eq!(computed::<RowChunk<ArrayRow>>(width, &rows), want);
        assert_eq!(computed::<RowChunk<PooledRow>>(width, &rows), want);
        assert_eq!(computed::<ColumnarChunk>(width, &rows), want);
    }
}

#[test]
fn columnar_row_view_agrees_with_array_row() {
    for width in Width::ALL {
        let schema = width.schema();
        let rows = width.rows(50);
        let chunk = ColumnarChunk::from_rows(&schema, &rows);
        for (i, values) in rows.iter().enumerate() {
            let array = ArrayRow::build(&schema, values);
            let view = chunk.row(i);
            assert_eq!(view.to_values(), *values);
            for (c, name) in schema.names().iter().enumerate() {
                assert_eq!(view.get(name), array.get(name));
                assert_eq!(view.get_index(c), array.get_index(c));
            }
        }
    }
}

#[test]
fn chunk_transform_agrees_across_variants() {
    for width in Width::ALL {
        let rows = width.rows(300);
        let reference = check_chunk::<RowChunk<ArrayRow>>(width, &rows);
        let col = width.schema().index_of(width.write_column()).unwrap();
        for (r, row) in reference.iter().enumerate() {
            assert_eq!(row[col], Some(width.new_value()));
            for (c, v) in row.iter().enumerate() {
                if c != col {
                    assert_eq!(v.as_ref(), Some(&rows[r][c]));
                }
            }
        }
        assert_eq!(check_chunk::<RowChunk<DictionaryRow>>(width, &rows), reference);
        assert_eq!(check_chunk::<RowChunk<PersistentRow>>(width, &rows), reference);
        assert_eq!(check_chunk::<RowChunk<PooledRow>>(width, &rows), reference);
        assert_eq!(check_chunk::<ColumnarChunk>(width, &rows), reference);
    }
}

#[test]
fn columnar_falls_back_to_untyped_columns() {
    let schema = flowengine_prototypes::schema::Schema::new(&["a"]);
    let rows = vec![vec![Value::Int(1)], vec![Value::Null], vec![Value::str("x")]];
    let chunk = ColumnarChunk::from_rows(&schema, &rows);
    assert_eq!(chunk.get(0, "a"), Some(ValueRef::Int(1)));
    assert_eq!(chunk.get(1, "a"), Some(ValueRef::Null));
    assert_eq!(chunk.get(2, "a"), Some(ValueRef::Str("x")));
}

#[test]
#[should_panic(expected = "no column")]
fn with_unknown_column_panics() {
    let schema = Width::Customer5.schema();
    let _ = DictionaryRow::build(&schema, &Width::Customer5.row(0)).with("nope", Value::Null);
}

fn check_fan_out<P: Send + Sync + 'static>(bench: &PortBench, messages: &[flowengine_prototypes::ports::Message<P>]) {
    let expected = Delivery::expected(messages.len() as u64);
    for kind in PortKind::ALL {
        for subscribers in [1, 10, 100] {
            let got = bench.fan_out(kind, subscribers, messages);
            assert_eq!(got.len(), subscribers, "{} fan-out-{subscribers}", kind.name());
            for (s, d) in got.iter().enumerate() {
                assert_eq!(*d, expected, "{} fan-out-{subscribers} subscriber {s}", kind.name());
            }
        }
    }
}

#[test]
fn every_port_delivers_every_row_message_once_in_order() {
    // A small capacity forces back-pressure and many wake-ups.
    let bench = PortBench::new(16);
    let schema = Width::Customer5.schema();
    let rows = sequence((0..1_000).map(|i| ArrayRow::build(&schema, &Width::Customer5.row(i))));
    check_fan_out(&bench, &rows);
}

#[test]
fn every_port_delivers_every_chunk_message_once_in_order() {
    let bench = PortBench::new(4);
    let schema = Width::Wide20.schema();
    let all = Width::Wide20.rows(1_000);
    let chunks = sequence(all.chunks(ROWS_PER_CHUNK).map(|c| ColumnarChunk::from_rows(&schema, c)));
    assert_eq!(chunks.len(), 10);
    check_fan_out(&bench, &chunks);
    // An odd message count exercises the batched port's final partial flush.
    check_fan_out(&bench, &chunks[..7]);
}

#[test]
fn every_port_pipeline_delivers_transformed_rows_in_order() {
    let bench = PortBench::new(8);
    let schema = Width::Customer5.schema();
    let rows = sequence((0..2_000).map(|i| ArrayRow::build(&schema, &Width::Customer5.row(i))));
    for kind in PortKind::ALL {
        let d = bench.pipeline(kind, &rows, |r: &ArrayRow| r.with("email", Value::str("x@y.z")));
        assert_eq!(d, Delivery::expected(2_000), "{} pipeline", kind.name());
    }
}

fn check_pool<T: Workload + std::fmt::Debug, P: Pool<T>>(pool: &P) {
    let template = Width::Wide20.row(0);
    let mut a = pool.take();
    assert!(a.is_reset());
    a.fill(1, &template);
    assert!(!a.is_reset());
    pool.give(a);
    for _ in 0..3 {
        let b = pool.take();
        assert!(b.is_reset(), "{} handed out {b:?}", P::NAME);
        pool.give(b);
    }
    let single = run_single(pool, 1_000, &template);
    let threaded = run_producer_consumer(pool, 1_000, &template);
    let reference = run_single(&NoPool::new(T::make), 1_000, &template);
    assert_eq!(single, reference, "{} single", P::NAME);
    assert_eq!(threaded, reference, "{} producer-consumer", P::NAME);
    let c = pool.take();
    assert!(c.is_reset(), "{} after workloads", P::NAME);
}

#[test]
fn pools_hand_back_reset_objects() {
    check_pool::<RowBuffer, _>(&NoPool::new(RowBuffer::make));
    check_pool::<RowBuffer, _>(&ObjectPool::new(RowBuffer::make));
    check_pool::<RowBuffer, _>(&LockFreePool::new(RowBuffer::make, 256));
    check_pool::<RowBuffer, _>(&ThreadLocalPool::new(RowBuffer::make));
    check_pool::<ValueBuffer, _>(&NoPool::new(ValueBuffer::make));
    check_pool::<ValueBuffer, _>(&ObjectPool::new(ValueBuffer::make));
    check_pool::<ValueBuffer, _>(&LockFreePool::new(ValueBuffer::make, 256));
    check_pool::<ValueBuffer, _>(&ThreadLocalPool::new(ValueBuffer::make));
}

#[test]
fn pools_reuse_objects() {
    let template = Width::Wide20.row(0);
    let object_pool = ObjectPool::new(RowBuffer::make);
    run_single(&object_pool, 1_000, &template);
    assert_eq!(object_pool.idle(), flowengine_prototypes::pooling::WINDOW);
    let lock_free = LockFreePool::new(RowBuffer::make, 256);
    run_single(&lock_free, 1_000, &template);
    assert_eq!(lock_free.idle(), flowengine_prototypes::pooling::WINDOW);
    // A pooled object keeps its allocation.
    let buf = object_pool.take();
    assert!(buf.capacity() >= 20);
}
