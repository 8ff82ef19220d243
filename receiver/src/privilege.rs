//! Least privilege (design decisions 6 and 12): which capabilities Sonde needs to load and
//! attach its probes, which it keeps afterwards, and the drop itself.
//!
//! [`plan`] is pure and says why each capability is needed; `sonde check` prints it and
//! `sonde run` drops to its `keep` set once every probe is attached: out of the effective,
//! permitted, inheritable, ambient and bounding sets, with PR_SET_NO_NEW_PRIVS set.
//! Capabilities belong to threads, not processes: the agent drops them in the thread that
//! attached the probes, and every runtime thread drops to the same set when it starts
//! ([`drop_to`] works on the calling thread only).

use rustix::thread::{self, CapabilitySet, CapabilitySets};

/// One capability and why Sonde needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    pub cap: CapabilitySet,
    pub why: &'static str,
}

/// What the plan is made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inputs {
    /// eBPF will be tried (`collection.ebpf_enabled`).
    pub ebpf: bool,
    /// An enabled family attaches cgroup_skb programs (they need CAP_NET_ADMIN).
    pub cgroup_skb: bool,
    /// Per-process host metrics (`host.top_processes` > 0) read other users' /proc entries.
    pub top_processes: bool,
    /// The running kernel (major, minor); `None` when unknown (then the older rules apply).
    pub kernel: Option<(u32, u32)>,
}

