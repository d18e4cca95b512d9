//! The loopback floor under every lone-caller figure: a ping-pong over plain TCP with a server
//! that only answers. A lone caller's get or apply against any store costs at least this: two
//! wake-ups across processes and a loopback send each way, most of it in the kernel.

use std::net::SocketAddr;
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

/// A caller's connection to the answering server.
pub async fn connect(server: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect(server).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// One ping, answered.
pub async fn ping(stream: &mut TcpStream) -> std::io::Result<()> {
    const PING: [u8; PING_BYTES] = [b'x'; PING_BYTES];
    let mut pong = [0; PONG_BYTES];
    stream.write_all(&PING).await?;
    stream.read_exact(&mut pong).await?;
    Ok(())
}
