//! Routes, mirroring the URL tree under `/Cart`.

mod assets;
pub(crate) mod cart;
mod events;
mod products;

use crate::{csrf, error::CartError, state::AppState};
use actix_web::{HttpRequest, HttpResponse, Route, guard, http::header, web};
use std::net::IpAddr;

pub use cart::{LIVE_REFRESH_HEADER, LineView, render_page};

/// Headers every answer carries: no script but the page's own file, no framing by other
/// sites, no type sniffing, no full URLs to other sites. Inline styles stay allowed for the
/// box's configured colour.
pub const SECURITY_HEADERS: [(&str, &str); 4] = [
    (
        "content-security-policy",
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self'; \
         connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "same-origin"),
    ("x-frame-options", "DENY"),
];

/// A rendered page; never cached, since it shows a session. When the browser's CSRF cookie
/// does not hold the nonce the page's forms were made for, it gets it.
fn page(
    req: &HttpRequest,
    state: &AppState,
    body: String,
    nonce: String,
    cookie: Option<String>,
) -> HttpResponse {
    let mut response = HttpResponse::Ok();
    response
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"));
    if cookie.as_deref() != Some(nonce.as_str()) {
        let secure = state.settings.secure_cookie.unwrap_or_else(|| {
            crate::page::scheme_and_host(req, &state.settings.trusted_proxies).0 == "https"
        });
        response.cookie(csrf::cookie(nonce, secure));
    }
    response.body(body)
}

/// Refuses a POST that the browser says comes from another site: `Sec-Fetch-Site:
/// cross-site`, or an `Origin` naming another host than the one the browser used (as
/// [`crate::page::scheme_and_host`] tells it, behind `trusted` proxies too). A request
/// without either header (an older browser, a script) is left to the CSRF token.
pub fn same_origin(req: &HttpRequest, trusted: &[IpAddr]) -> Result<(), CartError> {
    let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    if header("sec-fetch-site") == Some("cross-site") {
        return Err(CartError::CrossSite);
    }
    if let Some(origin) = header("origin") {
        let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
        if origin_host != crate::page::scheme_and_host(req, trusted).1 {
            return Err(CartError::CrossSite);
        }
    }
    Ok(())
}

/// GET, and HEAD with the same headers and no body (actix-web leaves the body out).
fn get() -> Route {
    web::route().guard(guard::Any(guard::Get()).or(guard::Head()))
}

/// The answer to a method a path does not take: 405, saying which it does.
fn not_allowed(allow: &'static str) -> Route {
    web::route().to(move || async move {
        HttpResponse::MethodNotAllowed()
            .insert_header((header::ALLOW, allow))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(format!("405: this page takes {allow}\n"))
    })
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    let read_only = "GET, HEAD";
    cfg.service(
        web::resource("/")
            .route(get().to(|| async {
                HttpResponse::Found()
                    .insert_header((header::LOCATION, "/Cart"))
                    .finish()
            }))
            .default_service(not_allowed(read_only)),
    )
    .service(
        web::resource("/favicon.ico")
            .route(get().to(assets::favicon))
            .default_service(not_allowed(read_only)),
    )
    .service(
        web::resource("/healthz")
            .route(get().to(|| async { HttpResponse::Ok().body("ok\n") }))
            .default_service(not_allowed(read_only)),
    )
    .service(
        web::scope("/Cart")
            .service(
                web::resource(["", "/"])
                    .route(get().to(cart::view))
                    .route(web::post().to(cart::change))
                    .default_service(not_allowed("GET, HEAD, POST")),
            )
            .service(
                web::resource("/products/{id}")
                    .route(get().to(products::view))
                    .default_service(not_allowed(read_only)),
            )
            .service(
                web::resource("/pictures/{file}")
                    .route(get().to(products::picture))
                    .default_service(not_allowed(read_only)),
            )
            .service(
                web::resource("/events")
                    .route(web::get().to(events::stream))
                    .default_service(not_allowed("GET")),
            )
            .service(
                web::resource("/static/{file}")
                    .route(get().to(assets::file))
                    .default_service(not_allowed(read_only)),
            ),
    );
}
