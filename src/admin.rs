//! The commands that look after a data directory no service holds: `tagflow verify` checks it.

use crate::config::VerifyArgs;
use crate::store;

/// `tagflow verify`: everything opening checks, without serving or changing the directory.
///
/// # Errors
/// The directory is damaged (the error names the file, the record and what is lost), held by a
/// running service, or not a data directory.
pub fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let report = store::verify(&args.data_dir)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!("{}: OK", args.data_dir.display());
    println!(
        "  {} users, {} edges, {} interactions, {} posts seen",
        report.users, report.edges, report.interactions, report.seen_posts
    );
    match &report.snapshot {
        Some(file) => println!("  snapshot {file} covers the log up to record {}", report.covered_seq),
        None => println!("  no snapshot yet"),
    }
    println!("  {} log records after it, the last {}", report.log_records, report.last_seq);
    for note in &report.notes {
        println!("  note: {note}");
    }
    Ok(())
}
