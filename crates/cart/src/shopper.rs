//! What the cart keeps in a session, and the operations that change it. Every change is a
//! server-side operation (list push/remove, recent push, counter add), so requests racing on
//! both instances never overwrite each other.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::RngCore;
use session_client::{Error, Ops, Session, actix::RequestSession};

/// Item names in the order they were added, one entry per unit (the original's model).
pub const CART: &str = "cart";
/// Product ids, newest first.
pub const HISTORY: &str = "history";
/// The CSRF token every form carries.
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

pub fn csrf(session: &Session) -> Option<String> {
    session.get_json(CSRF).ok().flatten()
}

fn new_token() -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Bookkeeping a request served by instance `me` owes the session: a CSRF token if it has
/// none, and the hop count if another instance served it last. Empty when nothing is owed.
pub fn upkeep(session: Option<&Session>, me: &str) -> Result<Ops, Error> {
    let mut ops = Ops::new();
    if session.and_then(csrf).is_none() {
        ops = ops.set_json(CSRF, &new_token())?;
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

/// The session for a page view by instance `me`, created if the browser has none, with the
/// bookkeeping applied. `read_only` (live refreshes) never writes, so open pages on both
/// instances cannot set each other off.
pub async fn visit(
    session: &RequestSession,
    me: &str,
    read_only: bool,
) -> Result<Option<Session>, Error> {
    let loaded = session.load().await?;
    if read_only {
        return Ok(loaded);
    }
    let owed = upkeep(loaded.as_ref(), me)?;
    if owed.is_empty() {
        return Ok(loaded);
    }
    session.apply_and_load(owed).await.map(Some)
}

/// Compares tokens in time independent of where they differ.
pub fn tokens_match(expected: &str, given: &str) -> bool {
    expected.len() == given.len()
        && expected
            .bytes()
            .zip(given.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}
