//! Chat templates: the model's Jinja `tokenizer.chat_template`, rendered with minijinja the way
//! Hugging Face's `apply_chat_template` renders it (`trim_blocks`, `lstrip_blocks`, Python string
//! methods, `raise_exception`, Python-style `tojson`), plus named built-in formats.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Environment, Error, ErrorKind, Value};
use outcore_format::Metadata;

use crate::tokenizer::{keys, Tokenizer};

/// Template name inside the environment.
const NAME: &str = "chat_template";

/// Why a chat template could not be built or rendered.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("chat template does not compile: {message}")]
    Compile { message: String },
    #[error("chat template failed to render: {message}")]
    Render { message: String },
    #[error("metadata key `{key}` is missing or not a string: the model has no chat template")]
    Missing { key: &'static str },
    #[error("unknown built-in chat template {name:?}; known: {known}")]
    UnknownBuiltin { name: String, known: String },
}

/// One chat message.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// Variables besides `messages` that templates read.
#[derive(Clone, Debug, Default)]
pub struct RenderOptions {
    /// Append the header of an assistant turn.
    pub add_generation_prompt: bool,
    pub bos_token: String,
    pub eos_token: String,
    /// More variables (`tools`, `documents`, custom flags), as JSON.
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl RenderOptions {
    /// `bos_token` / `eos_token` texts from a tokenizer.
    pub fn for_tokenizer(tokenizer: &Tokenizer, add_generation_prompt: bool) -> RenderOptions {
        let text = |id: Option<u32>| {
            id.and_then(|i| tokenizer.token_text(i))
                .unwrap_or_default()
                .to_string()
        };
        RenderOptions {
            add_generation_prompt,
            bos_token: text(tokenizer.bos()),
            eos_token: text(tokenizer.eos()),
            extra: BTreeMap::new(),
        }
    }
}

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    builtin: Option<&'static str>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("builtin", &self.builtin)
            .field("len", &self.source.len())
            .finish()
    }
}

impl ChatTemplate {
    /// Compiles a Jinja chat template.
    pub fn new(source: impl Into<String>) -> Result<ChatTemplate, ChatError> {
        let source = source.into();
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_keep_trailing_newline(false);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        env.add_filter("length", length);
        env.add_filter("indent", indent);
        env.add_filter("string", |v: Value| {
            if v.kind() == ValueKind::String {
                v
            } else {
                Value::from(py_str(&v))
            }
        });
        env.set_formatter(|out, _state, value| {
            let text = match value.kind() {
                ValueKind::String => {
                    return out
                        .write_str(value.as_str().unwrap_or_default())
                        .map_err(Error::from)
                }
                ValueKind::Undefined => return Ok(()),
                _ => py_str(value),
            };
            out.write_str(&text).map_err(Error::from)
        });
        env.add_filter("count", length);
        env.add_template_owned(NAME, rewrite_generation_tags(&source))
            .map_err(|e| ChatError::Compile {
                message: describe(&e),
            })?;
        Ok(ChatTemplate {
            env,
            source,
            builtin: None,
        })
    }

    /// The template stored under `tokenizer.chat_template`.
    pub fn from_metadata(md: &Metadata) -> Result<ChatTemplate, ChatError> {
        match md.get(keys::CHAT_TEMPLATE).and_then(|v| v.as_str()) {
            Some(s) => ChatTemplate::new(s),
            None => Err(ChatError::Missing {
                key: keys::CHAT_TEMPLATE,
            }),
        }
    }

    /// A named built-in format (see [`ChatTemplate::builtin_names`]), written to produce what
    /// llama.cpp's `llm_chat_apply_template` produces for that name.
    pub fn builtin(name: &str) -> Result<ChatTemplate, ChatError> {
        let Some(&(key, source)) = BUILTINS.iter().find(|(n, _)| *n == name) else {
            let known = ChatTemplate::builtin_names().collect::<Vec<_>>().join(", ");
            return Err(ChatError::UnknownBuiltin {
                name: name.to_string(),
                known,
            });
        };
        let mut t = ChatTemplate::new(source)?;
        t.builtin = Some(key);
        Ok(t)
    }

