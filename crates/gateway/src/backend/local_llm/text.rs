//! The answer's text as it grows token by token: what can go out now. Text that might be the
//! start of a stop string is held back until it is known not to be one; a stop string ends the
//! answer and is not part of it; an incomplete UTF-8 character (a byte-level token may hold
//! part of one) waits for the rest.

/// The text given out so far, and what ends it.
#[derive(Debug)]
pub(super) struct TextOut {
    stops: Vec<String>,
    text: String,
    given: usize,
}

impl TextOut {
    /// Text ending at any of `stops` (empty ones ignored).
    pub(super) fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            text: String::new(),
            given: 0,
        }
    }

    /// With the whole answer decoded so far: the piece that can go out now, and whether a stop
    /// string was reached (the piece then ends just before it).
    pub(super) fn update(&mut self, decoded: &str) -> (&str, bool) {
        self.text.clear();
        self.text.push_str(decoded);
        let from = self.given;
        if !self.text.is_char_boundary(from) {
            return ("", false);
        }
        let stop = self
            .stops
            .iter()
            .filter_map(|s| self.text[from..].find(s.as_str()))
            .min();
        if let Some(at) = stop {
            self.given = from + at;
            return (&self.text[from..from + at], true);
        }
        let held = self
            .stops
            .iter()
            .map(|s| longest_suffix_prefix(&self.text[from..], s))
            .max()
            .unwrap_or(0);
        let mut end = self.text.len() - held;
        while self.text[from..end].ends_with('\u{FFFD}') {
            end -= '\u{FFFD}'.len_utf8();
        }
        self.given = end;
        (&self.text[from..end], false)
    }

    /// What was held back, at the answer's end.
    pub(super) fn finish(&mut self) -> &str {
        let from = self.given;
        self.given = self.text.len();
        self.text.get(from..).unwrap_or("")
    }
}

/// The length of the longest end of `text` that is a proper beginning of `stop`.
fn longest_suffix_prefix(text: &str, stop: &str) -> usize {
    (1..stop.len())
        .rev()
        .filter(|k| stop.is_char_boundary(*k))
        .find(|k| text.ends_with(&stop[..*k]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], steps: &[&str]) -> (Vec<String>, bool, String) {
        let stops: Vec<String> = stops.iter().map(|s| (*s).to_owned()).collect();
        let mut out = TextOut::new(&stops);
        let mut pieces = Vec::new();
        for step in steps {
            let (piece, stopped) = out.update(step);
            pieces.push(piece.to_owned());
            if stopped {
                return (pieces, true, String::new());
            }
        }
        let rest = out.finish().to_owned();
        (pieces, false, rest)
    }

    #[test]
    fn without_stops_each_step_gives_what_it_added() {
        let (pieces, stopped, rest) = run(&[], &["The", "The capital", "The capital is"]);
        assert_eq!(pieces, ["The", " capital", " is"]);
        assert!(!stopped);
        assert_eq!(rest, "");
    }

    #[test]
    fn a_stop_string_ends_the_text_before_it_even_across_steps() {
        let (pieces, stopped, _) = run(
            &["\n\nUser:"],
            &["Paris.", "Paris.\n", "Paris.\n\nUs", "Paris.\n\nUser: hi"],
        );
        assert_eq!(pieces.concat(), "Paris.");
        assert_eq!(pieces, ["Paris.", "", "", ""]);
        assert!(stopped);
    }

    #[test]
    fn held_text_that_is_no_stop_goes_out_later_or_at_the_end() {
        let (pieces, stopped, rest) = run(&["END"], &["a E", "a EN", "a ENx", "a ENxE"]);
        assert_eq!(pieces, ["a ", "", "ENx", ""]);
        assert!(!stopped);
        assert_eq!(rest, "E");
    }

    #[test]
    fn an_incomplete_character_waits_for_its_last_bytes() {
        let (pieces, _, rest) = run(&[], &["caf\u{FFFD}", "café", "café 🦀"]);
        assert_eq!(pieces, ["caf", "é", " 🦀"]);
        assert_eq!(rest, "");
    }
}
