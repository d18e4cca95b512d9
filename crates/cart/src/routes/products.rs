//! `/Cart/products/{id}`: a product's page, which also records it in "Recently viewed".

use crate::{catalog::Product, error::CartError, page::Frame, shopper, startup::AppState};
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
    let mut ops = shopper::upkeep(loaded.as_ref(), &state.me)?;
    ops.extend(Ops::new().recent_push_json(shopper::HISTORY, &product.id, shopper::HISTORY_LEN)?);
    let after = session.apply_and_load(ops).await?;
    let frame = Frame::new(&state, &req, Some(&after))?;
    let html = ProductPage { frame, product }
        .render()
        .map_err(|e| CartError::Internal(e.to_string()))?;
    Ok(super::html(html))
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
