//! Array maps read whole in one syscall (`BPF_MAP_LOOKUP_BATCH`, Linux 5.6), which aya does
//! not wrap: once a round, every watched slot's counters instead of one lookup per process.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `enum bpf_cmd`'s BPF_MAP_LOOKUP_BATCH.
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// `union bpf_attr` as the batch commands read it.
#[repr(C)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Bytes the kernel copies per entry of an array map of `T`: the value, or for a per-CPU map
/// the value rounded up to 8 bytes once per possible CPU.
pub fn entry_size<T>(per_cpu: Option<usize>) -> usize {
    match per_cpu {
        Some(cpus) => std::mem::size_of::<T>().next_multiple_of(8) * cpus,
        None => std::mem::size_of::<T>(),
    }
}

/// The first `n` entries of the array map `fd`, `entry` bytes each (see [`entry_size`]).
pub fn lookup_array(fd: BorrowedFd, n: u32, entry: usize) -> io::Result<Vec<u8>> {
    let mut keys = vec![0u32; n as usize];
    let mut values = vec![0u8; n as usize * entry];
    let mut out_batch = 0u32;
    let mut attr = BatchAttr {
        // Null: from the first entry.
        in_batch: 0,
        out_batch: &raw mut out_batch as u64,
        keys: keys.as_mut_ptr() as u64,
        values: values.as_mut_ptr() as u64,
        count: n,
        map_fd: fd.as_raw_fd() as u32,
        elem_flags: 0,
        flags: 0,
    };
    // SAFETY: the kernel writes at most `count` keys (4 bytes each, the array's key size) and
    // `count` entries of `entry` bytes, which `keys` and `values` hold, and one key to
    // `out_batch`; `attr` lives across the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_LOOKUP_BATCH,
            &raw mut attr,
            std::mem::size_of::<BatchAttr>(),
        )
    };
    // ENOENT: the array ended (with `count` saying how many were read).
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ENOENT) {
            return Err(e);
        }
    }
    if attr.count != n {
        return Err(io::Error::other(format!(
            "{} of {n} entries read",
            attr.count
        )));
    }
    Ok(values)
}

/// The `T` at `offset` of `bytes`, read as the kernel wrote it.
pub fn read_at<T: aya::Pod>(bytes: &[u8], offset: usize) -> Option<T> {
    let b = bytes.get(offset..offset.checked_add(std::mem::size_of::<T>())?)?;
    // SAFETY: `b` holds size_of::<T>() bytes; T is a plain-data map value (repr(C), every bit
    // pattern valid), read unaligned.
    Some(unsafe { std::ptr::read_unaligned(b.as_ptr().cast::<T>()) })
}
