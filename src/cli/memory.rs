//! The command line's heap: accounting for `lstm bench` (the global allocator is the system
//! one, counting the bytes in use and their peak, so a benchmark can report the peak memory of
//! a training pass), and how the process asks glibc to keep freed memory for the next call.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Makes glibc's allocator keep freed blocks of up to 32 MB for later allocations, unless the
/// environment tunes it already (`MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_` or
/// `GLIBC_TUNABLES`); elsewhere than on glibc it does nothing.
///
/// Each training call allocates its tape, workspaces and gradients anew. glibc maps a block
/// of 128 KB or more from the system and returns it when freed, raising that threshold as such
/// blocks come and go; depending on what ran before, the next call's buffers then arrive as
/// fresh pages, each faulted in and zeroed, and returning them interrupts the other cores to
/// flush their address translations. At batch 1 that cost about a fifth of a forward and
/// backward pass (the README's Performance section). A fixed threshold keeps such blocks in the heap, and a
/// higher trim threshold keeps the heap's top.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let tuned = [
            "MALLOC_MMAP_THRESHOLD_",
            "MALLOC_TRIM_THRESHOLD_",
            "GLIBC_TUNABLES",
        ]
        .iter()
        .any(|name| std::env::var_os(name).is_some());
        if !tuned {
            // SAFETY: `mallopt` only sets two of glibc's tuning parameters, to values in their
            // documented ranges; a refusal (return 0) leaves the defaults, which are correct.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
                libc::mallopt(libc::M_TRIM_THRESHOLD, 128 << 20);
            }
        }
    }
}

/// The system allocator, counting.
pub struct Counting;

static IN_USE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

impl Counting {
    /// Bytes allocated and not yet freed.
    pub fn in_use() -> usize {
        IN_USE.load(Ordering::Relaxed)
    }

    /// Starts a new peak measurement at the bytes in use now.
    pub fn reset_peak() {
        PEAK.store(Self::in_use(), Ordering::Relaxed);
    }

    /// The most bytes in use at once since the last [`Counting::reset_peak`].
    pub fn peak() -> usize {
        PEAK.load(Ordering::Relaxed)
    }

    fn grew(size: usize) {
        let now = IN_USE.fetch_add(size, Ordering::Relaxed) + size;
        PEAK.fetch_max(now, Ordering::Relaxed);
    }
}

// SAFETY: every call forwards to `System` with the caller's arguments unchanged; the counters
// only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` shares.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            Self::grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            Self::grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` (through this allocator) with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract, which `System` shares.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
            Self::grew(new_size);
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_use_and_peak_count_a_live_allocation() {
        // Other tests allocate, free and reset the peak concurrently; while this block is
        // alive it is part of the bytes in use and of any peak taken since.
        let block = std::hint::black_box(vec![1u8; 1 << 20]);
        assert!(Counting::in_use() >= 1 << 20);
        Counting::reset_peak();
        assert!(Counting::peak() >= 1 << 20);
        drop(block);
    }
}
