//! Loading and attaching the embedded probes with aya, and reporting what happened to
//! each program.
//!
//! A probe (one program) that cannot attach is reported by name with the reason and
//! skipped; the others keep running. Every program, link and map is owned by the
//! [`LoadedFamily`] values and released when they are dropped (or by the kernel when the
//! process dies, since nothing is pinned).

pub mod btf;
pub mod cgroup;
pub mod heap;
pub mod needs;
pub mod support;
pub mod tracefs;

use std::fmt;

use aya::programs::{CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, RawTracePoint, TracePoint};
use aya::{Ebpf, EbpfLoader};
use sonde_probes::Family;

/// How a program attaches.
#[derive(Debug, Clone, Copy)]
pub enum Attach {
    /// A classic tracepoint: stable ABI, needs tracefs for its id.
    TracePoint {
        category: &'static str,
        name: &'static str,
    },
    /// A raw tracepoint: the kernel's arguments as they are (task pointers), cheaper to
    /// run than a classic one, which builds a record first. `args`: the leading arguments
    /// the program reads, checked against the kernel BTF's `btf_trace_<name>` before
    /// loading (CO-RE relocates fields, not argument lists); empty: not checked.
    RawTracePoint {
        name: &'static str,
        args: &'static [btf::RawArg],
    },
    /// A cgroup_skb program on the cgroup v2 root: every socket of the host, one
    /// direction. Attached as a BPF link, so it runs beside programs others attach and
    /// goes away with Sonde.
    CgroupSkb { attach_type: CgroupSkbAttachType },
}

impl fmt::Display for Attach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Attach::TracePoint { category, name } => write!(f, "tracepoint {category}:{name}"),
            Attach::RawTracePoint { name, .. } => write!(f, "raw tracepoint {name}"),
            Attach::CgroupSkb { attach_type } => {
                let dir = match attach_type {
                    CgroupSkbAttachType::Ingress => "ingress",
                    CgroupSkbAttachType::Egress => "egress",
                };
                write!(f, "cgroup_skb/{dir} on the cgroup v2 root")
            }
        }
    }
}

/// One program of a family and where it attaches.
#[derive(Debug, Clone, Copy)]
pub struct ProgramSpec {
    /// The name in `sonde.probe` and in reports, e.g. `process.fork`.
    pub probe: &'static str,
    /// The C function name in the object.
    pub program: &'static str,
    pub attach: Attach,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeState {
    Attached,
    /// The kernel lacks what the probe needs (a tracepoint, a BTF type): not an error.
    Skipped(String),
    /// The kernel has it, but loading or attaching failed.
    Failed(String),
}

impl ProbeState {
    pub fn label(&self) -> &'static str {
        use sonde_semconv::attr::probe_state;
        match self {
            ProbeState::Attached => probe_state::ATTACHED,
            ProbeState::Skipped(_) => probe_state::SKIPPED,
            ProbeState::Failed(_) => probe_state::FAILED,
        }
    }
}

impl fmt::Display for ProbeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeState::Attached => f.write_str("attached"),
            ProbeState::Skipped(r) => write!(f, "skipped: {r}"),
            ProbeState::Failed(r) => write!(f, "failed: {r}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeReport {
    pub probe: &'static str,
    pub state: ProbeState,
    /// What the probe does without, and why, where the kernel lacks a feature it needs
    /// (a variant was loaded, or the probe left out): see [`needs`].
    pub degraded: Option<String>,
}

impl ProbeReport {
    pub fn new(probe: &'static str, state: ProbeState) -> Self {
        Self {
            probe,
            state,
            degraded: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "could not load the `{family}` probes into the kernel: {source}. \
         Run `sonde check` to see what this kernel offers; eBPF needs BTF \
         (/sys/kernel/btf/vmlinux) and CAP_BPF+CAP_PERFMON (or root)"
    )]
    Load {
        family: &'static str,
        #[source]
        source: Box<aya::EbpfError>,
    },
}

/// A family's object in the kernel with its programs attached.
pub struct LoadedFamily {
    pub family: Family,
    pub ebpf: Ebpf,
    pub reports: Vec<ProbeReport>,
    /// (probe, program) of every probe whose program loaded: a variant's program where
    /// the kernel lacked a feature.
    programs: Vec<(&'static str, &'static str)>,
}

