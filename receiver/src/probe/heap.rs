//! The heap after loading the probes. Loading allocates and frees more than the agent
//! keeps (object parses, verifier logs, and the whole kernel BTF where aya has to parse it:
//! see `probe::btf`). glibc's malloc keeps such freed pages resident unless told to return
//! them.

/// Gives the kernel back the heap pages freed so far (what loading freed). Call once
/// every family is loaded, before the collection loop starts.
pub fn release_freed() {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: malloc_trim only returns free pages of malloc's own arenas to the
        // kernel; no live allocation is moved or freed.
        unsafe { libc::malloc_trim(0) };
    }
}
