//! The `upstream` model kind: requests relayed to another OpenAI-compatible server.

pub mod spec;
