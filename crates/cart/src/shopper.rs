//! What the cart keeps in a session, and the operations that change it. Every change is a
//! server-side operation (list push/remove, recent push, counter add), so requests racing on
//! both instances never overwrite each other.

use session_client::{Error, Ops, Session, actix::RequestSession};

/// Item names in the order they were added, one entry per unit (the original's model).
pub const CART: &str = "cart";
/// Product ids, newest first.
pub const HISTORY: &str = "history";
/// The CSRF nonce the session is bound to (see [`crate::csrf`]).
pub const CSRF: &str = "csrf";
/// The public port of the instance that served the session last.
pub const LAST_SERVER: &str = "last_server";
/// How many times the session moved between instances.
pub const HOPS: &str = "hops";

/// Units a cart holds at most.
pub const MAX_CART_ITEMS: u32 = 500;
/// Products kept in "Recently viewed".
pub const HISTORY_LEN: u32 = 5;

/// One line of the cart: a product and how many of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub name: String,
    pub quantity: usize,
}

/// The cart's lines in order of first addition, and the total quantity.
pub fn lines(session: &Session) -> Result<(Vec<Line>, usize), Error> {
    let units: Vec<String> = session.list_json(CART)?;
    let total = units.len();
    let mut lines: Vec<Line> = Vec::new();
    for name in units {
        match lines.iter_mut().find(|l| l.name == name) {
            Some(line) => line.quantity += 1,
            None => lines.push(Line { name, quantity: 1 }),
        }
    }
    Ok((lines, total))
}

pub fn history(session: &Session) -> Result<Vec<String>, Error> {
    session.list_json(HISTORY)
}

/// The CSRF nonce a session was bound to by its first write (see [`crate::csrf`]).
pub fn csrf_nonce(session: &Session) -> Option<String> {
    session.get_json(CSRF).ok().flatten()
}

/// The nonce a request's page is made with: its session's, else its cookie's, else a new one.
pub fn nonce_for(session: Option<&Session>, cookie: Option<String>) -> String {
    session
        .and_then(csrf_nonce)
        .or(cookie)
        .unwrap_or_else(crate::csrf::new_nonce)
}

/// Bookkeeping a request served by instance `me` owes the session: the CSRF nonce it is
/// bound to if it has none, and the hop count if another instance served it last. Empty
/// when nothing is owed.
pub fn upkeep(session: Option<&Session>, me: &str, nonce: &str) -> Result<Ops, Error> {
    let mut ops = Ops::new();
    if session.and_then(csrf_nonce).is_none() {
        ops = ops.set_json(CSRF, nonce)?;
    }
    let last: Option<String> = session
        .map(|s| s.get_json(LAST_SERVER))
        .transpose()?
        .flatten();
    if last.as_deref() != Some(me) {
        ops = ops.set_json(LAST_SERVER, me)?;
        if last.is_some() {
            ops = ops.counter_add(HOPS, 1);
        }
    }
    Ok(ops)
}

/// The session for a page view by instance `me`, with the bookkeeping applied. A browser
/// without a session gets none: an anonymous view writes nothing, so crawlers and floods of
/// cookieless requests cost the session server nothing. `read_only` (live refreshes) never
/// writes, so open pages on both instances cannot set each other off.
pub async fn visit(
    session: &RequestSession,
    me: &str,
    read_only: bool,
    nonce: impl FnOnce(Option<&Session>) -> String,
) -> Result<(Option<Session>, String), Error> {
    let loaded = session.load().await?;
    let nonce = nonce(loaded.as_ref());
    let Some(current) = loaded.as_ref().filter(|_| !read_only) else {
        return Ok((loaded, nonce));
    };
    let owed = upkeep(Some(current), me, &nonce)?;
    if owed.is_empty() {
        return Ok((loaded, nonce));
    }
    Ok((Some(session.apply_and_load(owed).await?), nonce))
}