    /// A built-in name, or else Jinja source (as a `--chat-template` option would take).
    pub fn from_name_or_source(s: &str) -> Result<ChatTemplate, ChatError> {
        if BUILTINS.iter().any(|(n, _)| *n == s) {
            ChatTemplate::builtin(s)
        } else {
            ChatTemplate::new(s)
        }
    }

    pub fn builtin_names() -> impl Iterator<Item = &'static str> {
        BUILTINS.iter().map(|(n, _)| *n)
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The built-in name this template was made from, if any.
    pub fn builtin_name(&self) -> Option<&'static str> {
        self.builtin
    }

    /// Renders `messages`.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        opts: &RenderOptions,
    ) -> Result<String, ChatError> {
        self.render_values(Value::from_serialize(messages), opts)
    }

    /// Renders messages given as JSON objects (for `tool_calls`, multi-part content, ...).
    pub fn render_json(
        &self,
        messages: &[serde_json::Value],
        opts: &RenderOptions,
    ) -> Result<String, ChatError> {
        self.render_values(Value::from_serialize(messages), opts)
    }

    fn render_values(&self, messages: Value, opts: &RenderOptions) -> Result<String, ChatError> {
        let mut ctx: BTreeMap<String, Value> = BTreeMap::new();
        for (k, v) in &opts.extra {
            ctx.insert(k.clone(), Value::from_serialize(v));
        }
        ctx.insert("messages".into(), messages);
        ctx.insert(
            "add_generation_prompt".into(),
            Value::from(opts.add_generation_prompt),
        );
        ctx.insert("bos_token".into(), Value::from(opts.bos_token.as_str()));
        ctx.insert("eos_token".into(), Value::from(opts.eos_token.as_str()));
        let tmpl = self.env.get_template(NAME).map_err(|e| ChatError::Render {
            message: describe(&e),
        })?;
        tmpl.render(ctx).map_err(|e| ChatError::Render {
            message: describe(&e),
        })
    }
}

/// transformers renders `{% generation %}...{% endgeneration %}` (its assistant-mask extension)
/// as the plain body. minijinja has no such tag, so it becomes an always-true `if` block with the
/// same whitespace-control markers.
fn rewrite_generation_tags(source: &str) -> String {
    if !source.contains("generation") {
        return source.to_string();
    }
    static TAG: std::sync::OnceLock<fancy_regex::Regex> = std::sync::OnceLock::new();
    let re = TAG.get_or_init(|| {
        fancy_regex::Regex::new(r"\{%([-+]?)\s*(end)?generation\s*([-+]?)%\}")
            .expect("static pattern compiles")
    });
    re.replace_all(source, |c: &fancy_regex::Captures<'_>| {
        let body = if c.get(2).is_some() {
            "endif"
        } else {
            "if true"
        };
        format!("{{%{} {body} {}%}}", &c[1], &c[3])
    })
    .into_owned()
}

/// The error with its cause chain and template location, on one line per cause.
fn describe(e: &Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(cause) = src {
        let _ = write!(s, ": {cause}");
        src = cause.source();
    }
    s
}

/// Jinja2's `length`: `len()` of the value, where an undefined value has length 0 (minijinja's
/// own filter rejects undefined).
fn length(v: Value) -> Result<usize, Error> {
    if v.is_undefined() {
        return Ok(0);
    }
    v.len().ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("cannot calculate length of value of type {}", v.kind()),
        )
    })
}

/// Python's `str()` of a template value: `None`, `True`, `[1, 'a']`, `{'k': 'v'}`, as Jinja2
/// prints values (minijinja would print `none`, `true` and JSON-like containers).
fn py_str(v: &Value) -> String {
    match v.kind() {
        ValueKind::String => v.as_str().unwrap_or_default().to_string(),
        _ => {
            let mut out = String::new();
            py_repr(v, &mut out);
            out
        }
    }
}

fn py_repr(v: &Value, out: &mut String) {
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if v.is_true() { "True" } else { "False" }),
        ValueKind::String => py_repr_str(v.as_str().unwrap_or_default(), out),
        ValueKind::Seq | ValueKind::Iterable => {
            out.push('[');
            for (i, item) in v.try_iter().into_iter().flatten().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_repr(&item, out);
            }
            out.push(']');
        }
        ValueKind::Map => {
            out.push('{');
            for (i, k) in v.try_iter().into_iter().flatten().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_repr(&k, out);
                out.push_str(": ");
                py_repr(&v.get_item(&k).unwrap_or_default(), out);
            }
            out.push('}');
        }
        _ => {
            let _ = write!(out, "{v}");
        }
    }
}

