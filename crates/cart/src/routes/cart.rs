//! `/Cart`: the cart page, and the form that adds and removes items.

use crate::{catalog::Catalog, csrf, error::CartError, page::Frame, shopper, state::AppState};
use actix_web::{HttpRequest, HttpResponse, http::header, web};
use askama::Template;
use serde::Deserialize;
use session_client::{Error, Ops, actix::RequestSession};

/// Marks a fetch by the page's own live-update script: read only, never counted as a hop.
pub const LIVE_REFRESH_HEADER: &str = "x-live-refresh";

#[derive(Debug, Clone)]
pub struct LineView {
    pub id: String,
    pub name: String,
    pub quantity: usize,
}

#[derive(Template)]
#[template(path = "cart.html")]
struct CartPage<'a> {
    frame: Frame,
    lines: Vec<LineView>,
    /// The item list's `<option>`s, one selected.
    choices: &'a str,
    catalog: &'a Catalog,
    notice: Option<String>,
}

/// The cart page's HTML, with the product of id `selected` selected in the form. Public so
/// that other session backends (the benchmark's actix-session variant) render exactly the
/// same page.
pub fn render_page(
    frame: Frame,
    lines: Vec<LineView>,
    catalog: &Catalog,
    notice: Option<String>,
    selected: Option<&str>,
) -> Result<String, CartError> {
    CartPage {
        frame,
        lines,
        choices: catalog.choices_html(selected),
        catalog,
        notice,
    }
    .render()
    .map_err(CartError::from)
}

/// What a form's redirect tells the page it lands on.
#[derive(Debug, Deserialize)]
pub struct Outcome {
    /// `full` or `absent`: why nothing changed.
    notice: Option<String>,
    /// The id of the product the form named: it stays selected.
    item: Option<String>,
}

/// Where a form's answer sends the browser: back to the cart, with the product still
/// selected and, when nothing changed, why.
fn back_to_cart(product_id: &str, notice: Option<&str>) -> HttpResponse {
    let location = match notice {
        Some(notice) => format!("/Cart?item={product_id}&notice={notice}"),
        None => format!("/Cart?item={product_id}"),
    };
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish()
}

pub async fn view(
    req: HttpRequest,
    session: RequestSession,
    state: web::Data<AppState>,
    query: web::Query<Outcome>,
) -> Result<HttpResponse, CartError> {
    let read_only = req.headers().contains_key(LIVE_REFRESH_HEADER);
    let cookie = csrf::cookie_nonce(&req);
    let (loaded, nonce) = shopper::visit(&session, &state.me, read_only, |s| {
        shopper::nonce_for(s, cookie.clone())
    })
    .await?;
    let token = state.settings.csrf_key.token(&nonce);
    let frame = Frame::new(&state, &req, loaded.as_ref(), token)?;
    let lines = match &loaded {
        Some(s) => shopper::lines(s)?
            .0
            .into_iter()
            .map(|l| LineView {
                id: state
                    .catalog
                    .by_name(&l.name)
                    .map(|p| p.id.clone())
                    .unwrap_or_default(),
                name: l.name,
                quantity: l.quantity,
            })
            .collect(),
        None => Vec::new(),
    };
    let product = query.item.as_deref().and_then(|id| state.catalog.by_id(id));
    let notice = match (query.notice.as_deref(), product) {
        (Some("full"), _) => Some(format!(
            "Your cart is full: it holds at most {} items. Remove something first.",
            shopper::MAX_CART_ITEMS
        )),
        (Some("absent"), Some(product)) => Some(format!(
            "{} is not in your cart, so nothing was removed.",
            product.name
        )),
        _ => None,
    };
    let selected = product.map(|p| p.id.as_str());
    let html = render_page(frame, lines, &state.catalog, notice, selected)?;
    Ok(super::page(&req, &state, html, nonce, cookie))
}

#[derive(Debug, Deserialize)]
pub struct ChangeForm {
    item: Option<String>,
    submit: Option<String>,
    csrf: Option<String>,
}

/// Adds or removes one unit, then redirects back (post/redirect/get: a reload never repeats it).
pub async fn change(
    req: HttpRequest,
    session: RequestSession,
    state: web::Data<AppState>,
    form: web::Form<ChangeForm>,
) -> Result<HttpResponse, CartError> {
    super::same_origin(&req, &state.settings.trusted_proxies)?;
    let form = form.into_inner();
    // The token is checked before anything else: against the cookie's nonce, which needs no
    // session, then against the nonce the session was bound to, if it still exists. A page
    // whose session ended still adds: the add starts a new session.
    let nonce = csrf::cookie_nonce(&req).ok_or(CartError::Forbidden)?;
    let given = form.csrf.as_deref().unwrap_or_default();
    if !state.settings.csrf_key.verify(&nonce, given) {
        return Err(CartError::Forbidden);
    }
    let loaded = session.load().await?;
    if loaded
        .as_ref()
        .and_then(shopper::csrf_nonce)
        .is_some_and(|bound| bound != nonce)
    {
        return Err(CartError::Forbidden);
    }
    let name = form.item.unwrap_or_default();
    let product = state
        .catalog
        .by_name(&name)
        .ok_or_else(|| CartError::UnknownItem(name.clone()))?;
    let remove = match form.submit.as_deref() {
        Some("add") => false,
        Some("remove") => true,
        _ => return Err(CartError::BadAction),
    };
    // Nothing to remove without a session; none is made for it.
    if remove && loaded.is_none() {
        return Ok(back_to_cart(&product.id, Some("absent")));
    }
    let ops = if remove {
        Ops::new().list_remove_json(shopper::CART, &product.name)?
    } else {
        Ops::new().list_push_json(shopper::CART, &product.name, Some(shopper::MAX_CART_ITEMS))?
    };
    let mut upkeep = shopper::upkeep(loaded.as_ref(), &state.me, &nonce)?;
    // Bookkeeping rides in the same atomic batch: one round trip.
    let ops = if upkeep.is_empty() {
        ops
    } else {
        upkeep.extend(ops);
        upkeep
    };
    let notice = match session.apply(ops).await {
        // The item's operation comes last.
        Ok(written) if remove && !written.results.last().is_some_and(|r| r.removed) => {
            Some("absent")
        }
        Ok(_) => None,
        Err(Error::OutOfRange(_)) => Some("full"),
        Err(e) => return Err(e.into()),
    };
    Ok(back_to_cart(&product.id, notice))
}
