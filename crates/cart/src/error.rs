//! What can go wrong on a page, and the friendly page each answer gets. Internal detail goes
//! to the log only.

use crate::state::AppState;
use actix_web::{
    HttpResponse, ResponseError,
    body::{BoxBody, EitherBody},
    dev::ServiceResponse,
    http::{StatusCode, header},
    middleware::ErrorHandlerResponse,
    web,
};
use askama::Template;

#[derive(Debug, thiserror::Error)]
pub enum CartError {
    #[error("the session server cannot be reached")]
    Unavailable,
    #[error("the form's security token is missing or wrong")]
    Forbidden,
    #[error("the form was sent from another site")]
    CrossSite,
    #[error("too many live-update streams are open")]
    TooManyStreams,
    #[error("{0:?} is not one of our items")]
    UnknownItem(String),
    #[error("the form must say add or remove")]
    BadAction,
    #[error("the form could not be read: {0}")]
    BadForm(String),
    #[error("no such page")]
    NotFound,
    /// The session server refuses the cart's credential: a configuration to fix, which
    /// shoppers see as an outage.
    #[error("the session server refused the cart's credential: {0}")]
    Credential(session_client::Error),
    /// The session server answered, but not as the cart expects (a bug, or a limit hit).
    #[error("the session server refused: {0}")]
    Session(session_client::Error),
    #[error("a page could not be rendered: {0}")]
    Render(#[from] askama::Error),
}

impl From<session_client::Error> for CartError {
    fn from(e: session_client::Error) -> Self {
        use session_client::Error as E;
        match e {
            E::Unavailable(_) => CartError::Unavailable,
            E::Unauthenticated(_) | E::PermissionDenied(_) => CartError::Credential(e),
            other => CartError::Session(other),
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    title: &'a str,
    message: String,
}

impl ResponseError for CartError {
    fn status_code(&self) -> StatusCode {
        match self {
            CartError::Unavailable | CartError::Credential(_) => StatusCode::SERVICE_UNAVAILABLE,
            CartError::Forbidden | CartError::CrossSite => StatusCode::FORBIDDEN,
            CartError::TooManyStreams => StatusCode::SERVICE_UNAVAILABLE,
            CartError::UnknownItem(_) | CartError::BadAction | CartError::BadForm(_) => {
                StatusCode::BAD_REQUEST
            }
            CartError::NotFound => StatusCode::NOT_FOUND,
            CartError::Session(_) | CartError::Render(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let (title, message) = match self {
            CartError::Unavailable => (OUTAGE_TITLE, outage_message(None)),
            CartError::Credential(_) => {
                tracing::error!(error = %self, "check --session-token (or its file) and the session server's credentials");
                (OUTAGE_TITLE, outage_message(None))
            }
            // A shopper meets this after clearing cookies or restoring an old tab: no jargon.
            CartError::Forbidden => (
                "This page is out of date",
                "The form on that page no longer matches your browser (cookies were cleared, or the page is \
                 from an earlier visit), so nothing changed. Go back to the cart, which reloads it, and try again."
                    .to_owned(),
            ),
            CartError::CrossSite => (
                "Please use the form on this shop's page",
                "Your browser says that request came from another web site, so it was refused and nothing changed."
                    .to_owned(),
            ),
            CartError::TooManyStreams => (
                "Live updates are busy",
                "This server has as many live-update streams open as it allows; the page still works, reload it to see changes."
                    .to_owned(),
            ),
            CartError::UnknownItem(name) => ("Unknown item", format!("{name:?} is not one of our nine items, so nothing was added or removed.")),
            CartError::BadAction => ("Unknown action", "The form must ask to add or remove an item.".to_owned()),
            CartError::BadForm(_) => ("Unreadable form", "The form's data could not be read, so nothing changed.".to_owned()),
            CartError::NotFound => ("Not found", "There is no such page in this shop.".to_owned()),
            CartError::Session(_) | CartError::Render(_) => {
                tracing::error!(error = %self, "request failed");
                ("Something went wrong", "The request could not be completed. Please try again.".to_owned())
            }
        };
        let status = self.status_code();
        let mut response = HttpResponse::build(status);
        if matches!(
            self,
            CartError::Unavailable | CartError::Credential(_) | CartError::TooManyStreams
        ) {
            response.insert_header((header::RETRY_AFTER, "2"));
        }
        let (content_type, body) = page(status, title, message);
        response.content_type(content_type).body(body)
    }
}

/// An error page's content type and body: the HTML page, or its message alone if the
/// template fails.
fn page(status: StatusCode, title: &str, message: String) -> (&'static str, String) {
    let page = ErrorPage {
        status: status.as_u16(),
        title,
        message,
    };
    match page.render() {
        Ok(html) => ("text/html; charset=utf-8", html),
        Err(_) => ("text/plain; charset=utf-8", page.message),
    }
}

const OUTAGE_TITLE: &str = "Sessions are taking a break";

/// What the outage page says, for a store that keeps sessions across its restarts or not
/// (`None`: not heard yet). Each sentence must be true for that store.
fn outage_message(durable: Option<bool>) -> String {
    let first = "The session server cannot be reached right now, so your cart cannot be shown.";
    let rest = match durable {
        Some(true) => {
            "Nothing is lost: the session server keeps carts on disk, and this page will work again as soon as \
             it is back. Try again in a moment."
        }
        Some(false) => {
            "It keeps carts in memory only: if it is just out of reach, your cart comes back with it; if it \
             restarted, your cart is gone and your next add starts a new one. Try again in a moment."
        }
        None => {
            "This page will work again as soon as the session server is back. Try again in a moment."
        }
    };
    format!("{first} {rest}")
}

/// Completes the outage page with what survives the outage, which only this instance's
/// session client knows (the store said so in its last watch hello). Other answers pass.
pub fn explain_outage<B>(
    response: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let outage = response
        .response()
        .error()
        .and_then(|e| e.as_error::<CartError>())
        .is_some_and(|e| matches!(e, CartError::Unavailable));
    let durable = response
        .request()
        .app_data::<web::Data<AppState>>()
        .and_then(|state| state.sessions.store_is_durable());
    if !outage || durable.is_none() {
        return Ok(ErrorHandlerResponse::Response(
            response.map_into_left_body(),
        ));
    }
    // Only the text changes: the status and headers (Retry-After, the security headers) stay.
    let (content_type, body) = page(
        StatusCode::SERVICE_UNAVAILABLE,
        OUTAGE_TITLE,
        outage_message(durable),
    );
    let response = response.map_body(|head, _| {
        head.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static(content_type),
        );
        EitherBody::right(BoxBody::new(body))
    });
    Ok(ErrorHandlerResponse::Response(response))
}
