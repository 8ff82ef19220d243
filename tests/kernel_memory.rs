//! The kernel memory Sonde's BPF maps pin, with every family loaded: measured from the
//! maps' own memlock figures (/proc/self/fdinfo, what bpftool shows) and projected to a
//! node with 64 possible CPUs, where per-CPU maps hold 64 copies of their values. The
//! budget is 32 MiB with every map full. Loading them also stays small in this process's
//! own memory: no whole kernel BTF is parsed.
//!
//! Needs root (eBPF).

mod common;

use sonde::collect::kernel_objects::{own_maps, possible_cpus, total, with_names, PROJECTED_CPUS};

const BUDGET: u64 = 32 * 1024 * 1024;

/// Loading every family may raise this process's peak RSS by this much: the objects, maps
/// and cut-down BTFs (`probe::btf`) take ~2 MiB; aya's parse of the whole kernel BTF alone
/// would take ~15 MiB.
const LOAD_PEAK_KIB: u64 = 8 * 1024;

#[test]
fn every_family_fits_the_budget_on_64_cpus() {
    common::require_root();
    let me = std::process::id() as i32;
    let peak_before = common::peak_rss_kib(me);
    let families: Vec<_> = sonde::family::FAMILIES
        .iter()
        .map(|f| {
            f.check()
                .unwrap_or_else(|e| panic!("loading {}: {e}", f.name()))
        })
        .collect();
    assert_eq!(families.len(), sonde_probes::Family::ALL.len());
    let grown = common::peak_rss_kib(me) - peak_before;
    eprintln!("loading every family raised peak RSS by {grown} KiB");
    assert!(
        grown <= LOAD_PEAK_KIB,
        "loading every family raised peak RSS by {grown} KiB (at most {LOAD_PEAK_KIB}): \
         did aya parse the whole kernel BTF?"
    );
    let maps = with_names(own_maps().expect("reading /proc/self/fdinfo"));
    for name in [
        "process_counter", // the kernel keeps 15 characters of a name
        "fileio_fs",
        "fileio_totals",
        "fileio_hists",
        "fileio_procs",
        "block_stats",
        "block_procs",
        "block_start",
        "tcp_conns",
        "tcp_listeners",
        "tcp_events",
        "tcp_hists",
        "dns_events",
        "netio_bytes_0",
        "netio_bytes_1",
    ] {
        assert!(
            maps.iter().any(|m| m.name == name),
            "map {name} is not among the loaded ones: {maps:?}"
        );
    }
    let cpus = possible_cpus();
    for m in &maps {
        // The model's per-CPU share can never exceed what the kernel charges here.
        assert!(
            m.bytes_per_cpu() * cpus <= m.memlock,
            "{}: {} bytes per CPU x {cpus} CPUs > memlock {}",
            m.name,
            m.bytes_per_cpu(),
            m.memlock
        );
    }
    let (now, bound) = total(&maps, cpus, PROJECTED_CPUS);
    let mut table: Vec<_> = maps
        .iter()
        .map(|m| {
            (
                m.projected(cpus, PROJECTED_CPUS),
                m.memlock,
                m.name.as_str(),
            )
        })
        .collect();
    table.sort();
    eprintln!("map: bytes with every map full on {PROJECTED_CPUS} CPUs, memlock now ({cpus} CPUs)");
    for (p, n, name) in table.iter().rev() {
        eprintln!("  {name:<20} {p:>10} {n:>10}");
    }
    eprintln!("total: {bound} bytes bound, {now} bytes now");
    assert!(
        bound <= BUDGET,
        "the maps would pin {:.1} MiB on {PROJECTED_CPUS} CPUs, over the {} MiB budget",
        bound as f64 / 1048576.0,
        BUDGET / 1048576
    );
    drop(families);
}
