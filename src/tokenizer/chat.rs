//! Chat templates: the Jinja template a model ships (`tokenizer.chat_template` in GGUF,
//! `chat_template` in `tokenizer_config.json`) rendered with `minijinja`, configured like
//! transformers' `apply_chat_template` (`trim_blocks`, `lstrip_blocks`, `raise_exception`,
//! Python string methods such as `.strip()`).
//!
//! A template is code that arrives with the model, so rendering runs under a budget (the
//! same natively and in wasm; see `SPEC/untrusted.md`): at most [`MAX_TEMPLATE_BYTES`] of
//! source, [`MAX_RECURSION`] levels of nesting, a fuel allowance ([`BASE_FUEL`] plus
//! [`FUEL_PER_MESSAGE`] per message plus one unit per [`INPUT_BYTES_PER_FUEL`] bytes of the
//! messages) and an output cap ([`BASE_OUTPUT_BYTES`] plus [`OUTPUT_PER_INPUT_BYTE`] times
//! the messages' bytes). Fuel counts instructions and, through our patch of minijinja
//! (`vendor/minijinja`, `value/meter.rs`), the work inside them: every value printed,
//! compared, hashed, serialised or iterated, 16 bytes of every string touched, and what an
//! operation is about to allocate; values nest at most 48 deep and no namespace may hold a
//! namespace (so none contains itself). Going over any limit is an [`Error::Tokenizer`]
//! naming it; nothing is kept between renders, so the engine stays usable.

use std::io::Write;

use serde::Serialize;

use crate::error::{Error, Result};

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// Longest template source accepted (real ones are 1–20 KB).
pub const MAX_TEMPLATE_BYTES: usize = 1 << 20;
/// minijinja's recursion counter limit (its own default and ceiling is 500; a macro call
/// costs about 10, an `if` or `for` 1). Kept lower for the browser's smaller stack.
pub const MAX_RECURSION: usize = 200;
/// Instructions a render may execute regardless of the conversation's length.
pub const BASE_FUEL: u64 = 1_000_000;
/// Further instructions per message (a template loops over the messages).
pub const FUEL_PER_MESSAGE: u64 = 10_000;
/// Further fuel: one unit per this many bytes of message roles and contents (a unit pays for
/// touching 16 bytes of a string, so each byte may be touched eight times).
pub const INPUT_BYTES_PER_FUEL: u64 = 2;
/// Output bytes a render may write regardless of the messages' length.
pub const BASE_OUTPUT_BYTES: usize = 1 << 20;
/// Further output bytes per byte of message roles and contents.
pub const OUTPUT_PER_INPUT_BYTE: usize = 4;

/// A writer that fails once more than `cap` bytes were written.
struct CappedWriter {
    out: Vec<u8>,
    cap: usize,
    over: bool,
}

impl Write for CappedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.out.len().saturating_add(buf.len()) > self.cap {
            self.over = true;
            return Err(std::io::Error::other("chat template output cap"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Renders `messages` through `template`. `add_generation_prompt` appends the assistant
/// header (`<|im_start|>assistant\n`) so the model answers next. `bos_token`/`eos_token`
/// are the strings templates may reference. The result is text to tokenize without adding
/// special tokens.
pub fn render_chat(
    template: &str,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    bos_token: Option<&str>,
    eos_token: Option<&str>,
) -> Result<String> {
    if template.len() > MAX_TEMPLATE_BYTES {
        return Err(Error::Tokenizer(format!(
            "chat template of {} bytes exceeds the {MAX_TEMPLATE_BYTES}-byte cap",
            template.len()
        )));
    }
    let n_messages = messages.len() as u64;
    let input_bytes: usize = messages.iter().map(|m| m.role.len() + m.content.len()).sum();
    let fuel = BASE_FUEL
        .saturating_add(FUEL_PER_MESSAGE.saturating_mul(n_messages))
        .saturating_add(input_bytes as u64 / INPUT_BYTES_PER_FUEL);
    let cap = BASE_OUTPUT_BYTES.saturating_add(OUTPUT_PER_INPUT_BYTE.saturating_mul(input_bytes));
    let mut env = minijinja::Environment::new();
    env.set_fuel(Some(fuel));
    env.set_recursion_limit(MAX_RECURSION);
    // No source kept for debug views (on by default in debug builds).
    env.set_debug(false);
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_unknown_method_callback(|state, value, method, args| {
        // Python's `str.join` and `str.replace` allocate by a count the template chooses:
        // charged to the render's fuel before they run (minijinja's own filters are patched
        // the same way).
        if let Some(s) = value.as_str() {
            let bytes = match (method, args) {
                ("join", [items, ..]) => {
                    let n = match items.len() {
                        Some(n) => n,
                        None => items.try_iter().map(|i| i.count()).unwrap_or(0),
                    };
                    s.len().saturating_mul(n)
                }
                ("replace", [old, new, ..]) => {
                    let (old, new) = (old.as_str().unwrap_or_default(), new.as_str().unwrap_or_default());
                    let hits = if old.is_empty() { s.chars().count() + 1 } else { s.matches(old).count() };
                    s.len().saturating_add(hits.saturating_mul(new.len()))
                }
                _ => 0,
            };
            if !minijinja::value::meter::charge_bytes(bytes) {
                return Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    format!("str.{method}: result too large for the render's budget"),
                ));
            }
        }
        minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
    });
    env.add_function(
        "raise_exception",
        |msg: String| -> std::result::Result<String, minijinja::Error> {
            Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                msg,
            ))
        },
    );
    // `{e}`, not `{e:#}`: the alternate form renders minijinja's debug view of the source,
    // which panics on some malformed spans (found by `examples/fuzz_inputs.rs`).
    let err = |e: minijinja::Error| Error::Tokenizer(format!("chat template: {e}"));
    env.add_template("chat", template).map_err(err)?;
    let ctx = minijinja::context! {
        messages => messages,
        add_generation_prompt => add_generation_prompt,
        bos_token => bos_token.unwrap_or(""),
        eos_token => eos_token.unwrap_or(""),
    };
    let mut w = CappedWriter { out: Vec::new(), cap, over: false };
    let tmpl = env.get_template("chat").map_err(err)?;
    let res = tmpl.render_captured_to(ctx, &mut w).map(drop);
    minijinja::value::meter::unlimit();
    if w.over {
        return Err(Error::Tokenizer(format!("chat template output exceeds its cap of {cap} bytes")));
    }
    match res {
        Ok(_) => String::from_utf8(w.out).map_err(|_| Error::Tokenizer("chat template output is not UTF-8".into())),
        Err(e) if e.kind() == minijinja::ErrorKind::OutOfFuel => Err(Error::Tokenizer(format!(
            "chat template ran out of its budget of {fuel} units of work (a runaway loop, macro or value?)"
        ))),
        Err(e) => Err(err(e)),
    }
}
