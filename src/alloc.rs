//! The binary's allocator: mimalloc, asked for each block through the entry point that
//! serves it fastest.
//!
//! The `mimalloc` crate sends every allocation to `mi_malloc_aligned`. In mimalloc 3 that
//! function takes its fast path only while the size class's current page still has a free
//! block. When the page's free list runs out (under steady alloc/free churn it does, often),
//! it does not collect the blocks freed since, as `mi_malloc` does: unless the size is a
//! power of two, it over-allocates `size + align - 1` bytes from the next size class up,
//! the slow way, leaving the freed blocks of the right class uncollected. Several of the 60
//! allocations of an ext_authz Check went that way; calling the plain entry points saved
//! 1,850 instructions per Check and 2,100 per CheckResources call (callgrind, one worker
//! thread; issue 15). `mi_malloc` returns blocks aligned to 16 bytes (blocks under 16
//! bytes to 8), so a layout within that goes to the plain entry points, as the standard
//! library's `System` allocator does with `malloc`; only larger alignments take the
//! aligned ones.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// The alignment every `mi_malloc` block of at least this many bytes has
/// (mimalloc's `MI_MAX_ALIGN_SIZE`).
const PLAIN_ALIGN: usize = 16;

/// mimalloc as the global allocator: `#[global_allocator] static A: Mimalloc = Mimalloc;`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Mimalloc;

/// Whether a block of `size` bytes from the plain entry points is aligned to `align`.
#[inline]
fn plain(align: usize, size: usize) -> bool {
    align <= PLAIN_ALIGN && align <= size
}

// SAFETY: every method hands the request to mimalloc, which returns blocks of at least the
// requested size (or null) and frees any block it returned, whichever entry point made it.
// Blocks come from the plain entry points only when `plain` holds, that is when mimalloc's
// 16-byte (8 below 16 bytes) alignment of its blocks covers the layout's alignment.
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl.
        unsafe {
            if plain(layout.align(), layout.size()) {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl.
        unsafe {
            if plain(layout.align(), layout.size()) {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: see the impl; `ptr` came from this allocator.
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: see the impl; `ptr` came from this allocator with `layout`.
        unsafe {
            if plain(layout.align(), new_size) {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    unsafe extern "C" {
        /// The bytes usable in a block (linked in with the rest of mimalloc).
        fn mi_usable_size(p: *const c_void) -> usize;
        /// The size of the block `mi_malloc(size)` gives.
        fn mi_good_size(size: usize) -> usize;
    }

    /// Sizes around mimalloc's size classes, powers of two and not.
    const SIZES: [usize; 14] = [
        1, 7, 8, 12, 16, 24, 40, 100, 216, 384, 837, 4000, 70_000, 600_000,
    ];

    #[test]
    fn blocks_are_aligned_to_the_layout_whatever_its_alignment() {
        let a = Mimalloc;
        for size in SIZES {
            for align in [1, 2, 4, 8, 16, 32, 64, 128, 4096] {
                let Ok(layout) = Layout::from_size_align(size.max(align), align) else {
                    continue;
                };
                // SAFETY: non-zero sizes; each block is freed with its layout.
                unsafe {
                    let p = a.alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "{layout:?}");
                    assert!(mi_usable_size(p.cast()) >= layout.size(), "{layout:?}");
                    p.write_bytes(0xa5, layout.size());
                    a.dealloc(p, layout);
                    let z = a.alloc_zeroed(layout);
                    assert_eq!(z as usize % align, 0, "{layout:?}");
                    let bytes = std::slice::from_raw_parts(z, layout.size());
                    assert!(bytes.iter().all(|&b| b == 0), "{layout:?}");
                    a.dealloc(z, layout);
                }
            }
        }
    }

    #[test]
    fn realloc_keeps_the_contents_and_the_alignment() {
        let a = Mimalloc;
        for align in [1, 8, 16, 64] {
            let layout = Layout::from_size_align(align, align).unwrap();
            // SAFETY: every pointer is the last one the allocator returned for the block,
            // passed with the layout it has at that point.
            unsafe {
                let mut p = a.alloc(layout);
                p.write(42);
                let mut current = layout;
                for new_size in [3, 24, 200, 5000, 100_000, 40] {
                    let new_size = new_size.max(1);
                    p = a.realloc(p, current, new_size);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "align {align}, size {new_size}");
                    assert_eq!(p.read(), 42);
                    current = Layout::from_size_align(new_size, align).unwrap();
                }
                a.dealloc(p, current);
            }
        }
    }

    /// The reason for this allocator: under alloc/free churn, blocks of a size that is not a
    /// power of two stay in their own size class (the `mimalloc` crate's `mi_malloc_aligned`
    /// hands them out of a larger class each time a page's free list runs dry).
    #[test]
    fn churned_blocks_stay_in_their_size_class() {
        let a = Mimalloc;
        for size in [24, 40, 216, 384, 837, 4000] {
            let layout = Layout::from_size_align(size, 8).unwrap();
            // SAFETY: each block is freed once, with its layout.
            unsafe {
                let good = mi_good_size(size);
                let mut live = Vec::new();
                for round in 0..50 {
                    for _ in 0..200 {
                        let p = a.alloc(layout);
                        assert_eq!(mi_usable_size(p.cast()), good, "size {size}, round {round}");
                        live.push(p);
                    }
                    // Free most of them, so that the next round's pages have blocks to
                    // collect rather than a fresh free list.
                    for p in live.drain(20..) {
                        a.dealloc(p, layout);
                    }
                }
                for p in live {
                    a.dealloc(p, layout);
                }
            }
        }
    }
}
