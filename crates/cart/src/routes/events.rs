//! `/Cart/events`: server-sent events telling an open page that its session changed.

use crate::{error::CartError, state::AppState};
use actix_web::{HttpResponse, ResponseError, http::header, web};
use session_client::actix::RequestSession;

pub async fn stream(session: RequestSession, state: web::Data<AppState>) -> HttpResponse {
    // Only the cookie is needed: no session server call, and none at all without a session.
    let Some(id) = session.id() else {
        return HttpResponse::NoContent().finish(); // 204 tells EventSource not to reconnect
    };
    let Some(events) = state.live.events(id) else {
        return CartError::TooManyStreams.error_response();
    };
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(events)
}