/// Python `repr()` of a string (quote choice and escapes as CPython does for common characters).
fn py_repr_str(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || (0x7f..=0xa0).contains(&(c as u32)) || c == '\u{ad}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            '\u{2028}'
            | '\u{2029}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2060}'..='\u{2064}'
            | '\u{feff}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// Jinja2's `indent(width=4, first=False, blank=False)`, which keeps a trailing newline
/// (minijinja's drops it).
fn indent(
    s: String,
    width: Option<Value>,
    first: Option<bool>,
    blank: Option<bool>,
    kwargs: Kwargs,
) -> Result<String, Error> {
    let width = match kwargs.get::<Option<Value>>("width")? {
        Some(w) => Some(w),
        None => width,
    };
    let first = kwargs.get::<Option<bool>>("first")?.or(first);
    let blank = kwargs.get::<Option<bool>>("blank")?.or(blank);
    kwargs.assert_all_used()?;
    let prefix = match width {
        None => "    ".to_string(),
        Some(w) => match (w.as_str(), w.as_i64()) {
            (Some(p), _) => p.to_string(),
            (None, Some(n)) => " ".repeat(n.max(0) as usize),
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    "indent: width must be an int or a string",
                ))
            }
        },
    };
    let text = format!("{s}\n");
    let lines = py_splitlines(&text);
    let mut rv = String::new();
    if blank.unwrap_or(false) {
        rv = lines.join(&format!("\n{prefix}"));
    } else if let Some((head, rest)) = lines.split_first() {
        rv.push_str(head);
        if !rest.is_empty() {
            rv.push('\n');
            let body: Vec<String> = rest
                .iter()
                .map(|l| {
                    if l.is_empty() {
                        String::new()
                    } else {
                        format!("{prefix}{l}")
                    }
                })
                .collect();
            rv.push_str(&body.join("\n"));
        }
    }
    if first.unwrap_or(false) {
        rv.insert_str(0, &prefix);
    }
    Ok(rv)
}

/// Python's `str.splitlines()` (no line ends kept).
fn py_splitlines(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut it = s.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        let is_break = matches!(
            c,
            '\n' | '\r'
                | '\u{0b}'
                | '\u{0c}'
                | '\u{1c}'
                | '\u{1d}'
                | '\u{1e}'
                | '\u{85}'
                | '\u{2028}'
                | '\u{2029}'
        );
        if !is_break {
            continue;
        }
        out.push(&s[start..i]);
        let mut end = i + c.len_utf8();
        if c == '\r' {
            if let Some(&(j, '\n')) = it.peek() {
                it.next();
                end = j + 1;
            }
        }
        start = end;
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}

fn raise_exception(msg: String) -> Result<Value, Error> {
    Err(Error::new(
        ErrorKind::InvalidOperation,
        format!("raise_exception: {msg}"),
    ))
}

/// `strftime_now(format)` with the common `%d %m %Y %y %b %B %H %M %S %%` directives (UTC).
fn strftime_now(format: String) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    strftime(&format, secs)
}

