//! How rekey shows text it did not write itself (directory names, paths, pieces of a plan or a
//! policy) to a person: [`Escaped`] makes a name safe on a terminal stream, [`clip`] bounds how
//! much of an input a message quotes, [`toml_line`] says on which line of a file a value is. Pure: values in, text out. JSON, TOML and HTML outputs never
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

/// A step into a TOML document: a key of a table, or an index into an array.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// The line (from 1) of TOML `text` where the value at `path` starts or, where the text holds
/// only the beginning of `path`, the deepest step it holds; `None` when the text does not parse
/// or holds not even the first step. For a message naming the line of a value the parser
/// accepted but rekey refuses: it parses the text again, so it is called on the way out only.
pub(crate) fn toml_line(text: &str, path: &[Step<'_>]) -> Option<usize> {
    use toml::de::{DeTable, DeValue};
    let doc = DeTable::parse(text).ok()?;
    let mut at: Option<&toml::Spanned<DeValue<'_>>> = None;
    let mut start = None;
    for step in path {
        let next = match (step, at.map(|v| v.get_ref())) {
            (Step::Key(key), None) => find(doc.get_ref(), key),
            (Step::Key(key), Some(DeValue::Table(table))) => find(table, key),
            (Step::Index(n), Some(DeValue::Array(items))) => items.get(*n),
            _ => None,
        };
        let Some(next) = next else { break };
        start = Some(next.span().start);
        at = Some(next);
    }
    let before = &text.as_bytes()[..start?.min(text.len())];
    Some(before.iter().filter(|b| **b == b'\n').count() + 1)
}

/// The value of `key` in a parsed TOML table.
fn find<'a, 'i>(
    table: &'a toml::de::DeTable<'i>,
    key: &str,
) -> Option<&'a toml::Spanned<toml::de::DeValue<'i>>> {
    table
        .iter()
        .find(|(k, _)| k.get_ref().as_ref() == key)
        .map(|(_, v)| v)
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
    fn toml_line_names_the_line_of_a_value() {
        use Step::{Index, Key};
        let text = "a = 1\n\n[t]\nb = 2\n\n[[x]]\nc = 3\n[[x]]\nd = { e = 4,\n f = 5 }\n";
        let cases: [(&str, &[Step<'_>], Option<usize>); 9] = [
            (
                "an entry of an array of tables: its header",
                &[Key("x"), Index(1)],
                Some(8),
            ),
            ("top level", &[Key("a")], Some(1)),
            ("in a table", &[Key("t"), Key("b")], Some(4)),
            (
                "in an array of tables",
                &[Key("x"), Index(0), Key("c")],
                Some(7),
            ),
            (
                "in the second entry",
                &[Key("x"), Index(1), Key("d")],
                Some(9),
            ),
            (
                "inline, on the next line",
                &[Key("x"), Index(1), Key("d"), Key("f")],
                Some(10),
            ),
            (
                "absent below: the deepest found",
                &[Key("t"), Key("z")],
                Some(3),
            ),
            ("absent", &[Key("z")], None),
            (
                "an index past the end",
                &[Key("x"), Index(2), Key("c")],
                Some(6),
            ),
        ];
        for (name, path, want) in cases {
            assert_eq!(toml_line(text, path), want, "{name}");
        }
        assert_eq!(toml_line("a = ", &[Key("a")]), None, "does not parse");
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
