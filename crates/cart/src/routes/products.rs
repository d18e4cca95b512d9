//! `/Cart/products/{id}`: a product's page, which also records it in "Recently viewed".

use crate::{catalog::Product, csrf, error::CartError, page::Frame, shopper, state::AppState};
use actix_web::{HttpRequest, HttpResponse, http::header, web};
use askama::Template;
use session_client::{Ops, actix::RequestSession};

#[derive(Template)]
#[template(path = "product.html")]
struct ProductPage {
    frame: Frame,
    product: Product,
}

pub async fn view(
    req: HttpRequest,
    session: RequestSession,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, CartError> {
    let product = state
        .catalog
        .by_id(&id)
        .cloned()
        .ok_or(CartError::NotFound)?;
    let loaded = session.load().await?;
    let cookie = csrf::cookie_nonce(&req);
    let nonce = shopper::nonce_for(loaded.as_ref(), cookie.clone());
    // "Recently viewed" needs a session; a browser gets one once it has shown that it keeps
    // cookies (it sends the CSRF cookie of an earlier page), so that crawlers and cookieless
    // floods never make one.
    let after = if loaded.is_some() || cookie.is_some() {
        let mut ops = shopper::upkeep(loaded.as_ref(), &state.me, &nonce)?;
        ops.extend(Ops::new().recent_push_json(
            shopper::HISTORY,
            &product.id,
            shopper::HISTORY_LEN,
        )?);
        Some(session.apply_and_load(ops).await?)
    } else {
        None
    };
    let token = state.settings.csrf_key.token(&nonce);
    let frame = Frame::new(&state, &req, after.as_ref(), token)?;
    let html = ProductPage { frame, product }.render()?;
    Ok(super::page(&req, &state, html, nonce, cookie))
}

/// A product picture: static, served without touching sessions.
pub async fn picture(
    state: web::Data<AppState>,
    file: web::Path<String>,
) -> Result<HttpResponse, CartError> {
    let svg = state.catalog.picture(&file).ok_or(CartError::NotFound)?;
    Ok(HttpResponse::Ok()
        .content_type("image/svg+xml")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(svg.to_owned()))
}
