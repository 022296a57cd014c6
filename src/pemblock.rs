//! Strict PEM reading: exactly one block, nothing but white space around it.
//!
//! x509-parser and the `pem` crate both accept text around a block and read only the first of
//! several; a credential file with two certificates or trailing junk is ambiguous, so rekey
//! refuses it here, before anything is parsed. The framing is read here (it is two marker lines);
//! the body is decoded by the `base64` crate.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::problem::Problem;

/// One decoded PEM block.
pub struct Block {
    pub label: String,
    pub der: Vec<u8>,
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Block({}, [{} bytes elided])",
            self.label,
            self.der.len()
        )
    }
}

/// Decodes the one PEM block that `bytes` must hold.
pub fn single(bytes: &[u8]) -> Result<Block, Problem> {
    let text =
        std::str::from_utf8(bytes).map_err(|_| "is not PEM text (binary data)".to_string())?;
    let Some(begin) = text.find("-----BEGIN ") else {
        return Err(Problem::new("is not PEM (no BEGIN line)"));
    };
    if !text[..begin].trim().is_empty() {
        return Err(Problem::new("has text before the PEM block"));
    }
    let after_begin = &text[begin + "-----BEGIN ".len()..];
    if after_begin.contains("-----BEGIN ") {
        let blocks = text.matches("-----BEGIN ").count();
        return Err(Problem::new(format!("holds {blocks} PEM blocks, expected one")));
    }
    let (label, rest) = after_begin
        .split_once("-----")
        .filter(|(label, _)| !label.contains('\n'))
        .ok_or("is not valid PEM: malformed BEGIN line")?;
    let (body, after) = split_at_end(rest, label).ok_or("is not valid PEM: no complete block")?;
    if !after.trim().is_empty() {
        return Err(Problem::new("has text after the PEM block"));
    }
    if body.contains(':') {
        return Err(
            "has PEM headers (a legacy encrypted key?), which rekey cannot use".into(),
        );
    }
    // Every byte copied, the write position moved past those that are not white space: no
    // branch per byte (a credential is read per identity, 10^5 and more a run).
    let mut compact = vec![0u8; body.len()];
    let mut len = 0;
    for &b in body.as_bytes() {
        compact[len] = b;
        len += usize::from(!b.is_ascii_whitespace());
    }
    compact.truncate(len);
    let der = STANDARD
        .decode(&compact)
        .map_err(|e| format!("is not valid PEM: {e}"))?;
    if der.is_empty() {
        return Err(Problem::new("has an empty PEM block"));
    }
    Ok(Block {
        label: label.to_string(),
        der,
    })
}

/// `rest` split around its first `-----END <label>-----` line marker: what is before it and what
/// is after it (as `split_once` on the whole marker, without building it).
fn split_at_end<'a>(rest: &'a str, label: &str) -> Option<(&'a str, &'a str)> {
    const END: &str = "-----END ";
    // "-----END " cannot overlap itself, so the first marker starts at one of these matches.
    rest.match_indices(END).find_map(|(at, _)| {
        let after = rest[at + END.len()..]
            .strip_prefix(label)?
            .strip_prefix("-----")?;
        Some((&rest[..at], after))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = "-----BEGIN THING-----\nAAEC\n-----END THING-----\n";

    #[test]
    fn accepts_exactly_one_block() {
        // (case, input, the bytes decoded or the start of the error)
        type Case<'a> = (&'a str, String, Result<&'a [u8], &'a str>);
        let cases: &[Case] = &[
            ("plain", BODY.to_string(), Ok(&[0, 1, 2])),
            (
                "surrounding white space",
                format!("\n  {BODY}\n\n"),
                Ok(&[0, 1, 2]),
            ),
            (
                "two blocks",
                format!("{BODY}{BODY}"),
                Err("holds 2 PEM blocks, expected one"),
            ),
            (
                "trailing junk",
                format!("{BODY}junk"),
                Err("has text after the PEM block"),
            ),
            (
                "leading junk",
                format!("junk\n{BODY}"),
                Err("has text before the PEM block"),
            ),
            (
                "no block",
                "hello".to_string(),
                Err("is not PEM (no BEGIN line)"),
            ),
            (
                "truncated",
                BODY[..30].to_string(),
                Err("is not valid PEM: no complete block"),
            ),
            ("bad base64", BODY.replace("AAEC", "A@EC"), Err("")),
            (
                "headers",
                BODY.replace("AAEC", "Proc-Type: 4,ENCRYPTED\nAAEC"),
                Err("has PEM headers"),
            ),
            (
                "the END line of another label first",
                BODY.replace("-----END", "-----END OTHER-----\n-----END"),
                Err("is not valid PEM: Invalid symbol"),
            ),
            (
                "an END line without its closing dashes",
                BODY.replace("THING-----\n", "THING\n").replacen("THING\n", "THING-----\n", 1),
                Err("is not valid PEM: no complete block"),
            ),
            (
                "white space of every kind inside the body",
                BODY.replace("AAEC", "A A\tE\r\nC"),
                Ok(&[0, 1, 2]),
            ),
        ];
        for (name, input, want) in cases {
            let got = single(input.as_bytes()).map_err(|e| e.to_string());
            match (want, &got) {
                (Ok(der), Ok(block)) => assert_eq!(&block.der[..], *der, "{name}"),
                (Err(""), Err(_)) => {}
                (Err(msg), Err(got)) => assert!(got.starts_with(msg), "{name}: {got}"),
                _ => panic!("{name}: got {got:?}"),
            }
        }
        assert!(single(&[0xff, 0xfe, 0x00]).is_err());
    }
}
