//! Requests for the cache lines of small buffers that were just written on the other core,
//! before the kernels read them value by value.

/// Bytes up to which [`prefetch`] requests a buffer: a step's rows at small batch.
const PREFETCH_MAX_BYTES: usize = 16 * 1024;

/// Requests every cache line of a small buffer (up to [`PREFETCH_MAX_BYTES`]) before it is
/// read, all at once; larger buffers are left to the hardware prefetcher.
///
/// With a helper thread each step hands values from one core to the other: the helper's half
/// of the product reads `h_prev`, which the calling thread has just written, and the
/// elementwise step reads the helper's half of `zh`. The kernels read those one value at a
/// time among other loads, so without this each cache line would cross between the cores in
/// turn, and the helper's half would finish well after the caller's.
pub(crate) fn prefetch<T>(values: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        if size_of_val(values) > PREFETCH_MAX_BYTES {
            return;
        }
        let bytes = values.as_ptr().cast::<i8>();
        for offset in (0..size_of_val(values)).step_by(64) {
            // SAFETY: the address lies inside `values`; a prefetch reads nothing and never
            // faults.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(bytes.add(offset)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = values;
}
