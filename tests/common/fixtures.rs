//! Locating the shared recorded payloads (`../shared/fixtures` beside the clone, or `TAGFLOW_FIXTURES`).

use std::path::PathBuf;

/// The fixtures folder, or `None` (after saying so on stderr) when it is absent, so that tests built on
/// real recorded payloads report themselves as skipped instead of failing on a clone without `../shared`.
pub fn fixtures(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("TAGFLOW_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"));
    if dir.join("SOURCES.md").is_file() {
        Some(dir)
    } else {
        eprintln!("SKIPPED {test}: recorded fixtures not found at {} (set TAGFLOW_FIXTURES)", dir.display());
        None
    }
}
