//! Attribute keys and the fixed values some of them take.

// Resource (semconv 1.44).
pub const SERVICE_NAME: &str = "service.name";
pub const SERVICE_VERSION: &str = "service.version";
pub const SERVICE_INSTANCE_ID: &str = "service.instance.id";
pub const HOST_NAME: &str = "host.name";
pub const HOST_ID: &str = "host.id";
pub const HOST_ARCH: &str = "host.arch";
pub const OS_TYPE: &str = "os.type";
pub const OS_VERSION: &str = "os.version";
pub const SONDE_MODE: &str = "sonde.mode";

/// Values of [`SONDE_MODE`].
pub mod sonde_mode {
    pub const EBPF: &str = "ebpf";
    pub const FALLBACK: &str = "fallback";
}

/// The default `service.name`.
pub const DEFAULT_SERVICE_NAME: &str = "sonde";
/// The value of [`OS_TYPE`] on every host Sonde runs on.
pub const OS_TYPE_LINUX: &str = "linux";

// Process.
pub const PROCESS_PID: &str = "process.pid";
pub const PROCESS_EXECUTABLE_NAME: &str = "process.executable.name";
pub const PROCESS_STATE: &str = "process.state";
pub const SONDE_PROCESS_EXIT_KIND: &str = "sonde.process.exit.kind";
// On process spans.
pub const PROCESS_PARENT_PID: &str = "process.parent_pid";
pub const PROCESS_EXIT_CODE: &str = "process.exit.code";
/// The signal that ended a process (semconv has `process.exit.code` only).
pub const SONDE_PROCESS_EXIT_SIGNAL: &str = "sonde.process.exit.signal";
/// Where a process span starts: its last exec, or its fork when no exec was seen.
pub const SONDE_PROCESS_SPAN_START: &str = "sonde.process.span.start";

// Container and Kubernetes names on per-process series (datapoint attributes: one Sonde
// reports for many containers).
pub const CONTAINER_ID: &str = "container.id";
pub const K8S_NAMESPACE_NAME: &str = "k8s.namespace.name";
pub const K8S_POD_NAME: &str = "k8s.pod.name";
pub const K8S_CONTAINER_NAME: &str = "k8s.container.name";

/// Values of [`PROCESS_STATE`] for `system.process.count`.
pub mod process_state {
    pub const RUNNING: &str = "running";
    pub const SLEEPING: &str = "sleeping";
    pub const STOPPED: &str = "stopped";
    pub const DEFUNCT: &str = "defunct";
}

/// Values of [`SONDE_PROCESS_EXIT_KIND`].
pub mod exit_kind {
    pub const SUCCESS: &str = "success";
    pub const FAILURE: &str = "failure";
    pub const SIGNAL: &str = "signal";
}

/// Values of [`SONDE_PROCESS_SPAN_START`].
pub mod span_start {
    /// The process's last exec(2).
    pub const EXEC: &str = "exec";
    /// Its fork: it never exec'd, or exec'd before the agent started.
    pub const FORK: &str = "fork";
}

/// Marks the series that holds everything past a cardinality limit (OTel SDK spec).
pub const OTEL_METRIC_OVERFLOW: &str = "otel.metric.overflow";

// Sonde's own telemetry.
pub const SONDE_PROBE: &str = "sonde.probe";
pub const SONDE_PROBE_STATE: &str = "sonde.probe.state";
pub const SONDE_LOSS_REASON: &str = "sonde.loss.reason";
pub const SONDE_EXPORT_OUTCOME: &str = "sonde.export.outcome";
pub const CPU_MODE: &str = "cpu.mode";

/// Values of [`SONDE_PROBE_STATE`].
pub mod probe_state {
    pub const ATTACHED: &str = "attached";
    pub const SKIPPED: &str = "skipped";
    pub const FAILED: &str = "failed";
}

/// Values of [`SONDE_LOSS_REASON`].
pub mod loss_reason {
    pub const RINGBUF_FULL: &str = "ringbuf_full";
    pub const MAP_FULL: &str = "map_full";
    pub const CARDINALITY: &str = "cardinality";
    /// The kernel skipped the program because a BPF program was already running on the
    /// CPU (the program's `recursion_misses`).
    pub const RECURSION: &str = "recursion";
    /// The probe saw the event but could not copy what it needed (a DNS packet's payload).
    pub const COPY_FAILED: &str = "copy_failed";
    /// Spans over `spans.max_per_second`.
    pub const RATE_LIMIT: &str = "rate_limit";
    /// Spans that found the export queue full (the collector unreachable for long).
    pub const QUEUE_FULL: &str = "queue_full";
    /// Spans the collector refused for good (the OTLP spec says: do not retry).
    pub const REJECTED: &str = "rejected";
}

/// Values of [`SONDE_EXPORT_OUTCOME`].
pub mod export_outcome {
    pub const SENT: &str = "sent";
    pub const RETRIED: &str = "retried";
    pub const DROPPED: &str = "dropped";
}

/// Values of [`ERROR_TYPE`] on `sonde.export.queue.errors`.
pub mod queue_error {
    /// A record that was torn (cut short by a crash) or failed its checksum: skipped.
    pub const CORRUPT: &str = "corrupt";
    /// A batch held in memory because the queue could not be opened or written.
    pub const WRITE_FAILED: &str = "write_failed";
}

