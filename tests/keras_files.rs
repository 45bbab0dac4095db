//! Keras 3's own weight files, `.keras` (`model.save`) and `.weights.h5`
//! (`model.save_weights`), as Keras 3.15 wrote them (`tests/fixtures/convert/keras_*`, see
//! `scripts/fixtures.py`): read through `read_weights`, their numbered variables mapped to
//! Keras weight paths, and the result value for value what the same weights saved by numpy
//! under their Keras paths give (`keras_paths.npz`). That `lstm convert` then runs them as
//! Keras did is `tests/convert_cli.rs`'s business.
//!
//! Hostile copies of those files, truncated or with bytes flipped, are errors naming the
//! file, never a panic, and no read allocates more than the file could back: this test
//! binary counts the largest allocation each thread asks for.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};

use common::fixtures::root;
use lstm::Error;
use lstm::io::layout::SourceLayout;
use lstm::io::{TensorMap, read_weights};

/// The system allocator, recording per thread the largest block asked for, so a test can
/// tell what a read of a hostile file tried to reserve.
struct Largest;

thread_local! {
    // `const`-initialised and without a destructor, so reading it allocates nothing.
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn record(size: usize) {
    // `try_with` fails only while the thread is being torn down; nothing is measured then.
    let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
}

// SAFETY: every call is forwarded unchanged to `System`; only the sizes are recorded.
unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: the caller's contract for `alloc` is `System.alloc`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: as `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through this allocator, with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        // SAFETY: as `dealloc`; the caller's contract for `realloc` is `System.realloc`'s.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Largest = Largest;

/// The largest block this thread asked for while `run` ran.
fn largest_allocation<T>(run: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|largest| largest.set(0));
    let out = run();
    (out, LARGEST.with(Cell::get))
}

fn case(name: &str) -> PathBuf {
    root().join("convert").join(name)
}

/// A file path of this test process, in the system's temporary directory.
fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("lstm-keras-files-{}-{name}", std::process::id()))
}

/// The PyTorch-named weights of a Keras-layout file.
fn as_pytorch(map: &TensorMap) -> Vec<(String, lstm::io::Tensor)> {
    SourceLayout::Keras
        .to_pytorch(map)
        .unwrap_or_else(|err| panic!("{}: {err}", map.source()))
        .into_iter()
        .collect()
}

#[test]
fn keras_files_read_as_the_weights_keras_saved() {
    for (dir, file, datasets) in [
        ("keras_lstm_archive", "model.keras", 3),
        ("keras_bidirectional_weights_h5", "model.weights.h5", 12),
    ] {
        let saved = read_weights(case(dir).join(file)).unwrap();
        assert_eq!(
            saved.len(),
            datasets,
            "{dir}: {:?}",
            saved.names().collect::<Vec<_>>()
        );
        assert!(
            saved
                .names()
                .all(|name| name.starts_with("layers/") && name.contains("/cell/vars/")),
            "{dir}: {:?}",
            saved.names().collect::<Vec<_>>()
        );
        let by_numpy = TensorMap::read_npz(case(dir).join("keras_paths.npz")).unwrap();
        assert_eq!(as_pytorch(&saved), as_pytorch(&by_numpy), "{dir}");
    }
}

#[test]
fn the_variables_of_the_keras_archive_are_those_of_an_lstm_cell() {
    let saved = read_weights(case("keras_lstm_archive").join("model.keras")).unwrap();
    let shapes: Vec<(&str, Vec<usize>)> = saved
        .iter()
        .map(|(name, tensor)| (name, tensor.shape().to_vec()))
        .collect();
    // Input 4, hidden 5: kernel (4, 20), recurrent kernel (5, 20), bias (20,), all f32.
    assert_eq!(
        shapes,
        [
            ("layers/lstm/cell/vars/0", vec![4, 20]),
            ("layers/lstm/cell/vars/1", vec![5, 20]),
            ("layers/lstm/cell/vars/2", vec![20]),
        ]
    );
    assert!(saved.iter().all(|(_, t)| t.dtype() == lstm::io::Dtype::F32));
    assert!(saved.source().contains("model.keras"), "{}", saved.source());
}

/// Reads `bytes` written to `path`, which must fail naming `path` without asking for more
/// than `most` bytes at once.
fn refused(path: &Path, bytes: &[u8], most: usize) -> Error {
    std::fs::write(path, bytes).unwrap();
    let (read, largest) = largest_allocation(|| read_weights(path));
    assert!(
        largest <= most,
        "{}: asked for {largest} bytes from a {}-byte file",
        path.display(),
        bytes.len()
    );
    let err = read.expect_err("a broken file is refused");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "the error names the file: {err}"
    );
    err
}

