//! Stylesheet and script, built into the binary. Served without touching sessions, so they
//! load even while the session server is away.

use crate::error::CartError;
use actix_web::{HttpResponse, http::header, web};

const CSS: &str = include_str!("../../static/cart.css");
const JS: &str = include_str!("../../static/live.js");
const ICON: &str = include_str!("../../static/favicon.svg");

pub async fn file(name: web::Path<String>) -> Result<HttpResponse, CartError> {
    let (body, content_type) = match name.as_str() {
        "cart.css" => (CSS, "text/css; charset=utf-8"),
        "live.js" => (JS, "text/javascript; charset=utf-8"),
        "favicon.svg" => (ICON, "image/svg+xml"),
        _ => return Err(CartError::NotFound),
    };
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .body(body))
}

/// `/favicon.ico`, which browsers ask for whatever the page links: the same picture (SVG
/// under the old name is understood), so that no page load logs a 404.
pub async fn favicon() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("image/svg+xml")
        .insert_header((header::CACHE_CONTROL, "public, max-age=86400"))
        .body(ICON)
}