impl fmt::Debug for LoadedFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedFamily")
            .field("family", &self.family)
            .field("reports", &self.reports)
            .finish_non_exhaustive()
    }
}

impl LoadedFamily {
    /// The program loaded for `spec`'s probe (its own, or the variant the kernel took).
    fn program_of(&self, spec: &ProgramSpec) -> Option<&'static str> {
        self.programs
            .iter()
            .find(|(probe, _)| *probe == spec.probe)
            .map(|(_, program)| *program)
    }

    /// Kernel run time and run count summed per probe, from BPF run-time statistics
    /// (zero unless statistics are switched on).
    pub fn run_stats(
        &self,
        specs: &[ProgramSpec],
    ) -> Vec<(&'static str, std::time::Duration, u64)> {
        specs
            .iter()
            .filter_map(|spec| {
                let info = self.ebpf.program(self.program_of(spec)?)?.info().ok()?;
                Some((spec.probe, info.run_time(), info.run_count()))
            })
            .collect()
    }

    /// Runs the kernel skipped per attached probe (its `recursion_misses`): a classic
    /// tracepoint program is skipped whenever any BPF program already runs on the CPU, a
    /// raw tracepoint program when that same program does.
    pub fn recursion_misses(&self, specs: &[ProgramSpec]) -> Vec<(&'static str, u64)> {
        specs
            .iter()
            .filter(|spec| {
                self.reports
                    .iter()
                    .any(|r| r.probe == spec.probe && r.state == ProbeState::Attached)
            })
            .filter_map(|spec| {
                let fd = self.ebpf.program(self.program_of(spec)?)?.fd().ok()?;
                Some((
                    spec.probe,
                    crate::collect::kernel_objects::recursion_misses(fd),
                ))
            })
            .collect()
    }
}

/// Loads a family's object (CO-RE relocation and verification happen here) and attaches
/// each of its programs. `attach = false` only loads: for `sonde check`.
pub fn load_family(
    family: Family,
    specs: &[ProgramSpec],
    attach: bool,
) -> Result<LoadedFamily, LoadError> {
    load_family_with(family, specs, attach, &[])
}

/// As [`load_family`], setting the object's `const volatile __u32` globals first
/// (name, value): settings the verifier can then fold into the programs.
pub fn load_family_with(
    family: Family,
    specs: &[ProgramSpec],
    attach: bool,
    globals: &[(&str, u32)],
) -> Result<LoadedFamily, LoadError> {
    load_family_needing(family, specs, &[], attach, globals, &[])
}

/// As [`load_family_with`], loading for each probe the variant its `needs` choose where
/// the kernel lacks a feature (see [`needs`]), and giving the maps in `map_sizes` (name,
/// max_entries) another bound than the object's (tests fill a map with a small bound, so
/// other probes on the host never see it full).
pub fn load_family_needing(
    family: Family,
    specs: &[ProgramSpec],
    needs: &[needs::Need],
    attach: bool,
    globals: &[(&str, u32)],
    map_sizes: &[(&str, u32)],
) -> Result<LoadedFamily, LoadError> {
    // aya 0.14's `EbpfLoader::new` parses the whole kernel BTF (~15 MiB, the agent's
    // peak): where it can, the loader is made where that BTF is out of sight and given a
    // copy cut down to this object's relocations (`btf`); otherwise aya parses it, and the
    // block drops that parse as soon as relocation is done, before verification.
    let minimal = btf::for_object(family.object())
        .map_err(|e| {
            tracing::debug!(
                family = family.name(),
                "the kernel's whole BTF is used: {e}"
            )
        })
        .ok()
        .flatten();
    let mut ebpf = {
        let mut loader = match &minimal {
            Some(cut) => match btf::loader_without_kernel_btf() {
                Some(mut loader) => {
                    loader.btf(Some(cut));
                    loader
                }
                None => EbpfLoader::new(),
            },
            None => EbpfLoader::new(),
        };
        for (name, value) in globals {
            // must_exist: a renamed global is a build problem, not something to ignore.
            loader.override_global(name, value, true);
        }
        for (name, size) in map_sizes {
            loader.map_max_entries(name, *size);
        }
        loader
            // aya 0.14 does not know BPF_MAP_TYPE_TASK_STORAGE (the fileio family keeps
            // each call's start time there); the kernel does, so let it through unparsed.
            .allow_unsupported_maps()
            .load(family.object())
            .map_err(|source| LoadError::Load {
                family: family.name(),
                source: Box::new(source),
            })?
    };
    drop(minimal);
    let off = needs::features_off();
    let wrong_args = raw_args_refused(specs);
    let mut reports = Vec::with_capacity(specs.len());
    let mut programs = Vec::with_capacity(specs.len());
    for spec in specs {
        if let Some((_, why)) = wrong_args.iter().find(|(p, _)| *p == spec.probe) {
            let why = format!("{}: {why}", spec.attach);
            reports.push(ProbeReport::new(spec.probe, ProbeState::Failed(why)));
            continue;
        }
        let (report, program) = load_probe(&mut ebpf, spec, needs, &off, attach);
        if let Some(program) = program {
            programs.push((spec.probe, program));
        }
        reports.push(report);
    }
    Ok(LoadedFamily {
        family,
        ebpf,
        reports,
        programs,
    })
}