#[test]
fn truncated_keras_files_are_errors_naming_the_file() {
    for (dir, file) in [
        ("keras_lstm_archive", "model.keras"),
        ("keras_bidirectional_weights_h5", "model.weights.h5"),
    ] {
        let bytes = std::fs::read(case(dir).join(file)).unwrap();
        let truncated = scratch(&format!("truncated-{file}"));
        for cut in [0, 7, 100, bytes.len() / 3, bytes.len() / 2, bytes.len() - 1] {
            let err = refused(&truncated, &bytes[..cut], 1 << 24);
            assert!(matches!(err, Error::Format { .. }), "cut at {cut}: {err}");
        }
        std::fs::remove_file(&truncated).unwrap();
    }
}

#[test]
fn flipped_bytes_in_an_hdf5_file_never_panic_nor_over_allocate() {
    let bytes =
        std::fs::read(case("keras_bidirectional_weights_h5").join("model.weights.h5")).unwrap();
    // What the file's bytes can back, with deflate's ratio: the reader's bound.
    let most = bytes.len() * 1032 + 4096;
    let flipped = scratch("flipped.weights.h5");
    let mut refusals = 0;
    // Every byte of the superblock and the first object headers, then every 13th: a flip in
    // stored values reads fine (HDF5 keeps no checksum on raw data), one in the structure is
    // an error naming the file.
    let offsets = (0..512).chain((512..bytes.len()).step_by(13));
    for offset in offsets {
        for mask in [0x01, 0x80, 0xff] {
            let mut copy = bytes.clone();
            copy[offset] ^= mask;
            std::fs::write(&flipped, &copy).unwrap();
            let (read, largest) = largest_allocation(|| read_weights(&flipped));
            assert!(
                largest <= most,
                "byte {offset} ^ {mask:#x}: asked for {largest} bytes"
            );
            if let Err(err) = read {
                refusals += 1;
                assert!(
                    err.to_string().contains(&flipped.display().to_string()),
                    "byte {offset} ^ {mask:#x}: {err}"
                );
            }
        }
    }
    std::fs::remove_file(&flipped).unwrap();
    assert!(refusals > 100, "only {refusals} flips were noticed");
    // The signature is the first thing checked.
    let mut copy = bytes.clone();
    copy[1] ^= 0xff;
    let err = refused(&scratch("signature.weights.h5"), &copy, most);
    assert!(err.to_string().contains("HDF5"), "{err}");
}

#[test]
fn a_flipped_byte_in_a_keras_archive_is_refused_naming_the_file() {
    let bytes = std::fs::read(case("keras_lstm_archive").join("model.keras")).unwrap();
    let flipped = scratch("flipped.keras");
    // The weights member is stored, so a flip in its data breaks its CRC-32; every flip
    // anywhere is either that, a broken zip structure, or (in `config.json`, which is not
    // read) harmless.
    let most = bytes.len() * 1032 + 4096;
    for offset in (0..bytes.len()).step_by(11) {
        let mut copy = bytes.clone();
        copy[offset] ^= 0x5a;
        std::fs::write(&flipped, &copy).unwrap();
        let (read, largest) = largest_allocation(|| read_weights(&flipped));
        assert!(largest <= most, "byte {offset}: asked for {largest} bytes");
        if let Err(err) = read {
            assert!(
                err.to_string().contains(&flipped.display().to_string()),
                "byte {offset}: {err}"
            );
        }
    }
    std::fs::remove_file(&flipped).unwrap();
}

#[test]
fn an_archive_without_weights_lists_what_it_holds() {
    let path = scratch("empty.keras");
    let file = std::fs::File::create(&path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    zip.start_file("config.json", zip::write::SimpleFileOptions::default())
        .unwrap();
    zip.finish().unwrap();
    let err = read_weights(&path).unwrap_err();
    std::fs::remove_file(&path).unwrap();
    let message = err.to_string();
    assert!(
        message.contains("model.weights.h5") && message.contains("config.json"),
        "{message}"
    );
}

#[test]
fn a_model_with_a_dense_head_names_its_weights() {
    // The bidirectional fixture's weights with a `Dense` layer's variables beside them, as
    // Keras saves `Sequential([..., Dense(2)])`.
    let mut saved =
        read_weights(case("keras_bidirectional_weights_h5").join("model.weights.h5")).unwrap();
    let kernel = saved
        .require("layers/bidirectional/forward_layer/cell/vars/2")
        .unwrap()
        .clone();
    saved.insert("layers/dense/vars/1", kernel.clone());
    saved.insert("optimizer/vars/3", kernel);
    let err = SourceLayout::Keras.to_pytorch(&saved).unwrap_err();
    assert!(
        matches!(&err, Error::UnexpectedTensor { name, .. } if name == "layers/dense/vars/1"),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("layer `dense` has no recurrent cell"),
        "{err}"
    );
}
