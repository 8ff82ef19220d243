//! The heap after loading the probes. Loading allocates and frees far more than the agent
//! keeps: each family's loader parses the kernel's BTF (~15 MiB) and drops it. glibc's
//! malloc keeps such freed pages resident unless told to return them.

/// Gives the kernel back the heap pages freed so far (the loaders' BTF parses). Call once
/// every family is loaded, before the collection loop starts.
pub fn release_freed() {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: malloc_trim only returns free pages of malloc's own arenas to the
        // kernel; no live allocation is moved or freed.
        unsafe { libc::malloc_trim(0) };
    }
}