/// The probes whose raw tracepoint passes other arguments on this kernel than their
/// program reads (probe, why): loading them would read a pointer where an integer is, so
/// they are reported failed instead. A tracepoint the BTF does not declare is left to
/// the attach, which says it is missing.
fn raw_args_refused(specs: &[ProgramSpec]) -> Vec<(&'static str, String)> {
    let checked: Vec<(&'static str, &'static str, &'static [btf::RawArg])> = specs
        .iter()
        .filter_map(|s| match s.attach {
            Attach::RawTracePoint { name, args } if !args.is_empty() => Some((s.probe, name, args)),
            _ => None,
        })
        .collect();
    if checked.is_empty() {
        return Vec::new();
    }
    let names: Vec<&str> = checked.iter().map(|(_, name, _)| *name).collect();
    match btf::raw_tracepoint_args(&names) {
        Ok(found) => checked
            .iter()
            .zip(found)
            .filter_map(|((probe, name, want), have)| {
                let err = btf::check_raw_args(name, want, &have?).err()?;
                Some((*probe, err))
            })
            .collect(),
        Err(e) => checked
            .iter()
            .map(|(probe, _, _)| {
                (
                    *probe,
                    format!("its arguments cannot be checked against the kernel's BTF: {e}"),
                )
            })
            .collect(),
    }
}

/// Loads (and attaches) the best program for `spec` this kernel takes: its own, or the
/// variant its needs choose where a feature is switched off, absent from tracefs, or
/// refused by the verifier. Returns the report and the program that loaded.
fn load_probe(
    ebpf: &mut Ebpf,
    spec: &ProgramSpec,
    needs: &[needs::Need],
    off: &[String],
    attach: bool,
) -> (ProbeReport, Option<&'static str>) {
    let mine: Vec<&needs::Need> = needs.iter().filter(|n| n.probe == spec.probe).collect();
    let mut missing: Vec<(usize, String)> = mine
        .iter()
        .enumerate()
        .filter_map(|(i, n)| {
            needs::missing_before_load(n, off, tracefs::event_exists).map(|why| (i, why))
        })
        .collect();
    loop {
        let (program, degraded) = needs::choose(spec.program, &mine, &missing);
        let report = |state| ProbeReport {
            probe: spec.probe,
            state,
            degraded: degraded.clone(),
        };
        let Some(program) = program else {
            let why = degraded.clone().unwrap_or_default();
            return (report(ProbeState::Skipped(why)), None);
        };
        match load_program(ebpf, spec, program, attach) {
            ProbeState::Failed(refusal) => match needs::refused_helper(&mine, &missing, &refusal) {
                Some(i) => missing.push((i, format!("the verifier refused it: {refusal}"))),
                None => return (report(ProbeState::Failed(refusal)), None),
            },
            ProbeState::Attached => return (report(ProbeState::Attached), Some(program)),
            other => return (report(other), None),
        }
    }
}

/// Debug builds only: probes named in `SONDE_FAIL_PROBES` (comma-separated) fail as a
/// program that cannot attach would, so tests can make a family attach partly.
#[cfg(debug_assertions)]
fn forced_failure(probe: &str) -> Option<ProbeState> {
    let names = std::env::var("SONDE_FAIL_PROBES").ok()?;
    names.split(',').any(|p| p.trim() == probe).then(|| {
        ProbeState::Failed(
            "failed on purpose (SONDE_FAIL_PROBES, a debug build's test hook)".into(),
        )
    })
}

fn load_program(ebpf: &mut Ebpf, spec: &ProgramSpec, which: &str, attach: bool) -> ProbeState {
    #[cfg(debug_assertions)]
    if let Some(failed) = forced_failure(spec.probe) {
        return failed;
    }
    if let Attach::TracePoint { category, name } = spec.attach {
        if let Some(false) = tracefs::event_exists(category, name) {
            return ProbeState::Skipped(format!("this kernel has no {}", spec.attach));
        }
    }
    let Some(program) = ebpf.program_mut(which) else {
        return ProbeState::Failed(format!(
            "program {which} is missing from the embedded object (a build problem)"
        ));
    };
    let result = match spec.attach {
        Attach::TracePoint { category, name } => <&mut TracePoint>::try_from(program)
            .map_err(|e| e.to_string())
            .and_then(|p| {
                p.load().map_err(verifier_message)?;
                if attach {
                    p.attach(category, name).map_err(|e| e.to_string())?;
                }
                Ok(())
            }),
        Attach::RawTracePoint { name, .. } => <&mut RawTracePoint>::try_from(program)
            .map_err(|e| e.to_string())
            .and_then(|p| {
                p.load().map_err(verifier_message)?;
                if attach {
                    p.attach(name).map_err(|e| e.to_string())?;
                }
                Ok(())
            }),
        Attach::CgroupSkb { attach_type } => <&mut CgroupSkb>::try_from(program)
            .map_err(|e| e.to_string())
            .and_then(|p| {
                p.load().map_err(verifier_message)?;
                if attach {
                    let root = cgroup::cgroup2_root().ok_or(
                        "no cgroup v2 hierarchy is mounted: mount one with \
                         `mount -t cgroup2 none /sys/fs/cgroup/unified`",
                    )?;
                    let dir = std::fs::File::open(&root)
                        .map_err(|e| format!("cannot open {}: {e}", root.display()))?;
                    // Single means flags 0, which BPF_LINK_CREATE requires for cgroups;
                    // a link attachment runs beside every other program regardless.
                    p.attach(dir, attach_type, CgroupAttachMode::Single)
                        .map_err(|e| match std::error::Error::source(&e) {
                            Some(cause) => format!("{e}: {cause}"),
                            None => e.to_string(),
                        })?;
                }
                Ok(())
            }),
    };
    match result {
        Ok(()) => ProbeState::Attached,
        Err(reason) => ProbeState::Failed(format!("{}: {reason}", spec.attach)),
    }
}

/// The verifier log is long; its last lines say why.
fn verifier_message(e: aya::programs::ProgramError) -> String {
    let text = format!("{e:#}");
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines.len().saturating_sub(4);
    lines[tail..].join(" | ")
}

/// The reports as of now: a probe that attached but whose collector has since stopped
/// working (`failed`: probe, why) reads failed, so `sonde.probe.status` says so.
pub fn with_failures(
    reports: &[ProbeReport],
    failed: &[(&'static str, String)],
) -> Vec<ProbeReport> {
    reports
        .iter()
        .map(|r| match failed.iter().find(|(p, _)| *p == r.probe) {
            Some((_, why)) if r.state == ProbeState::Attached => ProbeReport {
                probe: r.probe,
                state: ProbeState::Failed(why.clone()),
                degraded: r.degraded.clone(),
            },
            _ => r.clone(),
        })
        .collect()
}

#[cfg(test)]
mod failure_tests {
    use super::*;

    #[test]
    fn a_collector_failure_turns_an_attached_probe_failed_and_leaves_the_rest() {
        let r = |probe, state| ProbeReport::new(probe, state);
        let reports = [
            r("tcp.state", ProbeState::Attached),
            r("tcp.send", ProbeState::Attached),
            r("dns.egress", ProbeState::Skipped("old kernel".into())),
        ];
        let got = with_failures(
            &reports,
            &[
                ("tcp.state", "ring buffer poll failed".into()),
                ("dns.egress", "ring buffer poll failed".into()),
            ],
        );
        assert_eq!(
            got,
            [
                r(
                    "tcp.state",
                    ProbeState::Failed("ring buffer poll failed".into())
                ),
                r("tcp.send", ProbeState::Attached),
                r("dns.egress", ProbeState::Skipped("old kernel".into())),
            ]
        );
        assert_eq!(with_failures(&reports, &[]), reports);
    }
}
