//! The batch semantics of the storage contract, shared by every store. A batch's operations
//! run in order against a session's attributes, each seeing the effect of the ones before
//! it, and a failure leaves the session as it was (all or nothing). A store hands over how
//! to read its current attributes and the session's size, and gets back the changes to write
//! and the results to answer; how it writes them is its own business.

use super::{
    Attribute, LimitKind, Limits, MAX_BATCH_WORK, OpKind, OpResult, Operation, StoreError, Value,
};
use bytes::Bytes;
use std::{collections::BTreeMap, sync::Arc};

/// What one operation does to its attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Keep,
    Set(Attribute),
    Remove,
}

/// A batch run against a session without changing it.
#[derive(Debug)]
pub struct Staged {
    pub results: Vec<OpResult>,
    /// The new state of each attribute the batch changed: `Some` set, `None` removed.
    pub changes: BTreeMap<String, Option<Attribute>>,
    /// The session's size after the batch, as the limits count it.
    pub size: u64,
}

/// Runs `ops` at the new session `version` against the attributes `stored` gives (the
/// session's state before the batch) and the session's `size`, within `limits`. Values move
/// from the operations into the new state: a clone of a `Bytes` would allocate a shared header.
pub fn stage<'s>(
    stored: impl Fn(&str) -> Option<&'s Attribute>,
    size: u64,
    ops: Vec<Operation>,
    version: u64,
    limits: &Limits,
) -> Result<Staged, StoreError> {
    let mut changes: BTreeMap<String, Option<Attribute>> = BTreeMap::new();
    let mut results = Vec::with_capacity(ops.len());
    let mut work = 0u64;
    for (index, Operation { name, kind }) in ops.into_iter().enumerate() {
        let current = match changes.get(&name) {
            Some(staged) => staged.as_ref(),
            None => stored(&name),
        };
        // A list operation looks at (and may copy) the whole list: bound the batch's sum.
        work += 1 + current.map_or(0, |a| match &a.value {
            Value::List { items, .. } => items.len() as u64,
            _ => 0,
        });
        if work > MAX_BATCH_WORK {
            return Err(StoreError::LimitExceeded {
                which: LimitKind::BatchWork,
                limit: MAX_BATCH_WORK,
                wanted: work,
                attr: None,
            });
        }
        let at = At {
            index,
            name: &name,
            version,
        };
        let (change, result) = run(&at, kind, current)?;
        match change {
            Change::Keep => {}
            Change::Set(attr) => {
                let size = attr.size(&name);
                if size > limits.max_attribute_bytes {
                    return Err(StoreError::LimitExceeded {
                        which: LimitKind::Attribute,
                        limit: limits.max_attribute_bytes,
                        wanted: size,
                        attr: Some(name),
                    });
                }
                changes.insert(name, Some(attr));
            }
            Change::Remove => {
                changes.insert(name, None);
            }
        }
        results.push(result);
    }
    let mut size = size;
    for (name, new) in &changes {
        size -= stored(name).map_or(0, |a| a.size(name));
        size += new.as_ref().map_or(0, |a| a.size(name));
    }
    if size > limits.max_session_bytes {
        return Err(StoreError::LimitExceeded {
            which: LimitKind::Session,
            limit: limits.max_session_bytes,
            wanted: size,
            attr: None,
        });
    }
    Ok(Staged {
        results,
        changes,
        size,
    })
}

/// One operation's place in its batch, which its errors and its writes name.
struct At<'a> {
    index: usize,
    name: &'a str,
    /// The session's version after the batch: every attribute it writes gets it.
    version: u64,
}

