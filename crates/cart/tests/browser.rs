//! The tutorial in a real browser: headless Chromium drives the sample started by the
//! README's scripts, exactly as a newcomer would, with the session server's TLS on
//! (`SAMPLE_TLS=1`) and the app token the scripts make.
//!
//! Needs Debian's `chromium` package (or CHROME=/path/to/chrome). It fails, never skips, when
//! Chromium is missing. With SCREENSHOTS=DIR it also saves the pictures of docs/tutorial.md.

#![allow(clippy::expect_used)] // tests: a panic is how a test fails

mod common;

use common::{ROOT, free_port};
use headless_chrome::{
    Browser, LaunchOptions, Tab, protocol::cdp::Page::CaptureScreenshotFormatOption,
};
use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("CHROME") {
        return path.into();
    }
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(out) = Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            && out.status.success()
        {
            return String::from_utf8_lossy(&out.stdout).trim().into();
        }
    }
    panic!(
        "Chromium is needed for this test: install it with `apt-get install -y chromium` (or set CHROME=/path/to/chrome)"
    );
}

/// The sample started by its scripts on free ports, stopped by its script even if the test fails.
struct Sample {
    env: Vec<(String, String)>,
    ports: (u16, u16),
    admin_port: u16,
    session_port: u16,
    run_dir: PathBuf,
}

impl Sample {
    fn start() -> Self {
        let run_dir = std::env::temp_dir().join(format!("cart-e2e-{}", std::process::id()));
        // Screenshots for the docs show the tutorial's own ports; tests use free ones.
        let tutorial = std::env::var_os("SCREENSHOTS").is_some();
        let port = |fixed: u16| if tutorial { fixed } else { free_port() };
        let ports = (port(9081), port(9082));
        let admin_port = port(9540);
        let session_port = port(9510);
        let env = vec![
            ("SAMPLE_RUN_DIR".into(), run_dir.display().to_string()),
            ("SAMPLE_TLS".into(), "1".into()),
            ("SESSION_LISTEN".into(), format!("127.0.0.1:{session_port}")),
            (
                "SESSION_ADMIN_LISTEN".into(),
                format!("127.0.0.1:{admin_port}"),
            ),
            ("CART_PORT_1".into(), ports.0.to_string()),
            ("CART_PORT_2".into(), ports.1.to_string()),
        ];
        let sample = Sample {
            env,
            ports,
            admin_port,
            session_port,
            run_dir,
        };
        sample.script("start-sample-server.sh");
        sample.script("start-sample.sh");
        sample
    }

    fn script(&self, name: &str) {
        self.script_with(name, &[]);
    }

