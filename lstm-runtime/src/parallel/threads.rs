//! How many threads the runtime may use: the count every threaded product and step asks for,
//! set by the user as PyTorch's `torch.set_num_threads` sets it, and lowered for the work a
//! thread runs on its share of the cores ([`with_threads`]).

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Threads requested with [`set_num_threads`]; `0` means "not set".
static NUM_THREADS: AtomicUsize = AtomicUsize::new(0);

/// The machine's available parallelism, read once: asking the system costs tens of
/// microseconds (affinity and cgroup quota), more than a small product, and every product and
/// step asks.
static DEFAULT_THREADS: OnceLock<usize> = OnceLock::new();

thread_local! {
    /// Threads the calls on this thread may use, set by [`with_threads`]; `0` means "not set".
    static SCOPED: Cell<usize> = const { Cell::new(0) };
}

/// Sets how many threads large matrix products use (PyTorch `torch.set_num_threads`).
///
/// `0` restores the default, the machine's available parallelism.
pub fn set_num_threads(threads: usize) {
    NUM_THREADS.store(threads, Ordering::Relaxed);
}

/// How many threads large matrix products use: the value given to [`set_num_threads`], or by
/// default [`std::thread::available_parallelism`] (1 if that is unknown), read on first use;
/// inside the runtime, work given a share of the cores (one of several pieces running at once)
/// sees that share.
pub fn num_threads() -> usize {
    let scoped = SCOPED.with(Cell::get);
    if scoped > 0 {
        return scoped;
    }
    match NUM_THREADS.load(Ordering::Relaxed) {
        0 => *DEFAULT_THREADS
            .get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from)),
        threads => threads,
    }
}

/// Runs `body` with [`num_threads`] at `threads` (at least 1) on this thread: the share of
/// the cores that one of several pieces of work running at once may use.
pub(crate) fn with_threads<R>(threads: usize, body: impl FnOnce() -> R) -> R {
    /// Puts back the count `body` ran inside, even if it panics.
    struct Restore(usize);
    impl Drop for Restore {
        fn drop(&mut self) {
            SCOPED.with(|scoped| scoped.set(self.0));
        }
    }
    let _restore = Restore(SCOPED.with(|scoped| scoped.replace(threads.max(1))));
    body()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_count_can_be_set_and_reset() {
        set_num_threads(3);
        assert_eq!(num_threads(), 3);
        set_num_threads(0);
        assert!(num_threads() >= 1);
    }

    #[test]
    fn a_scoped_count_holds_on_its_thread_until_the_body_returns() {
        with_threads(7, || {
            assert_eq!(num_threads(), 7);
            with_threads(0, || assert_eq!(num_threads(), 1));
            assert_eq!(num_threads(), 7);
        });
        assert_eq!(SCOPED.with(Cell::get), 0);
    }
}
