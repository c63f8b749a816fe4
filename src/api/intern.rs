//! Shared strings for the short strings that requests repeat (attribute names, roles,
//! enumerated attribute values): each thread remembers the ones it read last, so that a
//! request of the same shape as an earlier one takes a reference to the string instead of
//! allocating a copy. Bounded: only strings up to [`MAX_LEN`] bytes, at most
//! [`MAX_ENTRIES`] per thread (the set is emptied when full, so strings that never come
//! again do not stay), hashed with a per-process random seed (request text cannot aim at
//! one bucket).

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

/// Longest string remembered.
const MAX_LEN: usize = 32;
/// Most strings remembered per thread.
const MAX_ENTRIES: usize = 1024;

/// Strings by their bytes: a string read again is found before its UTF-8 is checked (its
/// bytes are those of a string checked when it was first read).
type Strings = HashMap<Box<[u8]>, Arc<str>, foldhash::fast::RandomState>;

thread_local! {
    static RECENT: RefCell<Strings> = RefCell::new(Strings::default());
}

/// `s` as a shared string: the one this thread remembers, or a new one (remembered when
/// short).
pub(crate) fn shared(s: &str) -> Arc<str> {
    shared_utf8(s.as_bytes()).unwrap_or_else(|| Arc::from(s))
}

/// `bytes` as a shared string ([`shared`]), or `None` when they are not UTF-8.
pub(crate) fn shared_utf8(bytes: &[u8]) -> Option<Arc<str>> {
    let new = |bytes| std::str::from_utf8(bytes).ok().map(Arc::<str>::from);
    if bytes.len() > MAX_LEN {
        return new(bytes);
    }
    RECENT
        .try_with(|recent| {
            let Ok(mut recent) = recent.try_borrow_mut() else {
                return new(bytes);
            };
            if let Some(hit) = recent.get(bytes) {
                return Some(hit.clone());
            }
            let s = new(bytes)?;
            if recent.len() >= MAX_ENTRIES {
                recent.clear();
            }
            recent.insert(Box::from(bytes), s.clone());
            Some(s)
        })
        .unwrap_or_else(|_| new(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_strings_are_shared_long_ones_copied() {
        let a = shared("department");
        let b = shared("department");
        assert_eq!(&*a, "department");
        assert!(Arc::ptr_eq(&a, &b));
        let long = "x".repeat(MAX_LEN + 1);
        let c = shared(&long);
        let d = shared(&long);
        assert_eq!(*c, *long);
        assert!(!Arc::ptr_eq(&c, &d));
        assert_eq!(&*shared(""), "");
        // Bytes that are not UTF-8 are never a string, remembered or not.
        assert_eq!(shared_utf8(b"ok").as_deref(), Some("ok"));
        assert_eq!(shared_utf8(b"\xff"), None);
        assert_eq!(shared_utf8(b"\xff"), None);
        assert_eq!(shared_utf8(&[0xc3; 40]), None);
    }

    #[test]
    fn the_set_stays_bounded() {
        for i in 0..3 * MAX_ENTRIES {
            assert_eq!(&*shared(&format!("s{i}")), format!("s{i}"));
            let len = RECENT.with(|r| r.borrow().len());
            assert!(len <= MAX_ENTRIES, "{len}");
        }
        // Still shared after the set was emptied and filled again.
        let a = shared("role");
        assert!(Arc::ptr_eq(&a, &shared("role")));
    }
}
