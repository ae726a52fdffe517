//! `POST /v1/chat/completions` requests: the body read into borrowed raw fields, then every field the spec
//! defines checked for type and range, with the field's name in `param` when it is wrong. Unknown fields are
//! ignored, as OpenAI does.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::error::ApiError;
use super::json::missing;
use super::json::{self, array, boolean, integer, number, object, string};
use super::tools::{parse_response_format, parse_tools};
pub use super::tools::{ResponseFormat, Tool, ToolChoice};

/// Most choices one request may ask for (the spec's maximum for `n`).
pub const MAX_CHOICES: i64 = 128;
/// Most stop sequences (the spec's `maxItems`).
pub const MAX_STOP: usize = 4;
/// Most tools one request may offer (OpenAI's limit).
pub const MAX_TOOLS: usize = 128;
/// Most alternatives per token (`top_logprobs`, the spec's maximum).
pub const MAX_TOP_LOGPROBS: i64 = 20;

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// system
    System,
    /// developer
    Developer,
    /// user
    User,
    /// assistant
    Assistant,
    /// tool
    Tool,
    /// function (deprecated, still accepted)
    Function,
}

/// One message of the conversation, reduced to what the models need.
#[derive(Debug)]
pub struct Message<'a> {
    /// Author.
    pub role: Role,
    /// Its text: a string as is, or text parts joined with `\n`; `None` when it has no text.
    pub text: Option<Cow<'a, str>>,
}

/// A validated chat completion request.
#[derive(Debug)]
pub struct ChatRequest<'a> {
    /// Model name as the client sent it.
    pub model: Cow<'a, str>,
    /// The conversation, at least one message.
    pub messages: Vec<Message<'a>>,
    /// Token limit per choice (`max_completion_tokens` wins over `max_tokens`).
    pub max_tokens: Option<u32>,
    /// Number of choices.
    pub n: u32,
    /// Stop sequences (empty strings dropped).
    pub stop: Vec<Cow<'a, str>>,
    /// Answer as server-sent events.
    pub stream: bool,
    /// Add a usage chunk at the end of the stream.
    pub include_usage: bool,
    /// Sampling seed, if any.
    pub seed: Option<i64>,
    /// The function tools offered, in order (custom tools are checked, then left out: nothing calls them).
    pub tools: Vec<Tool<'a>>,
    /// `tool_choice`; absent: `auto` with tools, `none` without.
    pub tool_choice: ToolChoice,
    /// `parallel_tool_calls` (default true): more than one call per reply allowed.
    pub parallel_tool_calls: bool,
    /// `response_format`.
    pub response_format: ResponseFormat<'a>,
    /// With `logprobs: true`, how many alternatives per token (`top_logprobs`, default 0); else `None`.
    pub logprobs: Option<u8>,
}

/// The fields the spec defines, each kept raw until checked, so a type error can name its field.
#[derive(Deserialize)]
struct RawRequest<'a> {
    #[serde(borrow)]
    model: Option<&'a RawValue>,
    #[serde(borrow)]
    messages: Option<&'a RawValue>,
    #[serde(borrow)]
    max_tokens: Option<&'a RawValue>,
    #[serde(borrow)]
    max_completion_tokens: Option<&'a RawValue>,
    #[serde(borrow)]
    n: Option<&'a RawValue>,
    #[serde(borrow)]
    stop: Option<&'a RawValue>,
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
    seed: Option<&'a RawValue>,
    #[serde(borrow)]
    user: Option<&'a RawValue>,
    #[serde(borrow)]
    logprobs: Option<&'a RawValue>,
    #[serde(borrow)]
    top_logprobs: Option<&'a RawValue>,
    #[serde(borrow)]
    logit_bias: Option<&'a RawValue>,
    #[serde(borrow)]
    tools: Option<&'a RawValue>,
    #[serde(borrow)]
    tool_choice: Option<&'a RawValue>,
    #[serde(borrow)]
    parallel_tool_calls: Option<&'a RawValue>,
    #[serde(borrow)]
    response_format: Option<&'a RawValue>,
    #[serde(borrow)]
    metadata: Option<&'a RawValue>,
    #[serde(borrow)]
    store: Option<&'a RawValue>,
    #[serde(borrow)]
    service_tier: Option<&'a RawValue>,
    #[serde(borrow)]
    safety_identifier: Option<&'a RawValue>,
    #[serde(borrow)]
    prompt_cache_key: Option<&'a RawValue>,
    #[serde(borrow)]
    reasoning_effort: Option<&'a RawValue>,
    #[serde(borrow)]
    modalities: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RawMessage<'a> {
    #[serde(borrow)]
    role: Option<&'a RawValue>,
    #[serde(borrow)]
    content: Option<&'a RawValue>,
    #[serde(borrow)]
    name: Option<&'a RawValue>,
    #[serde(borrow)]
    tool_calls: Option<&'a RawValue>,
    #[serde(borrow)]
    tool_call_id: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RawPart<'a> {
    #[serde(borrow, rename = "type")]
    kind: Option<&'a RawValue>,
    #[serde(borrow)]
    text: Option<&'a RawValue>,
}

