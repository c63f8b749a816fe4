//! `cerbosCallId`: a fresh ULID for every call (48-bit millisecond time, 80 random bits,
//! Crockford base32), as Cerbos issues.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// 64 unpredictable bits: a randomly keyed SipHash of a process-wide counter and the time.
fn random_u64(nanos: u128) -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(nanos);
    h.finish()
}

/// A new 26-character ULID.
pub(crate) fn new_call_id() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let millis = (now.as_millis() as u64) & 0xFFFF_FFFF_FFFF;
    let random = (u128::from(random_u64(now.as_nanos())) << 16)
        ^ u128::from(random_u64(now.as_nanos() ^ 0x5555));
    let random = random & ((1u128 << 80) - 1);
    let value = (u128::from(millis) << 80) | random;
    (0..26)
        .rev()
        .map(|i| ALPHABET[((value >> (i * 5)) & 0x1F) as usize] as char)
        .collect()
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
    }
}
