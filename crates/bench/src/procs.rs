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

impl Proc {
    /// Stops the process as an operator would (SIGTERM), waiting for it to exit.
    pub fn stop(mut self) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .context("run kill")?;
        if !status.success() {
            bail!("kill -TERM {} failed", self.pid());
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                bail!("{} did not stop within 60 s of SIGTERM", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
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

/// Where the binaries of one build of session-server and cart are.
#[derive(Debug, Clone)]
pub struct Build {
    pub profile: &'static str,
    dir: PathBuf,
}

impl Build {
    fn bin(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Builds the release binaries the run starts, so numbers never come from a stale build.
pub fn build_release() -> anyhow::Result<Build> {
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
    Ok(Build {
        profile: "release",
        dir: Path::new(ROOT).join("target/release"),
    })
}

/// The binaries the sample scripts and the images run, built by the scripts' own function
/// (bin/common.sh), so the comparison is with what a newcomer gets.
pub fn build_sample() -> anyhow::Result<Build> {
    let out = Command::new("bash")
        .args([
            "-c",
            r#"source bin/common.sh && build >&2 && echo "$bin_dir""#,
        ])
        .env("SAMPLE_PROFILE", "sample")
        .current_dir(ROOT)
        .stderr(Stdio::inherit())
        .output()
        .context("run bash")?;
    if !out.status.success() {
        bail!("the sample scripts' build failed");
    }
    Ok(Build {
        profile: "sample",
        dir: String::from_utf8(out.stdout)?.trim().into(),
    })
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
    redis_server_with(free_addr(), &["--appendonly", "no"])
}

/// Redis with an append-only file in `dir`, synced as `appendfsync` (always, everysec).
pub fn redis_with_aof(addr: SocketAddr, dir: &Path, appendfsync: &str) -> anyhow::Result<Proc> {
    let dir = dir.display().to_string();
    redis_server_with(
        addr,
        &[
            "--appendonly",
            "yes",
            "--appendfsync",
            appendfsync,
            "--dir",
            &dir,
        ],
    )
}

fn redis_server_with(addr: SocketAddr, extra: &[&str]) -> anyhow::Result<Proc> {
    let mut cmd = Command::new("redis-server");
    cmd.args([
        "--bind",
        "127.0.0.1",
        "--port",
        &addr.port().to_string(),
        "--save",
        "",
    ])
    .args(extra);
    start("redis-server", cmd, addr)
        .context("redis-server is needed: apt-get install -y redis-server")
}

/// A directory of the run's own, removed when dropped.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("bench-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Self(dir)
    }

    pub fn arg(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A durable session server on `data_dir` at `addr`.
pub fn durable_server(
    build: &Build,
    addr: SocketAddr,
    data_dir: &TempDir,
    fsync: &str,
) -> anyhow::Result<Proc> {
    session_server_at(
        build,
        addr,
        "4GiB",
        &[
            "--store".into(),
            "durable".into(),
            "--data-dir".into(),
            data_dir.arg(),
            "--fsync".into(),
            fsync.into(),
        ],
    )
}

/// A memory-store session server.
pub fn session_server(build: &Build, capacity: &str) -> anyhow::Result<Proc> {
    session_server_with(build, capacity, &[])
}

/// A session server with more flags (credentials, TLS).
pub fn session_server_with(
    build: &Build,
    capacity: &str,
    extra: &[String],
) -> anyhow::Result<Proc> {
    let mut flags = vec!["--store".to_owned(), "memory".to_owned()];
    flags.extend_from_slice(extra);
    session_server_at(build, free_addr(), capacity, &flags)
}

fn session_server_at(
    build: &Build,
    addr: SocketAddr,
    capacity: &str,
    extra: &[String],
) -> anyhow::Result<Proc> {
    let mut cmd = Command::new(build.bin("session-server"));
    cmd.args(extra);
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

/// A cart instance named `name` in reports.
pub fn cart(
    build: &Build,
    name: &str,
    sessions: &str,
    session_server: Option<SocketAddr>,
) -> anyhow::Result<Proc> {
    let server = session_server.map(|s| format!("http://{s}"));
    cart_with(build, name, sessions, server.as_deref(), &[])
}

/// A cart instance of the session server at `url`, with more flags (a token, a CA).
pub fn cart_with(
    build: &Build,
    name: &str,
    sessions: &str,
    session_server: Option<&str>,
    extra: &[String],
) -> anyhow::Result<Proc> {
    let addr = free_addr();
    let mut cmd = Command::new(build.bin("cart"));
    cmd.args(extra);
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
        cmd.args(["--session-server", server]);
    }
    start(name, cmd, addr)
}

/// The sample's secrets, made by the binary's own `setup` (tokens, and with TLS a
/// development CA and certificate) in a directory removed on drop.
#[derive(Debug)]
pub struct Secrets {
    pub dir: PathBuf,
}

impl Secrets {
    pub fn make(build: &Build) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("bench-secrets-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let out = Command::new(build.bin("session-server"))
            .args(["setup", "--tls", "--dir"])
            .arg(&dir)
            .output()
            .context("run session-server setup")?;
        if !out.status.success() {
            bail!(
                "session-server setup failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(Self { dir })
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

impl Drop for Secrets {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
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