impl Inputs {
    /// The inputs of a configuration on this kernel. What the probes need comes from the
    /// families' program tables, so a new family needs no edit here.
    pub fn of(config: &crate::config::Config) -> Self {
        Self {
            ebpf: config.ebpf_enabled,
            cgroup_skb: crate::family::FAMILIES.iter().any(|f| {
                f.enabled(&config.probes)
                    && f.programs()
                        .iter()
                        .any(|p| matches!(p.attach, crate::probe::Attach::CgroupSkb { .. }))
            }),
            top_processes: config.host.enabled && config.host.top_processes > 0,
            kernel: crate::probe::support::kernel_version(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Needed until every probe is attached.
    pub load: Vec<Need>,
    /// Kept afterwards; everything else is dropped.
    pub keep: Vec<Need>,
}

impl Plan {
    pub fn keep_set(&self) -> CapabilitySet {
        self.keep
            .iter()
            .fold(CapabilitySet::empty(), |s, n| s | n.cap)
    }
    pub fn load_set(&self) -> CapabilitySet {
        self.load
            .iter()
            .fold(CapabilitySet::empty(), |s, n| s | n.cap)
    }
}

/// The capabilities this configuration needs on this kernel, and why.
pub fn plan(i: &Inputs) -> Plan {
    let at_least = |v: (u32, u32)| i.kernel.is_some_and(|k| k >= v);
    let mut load = Vec::new();
    let mut keep = Vec::new();
    if i.top_processes {
        let proc_read = [
            Need {
                cap: CapabilitySet::SYS_PTRACE,
                why: "read other users' /proc/<pid>/io (process.disk.io of the top processes)",
            },
            Need {
                cap: CapabilitySet::DAC_READ_SEARCH,
                why: "count other users' open files in /proc/<pid>/fd (top processes)",
            },
        ];
        load.extend(proc_read);
        keep.extend(proc_read);
    }
    if i.ebpf {
        if at_least((5, 8)) {
            load.push(Need {
                cap: CapabilitySet::BPF,
                why: "create maps and load programs",
            });
            load.push(Need {
                cap: CapabilitySet::PERFMON,
                why: "attach tracepoints and let programs read kernel memory",
            });
        } else {
            load.push(Need {
                cap: CapabilitySet::SYS_ADMIN,
                why: "load BPF programs (this kernel has no CAP_BPF)",
            });
        }
        if !i.top_processes {
            load.push(Need {
                cap: CapabilitySet::DAC_READ_SEARCH,
                why: "read tracepoint ids in tracefs (a root-only directory)",
            });
        }
        if i.cgroup_skb {
            load.push(Need {
                cap: CapabilitySet::NET_ADMIN,
                why: "attach cgroup_skb programs (the DNS probe) to the root cgroup",
            });
        }
        if !at_least((5, 11)) {
            load.push(Need {
                cap: CapabilitySet::SYS_RESOURCE,
                why: "raise RLIMIT_MEMLOCK: kernels before 5.11 charge BPF maps to it",
            });
        }
        // Reading maps and rings through descriptors already held needs no capability
        // from 5.19 on; before, every map read is checked.
        if !at_least((5, 19)) {
            keep.push(Need {
                cap: if at_least((5, 8)) {
                    CapabilitySet::BPF
                } else {
                    CapabilitySet::SYS_ADMIN
                },
                why: "read maps after attach (kernels before 5.19 check every map read)",
            });
        }
    }
    load.push(Need {
        cap: CapabilitySet::SETPCAP,
        why: "shrink the bounding set once attached (then dropped itself)",
    });
    Plan { load, keep }
}

/// The name `capabilities(7)` uses, e.g. `CAP_BPF`.
pub fn name(cap: CapabilitySet) -> String {
    let Some((n, _)) = cap.iter_names().next() else {
        return format!("CAP_{}", cap.bits().trailing_zeros());
    };
    format!("CAP_{n}")
}

/// Names of every capability in `set`, in bit order, e.g. `CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE`.
pub fn names(set: CapabilitySet) -> String {
    let v: Vec<String> = (0..64)
        .map(|b| CapabilitySet::from_bits_retain(1 << b))
        .filter(|c| set.contains(*c))
        .map(name)
        .collect();
    if v.is_empty() {
        "none".to_owned()
    } else {
        v.join(", ")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot drop capabilities ({step}): {source}")]
pub struct DropError {
    step: &'static str,
    #[source]
    source: std::io::Error,
}

fn step(step: &'static str) -> impl FnOnce(rustix::io::Errno) -> DropError {
    move |e| DropError {
        step,
        source: e.into(),
    }
}

/// Highest capability number this kernel knows.
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// What a thread holds after [`drop_to`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    /// Effective and permitted sets now.
    pub kept: CapabilitySet,
    /// The bounding set was shrunk to `kept` (it needs CAP_SETPCAP; a user started with
    /// none has nothing to bound, and no_new_privs still stops an exec from gaining any).
    pub bounding: bool,
}

/// Drops the calling thread to `keep` (or what of it the thread has) in every set and
/// sets no_new_privs.
pub fn drop_to(keep: CapabilitySet) -> Result<Dropped, DropError> {
    let cur = thread::capabilities(None).map_err(step("read the current sets"))?;
    let keep = keep & cur.permitted;
    let bounding = cur.permitted.contains(CapabilitySet::SETPCAP);
    if bounding {
        // CAP_SETPCAP must be effective to shrink the bounding set.
        thread::set_capabilities(
            None,
            CapabilitySets {
                effective: cur.effective | CapabilitySet::SETPCAP,
                ..cur
            },
        )
        .map_err(step("raise CAP_SETPCAP"))?;
        for bit in 0..=last_cap() {
            let cap = CapabilitySet::from_bits_retain(1 << bit);
            if !keep.contains(cap) && thread::capability_is_in_bounding_set(cap).unwrap_or(false) {
                thread::remove_capability_from_bounding_set(cap)
                    .map_err(step("shrink the bounding set"))?;
            }
        }
    }
    thread::clear_ambient_capability_set().map_err(step("clear the ambient set"))?;
    thread::set_capabilities(
        None,
        CapabilitySets {
            effective: keep,
            permitted: keep,
            inheritable: CapabilitySet::empty(),
        },
    )
    .map_err(step("set the effective, permitted and inheritable sets"))?;
    thread::set_no_new_privs(true).map_err(step("set no_new_privs"))?;
    Ok(Dropped {
        kept: keep,
        bounding,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(p: &[Need]) -> String {
        names(p.iter().fold(CapabilitySet::empty(), |s, n| s | n.cap))
    }

    #[test]
    fn plans_per_kernel_and_family() {
        let base = Inputs {
            ebpf: true,
            cgroup_skb: true,
            top_processes: true,
            kernel: Some((6, 18)),
        };
        let cases = [
            (
                "every family, new kernel: no BPF capability kept",
                base,
                "CAP_DAC_READ_SEARCH, CAP_SETPCAP, CAP_NET_ADMIN, CAP_SYS_PTRACE, CAP_PERFMON, CAP_BPF",
                "CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE",
            ),
            (
                "no DNS, no top processes",
                Inputs {
                    cgroup_skb: false,
                    top_processes: false,
                    ..base
                },
                "CAP_DAC_READ_SEARCH, CAP_SETPCAP, CAP_PERFMON, CAP_BPF",
                "none",
            ),
            (
                "5.15: map reads still checked",
                Inputs {
                    kernel: Some((5, 15)),
                    ..base
                },
                "CAP_DAC_READ_SEARCH, CAP_SETPCAP, CAP_NET_ADMIN, CAP_SYS_PTRACE, CAP_PERFMON, CAP_BPF",
                "CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE, CAP_BPF",
            ),
            (
                "5.10: memlock charged",
                Inputs {
                    kernel: Some((5, 10)),
                    cgroup_skb: false,
                    ..base
                },
                "CAP_DAC_READ_SEARCH, CAP_SETPCAP, CAP_SYS_PTRACE, CAP_SYS_RESOURCE, CAP_PERFMON, CAP_BPF",
                "CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE, CAP_BPF",
            ),
            (
                "eBPF off",
                Inputs {
                    ebpf: false,
                    ..base
                },
                "CAP_DAC_READ_SEARCH, CAP_SETPCAP, CAP_SYS_PTRACE",
                "CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE",
            ),
        ];
        for (what, i, load, keep) in cases {
            let p = plan(&i);
            assert_eq!(set(&p.load), load, "{what}: load");
            assert_eq!(set(&p.keep), keep, "{what}: keep");
            assert!(
                p.load_set().contains(p.keep_set()),
                "{what}: keep within load"
            );
            assert!(p.load.iter().chain(&p.keep).all(|n| !n.why.is_empty()));
        }
    }
}
