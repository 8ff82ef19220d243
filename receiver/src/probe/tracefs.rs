//! Where tracefs is, and mounting it when it is not: classic tracepoints are attached by
//! an id that only tracefs publishes.

use std::path::{Path, PathBuf};

const CANDIDATES: &[&str] = &["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// The tracefs root that has an `events` directory, if any is mounted.
pub fn root() -> Option<PathBuf> {
    CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.join("events").is_dir())
}

/// Whether `category:name` exists; `None` when tracefs is not readable, so callers do
/// not mistake "cannot tell" for "absent".
pub fn event_exists(category: &str, name: &str) -> Option<bool> {
    let root = root()?;
    Some(root.join("events").join(category).join(name).is_dir())
}

/// Mounts tracefs at /sys/kernel/tracing when no tracefs is visible. Returns what was
/// done, for the start-up log. A mount is left in place on exit: it is the kernel's
/// standard location and other tools expect it there.
pub fn ensure_mounted() -> Result<Option<&'static str>, std::io::Error> {
    if root().is_some() {
        return Ok(None);
    }
    let target = Path::new("/sys/kernel/tracing");
    if !target.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "/sys/kernel/tracing does not exist (is sysfs mounted?)",
        ));
    }
    let c = |s: &str| std::ffi::CString::new(s).map_err(std::io::Error::other);
    let (src, dst, fstype) = (c("tracefs")?, c("/sys/kernel/tracing")?, c("tracefs")?);
    // SAFETY: all pointers are valid NUL-terminated strings that outlive the call; a
    // null data pointer is allowed for tracefs.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Some(
        "mounted tracefs at /sys/kernel/tracing (tracepoint ids are published there)",
    ))
}