impl At<'_> {
    fn wrong_type(&self, found: &Value, wanted: &'static str) -> StoreError {
        StoreError::WrongType {
            index: self.index,
            name: self.name.to_owned(),
            found: found.kind_name(),
            wanted,
        }
    }

    fn out_of_range(&self, detail: String) -> StoreError {
        StoreError::OutOfRange {
            index: self.index,
            name: self.name.to_owned(),
            detail,
        }
    }

    /// A compare-and-set's check: `expected` is the attribute's version, 0 for absent.
    fn check_version(
        &self,
        expected: Option<u64>,
        current: Option<&Attribute>,
    ) -> Result<(), StoreError> {
        match expected {
            Some(expected) if expected != current.map_or(0, |a| a.version) => {
                Err(StoreError::Conflict {
                    index: self.index,
                    name: self.name.to_owned(),
                    current: current.cloned(),
                })
            }
            _ => Ok(()),
        }
    }

    fn written(&self, value: Value) -> Change {
        Change::Set(Attribute {
            value,
            version: self.version,
        })
    }

    /// A list write: the new list and what to report.
    fn list(&self, content_type: Arc<str>, items: Vec<Bytes>, removed: bool) -> (Change, OpResult) {
        let result = OpResult {
            list_len: items.len() as u32,
            attribute_version: self.version,
            removed,
            ..OpResult::default()
        };
        (
            self.written(Value::List {
                content_type,
                items,
            }),
            result,
        )
    }
}

/// One operation against the attribute's current state.
fn run(
    at: &At<'_>,
    kind: OpKind,
    current: Option<&Attribute>,
) -> Result<(Change, OpResult), StoreError> {
    match kind {
        OpKind::Set {
            value,
            expected_version,
        } => set(at, value, expected_version, current),
        OpKind::Remove { expected_version } => remove(at, expected_version, current),
        OpKind::ListPush {
            item,
            content_type,
            max_len,
        } => list_push(at, item, &content_type, max_len, current),
        OpKind::ListRemove { item } => list_remove(at, &item, current),
        OpKind::RecentPush {
            item,
            content_type,
            keep,
        } => recent_push(at, item, &content_type, keep, current),
        OpKind::CounterAdd {
            delta,
            min,
            max,
            remove_at_zero,
        } => counter_add(at, delta, (min, max), remove_at_zero, current),
    }
}

fn set(
    at: &At<'_>,
    value: Value,
    expected_version: Option<u64>,
    current: Option<&Attribute>,
) -> Result<(Change, OpResult), StoreError> {
    at.check_version(expected_version, current)?;
    let result = OpResult {
        attribute_version: at.version,
        ..OpResult::default()
    };
    Ok((at.written(value), result))
}

fn remove(
    at: &At<'_>,
    expected_version: Option<u64>,
    current: Option<&Attribute>,
) -> Result<(Change, OpResult), StoreError> {
    at.check_version(expected_version, current)?;
    Ok(removal(current, OpResult::default()))
}

/// Removes the attribute if there is one, saying so in `result`.
fn removal(current: Option<&Attribute>, mut result: OpResult) -> (Change, OpResult) {
    result.removed = current.is_some();
    let change = if current.is_some() {
        Change::Remove
    } else {
        Change::Keep
    };
    (change, result)
}

/// The list `current` holds (its content type and items), or a new one of `content_type`.
fn list_or_new<'c>(
    at: &At<'_>,
    content_type: &str,
    current: Option<&'c Attribute>,
) -> Result<(Arc<str>, &'c [Bytes]), StoreError> {
    match current.map(|a| &a.value) {
        None => Ok((Arc::from(content_type), &[])),
        Some(Value::List {
            content_type,
            items,
        }) => Ok((Arc::clone(content_type), items)),
        Some(other) => Err(at.wrong_type(other, "list")),
    }
}

fn list_push(
    at: &At<'_>,
    item: Bytes,
    content_type: &str,
    max_len: Option<u32>,
    current: Option<&Attribute>,
) -> Result<(Change, OpResult), StoreError> {
    let (content_type, old) = list_or_new(at, content_type, current)?;
    if let Some(max) = max_len.filter(|max| old.len() >= *max as usize) {
        return Err(at.out_of_range(format!("list would exceed {max} items")));
    }
    let mut items = Vec::with_capacity(old.len() + 1);
    items.extend_from_slice(old);
    items.push(item);
    Ok(at.list(content_type, items, false))
}

