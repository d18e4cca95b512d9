//! Routes, mirroring the URL tree under `/Cart`.

mod assets;
pub(crate) mod cart;
mod events;
mod products;

use actix_web::{HttpResponse, http::header, web};

pub use cart::{LIVE_REFRESH_HEADER, LineView, render_page};

/// A rendered page; never cached, since it shows a session.
fn html(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body)
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/",
        web::get().to(|| async {
            HttpResponse::Found()
                .insert_header((header::LOCATION, "/Cart"))
                .finish()
        }),
    )
    .route(
        "/healthz",
        web::get().to(|| async { HttpResponse::Ok().body("ok\n") }),
    )
    .service(
        web::scope("/Cart")
            .route("", web::get().to(cart::view))
            .route("/", web::get().to(cart::view))
            .route("", web::post().to(cart::change))
            .route("/", web::post().to(cart::change))
            .route("/products/{id}", web::get().to(products::view))
            .route("/pictures/{file}", web::get().to(products::picture))
            .route("/events", web::get().to(events::stream))
            .route("/static/{file}", web::get().to(assets::file)),
    );
}
