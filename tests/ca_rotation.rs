//! A CA rotation as the read side and `rotate` see it, with the stages laid out on disk by hand
//! and the new CA made by openssl: after `begin` both CAs are trusted and nothing changes;
//! after `switch` every credential of the previous CA is due, whatever its age and whether it
//! renews itself, and `rotate` reissues each under the new CA, which openssl verifies.

mod common;

use std::path::Path;

use common::*;
use rekey::fleet::IdentitySpec;
use rekey::keys::KeyAlg;

/// A fleet with a due identity, a self-renewing one issued an hour ago (fresh) and a healthy
/// self-renewing one.
fn fleet(root: &Path) {
    let ids = [
        IdentitySpec::new("node-01", "mocctl", issued(40)),
        IdentitySpec::new("node-01", "kms", fleet_window_hours_ago(1)),
        IdentitySpec::new("node-02", "kms", issued(10)),
    ];
    build(root, &ca_spec(KeyAlg::P256), &ids);
}

fn fleet_window_hours_ago(hours: i64) -> rekey::inspect::Window {
    rekey::fleet::window(as_of() - chrono::TimeDelta::hours(hours), 90)
}

/// A new CA made by openssl in `dir` (`ca.crt`, `ca.key`), valid for a year from the day
/// before AS_OF (`openssl ca -selfsign`, which takes dates, not the system clock).
fn openssl_ca(dir: &Path) {
    let work = tempfile::tempdir().unwrap();
    let w = |name: &str| work.path().join(name).to_str().unwrap().to_string();
    std::fs::write(w("index.txt"), "").unwrap();
    std::fs::write(
        w("openssl.cnf"),
        format!(
            "[ca]\ndefault_ca=own\n[own]\ndatabase={}\nnew_certs_dir={}\nrand_serial=yes\n\
             default_md=sha256\npolicy=any\nunique_subject=no\n[any]\norganizationName=optional\n\
             commonName=supplied\n[req]\ndistinguished_name=dn\nprompt=no\n[dn]\n\
             O=rekey test fleet\nCN=fleet test CA 2026-11-27\n[ext]\n\
             basicConstraints=critical,CA:TRUE\n\
             keyUsage=critical,keyCertSign,cRLSign,digitalSignature\n\
             subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
            w("index.txt"),
            work.path().display()
        ),
    )
    .unwrap();
    let (conf, key, csr, crt) = (w("openssl.cnf"), w("ca.key"), w("ca.csr"), w("ca.crt"));
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        &key,
    ]);
    openssl(&["req", "-new", "-key", &key, "-config", &conf, "-out", &csr]);
    openssl(&[
        "ca",
        "-batch",
        "-selfsign",
        "-config",
        &conf,
        "-keyfile",
        &key,
        "-in",
        &csr,
        "-startdate",
        "20261127000000Z",
        "-enddate",
        "20271127000000Z",
        "-extensions",
        "ext",
        "-notext",
        "-out",
        &crt,
    ]);
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(&crt, dir.join("ca.crt")).unwrap();
    std::fs::copy(&key, dir.join("ca.key")).unwrap();
}

fn status(root: &Path) -> serde_json::Value {
    let (code, stdout, stderr) = run(root, &["status", "--format", "json"]);
    assert!(code == 0 || code == 3, "status exited {code}: {stderr}");
    serde_json::from_str(&stdout).unwrap()
}

/// (path, state, reason, signed_by) of each credential.
fn rows(doc: &serde_json::Value) -> Vec<(String, String, String, String)> {
    doc["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or("null").to_string();
            (s("path"), s("state"), s("reason"), s("signed_by"))
        })
        .collect()
}

