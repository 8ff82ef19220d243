//! The DNS family: where each program attaches.

use aya::programs::CgroupSkbAttachType;
use sonde_probes::names::dns as n;

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
