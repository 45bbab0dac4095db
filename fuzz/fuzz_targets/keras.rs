//! `.keras` bytes (a zip holding `model.weights.h5`) through the reader.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let _ = lstm_runtime::io::TensorMap::from_keras_archive_bytes(bytes, "fuzz.keras");
});
