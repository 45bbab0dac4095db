//! One member of a zip archive read into memory without trusting its header: both archive
//! formats the crate reads (numpy's `.npz` and Keras' `.keras`) are zips, and both go
//! through [`read_member`], so the bound on what a member may claim is written once.
//!
//! A zip member's header declares its inflated size. A hostile archive declares gigabytes
//! for a few bytes; the claim is checked against what its compressed bytes can inflate to
//! and against what the machine can allocate before anything is reserved, and the member is
//! read as it arrives, never past the declared size.

use std::io::Read;

use crate::error::{Error, Result};

/// The largest ratio of inflated to compressed size deflate can reach.
const MAX_DEFLATE_RATIO: u64 = 1032;

/// The bytes of `member`, checked against its header's claims; errors are [`Error::Format`]s
/// naming the archive `path`, its `format` (`npz archive`) and the member.
///
/// # Errors
///
/// [`Error::Format`] if the member declares more compressed bytes than the archive's
/// `archive_len` holds, more bytes than its compressed bytes can hold, or
/// cannot be inflated; [`Error::Allocation`] if its declared size cannot be allocated.
pub(crate) fn read_member<R: Read>(
    member: &mut zip::read::ZipFile<'_, R>,
    path: &str,
    format: &str,
    archive_len: u64,
) -> Result<Vec<u8>> {
    let member_name = member.name().to_string();
    let format_error = |reason: String| Error::Format {
        path: path.into(),
        format: format.into(),
        reason,
    };
    let declared = member.size();
    // What the member's compressed bytes can hold at most: a larger claim is a lie, refused
    // before anything is reserved for it.
    let compressed = member.compressed_size();
    if compressed > archive_len {
        return Err(format_error(format!(
            "member `{member_name}` claims {compressed} compressed bytes in an archive of \
             {archive_len} bytes"
        )));
    }
    let most = compressed
        .saturating_mul(MAX_DEFLATE_RATIO)
        .saturating_add(1024);
    if declared > most {
        return Err(format_error(format!(
            "member `{member_name}` claims {declared} bytes from {compressed} compressed \
             bytes, more than they can hold"
        )));
    }
    crate::alloc::check_allocation(
        &format!("member `{member_name}` of `{path}`"),
        u128::from(declared),
        1,
    )?;
    // Grown as data arrives, never past the declared size: a lying size costs nothing and a
    // member that inflates further is cut off, then rejected by its own format's reader.
    let mut bytes = Vec::new();
    member
        .by_ref()
        .take(declared)
        .read_to_end(&mut bytes)
        .map_err(|err| format_error(format!("member `{member_name}`: {err}")))?;
    Ok(bytes)
}
