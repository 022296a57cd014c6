//! The `subject_cn` pattern of a policy: the subject common name each identity's certificate
//! must have.

use serde::Serialize;

use crate::problem::Problem;

/// A `subject_cn` pattern (docs/design.md §4): text in which `{node}` and `{service}` stand for
/// the identity's directory names; non-empty, with no other brace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub(crate) struct SubjectCn(String);

impl SubjectCn {
    const PLACEHOLDERS: [&str; 2] = ["{node}", "{service}"];

    /// The pattern, or why it is not one.
    pub(crate) fn parse(text: &str) -> Result<SubjectCn, Problem> {
        if text.is_empty() {
            return Err(Problem::new("is empty"));
        }
        let mut rest = text;
        while let Some(at) = rest.find(['{', '}']) {
            let tail = &rest[at..];
            match Self::PLACEHOLDERS.iter().find(|p| tail.starts_with(*p)) {
                Some(p) => rest = &tail[p.len()..],
                None => {
                    return Err(Problem::new(format!(
                        "may hold only the placeholders {{node}} and {{service}}, and no other \
                         brace (at {tail:?})"
                    )));
                }
            }
        }
        Ok(SubjectCn(text.to_string()))
    }

    /// The subject CN the identity `node/service` must have.
    pub(crate) fn expand(&self, node: &str, service: &str) -> String {
        self.0.replace("{node}", node).replace("{service}", service)
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}
