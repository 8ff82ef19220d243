//! The DNS family: where each program attaches.

use aya::programs::CgroupSkbAttachType;
use sonde_probes::names::dns as n;

use crate::probe::needs::{Feature, FeatureKind, Need, Without};
use crate::probe::{Attach, ProgramSpec};

pub const PROGRAMS: &[ProgramSpec] = &[
    ProgramSpec {
        probe: "dns.ingress",
        program: n::PROG_INGRESS,
        attach: Attach::CgroupSkb {
            attach_type: CgroupSkbAttachType::Ingress,
        },
    },
    ProgramSpec {
        probe: "dns.egress",
        program: n::PROG_EGRESS,
        attach: Attach::CgroupSkb {
            attach_type: CgroupSkbAttachType::Egress,
        },
    },
];

static CURRENT_COMM: Feature = Feature {
    id: "cgroup_skb_current_comm",
    what: "bpf_get_current_comm in cgroup_skb programs, Linux 6.16",
    kind: FeatureKind::Helper {
        name: "bpf_get_current_comm",
    },
};

static CURRENT_PID: Feature = Feature {
    id: "cgroup_skb_current_pid",
    what: "bpf_get_current_pid_tgid in cgroup_skb programs, Linux 6.10",
    kind: FeatureKind::Helper {
        name: "bpf_get_current_pid_tgid",
    },
};

/// The egress program names the sender of UDP queries with helpers cgroup_skb programs
/// got late; the variants do without the name, then without the process.
pub const NEEDS: &[Need] = &[
    Need {
        probe: "dns.egress",
        feature: &CURRENT_COMM,
        without: Without::Program(n::PROG_EGRESS_PID),
        lost: "UDP queries carry process.pid, their process.executable.name read from /proc \
               when the batch is drained (a sender that exited by then has none)",
    },
    Need {
        probe: "dns.egress",
        feature: &CURRENT_PID,
        without: Without::Program(n::PROG_EGRESS_ANON),
        lost: "UDP queries carry no process (pid or name)",
    },
];
