//! The untyped floor for a CSV pass-through: the `csv` crate reading and writing byte
//! records with one reused buffer, no types. `scripts/compare-peers.sh` runs it beside the
//! engine to show what typing and the DAG cost.
//!
//! Usage: `csv_floor IN OUT`; prints `{"elapsed": seconds, "peak_rss_bytes": VmHWM}` on
//! stdout, so its memory is measured in its own address space (a child's `ru_maxrss` also
//! counts the parent it was forked from).

use std::io::BufWriter;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(input), Some(output)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: csv_floor IN OUT");
    };
    let start = std::time::Instant::now();
    let mut rdr = csv::ReaderBuilder::new().has_headers(false).from_path(&input)?;
    let mut wtr = csv::WriterBuilder::new().from_writer(BufWriter::with_capacity(1 << 16, std::fs::File::create(&output)?));
    let mut rec = csv::ByteRecord::new();
    while rdr.read_byte_record(&mut rec)? {
        wtr.write_byte_record(&rec)?;
    }
    wtr.flush()?;
    drop(wtr);
    println!(
        "{{\"elapsed\": {}, \"peak_rss_bytes\": {}}}",
        start.elapsed().as_secs_f64(),
        flowengine::metrics::peak_rss_bytes().map_or("null".to_owned(), |b| b.to_string())
    );
    Ok(())
}
