//! A second thread that stays awake for the length of a time loop, so that each step's work
//! can be split in two at a cost of well under a microsecond.
//!
//! A time step of a small layer (batch 1, hidden 128) takes a few microseconds; handing half
//! of it to a Rayon worker from outside the pool costs more than that (the caller sleeps on a
//! latch while a woken worker runs the join), so such steps used to run on one core. Within
//! [`with_helper`] a helper thread spins waiting for work, and [`join`] on the calling thread
//! posts one closure to it and runs the other itself, both returning before `join` does.
//!
//! Nothing inside [`with_helper`] should use Rayon: the spinning helper would compete with
//! Rayon's workers for the cores. So the matrix products and the split steps ask [`active`]
//! and split through the helper when one is running.
//!
//! A [`Helper`] is that thread kept beyond one call: [`with_helper`] keeps one for each thread
//! that calls it, which serves that thread's time loops and a stepper's steps (calls of their
//! own) alike. Between calls it spins, then yields, and after [`IDLE_BEFORE_SLEEP`] without
//! work it sleeps until the next job wakes it, as OpenMP runtimes' workers do after their
//! block time.

use std::cell::{Cell, RefCell, UnsafeCell};
use std::mem::MaybeUninit;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use super::threads::num_threads;

/// The helper has nothing to do.
const IDLE: u8 = 0;
/// A job is posted and nobody runs it yet.
const POSTED: u8 = 1;
/// The posted job is being run, by the helper or by the poster.
const RUNNING: u8 = 2;
/// The posted job is finished.
const DONE: u8 = 3;
/// The time loop is over: the helper returns.
const STOP: u8 = 4;
/// The helper went to sleep after [`IDLE_BEFORE_SLEEP`] without work: a poster wakes it.
const SLEEPING: u8 = 5;

/// How long an idle helper keeps looking for work (spinning, then yielding its core) before it
/// sleeps: long enough that a caller stepping a layer in a loop never waits for it to wake,
/// short enough that a helper nobody uses soon stops taking a core.
const IDLE_BEFORE_SLEEP: Duration = Duration::from_millis(1);

/// Looks at the state the poster spends, once its own side is done, before it runs a job the
/// helper has not started itself: a helper that is not on a core (the system gave both
/// threads one core for a while) must not hold the time loop up.
pub(crate) const SPINS_BEFORE_TAKING_BACK: u32 = 256;

/// Looks at the state, spinning, before a waiting thread starts yielding its core at every
/// look: if the two threads ever share one core (another process takes the other), a spinning
/// waiter must let the one it waits for run.
const SPINS_BEFORE_YIELD: u32 = 1 << 10;

/// A job handed to the helper: a type-erased `FnOnce` behind a mutable reference whose borrow
/// the poster keeps alive until the job is done.
type Job = *mut (dyn FnMut() + Send);

/// The state shared by the calling thread and the helper.
struct Shared {
    /// The state and the posted job, on one cache line of their own.
    post: Post,
    /// The panic payload of a job that panicked, resumed on the calling thread.
    panic: Mutex<Option<Box<dyn std::any::Any + Send>>>,
    /// The helper thread, set by itself before it can sleep, for waking it.
    thread: OnceLock<Thread>,
}

impl Shared {
    fn new() -> Self {
        Shared {
            post: Post {
                state: AtomicU8::new(IDLE),
                job: UnsafeCell::new(None),
            },
            panic: Mutex::new(None),
            thread: OnceLock::new(),
        }
    }

    /// Sets the state to `to`, waking the helper if it slept.
    fn wake_to(&self, to: u8) {
        if self.post.state.swap(to, Ordering::AcqRel) == SLEEPING
            && let Some(thread) = self.thread.get()
        {
            thread.unpark();
        }
    }
}

/// What crosses between the cores at each job: the state, and the job beside it, so that
/// the helper's look at the state brings the job with it.
#[repr(C, align(64))]
struct Post {
    /// [`IDLE`], [`POSTED`], [`RUNNING`], [`DONE`], [`STOP`] or [`SLEEPING`].
    state: AtomicU8,
    /// The posted job: written by the poster while the state is [`IDLE`] or [`SLEEPING`],
    /// before it becomes [`POSTED`]; taken by the thread that turns [`POSTED`] into
    /// [`RUNNING`].
    job: UnsafeCell<Option<SendJob>>,
}

