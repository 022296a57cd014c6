//! A headless Chromium (the `chromium-headless-shell` or `chromium` Debian package; .ci/run
//! installs it) for the tests of the HTML pages: the DOM it builds, a screenshot kept under
//! target/tmp/html-screenshots/ beside the page, and what every page must be.

use std::path::{Path, PathBuf};

use super::secrets;

/// The headless browser on PATH; fails the test with what to install when there is none.
pub fn browser() -> &'static str {
    for name in ["chromium-headless-shell", "chromium", "chromium-browser"] {
        let found = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if found {
            return name;
        }
    }
    panic!(
        "no headless Chromium to render the HTML reports: apt-get install chromium-headless-shell \
         (or chromium); .ci/run installs it"
    );
}

/// Runs the browser on `page` with `args` (a fresh profile, nothing fetched); returns stdout.
pub fn chromium(page: &Path, args: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("timeout")
        .args(["120", browser()])
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("the browser runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The DOM as the browser built it, and a screenshot kept as `name`.png.
pub fn render(page: &Path, name: &str) -> String {
    let dom = chromium(page, &["--dump-dom"]);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("html-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let shot = dir.join(format!("{name}.png"));
    std::fs::copy(page, dir.join(format!("{name}.html"))).unwrap();
    let _ = std::fs::remove_file(&shot);
    chromium(
        page,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,2000",
        ],
    );
    let png = std::fs::read(&shot).expect("the screenshot was written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{}",
        shot.display()
    );
    dom
}

/// The text of the element with `id` in `dom`.
pub fn text_of(dom: &str, id: &str) -> String {
    let start = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no element #{id}"));
    let from = start + dom[start..].find('>').unwrap() + 1;
    dom[from..from + dom[from..].find('<').unwrap()].to_string()
}

pub fn number(dom: &str, id: &str) -> usize {
    text_of(dom, id)
        .parse()
        .unwrap_or_else(|e| panic!("#{id}: {e}"))
}

/// A page must be whole by itself: no script, nothing to fetch, no secret.
pub fn self_contained(html: &str, root: &Path) {
    assert!(!html.contains("<script"), "no script");
    for fetch in [
        "src=\"http",
        "href=\"http",
        "url(",
        "@import",
        "<link",
        "<iframe",
    ] {
        assert!(!html.contains(fetch), "fetches nothing: {fetch}");
    }
    for secret in secrets(root) {
        assert!(!html.contains(&secret), "a secret leaked into the page");
    }
}
