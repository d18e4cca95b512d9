//! `docker compose up`, as a user runs it: the images built by bin/build-images.sh, the stack
//! brought up from docker-compose.yml, its session port taking TLS and the carts' token only,
//! the tutorial through the published ports, the session server stopped and started again and
//! restarted, the cart kept through both.
//! Everything is torn down even when a step fails.
//!
//! Needs a running Docker engine and `docker compose` or `docker-compose`; it fails, never
//! skips, without them.

#![allow(clippy::expect_used)] // tests: a panic is how a test fails

mod common;

use common::{Browser, ROOT, free_port};
use std::{
    path::Path,
    process::{Command, Output},
    time::{Duration, Instant},
};

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// `docker compose` (v2) where the plugin exists, else `docker-compose` (v1).
fn compose_command() -> Vec<String> {
    let ok = |args: &[&str]| {
        Command::new(args[0])
            .args(&args[1..])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    assert!(
        ok(&["docker", "info"]),
        "a running Docker engine is needed: install Docker and start it (systemctl start docker)"
    );
    if ok(&["docker", "compose", "version"]) {
        vec!["docker".into(), "compose".into()]
    } else if ok(&["docker-compose", "version"]) {
        vec!["docker-compose".into()]
    } else {
        panic!(
            "Docker Compose is needed: install the compose plugin or docker-compose (apt-get install -y docker-compose)"
        );
    }
}

struct Stack {
    compose: Vec<String>,
    project: String,
    env: Vec<(&'static str, String)>,
    ports: (u16, u16),
}

impl Stack {
    fn cmd(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(&self.compose[0]);
        cmd.args(&self.compose[1..])
            .args(["--project-name", &self.project])
            .args(args)
            .current_dir(ROOT);
        cmd.envs(self.env.iter().map(|(k, v)| (*k, v.as_str())));
        let out = run(&mut cmd);
        assert!(
            out.status.success(),
            "compose {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// A file of a service's container, copied out (the images have no shell to `cat` with).
    fn copy_out(&self, service: &str, path: &str, to: &Path) {
        let id = String::from_utf8_lossy(&self.cmd(&["ps", "-q", service]).stdout)
            .trim()
            .to_owned();
        let copied = run(Command::new("docker")
            .args(["cp", &format!("{id}:{path}")])
            .arg(to));
        assert!(
            copied.status.success(),
            "docker cp {path}: {}",
            String::from_utf8_lossy(&copied.stderr)
        );
    }

    fn leftovers(&self) -> String {
        let label = format!("label=com.docker.compose.project={}", self.project);
        ["ps -a", "network ls", "volume ls"]
            .iter()
            .map(|what| {
                let mut cmd = Command::new("docker");
                cmd.args(what.split(' '))
                    .args(["--quiet", "--filter", &label]);
                String::from_utf8_lossy(&run(&mut cmd).stdout)
                    .trim()
                    .to_owned()
            })
            .collect::<Vec<_>>()
            .join(" ")
            .trim()
            .to_owned()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let mut cmd = Command::new(&self.compose[0]);
        cmd.args(&self.compose[1..])
            .args([
                "--project-name",
                &self.project,
                "down",
                "--volumes",
                "--remove-orphans",
                "--timeout",
                "10",
            ])
            .current_dir(ROOT)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())));
        let _ = cmd.output();
    }
}

/// The published session port: TLS with the CA the `setup` service made, and the token it
/// gave the carts; without either, refused.
async fn session_port_takes_tls_and_the_carts_token_only(stack: &Stack, port: u16) {
    let dir = std::env::temp_dir().join(format!("{}-secrets", stack.project));
    std::fs::create_dir_all(&dir).expect("dir");
    stack.copy_out("session-server", "/secrets/ca.pem", &dir.join("ca.pem"));
    stack.copy_out(
        "session-server",
        "/secrets/cart.token",
        &dir.join("cart.token"),
    );
    let client = |scheme: &str, token: Option<session_client::Token>| {
        session_client::SessionClient::connect_lazy(session_client::ClientConfig {
            endpoints: vec![format!("{scheme}://127.0.0.1:{port}")],
            app: Some("cart".into()),
            token,
            tls: session_client::TlsOptions::from_files(Some(&dir.join("ca.pem")), None)
                .expect("CA"),
            timeout: Duration::from_secs(3),
            ..Default::default()
        })
        .expect("client")
    };
    let token = session_client::Token::from_file(&dir.join("cart.token")).expect("token");
    let plaintext = client("http", Some(token.clone()))
        .get("x")
        .await
        .expect_err("plaintext");
    assert!(
        plaintext.to_string().contains("TLS connections only"),
        "{plaintext}"
    );
    let anonymous = client("https", None).get("x").await.expect_err("no token");
    assert!(
        matches!(anonymous, session_client::Error::Unauthenticated(_)),
        "{anonymous}"
    );
    let answered = client("https", Some(token)).get("x").await;
    assert_eq!(
        answered.expect_err("no such session"),
        session_client::Error::NotFound
    );
    let _ = std::fs::remove_dir_all(&dir);
}

async fn wait_for_status(browser: &Browser, url: &str, status: u16, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let ok = tokio::time::timeout(Duration::from_secs(3), browser.get(url))
            .await
            .is_ok_and(|p| p.status == status);
        if ok {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url} did not answer {status} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_compose_runs_the_tutorial_and_recovers_from_a_session_server_restart() {
    let compose = compose_command();
    let build =
        run(Command::new(Path::new(ROOT).join("bin/build-images.sh"))
            .current_dir(std::env::temp_dir()));
    assert!(
        build.status.success(),
        "bin/build-images.sh failed:\n{}{}",
        String::from_utf8_lossy(&build.stdout),
        String::from_utf8_lossy(&build.stderr)
    );

    let ports = (free_port(), free_port());
    let session_port = free_port();
    let stack = Stack {
        compose,
        project: format!("carttest{}", std::process::id()),
        env: vec![
            ("CART_PORT_1", ports.0.to_string()),
            ("CART_PORT_2", ports.1.to_string()),
            ("SESSION_PORT", session_port.to_string()),
            ("SESSION_ADMIN_PORT", free_port().to_string()),
            ("PUBLISH_ADDR", "127.0.0.1".into()),
        ],
        ports,
    };
    stack.cmd(&["up", "--detach"]);
    let (first, second) = (
        format!("http://127.0.0.1:{}/Cart", stack.ports.0),
        format!("http://127.0.0.1:{}/Cart", stack.ports.1),
    );
    let browser = Browser::new();
    wait_for_status(&browser, &first, 200, Duration::from_secs(60)).await;
    wait_for_status(&browser, &second, 200, Duration::from_secs(60)).await;
    session_port_takes_tls_and_the_carts_token_only(&stack, session_port).await;

    // The tutorial through the published ports.
    let token = browser.get(&first).await.csrf();
    let added = browser
        .post(
            &first,
            &[
                ("item", "Twin peaks tapes"),
                ("submit", "add"),
                ("csrf", &token),
            ],
        )
        .await;
    assert_eq!(added.status, 303);
    // Both carts read the CSRF key the setup service made in the shared volume: a form of one
    // posts to the other.
    let on_second = browser
        .post(
            &second,
            &[("item", "JSP Book"), ("submit", "remove"), ("csrf", &token)],
        )
        .await;
    assert_eq!(
        on_second.status, 303,
        "a token of one cart works on the other"
    );
    let there = browser.get(&second).await;
    let text = there.text();
    assert!(
        text.contains("Twin peaks tapes") && text.contains("Items in Cart: 1"),
        "{text}"
    );
    assert!(
        text.contains(&format!("Current Server: {}", stack.ports.1)),
        "the public port, not the container's: {text}"
    );
    assert!(there.html.contains("background-color: darkseagreen"));
    assert!(
        there
            .html
            .contains(&format!("http://127.0.0.1:{}/Cart", stack.ports.0)),
        "link to the first instance"
    );

    // The session server goes away: the carts say so; it comes back: they work again.
    stack.cmd(&["stop", "session-server"]);
    wait_for_status(&browser, &first, 503, Duration::from_secs(10)).await;
    assert_eq!(
        browser
            .get(&format!("{first}/static/cart.css"))
            .await
            .status,
        200,
        "static files still served"
    );
    stack.cmd(&["start", "session-server"]);
    // Each cart recovers on its own: the first call after the restart may still find its
    // connection down (a 503), the next ones work. The cart is still there: the session
    // server keeps its sessions on its volume.
    wait_for_status(&browser, &first, 200, Duration::from_secs(60)).await;
    wait_for_status(&browser, &second, 200, Duration::from_secs(60)).await;
    let kept = browser.get(&first).await.text();
    assert!(
        kept.contains("Twin peaks tapes") && kept.contains("Items in Cart: 1"),
        "the cart survived the session server's stop and start: {kept}"
    );
    stack.cmd(&["restart", "session-server"]);
    wait_for_status(&browser, &second, 200, Duration::from_secs(60)).await;
    let kept = browser.get(&second).await.text();
    assert!(kept.contains("Twin peaks tapes"), "and its restart: {kept}");
    let token = browser.get(&first).await.csrf();
    browser
        .post(
            &first,
            &[("item", "NIN CD"), ("submit", "add"), ("csrf", &token)],
        )
        .await;
    assert!(
        browser.get(&second).await.text().contains("NIN CD"),
        "working pages without restarting the carts"
    );

    // Both carts stop together, each within about a second though this browser's keep-alive
    // connections are still open (each waited 5.5 s for them, one cart after the other,
    // before). The bound leaves room for a slow machine; the note of the change has figures.
    let stopping = Instant::now();
    stack.cmd(&["stop", "cart-1", "cart-2"]);
    let took = stopping.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "the carts took {took:?} to stop"
    );

    let project = stack.project.clone();
    let probe = Stack {
        compose: stack.compose.clone(),
        project: project.clone(),
        env: stack.env.clone(),
        ports,
    };
    drop(stack);
    assert_eq!(
        probe.leftovers(),
        "",
        "containers, networks or volumes of {project} left behind"
    );
}