// SAFETY: `job` is accessed by one thread at a time, as the state hands it over (see `job`).
unsafe impl Sync for Post {}

/// A [`Job`] pointer that may cross to the helper thread.
struct SendJob(Job);

// SAFETY: the pointee is `Send`, and the poster keeps it alive and untouched until the helper
// signals `DONE` (see `join`).
unsafe impl Send for SendJob {}

thread_local! {
    /// The helper of the time loop running on this thread, if any.
    static CURRENT: Cell<Option<*const Shared>> = const { Cell::new(None) };
}

/// Whether a helper thread is running for this thread's time loop.
pub(crate) fn active() -> bool {
    CURRENT.with(Cell::get).is_some()
}

thread_local! {
    /// The helper [`with_helper`] lends this thread's time loops and a stepper's steps, kept
    /// between them.
    static KEPT: RefCell<Option<Helper>> = const { RefCell::new(None) };
}

/// Runs `body` with a helper thread for [`join`], when the machine is allowed two threads
/// ([`num_threads`]) and `worth_it`, and no helper runs for this thread already. Otherwise
/// `body` runs as it is.
///
/// The helper is this thread's kept one ([`Helper`]), started on first use: between calls it
/// sleeps once idle, and the next call finds it with its caches, its allocator's memory and
/// the `gemm` crate's per-thread packing buffer in place. A thread started for each call
/// would begin every call cold and run its half of each product slower than the calling
/// thread runs the other, which then waits for it.
pub(crate) fn with_helper<R>(worth_it: bool, body: impl FnOnce() -> R) -> R {
    if !worth_it || active() || num_threads() < 2 {
        return body();
    }
    // Out of the cell while `body` runs; a panic in `body` drops it (stopping its thread),
    // and the next call starts another. Once this thread's locals are being destroyed (a call
    // from another local's destructor) the helper is started for the call alone.
    let helper = KEPT
        .try_with(|kept| kept.borrow_mut().take())
        .ok()
        .flatten()
        .or_else(Helper::start);
    let Some(helper) = helper else {
        // No thread to be had (a resource limit): the loop runs on this thread alone.
        return body();
    };
    let result = helper.serve(body);
    // Dropped (its thread stopped) if the locals are gone by now.
    let _ = KEPT.try_with(|kept| kept.borrow_mut().replace(helper));
    result
}