/// A field path such as `messages[3].content[1].text`, formatted only when an error needs it, so a valid
/// request allocates no parameter names.
#[derive(Debug, Clone, Copy)]
pub(crate) struct At<'a> {
    list: &'static str,
    index: usize,
    field: &'a str,
    part: Option<(usize, &'a str)>,
}

impl<'a> At<'a> {
    pub(crate) fn item(list: &'static str, index: usize, field: &'a str) -> Self {
        At {
            list,
            index,
            field,
            part: None,
        }
    }

    fn part(self, index: usize, field: &'a str) -> Self {
        At {
            part: Some((index, field)),
            ..self
        }
    }
}

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]{}", self.list, self.index, self.field)?;
        if let Some((index, field)) = self.part {
            write!(f, "[{index}]{field}")?;
        }
        Ok(())
    }
}

/// Parses and validates a request body (already checked to be within the size limit).
pub fn parse(body: &[u8], max_depth: usize) -> Result<ChatRequest<'_>, ApiError> {
    match super::chat_common::parse(body, max_depth) {
        Some(request) => Ok(request),
        None => parse_full(body, max_depth),
    }
}

/// Every field the spec defines, through serde_json: the definition the one-pass reader is held to (public
/// for the fuzz target that compares them).
pub fn parse_full(body: &[u8], max_depth: usize) -> Result<ChatRequest<'_>, ApiError> {
    let raw: RawRequest<'_> = json::parse_body(body, max_depth)?;
    let model = json::model(raw.model)?;
    let messages = match raw.messages {
        Some(m) => parse_messages(m)?,
        None => return Err(missing("messages")),
    };
    let max_tokens = positive(raw.max_tokens, "max_tokens")?;
    let max_completion_tokens = positive(raw.max_completion_tokens, "max_completion_tokens")?;
    let n = raw
        .n
        .map(|v| integer(v, "n", 1, MAX_CHOICES))
        .transpose()?
        .unwrap_or(1) as u32;
    let stop = raw.stop.map(json::stop).transpose()?.unwrap_or_default();
    let stream = raw
        .stream
        .map(|v| boolean(v, "stream"))
        .transpose()?
        .unwrap_or(false);
    let include_usage = json::stream_options(raw.stream_options, stream)?;
    let ranged = [
        (raw.temperature, "temperature", 0.0, 2.0),
        (raw.top_p, "top_p", 0.0, 1.0),
        (raw.frequency_penalty, "frequency_penalty", -2.0, 2.0),
        (raw.presence_penalty, "presence_penalty", -2.0, 2.0),
    ];
    for (value, param, min, max) in ranged {
        value.map(|v| number(v, param, min, max)).transpose()?;
    }
    let seed = raw
        .seed
        .map(|v| integer(v, "seed", i64::MIN, i64::MAX))
        .transpose()?;
    for (value, param) in [
        (raw.user, "user"),
        (raw.safety_identifier, "safety_identifier"),
        (raw.prompt_cache_key, "prompt_cache_key"),
    ] {
        value.map(|v| string(v, param)).transpose()?;
    }
    raw.store.map(|v| boolean(v, "store")).transpose()?;
    let parallel_tool_calls = raw
        .parallel_tool_calls
        .map(|v| boolean(v, "parallel_tool_calls"))
        .transpose()?
        .unwrap_or(true);
    let logprobs = raw
        .logprobs
        .map(|v| boolean(v, "logprobs"))
        .transpose()?
        .unwrap_or(false);
    let top_logprobs = raw
        .top_logprobs
        .map(|v| integer(v, "top_logprobs", 0, MAX_TOP_LOGPROBS))
        .transpose()?;
    if top_logprobs.is_some() && !logprobs {
        // As OpenAI: alternatives are only given with the log probabilities themselves.
        let message = "Invalid value for 'top_logprobs': 'logprobs' must be set to true when 'top_logprobs' is used.";
        return Err(ApiError::invalid(
            message,
            Some("top_logprobs"),
            "invalid_value",
        ));
    }
    if let Some(bias) = raw.logit_bias {
        // A BTreeMap, so that of several bad values the same one is reported every time.
        let bias: std::collections::BTreeMap<Cow<'_, str>, &RawValue> = object(bias, "logit_bias")?;
        for value in bias.values() {
            number(value, "logit_bias", -100.0, 100.0)?;
        }
    }
    if let Some(metadata) = raw.metadata {
        let metadata: std::collections::BTreeMap<Cow<'_, str>, &RawValue> =
            object(metadata, "metadata")?;
        for value in metadata.values() {
            string(value, "metadata")?;
        }
    }
    let (tools, tool_choice) = parse_tools(raw.tools, raw.tool_choice)?;
    let response_format = raw
        .response_format
        .map(parse_response_format)
        .transpose()?
        .unwrap_or(ResponseFormat::Text);
    one_of(
        raw.service_tier,
        "service_tier",
        &["auto", "default", "flex", "scale", "priority"],
    )?;
    one_of(
        raw.reasoning_effort,
        "reasoning_effort",
        &["none", "minimal", "low", "medium", "high", "xhigh"],
    )?;
    if let Some(modalities) = raw.modalities {
        for (i, m) in array(modalities, "modalities")?.into_iter().enumerate() {
            string(m, At::item("modalities", i, ""))?;
        }
    }
    Ok(ChatRequest {
        model,
        messages,
        max_tokens: max_completion_tokens.or(max_tokens),
        n,
        stop,
        stream,
        include_usage,
        seed,
        tools,
        tool_choice,
        parallel_tool_calls,
        response_format,
        logprobs: logprobs.then_some(top_logprobs.unwrap_or(0) as u8),
    })
}