fn strftime(format: &str, unix_secs: u64) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let days = (unix_secs / 86_400) as i64;
    let rem = unix_secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let m = MONTHS[(month - 1) as usize];
        match chars.next() {
            Some('d') => {
                let _ = write!(out, "{day:02}");
            }
            Some('m') => {
                let _ = write!(out, "{month:02}");
            }
            Some('Y') => {
                let _ = write!(out, "{year}");
            }
            Some('y') => {
                let _ = write!(out, "{:02}", year % 100);
            }
            Some('b') => out.push_str(&m[..3]),
            Some('B') => out.push_str(m),
            Some('H') => {
                let _ = write!(out, "{:02}", rem / 3600);
            }
            Some('M') => {
                let _ = write!(out, "{:02}", rem / 60 % 60);
            }
            Some('S') => {
                let _ = write!(out, "{:02}", rem % 60);
            }
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// Python's `json.dumps(value, ensure_ascii=False, indent=indent, separators=..., sort_keys=...)`,
/// the filter HF installs as `tojson` (minijinja's own escapes `<`, `>` and `&` for HTML).
fn tojson(value: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent: Option<Value> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let separators: Option<Value> = kwargs.get("separators")?;
    let _: Option<Value> = kwargs.get("ensure_ascii")?;
    kwargs.assert_all_used()?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() || v.is_undefined() => None,
        Some(v) => match (v.as_i64(), v.as_str()) {
            (Some(n), _) => Some(" ".repeat(n.max(0) as usize)),
            (None, Some(s)) => Some(s.to_string()),
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    "tojson: indent must be an int or a string",
                ))
            }
        },
    };
    let (item_sep, key_sep) = match separators {
        Some(v) if v.kind() == ValueKind::Seq => {
            let a = v.get_item_by_index(0)?;
            let b = v.get_item_by_index(1)?;
            (
                a.as_str().unwrap_or(", ").to_string(),
                b.as_str().unwrap_or(": ").to_string(),
            )
        }
        _ => (
            (if indent.is_some() { "," } else { ", " }).to_string(),
            ": ".to_string(),
        ),
    };
    let fmt = JsonFmt {
        indent,
        item_sep,
        key_sep,
        sort_keys: sort_keys.unwrap_or(false),
    };
    let mut out = String::new();
    fmt.write(&value, 0, &mut out)?;
    Ok(Value::from_safe_string(out))
}

struct JsonFmt {
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
}

impl JsonFmt {
    fn newline(&self, depth: usize, out: &mut String) {
        if let Some(ind) = &self.indent {
            out.push('\n');
            for _ in 0..depth {
                out.push_str(ind);
            }
        }
    }

    fn write(&self, v: &Value, depth: usize, out: &mut String) -> Result<(), Error> {
        match v.kind() {
            ValueKind::Undefined | ValueKind::None => out.push_str("null"),
            ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
            ValueKind::Number => out.push_str(&v.to_string()),
            ValueKind::String => write_json_string(v.as_str().unwrap_or_default(), out),
            ValueKind::Map => {
                let mut keys: Vec<Value> = v.try_iter()?.collect();
                if self.sort_keys {
                    keys.sort();
                }
                if keys.is_empty() {
                    out.push_str("{}");
                    return Ok(());
                }
                out.push('{');
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push_str(&self.item_sep);
                    }
                    self.newline(depth + 1, out);
                    match k.as_str() {
                        Some(s) => write_json_string(s, out),
                        None => write_json_string(&k.to_string(), out),
                    }
                    out.push_str(&self.key_sep);
                    self.write(&v.get_item(k)?, depth + 1, out)?;
                }
                self.newline(depth, out);
                out.push('}');
            }
            ValueKind::Seq | ValueKind::Iterable => {
                let items: Vec<Value> = v.try_iter()?.collect();
                if items.is_empty() {
                    out.push_str("[]");
                    return Ok(());
                }
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(&self.item_sep);
                    }
                    self.newline(depth + 1, out);
                    self.write(item, depth + 1, out)?;
                }
                self.newline(depth, out);
                out.push(']');
            }
            _ => write_json_string(&v.to_string(), out),
        }
        Ok(())
    }
}

fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Built-in formats, named as in llama.cpp (`llama-chat.cpp`). `mistral` is `mistral-v1`.
const BUILTINS: &[(&str, &str)] = &[
    ("chatml", CHATML),
    ("llama2", LLAMA2),
    ("llama2-sys", LLAMA2_SYS),
    ("llama3", LLAMA3),
    ("mistral", MISTRAL_V1),
    ("mistral-v1", MISTRAL_V1),
    ("mistral-v3", MISTRAL_V3),
    ("mistral-v7", MISTRAL_V7),
    ("zephyr", ZEPHYR),
    ("phi3", PHI3),
    ("gemma", GEMMA),
];

const CHATML: &str = "{%- for m in messages -%}\
{{- '<|im_start|>' ~ m.role ~ '\\n' ~ m.content ~ '<|im_end|>\\n' -}}\
{%- endfor -%}\
{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}";

