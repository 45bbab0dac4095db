//! How the two threads of a chunk split by units hand steps to each other: who has finished
//! which step ([`Progress`]), who runs the second side's next step, and the two `h` buffers
//! both read ([`SharedH`]).

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::parallel::helper_thread::{self, SPINS_BEFORE_TAKING_BACK};

/// How a step learns that the other side has finished the step before it.
#[derive(Clone, Copy)]
pub(super) struct Other<'a> {
    /// Whether it has.
    pub(super) ready: &'a dyn Fn() -> bool,
    /// Returns once it has.
    pub(super) wait: &'a dyn Fn(),
}

/// The second side's work, run by whichever thread claims its next step.
pub(super) struct Claimed<T>(pub(super) std::cell::UnsafeCell<T>);

// SAFETY: one thread at a time runs the second side's steps: the one that claimed the step
// (`Progress`), after the step before it finished (its writes acquired through `second`).
unsafe impl<T: Send> Sync for Claimed<T> {}

/// How far the two sides of a chunk have come, and who runs the second side's next step.
///
/// The caller's thread runs the first side; the second side's steps go to the helper thread,
/// one claim at a time. When the caller needs a step of the second side that nobody has
/// claimed (the helper is not on a core: the system may put both threads on one for a while),
/// it claims and runs it itself, so a chunk never waits for a thread that is not running.
#[derive(Default)]
pub(super) struct Progress {
    /// Steps the first side has finished.
    pub(super) first: Counter,
    /// Steps the second side has finished.
    pub(super) second: Counter,
    /// The second side's next unclaimed step.
    pub(super) next: Counter,
}

/// A step count alone on its cache lines: one thread writes it while the other reads.
#[derive(Default)]
#[repr(align(128))]
pub(super) struct Counter(pub(super) AtomicUsize);

/// Marks a side as past every step when its thread leaves the chunk, by returning or by a
/// panic, so the other never waits for it forever (a panic is resumed by
/// `helper_thread::join`).
pub(super) struct Ended<'a>(pub(super) &'a Counter);

impl Drop for Ended<'_> {
    fn drop(&mut self) {
        self.0.0.store(usize::MAX, Ordering::Release);
    }
}

impl Progress {
    /// Claims the second side's step `i` for the calling thread, if nobody has.
    pub(super) fn claim(&self, i: usize) -> bool {
        self.next.0.load(Ordering::Relaxed) == i
            && self
                .next
                .0
                .compare_exchange(i, i + 1, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    }

    /// Returns once the second side's step `i` has finished, running it here if still
    /// unclaimed after [`SPINS_BEFORE_TAKING_BACK`] looks. The caller has seen its step
    /// `i − 1` finish.
    ///
    /// Looking at the claim at once, at every step, would pull its cache line to this core
    /// while the helper claims each step: every claim would then cross between the cores on
    /// the helper's way to its next step.
    pub(super) fn complete_second(&self, i: usize, run: &dyn Fn(usize)) {
        let mut spins = 0;
        while self.second.0.load(Ordering::Acquire) <= i {
            if spins >= SPINS_BEFORE_TAKING_BACK && self.claim(i) {
                run(i);
                self.second.0.store(i + 1, Ordering::Release);
                return;
            }
            helper_thread::pause(&mut spins);
        }
    }

    /// The helper's loop: claims and runs the second side's steps, each once its step before
    /// has finished, until all `steps` are claimed. A step it runs waits, after the product
    /// over its own units, for the first side's step before (`run`'s second argument).
    pub(super) fn help(&self, steps: usize, run: &dyn Fn(usize, Other<'_>)) {
        let first_done = |i: usize| self.first.0.load(Ordering::Acquire) >= i;
        let wait_first = |i: usize| {
            let mut spins = 0;
            while !first_done(i) {
                helper_thread::pause(&mut spins);
            }
        };
        loop {
            let i = self.next.0.load(Ordering::Acquire);
            if i >= steps {
                return;
            }
            let mut spins = 0;
            while self.second.0.load(Ordering::Acquire) < i {
                helper_thread::pause(&mut spins);
            }
            if self.claim(i) {
                run(
                    i,
                    Other {
                        ready: &|| first_done(i),
                        wait: &|| wait_first(i),
                    },
                );
                self.second.0.store(i + 1, Ordering::Release);
            }
        }
    }
}

/// The two `h` buffers of a chunk, each in two parts (a side's units), each part written by
/// its side's thread and read by both, in the order [`UnitSplit::step`](super::UnitSplit::step)
/// keeps.
pub(super) struct SharedH<F> {
    /// Part `s` of buffer `which`: `buffers[which][s]`, `lens[s]` values.
    pub(super) buffers: [[*mut F; 2]; 2],
    pub(super) lens: [usize; 2],
}

// SAFETY: the threads access the buffers only as `side` and `side_mut` allow, in lockstep.
unsafe impl<F: Send> Sync for SharedH<F> {}

impl<F> SharedH<F> {
    /// Side `s`'s units of buffer `which`.
    ///
    /// # Safety
    ///
    /// No thread writes these values while the returned slice is used.
    pub(super) unsafe fn side(&self, which: usize, s: usize) -> &[F] {
        // SAFETY: a whole part; no writer, as the caller promises.
        unsafe { std::slice::from_raw_parts(self.buffers[which][s], self.lens[s]) }
    }

    /// Side `s`'s units of buffer `which`, to write.
    ///
    /// # Safety
    ///
    /// No other thread reads or writes these values while the returned slice is used.
    #[allow(clippy::mut_from_ref)]
    pub(super) unsafe fn side_mut(&self, which: usize, s: usize) -> &mut [F] {
        // SAFETY: a whole part; exclusive, as the caller promises.
        unsafe { std::slice::from_raw_parts_mut(self.buffers[which][s], self.lens[s]) }
    }
}
