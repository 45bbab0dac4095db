//! safetensors bytes through the reader.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let _ = lstm_runtime::io::TensorMap::from_safetensors_bytes(bytes, "fuzz.safetensors");
});
