//! The README's example: an actix-web app whose sessions live in the session server.
//!
//! ```sh
//! bin/start-sample-server.sh      # makes target/sample/secrets/visits.token, this app's token
//! SESSION_TOKEN_FILE=target/sample/secrets/visits.token cargo run -p session-client --example visits
//! curl -X POST -c jar -b jar http://127.0.0.1:8080/visit    # counts a visit
//! curl -b jar http://127.0.0.1:8080/visit                   # shows the count
//! ```
//!
//! `VISITS_LISTEN` (default 127.0.0.1:8080) and `SESSION_SERVER` (default
//! http://127.0.0.1:9510) change the addresses; `SESSION_TOKEN_FILE` holds the app's token,
//! and `SESSION_CA` the CA of a server with TLS (an `https://` address).

use actix_web::{App, HttpServer, get, post};
use session_client::{
    ClientConfig, Ops, SessionClient, TlsOptions, Token,
    actix::{RequestSession, SessionMiddleware},
};
use std::path::Path;

#[post("/visit")]
async fn visit(session: RequestSession) -> actix_web::Result<String> {
    // A server-side operation: concurrent requests on any instance never lose a count.
    let written = session
        .apply(Ops::new().counter_add("visits", 1))
        .await
        .map_err(actix_web::error::ErrorServiceUnavailable)?;
    Ok(format!("visit number {}\n", written.results[0].counter))
}

#[get("/visit")]
async fn count(session: RequestSession) -> actix_web::Result<String> {
    // A read makes no session: a browser without one has simply not visited yet.
    let visits = match session
        .load()
        .await
        .map_err(actix_web::error::ErrorServiceUnavailable)?
    {
        Some(s) => s
            .counter("visits")
            .map_err(actix_web::error::ErrorInternalServerError)?,
        None => 0,
    };
    Ok(format!("{visits} visits so far; POST to count one\n"))
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let listen = std::env::var("VISITS_LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let mut config = ClientConfig {
        app: Some("visits".into()),
        ..ClientConfig::default()
    };
    if let Ok(url) = std::env::var("SESSION_SERVER") {
        config.endpoints = vec![url];
    }
    if let Ok(file) = std::env::var("SESSION_TOKEN_FILE") {
        config.token = Some(Token::from_file(Path::new(&file)).map_err(std::io::Error::other)?);
    }
    if let Ok(ca) = std::env::var("SESSION_CA") {
        config.tls =
            TlsOptions::from_files(Some(Path::new(&ca)), None).map_err(std::io::Error::other)?;
    }
    let client = SessionClient::connect_lazy(config).map_err(std::io::Error::other)?;
    let server = HttpServer::new(move || {
        App::new()
            .wrap(SessionMiddleware::new(client.clone()))
            .service(visit)
            .service(count)
    })
    .bind(&listen)?;
    let addr = server.addrs()[0];
    println!("Listening on http://{addr}/visit. Try:");
    println!("  curl -X POST -c jar -b jar http://{addr}/visit");
    println!("  curl -b jar http://{addr}/visit");
    server.run().await
}