/// A helper thread that outlives one call: [`Helper::serve`] lends it to the calling thread's
/// [`join`]s for the length of a closure. Dropping it stops the thread.
#[derive(Debug)]
struct Helper {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("state", &self.post.state.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Helper {
    /// Starts a helper thread; `None` when the machine is allowed one thread
    /// ([`num_threads`]) or no thread can be had.
    fn start() -> Option<Self> {
        if num_threads() < 2 {
            return None;
        }
        let shared = Arc::new(Shared::new());
        let theirs = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("lstm-helper".into())
            .spawn(move || helper(&theirs))
            .ok()?;
        Some(Helper {
            shared,
            thread: Some(thread),
        })
    }

    /// Runs `body` with this helper serving the [`join`]s of the calling thread, unless a
    /// helper serves it already.
    fn serve<R>(&self, body: impl FnOnce() -> R) -> R {
        if active() {
            return body();
        }
        /// Clears `CURRENT` even if `body` panics.
        struct Leave;
        impl Drop for Leave {
            fn drop(&mut self) {
                CURRENT.with(|current| current.set(None));
            }
        }
        CURRENT.with(|current| current.set(Some(Arc::as_ptr(&self.shared))));
        let _leave = Leave;
        body()
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        self.shared.wake_to(STOP);
        if let Some(thread) = self.thread.take() {
            // A panic of the helper's own loop (jobs' panics are caught and resumed at
            // their `join`) has nothing left to report.
            let _ = thread.join();
        }
    }
}

/// The helper's loop: run posted jobs until told to stop; look for work spinning, then
/// yielding, then sleep after [`IDLE_BEFORE_SLEEP`] without any.
fn helper(shared: &Shared) {
    let _ = shared.thread.set(std::thread::current());
    let mut spins = 0u32;
    let mut idle_since: Option<Instant> = None;
    loop {
        match shared.post.state.load(Ordering::Acquire) {
            POSTED => {
                spins = 0;
                idle_since = None;
                if shared
                    .post
                    .state
                    .compare_exchange(POSTED, RUNNING, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    run_posted(shared);
                }
            }
            STOP => return,
            state => {
                if spins < SPINS_BEFORE_YIELD {
                    pause(&mut spins);
                    continue;
                }
                let since = *idle_since.get_or_insert_with(Instant::now);
                if state == IDLE
                    && since.elapsed() >= IDLE_BEFORE_SLEEP
                    && shared
                        .post
                        .state
                        .compare_exchange(IDLE, SLEEPING, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
                {
                    // `wake_to` changes the state before it unparks, and an unpark before
                    // the park makes the park return at once.
                    while shared.post.state.load(Ordering::Acquire) == SLEEPING {
                        std::thread::park();
                    }
                    spins = 0;
                    idle_since = None;
                } else {
                    pause(&mut spins);
                }
            }
        }
    }
}

/// Runs the posted job (the caller won it: `POSTED` → `RUNNING`), keeps a panic for the
/// poster, and signals `DONE`.
fn run_posted(shared: &Shared) {
    // SAFETY: the caller turned `POSTED` into `RUNNING` (acquiring the poster's write of the
    // job), so no other thread touches `job` until this one stores `DONE`.
    let job = unsafe { (*shared.post.job.get()).take() };
    if let Some(SendJob(job)) = job {
        // SAFETY: the poster keeps the job alive until it sees `DONE`.
        let outcome = catch_unwind(AssertUnwindSafe(|| unsafe { (*job)() }));
        if let Err(payload) = outcome {
            *shared.panic.lock().unwrap_or_else(PoisonError::into_inner) = Some(payload);
        }
    }
    shared.post.state.store(DONE, Ordering::Release);
}

/// One wait between two looks at the state: a spin, or after [`SPINS_BEFORE_YIELD`] of them
/// a yield of the core.
pub(crate) fn pause(spins: &mut u32) {
    if *spins < SPINS_BEFORE_YIELD {
        *spins += 1;
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

/// Runs `first` on this thread and `second` on the helper thread, or both here when no helper
/// runs or it has a job of this thread's already (a `join` inside the `first` of another), in
/// that order; returns when both are done. A panic in either is resumed here once both have
/// finished.
pub(crate) fn join<A: FnOnce(), B: FnOnce() + Send>(first: A, second: B) {
    // SAFETY: `CURRENT` is set only inside `with_helper`, on its thread, while the `Shared` it
    // points to lives.
    let free = CURRENT
        .with(Cell::get)
        .map(|shared| unsafe { &*shared })
        .filter(|shared| {
            // Only this thread posts, and it sets `IDLE` again before its `join` returns.
            matches!(shared.post.state.load(Ordering::Relaxed), IDLE | SLEEPING)
        });
    let Some(shared) = free else {
        first();
        second();
        return;
    };
    let mut second = Some(second);
    let mut call = || {
        if let Some(second) = second.take() {
            second();
        }
    };
    let job: *mut (dyn FnMut() + Send + '_) = &mut call;
    // SAFETY: only the lifetime is erased; `Wait` below keeps `call` alive and borrowed until
    // the helper has run it, even if `first` panics.
    let job: Job = unsafe { std::mem::transmute(job) };
    // SAFETY: the state is `IDLE` or `SLEEPING` (the last `join` ended with `IDLE`), so no
    // other thread touches `job` until the state becomes `POSTED` below.
    unsafe { *shared.post.job.get() = Some(SendJob(job)) };
    shared.wake_to(POSTED);
    /// Waits for the helper to finish the job, on return and on unwinding alike.
    struct Wait<'a>(&'a Shared);
    impl Drop for Wait<'_> {
        fn drop(&mut self) {
            let mut spins = 0;
            loop {
                match self.0.post.state.load(Ordering::Acquire) {
                    DONE => break,
                    POSTED if spins >= SPINS_BEFORE_TAKING_BACK => {
                        if self
                            .0
                            .post
                            .state
                            .compare_exchange(POSTED, RUNNING, Ordering::Acquire, Ordering::Relaxed)
                            .is_ok()
                        {
                            run_posted(self.0);
                        }
                    }
                    _ => pause(&mut spins),
                }
            }
            self.0.post.state.store(IDLE, Ordering::Relaxed);
        }
    }
    let wait = Wait(shared);
    first();
    drop(wait);
    let payload = shared
        .panic
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    if let Some(payload) = payload {
        resume_unwind(payload);
    }
}

/// `len` copies of `value`, each half written by one of the two threads where a helper
/// thread runs: a time loop's large buffers (its output, the input projection's workspace)
/// are filled in parallel instead of by the calling core alone while the other waits.
pub(crate) fn filled<T: Copy + Send + Sync>(len: usize, value: T) -> Vec<T> {
    written_by_both(len, len / 2, |_, slots| {
        for slot in slots {
            slot.write(value);
        }
    })
}

/// A vector of `len` values, the slots `..mid` written by `write(0, slots)` on this thread and
/// the others by `write(mid, slots)` on the helper (both here when none runs); `write` is
/// given the index of its first slot and must write every slot it is given.
pub(crate) fn written_by_both<T: Send>(
    len: usize,
    mid: usize,
    write: impl Fn(usize, &mut [MaybeUninit<T>]) + Sync,
) -> Vec<T> {
    let mut values = Vec::with_capacity(len);
    let (first, second) = values.spare_capacity_mut()[..len].split_at_mut(mid);
    join(|| write(0, first), || write(mid, second));
    // SAFETY: the two parts cover the first `len` slots, and `write` writes every slot.
    unsafe { values.set_len(len) };
    values
}

/// [`join`] through the helper thread when one runs for this thread, else [`rayon::join`].
pub(crate) fn fork<A: FnOnce() + Send, B: FnOnce() + Send>(first: A, second: B) {
    if active() {
        join(first, second);
    } else {
        rayon::join(first, second);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::parallel::threads;

    #[test]
    fn join_runs_both_sides_with_and_without_a_helper() {
        for worth_it in [false, true] {
            let count = AtomicUsize::new(0);
            let mut left = 0;
            with_helper(worth_it, || {
                for _ in 0..1000 {
                    join(
                        || left += 1,
                        || {
                            count.fetch_add(1, Ordering::Relaxed);
                        },
                    );
                }
            });
            assert_eq!((left, count.load(Ordering::Relaxed)), (1000, 1000));
            assert!(!active());
        }
    }

    #[test]
    fn a_join_inside_a_join_runs_every_side_once() {
        for worth_it in [false, true] {
            let count = AtomicUsize::new(0);
            let add = || {
                count.fetch_add(1, Ordering::Relaxed);
            };
            with_helper(worth_it, || {
                for _ in 0..1000 {
                    join(|| join(add, add), || join(add, add));
                }
            });
            assert_eq!(count.load(Ordering::Relaxed), 4000);
        }
    }

    #[test]
    fn filled_holds_the_value_everywhere_with_and_without_a_helper() {
        for worth_it in [false, true] {
            for len in [0, 1, 2, 3, 1000] {
                let values = with_helper(worth_it, || filled(len, 7u16));
                assert_eq!(values, vec![7u16; len], "len {len}, helper {worth_it}");
            }
        }
    }

    #[test]
    fn the_second_side_runs_on_the_helper_thread() {
        if num_threads() < 2 {
            return;
        }
        let here = std::thread::current().id();
        let mut elsewhere = 0;
        with_helper(true, || {
            assert!(active());
            // Until it does once, or for a second (the system may give both threads one core
            // for a while).
            let start = std::time::Instant::now();
            while elsewhere == 0 && start.elapsed() < std::time::Duration::from_secs(1) {
                let mut there = None;
                // The first side lasts long enough for the helper to pick the second up.
                let busy = || {
                    let start = std::time::Instant::now();
                    while start.elapsed() < std::time::Duration::from_micros(50) {}
                };
                join(busy, || there = Some(std::thread::current().id()));
                elsewhere += usize::from(there.is_some_and(|id| id != here));
            }
        });
        assert!(elsewhere > 0);
    }

    /// The thread that runs `join`'s second side inside `with_helper`, trying until it runs
    /// elsewhere (or for a second: the system may give both threads one core for a while).
    fn helper_thread_id() -> Option<std::thread::ThreadId> {
        let here = std::thread::current().id();
        with_helper(true, || {
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(1) {
                let mut there = None;
                // The first side lasts long enough for the helper to pick the second up.
                let busy = || {
                    let start = Instant::now();
                    while start.elapsed() < Duration::from_micros(50) {}
                };
                join(busy, || there = Some(std::thread::current().id()));
                if let Some(there) = there.filter(|&there| there != here) {
                    return Some(there);
                }
            }
            None
        })
    }

    #[test]
    fn calls_on_one_thread_share_one_kept_helper() {
        if num_threads() < 2 {
            return;
        }
        let first = helper_thread_id();
        // Long enough for the idle helper to have gone to sleep.
        std::thread::sleep(IDLE_BEFORE_SLEEP * 5);
        let second = helper_thread_id();
        assert!(first.is_some());
        assert_eq!(first, second);
        // Another thread gets a helper of its own.
        let elsewhere = std::thread::spawn(helper_thread_id).join().unwrap();
        assert!(elsewhere.is_some());
        assert_ne!(elsewhere, first);
    }

    #[test]
    fn a_call_from_a_thread_local_destructor_runs_after_the_kept_helper_is_gone() {
        /// Runs a join through `with_helper` when the thread's locals are destroyed.
        struct JoinsOnDrop(Arc<AtomicUsize>);
        impl Drop for JoinsOnDrop {
            fn drop(&mut self) {
                let count = &self.0;
                let add = || {
                    count.fetch_add(1, Ordering::Relaxed);
                };
                with_helper(true, || join(add, add));
            }
        }
        thread_local! {
            static LATE: RefCell<Option<JoinsOnDrop>> = const { RefCell::new(None) };
        }
        let count = Arc::new(AtomicUsize::new(0));
        let theirs = Arc::clone(&count);
        std::thread::spawn(move || {
            // Registered before `KEPT`, so (destroyed in reverse order) dropped after it.
            LATE.with(|late| *late.borrow_mut() = Some(JoinsOnDrop(theirs)));
            with_helper(true, || join(|| {}, || {}));
        })
        .join()
        .unwrap();
        assert_eq!(count.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_kept_helper_sleeps_when_idle_and_wakes_for_the_next_job() {
        let Some(helper) = threads::with_threads(2, Helper::start) else {
            // No second thread to be had.
            return;
        };
        let mut sides = (0, 0);
        helper.serve(|| join(|| sides.0 += 1, || sides.1 += 1));
        // Idle for longer than it looks for work before it sleeps.
        let start = Instant::now();
        while helper.shared.post.state.load(Ordering::Acquire) != SLEEPING
            && start.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(IDLE_BEFORE_SLEEP);
        }
        assert_eq!(helper.shared.post.state.load(Ordering::Acquire), SLEEPING);
        for _ in 0..3 {
            helper.serve(|| join(|| sides.0 += 1, || sides.1 += 1));
        }
        assert!(!active());
        assert_eq!(sides, (4, 4));
        drop(helper);
    }

    #[test]
    fn the_caller_runs_a_job_the_helper_never_picks_up() {
        // A helper that never runs (as when the system gives it no core).
        let shared = Shared::new();
        CURRENT.with(|current| current.set(Some(&shared as *const Shared)));
        let mut sides = (0, 0);
        for _ in 0..3 {
            join(|| sides.0 += 1, || sides.1 += 1);
        }
        CURRENT.with(|current| current.set(None));
        assert_eq!(sides, (3, 3));
        assert_eq!(shared.post.state.load(Ordering::Relaxed), IDLE);
    }

    #[test]
    fn a_panic_on_the_helper_reaches_the_caller_after_both_sides_finish() {
        let finished = AtomicUsize::new(0);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            with_helper(true, || {
                join(
                    || {
                        finished.fetch_add(1, Ordering::Relaxed);
                    },
                    || panic!("second side"),
                )
            })
        }));
        assert!(outcome.is_err());
        assert_eq!(finished.load(Ordering::Relaxed), 1);
        assert!(!active());
    }
}
