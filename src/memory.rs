//! Giving memory back to the system after a peak.
//!
//! glibc's allocator keeps what a burst freed (a thousand clusters listed at
//! start, a transaction's 8 MB configuration) for reuse, and returns it only
//! from the top of the heap. Long-lived objects allocated in between pin the
//! rest, so the daemon's RSS stays at its peak. `malloc_trim` hands the free
//! pages anywhere in the heap back (`MADV_DONTNEED`); it costs a walk of the
//! free lists, a few milliseconds, and is called after peaks only.

/// Returns freed memory to the system.
// The crate's one unsafe call: libc has no safe wrapper for it.
#[allow(unsafe_code)]
pub fn give_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and trims the allocator's own free
    // lists; it is thread-safe and takes no pointers.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}
