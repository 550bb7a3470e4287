//! Fuzz target: see checks/gguf_stream.rs for the input format and what is checked.
#![no_main]

#[path = "../checks/gguf_stream.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::run(data));
