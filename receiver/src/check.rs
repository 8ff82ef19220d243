//! `sonde check`: what this kernel offers, probe by probe.

use std::path::Path;
use std::process::ExitCode;

use sonde::config::{Config, OtelEnv};
use sonde::family;
use sonde::privilege;
use sonde::probe::support::{self, Capabilities, BTF_PATH};
use sonde::probe::{tracefs, ProbeState};

/// `println!` without its panic: `sonde check | head -1` closes the pipe early, and what
/// the reader no longer wants is not an error worth a crash.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `sonde check --config FILE` exits with this when FILE is invalid (1 means eBPF cannot
/// run here).
pub const EXIT_INVALID_CONFIG: u8 = 2;

pub fn main(config: Option<&Path>) -> ExitCode {
    let yes = |b: bool| if b { "yes" } else { "no" };
    let mut ebpf_off = false;
    let mut plan_config = Config::load(None, &OtelEnv::from_process()).ok();

    if let Some(path) = config {
        match Config::load(Some(path), &OtelEnv::from_process()) {
            Ok(c) => {
                ebpf_off = !c.ebpf_enabled;
                say!("{:<22} {} is valid", "config", path.display());
                plan_config = Some(c);
            }
            Err(e) => {
                // A config `sonde run` would refuse fails the check on its own, with its
                // own exit code, before anything about the kernel is said.
                say!("{:<22} INVALID: {e}", "config");
                return ExitCode::from(EXIT_INVALID_CONFIG);
            }
        }
    }

    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    say!(
        "{:<22} {} ({})",
        "kernel",
        release.trim(),
        std::env::consts::ARCH
    );
    say!("{:<22} {}", "BTF", yes(Path::new(BTF_PATH).exists()));
    let ringbuf = support::kernel_version().is_some_and(|v| v >= (5, 8));
    say!("{:<22} {}", "BPF ring buffer", yes(ringbuf));
    let caps = Capabilities::current();
    // Read only: `sonde check` changes nothing on the host (`sonde run` mounts tracefs
    // when it is missing), so probes on classic tracepoints may show as skipped here.
    say!(
        "{:<22} {}",
        "tracefs",
        tracefs::root().map_or_else(
            || if std::path::Path::new("/sys/kernel/tracing").exists() && !caps.sys_admin {
                "not readable by this user (mounted at /sys/kernel/tracing?)".to_owned()
            } else {
                "not mounted (sonde run mounts it at /sys/kernel/tracing; classic \
                 tracepoint probes below are judged without it)"
                    .to_owned()
            },
            |p| p.display().to_string()
        )
    );
    say!(
        "{:<22} CAP_BPF {}, CAP_PERFMON {}, CAP_SYS_ADMIN {}, CAP_NET_ADMIN {}",
        "capabilities",
        yes(caps.bpf),
        yes(caps.perfmon),
        yes(caps.sys_admin),
        yes(caps.net_admin)
    );
    // What `sonde run` needs with this config on this kernel, and what it keeps.
    if let Some(c) = &plan_config {
        let plan = crate::agent::privilege_plan(c);
        say!("\ncapabilities needed to load and attach:");
        for n in &plan.load {
            say!("  {:<20} {}", privilege::name(n.cap), n.why);
        }
        say!("capabilities kept after attach (all others dropped, no_new_privs set):");
        if plan.keep.is_empty() {
            say!("  none");
        }
        for n in &plan.keep {
            say!("  {:<20} {}", privilege::name(n.cap), n.why);
        }
        say!();
    }

    // Families that read files only: they run in either mode.
    for f in family::FILE_FAMILIES {
        say!("family {:<15} {}", f.name(), f.check());
    }

    // The mode `sonde run` would choose, and why (issue 6): the same sentence it logs.
    if ebpf_off {
        say!(
            "\neBPF mode: off: collection.ebpf_enabled is false in the config, so Sonde \
             collects from /proc and /sys (sonde.mode=fallback); set it to true to use the probes"
        );
        return ExitCode::SUCCESS;
    }
    if let Some(reason) = support::blocker() {
        say!("\neBPF mode: unavailable. {reason}");
        say!("mode: fallback (sonde run exports sonde.mode=fallback)");
        return ExitCode::FAILURE;
    }

    let mut loadable = 0;
    // Held until the memory report below, so it sees every family's maps at once.
    let mut held = Vec::new();
    for family in family::FAMILIES {
        match family.check() {
            Ok(loaded) => {
                for (r, spec) in loaded.reports.iter().zip(family.programs()) {
                    if r.state == ProbeState::Attached {
                        loadable += 1;
                    }
                    // A kernel that lacks what a probe needs gets its variant (or loses the
                    // probe): say what is lost and why.
                    let state = match (&r.state, &r.degraded) {
                        (ProbeState::Attached, None) => {
                            "ok: loads and passes the verifier".to_owned()
                        }
                        (ProbeState::Attached, Some(d)) => {
                            format!("degraded: its variant loads and passes the verifier; {d}")
                        }
                        (ProbeState::Skipped(_), Some(d)) => format!("degraded: left out; {d}"),
                        (other, _) => other.to_string(),
                    };
                    say!("probe {:<16} {state} ({})", r.probe, spec.attach);
                }
                held.push(loaded);
            }
            Err(e) => say!("probes {:<15} failed: {e}", family.name()),
        }
    }
    if loadable == 0 {
        say!("\neBPF mode: unavailable: no probe loads on this kernel; Sonde will collect from /proc and /sys");
        return ExitCode::FAILURE;
    }
    print_map_memory();
    drop(held);
    say!("\neBPF mode: available ({loadable} probes load)");
    ExitCode::SUCCESS
}

/// The kernel memory the loaded maps pin, per map and summed, and its bound on a node
/// with 64 possible CPUs (the README's formula).
fn print_map_memory() {
    use sonde::collect::kernel_objects::{
        own_maps, possible_cpus, total, with_names, PROJECTED_CPUS,
    };
    let maps = match own_maps() {
        Ok(m) => with_names(m),
        Err(e) => {
            say!("{:<22} cannot be read: {e}", "BPF map memory");
            return;
        }
    };
    let cpus = possible_cpus();
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    say!();
    for m in &maps {
        say!(
            "map {:<18} {:>9.2} MiB now, at most {:>6.2} MiB with {PROJECTED_CPUS} CPUs",
            m.name,
            mib(m.memlock),
            mib(m.projected(cpus, PROJECTED_CPUS))
        );
    }
    let (now, bound) = total(&maps, cpus, PROJECTED_CPUS);
    say!(
        "{:<22} {:.2} MiB now ({cpus} possible CPUs); at most {:.2} MiB with every map full \
         on {PROJECTED_CPUS} possible CPUs",
        "BPF map memory",
        mib(now),
        mib(bound)
    );
}
