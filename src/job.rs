//! One generation request as the app settled it before an endpoint takes over: which model answers, under
//! which id, with what timing, length override and stream failure.

use crate::faults::StreamFault;
use crate::metrics::{ModelMetrics, UNLISTED};
use crate::models::Model;
use crate::pacing::Plan;

/// What an endpoint needs besides the request body.
#[derive(Clone, Copy)]
pub struct Job<'a> {
    /// Writes the text.
    pub model: &'a dyn Model,
    /// The id the response reports as `model`.
    pub name: &'a str,
    /// Timing, before the prompt is counted.
    pub plan: Plan,
    /// `x-standin-output-tokens`: the exact output length, before `stop` and `max_tokens`.
    pub output_tokens: Option<u32>,
    /// A failure to apply once the stream started (ignored by JSON answers).
    pub fault: Option<StreamFault>,
    /// The model's series at `/metrics`.
    pub metrics: &'a ModelMetrics,
}

impl<'a> Job<'a> {
    /// `model` answering instantly under `name`, without overrides or failures (tests, benches).
    pub fn instant(model: &'a dyn Model, name: &'a str) -> Self {
        Job {
            model,
            name,
            plan: Plan::instant(),
            output_tokens: None,
            fault: None,
            metrics: &UNLISTED,
        }
    }
}
