//! `POST /v1/completions` (legacy text completions) on the wire: the request read into borrowed raw fields and
//! every field the spec's `CreateCompletionRequest` defines checked for type and range, with the field's name
//! in `param` when it is wrong; and the `text_completion` object that the JSON reply and every stream event
//! share (`CreateCompletionResponse`). Unknown fields are ignored, as OpenAI does. Generating the text is left
//! to the models, and sending it to `crate::legacy`.

use std::borrow::Cow;
use std::fmt;

use serde::ser::{Serialize, SerializeSeq, Serializer};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::chat::MAX_CHOICES;
use super::error::ApiError;
use super::json::{self, array, boolean, integer, number, object, string};
use super::response::{Meta, Usage, SYSTEM_FINGERPRINT};

/// The prompt when none is given: the document separator, so the model starts "a new document" (the spec's
/// default).
pub const DEFAULT_PROMPT: &str = "<|endoftext|>";
/// Token limit per choice when the request names none (OpenAI's default for this endpoint, unlike chat).
pub const DEFAULT_MAX_TOKENS: u32 = 16;
/// Most prompts in one request: the spec sets no bound, but every prompt is answered `n` times, so this
/// keeps one request's choices to 2048 × 128 (the embeddings endpoint's input limit).
pub const MAX_PROMPTS: usize = 2048;
/// Most `logprobs` the spec allows.
pub const MAX_LOGPROBS: i64 = 5;
/// Most `best_of` the spec allows.
pub const MAX_BEST_OF: i64 = 20;

/// One prompt to answer.
#[derive(Debug, PartialEq)]
pub struct PromptInput<'a> {
    /// Its text; a token array becomes its ids joined with spaces.
    pub text: Cow<'a, str>,
    /// For a token array, its length; for text, `None` (counted by the model's token rule).
    pub tokens: Option<usize>,
}

/// A validated legacy completion request.
#[derive(Debug)]
pub struct CompletionRequest<'a> {
    /// Model name as the client sent it.
    pub model: Cow<'a, str>,
    /// The prompts, at least one; each is answered `n` times.
    pub prompts: Vec<PromptInput<'a>>,
    /// Token limit per choice (0 is allowed: with `echo`, the reply is the prompt alone).
    pub max_tokens: u32,
    /// Choices per prompt.
    pub n: u32,
    /// Stop sequences (empty strings dropped).
    pub stop: Vec<Cow<'a, str>>,
    /// Put the prompt in front of each choice's text.
    pub echo: bool,
    /// Answer as server-sent events.
    pub stream: bool,
    /// Add a usage event at the end of the stream.
    pub include_usage: bool,
    /// Sampling seed, if any.
    pub seed: Option<i64>,
}

/// The fields the spec defines, each kept raw until checked, so a type error can name its field.
#[derive(Deserialize)]
struct RawRequest<'a> {
    #[serde(borrow)]
    model: Option<&'a RawValue>,
    #[serde(borrow)]
    prompt: Option<&'a RawValue>,
    #[serde(borrow)]
    suffix: Option<&'a RawValue>,
    #[serde(borrow)]
    max_tokens: Option<&'a RawValue>,
    #[serde(borrow)]
    n: Option<&'a RawValue>,
    #[serde(borrow)]
    stop: Option<&'a RawValue>,
    #[serde(borrow)]
    echo: Option<&'a RawValue>,
    #[serde(borrow)]
    stream: Option<&'a RawValue>,
    #[serde(borrow)]
    stream_options: Option<&'a RawValue>,
    #[serde(borrow)]
    temperature: Option<&'a RawValue>,
    #[serde(borrow)]
    top_p: Option<&'a RawValue>,
    #[serde(borrow)]
    frequency_penalty: Option<&'a RawValue>,
    #[serde(borrow)]
    presence_penalty: Option<&'a RawValue>,
    #[serde(borrow)]
    best_of: Option<&'a RawValue>,
    #[serde(borrow)]
    logprobs: Option<&'a RawValue>,
    #[serde(borrow)]
    seed: Option<&'a RawValue>,
    #[serde(borrow)]
    user: Option<&'a RawValue>,
    #[serde(borrow)]
    logit_bias: Option<&'a RawValue>,
}