/// `[INST]` turns; a system message is folded into the first turn as plain text.
const LLAMA2: &str = "{%- set ns = namespace(inside=true) -%}{{- '[INST] ' -}}\
{%- for m in messages -%}\
{%- if not ns.inside -%}{%- set ns.inside = true -%}{{- '[INST] ' -}}{%- endif -%}\
{%- if m.role == 'system' -%}{{- m.content ~ '\\n' -}}\
{%- elif m.role == 'user' -%}{{- m.content ~ ' [/INST]' -}}\
{%- else -%}{{- m.content ~ '</s>' -}}{%- set ns.inside = false -%}{%- endif -%}\
{%- endfor -%}";

/// Like `llama2`, with the system message in `<<SYS>>` tags.
const LLAMA2_SYS: &str = "{%- set ns = namespace(inside=true) -%}{{- '[INST] ' -}}\
{%- for m in messages -%}\
{%- if not ns.inside -%}{%- set ns.inside = true -%}{{- '[INST] ' -}}{%- endif -%}\
{%- if m.role == 'system' -%}{{- '<<SYS>>\\n' ~ m.content ~ '\\n<</SYS>>\\n\\n' -}}\
{%- elif m.role == 'user' -%}{{- m.content ~ ' [/INST]' -}}\
{%- else -%}{{- m.content ~ '</s>' -}}{%- set ns.inside = false -%}{%- endif -%}\
{%- endfor -%}";

const LLAMA3: &str = "{%- for m in messages -%}\
{{- '<|start_header_id|>' ~ m.role ~ '<|end_header_id|>\\n\\n' ~ (m.content | trim) ~ '<|eot_id|>' -}}\
{%- endfor -%}\
{%- if add_generation_prompt -%}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}{%- endif -%}";

const MISTRAL_V1: &str = "{%- set ns = namespace(inside=false) -%}\
{%- for m in messages -%}\
{%- if not ns.inside -%}{%- set ns.inside = true -%}{{- ' [INST] ' -}}{%- endif -%}\
{%- if m.role == 'system' -%}{{- m.content ~ '\\n\\n' -}}\
{%- elif m.role == 'user' -%}{{- m.content ~ ' [/INST]' -}}\
{%- else -%}{{- ' ' ~ m.content ~ '</s>' -}}{%- set ns.inside = false -%}{%- endif -%}\
{%- endfor -%}";

const MISTRAL_V3: &str = "{%- set ns = namespace(inside=false) -%}\
{%- for m in messages -%}\
{%- if not ns.inside -%}{%- set ns.inside = true -%}{{- '[INST] ' -}}{%- endif -%}\
{%- if m.role == 'system' -%}{{- m.content ~ '\\n\\n' -}}\
{%- elif m.role == 'user' -%}{{- m.content ~ '[/INST]' -}}\
{%- else -%}{{- ' ' ~ (m.content | trim) ~ '</s>' -}}{%- set ns.inside = false -%}{%- endif -%}\
{%- endfor -%}";

const MISTRAL_V7: &str = "{%- for m in messages -%}\
{%- if m.role == 'system' -%}{{- '[SYSTEM_PROMPT] ' ~ m.content ~ '[/SYSTEM_PROMPT]' -}}\
{%- elif m.role == 'user' -%}{{- '[INST] ' ~ m.content ~ '[/INST]' -}}\
{%- else -%}{{- ' ' ~ m.content ~ '</s>' -}}{%- endif -%}\
{%- endfor -%}";

const ZEPHYR: &str = "{%- for m in messages -%}\
{{- '<|' ~ m.role ~ '|>\\n' ~ m.content ~ '<|endoftext|>\\n' -}}\
{%- endfor -%}\
{%- if add_generation_prompt -%}{{- '<|assistant|>\\n' -}}{%- endif -%}";

const PHI3: &str = "{%- for m in messages -%}\
{{- '<|' ~ m.role ~ '|>\\n' ~ m.content ~ '<|end|>\\n' -}}\
{%- endfor -%}\
{%- if add_generation_prompt -%}{{- '<|assistant|>\\n' -}}{%- endif -%}";

/// Gemma has no system role: system text is prepended to the next user turn.
const GEMMA: &str = "{%- set ns = namespace(system='') -%}\
{%- for m in messages -%}\
{%- if m.role == 'system' -%}{%- set ns.system = ns.system ~ (m.content | trim) -%}\
{%- else -%}\
{%- set role = 'model' if m.role == 'assistant' else m.role -%}\
{{- '<start_of_turn>' ~ role ~ '\\n' -}}\
{%- if ns.system and role != 'model' -%}{{- ns.system ~ '\\n\\n' -}}{%- set ns.system = '' -%}{%- endif -%}\
{{- (m.content | trim) ~ '<end_of_turn>\\n' -}}\
{%- endif -%}\
{%- endfor -%}\
{%- if add_generation_prompt -%}{{- '<start_of_turn>model\\n' -}}{%- endif -%}";

