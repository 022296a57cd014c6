//! Why something rekey read cannot be used (or a certificate it made cannot be kept): a
//! sentence fragment, said of a file when one is named (`cert.pem was not issued by this CA`).
//! Problems become values of plans and reports, and their text is compared byte for byte:
//! [`Problem`]'s `Display` is that text.

/// Why a credential, a key or a certificate cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file it is said of (`cert.pem`), shown first.
    file: Option<&'static str>,
    /// What is wrong (`is not PEM (no BEGIN line)`).
    what: String,
}

impl Problem {
    pub(crate) fn new(what: impl Into<String>) -> Problem {
        Problem {
            file: None,
            what: what.into(),
        }
    }

    /// The same problem, said of the file `file`: `<file> <what>`.
    pub(crate) fn in_file(self, file: &'static str) -> Problem {
        match self.file {
            None => Problem {
                file: Some(file),
                what: self.what,
            },
            Some(_) => Problem {
                file: Some(file),
                what: self.to_string(),
            },
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(file) = self.file {
            write!(f, "{file} ")?;
        }
        f.write_str(&self.what)
    }
}

impl std::error::Error for Problem {}

impl From<String> for Problem {
    fn from(what: String) -> Problem {
        Problem::new(what)
    }
}

impl From<&str> for Problem {
    fn from(what: &str) -> Problem {
        Problem::new(what)
    }
}

#[cfg(test)]
mod tests {
    use super::Problem;

    #[test]
    fn a_problem_reads_as_one_fragment() {
        let cases = [
            ("alone", Problem::new("is empty"), "is empty"),
            (
                "of a file",
                Problem::new("is empty").in_file("token.jwt"),
                "token.jwt is empty",
            ),
            (
                "of a file, twice",
                Problem::new("is empty").in_file("a").in_file("b"),
                "b a is empty",
            ),
        ];
        for (name, problem, want) in cases {
            assert_eq!(problem.to_string(), want, "{name}");
        }
    }
}