fn positive(raw: Option<&RawValue>, param: &str) -> Result<Option<u32>, ApiError> {
    raw.map(|v| integer(v, param, 1, u32::MAX as i64).map(|n| n as u32))
        .transpose()
}

fn one_of(raw: Option<&RawValue>, param: &str, allowed: &[&str]) -> Result<(), ApiError> {
    if let Some(v) = raw {
        let s = string(v, param)?;
        if !allowed.contains(&&*s) {
            return Err(json::out_of_range(
                param,
                &format!("one of {}", allowed.join(", ")),
                &s,
            ));
        }
    }
    Ok(())
}

fn parse_messages(raw: &RawValue) -> Result<Vec<Message<'_>>, ApiError> {
    let items = array(raw, "messages")?;
    if items.is_empty() {
        return Err(json::out_of_range(
            "messages",
            "with at least 1 item",
            "an empty array",
        ));
    }
    let mut messages = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let param = |field: &'static str| At::item("messages", i, field);
        let message: RawMessage<'_> = object(item, param(""))?;
        let role = message.role.ok_or_else(|| missing(param(".role")))?;
        let role = match &*string(role, param(".role"))? {
            "system" => Role::System,
            "developer" => Role::Developer,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "tool" => Role::Tool,
            "function" => Role::Function,
            other => {
                let rule = "one of system, developer, user, assistant, tool, function";
                return Err(json::out_of_range(
                    param(".role"),
                    rule,
                    format!("'{other}'"),
                ));
            }
        };
        let text = match message.content {
            Some(content) => parse_content(content, role, param(".content"))?,
            // An assistant turn may carry only tool calls; every other role must say something.
            None if role == Role::Assistant => None,
            None => return Err(missing(param(".content"))),
        };
        if let Some(name) = message.name {
            string(name, param(".name"))?;
        }
        if let Some(calls) = message.tool_calls {
            array(calls, param(".tool_calls"))?;
        }
        match message.tool_call_id {
            Some(id) => drop(string(id, param(".tool_call_id"))?),
            None if role == Role::Tool => return Err(missing(param(".tool_call_id"))),
            None => {}
        }
        messages.push(Message { role, text });
    }
    Ok(messages)
}

