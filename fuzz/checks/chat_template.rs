//! Chat-template rendering of hostile templates: it must end quickly with the text or a typed
//! error (fuel, range budget, output cap, recursion limit), never panic, hang or blow memory.
//!
//! Input: the template, then optionally a NUL byte and the conversation: one flag byte
//! (bit 0: add_generation_prompt) followed by NUL-separated fields bos, eos, role, content, role,
//! content, ... Without a NUL, a fixed four-message conversation is used, so seed files are
//! plain template text.
//!
//! Shared by the fuzz target (fuzz/fuzz_targets/chat_template.rs) and the replay of
//! tests/fixtures/fuzz-regressions/chat_template/ in tests/fuzz_corpus.rs, so a crash found by the
//! fuzzer is checked the same way in the normal test suite.
use llama_webgpu::tokenizer::chat::{apply_chat_template, ChatMessage, MAX_TEMPLATE_OUTPUT};

/// Runs every check on one input; panics on a violation.
pub fn run(input: &[u8]) {
    let (template, conv) = match input.iter().position(|&b| b == 0) {
        Some(i) => (&input[..i], Some(&input[i + 1..])),
        None => (input, None),
    };
    let template = String::from_utf8_lossy(template);
    let (messages, add_generation_prompt, bos, eos) = match conv {
        None => (
            vec![
                ChatMessage::system("You are a helpful assistant."),
                ChatMessage::user("Hello!"),
                ChatMessage::assistant("Hi! <img src=x onerror=alert(1)>"),
                ChatMessage::user("{{ 7 * 7 }} {% raw %}"),
            ],
            true,
            "<|begin_of_text|>".to_string(),
            "<|eot_id|>".to_string(),
        ),
        Some(conv) => {
            let (flags, rest) = conv.split_first().map_or((0, &[][..]), |(f, r)| (*f, r));
            let mut fields = rest
                .split(|&b| b == 0)
                .map(|f| String::from_utf8_lossy(f).into_owned());
            let bos = fields.next().unwrap_or_default();
            let eos = fields.next().unwrap_or_default();
            let mut messages = Vec::new();
            while let Some(role) = fields.next() {
                messages.push(ChatMessage::new(role, fields.next().unwrap_or_default()));
            }
            (messages, flags & 1 != 0, bos, eos)
        }
    };
    match apply_chat_template(&template, &messages, add_generation_prompt, &bos, &eos) {
        Ok(text) => assert!(text.len() <= MAX_TEMPLATE_OUTPUT, "output cap not enforced"),
        Err(e) => assert_eq!(llama_webgpu::Error::from(e).code(), "TEMPLATE_ERROR"),
    }
}