/// A path such as `prompt[2][5]` or `stop[1]`, formatted only when an error needs it.
#[derive(Debug, Clone, Copy)]
struct At {
    list: &'static str,
    index: usize,
    inner: Option<usize>,
}

impl At {
    fn item(list: &'static str, index: usize) -> Self {
        At {
            list,
            index,
            inner: None,
        }
    }

    fn inner(self, index: usize) -> Self {
        At {
            inner: Some(index),
            ..self
        }
    }
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.list, self.index)?;
        if let Some(inner) = self.inner {
            write!(f, "[{inner}]")?;
        }
        Ok(())
    }
}

/// Parses and validates a request body (already checked to be within the size limit).
pub fn parse(body: &[u8], max_depth: usize) -> Result<CompletionRequest<'_>, ApiError> {
    let raw: RawRequest<'_> = json::parse_body(body, max_depth)?;
    let model = json::model(raw.model)?;
    let prompts = match raw.prompt {
        Some(p) => parse_prompt(p)?,
        None => vec![PromptInput {
            text: Cow::Borrowed(DEFAULT_PROMPT),
            tokens: None,
        }],
    };
    if let Some(suffix) = raw.suffix {
        string(suffix, "suffix")?;
    }
    let max_tokens = raw
        .max_tokens
        .map(|v| integer(v, "max_tokens", 0, u32::MAX as i64))
        .transpose()?
        .map_or(DEFAULT_MAX_TOKENS, |n| n as u32);
    let n = raw
        .n
        .map(|v| integer(v, "n", 1, MAX_CHOICES))
        .transpose()?
        .unwrap_or(1) as u32;
    let stop = raw.stop.map(json::stop).transpose()?.unwrap_or_default();
    let echo = flag(raw.echo, "echo")?;
    let stream = flag(raw.stream, "stream")?;
    let include_usage = json::stream_options(raw.stream_options, stream)?;
    let ranged = [
        (raw.temperature, "temperature", 0.0, 2.0),
        (raw.top_p, "top_p", 0.0, 1.0),
        (raw.frequency_penalty, "frequency_penalty", -2.0, 2.0),
        (raw.presence_penalty, "presence_penalty", -2.0, 2.0),
    ];
    for (value, param, min, max) in ranged {
        if let Some(v) = value {
            number(v, param, min, max)?;
        }
    }
    if let Some(best_of) = raw.best_of {
        let best_of = integer(best_of, "best_of", 0, MAX_BEST_OF)?;
        // OpenAI picks `n` of `best_of` candidates, and cannot stream a choice it has not picked yet.
        if best_of > 0 && best_of < i64::from(n) {
            return Err(json::out_of_range(
                "best_of",
                &format!(">= n ({n})"),
                best_of,
            ));
        }
        if stream && best_of > 1 {
            let message = "Cannot stream results with 'best_of' greater than 1.";
            return Err(ApiError::invalid(message, Some("best_of"), "invalid_value"));
        }
    }
    if let Some(logprobs) = raw.logprobs {
        integer(logprobs, "logprobs", 0, MAX_LOGPROBS)?;
    }
    let seed = raw
        .seed
        .map(|v| integer(v, "seed", i64::MIN, i64::MAX))
        .transpose()?;
    if let Some(user) = raw.user {
        string(user, "user")?;
    }
    if let Some(bias) = raw.logit_bias {
        // A BTreeMap, so that of several bad values the same one is reported every time.
        let bias: std::collections::BTreeMap<Cow<'_, str>, &RawValue> = object(bias, "logit_bias")?;
        for value in bias.values() {
            number(value, "logit_bias", -100.0, 100.0)?;
        }
    }
    Ok(CompletionRequest {
        model,
        prompts,
        max_tokens,
        n,
        stop,
        echo,
        stream,
        include_usage,
        seed,
    })
}

fn flag(raw: Option<&RawValue>, param: &str) -> Result<bool, ApiError> {
    Ok(raw.map(|v| boolean(v, param)).transpose()?.unwrap_or(false))
}

/// What `prompt` may be, for a wrong type at the top level.
const PROMPT_FORMS: &str =
    "a string, an array of strings, an array of tokens or an array of token arrays";

fn prompt_type(param: impl fmt::Display, raw: &RawValue) -> ApiError {
    let param = param.to_string();
    let message = format!(
        "Invalid type for '{param}': expected {PROMPT_FORMS}, but got {} instead.",
        json::kind(raw)
    );
    ApiError::invalid(message, Some(&param), "invalid_type")
}

