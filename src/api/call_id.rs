//! `cerbosCallId`: a fresh ULID for every call (48-bit millisecond time, 80 random bits,
//! Crockford base32), as Cerbos issues.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::telemetry::random_u64;

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A new 26-character ULID.
pub(crate) fn new_call_id() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let millis = (now.as_millis() as u64) & 0xFFFF_FFFF_FFFF;
    let random = (u128::from(random_u64()) << 16) ^ u128::from(random_u64());
    let random = random & ((1u128 << 80) - 1);
    let value = (u128::from(millis) << 80) | random;
    // Written as bytes into one buffer (not pushed char by char).
    let mut text = [0u8; 26];
    for (i, c) in text.iter_mut().rev().enumerate() {
        *c = ALPHABET[((value >> (i * 5)) & 0x1F) as usize];
    }
    String::from_utf8_lossy(&text).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulids_are_fresh_and_well_formed() {
        let a = new_call_id();
        let b = new_call_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 26);
        assert!(a.bytes().all(|c| ALPHABET.contains(&c)));
        assert!(a.as_bytes()[0] <= b'7', "a 128-bit value starts with 0..7");
        // Most significant first: the time comes first, so later ids sort later.
        std::thread::sleep(std::time::Duration::from_millis(2));
        let c = new_call_id();
        assert!(c[..10] > a[..10], "{a} {c}");
    }
}
