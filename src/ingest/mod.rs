//! Ingest: pure decoders from platform payloads to posts, and the sources that feed the write path.

pub mod decode;
