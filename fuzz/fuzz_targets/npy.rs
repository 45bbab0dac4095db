//! `.npy` bytes through the reader: any input is a tensor or an error, never a panic, an
//! abort or an allocation the bytes do not back.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let _ = lstm_runtime::io::read_npy_bytes(bytes, "fuzz.npy");
});