fn parse_content<'a>(
    raw: &'a RawValue,
    role: Role,
    param: At<'_>,
) -> Result<Option<Cow<'a, str>>, ApiError> {
    if raw.get() == "null" {
        return if matches!(role, Role::Assistant | Role::Function) {
            Ok(None)
        } else {
            Err(missing(param))
        };
    }
    if raw.get().starts_with('"') {
        return string(raw, param).map(Some);
    }
    let parts = array(raw, param)?;
    let mut text: Option<Cow<'a, str>> = None;
    for (i, part) in parts.into_iter().enumerate() {
        let part: RawPart<'_> = object(part, param.part(i, ""))?;
        let kind = part.kind.ok_or_else(|| missing(param.part(i, ".type")))?;
        let kind = string(kind, param.part(i, ".type"))?;
        if kind != "text" && kind != "refusal" {
            // Images, audio and files are accepted; the echo model has nothing to say about them.
            continue;
        }
        let field = if kind == "text" { ".text" } else { ".refusal" };
        let piece = part.text.ok_or_else(|| missing(param.part(i, field)))?;
        let piece = string(piece, param.part(i, field))?;
        text = Some(match text {
            None => piece,
            Some(joined) => Cow::Owned(format!("{joined}\n{piece}")),
        });
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &str) -> ChatRequest<'_> {
        parse(body.as_bytes(), 64).unwrap_or_else(|e| panic!("{body}: {e:?}"))
    }

    fn err(body: &str) -> (Option<String>, &'static str) {
        let e = parse(body.as_bytes(), 64).expect_err(body);
        assert_eq!(e.status, 400);
        (e.param, e.code.unwrap())
    }

    /// Several bad values in a map: the same one is reported every time (a HashMap's order changed from
    /// one parse to the next; the fuzzer found it).
    #[test]
    fn map_errors_are_the_same_every_time() {
        for field in ["logit_bias", "metadata"] {
            let body = format!(
                r#"{{"model":"m","messages":[{{"role":"user","content":"x"}}],"{field}":{{"1":true,"2":[],"3":{{}},"4":null,"5":"x","6":1000}}}}"#
            );
            let first = parse(body.as_bytes(), 64).expect_err(&body).message;
            for _ in 0..50 {
                assert_eq!(parse(body.as_bytes(), 64).expect_err(&body).message, first);
            }
        }
    }

    const HI: &str = r#""messages":[{"role":"user","content":"hi"}]"#;

    #[test]
    fn minimal_request() {
        let body = format!(r#"{{"model":"m",{HI}}}"#);
        let req = ok(&body);
        assert_eq!(req.model, "m");
        assert_eq!(req.n, 1);
        assert!(!req.stream && req.stop.is_empty() && req.max_tokens.is_none());
        assert_eq!(req.messages[0].text.as_deref(), Some("hi"));
    }

    #[test]
    fn all_known_fields_accepted() {
        let body = format!(
            r#"{{"model":"m",{HI},"max_tokens":5,"max_completion_tokens":3,"n":2,"stop":["a","b"],"stream":true,
            "stream_options":{{"include_usage":true}},"temperature":0.5,"top_p":1,"frequency_penalty":-2,
            "presence_penalty":2,"seed":-7,"user":"u","logprobs":true,"top_logprobs":3,"logit_bias":{{"50256":-100}},
            "tools":[{{"type":"function","function":{{"name":"f"}}}}],"tool_choice":"auto","parallel_tool_calls":true,
            "response_format":{{"type":"json_object"}},"metadata":{{"k":"v"}},"store":false,"service_tier":"auto",
            "unknown_field":{{"deep":[1,2,3]}}}}"#
        );
        let req = ok(&body);
        assert_eq!(req.max_tokens, Some(3));
        assert_eq!(
            (req.n, req.stream, req.include_usage, req.seed),
            (2, true, true, Some(-7))
        );
        assert_eq!(req.stop, vec!["a", "b"]);
        assert_eq!(req.logprobs, Some(3));
        assert_eq!(req.tools.len(), 1);
        assert_eq!(req.tool_choice, ToolChoice::Auto);
        assert!(req.parallel_tool_calls);
        assert!(matches!(req.response_format, ResponseFormat::JsonObject));
    }

    fn tools_body(extra: &str) -> String {
        format!(
            r#"{{"model":"m",{HI},"tools":[
            {{"type":"function","function":{{"name":"get_weather","parameters":{{"type":"object"}}}}}},
            {{"type":"custom","custom":{{"name":"free_text"}}}},
            {{"type":"function","function":{{"name":"get-time","strict":true}}}}]{extra}}}"#
        )
    }

    #[test]
    fn tools_and_choices_are_kept() {
        let body = tools_body("");
        let req = ok(&body);
        let names: Vec<&str> = req.tools.iter().map(|t| &*t.name).collect();
        assert_eq!(names, ["get_weather", "get-time"]);
        assert_eq!(
            req.tools[0].parameters.map(|p| p.get()),
            Some(r#"{"type":"object"}"#)
        );
        assert!(req.tools[1].parameters.is_none());
        assert_eq!(req.tool_choice, ToolChoice::Auto);
        let cases = [
            (r#","tool_choice":"none""#, ToolChoice::None),
            (r#","tool_choice":"required""#, ToolChoice::Required),
            (
                r#","tool_choice":{"type":"function","function":{"name":"get-time"}}"#,
                ToolChoice::Function(1),
            ),
        ];
        for (extra, choice) in cases {
            let body = tools_body(extra);
            assert_eq!(ok(&body).tool_choice, choice, "{extra}");
        }
        let body = tools_body(
            r#","parallel_tool_calls":false,"tool_choice":{"type":"allowed_tools","allowed_tools":{"mode":"required","tools":[{"type":"function","function":{"name":"get-time"}}]}}"#,
        );
        let req = ok(&body);
        assert!(!req.parallel_tool_calls);
        assert_eq!(req.tool_choice, ToolChoice::Required);
        let allowed: Vec<bool> = req.tools.iter().map(|t| t.allowed).collect();
        assert_eq!(allowed, [false, true]);
        // Without tools the choice defaults to none.
        let body = format!(r#"{{"model":"m",{HI}}}"#);
        assert_eq!(ok(&body).tool_choice, ToolChoice::None);
    }

    #[test]
    fn response_formats_and_logprobs() {
        let body = format!(
            r#"{{"model":"m",{HI},"response_format":{{"type":"json_schema","json_schema":{{"name":"out-1","strict":true,"schema":{{"type":"object"}}}}}},"logprobs":true}}"#
        );
        let req = ok(&body);
        assert!(matches!(
            req.response_format,
            ResponseFormat::JsonSchema { schema: Some(s) } if s.get() == r#"{"type":"object"}"#
        ));
        assert_eq!(req.logprobs, Some(0));
        let body = format!(
            r#"{{"model":"m",{HI},"response_format":{{"type":"text"}},"logprobs":false,"top_logprobs":null}}"#
        );
        let req = ok(&body);
        assert!(matches!(req.response_format, ResponseFormat::Text));
        assert_eq!(req.logprobs, None);
    }

    #[test]
    fn tool_errors_name_the_field() {
        let cases = [
            (
                tools_body(r#","tool_choice":{"type":"function","function":{"name":"nope"}}"#),
                "tool_choice",
                "invalid_value",
            ),
            (
                tools_body(r#","tool_choice":{"type":"function","function":{"name":"free_text"}}"#),
                "tool_choice",
                "invalid_value",
            ),
            (
                tools_body(r#","tool_choice":{"type":"function"}"#),
                "tool_choice.function",
                "missing_required_parameter",
            ),
            (
                tools_body(r#","tool_choice":{"type":"custom","custom":{"name":"free_text"}}"#),
                "tool_choice",
                "invalid_value",
            ),
            (
                tools_body(r#","tool_choice":{"type":"robot"}"#),
                "tool_choice.type",
                "invalid_value",
            ),
            (
                tools_body(
                    r#","tool_choice":{"type":"allowed_tools","allowed_tools":{"mode":"sometimes","tools":[]}}"#,
                ),
                "tool_choice.allowed_tools.mode",
                "invalid_value",
            ),
            (
                format!(r#"{{"model":"m",{HI},"tool_choice":"required"}}"#),
                "tool_choice",
                "invalid_value",
            ),
            (
                format!(
                    r#"{{"model":"m",{HI},"tool_choice":{{"type":"function","function":{{"name":"f"}}}}}}"#
                ),
                "tool_choice",
                "invalid_value",
            ),
            (
                format!(r#"{{"model":"m",{HI},"tools":[{{"type":"function"}}]}}"#),
                "tools[0].function",
                "missing_required_parameter",
            ),
            (
                format!(r#"{{"model":"m",{HI},"tools":[{{"type":"function","function":{{}}}}]}}"#),
                "tools[0].function.name",
                "missing_required_parameter",
            ),
            (
                format!(
                    r#"{{"model":"m",{HI},"tools":[{{"type":"function","function":{{"name":"a.b"}}}}]}}"#
                ),
                "tools[0].function.name",
                "invalid_value",
            ),
            (
                format!(
                    r#"{{"model":"m",{HI},"tools":[{{"type":"function","function":{{"name":"{}"}}}}]}}"#,
                    "x".repeat(65)
                ),
                "tools[0].function.name",
                "invalid_value",
            ),
            (
                format!(
                    r#"{{"model":"m",{HI},"tools":[{{"type":"function","function":{{"name":"f","parameters":[]}}}}]}}"#
                ),
                "tools[0].function.parameters",
                "invalid_type",
            ),
            (
                format!(
                    r#"{{"model":"m",{HI},"tools":[{{"type":"function","function":{{"name":"f","strict":"yes"}}}}]}}"#
                ),
                "tools[0].function.strict",
                "invalid_type",
            ),
            (
                format!(r#"{{"model":"m",{HI},"tools":[{{"type":"retrieval"}}]}}"#),
                "tools[0].type",
                "invalid_value",
            ),
            (
                format!(
                    r#"{{"model":"m",{HI},"tools":[{}]}}"#,
                    vec![r#"{"type":"function","function":{"name":"f"}}"#; 129].join(",")
                ),
                "tools",
                "invalid_value",
            ),
            (
                format!(r#"{{"model":"m",{HI},"response_format":{{"type":"json_schema"}}}}"#),
                "response_format.json_schema",
                "missing_required_parameter",
            ),
            (
                format!(
                    r#"{{"model":"m",{HI},"response_format":{{"type":"json_schema","json_schema":{{"schema":{{}}}}}}}}"#
                ),
                "response_format.json_schema.name",
                "missing_required_parameter",
            ),
            (
                format!(
                    r#"{{"model":"m",{HI},"response_format":{{"type":"json_schema","json_schema":{{"name":"n","schema":true}}}}}}"#
                ),
                "response_format.json_schema.schema",
                "invalid_type",
            ),
            (
                format!(r#"{{"model":"m",{HI},"top_logprobs":2}}"#),
                "top_logprobs",
                "invalid_value",
            ),
            (
                format!(r#"{{"model":"m",{HI},"top_logprobs":0,"logprobs":false}}"#),
                "top_logprobs",
                "invalid_value",
            ),
        ];
        for (body, param, code) in cases {
            assert_eq!(err(&body), (Some(param.to_string()), code), "{body}");
        }
    }

    #[test]
    fn nulls_mean_absent() {
        let body = format!(
            r#"{{"model":"m",{HI},"n":null,"stop":null,"temperature":null,"stream_options":null}}"#
        );
        assert_eq!(ok(&body).n, 1);
    }

    #[test]
    fn content_forms() {
        let req = ok(r#"{"model":"m","messages":[
            {"role":"system","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},
            {"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]},
            {"role":"assistant","content":null,"tool_calls":[]},
            {"role":"tool","content":"r","tool_call_id":"c1"}]}"#);
        let texts: Vec<_> = req.messages.iter().map(|m| m.text.as_deref()).collect();
        assert_eq!(texts, vec![Some("a\nb"), None, None, Some("r")]);
        assert_eq!(req.messages[2].role, Role::Assistant);
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
        rejects_missing_model: r#"{"messages":[]}"# => (Some("model"), "missing_required_parameter"),
        rejects_model_number: r#"{"model":5,"messages":[]}"# => (Some("model"), "invalid_type"),
        rejects_missing_messages: r#"{"model":"m"}"# => (Some("messages"), "missing_required_parameter"),
        rejects_empty_messages: r#"{"model":"m","messages":[]}"# => (Some("messages"), "invalid_value"),
        rejects_bad_role: r#"{"model":"m","messages":[{"role":"robot","content":"x"}]}"# => (Some("messages[0].role"), "invalid_value"),
        rejects_number_content: r#"{"model":"m","messages":[{"role":"user","content":1}]}"# => (Some("messages[0].content"), "invalid_type"),
        rejects_null_user_content: r#"{"model":"m","messages":[{"role":"user","content":null}]}"# => (Some("messages[0].content"), "missing_required_parameter"),
        rejects_part_without_text: r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text"}]}]}"# => (Some("messages[0].content[0].text"), "missing_required_parameter"),
        rejects_tool_without_id: r#"{"model":"m","messages":[{"role":"tool","content":"x"}]}"# => (Some("messages[0].tool_call_id"), "missing_required_parameter"),
        rejects_message_string: r#"{"model":"m","messages":["hi"]}"# => (Some("messages[0]"), "invalid_type"),
        rejects_n_string: r#"{"model":"m","messages":[{"role":"user","content":"x"}],"n":"2"}"# => (Some("n"), "invalid_type"),
        rejects_n_zero: r#"{"model":"m","messages":[{"role":"user","content":"x"}],"n":0}"# => (Some("n"), "invalid_value"),
        rejects_n_too_many: r#"{"model":"m","messages":[{"role":"user","content":"x"}],"n":129}"# => (Some("n"), "invalid_value"),
        rejects_temperature_high: r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":5}"# => (Some("temperature"), "invalid_value"),
        rejects_top_p_string: r#"{"model":"m","messages":[{"role":"user","content":"x"}],"top_p":"1"}"# => (Some("top_p"), "invalid_type"),
        rejects_max_tokens_zero: r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":0}"# => (Some("max_tokens"), "invalid_value"),
        rejects_stop_five: r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stop":["a","b","c","d","e"]}"# => (Some("stop"), "invalid_value"),
        rejects_stop_number: r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stop":[1]}"# => (Some("stop[0]"), "invalid_type"),
        rejects_stream_string: r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":"yes"}"# => (Some("stream"), "invalid_type"),
        rejects_options_without_stream: r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":true}}"# => (Some("stream_options"), "invalid_value"),
        rejects_include_usage_string: r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":true,"stream_options":{"include_usage":"y"}}"# => (Some("stream_options.include_usage"), "invalid_type"),
        rejects_seed_float: r#"{"model":"m","messages":[{"role":"user","content":"x"}],"seed":1.5}"# => (Some("seed"), "invalid_type"),
        rejects_top_logprobs_high: r#"{"model":"m","messages":[{"role":"user","content":"x"}],"top_logprobs":21}"# => (Some("top_logprobs"), "invalid_value"),
        rejects_logit_bias_range: r#"{"model":"m","messages":[{"role":"user","content":"x"}],"logit_bias":{"1":101}}"# => (Some("logit_bias"), "invalid_value"),
        rejects_tool_choice_word: r#"{"model":"m","messages":[{"role":"user","content":"x"}],"tool_choice":"sometimes"}"# => (Some("tool_choice"), "invalid_value"),
        rejects_tools_object: r#"{"model":"m","messages":[{"role":"user","content":"x"}],"tools":{}}"# => (Some("tools"), "invalid_type"),
        rejects_response_format_kind: r#"{"model":"m","messages":[{"role":"user","content":"x"}],"response_format":{"type":"xml"}}"# => (Some("response_format.type"), "invalid_value"),
        rejects_user_number: r#"{"model":"m","messages":[{"role":"user","content":"x"}],"user":1}"# => (Some("user"), "invalid_type"),
        rejects_too_deep: &format!(r#"{{"model":"m","x":{}1{}}}"#, "[".repeat(70), "]".repeat(70)) => (None::<&str>, "json_too_deep"),
    }

    #[test]
    fn rejects_invalid_utf8() {
        let e = parse(b"{\"model\":\"\xff\"}", 64).unwrap_err();
        assert_eq!(e.code, Some("invalid_json"));
    }
}
