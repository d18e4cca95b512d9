//! The loopback floor under every lone-caller figure: a ping-pong over plain TCP with a server
//! that only answers. A lone caller's get or apply against any store costs at least this: two
//! wake-ups across processes and a loopback send each way, most of it in the kernel.

use crate::load::{self, Measured};
use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// What one ping carries: about what an apply of a 1 KB session sends.
const PING_BYTES: usize = 1_100;
/// What a pong carries back: about what an apply answers.
const PONG_BYTES: usize = 64;

/// The answering server (the `echo-server` subcommand): a pong for every ping, on one thread
/// as Redis has.
pub async fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    loop {
        let (mut stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            let mut ping = [0; PING_BYTES];
            while stream.read_exact(&mut ping).await.is_ok() {
                if stream.write_all(&[0; PONG_BYTES]).await.is_err() {
                    break;
                }
            }
        });
    }
}

/// Pings from one caller, each after the last pong, for `duration`.
pub async fn ping_pong(server: SocketAddr, duration: Duration) -> anyhow::Result<Measured> {
    let mut stream = TcpStream::connect(server).await?;
    stream.set_nodelay(true)?;
    let (ping, mut pong) = ([b'x'; PING_BYTES], [0; PONG_BYTES]);
    let mut latency = load::histogram();
    let mut requests = 0;
    let started = Instant::now();
    while started.elapsed() < duration {
        let sent = Instant::now();
        stream.write_all(&ping).await?;
        stream.read_exact(&mut pong).await?;
        requests += 1;
        let _ = latency.record(sent.elapsed().as_micros() as u64);
    }
    Ok(Measured {
        requests,
        errors: 0,
        elapsed: started.elapsed(),
        latency,
    })
}