#[cfg(test)]
mod tests {
    use super::*;

    fn conversation() -> Vec<ChatMessage> {
        vec![
            ChatMessage::new("system", "You are a helpful assistant"),
            ChatMessage::new("user", "Hello"),
            ChatMessage::new("assistant", "Hi there"),
            ChatMessage::new("user", "Who are you"),
            ChatMessage::new("assistant", "   I am an assistant   "),
            ChatMessage::new("user", "Another question"),
        ]
    }

    fn render(name: &str) -> String {
        let opts = RenderOptions {
            add_generation_prompt: true,
            ..Default::default()
        };
        ChatTemplate::builtin(name)
            .unwrap()
            .render(&conversation(), &opts)
            .unwrap()
    }

    #[test]
    fn builtins_match_llama_cpp_formats() {
        // Expected strings follow llama.cpp's llm_chat_apply_template for the same conversation.
        assert_eq!(
            render("chatml"),
            "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n\
<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n\
<|im_start|>assistant\n   I am an assistant   <|im_end|>\n<|im_start|>user\nAnother question<|im_end|>\n\
<|im_start|>assistant\n"
        );
        assert_eq!(
            render("llama2"),
            "[INST] You are a helpful assistant\nHello [/INST]Hi there</s>[INST] Who are you [/INST]   I am an assistant   </s>\
[INST] Another question [/INST]"
        );
        assert_eq!(
            render("llama2-sys"),
            "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi there</s>[INST] Who are you [/INST]   \
I am an assistant   </s>[INST] Another question [/INST]"
        );
        assert_eq!(
            render("llama3"),
            "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant<|eot_id|>\
<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|>\
<|start_header_id|>user<|end_header_id|>\n\nWho are you<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nI am an assistant<|eot_id|>\
<|start_header_id|>user<|end_header_id|>\n\nAnother question<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
        );
        assert_eq!(
            render("mistral-v1"),
            concat!(
                " [INST] You are a helpful assistant\n\nHello [/INST] Hi there</s>",
                " [INST] Who are you [/INST]    I am an assistant   </s>",
                " [INST] Another question [/INST]"
            )
        );
        assert_eq!(
            render("mistral-v3"),
            "[INST] You are a helpful assistant\n\nHello[/INST] Hi there</s>[INST] Who are you[/INST] I am an assistant</s>\
[INST] Another question[/INST]"
        );
        assert_eq!(
            render("mistral-v7"),
            concat!(
                "[SYSTEM_PROMPT] You are a helpful assistant[/SYSTEM_PROMPT][INST] Hello[/INST] Hi there</s>",
                "[INST] Who are you[/INST]    I am an assistant   </s>[INST] Another question[/INST]"
            )
        );
        assert_eq!(
            render("zephyr"),
            "<|system|>\nYou are a helpful assistant<|endoftext|>\n<|user|>\nHello<|endoftext|>\n<|assistant|>\nHi there<|endoftext|>\n\
<|user|>\nWho are you<|endoftext|>\n<|assistant|>\n   I am an assistant   <|endoftext|>\n<|user|>\nAnother question<|endoftext|>\n\
<|assistant|>\n"
        );
        assert_eq!(
            render("gemma"),
            "<start_of_turn>user\nYou are a helpful assistant\n\nHello<end_of_turn>\n<start_of_turn>model\nHi there<end_of_turn>\n\
<start_of_turn>user\nWho are you<end_of_turn>\n<start_of_turn>model\nI am an assistant<end_of_turn>\n\
<start_of_turn>user\nAnother question<end_of_turn>\n<start_of_turn>model\n"
        );
        assert_eq!(render("mistral"), render("mistral-v1"));
    }

