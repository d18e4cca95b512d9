//! `/Cart/events`: server-sent events telling an open page that its session changed.

use crate::{error::CartError, state::AppState};
use actix_web::{HttpResponse, ResponseError, http::header, web};
use session_client::actix::RequestSession;

pub async fn stream(session: RequestSession, state: web::Data<AppState>) -> HttpResponse {
    // Events name sessions by reference: the session says its own (from the near cache,
    // as a rule). No call at all without a session cookie.
    let reference = match session.load().await {
        Ok(Some(loaded)) => loaded.info.reference,
        // 204 tells EventSource not to reconnect.
        Ok(None) => return HttpResponse::NoContent().finish(),
        Err(e) => return CartError::from(e).error_response(),
    };
    let Some(events) = state.live.events(reference) else {
        return CartError::TooManyStreams.error_response();
    };
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(events)
}