fn list_remove(
    at: &At<'_>,
    item: &Bytes,
    current: Option<&Attribute>,
) -> Result<(Change, OpResult), StoreError> {
    let (content_type, old) = match current.map(|a| &a.value) {
        None => return Ok((Change::Keep, OpResult::default())),
        Some(Value::List {
            content_type,
            items,
        }) => (content_type, items),
        Some(other) => return Err(at.wrong_type(other, "list")),
    };
    match old.iter().position(|i| i == item) {
        None => {
            let result = OpResult {
                list_len: old.len() as u32,
                ..OpResult::default()
            };
            Ok((Change::Keep, result))
        }
        Some(found) => {
            let mut items = old.clone();
            items.remove(found);
            Ok(at.list(Arc::clone(content_type), items, true))
        }
    }
}

fn recent_push(
    at: &At<'_>,
    item: Bytes,
    content_type: &str,
    keep: u32,
    current: Option<&Attribute>,
) -> Result<(Change, OpResult), StoreError> {
    let (content_type, old) = list_or_new(at, content_type, current)?;
    let mut items = Vec::with_capacity(old.len() + 1);
    items.extend(old.iter().filter(|i| **i != item).cloned());
    items.insert(0, item);
    items.truncate(keep as usize);
    Ok(at.list(content_type, items, false))
}

