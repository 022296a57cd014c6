//! How rekey shows text it did not write itself (directory names, paths, pieces of a plan or a
//! policy) to a person: [`Escaped`] makes a name safe on a terminal stream, [`clip`] bounds how
//! much of an input a message quotes. Pure: values in, text out. JSON, TOML and HTML outputs never
//! pass through here: they escape by their own rules (docs/design.md §5, "Names on a terminal").

use std::ffi::OsStr;
use std::fmt;

/// At most this many bytes of any input are quoted in a message.
pub(crate) const QUOTED_MAX: usize = 200;

/// A name or path as printed on a terminal stream (the status table, summaries, warnings, error
/// messages): control characters and other characters that move the cursor, change colours or
/// reorder text are shown as escapes, so a directory named `ESC[2J…` or holding a newline cannot
/// forge a row. `\t`, `\n` and `\r` by name; other ASCII controls, DEL and bytes that are not
/// UTF-8 as `\xNN`; Unicode controls and bidirectional or invisible formatting characters as
/// `\u{NNNN}`. Everything else, a backslash included, is shown as it is.
pub struct Escaped<'a>(&'a [u8]);

impl<'a> Escaped<'a> {
    pub fn new(text: &'a (impl AsRef<OsStr> + ?Sized)) -> Escaped<'a> {
        Escaped(text.as_ref().as_encoded_bytes())
    }
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            let valid = chunk.valid();
            let mut start = 0;
            for (at, c) in valid.char_indices() {
                if let Some(escape) = escape(c) {
                    f.write_str(&valid[start..at])?;
                    f.write_str(&escape)?;
                    start = at + c.len_utf8();
                }
            }
            f.write_str(&valid[start..])?;
            for byte in chunk.invalid() {
                write!(f, "\\x{byte:02x}")?;
            }
        }
        Ok(())
    }
}

/// The escape of a character a terminal must not see raw; `None` for one shown as it is.
fn escape(c: char) -> Option<String> {
    match c {
        '\t' => Some("\\t".to_string()),
        '\n' => Some("\\n".to_string()),
        '\r' => Some("\\r".to_string()),
        c if c.is_ascii_control() => Some(format!("\\x{:02x}", c as u32)),
        c if c.is_control() || invisible(c) => Some(format!("\\u{{{:04x}}}", c as u32)),
        _ => None,
    }
}

/// Formatting characters that reorder or hide text (bidirectional marks, embeddings, overrides
/// and isolates; zero-width characters; line and paragraph separators; the byte-order mark).
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{061c}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2069}'
            | '\u{feff}'
    )
}

/// `text` cut to at most [`QUOTED_MAX`] bytes (at a character boundary) on each of its lines,
/// with `…` where something was cut: what a parser's error message quotes of a 100 MB line stays
/// short.
pub(crate) fn clip(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(4096));
    for (n, line) in text.split('\n').enumerate() {
        if n > 0 {
            out.push('\n');
        }
        if line.len() <= QUOTED_MAX {
            out.push_str(line);
        } else {
            let mut end = QUOTED_MAX;
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            out.push_str(&line[..end]);
            out.push('…');
        }
    }
    out
}

/// `text` quoted as Rust's `{:?}` quotes it, after [`clip`]: for a piece of an input named in a
/// message.
pub(crate) fn quoted(text: &str) -> String {
    format!("{:?}", clip(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_terminal_would_act_on_is_escaped() {
        let cases: [(&str, &[u8], &str); 9] = [
            ("plain name", b"node-01", "node-01"),
            ("clear screen", b"a\x1b[2Jb", "a\\x1b[2Jb"),
            ("newline and tab", b"a\nb\tc\r", "a\\nb\\tc\\r"),
            ("delete", b"a\x7f", "a\\x7f"),
            ("not UTF-8", b"bad\xff\xfe", "bad\\xff\\xfe"),
            ("C1 control", "a\u{9b}b".as_bytes(), "a\\u{009b}b"),
            ("bidi override", "a\u{202e}b".as_bytes(), "a\\u{202e}b"),
            ("backslash as it is", b"a\\x1b", "a\\x1b"),
            ("other text as it is", "nöde ✓".as_bytes(), "nöde ✓"),
        ];
        for (name, input, want) in cases {
            let shown = Escaped(input).to_string();
            assert_eq!(shown, want, "{name}");
        }
    }

    #[test]
    fn long_lines_are_clipped_at_a_character_boundary() {
        assert_eq!(clip("short\nlines"), "short\nlines");
        let long = "é".repeat(150);
        let clipped = clip(&format!("1 | {long}\nnext"));
        let first = clipped.lines().next().unwrap();
        assert!(first.ends_with('…') && first.len() <= QUOTED_MAX + '…'.len_utf8());
        assert!(clipped.ends_with("\nnext"));
        assert_eq!(clip(&"a".repeat(QUOTED_MAX)), "a".repeat(QUOTED_MAX));
    }
}
