//! HDF5 bytes (a Keras `.weights.h5`) through the reader.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let _ = lstm_runtime::io::TensorMap::from_hdf5_bytes(bytes.to_vec(), "fuzz.h5");
});
