//! The GPT-2 byte-level alphabet: every byte is written as one printable Unicode character in BPE
//! token text (space → `Ġ`, newline → `Ċ`, …). Encoding goes through `tokenizers`' `ByteLevel`
//! pre-tokenizer; this module is the reverse mapping used to turn token text back into bytes.

use std::sync::OnceLock;

/// The character standing for `byte`: bytes that are printable Latin-1 (`!`..=`~`, `¡`..=`¬`,
/// `®`..=`ÿ`) stand for themselves; the remaining 68 bytes are numbered in order from U+0100.
fn byte_char(byte: u8) -> char {
    let printable = |b: u8| matches!(b, 0x21..=0x7e | 0xa1..=0xac | 0xae..=0xff);
    if printable(byte) {
        return byte as char;
    }
    let rank = (0..byte).filter(|&b| !printable(b)).count() as u32;
    char::from_u32(0x100 + rank).expect("in the BMP")
}

/// Maps a code point below U+0144 back to its byte; `None` for characters outside the alphabet.
fn table() -> &'static [Option<u8>; 0x144] {
    static TABLE: OnceLock<[Option<u8>; 0x144]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = [None; 0x144];
        for b in 0..=255u8 {
            t[byte_char(b) as usize] = Some(b);
        }
        t
    })
}

/// The byte a byte-level character stands for.
pub(crate) fn char_byte(c: char) -> Option<u8> {
    table().get(c as usize).copied().flatten()
}

/// Decodes the text of a normal byte-level token into bytes, as llama.cpp's `llama_decode_text`
/// does: each character maps to its byte; a character outside the alphabet is written as
/// `[UNK_BYTE_0x<hex of its UTF-8>` followed by the whole token text and `]`.
pub(crate) fn decode_token_text(text: &str, out: &mut Vec<u8>) {
    for c in text.chars() {
        match char_byte(c) {
            Some(b) => out.push(b),
            None => {
                out.extend_from_slice(b"[UNK_BYTE_0x");
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.extend_from_slice(format!("{b:02x}").as_bytes());
                }
                out.extend_from_slice(text.as_bytes());
                out.push(b']');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alphabet_is_a_bijection() {
        let mut seen = std::collections::HashSet::new();
        for b in 0..=255u8 {
            let c = byte_char(b);
            assert!(seen.insert(c));
            assert_eq!(char_byte(c), Some(b));
        }
        assert_eq!(byte_char(b' '), 'Ġ');
        assert_eq!(byte_char(b'\n'), 'Ċ');
        assert_eq!(char_byte('a'), Some(b'a'));
        assert_eq!(char_byte('€'), None);
    }

    #[test]
    fn unknown_characters_are_marked_like_llama_cpp() {
        let mut out = Vec::new();
        decode_token_text("aĠ€", &mut out);
        assert_eq!(out, b"a [UNK_BYTE_0xe282aca\xc4\xa0\xe2\x82\xac]".to_vec());
    }
}