#[test]
fn readers_trust_both_cas_and_rotate_moves_every_credential_to_the_new_one() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    fleet(root);
    let before = rows(&status(root));
    assert!(before.iter().all(|r| r.3 == "active"), "{before:?}");

    // begin, by hand: the new CA waits in ca/next/; nothing changes for any credential.
    openssl_ca(&root.join("ca/next"));
    let begun = status(root);
    assert_eq!(begun["ca"]["rotation"]["stage"], "begun");
    assert_eq!(begun["ca"]["rotation"]["other"]["role"], "next");
    assert_eq!(rows(&begun), before);
    let (code, table, _) = run(root, &["status"]);
    assert!(table.contains("CA rotation begun: next CA"), "{table}");
    // The next stage is named, and is work due.
    assert!(table.contains("next: rekey ca switch --root"), "{table}");
    assert_eq!(code, 3, "{table}");
    let (code, _, summary) = run(root, &["plan", "-o", "-"]);
    assert!(
        summary.contains("next: rekey ca switch --root"),
        "{summary}"
    );
    assert_eq!(code, 3, "{summary}");
    let text = metrics(root);
    assert_eq!(
        ca_samples(&text),
        roles(&[
            ("active", ca_end(root, "ca")),
            ("next", ca_end(root, "ca/next"))
        ])
    );
    assert!(text.contains("\nrekey_ca_rotation_stage 1\n"), "{text}");

    switch(root);
    let switched = status(root);
    let (_, table, _) = run(root, &["status"]);
    assert!(table.contains("next: rekey rotate --root"), "{table}");
    assert!(
        table.contains("6 credentials still signed by the previous CA"),
        "{table}"
    );
    let text = metrics(root);
    assert_eq!(
        ca_samples(&text),
        roles(&[
            ("active", ca_end(root, "ca")),
            ("previous", ca_end(root, "ca/previous"))
        ])
    );
    assert!(text.contains("\nrekey_ca_rotation_stage 2\n"), "{text}");
    assert_eq!(switched["ca"]["rotation"]["stage"], "switched");
    assert_eq!(switched["ca"]["common_name"], "fleet test CA 2026-11-27");
    for (path, state, reason, signed_by) in rows(&switched) {
        assert_eq!(
            (state.as_str(), reason.as_str(), signed_by.as_str()),
            ("due", "signed by the previous CA", "previous"),
            "{path}"
        );
    }

    // A plan's summary names no CA stage here: its rotations are the step.
    let (_, _, summary) = run(root, &["plan", "-o", "-"]);
    assert!(
        summary.contains("plan: 3 identities, 6 credentials: 6 rotate"),
        "{summary}"
    );
    assert!(!summary.contains("next:"), "{summary}");

    // The next rotate reissues everything under the new CA, a full 90 days.
    let (code, stdout, stderr) = run(root, &["rotate"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(!stderr.contains("next: rekey rotate"), "{stderr}");
    let after = status(root);
    let (code, table, _) = run(root, &["status"]);
    assert!(table.contains("next: rekey ca finish --root"), "{table}");
    assert!(!table.contains("next: rekey rotate"), "{table}");
    assert_eq!(code, 3, "{table}");
    for (path, state, _, signed_by) in rows(&after) {
        assert_eq!(
            (state.as_str(), signed_by.as_str()),
            ("fresh", "active"),
            "{path}"
        );
    }
    let new_ca = root.join("ca/ca.crt");
    let old_ca = root.join("ca/previous/ca.crt");
    let kid = key_id(&new_ca);
    for identity in ["node-01/mocctl", "node-01/kms", "node-02/kms"] {
        let dir = root.join("nodes").join(identity);
        let cert = dir.join("cert.pem");
        let (ok, said) = openssl_verify_at(&new_ca, &cert, as_of());
        assert!(ok, "{identity}: {said}");
        let (old_ok, _) = openssl_verify_at(&old_ca, &cert, as_of());
        assert!(!old_ok, "{identity} still verifies with the previous CA");
        let end = openssl(&["x509", "-in", cert.to_str().unwrap(), "-noout", "-enddate"]);
        assert!(end.contains("Feb 26 00:00:00 2027"), "{identity}: {end}");
        let token = std::fs::read_to_string(dir.join("token.jwt")).unwrap();
        let header = jsonwebtoken::decode_header(token.trim()).unwrap();
        assert_eq!(header.kid.as_deref(), Some(kid.as_str()), "{identity}");
    }
}

/// `status --format prometheus`, checked by promtool.
fn metrics(root: &Path) -> String {
    let (_, text, stderr) = run(root, &["status", "--format", "prometheus"]);
    assert!(
        text.contains("# TYPE rekey_ca_rotation_stage gauge"),
        "{text}{stderr}"
    );
    promtool_check(&text);
    text
}

/// `ca switch`, by hand: the new CA signs, the old one is the previous.
fn switch(root: &Path) {
    std::fs::create_dir(root.join("ca/previous")).unwrap();
    for f in ["ca.crt", "ca.key"] {
        std::fs::rename(root.join("ca").join(f), root.join("ca/previous").join(f)).unwrap();
        std::fs::rename(root.join("ca/next").join(f), root.join("ca").join(f)).unwrap();
    }
    std::fs::remove_dir(root.join("ca/next")).unwrap();
}

fn roles(samples: &[(&str, i64)]) -> Vec<(String, i64)> {
    samples.iter().map(|(r, t)| (r.to_string(), *t)).collect()
}

/// (role, value) of each `rekey_ca_not_after_timestamp_seconds` sample.
fn ca_samples(text: &str) -> Vec<(String, i64)> {
    text.lines()
        .filter(|l| l.starts_with("rekey_ca_not_after_timestamp_seconds{"))
        .map(|l| {
            let role = l
                .split("role=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            let value = l.rsplit(' ').next().unwrap().parse().unwrap();
            (role.to_string(), value)
        })
        .collect()
}

/// The end of the CA certificate in `dir` (relative to the root), as openssl reads it.
fn ca_end(root: &Path, dir: &str) -> i64 {
    let cert = root.join(dir).join("ca.crt");
    let end = openssl(&["x509", "-in", cert.to_str().unwrap(), "-noout", "-enddate"]);
    let end = end.trim().trim_start_matches("notAfter=");
    chrono::NaiveDateTime::parse_from_str(end, "%b %e %H:%M:%S %Y GMT")
        .unwrap_or_else(|e| panic!("{end}: {e}"))
        .and_utc()
        .timestamp()
}

/// SHA-256 of a certificate's SubjectPublicKeyInfo, lowercase hex, computed by openssl.
fn key_id(cert: &Path) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let pubkey = tmp.path().join("pub.pem");
    let der = tmp.path().join("pub.der");
    openssl(&[
        "x509",
        "-in",
        cert.to_str().unwrap(),
        "-noout",
        "-pubkey",
        "-out",
        pubkey.to_str().unwrap(),
    ]);
    openssl(&[
        "pkey",
        "-pubin",
        "-in",
        pubkey.to_str().unwrap(),
        "-outform",
        "DER",
        "-out",
        der.to_str().unwrap(),
    ]);
    let digest = openssl(&["dgst", "-sha256", "-r", der.to_str().unwrap()]);
    digest.split_whitespace().next().unwrap().to_string()
}

#[test]
fn a_rotation_ca_others_may_change_is_refused_by_writers_and_named_by_readers() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    fleet(root);
    openssl_ca(&root.join("ca/next"));
    let next = root.join("ca/next");
    std::fs::set_permissions(&next, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (code, stdout, stderr) = run(root, &["rotate"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains(next.to_str().unwrap()), "{stderr}");
    let (_, _, warned) = run(root, &["status"]);
    assert!(warned.contains(next.to_str().unwrap()), "{warned}");
    // Its certificate, writable by others, is refused alike.
    std::fs::set_permissions(&next, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cert = next.join("ca.crt");
    std::fs::set_permissions(&cert, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (code, _, stderr) = run(root, &["rotate"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains(cert.to_str().unwrap()), "{stderr}");
}

/// SHA-256 of a certificate's DER, lowercase hex, computed by openssl.
fn cert_sha256(cert: &Path) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let der = tmp.path().join("ca.der");
    let (cert, der) = (cert.to_str().unwrap(), der.to_str().unwrap());
    openssl(&["x509", "-in", cert, "-outform", "DER", "-out", der]);
    let digest = openssl(&["dgst", "-sha256", "-r", der]);
    digest.split_whitespace().next().unwrap().to_string()
}

#[test]
fn a_plan_records_the_stage_and_both_cas_and_apply_refuses_it_in_another_stage() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("fleet");
    fleet(&root);
    let steady = tmp.path().join("steady.toml");
    run(&root, &["plan", "-o", steady.to_str().unwrap()]);
    let text = std::fs::read_to_string(&steady).unwrap();
    assert!(text.contains("\nca_stage = \"steady\"\n"), "{text}");
    assert!(!text.contains("ca_other_sha256"), "{text}");

    openssl_ca(&root.join("ca/next"));
    let begun = tmp.path().join("begun.toml");
    let (code, _, summary) = run(&root, &["plan", "-o", begun.to_str().unwrap()]);
    assert_eq!(code, 3, "{summary}");
    let text = std::fs::read_to_string(&begun).unwrap();
    assert!(text.contains("\nca_stage = \"begun\"\n"), "{text}");
    let other = cert_sha256(&root.join("ca/next/ca.crt"));
    assert!(
        text.contains(&format!("\nca_other_sha256 = \"{other}\"\n")),
        "{text}"
    );
    let (code, json, _) = run(&root, &["plan", "--format", "json"]);
    assert_eq!(code, 3);
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        (doc["ca_stage"].as_str(), doc["ca_other_sha256"].as_str()),
        (Some("begun"), Some(other.as_str()))
    );

    // The plan made before the rotation began is refused now, and the begun one once it is
    // undone: the same active CA, another stage.
    let (code, _, stderr) = run(&root, &["apply", steady.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(
            "was made in CA rotation stage steady, but the fleet's CA rotation is begun now"
        ),
        "{stderr}"
    );
    std::fs::remove_dir_all(root.join("ca/next")).unwrap();
    let (code, _, stderr) = run(&root, &["apply", begun.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(
            "was made in CA rotation stage begun, but the fleet's CA rotation is steady now"
        ),
        "{stderr}"
    );
    // Begun again under another new CA: the pair differs.
    openssl_ca(&root.join("ca/next"));
    let (code, _, stderr) = run(&root, &["apply", begun.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("was made under another pair of CAs"),
        "{stderr}"
    );
    // The plan of the stage as it is applies.
    let now = tmp.path().join("now.toml");
    run(&root, &["plan", "-o", now.to_str().unwrap()]);
    let (code, stdout, stderr) = run(&root, &["apply", now.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
}

#[test]
fn the_expiry_page_shows_both_cas_the_stage_and_which_ca_signed_each_credential() {
    use common::browser::{number, render, self_contained, text_of};
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("fleet");
    fleet(&root);
    openssl_ca(&root.join("ca/next"));
    switch(&root);
    let page = tmp.path().join("expiry.html");
    let (code, _, stderr) = run(
        &root,
        &["status", "--format", "html", "-o", page.to_str().unwrap()],
    );
    assert_eq!(code, 3, "{stderr}");
    let html = std::fs::read_to_string(&page).unwrap();
    self_contained(&html, &root);
    let dom = render(&page, "expiry-ca-switched");
    assert_eq!(text_of(&dom, "ca-stage"), "switched");
    assert_eq!(number(&dom, "ca-signed-active"), 0);
    assert_eq!(number(&dom, "ca-signed-previous"), 6);
    assert!(
        text_of(&dom, "ca-next").starts_with("next: rekey rotate --root"),
        "{dom}"
    );
    assert_eq!(dom.matches("<tr class=\"signed-by\">").count(), 6, "{dom}");
    for identity in [
        "<td>node-01</td><td>mocctl</td><td>cert</td><td>previous</td>",
        "<td>node-02</td><td>kms</td><td>token</td><td>previous</td>",
    ] {
        assert!(dom.contains(identity), "{identity}: {dom}");
    }
    assert!(
        dom.contains("data-role=\"previous\"") && dom.contains("fleet test CA 2026-11-27"),
        "{dom}"
    );

    let (code, stdout, stderr) = run(&root, &["rotate"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    run(
        &root,
        &["status", "--format", "html", "-o", page.to_str().unwrap()],
    );
    let dom = render(&page, "expiry-ca-rotated");
    assert_eq!(number(&dom, "ca-signed-active"), 6);
    assert_eq!(number(&dom, "ca-signed-previous"), 0);
    assert!(!dom.contains("class=\"signed-by\""), "{dom}");
    assert!(
        text_of(&dom, "ca-next").starts_with("next: rekey ca finish --root"),
        "{dom}"
    );
}
