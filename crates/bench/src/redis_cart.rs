//! The comparison app: the same cart page, with sessions kept by actix-session in Redis, which
//! is what an actix-web user picks today for shared sessions. It does what the cart does per
//! request (CSRF token, last server, cart lines, history) and renders the very same template.

use actix_session::{Session, SessionMiddleware, storage::RedisSessionStore};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, cookie::Key, http::header, web};
use cart::{
    catalog::Catalog,
    csrf,
    page::{Frame, Panel},
    routes::{LineView, render_page},
    shopper::MAX_CART_ITEMS,
};
use serde::Deserialize;
use std::net::SocketAddr;

struct State {
    catalog: Catalog,
    me: u16,
    peer: u16,
    key: csrf::Key,
}

pub async fn serve(
    listen: SocketAddr,
    redis_url: String,
    catalog: std::path::PathBuf,
    peer: u16,
) -> anyhow::Result<()> {
    let store = RedisSessionStore::new(redis_url).await?;
    let key = Key::generate();
    let state = web::Data::new(State {
        catalog: Catalog::load(&catalog)?,
        me: listen.port(),
        peer,
        key: csrf::Key::random(),
    });
    HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap(cart::routes::SECURITY_HEADERS.into_iter().fold(
                actix_web::middleware::DefaultHeaders::new(),
                |headers, header| headers.add(header),
            ))
            .wrap(
                SessionMiddleware::builder(store.clone(), key.clone())
                    .cookie_name("sid".into())
                    .cookie_secure(false)
                    .build(),
            )
            .route("/Cart", web::get().to(view))
            .route("/Cart", web::post().to(change))
    })
    .bind(listen)?
    .run()
    .await?;
    Ok(())
}

fn err(e: impl std::fmt::Display) -> actix_web::Error {
    actix_web::error::ErrorInternalServerError(e.to_string())
}

async fn view(
    req: HttpRequest,
    session: Session,
    state: web::Data<State>,
) -> actix_web::Result<HttpResponse> {
    // The cart's rules: an anonymous view writes nothing; the CSRF nonce lives in a cookie
    // and is bound to the session by its first write.
    let cookie = csrf::cookie_nonce(&req);
    let bound: Option<String> = session.get("csrf").map_err(err)?;
    let anonymous = bound.is_none() && session.entries().is_empty();
    let nonce = bound
        .clone()
        .or(cookie.clone())
        .unwrap_or_else(csrf::new_nonce);
    if !anonymous && bound.is_none() {
        session.insert("csrf", &nonce).map_err(err)?;
    }
    let last: Option<u16> = session.get("last_server").map_err(err)?;
    if !anonymous && last != Some(state.me) {
        session.insert("last_server", state.me).map_err(err)?;
        if last.is_some() {
            let hops: i64 = session.get("hops").map_err(err)?.unwrap_or(0);
            session.insert("hops", hops + 1).map_err(err)?;
        }
    }
    let units: Vec<String> = session.get("cart").map_err(err)?.unwrap_or_default();
    let history: Vec<String> = session.get("history").map_err(err)?.unwrap_or_default();
    let mut lines: Vec<LineView> = Vec::new();
    for name in &units {
        match lines.iter_mut().find(|l| &l.name == name) {
            Some(l) => l.quantity += 1,
            None => lines.push(LineView {
                id: state
                    .catalog
                    .by_name(name)
                    .map(|p| p.id.clone())
                    .unwrap_or_default(),
                name: name.clone(),
                quantity: 1,
            }),
        }
    }
    let info = req.connection_info();
    let frame = Frame {
        port: state.me,
        peer_port: state.peer,
        peer_url: format!(
            "{}://{}:{}/Cart",
            info.scheme(),
            info.host().split(':').next().unwrap_or("localhost"),
            state.peer
        ),
        color: "goldenrod".into(),
        clustered: true,
        total: units.len(),
        history: history
            .iter()
            .filter_map(|id| state.catalog.by_id(id).cloned())
            .collect(),
        panel: Some(Panel {
            id_prefix: "--------".into(),
            created: String::new(),
            last_access: String::new(),
            version: 0,
            last_server: state.me.to_string(),
            hops: session.get("hops").map_err(err)?.unwrap_or(0),
        }),
        csrf: state.key.token(&nonce),
    };
    let html = render_page(frame, lines, &state.catalog, None, None).map_err(err)?;
    let mut response = HttpResponse::Ok();
    response
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"));
    if cookie.as_deref() != Some(nonce.as_str()) {
        response.cookie(csrf::cookie(nonce, false));
    }
    Ok(response.body(html))
}

#[derive(Deserialize)]
struct Form {
    item: Option<String>,
    submit: Option<String>,
    csrf: Option<String>,
}

async fn change(
    req: HttpRequest,
    session: Session,
    state: web::Data<State>,
    form: web::Form<Form>,
) -> actix_web::Result<HttpResponse> {
    cart::routes::same_origin(&req, &[])?;
    let Some(nonce) = csrf::cookie_nonce(&req) else {
        return Ok(HttpResponse::Forbidden().finish());
    };
    let bound: Option<String> = session.get("csrf").map_err(err)?;
    let token_ok = state
        .key
        .verify(&nonce, form.csrf.as_deref().unwrap_or_default());
    if !token_ok || bound.as_ref().is_some_and(|b| *b != nonce) {
        return Ok(HttpResponse::Forbidden().finish());
    }
    if bound.is_none() {
        session.insert("csrf", &nonce).map_err(err)?;
    }
    let last: Option<u16> = session.get("last_server").map_err(err)?;
    if last != Some(state.me) {
        session.insert("last_server", state.me).map_err(err)?;
    }
    let name = form.item.clone().unwrap_or_default();
    if state.catalog.by_name(&name).is_none() {
        return Ok(HttpResponse::BadRequest().finish());
    }
    let mut units: Vec<String> = session.get("cart").map_err(err)?.unwrap_or_default();
    match form.submit.as_deref() {
        Some("add") if units.len() < MAX_CART_ITEMS as usize => units.push(name),
        Some("add") => {
            return Ok(HttpResponse::SeeOther()
                .insert_header((header::LOCATION, "/Cart?notice=full"))
                .finish());
        }
        Some("remove") => {
            if let Some(at) = units.iter().position(|u| *u == name) {
                units.remove(at);
            }
        }
        _ => return Ok(HttpResponse::BadRequest().finish()),
    }
    session.insert("cart", units).map_err(err)?;
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/Cart"))
        .finish())
}