    #[test]
    fn python_methods_exceptions_and_tojson() {
        let t = ChatTemplate::new(
            "{% for m in messages %}{% if m.role not in ['user', 'assistant'] %}{{ raise_exception('bad role ' + m.role) }}{% endif %}\
{{ m.content.strip().upper() }}{% if m.content.startswith(' h') %}!{% endif %}{% endfor %}{{ bos_token }}{{ eos_token }}",
        )
        .unwrap();
        let opts = RenderOptions {
            bos_token: "<s>".into(),
            eos_token: "</s>".into(),
            ..Default::default()
        };
        assert_eq!(
            t.render(&[ChatMessage::new("user", " hi ")], &opts)
                .unwrap(),
            "HI!<s></s>"
        );
        let e = t
            .render(&[ChatMessage::new("tool", "x")], &opts)
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad role tool"), "{e}");

        let t = ChatTemplate::new("{{ tools | tojson }}|{{ tools | tojson(indent=2) }}").unwrap();
        let mut opts = RenderOptions::default();
        // (serde_json's maps are sorted by key, so the keys are given in order here.)
        opts.extra.insert(
            "tools".into(),
            serde_json::json!([{"a": "f<x>\n", "n": 1.5, "ok": true, "v": null}]),
        );
        let out = t.render(&[], &opts).unwrap();
        assert_eq!(
            out,
            "[{\"a\": \"f<x>\\n\", \"n\": 1.5, \"ok\": true, \"v\": null}]|[\n  {\n    \"a\": \"f<x>\\n\",\n    \"n\": 1.5,\n    \"ok\": true,\n    \"v\": null\n  }\n]"
        );
    }

    #[test]
    fn loop_controls_and_namespaces() {
        // HF enables jinja2's loopcontrols extension.
        let t = ChatTemplate::new(
            "{% set ns = namespace(n=0) %}{% for m in messages %}{% if m.role == 'stop' %}{% break %}{% endif %}\
{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.n }}",
        )
        .unwrap();
        let msgs = [
            ChatMessage::new("user", "a"),
            ChatMessage::new("stop", ""),
            ChatMessage::new("user", "b"),
        ];
        assert_eq!(t.render(&msgs, &RenderOptions::default()).unwrap(), "1");
    }

    #[test]
    fn generation_tags_render_their_body() {
        let t = ChatTemplate::new(
            "{% for m in messages %}[{%- generation -%} {{ m.content }} {%- endgeneration %}]\n{% endfor %}",
        )
        .unwrap();
        let out = t
            .render(
                &[ChatMessage::new("assistant", "x")],
                &RenderOptions::default(),
            )
            .unwrap();
        assert_eq!(out, "[x]\n");
        assert!(t.source().contains("{%- generation -%}"));
    }

    #[test]
    fn prints_values_like_jinja2() {
        let t = ChatTemplate::new(
            "{{ none }}|{{ true }}|{{ [1, 'a', \"it's\"] }}|{{ {'k': none} }}|{{ x | string }}|{{ 'a\\nb\\n' | indent(2, first=true) }}|{{ 'q' | indent }}",
        )
        .unwrap();
        let mut opts = RenderOptions::default();
        opts.extra
            .insert("x".into(), serde_json::json!({"b": [true, 1.5]}));
        let out = t.render(&[], &opts).unwrap();
        assert_eq!(
            out,
            "None|True|[1, 'a', \"it's\"]|{'k': None}|{'b': [True, 1.5]}|  a\n  b\n|q"
        );
        assert_eq!(py_splitlines("a\r\nb\rc\n\nd"), ["a", "b", "c", "", "d"]);
    }

    #[test]
    fn errors_are_readable() {
        let e = ChatTemplate::new("{% for %}").unwrap_err().to_string();
        assert!(e.starts_with("chat template does not compile"), "{e}");
        let e = ChatTemplate::builtin("nope").unwrap_err().to_string();
        assert!(e.contains("chatml"), "{e}");
        let e = ChatTemplate::from_metadata(&Metadata::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("tokenizer.chat_template"), "{e}");
    }

    #[test]
    fn shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<ChatTemplate>();
        assert_send_sync::<crate::tokenizer::Tokenizer>();
    }

    #[test]
    fn strftime_formats() {
        // 2024-07-26 13:05:09 UTC
        assert_eq!(
            strftime("%d %b %Y %H:%M:%S %B %m %y %%", 1_721_999_109),
            "26 Jul 2024 13:05:09 July 07 24 %"
        );
    }
}
