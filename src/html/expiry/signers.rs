//! The expiry page's CA section: the active CA and, during a CA rotation, the stage and the CA
//! trusted beside it; which CA signed each credential, counted per CA, and the credentials not
//! signed by the active CA listed one by one (at most [`MAX_LISTED`], the rest counted), with
//! the step the rotation asks for next (docs/design.md §3a).

use std::fmt::Write as _;

use super::super::{MAX_LISTED, escape};
use crate::ca::{Ca, Role};
use crate::classify::{Kind, human, stamp};
use crate::survey::totals::Totals;
use crate::survey::{Identity, Scope};

/// A credential signed by a CA other than the active one.
#[derive(Debug)]
struct Other {
    node: String,
    service: String,
    kind: Kind,
    role: Role,
}

/// Which CA signed each credential, counted as the identities pass.
#[derive(Debug, Default)]
pub(super) struct Signers {
    /// Credentials per signing CA: active, next, previous.
    counts: [usize; 3],
    /// Credentials signed by another CA than the active one, the first [`MAX_LISTED`].
    others: Vec<Other>,
    /// Those beyond the list.
    more: usize,
}

fn slot(role: Role) -> usize {
    match role {
        Role::Active => 0,
        Role::Next => 1,
        Role::Previous => 2,
    }
}

impl Signers {
    pub(super) fn add(&mut self, identity: &Identity) {
        for c in identity.credentials() {
            let Some(role) = c.signed_by else { continue };
            self.counts[slot(role)] += 1;
            if role == Role::Active {
                continue;
            }
            if self.others.len() < MAX_LISTED {
                self.others.push(Other {
                    node: identity.node().to_string(),
                    service: identity.service().to_string(),
                    kind: c.kind,
                    role,
                });
            } else {
                self.more += 1;
            }
        }
    }

    /// The section: each CA with its role, how many credentials it signed, the stage, the
    /// credentials on the other CA, and what to run next.
    pub(super) fn write(&self, out: &mut String, scope: &Scope, totals: &Totals) {
        let stage = scope.stage().name();
        let _ = writeln!(
            out,
            "<p>CA rotation stage: <b id=\"ca-stage\">{stage}</b>.</p>\n<table id=\"ca-list\">\
             <tr><th>role</th><th>CA</th><th>algorithm</th><th>expires</th><th>left</th>\
             <th class=\"num\">credentials signed</th></tr>"
        );
        for (role, ca) in scope.trusted().each() {
            self.row(out, scope, role, ca);
        }
        out.push_str("</table>\n");
        if let Some(step) = totals.ca_step(scope) {
            let _ = writeln!(
                out,
                "<p class=\"alert\" id=\"ca-next\">{}</p>",
                escape(&step.next_line(scope))
            );
        }
        if self.others.is_empty() {
            return;
        }
        out.push_str(
            "<h3>Credentials not signed by the active CA</h3>\n<table id=\"ca-signed-by\">\
             <tr><th>node</th><th>service</th><th>credential</th><th>signed by</th></tr>\n",
        );
        for o in &self.others {
            let _ = writeln!(
                out,
                "<tr class=\"signed-by\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&o.node),
                escape(&o.service),
                o.kind.as_str(),
                o.role.as_str()
            );
        }
        out.push_str("</table>\n");
        if self.more > 0 {
            let _ = writeln!(
                out,
                "<p class=\"meta\">And {} not signed by the active CA: <code>rekey status \
                 --format json</code> gives each credential's <code>signed_by</code>.</p>",
                crate::count::count(self.more, "more credential", "more credentials")
            );
        }
    }

    fn row(&self, out: &mut String, scope: &Scope, role: Role, ca: &Ca) {
        let _ = writeln!(
            out,
            "<tr class=\"ca\" data-role=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td class=\"num\" id=\"ca-signed-{}\">{}</td></tr>",
            role.as_str(),
            role.as_str(),
            escape(&ca.common_name),
            ca.public.alg,
            stamp(ca.not_after),
            escape(&human(ca.not_after - scope.as_of)),
            role.as_str(),
            self.counts[slot(role)],
        );
    }
}