/// The spec's four forms; the first item of an array decides which one it is, and every other item must
/// have the same form.
fn parse_prompt(raw: &RawValue) -> Result<Vec<PromptInput<'_>>, ApiError> {
    match json::kind(raw) {
        "a string" => {
            return Ok(vec![PromptInput {
                text: string(raw, "prompt")?,
                tokens: None,
            }])
        }
        "an array" => {}
        _ => return Err(prompt_type("prompt", raw)),
    }
    let items = array(raw, "prompt")?;
    let Some(first) = items.first() else {
        return Err(json::out_of_range(
            "prompt",
            "with at least 1 item",
            "an empty array",
        ));
    };
    match json::kind(first) {
        "a number" => return Ok(vec![token_prompt(&items, |i| At::item("prompt", i))?]),
        "a string" | "an array" => {}
        _ => return Err(prompt_type(At::item("prompt", 0), first)),
    }
    if items.len() > MAX_PROMPTS {
        return Err(json::out_of_range(
            "prompt",
            &format!("with at most {MAX_PROMPTS} items"),
            format!("{} items", items.len()),
        ));
    }
    let strings = json::kind(first) == "a string";
    let mut prompts = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let param = At::item("prompt", i);
        if strings {
            prompts.push(PromptInput {
                text: string(item, param)?,
                tokens: None,
            });
            continue;
        }
        let ids = array(item, param)?;
        if ids.is_empty() {
            return Err(json::out_of_range(
                param,
                "with at least 1 item",
                "an empty array",
            ));
        }
        prompts.push(token_prompt(&ids, |j| param.inner(j))?);
    }
    Ok(prompts)
}

/// A token array as a prompt: the ids joined with spaces, so the text has exactly one token per id.
fn token_prompt<'a>(
    ids: &[&RawValue],
    param: impl Fn(usize) -> At,
) -> Result<PromptInput<'a>, ApiError> {
    let mut text = String::with_capacity(ids.len() * 6);
    for (j, id) in ids.iter().enumerate() {
        let id = integer(id, param(j), 0, u32::MAX as i64)?;
        if j > 0 {
            text.push(' ');
        }
        text.push_str(itoa::Buffer::new().format(id));
    }
    Ok(PromptInput {
        text: Cow::Owned(text),
        tokens: Some(ids.len()),
    })
}

/// One prompt's answer, shared by its `n` choices.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    /// The echoed prompt (empty without `echo`), written in front of `text`.
    pub echo: &'a str,
    /// The generated text.
    pub text: &'a str,
    /// `stop` or `length`.
    pub finish_reason: &'a str,
}

/// Two strings serialized as one JSON string, so an echoed prompt needs no joined copy.
struct Joined<'a>(&'a str, &'a str);

impl fmt::Display for Joined<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)?;
        f.write_str(self.1)
    }
}

impl Serialize for Joined<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // serde_json escapes `collect_str` pieces straight into the output.
        s.collect_str(self)
    }
}

#[derive(serde::Serialize)]
struct TextCompletion<'a, C: Serialize> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    system_fingerprint: &'static str,
    choices: C,
    /// Absent on stream events, which carry no usage (the last event of an include_usage stream does).
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
}

impl<'a, C: Serialize> TextCompletion<'a, C> {
    fn new(meta: &Meta<'a>, choices: C, usage: Option<Usage>) -> Self {
        TextCompletion {
            id: meta.id,
            object: "text_completion",
            created: meta.created,
            model: meta.model,
            system_fingerprint: SYSTEM_FINGERPRINT,
            choices,
            usage,
        }
    }
}

#[derive(serde::Serialize)]
struct Choice<'a> {
    text: Joined<'a>,
    index: u32,
    logprobs: Option<()>,
    finish_reason: Option<&'a str>,
}

/// Every prompt's `n` choices, in OpenAI's order (index = prompt × n + choice), without building a Vec.
struct Choices<'a> {
    answers: &'a [Answer<'a>],
    n: u32,
}

impl Serialize for Choices<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.answers.len() * self.n as usize))?;
        let mut index = 0;
        for answer in self.answers {
            for _ in 0..self.n {
                seq.serialize_element(&Choice {
                    text: Joined(answer.echo, answer.text),
                    index,
                    logprobs: None,
                    finish_reason: Some(answer.finish_reason),
                })?;
                index += 1;
            }
        }
        seq.end()
    }
}

