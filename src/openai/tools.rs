//! Tools and structured output in chat requests: `tools`, `tool_choice` (resolved against the tools) and
//! `response_format`, validated with the field at fault named in `param`. Split from `chat.rs`, which
//! owns the rest of the request.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::chat::{At, MAX_TOOLS};
use super::error::ApiError;
use super::json::missing;
use super::json::{self, array, boolean, object, string};

/// A function tool.
#[derive(Debug, Clone)]
pub struct Tool<'a> {
    /// `function.name`, checked against the spec's pattern.
    pub name: Cow<'a, str>,
    /// `function.parameters`, a JSON Schema object kept raw; `None` when absent.
    pub parameters: Option<&'a RawValue>,
    /// False when an `allowed_tools` choice leaves it out.
    pub allowed: bool,
}

/// `tool_choice`, resolved against the tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolChoice {
    /// `none`: answer with text.
    None,
    /// `auto` (or `allowed_tools` in mode `auto`): the model decides.
    Auto,
    /// `required` (or `allowed_tools` in mode `required`): call at least one tool.
    Required,
    /// `{"type":"function","function":{"name":…}}`: call this tool (an index into `tools`).
    Function(usize),
}

/// `response_format`.
#[derive(Debug, Clone, Copy)]
pub enum ResponseFormat<'a> {
    /// `text` (the default).
    Text,
    /// `json_object`: any JSON object.
    JsonObject,
    /// `json_schema`: JSON valid for `schema` (absent: any JSON object).
    JsonSchema {
        /// `json_schema.schema`, kept raw.
        schema: Option<&'a RawValue>,
    },
}

/// A tool, or a tool choice: `type` and the member named after it.
#[derive(Deserialize)]
struct RawTool<'a> {
    #[serde(borrow, rename = "type")]
    kind: Option<&'a RawValue>,
    #[serde(borrow)]
    function: Option<&'a RawValue>,
    #[serde(borrow)]
    custom: Option<&'a RawValue>,
    #[serde(borrow)]
    allowed_tools: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RawFunction<'a> {
    #[serde(borrow)]
    name: Option<&'a RawValue>,
    #[serde(borrow)]
    description: Option<&'a RawValue>,
    #[serde(borrow)]
    parameters: Option<&'a RawValue>,
    #[serde(borrow)]
    strict: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RawAllowedTools<'a> {
    #[serde(borrow)]
    mode: Option<&'a RawValue>,
    #[serde(borrow)]
    tools: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RawResponseFormat<'a> {
    #[serde(borrow, rename = "type")]
    kind: Option<&'a RawValue>,
    #[serde(borrow)]
    json_schema: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RawJsonSchema<'a> {
    #[serde(borrow)]
    name: Option<&'a RawValue>,
    #[serde(borrow)]
    description: Option<&'a RawValue>,
    #[serde(borrow)]
    schema: Option<&'a RawValue>,
    #[serde(borrow)]
    strict: Option<&'a RawValue>,
}

/// Names of functions and response formats: the spec's `^[a-zA-Z0-9_-]{1,64}$`.
fn check_name(raw: &RawValue, param: impl fmt::Display + Copy) -> Result<Cow<'_, str>, ApiError> {
    let name = string(raw, param)?;
    let valid = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !valid {
        let rule = "of 1 to 64 letters, digits, underscores or dashes";
        return Err(json::out_of_range(param, rule, format!("'{name}'")));
    }
    Ok(name)
}

/// The function tools (custom ones are checked and left out) and the tool choice resolved against them.
pub(crate) fn parse_tools<'a>(
    tools: Option<&'a RawValue>,
    choice: Option<&'a RawValue>,
) -> Result<(Vec<Tool<'a>>, ToolChoice), ApiError> {
    let mut functions = Vec::new();
    let mut offered = false;
    if let Some(tools) = tools {
        let items = array(tools, "tools")?;
        if items.len() > MAX_TOOLS {
            return Err(json::out_of_range(
                "tools",
                &format!("with at most {MAX_TOOLS} items"),
                format!("{} items", items.len()),
            ));
        }
        offered = !items.is_empty();
        for (i, tool) in items.into_iter().enumerate() {
            let at = |field: &'static str| At::item("tools", i, field);
            let tool: RawTool<'_> = object(tool, at(""))?;
            let kind = tool.kind.ok_or_else(|| missing(at(".type")))?;
            match &*string(kind, at(".type"))? {
                "function" => {
                    let function = tool.function.ok_or_else(|| missing(at(".function")))?;
                    let function: RawFunction<'_> = object(function, at(".function"))?;
                    let name = function.name.ok_or_else(|| missing(at(".function.name")))?;
                    let name = check_name(name, at(".function.name"))?;
                    if let Some(description) = function.description {
                        string(description, at(".function.description"))?;
                    }
                    if let Some(parameters) = function.parameters {
                        let _: &RawValue = object(parameters, at(".function.parameters"))?;
                    }
                    if let Some(strict) = function.strict {
                        boolean(strict, at(".function.strict"))?;
                    }
                    functions.push(Tool {
                        name,
                        parameters: function.parameters,
                        allowed: true,
                    });
                }
                "custom" => {
                    let custom = tool.custom.ok_or_else(|| missing(at(".custom")))?;
                    let custom: RawFunction<'_> = object(custom, at(".custom"))?;
                    let name = custom.name.ok_or_else(|| missing(at(".custom.name")))?;
                    string(name, at(".custom.name"))?;
                }
                other => {
                    let rule = "one of function, custom";
                    return Err(json::out_of_range(at(".type"), rule, format!("'{other}'")));
                }
            }
        }
    }
    let default = if offered {
        ToolChoice::Auto
    } else {
        ToolChoice::None
    };
    let Some(choice) = choice else {
        return Ok((functions, default));
    };
    let choice = if choice.get().starts_with('"') {
        match &*string(choice, "tool_choice")? {
            "none" => ToolChoice::None,
            "auto" => ToolChoice::Auto,
            "required" => ToolChoice::Required,
            other => {
                return Err(json::out_of_range(
                    "tool_choice",
                    "one of none, auto, required or an object",
                    format!("'{other}'"),
                ))
            }
        }
    } else {
        parse_tool_choice(choice, &mut functions)?
    };
    if choice == ToolChoice::Required && !functions.iter().any(|f| f.allowed) {
        let message = "Invalid value for 'tool_choice': 'required' needs at least one function in 'tools' to call.";
        return Err(ApiError::invalid(
            message,
            Some("tool_choice"),
            "invalid_value",
        ));
    }
    Ok((functions, choice))
}

