//! A fresh PostgreSQL database per test, on the server `.ci/run` starts (or `TAGFLOW_TEST_PG`).

/// The URL of a new, empty database named after `test`; `None` (a skip, a failure with `CI=true`)
/// when no server answers.
pub fn database(test: &str) -> Option<String> {
    let name: String = format!("tf_{test}").chars().take(60).collect();
    match tagflow::store::scratch_database(&name) {
        Ok(url) => Some(url),
        Err(e) => {
            super::skip::skip(
                test,
                &format!("PostgreSQL at {} ({e})", tagflow::store::test_server()),
                "apt-get install postgresql, or set TAGFLOW_TEST_PG; .ci/run starts one",
            );
            None
        }
    }
}
