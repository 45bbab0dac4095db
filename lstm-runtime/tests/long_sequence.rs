//! Inference keeps no per-step activations: a 100 000-step sequence (batch 1, hidden 64)
//! through a two-layer stack needs no more memory than a 1 000-step one, when only the last
//! output is returned. Measured with a counting global allocator (this file holds one test so
//! that nothing else allocates meanwhile): the peak of bytes allocated during the call, beyond
//! what was allocated before it (the input).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use ndarray::Array3;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use lstm_runtime::zoo::Lstm as LstmCell;
use lstm_runtime::{Call, Lstm, LstmConfig};

/// The system allocator, counting live bytes and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call forwards to the system allocator with the same arguments; the counters
// are side bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is; the caller upholds `alloc`'s contract.
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
            PEAK.fetch_max(live, Ordering::SeqCst);
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is; the caller upholds `dealloc`'s contract.
        unsafe { System.dealloc(pointer, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes allocated at the peak of `run`, beyond those live before it.
fn peak_during(run: impl FnOnce()) -> usize {
    let before = LIVE.load(Ordering::SeqCst);
    PEAK.store(before, Ordering::SeqCst);
    run();
    PEAK.load(Ordering::SeqCst) - before
}

#[test]
fn inference_memory_does_not_grow_with_sequence_length() {
    let config = LstmConfig::new(1, 64)
        .with_num_layers(2)
        .with_return_sequences(false);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut lstm = Lstm::<LstmCell<f32>>::new(config, &mut rng).unwrap();
    let mut peak = |seq_len: usize| {
        let x = Array3::from_shape_fn((seq_len, 1, 1), |_| rng.random_range(-1.0f32..1.0));
        let mut last = None;
        let bytes = peak_during(|| {
            last = Some(lstm.forward(x.view(), Call::new()).unwrap());
        });
        let last = last.unwrap();
        assert!(last.output.last().unwrap().iter().all(|v| v.is_finite()));
        bytes
    };
    let short = peak(1_000);
    let long = peak(100_000);
    println!("peak bytes during the call: {short} (1 000 steps), {long} (100 000 steps)");
    assert!(
        long <= short + 1024,
        "100 000 steps peaked at {long} bytes, 1 000 steps at {short}"
    );
    // For scale: one step's activations of one layer are 64 · 4 bytes; storing them for every
    // step would take 100 000 times that.
    assert!(long < 1_000_000, "{long} bytes");
}
