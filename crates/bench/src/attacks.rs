//! A well-behaved client's reads while the session server is under each of the attacks its
//! limits answer (docs/operations.md lists the bounds): how much a lone caller's latency
//! suffers. No target: the figures show that the server keeps answering, and at what cost.

use crate::{
    load::Measured,
    scenarios::{self, Op, Store},
};
use prost::Message;
use session_client::{ClientConfig, Ops, Protocol, SessionClient};
use session_proto::{FRAMED_PREFACE, v1 as pb};
use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

/// An attack, run on threads of its own until told to stop.
struct Attack {
    name: &'static str,
    run: fn(SocketAddr, &Target, &AtomicBool),
}

/// What the attacks aim at: a session of about 1 MiB, and an empty one.
struct Target {
    big: String,
    empty: String,
}

const ATTACKS: [Attack; 6] = [
    Attack {
        name: "none",
        run: |_, _, _| {},
    },
    Attack {
        name: "1,000 reads of a 1 MiB session per message",
        run: |addr, target, stop| {
            let gets = pipeline(
                (0..1_000)
                    .map(|_| {
                        pb::call::Kind::Get(pb::GetRequest {
                            id: target.big.clone(),
                            ..Default::default()
                        })
                    })
                    .collect(),
            );
            // Three that send and never read, one that reads every reply.
            let _idle: Vec<TcpStream> = (0..3)
                .filter_map(|_| framed(addr).ok())
                .map(|mut c| {
                    let _ = c.write_all(&gets);
                    c
                })
                .collect();
            hammer(addr, &gets, 1_000, stop);
        },
    },
    Attack {
        name: "reads naming one attribute 1,024 times",
        run: |addr, target, stop| {
            let get = pipeline(vec![pb::call::Kind::Get(pb::GetRequest {
                id: target.big.clone(),
                names: vec!["big0".into(); 1_024],
                known_version: 0,
            })]);
            hammer(addr, &get, 1, stop);
        },
    },
    Attack {
        name: "1,024 recent-pushes onto a 10,000-item list",
        run: |addr, target, stop| {
            let pushes = (0..1_024u32)
                .map(|i| pb::Operation {
                    name: "recent".into(),
                    kind: Some(pb::operation::Kind::RecentPush(pb::RecentPushOp {
                        item: i.to_be_bytes().to_vec().into(),
                        content_type: String::new(),
                        keep: 10_000,
                    })),
                })
                .collect();
            let apply = pipeline(vec![pb::call::Kind::Apply(pb::ApplyRequest {
                id: target.big.clone(),
                operations: pushes,
                returning: 0,
            })]);
            hammer(addr, &apply, 1, stop);
        },
    },
    Attack {
        name: "applies changing 900 names of 1,000 bytes",
        run: |addr, target, stop| {
            let sets = (0..900)
                .map(|i| pb::Operation {
                    name: format!("{i:01000}"),
                    kind: Some(pb::operation::Kind::Set(pb::SetOp {
                        value: Some(pb::Value {
                            content_type: String::new(),
                            kind: Some(pb::value::Kind::Counter(i)),
                        }),
                        expected_version: None,
                    })),
                })
                .collect();
            // The empty session: the big one has no room for these names.
            let id = target.empty.clone();
            let apply = pipeline(vec![pb::call::Kind::Apply(pb::ApplyRequest {
                id,
                operations: sets,
                returning: 0,
            })]);
            hammer(addr, &apply, 1, stop);
        },
    },
    Attack {
        name: "900 half-sent prefaces",
        run: |addr, _, stop| {
            let mut held = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                held.retain(|c: &TcpStream| c.peek(&mut [0]).is_err());
                while held.len() < 900 {
                    match TcpStream::connect(addr) {
                        Ok(mut c) => {
                            let _ = c.write_all(&FRAMED_PREFACE[..7]);
                            let _ = c.set_nonblocking(true);
                            held.push(c);
                        }
                        Err(_) => break,
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        },
    },
];

/// A framed message of `calls`, tagged from 1.
fn pipeline(calls: Vec<pb::call::Kind>) -> Vec<u8> {
    let request = pb::PipelineRequest {
        calls: (1..)
            .zip(calls)
            .map(|(tag, kind)| pb::Call {
                tag,
                kind: Some(kind),
            })
            .collect(),
        origin: 0,
        hello: None,
    };
    let mut out = prost::bytes::BytesMut::new();
    session_proto::put_frame(&mut out, &request);
    out.to_vec()
}

fn framed(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let mut conn = TcpStream::connect(addr)?;
    conn.write_all(FRAMED_PREFACE)?;
    Ok(conn)
}

/// Sends `message` again and again on one connection, reading its `replies` each time.
fn hammer(addr: SocketAddr, message: &[u8], replies: usize, stop: &AtomicBool) {
    let Ok(mut conn) = framed(addr) else { return };
    while !stop.load(Ordering::Relaxed) {
        if conn.write_all(message).is_err() {
            return;
        }
        let mut got = 0;
        while got < replies {
            let mut length = [0; 4];
            if conn.read_exact(&mut length).is_err() {
                return;
            }
            let mut body = vec![0; u32::from_be_bytes(length) as usize];
            if conn.read_exact(&mut body).is_err() {
                return;
            }
            got += pb::PipelineResponse::decode(&body[..]).map_or(replies, |r| r.replies.len());
        }
    }
}

/// The lone bystander's reads of 1 KB sessions during each attack, `duration` each.
pub async fn measure(
    server: SocketAddr,
    ids: &Arc<Vec<String>>,
    duration: Duration,
) -> anyhow::Result<Vec<(&'static str, Measured)>> {
    let client = SessionClient::connect_lazy(ClientConfig {
        endpoints: vec![format!("http://{server}")],
        timeout: Duration::from_secs(10),
        ..ClientConfig::default()
    })?;
    let mut big = Ops::new();
    for i in 0..4 {
        big = big.set_bytes(
            &format!("big{i}"),
            "application/octet-stream",
            vec![7u8; 250 * 1024].into(),
            None,
        );
    }
    let target = Arc::new(Target {
        big: client.create(big).await?.info.id.as_str().to_owned(),
        empty: client.create(Ops::new()).await?.info.id.as_str().to_owned(),
    });
    let bystander = [Arc::new(Store::ours(server, Protocol::Framed, ids)?)];
    let mut measured = Vec::new();
    for attack in &ATTACKS {
        eprintln!("a lone caller's gets under attack: {}...", attack.name);
        let stop = Arc::new(AtomicBool::new(false));
        let attacker = std::thread::spawn({
            let (stop, target, run) = (Arc::clone(&stop), Arc::clone(&target), attack.run);
            move || run(server, &target, &stop)
        });
        // Let the attack get going first.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let gets = scenarios::in_turns(&bystander, Op::Get, 1, duration).await;
        stop.store(true, Ordering::Relaxed);
        let _ = tokio::task::spawn_blocking(move || attacker.join()).await;
        measured.extend(gets.into_iter().map(|m| (attack.name, m)));
    }
    Ok(measured)
}
