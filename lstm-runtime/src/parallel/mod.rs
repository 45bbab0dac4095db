//! Threads: how many the runtime may use (`threads.rs`), and the helper thread a time loop
//! keeps awake beside its own (`helper_thread.rs`), through which the matrix products
//! (`linalg/`) and the time steps (`recurrence/`) split their work in two at a cost of well
//! under a microsecond. Everything here is below the numerics: it knows nothing of cells,
//! arrays or layers.

pub(crate) mod helper_thread;
pub(crate) mod threads;
