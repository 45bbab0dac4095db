//! How many threads the runtime may use: the count every threaded product and step asks for,
//! set by the user as PyTorch's `torch.set_num_threads` sets it.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Threads requested with [`set_num_threads`]; `0` means "not set".
static NUM_THREADS: AtomicUsize = AtomicUsize::new(0);

/// The machine's available parallelism, read once: asking the system costs tens of
/// microseconds (affinity and cgroup quota), more than a small product, and every product and
/// step asks.
static DEFAULT_THREADS: OnceLock<usize> = OnceLock::new();

/// Sets how many threads large matrix products use (PyTorch `torch.set_num_threads`).
///
/// `0` restores the default, the machine's available parallelism.
pub fn set_num_threads(threads: usize) {
    NUM_THREADS.store(threads, Ordering::Relaxed);
}

/// How many threads large matrix products use: the value given to [`set_num_threads`], or by
/// default [`std::thread::available_parallelism`] (1 if that is unknown), read on first use.
pub fn num_threads() -> usize {
    match NUM_THREADS.load(Ordering::Relaxed) {
        0 => *DEFAULT_THREADS
            .get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from)),
        threads => threads,
    }
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
}
