//! Stop strings in streamed text.

/// Holds back text that might be the start of a stop string, so streamed text never contains
/// part of one.
pub(super) struct StopMatcher {
    stops: Vec<String>,
    pending: String,
}

impl StopMatcher {
    pub(super) fn new(stops: Vec<String>) -> Self {
        StopMatcher { stops, pending: String::new() }
    }

    /// Adds text; returns (text now safe to emit, whether a stop string was found).
    pub(super) fn push(&mut self, text: &str) -> (String, bool) {
        self.pending.push_str(text);
        if let Some(cut) = self
            .stops
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| self.pending.find(s.as_str()))
            .min()
        {
            let out = self.pending[..cut].to_string();
            self.pending.clear();
            return (out, true);
        }
        // Longest suffix of pending that is a proper prefix of some stop string.
        let mut keep = 0;
        for s in &self.stops {
            for (i, _) in s.char_indices().skip(1) {
                if self.pending.ends_with(&s[..i]) {
                    keep = keep.max(i);
                }
            }
        }
        let split = self.pending.len() - keep;
        let out = self.pending[..split].to_string();
        self.pending.drain(..split);
        (out, false)
    }

    pub(super) fn flush(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}


#[cfg(test)]
mod tests {
    use super::StopMatcher;

    #[test]
    fn stop_strings_are_held_back_and_cut() {
        let mut m = StopMatcher::new(vec!["</s>".to_string(), "STOP".to_string()]);
        assert_eq!(m.push("hello <"), ("hello ".to_string(), false));
        assert_eq!(m.push("/"), (String::new(), false));
        assert_eq!(m.push("x"), ("</x".to_string(), false));
        assert_eq!(m.push("ab ST"), ("ab ".to_string(), false));
        assert_eq!(m.push("OP tail"), (String::new(), true));
    }
}
