//! Fuzz target: see checks/chat_template.rs for the input format and what is checked.
#![no_main]

#[path = "../checks/chat_template.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::run(data));