/// Values of [`CPU_MODE`] used for the agent's own CPU time.
pub mod cpu_mode {
    pub const USER: &str = "user";
    pub const SYSTEM: &str = "system";
}

// File and block I/O (semconv 1.44).
pub const DISK_IO_DIRECTION: &str = "disk.io.direction";
pub const SYSTEM_FILESYSTEM_MOUNTPOINT: &str = "system.filesystem.mountpoint";
pub const SYSTEM_DEVICE: &str = "system.device";

/// Values of [`DISK_IO_DIRECTION`].
pub mod disk_io_direction {
    pub const READ: &str = "read";
    pub const WRITE: &str = "write";
}

// TCP (semconv 1.44 network.*, server.*, error.type; sonde.connection.direction).
pub const NETWORK_TRANSPORT: &str = "network.transport";
pub const NETWORK_TYPE: &str = "network.type";
pub const NETWORK_CONNECTION_STATE: &str = "network.connection.state";
pub const NETWORK_PEER_ADDRESS: &str = "network.peer.address";
pub const NETWORK_PEER_PORT: &str = "network.peer.port";
pub const NETWORK_IO_DIRECTION: &str = "network.io.direction";
pub const SERVER_PORT: &str = "server.port";
pub const ERROR_TYPE: &str = "error.type";
pub const SONDE_CONNECTION_DIRECTION: &str = "sonde.connection.direction";

/// Values of [`NETWORK_TRANSPORT`].
pub mod network_transport {
    pub const TCP: &str = "tcp";
}

/// Values of [`NETWORK_TYPE`].
pub mod network_type {
    pub const IPV4: &str = "ipv4";
    pub const IPV6: &str = "ipv6";
}

/// Values of [`NETWORK_CONNECTION_STATE`] (semconv 1.44).
pub mod connection_state {
    pub const ESTABLISHED: &str = "established";
    pub const SYN_SENT: &str = "syn_sent";
    pub const SYN_RECEIVED: &str = "syn_received";
    pub const FIN_WAIT_1: &str = "fin_wait_1";
    pub const FIN_WAIT_2: &str = "fin_wait_2";
    pub const TIME_WAIT: &str = "time_wait";
    pub const CLOSED: &str = "closed";
    pub const CLOSE_WAIT: &str = "close_wait";
    pub const LAST_ACK: &str = "last_ack";
    pub const LISTEN: &str = "listen";
    pub const CLOSING: &str = "closing";
}

/// Values of [`NETWORK_IO_DIRECTION`].
pub mod network_io_direction {
    pub const TRANSMIT: &str = "transmit";
    pub const RECEIVE: &str = "receive";
}

/// Values of [`SONDE_CONNECTION_DIRECTION`].
pub mod connection_direction {
    pub const INBOUND: &str = "inbound";
    pub const OUTBOUND: &str = "outbound";
}

/// Values of [`ERROR_TYPE`] for failed TCP connects (errno names otherwise).
pub mod tcp_error {
    pub const REFUSED: &str = "refused";
    pub const TIMEOUT: &str = "timeout";
    pub const RESET: &str = "reset";
    pub const UNREACHABLE: &str = "unreachable";
    /// semconv's fallback value when no better one is known.
    pub const OTHER: &str = "_OTHER";
}

// Span-only TCP attributes (one connection each; never on metrics).
pub const SONDE_TCP_BYTES_SENT: &str = "sonde.tcp.bytes_sent";
pub const SONDE_TCP_BYTES_RECEIVED: &str = "sonde.tcp.bytes_received";
pub const SONDE_TCP_RETRANSMITS: &str = "sonde.tcp.retransmits";
/// Smoothed round-trip time at the close, in seconds.
pub const SONDE_TCP_SRTT: &str = "sonde.tcp.srtt";
pub const NETWORK_LOCAL_PORT: &str = "network.local.port";

// DNS (semconv 1.44 `dns.question.name`; Sonde's own for the rest).
pub const DNS_QUESTION_NAME: &str = "dns.question.name";
pub const SONDE_DNS_QUESTION_TYPE: &str = "sonde.dns.question.type";
pub const SONDE_DNS_CACHE_HIT: &str = "sonde.dns.cache_hit";

// Host metrics from /proc and /sys (semconv 1.44; values in `crate::host`).
pub const CPU_LOGICAL_NUMBER: &str = "cpu.logical_number";
pub const SYSTEM_MEMORY_STATE: &str = "system.memory.state";
pub const SYSTEM_PAGING_STATE: &str = "system.paging.state";
pub const SYSTEM_PAGING_FAULT_TYPE: &str = "system.paging.fault.type";
pub const SYSTEM_PAGING_DIRECTION: &str = "system.paging.direction";
pub const SYSTEM_FILESYSTEM_STATE: &str = "system.filesystem.state";
pub const SYSTEM_FILESYSTEM_TYPE: &str = "system.filesystem.type";
pub const SYSTEM_FILESYSTEM_MODE: &str = "system.filesystem.mode";
pub const NETWORK_INTERFACE_NAME: &str = "network.interface.name";
