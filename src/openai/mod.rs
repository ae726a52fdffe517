//! The OpenAI wire format: request validation, response and chunk encoding, and the error envelope.
//! It knows nothing of sockets; the server module feeds it bytes and writes what it returns.

pub mod chat;
mod chat_common;
pub mod completions;
mod cursor;
pub mod embeddings;
pub mod error;
pub mod json;
pub mod models;
pub mod response;
pub mod tools;

pub use error::ApiError;
