//! The processes a benchmark run needs, started on free loopback ports and stopped (by their
//! pid) when dropped.

use anyhow::{Context, bail};
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

#[derive(Debug)]
pub struct Proc {
    pub name: String,
    pub addr: SocketAddr,
    child: Child,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory in bytes, from /proc.
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .context("no VmRSS")?;
        Ok(kb * 1024)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
}

/// Builds the release binaries the run starts, so numbers never come from a stale build.
pub fn build_release() -> anyhow::Result<()> {
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "session-server",
            "-p",
            "cart",
        ])
        .current_dir(ROOT)
        .status()
        .context("run cargo")?;
    if !status.success() {
        bail!("cargo build --release failed");
    }
    Ok(())
}

pub fn release_bin(name: &str) -> PathBuf {
    Path::new(ROOT).join("target/release").join(name)
}

/// Starts a program and waits until `addr` accepts connections (bounded).
pub fn start(name: &str, mut cmd: Command, addr: SocketAddr) -> anyhow::Result<Proc> {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("start {name} ({cmd:?})"))?;
    let mut proc = Proc {
        name: name.into(),
        addr,
        child,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(addr).is_err() {
        if let Some(status) = proc.child.try_wait()? {
            bail!("{name} exited during start-up: {status}");
        }
        if Instant::now() > deadline {
            bail!("{name} did not listen on {addr} within 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    proc.name = name.into();
    Ok(proc)
}

pub fn redis_server() -> anyhow::Result<Proc> {
    let addr = free_addr();
    let mut cmd = Command::new("redis-server");
    cmd.args([
        "--bind",
        "127.0.0.1",
        "--port",
        &addr.port().to_string(),
        "--save",
        "",
        "--appendonly",
        "no",
    ]);
    start("redis-server", cmd, addr)
        .context("redis-server is needed: apt-get install -y redis-server")
}

pub fn session_server(capacity: &str) -> anyhow::Result<Proc> {
    let addr = free_addr();
    let mut cmd = Command::new(release_bin("session-server"));
    cmd.args([
        "--listen",
        &addr.to_string(),
        "--admin-listen",
        &free_addr().to_string(),
        "--capacity",
        capacity,
    ])
    .args(["--idle-timeout", "8h"])
    // One thread, as Redis has: the machine's cores are shared by everything measured.
    .args(["--threads", "1"])
    .env("RUST_LOG", "warn");
    start("session-server", cmd, addr)
}

pub fn cart(sessions: &str, session_server: Option<SocketAddr>) -> anyhow::Result<Proc> {
    let addr = free_addr();
    let mut cmd = Command::new(release_bin("cart"));
    cmd.args([
        "--listen",
        &addr.to_string(),
        "--sessions",
        sessions,
        "--peer-port",
        "9082",
    ])
    .args([
        "--catalog",
        &Path::new(ROOT).join("samples/cart").display().to_string(),
    ])
    .env("RUST_LOG", "warn");
    if let Some(server) = session_server {
        cmd.args(["--session-server", &format!("http://{server}")]);
    }
    start(&format!("cart ({sessions})"), cmd, addr)
}

/// The loopback floor's answering server: this program's `echo-server` subcommand.
pub fn echo_server() -> anyhow::Result<Proc> {
    let addr = free_addr();
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["echo-server", "--listen", &addr.to_string()]);
    start("echo server", cmd, addr)
}

pub fn redis_cart(redis: SocketAddr) -> anyhow::Result<Proc> {
    let addr = free_addr();
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args([
        "redis-cart",
        "--listen",
        &addr.to_string(),
        "--redis",
        &format!("redis://{redis}"),
    ]);
    start("cart (actix-session + Redis)", cmd, addr)
}
