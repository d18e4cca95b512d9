//! Calls from threads that run current-thread runtimes of their own (as actix-web's workers
//! do) travel on a framed connection of that thread, not through the runtime that made the
//! client; those connections close with the client, and a thread that moves to another
//! runtime gets a new one.

use crate::common;

use session_client::{Error, Ops, Protocol, SessionClient};
use session_server::config::ServerConfig;
use std::{
    thread,
    time::{Duration, Instant},
};
use tokio::{runtime::Runtime, sync::oneshot};

const TIMEOUT: Duration = Duration::from_secs(2);

fn current_thread() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// Creates a session and reads it back through `client`, on whatever runtime runs this.
async fn round_trip(client: &SessionClient) -> Result<(), session_client::Error> {
    let id = client.create(Ops::new().counter_add("n", 1)).await?.info.id;
    let read = client.get(&id).await?;
    assert_eq!(read.counter("n").expect("a counter"), 1);
    Ok(())
}

/// A framed client made on a current-thread runtime of its own (returned with it) that
/// nothing drives afterwards: a call that needed that runtime would time out.
fn client_on_an_idle_runtime(server: &common::TestServer) -> (Runtime, SessionClient) {
    let home = current_thread();
    let client = {
        let _home = home.enter();
        server.client_with(TIMEOUT, Protocol::Framed)
    };
    (home, client)
}

/// Polls the open framed connections gauge until it reads `want`, for up to 5 s.
async fn wait_connections(server: &common::TestServer, want: f64) {
    let mut seen = f64::NAN;
    for _ in 0..100 {
        seen = server.metric("session_framed_connections").await;
        if seen == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{seen} framed connections open, {want} expected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threads_with_runtimes_of_their_own_call_on_connections_of_their_own() {
    let server = common::spawn(ServerConfig::default()).await;
    let (home, client) = client_on_an_idle_runtime(&server);

    let mut workers = Vec::new();
    for _ in 0..2 {
        let client = client.clone();
        let (called, called_rx) = oneshot::channel();
        let (finish, finish_rx) = oneshot::channel::<()>();
        let thread = thread::spawn(move || {
            let runtime = current_thread();
            runtime.block_on(async move {
                let _ = called.send(round_trip(&client).await);
                drop(client);
                // Keeps the runtime running, as a worker does, until told to stop.
                let _ = finish_rx.await;
            });
        });
        workers.push((called_rx, finish, thread));
    }
    for (called, _, _) in &mut workers {
        called
            .await
            .expect("the thread reports")
            .expect("a call from a thread's own runtime is answered");
    }
    wait_connections(&server, 2.0).await;

    // The last handle goes: the threads' connections close with it, though their runtimes live.
    drop(client);
    wait_connections(&server, 0.0).await;

    for (_, finish, thread) in workers {
        let _ = finish.send(());
        thread.join().expect("the thread ends cleanly");
    }
    home.shutdown_background();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thread_that_moves_to_another_runtime_gets_a_new_connection() {
    let server = common::spawn(ServerConfig::default()).await;
    let (home, client) = client_on_an_idle_runtime(&server);

    let worker = {
        let client = client.clone();
        thread::spawn(move || {
            // The first runtime's tasks, its connection's among them, go with it.
            let first = current_thread().block_on(round_trip(&client));
            let second = current_thread().block_on(round_trip(&client));
            (first, second)
        })
    };
    let (first, second) = tokio::task::spawn_blocking(move || worker.join())
        .await
        .expect("joined")
        .expect("the thread ends cleanly");
    first.expect("a call from the first runtime");
    second.expect("a call from the next runtime on the same thread, on a new connection");
    // Both runtimes are gone, and their connections with them.
    wait_connections(&server, 0.0).await;

    drop(client);
    home.shutdown_background();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_from_another_runtime_fails_in_time_though_the_clients_runtime_stands_still() {
    let server = common::spawn(ServerConfig::default()).await;
    let (home, client) = client_on_an_idle_runtime(&server);
    // The client's connection opens on its runtime, which then stands still.
    let (home, client) = thread::spawn(move || {
        home.block_on(round_trip(&client))
            .expect("a call at home is answered");
        (home, client)
    })
    .join()
    .expect("the thread ends cleanly");
    // Not the client's runtime, nor a current-thread one: the call goes on the client's own
    // connection, whose tasks nothing runs, so only a timer of the caller's can end it.
    let started = Instant::now();
    let result = tokio::time::timeout(TIMEOUT * 5, client.get("an-id"))
        .await
        .expect("the call hung");
    assert!(matches!(result, Err(Error::Unavailable(_))), "{result:?}");
    assert!(
        started.elapsed() < TIMEOUT + Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    drop(client);
    home.shutdown_background();
    server.stop().await;
}
