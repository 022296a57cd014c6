//! Strict PEM reading: exactly one block, nothing but white space around it.
//!
//! x509-parser and the `pem` crate both accept text around a block and read only the first of
//! several; a credential file with two certificates or trailing junk is ambiguous, so rekey
//! refuses it here, before anything is parsed.

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
pub fn single(bytes: &[u8]) -> Result<Block, String> {
    let text =
        std::str::from_utf8(bytes).map_err(|_| "is not PEM text (binary data)".to_string())?;
    let Some(begin) = text.find("-----BEGIN ") else {
        return Err("is not PEM (no BEGIN line)".to_string());
    };
    if !text[..begin].trim().is_empty() {
        return Err("has text before the PEM block".to_string());
    }
    let blocks = pem::parse_many(text).map_err(|err| format!("is not valid PEM: {err}"))?;
    let block = match blocks.len() {
        0 => return Err("is not valid PEM: no complete block".to_string()),
        1 => blocks
            .into_iter()
            .next()
            .expect("one block: length checked"),
        n => return Err(format!("holds {n} PEM blocks, expected one")),
    };
    let end_marker = format!("-----END {}-----", block.tag());
    let Some(end) = text.rfind(&end_marker) else {
        return Err("is not valid PEM: no END line".to_string());
    };
    if !text[end + end_marker.len()..].trim().is_empty() {
        return Err("has text after the PEM block".to_string());
    }
    if block.contents().is_empty() {
        return Err("has an empty PEM block".to_string());
    }
    Ok(Block {
        label: block.tag().to_string(),
        der: block.into_contents(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = "-----BEGIN THING-----\nAAEC\n-----END THING-----\n";

    #[test]
    fn accepts_exactly_one_block() {
        let cases: &[(&str, String, Result<&[u8], &str>)] = &[
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
            ("truncated", BODY[..30].to_string(), Err("")),
        ];
        for (name, input, want) in cases {
            let got = single(input.as_bytes());
            match (want, &got) {
                (Ok(der), Ok(block)) => assert_eq!(&block.der[..], *der, "{name}"),
                (Err(""), Err(_)) => {}
                (Err(msg), Err(got)) => assert_eq!(got, msg, "{name}"),
                _ => panic!("{name}: got {got:?}"),
            }
        }
        assert!(single(&[0xff, 0xfe, 0x00]).is_err());
    }
}