    fn script_with(&self, name: &str, extra: &[(&str, &str)]) {
        let path = Path::new(ROOT).join("bin").join(name);
        // From another directory, as the scripts promise to work from anywhere.
        let out = Command::new(&path)
            .envs(self.env.iter().cloned())
            .envs(extra.iter().copied())
            .current_dir(std::env::temp_dir())
            .output()
            .expect("run script");
        assert!(
            out.status.success(),
            "{name} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn url(&self, port: u16) -> String {
        format!("http://127.0.0.1:{port}/Cart")
    }

    /// What the scripts made on the first run, and that the session server takes TLS and
    /// the carts' token only.
    fn check_secrets(&self) {
        use std::os::unix::fs::PermissionsExt;
        let secrets = self.run_dir.join("secrets");
        let mode =
            |path: &Path| std::fs::metadata(path).expect("made").permissions().mode() & 0o777;
        assert_eq!(mode(&secrets), 0o700);
        for file in [
            "auth",
            "cart.token",
            "admin.token",
            "csrf.key",
            "ca.pem",
            "server.key",
        ] {
            assert_eq!(mode(&secrets.join(file)), 0o600, "{file}");
        }
        let token = std::fs::read_to_string(secrets.join("cart.token")).expect("token");
        let tls = session_client::TlsOptions::from_files(Some(&secrets.join("ca.pem")), None)
            .expect("CA");
        let url = format!("https://127.0.0.1:{}", self.session_port);
        let client = |token: Option<&str>| {
            session_client::SessionClient::connect_lazy(session_client::ClientConfig {
                endpoints: vec![url.clone()],
                token: token.map(session_client::Token::new),
                tls: tls.clone(),
                app: Some("cart".into()),
                timeout: Duration::from_secs(2),
                ..Default::default()
            })
            .expect("client")
        };
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(async {
            let refused = client(None).get("anything").await.expect_err("no token");
            assert!(
                matches!(refused, session_client::Error::Unauthenticated(_)),
                "{refused}"
            );
            let answered = client(Some(token.trim())).get("anything").await;
            assert_eq!(
                answered.expect_err("no such session"),
                session_client::Error::NotFound
            );
        });
    }

    /// Stops the session server the way a crash or an upgrade would, without the carts.
    fn stop_session_server(&self) {
        let pidfile = self.run_dir.join("session-server.pid");
        let pid = std::fs::read_to_string(&pidfile).expect("the session server's pid file");
        let pid = pid.trim();
        assert!(
            Command::new("kill")
                .args(["-TERM", pid])
                .status()
                .expect("kill")
                .success()
        );
        wait_for("the session server to exit", || {
            !Path::new(&format!("/proc/{pid}")).exists()
        });
    }
}

impl Drop for Sample {
    fn drop(&mut self) {
        self.script("stop-sample.sh");
    }
}

fn launch() -> Browser {
    let args: Vec<&OsStr> = [
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ]
    .into_iter()
    .map(OsStr::new)
    .collect();
    let options = LaunchOptions::default_builder()
        .path(Some(chromium()))
        .headless(true)
        .sandbox(false)
        .window_size(Some((1000, 1000)))
        .args(args)
        .idle_browser_timeout(Duration::from_secs(120))
        .build()
        .expect("launch options");
    Browser::new(options).expect("Chromium starts")
}

fn js(tab: &Tab, expression: &str) -> serde_json::Value {
    tab.evaluate(expression, false)
        .expect("evaluate")
        .value
        .unwrap_or(serde_json::Value::Null)
}

fn text_of(tab: &Tab, selector: &str) -> String {
    js(
        tab,
        &format!("document.querySelector({selector:?}).innerText"),
    )
    .as_str()
    .unwrap_or_default()
    .to_owned()
}

/// Polls until `check` holds (a navigation started by a click finishes on its own time).
fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn url_has(tab: &Tab, part: &str) -> bool {
    tab.get_url().contains(part) && js(tab, "document.readyState") == "complete"
}

fn screenshot(tab: &Tab, name: &str) {
    if let Some(dir) = std::env::var_os("SCREENSHOTS") {
        let png = tab
            .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
            .expect("screenshot");
        std::fs::write(Path::new(&dir).join(name), png).expect("save screenshot");
    }
}

#[test]
fn the_tutorial_in_a_real_browser() {
    let sample = Sample::start();
    sample.check_secrets();
    let (first, second) = sample.ports;
    let browser = launch();
    let tab = browser.new_tab().expect("tab");

    // Step 3: open the first server, pick "Twin peaks tapes", press add.
    tab.navigate_to(&sample.url(first))
        .expect("navigate")
        .wait_until_navigated()
        .expect("loaded");
    assert_eq!(tab.get_title().expect("title"), "carts");
    screenshot(&tab, "tutorial-1-empty.png");
    add(&tab, "Twin peaks tapes");
    assert!(text_of(&tab, "#box").contains("Items in Cart: 1"));
    assert_eq!(
        js(&tab, "document.querySelector('select[name=item]').value"),
        "Twin peaks tapes",
        "the item added stays selected"
    );
    assert_eq!(
        js(
            &tab,
            "getComputedStyle(document.getElementById('box')).backgroundColor"
        ),
        "rgb(218, 165, 32)",
        "goldenrod"
    );
    assert_eq!(
        js(
            &tab,
            "getComputedStyle(document.querySelector('#cart a')).textDecorationLine"
        ),
        "underline",
        "cart lines look like links"
    );
    screenshot(&tab, "tutorial-2-added.png");

    // Step 4: follow the link in the box to the other server: the cart is intact.
    jump(&tab, second);
    assert!(text_of(&tab, "#cart").contains("Twin peaks tapes"));
    let box_text = text_of(&tab, "#box");
    assert!(
        box_text.contains(&format!("Current Server: {second}"))
            && box_text.contains("Items in Cart: 1"),
        "{box_text}"
    );
    assert_eq!(
        js(
            &tab,
            "getComputedStyle(document.getElementById('box')).backgroundColor"
        ),
        "rgb(143, 188, 143)",
        "darkseagreen"
    );
    let border = js(
        &tab,
        "getComputedStyle(document.getElementById('box')).border",
    );
    assert_eq!(border, "3px solid rgb(128, 128, 128)");
    screenshot(&tab, "tutorial-3-other-server.png");

    // Browsing history: two products viewed here show under "Recently viewed" over there.
    for id in ["nin-cd", "x-files"] {
        tab.navigate_to(&format!("{}/products/{id}", sample.url(second)))
            .expect("navigate")
            .wait_until_navigated()
            .expect("loaded");
    }
    assert_eq!(tab.get_title().expect("title"), "X-files movie");
    screenshot(&tab, "tutorial-4-product.png");
    tab.navigate_to(&sample.url(first))
        .expect("navigate")
        .wait_until_navigated()
        .expect("loaded");
    let recent = text_of(&tab, "#recent");
    let (x, nin) = (
        recent.find("X-files movie").expect("x-files listed"),
        recent.find("NIN CD").expect("nin listed"),
    );
    assert!(x < nin, "newest first: {recent}");

    // Live: this page (first server) shows a change made in another tab on the second server.
    let refreshes_before = js(&tab, "window.liveRefreshes");
    let other = browser.new_tab().expect("second tab");
    other
        .navigate_to(&sample.url(second))
        .expect("navigate")
        .wait_until_navigated()
        .expect("loaded");
    add(&other, "NIN CD");
    assert!(text_of(&other, "#box").contains("Items in Cart: 2"));
    let added_at = Instant::now();
    loop {
        if text_of(&tab, "#box").contains("Items in Cart: 2") {
            break;
        }
        assert!(
            added_at.elapsed() < Duration::from_secs(1),
            "the open page did not update within a second"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(text_of(&tab, "#cart").contains("NIN CD"));
    assert_ne!(
        js(&tab, "window.liveRefreshes"),
        refreshes_before,
        "updated in place, without a reload"
    );
    screenshot(&tab, "tutorial-5-live.png");

    // Step 6: the statistics the tutorial points to open as text, not as a download.
    navigate(
        &tab,
        &format!("http://127.0.0.1:{}/metrics", sample.admin_port),
    );
    assert_eq!(js(&tab, "document.contentType"), "text/plain");
    assert!(text_of(&tab, "body").contains("session_active"));

    // The session server restarts while a page is left open. Meanwhile pages say that
    // nothing is lost (the sample's store is durable); after, the same cookie finds the same
    // cart on both carts, which were not restarted, and the open page's add goes into it.
    navigate(&tab, &sample.url(first));
    let refreshes_before = js(&tab, "window.liveRefreshes");
    sample.stop_session_server();
    wait_for("the outage page", || {
        navigate(&other, &sample.url(second));
        other
            .get_title()
            .is_ok_and(|t| t.contains("Sessions are taking a break"))
    });
    let outage = text_of(&other, "body");
    assert!(
        outage.contains("Nothing is lost") && !outage.contains("in memory only"),
        "{outage}"
    );
    sample.script("start-sample-server.sh");
    wait_for("the carts to reach the new session server", || {
        navigate(&other, &sample.url(second));
        other.get_title().is_ok_and(|t| t == "carts")
    });
    let kept = text_of(&other, "#cart");
    assert!(
        kept.contains("Twin peaks tapes") && kept.contains("NIN CD"),
        "the cart survived the restart: {kept}"
    );
    // Back to the page left open (a background tab takes no clicks), once it has heard that
    // its server is back: the live stream's reset refreshes the page's parts, and a click
    // while they are replaced would be lost.
    tab.activate().expect("activate");
    wait_for("the open page to refresh after the restart", || {
        js(&tab, "window.liveRefreshes") != refreshes_before
    });
    add(&tab, "JSP Book");
    assert_eq!(
        tab.get_title().expect("title"),
        "carts",
        "not an error page"
    );
    assert!(
        text_of(&tab, "#box").contains("Items in Cart: 3"),
        "the same cart, one more item: {}",
        text_of(&tab, "#box")
    );

    // Local mode: each instance keeps its own cart, as its box says, even after a jump there
    // and back (a cookie per instance: cookies are per host, not per port).
    sample.script("stop-sample.sh");
    sample.script_with("start-sample.sh", &[("CART_SESSIONS", "local")]);
    navigate(&tab, &sample.url(first));
    add(&tab, "Switch blade");
    jump(&tab, second);
    let there = text_of(&tab, "#box");
    assert!(
        there.contains("Items in Cart: 0") && there.contains("stayed behind on that server"),
        "{there}"
    );
    add(&tab, "Love life");
    jump(&tab, first);
    let cart = text_of(&tab, "#cart");
    assert!(
        cart.contains("Switch blade") && !cart.contains("Love life"),
        "the first instance's own cart: {cart}"
    );
    assert!(text_of(&tab, "#box").contains("Clustered Sessions: Off"));
}

/// Picks `item` in the page's list and presses add, as a shopper does, then waits for the
/// answer: the cart, with the item in it.
fn add(tab: &Tab, item: &str) {
    js(
        tab,
        &format!("document.querySelector('select[name=item]').value = {item:?}"),
    );
    tab.find_element("input[type=submit][value=add]")
        .expect("add button")
        .click()
        .expect("click");
    wait_for(&format!("{item} in the cart"), || {
        text_of(tab, "#cart").contains(item)
    });
}

/// Follows the box's link to the other instance, on `port`.
fn jump(tab: &Tab, port: u16) {
    tab.find_element("#peer")
        .expect("link")
        .click()
        .expect("click");
    wait_for("the other instance's page", || {
        url_has(tab, &format!(":{port}/Cart"))
    });
}

/// Loads `url` in `tab` and waits until it has loaded.
fn navigate(tab: &Tab, url: &str) {
    tab.navigate_to(url)
        .expect("navigate")
        .wait_until_navigated()
        .expect("loaded");
}
