//! Chat templates: the Jinja template a model ships (`tokenizer.chat_template` in GGUF,
//! `chat_template` in `tokenizer_config.json`) rendered with `minijinja`, configured like
//! transformers' `apply_chat_template` (`trim_blocks`, `lstrip_blocks`, `raise_exception`,
//! Python string methods such as `.strip()`).
//!
//! A template is code that arrives with the model, so rendering runs under a budget (the
//! same natively and in wasm; see `SPEC/untrusted.md`): at most [`MAX_TEMPLATE_BYTES`] of
//! source, [`MAX_RECURSION`] levels of nesting, a fuel allowance of instructions
//! ([`BASE_FUEL`] plus [`FUEL_PER_MESSAGE`] per message) and an output cap
//! ([`BASE_OUTPUT_BYTES`] plus [`OUTPUT_PER_INPUT_BYTE`] times the messages' bytes). Going
//! over any of them is an [`Error::Tokenizer`] naming the limit; nothing is kept between
//! renders, so the engine stays usable.

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
    let fuel = BASE_FUEL.saturating_add(FUEL_PER_MESSAGE.saturating_mul(n_messages));
    let cap = BASE_OUTPUT_BYTES.saturating_add(OUTPUT_PER_INPUT_BYTE.saturating_mul(input_bytes));
    let mut env = minijinja::Environment::new();
    env.set_fuel(Some(fuel));
    env.set_recursion_limit(MAX_RECURSION);
    // No source kept for debug views (on by default in debug builds).
    env.set_debug(false);
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
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
    if w.over {
        return Err(Error::Tokenizer(format!("chat template output exceeds its cap of {cap} bytes")));
    }
    match res {
        Ok(_) => String::from_utf8(w.out).map_err(|_| Error::Tokenizer("chat template output is not UTF-8".into())),
        Err(e) if e.kind() == minijinja::ErrorKind::OutOfFuel => Err(Error::Tokenizer(format!(
            "chat template ran out of its budget of {fuel} steps (a runaway loop or macro?)"
        ))),
        Err(e) => Err(err(e)),
    }
}