/// Appends the `text_completion` object answering every prompt `n` times.
pub fn write_completion(
    out: &mut Vec<u8>,
    meta: &Meta<'_>,
    answers: &[Answer<'_>],
    n: u32,
    usage: Usage,
) {
    let choices = Choices { answers, n };
    // Writing into a Vec cannot fail and every value here is serializable.
    let _ = serde_json::to_writer(out, &TextCompletion::new(meta, choices, Some(usage)));
}

/// Appends one stream event for choice `index`: a piece of text with `finish_reason: null`, or (with a
/// finish reason) the choice's last event, whose text is empty.
pub fn write_event(
    out: &mut Vec<u8>,
    meta: &Meta<'_>,
    index: u32,
    text: &str,
    finish_reason: Option<&str>,
) {
    let choice = Choice {
        text: Joined(text, ""),
        index,
        logprobs: None,
        finish_reason,
    };
    let _ = serde_json::to_writer(out, &TextCompletion::new(meta, [choice], None));
}

/// Appends the usage event that ends an include_usage stream (`"choices": []`).
pub fn write_usage_event(out: &mut Vec<u8>, meta: &Meta<'_>, usage: Usage) {
    let _ = serde_json::to_writer(out, &TextCompletion::new(meta, [(); 0], Some(usage)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn ok(body: &str) -> CompletionRequest<'_> {
        parse(body.as_bytes(), 64).unwrap_or_else(|e| panic!("{body}: {e:?}"))
    }

    fn err(body: &str) -> (Option<String>, &'static str) {
        let e = parse(body.as_bytes(), 64).expect_err(body);
        assert_eq!(e.status, 400);
        (e.param, e.code.unwrap())
    }

    fn texts<'a>(req: &'a CompletionRequest<'_>) -> Vec<(&'a str, Option<usize>)> {
        req.prompts
            .iter()
            .map(|p| (p.text.as_ref(), p.tokens))
            .collect()
    }

    #[test]
    fn defaults() {
        let req = ok(r#"{"model":"m"}"#);
        assert_eq!(texts(&req), vec![(DEFAULT_PROMPT, None)]);
        assert_eq!((req.max_tokens, req.n), (DEFAULT_MAX_TOKENS, 1));
        assert!(!req.echo && !req.stream && !req.include_usage && req.stop.is_empty());
        assert_eq!(texts(&ok(r#"{"model":"m","prompt":null}"#)).len(), 1);
    }

    #[test]
    fn prompt_forms() {
        let req = ok(r#"{"model":"m","prompt":"Say this"}"#);
        assert_eq!(texts(&req), vec![("Say this", None)]);
        let req = ok(r#"{"model":"m","prompt":["a","","b\nc"]}"#);
        assert_eq!(texts(&req), vec![("a", None), ("", None), ("b\nc", None)]);
        let req = ok(r#"{"model":"m","prompt":[1212, 318, 0]}"#);
        assert_eq!(texts(&req), vec![("1212 318 0", Some(3))]);
        let req = ok(r#"{"model":"m","prompt":[[7],[1,2]]}"#);
        assert_eq!(texts(&req), vec![("7", Some(1)), ("1 2", Some(2))]);
    }

    #[test]
    fn all_known_fields_accepted() {
        let req = ok(
            r#"{"model":"m","prompt":"p","suffix":"s","max_tokens":0,"n":3,"stop":["a","","b"],
            "echo":true,"stream":true,"stream_options":{"include_usage":true},"temperature":0.5,"top_p":1,
            "frequency_penalty":-2,"presence_penalty":2,"best_of":null,"logprobs":5,"seed":-7,"user":"u",
            "logit_bias":{"50256":-100},"unknown_field":{"deep":[1,2,3]}}"#,
        );
        assert_eq!((req.max_tokens, req.n, req.seed), (0, 3, Some(-7)));
        assert!(req.echo && req.stream && req.include_usage);
        assert_eq!(req.stop, vec!["a", "b"]);
        let req = ok(r#"{"model":"m","n":2,"best_of":5,"stop":"x","echo":null,"suffix":null}"#);
        assert_eq!((req.n, req.stop.len(), req.echo), (2, 1, false));
    }

    macro_rules! rejects {
        ($($name:ident: $body:expr => ($param:expr, $code:expr),)*) => {$(
            #[test]
            fn $name() {
                assert_eq!(err($body), ($param.map(str::to_string), $code));
            }
        )*};
    }

    rejects! {
        rejects_invalid_json: "{" => (None::<&str>, "invalid_json"),
        rejects_non_object: "[1]" => (None::<&str>, "invalid_json"),
        rejects_missing_model: r#"{"prompt":"x"}"# => (Some("model"), "missing_required_parameter"),
        rejects_empty_model: r#"{"model":""}"# => (Some("model"), "invalid_value"),
        rejects_model_number: r#"{"model":5}"# => (Some("model"), "invalid_type"),
        rejects_prompt_number: r#"{"model":"m","prompt":5}"# => (Some("prompt"), "invalid_type"),
        rejects_prompt_object: r#"{"model":"m","prompt":{}}"# => (Some("prompt"), "invalid_type"),
        rejects_empty_prompt_list: r#"{"model":"m","prompt":[]}"# => (Some("prompt"), "invalid_value"),
        rejects_prompt_list_of_objects: r#"{"model":"m","prompt":[{}]}"# => (Some("prompt[0]"), "invalid_type"),
        rejects_mixed_strings: r#"{"model":"m","prompt":["a",1]}"# => (Some("prompt[1]"), "invalid_type"),
        rejects_mixed_tokens: r#"{"model":"m","prompt":[1,"a"]}"# => (Some("prompt[1]"), "invalid_type"),
        rejects_negative_token: r#"{"model":"m","prompt":[1,-2]}"# => (Some("prompt[1]"), "invalid_value"),
        rejects_float_token: r#"{"model":"m","prompt":[1.5]}"# => (Some("prompt[0]"), "invalid_type"),
        rejects_empty_token_array: r#"{"model":"m","prompt":[[1],[]]}"# => (Some("prompt[1]"), "invalid_value"),
        rejects_string_in_token_arrays: r#"{"model":"m","prompt":[[1],[2,"x"]]}"# => (Some("prompt[1][1]"), "invalid_type"),
        rejects_string_after_token_array: r#"{"model":"m","prompt":[[1],"x"]}"# => (Some("prompt[1]"), "invalid_type"),
        rejects_suffix_number: r#"{"model":"m","suffix":1}"# => (Some("suffix"), "invalid_type"),
        rejects_max_tokens_negative: r#"{"model":"m","max_tokens":-1}"# => (Some("max_tokens"), "invalid_value"),
        rejects_max_tokens_string: r#"{"model":"m","max_tokens":"16"}"# => (Some("max_tokens"), "invalid_type"),
        rejects_n_zero: r#"{"model":"m","n":0}"# => (Some("n"), "invalid_value"),
        rejects_n_too_many: r#"{"model":"m","n":129}"# => (Some("n"), "invalid_value"),
        rejects_stop_five: r#"{"model":"m","stop":["a","b","c","d","e"]}"# => (Some("stop"), "invalid_value"),
        rejects_stop_number: r#"{"model":"m","stop":["a",1]}"# => (Some("stop[1]"), "invalid_type"),
        rejects_echo_string: r#"{"model":"m","echo":"yes"}"# => (Some("echo"), "invalid_type"),
        rejects_stream_number: r#"{"model":"m","stream":1}"# => (Some("stream"), "invalid_type"),
        rejects_options_without_stream: r#"{"model":"m","stream_options":{"include_usage":true}}"# => (Some("stream_options"), "invalid_value"),
        rejects_options_not_object: r#"{"model":"m","stream":true,"stream_options":true}"# => (Some("stream_options"), "invalid_type"),
        rejects_include_usage_string: r#"{"model":"m","stream":true,"stream_options":{"include_usage":"y"}}"# => (Some("stream_options.include_usage"), "invalid_type"),
        rejects_temperature_high: r#"{"model":"m","temperature":2.5}"# => (Some("temperature"), "invalid_value"),
        rejects_top_p_string: r#"{"model":"m","top_p":"1"}"# => (Some("top_p"), "invalid_type"),
        rejects_presence_penalty_low: r#"{"model":"m","presence_penalty":-3}"# => (Some("presence_penalty"), "invalid_value"),
        rejects_frequency_penalty_high: r#"{"model":"m","frequency_penalty":3}"# => (Some("frequency_penalty"), "invalid_value"),
        rejects_best_of_high: r#"{"model":"m","best_of":21}"# => (Some("best_of"), "invalid_value"),
        rejects_best_of_below_n: r#"{"model":"m","n":3,"best_of":2}"# => (Some("best_of"), "invalid_value"),
        rejects_best_of_streamed: r#"{"model":"m","stream":true,"best_of":2}"# => (Some("best_of"), "invalid_value"),
        rejects_logprobs_high: r#"{"model":"m","logprobs":6}"# => (Some("logprobs"), "invalid_value"),
        rejects_logprobs_bool: r#"{"model":"m","logprobs":true}"# => (Some("logprobs"), "invalid_type"),
        rejects_seed_float: r#"{"model":"m","seed":1.5}"# => (Some("seed"), "invalid_type"),
        rejects_user_number: r#"{"model":"m","user":1}"# => (Some("user"), "invalid_type"),
        rejects_logit_bias_range: r#"{"model":"m","logit_bias":{"1":101}}"# => (Some("logit_bias"), "invalid_value"),
        rejects_logit_bias_array: r#"{"model":"m","logit_bias":[1]}"# => (Some("logit_bias"), "invalid_type"),
        rejects_too_deep: &format!(r#"{{"model":"m","x":{}1{}}}"#, "[".repeat(70), "]".repeat(70)) => (None::<&str>, "json_too_deep"),
    }

    #[test]
    fn rejects_too_many_prompts() {
        let body = format!(
            r#"{{"model":"m","prompt":[{}"x"]}}"#,
            r#""x","#.repeat(MAX_PROMPTS)
        );
        assert_eq!(err(&body), (Some("prompt".into()), "invalid_value"));
    }

    #[test]
    fn rejects_invalid_utf8() {
        let e = parse(b"{\"model\":\"\xff\"}", 64).unwrap_err();
        assert_eq!(e.code, Some("invalid_json"));
    }

    const META: Meta<'static> = Meta {
        id: "cmpl-1",
        created: 7,
        model: "m",
    };

    fn written(write: impl FnOnce(&mut Vec<u8>)) -> Value {
        let mut out = Vec::new();
        write(&mut out);
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn completion_shape() {
        let answers = [
            Answer {
                echo: "",
                text: "one",
                finish_reason: "stop",
            },
            Answer {
                echo: "say \"q\"\n",
                text: " two",
                finish_reason: "length",
            },
        ];
        let v = written(|out| write_completion(out, &META, &answers, 2, Usage::new(3, 8)));
        assert_eq!(
            v,
            json!({"id":"cmpl-1","object":"text_completion","created":7,"model":"m",
                "system_fingerprint":SYSTEM_FINGERPRINT,"choices":[
                {"text":"one","index":0,"logprobs":null,"finish_reason":"stop"},
                {"text":"one","index":1,"logprobs":null,"finish_reason":"stop"},
                {"text":"say \"q\"\n two","index":2,"logprobs":null,"finish_reason":"length"},
                {"text":"say \"q\"\n two","index":3,"logprobs":null,"finish_reason":"length"}],
                "usage":{"prompt_tokens":3,"completion_tokens":8,"total_tokens":11}})
        );
    }

    #[test]
    fn event_shapes() {
        let v = written(|out| write_event(out, &META, 5, " w\u{e9}\t", None));
        assert_eq!(
            v,
            json!({"id":"cmpl-1","object":"text_completion","created":7,"model":"m",
                "system_fingerprint":SYSTEM_FINGERPRINT,
                "choices":[{"text":" w\u{e9}\t","index":5,"logprobs":null,"finish_reason":null}]})
        );
        let v = written(|out| write_event(out, &META, 0, "", Some("length")));
        assert_eq!(
            v["choices"],
            json!([{"text":"","index":0,"logprobs":null,"finish_reason":"length"}])
        );
        assert!(!v.as_object().unwrap().contains_key("usage"));
        let v = written(|out| write_usage_event(out, &META, Usage::new(1, 2)));
        assert_eq!(v["choices"], json!([]));
        assert_eq!(v["object"], "text_completion");
        assert_eq!(
            v["usage"],
            json!({"prompt_tokens":1,"completion_tokens":2,"total_tokens":3})
        );
    }
}
