//! Tests that need a tool or data this machine may lack (the recorded fixtures, NetworkX, Chromium,
//! honcho, the Prometheus parser) call [`skip`] when it is missing.

use std::io::Write;

/// Says that `test` did not run and why, where `cargo test` shows it: straight to the process's
/// stderr, which libtest does not capture (an `eprintln!` of a passing test would be swallowed, and
/// the skip would look like a pass). With `CI=true` a missing tool is a failure instead: CI installs
/// everything (`.ci/run`), so a skip there would hide a broken setup.
pub fn skip(test: &str, missing: &str, how_to_get_it: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true: {test} needs {missing}, which is missing ({how_to_get_it})"
    );
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {missing} not found ({how_to_get_it})");
}
