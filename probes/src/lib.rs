//! Sonde's eBPF programs and the layout of everything they share with userspace.
//!
//! The C sources live in `src/bpf/`, the shared layout in `include/sonde_abi.h`. The
//! build script compiles each probe family into one CO-RE object that is embedded here,
//! so the `sonde` binary carries its probes and adapts them to the running kernel's BTF
//! at load time.

pub mod abi;
pub mod grid;

/// A probe family: one C source, one object, the same name in every layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    Process,
    /// File I/O (syscall tracepoints) and block I/O (block_rq_issue/complete).
    FileIo,
    /// TCP connections: lifecycle, bytes, retransmits, RTT, resets (sock and tcp tracepoints).
    Tcp,
    /// DNS packets on the watched ports (cgroup_skb on the cgroup v2 root).
    Dns,
    /// Bytes sent and received per process and container (sock_send_length / sock_recv_length).
    NetIo,
}

impl Family {
    pub const ALL: &'static [Family] = &[
        Family::Process,
        Family::FileIo,
        Family::Tcp,
        Family::Dns,
        Family::NetIo,
    ];

    /// The family's name, as used in config keys, logs and `sonde.probe`.
    pub fn name(self) -> &'static str {
        match self {
            Family::Process => "process",
            Family::FileIo => "fileio",
            Family::Tcp => "tcp",
            Family::Dns => "dns",
            Family::NetIo => "netio",
        }
    }

    /// The compiled, CO-RE-relocatable object.
    pub fn object(self) -> &'static [u8] {
        match self {
            Family::Process => PROCESS_OBJ,
            Family::FileIo => FILEIO_OBJ,
            Family::Tcp => TCP_OBJ,
            Family::Dns => DNS_OBJ,
            Family::NetIo => NETIO_OBJ,
        }
    }
}

static PROCESS_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/process.bpf.o"));
static FILEIO_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/fileio.bpf.o"));
static TCP_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tcp.bpf.o"));
static DNS_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/dns.bpf.o"));
static NETIO_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netio.bpf.o"));

/// Names of the programs and maps in the objects, typed so a rename breaks the build
/// rather than a lookup at run time.
pub mod names {
    pub mod process {
        pub const PROG_FORK: &str = "sonde_process_fork";
        pub const PROG_EXEC: &str = "sonde_process_exec";
        pub const PROG_EXIT: &str = "sonde_process_exit";
        pub const MAP_COUNTERS: &str = "process_counters";
        pub const MAP_EVENTS: &str = "process_events";
        pub const PROG_OOM: &str = "sonde_process_oom";
        pub const MAP_TOTALS: &str = "process_totals";
        pub const MAP_TOTALS_OVERFLOW: &str = "process_totals_overflow";
        pub const MAP_EXITS: &str = "process_exits";
        pub const MAP_EXECS: &str = "process_execs";
        pub const GLOBAL_EXIT_SPANS: &str = "sonde_exit_spans";
        pub const GLOBAL_EXIT_SPAN_MIN_MS: &str = "sonde_exit_span_min_ms";
    }
    pub mod fileio {
        /// (syscall, enter program, exit program) for each traced syscall.
        pub const SYSCALLS: &[(&str, &str, &str)] = &[
            ("read", "sonde_fileio_enter_read", "sonde_fileio_exit_read"),
            (
                "write",
                "sonde_fileio_enter_write",
                "sonde_fileio_exit_write",
            ),
            (
                "pread64",
                "sonde_fileio_enter_pread64",
                "sonde_fileio_exit_pread64",
            ),
            (
                "pwrite64",
                "sonde_fileio_enter_pwrite64",
                "sonde_fileio_exit_pwrite64",
            ),
            (
                "readv",
                "sonde_fileio_enter_readv",
                "sonde_fileio_exit_readv",
            ),
            (
                "writev",
                "sonde_fileio_enter_writev",
                "sonde_fileio_exit_writev",
            ),
        ];
        pub const PROG_BLOCK_ISSUE: &str = "sonde_block_issue";
        pub const PROG_BLOCK_COMPLETE: &str = "sonde_block_complete";
        pub const MAP_FILE_FS: &str = "fileio_fs";
        pub const MAP_FILE_FS_TAKEN: &str = "fileio_fs_taken";
        pub const MAP_FILE_FS_GEN: &str = "fileio_fs_gen";
        pub const MAP_FILE_TOTALS: &str = "fileio_totals";
        pub const MAP_FILE_HISTS: &str = "fileio_hists";
        pub const MAP_FILE_PROCS: &str = "fileio_procs";
        pub const MAP_BLOCK_STATS: &str = "block_stats";
        pub const MAP_BLOCK_PROCS: &str = "block_procs";
        pub const MAP_COUNTERS: &str = "fileio_counters";
        /// `const volatile` global: 1 counts file I/O on pseudo file systems too.
        pub const GLOBAL_PSEUDO_FS: &str = "sonde_fileio_pseudo_fs";
    }
    pub mod tcp {
        pub const PROG_STATE: &str = "sonde_tcp_state";
        pub const PROG_SEND: &str = "sonde_tcp_send";
        pub const PROG_RECV: &str = "sonde_tcp_recv";
        pub const PROG_RETRANSMIT: &str = "sonde_tcp_retransmit";
        pub const PROG_SEND_RESET: &str = "sonde_tcp_send_reset";
        pub const PROG_RECEIVE_RESET: &str = "sonde_tcp_receive_reset";
        pub const PROG_DESTROY: &str = "sonde_tcp_destroy";
        pub const MAP_COUNTERS: &str = "tcp_counters";
        pub const MAP_STATES: &str = "tcp_states";
        pub const MAP_HISTS: &str = "tcp_hists";
        pub const MAP_CONNS: &str = "tcp_conns";
        pub const MAP_EVENTS: &str = "tcp_events";
        pub const MAP_LISTENERS: &str = "tcp_listeners";
        pub const MAP_PENDING_LISTENERS: &str = "tcp_pending_listeners";
        /// `const volatile` global: the network namespace whose states are counted.
        pub const GLOBAL_NETNS_INO: &str = "sonde_netns_ino";
    }
    pub mod dns {
        pub const PROG_INGRESS: &str = "sonde_dns_ingress";
        pub const PROG_EGRESS: &str = "sonde_dns_egress";
        /// Egress without the executable name (cgroup_skb has no bpf_get_current_comm).
        pub const PROG_EGRESS_PID: &str = "sonde_dns_egress_pid";
        /// Egress without process attribution (no bpf_get_current_pid_tgid either).
        pub const PROG_EGRESS_ANON: &str = "sonde_dns_egress_anon";
        pub const MAP_CONFIG: &str = "dns_config";
        pub const MAP_COUNTERS: &str = "dns_counters";
        pub const MAP_EVENTS: &str = "dns_events";
    }
    pub mod netio {
        pub const PROG_SEND: &str = "sonde_netio_send";
        pub const PROG_RECV: &str = "sonde_netio_recv";
        /// The two byte maps the probe writes in turn, and the one that says which.
        pub const MAP_BYTES: [&str; 2] = ["netio_bytes_0", "netio_bytes_1"];
        pub const MAP_GEN: &str = "netio_gen";
        pub const MAP_COUNTERS: &str = "netio_counters";
    }
}