/// An object `tool_choice`: a named function, or `allowed_tools` (which marks the others not allowed).
pub(crate) fn parse_tool_choice(
    choice: &RawValue,
    functions: &mut [Tool<'_>],
) -> Result<ToolChoice, ApiError> {
    let choice: RawTool<'_> = object(choice, "tool_choice")?;
    let kind = choice.kind.ok_or_else(|| missing("tool_choice.type"))?;
    let find = |name: &str, functions: &[Tool<'_>]| {
        functions
            .iter()
            .position(|f| f.name == name)
            .ok_or_else(|| {
                let message = format!(
                    "Invalid value for 'tool_choice': no function named '{name}' in 'tools'."
                );
                ApiError::invalid(message, Some("tool_choice"), "invalid_value")
            })
    };
    match &*string(kind, "tool_choice.type")? {
        "function" => {
            let function = choice
                .function
                .ok_or_else(|| missing("tool_choice.function"))?;
            let function: RawFunction<'_> = object(function, "tool_choice.function")?;
            let name = function
                .name
                .ok_or_else(|| missing("tool_choice.function.name"))?;
            let name = string(name, "tool_choice.function.name")?;
            Ok(ToolChoice::Function(find(&name, functions)?))
        }
        "allowed_tools" => {
            let allowed = choice
                .allowed_tools
                .ok_or_else(|| missing("tool_choice.allowed_tools"))?;
            let allowed: RawAllowedTools<'_> = object(allowed, "tool_choice.allowed_tools")?;
            let mode = allowed
                .mode
                .ok_or_else(|| missing("tool_choice.allowed_tools.mode"))?;
            let mode = match &*string(mode, "tool_choice.allowed_tools.mode")? {
                "auto" => ToolChoice::Auto,
                "required" => ToolChoice::Required,
                other => {
                    return Err(json::out_of_range(
                        "tool_choice.allowed_tools.mode",
                        "one of auto, required",
                        format!("'{other}'"),
                    ))
                }
            };
            let list = allowed
                .tools
                .ok_or_else(|| missing("tool_choice.allowed_tools.tools"))?;
            let mut keep = vec![false; functions.len()];
            for (i, tool) in array(list, "tool_choice.allowed_tools.tools")?
                .into_iter()
                .enumerate()
            {
                let at =
                    |field: &'static str| At::item("tool_choice.allowed_tools.tools", i, field);
                let tool: RawTool<'_> = object(tool, at(""))?;
                // Only functions can be called; custom tools listed here change nothing.
                if let Some(function) = tool.function {
                    let function: RawFunction<'_> = object(function, at(".function"))?;
                    let name = function.name.ok_or_else(|| missing(at(".function.name")))?;
                    keep[find(&string(name, at(".function.name"))?, functions)?] = true;
                }
            }
            for (function, keep) in functions.iter_mut().zip(keep) {
                function.allowed = keep;
            }
            Ok(mode)
        }
        "custom" => {
            let message = "Invalid value for 'tool_choice': standin does not call custom tools; name a function or use 'auto', 'required' or 'none'.";
            Err(ApiError::invalid(
                message,
                Some("tool_choice"),
                "invalid_value",
            ))
        }
        other => Err(json::out_of_range(
            "tool_choice.type",
            "one of function, allowed_tools, custom",
            format!("'{other}'"),
        )),
    }
}

pub(crate) fn parse_response_format(raw: &RawValue) -> Result<ResponseFormat<'_>, ApiError> {
    let format: RawResponseFormat<'_> = object(raw, "response_format")?;
    let kind = format.kind.ok_or_else(|| missing("response_format.type"))?;
    match &*string(kind, "response_format.type")? {
        "text" => Ok(ResponseFormat::Text),
        "json_object" => Ok(ResponseFormat::JsonObject),
        "json_schema" => {
            let spec = format
                .json_schema
                .ok_or_else(|| missing("response_format.json_schema"))?;
            let spec: RawJsonSchema<'_> = object(spec, "response_format.json_schema")?;
            let name = spec
                .name
                .ok_or_else(|| missing("response_format.json_schema.name"))?;
            check_name(name, "response_format.json_schema.name")?;
            if let Some(description) = spec.description {
                string(description, "response_format.json_schema.description")?;
            }
            if let Some(schema) = spec.schema {
                let _: &RawValue = object(schema, "response_format.json_schema.schema")?;
            }
            if let Some(strict) = spec.strict {
                boolean(strict, "response_format.json_schema.strict")?;
            }
            Ok(ResponseFormat::JsonSchema {
                schema: spec.schema,
            })
        }
        other => Err(json::out_of_range(
            "response_format.type",
            "one of text, json_object, json_schema",
            other,
        )),
    }
}
