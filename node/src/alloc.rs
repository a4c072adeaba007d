//! The process's allocator: mimalloc, asked for plain blocks where a
//! plain block is aligned enough.
//!
//! The `mimalloc` crate's `GlobalAlloc` hands every request to
//! `mi_malloc_aligned`, alignment 1 or 8 included. In mimalloc 3 that call
//! takes its fast path only for blocks up to 1 KiB; above that it goes to
//! the generic path, and for a size whose block is not a power of two
//! (a 1.5 KiB buffer, say) to the over-allocating one: ~180 instructions
//! where `mi_malloc` takes ~30, for an alignment every mimalloc block has
//! anyway. Under callgrind, 4,000 GETs made 24,732 such calls, 21,738 of
//! them over-allocating (`tools/callgrind-per-request.sh`).
//!
//! Every mimalloc block is aligned to at least a word (8 bytes: its size
//! classes are multiples of the word size, from aligned pages), so a
//! request for 8 or less goes to the plain calls; any larger alignment
//! to the aligned ones, as before.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// The alignment every mimalloc block has.
const WORD: usize = std::mem::size_of::<usize>();

pub struct Allocator;

// SAFETY: every call passes mimalloc a size and (where it matters) an
// alignment that the layout gives; blocks come back aligned to the
// layout's alignment (plain blocks are word-aligned, and only layouts
// asking for a word or less get them); all are freed by `mi_free`, which
// takes blocks from every mimalloc allocation call.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl's comment.
        unsafe {
            if layout.align() <= WORD {
                mi::mi_malloc(layout.size()) as *mut u8
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()) as *mut u8
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl's comment.
        unsafe {
            if layout.align() <= WORD {
                mi::mi_zalloc(layout.size()) as *mut u8
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()) as *mut u8
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator (the trait's contract).
        unsafe { mi::mi_free(ptr as *mut c_void) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout` (the trait's contract).
        unsafe {
            if layout.align() <= WORD {
                mi::mi_realloc(ptr as *mut c_void, new_size) as *mut u8
            } else {
                mi::mi_realloc_aligned(ptr as *mut c_void, new_size, layout.align()) as *mut u8
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks of every size class and alignment come back aligned, hold
    /// their bytes across a realloc, and zeroed ones are zero.
    #[test]
    fn blocks_are_aligned_and_keep_their_bytes() {
        let a = Allocator;
        let sizes = [1usize, 7, 8, 9, 24, 40, 1000, 1024, 1025, 1536, 3000, 4096, 5000, 70_000, 1 << 20, (1 << 22) + 3];
        for &size in &sizes {
            for align in [1usize, 2, 4, 8, 16, 32, 64, 128, 4096] {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: non-zero sizes; every block is freed with its layout.
                unsafe {
                    let p = a.alloc(layout);
                    assert!(!p.is_null() && p as usize % align == 0, "size {size} align {align}: {p:?}");
                    for i in 0..size {
                        *p.add(i) = (i % 251) as u8;
                    }
                    let grown = size * 2 + 5;
                    let q = a.realloc(p, layout, grown);
                    assert!(!q.is_null() && q as usize % align == 0, "realloc size {size} align {align}");
                    for i in 0..size {
                        assert_eq!(*q.add(i), (i % 251) as u8, "size {size} align {align} byte {i}");
                    }
                    a.dealloc(q, Layout::from_size_align(grown, align).unwrap());
                    let z = a.alloc_zeroed(layout);
                    assert!(!z.is_null() && z as usize % align == 0, "zeroed size {size} align {align}");
                    assert!((0..size).all(|i| *z.add(i) == 0), "zeroed size {size} align {align}");
                    a.dealloc(z, layout);
                }
            }
        }
    }
}
