//! The README's example: an actix-web app whose sessions live in the session server.
//!
//! ```sh
//! bin/start-sample-server.sh
//! cargo run -p session-client --example visits
//! curl -X POST -c jar -b jar http://127.0.0.1:8080/visit
//! ```

use actix_web::{App, HttpServer, post};
use session_client::{
    ClientConfig, Ops, SessionClient,
    actix::{RequestSession, SessionMiddleware},
};

#[post("/visit")]
async fn visit(session: RequestSession) -> actix_web::Result<String> {
    // A server-side operation: concurrent requests on any instance never lose a count.
    let written = session
        .apply(Ops::new().counter_add("visits", 1))
        .await
        .map_err(actix_web::error::ErrorServiceUnavailable)?;
    Ok(format!("visit number {}\n", written.results[0].counter))
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let client = SessionClient::connect_lazy(ClientConfig::default()).expect("valid address");
    HttpServer::new(move || {
        App::new()
            .wrap(SessionMiddleware::new(client.clone()))
            .service(visit)
    })
    .bind(("127.0.0.1", 8080))?
    .run()
    .await
}
