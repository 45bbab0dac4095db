//! Checkpoint bytes through the loader, in both element types: parsing, checksums and the
//! consistency checks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lstm_runtime::checkpoint::Checkpoint;

fuzz_target!(|bytes: &[u8]| {
    let _ = Checkpoint::<f32>::from_bytes(bytes);
    let _ = Checkpoint::<f64>::from_bytes(bytes);
});
