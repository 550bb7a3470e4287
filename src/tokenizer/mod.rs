//! Tokenizer and chat template, built from GGUF metadata (`tokenizer.ggml.*`,
//! `tokenizer.chat_template`) or a Hugging Face `tokenizer.json`.