fn counter_add(
    at: &At<'_>,
    delta: i64,
    (min, max): (Option<i64>, Option<i64>),
    remove_at_zero: bool,
    current: Option<&Attribute>,
) -> Result<(Change, OpResult), StoreError> {
    let old = match current.map(|a| &a.value) {
        None => 0,
        Some(Value::Counter(v)) => *v,
        Some(other) => return Err(at.wrong_type(other, "counter")),
    };
    let new = old
        .checked_add(delta)
        .ok_or_else(|| at.out_of_range("counter would overflow".into()))?;
    if let Some(min) = min.filter(|m| new < *m) {
        return Err(at.out_of_range(format!("counter would go below {min}")));
    }
    if let Some(max) = max.filter(|m| new > *m) {
        return Err(at.out_of_range(format!("counter would go above {max}")));
    }
    let result = OpResult {
        counter: new,
        ..OpResult::default()
    };
    if new == 0 && remove_at_zero {
        return Ok(removal(current, result));
    }
    let result = OpResult {
        attribute_version: at.version,
        ..result
    };
    Ok((at.written(Value::Counter(new)), result))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(text: &'static str) -> Value {
        Value::Bytes {
            content_type: Arc::from("text/plain"),
            data: Bytes::from_static(text.as_bytes()),
        }
    }

    fn op(name: &str, kind: OpKind) -> Operation {
        Operation {
            name: name.into(),
            kind,
        }
    }

    fn push(item: &'static str) -> OpKind {
        OpKind::ListPush {
            item: Bytes::from_static(item.as_bytes()),
            content_type: "text/plain".into(),
            max_len: Some(2),
        }
    }

    fn add(delta: i64) -> OpKind {
        OpKind::CounterAdd {
            delta,
            min: Some(0),
            max: None,
            remove_at_zero: true,
        }
    }

    /// Runs `ops` at version 2 against a session holding `stored` (at version 1).
    fn run_on(stored: &[(&str, Value)], ops: Vec<Operation>) -> Result<Staged, StoreError> {
        let attrs: BTreeMap<String, Attribute> = stored
            .iter()
            .map(|(name, value)| {
                let attr = Attribute {
                    value: value.clone(),
                    version: 1,
                };
                ((*name).to_owned(), attr)
            })
            .collect();
        let size = attrs.iter().map(|(n, a)| a.size(n)).sum();
        stage(|name| attrs.get(name), size, ops, 2, &Limits::default())
    }

    #[test]
    fn each_operation_sees_the_ones_before_it() {
        let staged = run_on(
            &[],
            vec![
                op("cart", push("a")),
                op("cart", push("b")),
                op(
                    "cart",
                    OpKind::ListRemove {
                        item: Bytes::from_static(b"a"),
                    },
                ),
                op("n", add(2)),
                op("n", add(-2)),
            ],
        )
        .expect("runs");
        let lens: Vec<_> = staged.results.iter().map(|r| r.list_len).collect();
        assert_eq!(lens, [1, 2, 1, 0, 0]);
        assert!(staged.results[2].removed);
        assert_eq!(staged.results[3].counter, 2);
        assert_eq!(
            staged.changes.get("n"),
            Some(&None),
            "a counter added, then removed at zero, ends removed"
        );
        let Some(Some(cart)) = staged.changes.get("cart") else {
            panic!("the cart is set: {:?}", staged.changes);
        };
        assert_eq!(cart.version, 2);
        assert_eq!(staged.size, cart.size("cart"));
    }

    #[test]
    fn a_failure_names_its_operation_and_stages_nothing() {
        let stored = [("name", bytes("x")), ("n", Value::Counter(1))];
        let wrong = run_on(&stored, vec![op("n", add(1)), op("name", push("a"))]);
        assert!(
            matches!(
                wrong,
                Err(StoreError::WrongType {
                    index: 1,
                    found: "bytes",
                    wanted: "list",
                    ..
                })
            ),
            "{wrong:?}"
        );
        let below = run_on(&stored, vec![op("n", add(-2))]);
        assert!(
            matches!(below, Err(StoreError::OutOfRange { index: 0, .. })),
            "{below:?}"
        );
        let full = run_on(
            &[],
            vec![op("c", push("a")), op("c", push("b")), op("c", push("c"))],
        );
        assert!(
            matches!(full, Err(StoreError::OutOfRange { index: 2, .. })),
            "{full:?}"
        );
        let stale = run_on(
            &stored,
            vec![op(
                "name",
                OpKind::Set {
                    value: bytes("y"),
                    expected_version: Some(7),
                },
            )],
        );
        match stale {
            Err(StoreError::Conflict {
                index: 0, current, ..
            }) => {
                assert_eq!(
                    current.map(|a| a.version),
                    Some(1),
                    "the current value comes back"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn removes_and_misses_report_what_they_did() {
        let stored = [("name", bytes("x"))];
        let staged = run_on(
            &stored,
            vec![
                op(
                    "name",
                    OpKind::Remove {
                        expected_version: Some(1),
                    },
                ),
                op(
                    "gone",
                    OpKind::Remove {
                        expected_version: None,
                    },
                ),
            ],
        )
        .expect("runs");
        assert!(staged.results[0].removed);
        assert!(!staged.results[1].removed);
        assert_eq!(staged.changes.get("name"), Some(&None));
        assert!(!staged.changes.contains_key("gone"));
        assert_eq!(staged.size, 0);
    }

    #[test]
    fn recent_push_keeps_the_newest_distinct_items_first() {
        let recent = |item: &'static str| OpKind::RecentPush {
            item: Bytes::from_static(item.as_bytes()),
            content_type: "text/plain".into(),
            keep: 3,
        };
        let staged = run_on(
            &[],
            ["a", "b", "c", "a", "d"]
                .into_iter()
                .map(|i| op("seen", recent(i)))
                .collect(),
        )
        .expect("runs");
        let Some(Some(Attribute {
            value: Value::List { items, .. },
            ..
        })) = staged.changes.get("seen")
        else {
            panic!("a list: {:?}", staged.changes);
        };
        assert_eq!(items, &[&b"d"[..], b"a", b"c"]);
    }
}
