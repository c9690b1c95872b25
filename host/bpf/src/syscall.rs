//! Raw element updates and deletions of a BPF map (`bpf(2)`), for entries
//! given as bytes whose sizes were checked against the map's definition.

use std::os::fd::{AsRawFd, BorrowedFd};

const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;

/// `union bpf_attr` for the element commands.
#[repr(C)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

fn call(cmd: libc::c_long, attr: &ElemAttr) -> std::io::Result<()> {
    // SAFETY: `attr` is a valid `bpf_attr` prefix for the element commands;
    // its key and value pointers come from slices the callers checked to
    // be exactly the map's key and value sizes, and outlive the call; the
    // kernel reads only those sizes through them.
    #[allow(unsafe_code)]
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *const ElemAttr,
            std::mem::size_of::<ElemAttr>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Inserts or replaces one element. `key` and `value` must have the map's
/// key and value sizes (checked by the caller).
pub(crate) fn update(map: BorrowedFd<'_>, key: &[u8], value: &[u8]) -> std::io::Result<()> {
    let attr = ElemAttr {
        map_fd: map.as_raw_fd() as u32,
        _pad: 0,
        key: key.as_ptr() as u64,
        value: value.as_ptr() as u64,
        flags: 0, // BPF_ANY
    };
    call(BPF_MAP_UPDATE_ELEM, &attr)
}

/// Deletes one element; a missing key is not an error.
pub(crate) fn delete(map: BorrowedFd<'_>, key: &[u8]) -> std::io::Result<()> {
    let attr = ElemAttr {
        map_fd: map.as_raw_fd() as u32,
        _pad: 0,
        key: key.as_ptr() as u64,
        value: 0,
        flags: 0,
    };
    match call(BPF_MAP_DELETE_ELEM, &attr) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        other => other,
    }
}

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;

/// Reads one element into `value` (the map's value size); `false` when the
/// key is missing.
pub(crate) fn lookup(map: BorrowedFd<'_>, key: &[u8], value: &mut [u8]) -> std::io::Result<bool> {
    let attr = ElemAttr {
        map_fd: map.as_raw_fd() as u32,
        _pad: 0,
        key: key.as_ptr() as u64,
        value: value.as_mut_ptr() as u64,
        flags: 0,
    };
    match call(BPF_MAP_LOOKUP_ELEM, &attr) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The key after `key` (the first key when `None`) into `next` (the map's
/// key size); `false` after the last key.
pub(crate) fn next_key(
    map: BorrowedFd<'_>,
    key: Option<&[u8]>,
    next: &mut [u8],
) -> std::io::Result<bool> {
    let attr = ElemAttr {
        map_fd: map.as_raw_fd() as u32,
        _pad: 0,
        key: key.map_or(0, |k| k.as_ptr() as u64),
        value: next.as_mut_ptr() as u64,
        flags: 0,
    };
    match call(BPF_MAP_GET_NEXT_KEY, &attr) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Every key of a map with keys of `key_size` bytes. Keys deleted while
/// walking may make the walk restart from the first key (the kernel's
/// rule for a missing current key), so callers must tolerate repeats.
pub(crate) fn keys(map: BorrowedFd<'_>, key_size: usize) -> std::io::Result<Vec<Vec<u8>>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut next = vec![0u8; key_size];
    let mut more = next_key(map, None, &mut next)?;
    while more {
        out.push(next.clone());
        let current = next.clone();
        more = next_key(map, Some(&current), &mut next)?;
    }
    Ok(out)
}
