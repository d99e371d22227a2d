//! Helpers shared by the integration tests. Each test binary uses a different subset.
#![allow(dead_code)]

pub mod app;
pub mod browser;
pub mod fixtures;
pub mod mock_jetstream;
pub mod mock_mastodon;
pub mod mock_x;
pub mod pg;
pub mod process;
pub mod skip;
