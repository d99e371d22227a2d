//! Locating the shared recorded payloads (`../shared/fixtures` beside the clone, or `TAGFLOW_FIXTURES`).

use std::path::PathBuf;

/// The fixtures folder, or `None` when it is absent (see [`super::skip::skip`]: a visible skip, a
/// failure with `CI=true`).
pub fn fixtures(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("TAGFLOW_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"));
    if dir.join("SOURCES.md").is_file() {
        Some(dir)
    } else {
        super::skip::skip(
            test,
            &format!("the recorded fixtures at {}", dir.display()),
            "clone with ../shared beside it, or set TAGFLOW_FIXTURES to its fixtures folder",
        );
        None
    }
}
