//! Sonde's eBPF programs and the layout of everything they share with userspace.
//!
//! The C sources live in `src/bpf/`, the shared layout in `include/sonde_abi.h`. The
//! build script compiles each probe family into one CO-RE object that is embedded here,
//! so the `sonde` binary carries its probes and adapts them to the running kernel's BTF
//! at load time.

pub mod abi;

/// A probe family: one C source, one object, the same name in every layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    Process,
}

impl Family {
    pub const ALL: &'static [Family] = &[Family::Process];

    /// The family's name, as used in config keys, logs and `sonde.probe`.
    pub fn name(self) -> &'static str {
        match self {
            Family::Process => "process",
        }
    }

    /// The compiled, CO-RE-relocatable object.
    pub fn object(self) -> &'static [u8] {
        match self {
            Family::Process => PROCESS_OBJ,
        }
    }
}

static PROCESS_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/process.bpf.o"));

/// Names of the programs and maps in the objects, typed so a rename breaks the build
/// rather than a lookup at run time.
pub mod names {
    pub mod process {
        pub const PROG_FORK: &str = "sonde_process_fork";
        pub const PROG_EXEC: &str = "sonde_process_exec";
        pub const PROG_EXIT: &str = "sonde_process_exit";
        pub const MAP_COUNTERS: &str = "process_counters";
        pub const MAP_EVENTS: &str = "process_events";
    }
}
