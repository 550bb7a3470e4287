//! Fuzz target: see checks/tokenizer.rs for the input format and what is checked.
#![no_main]

#[path = "../checks/tokenizer.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::run(data));