/// Large structs live in maps (per-CPU scratch slots, the ring buffer's reserved record),
/// not on the 512-byte BPF stack: this pins every program's stack depth well under it.
#[cfg(test)]
mod stack {
    use super::Family;
    use aya_obj::generated::bpf_insn;

    const BPF_LDX: u8 = 0x01;
    const BPF_ST: u8 = 0x02;
    const BPF_STX: u8 = 0x03;
    const ALU64_ADD_K: u8 = 0x07;
    const ALU64_MOV_X: u8 = 0xbf;
    const FRAME_POINTER: u8 = 10;

    /// The deepest stack byte a program touches below r10: loads and stores at negative
    /// offsets from r10, and stack addresses it takes (`rX = r10; rX += -N`, the start of
    /// a buffer handed to a helper, which may fill N bytes from there).
    fn stack_depth(insns: &[bpf_insn]) -> i64 {
        let mut deepest = 0i64;
        let mut frame_copies = [false; 11];
        for i in insns {
            let (dst, src) = (usize::from(i.dst_reg()), i.src_reg());
            // An access at -off covers off bytes down to the frame (sizes do not reach
            // below the offset), so the offset is the depth.
            match i.code & 0x07 {
                BPF_LDX if src == FRAME_POINTER && i.off < 0 => {
                    deepest = deepest.max(-i64::from(i.off));
                }
                BPF_ST | BPF_STX if usize::from(FRAME_POINTER) == dst && i.off < 0 => {
                    deepest = deepest.max(-i64::from(i.off));
                }
                _ => {}
            }
            if dst < frame_copies.len() {
                if i.code == ALU64_MOV_X {
                    frame_copies[dst] = src == FRAME_POINTER;
                } else if i.code == ALU64_ADD_K && frame_copies[dst] && i.imm < 0 {
                    deepest = deepest.max(-i64::from(i.imm));
                    frame_copies[dst] = false;
                } else if i.code & 0x07 != BPF_ST && i.code & 0x07 != BPF_STX {
                    frame_copies[dst] = false;
                }
            }
        }
        deepest
    }

    const LIMIT: i64 = 256;

    #[test]
    fn every_program_keeps_its_stack_under_256_bytes() {
        let mut seen = 0;
        for family in Family::ALL {
            let obj = aya_obj::Object::parse(family.object()).expect("the embedded object parses");
            for f in obj.functions.values() {
                let depth = stack_depth(&f.instructions);
                assert!(
                    depth <= LIMIT,
                    "{}: {} bytes of BPF stack; keep large structs in a per-CPU scratch map",
                    f.name,
                    depth
                );
                seen += 1;
            }
        }
        assert!(seen >= 30, "every program was read ({seen})");
    }
}
