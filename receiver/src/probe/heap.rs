//! The agent's heap: glibc malloc set up for a long-running process with a few threads,
//! and freed pages handed back after loading and after each snapshot. Loading allocates
//! and frees more than the agent keeps (object parses, verifier logs, and the whole kernel
//! BTF where aya has to parse it: see `probe::btf`), and a burst of events leaves freed
//! memory behind; glibc keeps freed pages resident unless told to return them.

/// Sets malloc's tunables. Call first thing in `main`, before any other thread starts.
pub fn configure() {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: mallopt only changes malloc's own tunables; no allocation is touched.
        unsafe {
            // glibc's default allows 8 arenas per core and gives each thread its own: a
            // thread's freed memory then sits where no other thread can reuse it. The
            // agent's few threads (runtime workers, collection) share two.
            libc::mallopt(libc::M_ARENA_MAX, 2);
            // A fixed threshold: buffers of 128 KiB or more get mappings of their own,
            // returned when freed and grown in place. glibc otherwise raises the threshold
            // to the largest such buffer freed (up to 32 MiB), after which large buffers
            // come from the heap, where growing one copies it (old and new resident at
            // once) and freeing it leaves a hole.
            libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        }
    }
}

/// Gives the kernel back the heap pages freed so far. Called once every family is loaded
/// and after each snapshot (so a burst's freed memory does not stay resident); it walks
/// malloc's free lists, well under a millisecond for the agent's heap.
pub fn release_freed() {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: malloc_trim only returns free pages of malloc's own arenas to the
        // kernel; no live allocation is moved or freed.
        unsafe { libc::malloc_trim(0) };
    }
}
