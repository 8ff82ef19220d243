//! `sonde run`: wires probes, collectors, mapping and exporters, ticks, and shuts down in
//! order (stop collecting, flush exporters, detach probes).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sonde::aggregate::bounded::SeriesPolicy;
use sonde::collect::agent_self;
use sonde::config::{Config, ConsoleDetail, OtelEnv};
use sonde::export::console::ConsoleExporter;
use sonde::export::otlp::trace_export::TraceExporter;
use sonde::export::otlp::OtlpExporter;
use sonde::export::prometheus::{self, PrometheusExporter};
use sonde::export::{resource, ExportStats, SCOPE_NAME, SCOPE_VERSION};
use sonde::family::{self, Family, Started};
use sonde::mapping::{self, self_telemetry::SelfInputs};
use sonde::model::Snapshot;
use sonde::privilege;
use sonde::probe::{self, LoadedFamily, ProbeReport, ProbeState};
use sonde::source::{self, Source};
use sonde::spans::clock::MonotonicToWall;
use sonde::spans::sink::SpanSink;
use sonde::spans::Spans;
use sonde_semconv::attr::sonde_mode;

/// Command-line choices of `sonde run` that are not config keys.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// `--verbose-console`: the full table, as `exporters.console.detail: full`.
    pub verbose_console: bool,
}

pub fn main(config_path: Option<&Path>, opts: RunOptions) -> anyhow::Result<()> {
    let env = OtelEnv::from_process();
    let mut config = Config::load(config_path, &env)?;
    if opts.verbose_console {
        config.console_detail = ConsoleDetail::Full;
    }
    init_logging(&config.log_level, std::io::stderr);
    let plan = privilege_plan(&config);
    // Capabilities are per thread: the runtime's threads never load a probe, so they drop
    // to what is kept after attach as they start; the main thread, which attaches, drops
    // once it is done (`run`).
    let keep = plan.keep_set();
    runtime(move || {
        if let Err(e) = privilege::drop_to(keep) {
            tracing::warn!("{e}");
        }
    })?
    .block_on(run(config, plan))
}

pub fn runtime(
    on_thread_start: impl Fn() + Send + Sync + 'static,
) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        // Collection is light; two workers keep sends from stalling ticks without
        // spreading the agent over every core of a large host.
        .worker_threads(2)
        .on_thread_start(on_thread_start)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The capabilities this config needs on this kernel (`sonde check` prints the same plan).
pub fn privilege_plan(config: &Config) -> privilege::Plan {
    privilege::plan(&privilege::Inputs::of(config))
}

pub fn init_logging<W>(level: &str, writer: W)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = tracing_subscriber::EnvFilter::try_from_env("SONDE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("sonde={level},warn")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// The eBPF side: loaded families and their sources. Dropping it detaches and unloads
/// everything.
struct Probes {
    families: Vec<(&'static dyn Family, LoadedFamily)>,
    sources: Vec<Box<dyn Source>>,
    reports: Vec<ProbeReport>,
    /// Keeps BPF run-time statistics on while held.
    _stats_fd: Option<std::os::fd::OwnedFd>,
}

impl Probes {
    fn none() -> Self {
        Self {
            families: Vec::new(),
            sources: Vec::new(),
            reports: Vec::new(),
            _stats_fd: None,
        }
    }

    fn load(
        config: &Config,
        start: u64,
        spans: Option<&Spans>,
        processes: &sonde::cgroup::Attribution,
    ) -> Result<Self, String> {
        let series = |limit| SeriesPolicy {
            limit,
            ttl: config.series_ttl,
            start_unix_nano: start,
        };
        if let Some(reason) = probe::support::blocker() {
            return Err(reason);
        }
        match probe::tracefs::ensure_mounted() {
            Ok(Some(done)) => tracing::info!("{done}"),
            Ok(None) => {}
            Err(e) => tracing::warn!(
                "tracefs is not mounted and mounting it failed ({e}): classic tracepoint \
                 probes will be skipped; mount it with `mount -t tracefs tracefs /sys/kernel/tracing`"
            ),
        }
        let mut probes = Self::none();
        if config.probe_run_stats {
            match aya::sys::enable_stats(aya::sys::Stats::RunTime) {
                Ok(fd) => probes._stats_fd = Some(fd),
                Err(e) => tracing::warn!(
                    "BPF run-time statistics are unavailable ({e}); sonde.probe.run.* will \
                     read zero. Set self_telemetry.probe_run_stats: false to silence this"
                ),
            }
        }
        // Each family loads on its own: one that fails leaves the others running.
        for f in family::FAMILIES {
            if f.enabled(&config.probes) {
                probes.add(
                    *f,
                    f.start(&config.probes, series(0), spans, processes)
                        .map_err(|e| e.to_string()),
                );
            }
        }
        // Every loader's BTF parse is freed by now: hand those pages back before the
        // collection loop starts, or they stay resident for the agent's life.
        probe::heap::release_freed();
        for r in &probes.reports {
            match (&r.state, &r.degraded) {
                (ProbeState::Attached, None) => tracing::info!(probe = r.probe, "attached"),
                (ProbeState::Attached, Some(d)) => {
                    tracing::warn!(probe = r.probe, "attached, degraded: {d}")
                }
                (other, _) => tracing::warn!(probe = r.probe, "{other}"),
            }
        }
        Ok(probes)
    }

    /// Records a family's outcome: its reports, its source if the collector started, and
    /// the kernel objects it owns (released when `Probes` drops).
    fn add(&mut self, family: &'static dyn Family, outcome: Result<Started, String>) {
        match outcome {
            Ok(Started { loaded, source }) => {
                self.reports.extend(loaded.reports.iter().cloned());
                self.sources.extend(source);
                self.families.push((family, loaded));
            }
            Err(e) => {
                tracing::error!(family = family.name(), "{e}");
                // Reported like a probe, so readiness and sonde.probe.status show it.
                self.reports
                    .push(ProbeReport::new(family.name(), ProbeState::Failed(e)));
            }
        }
    }

    fn attached(&self) -> bool {
        self.reports.iter().any(|r| r.state == ProbeState::Attached)
    }

    fn run_stats(&self) -> Vec<(&'static str, Duration, u64)> {
        if self._stats_fd.is_none() {
            return Vec::new();
        }
        self.families
            .iter()
            .flat_map(|(f, loaded)| f.run_stats(loaded))
            .collect()
    }

    /// Each attached program's runs the kernel skipped (recursion_misses), as losses.
    fn recursion_losses(&self) -> Vec<(&'static str, &'static str, u64)> {
        self.families
            .iter()
            .flat_map(|(f, loaded)| loaded.recursion_misses(f.programs()))
            .map(|(probe, n)| (probe, sonde_semconv::attr::loss_reason::RECURSION, n))
            .collect()
    }

    /// Bytes pinned by the maps this process holds; none without probes.
    fn map_memory(&self) -> Option<u64> {
        if self.families.is_empty() {
            return None;
        }
        match sonde::collect::kernel_objects::own_maps() {
            Ok(maps) => Some(maps.iter().map(|m| m.memlock).sum()),
            Err(e) => {
                tracing::debug!("reading /proc/self/fd for the maps' memory: {e}");
                None
            }
        }
    }
}

/// The in-process collection: probes and sources, snapshot on demand. `sonde run` hands
/// its snapshots to the exporters, `sonde top` to the terminal view. Dropping it detaches
/// and unloads every probe.
pub struct Collection {
    state: State,
    /// `ebpf` when a probe attached, `fallback` otherwise.
    pub mode: &'static str,
}

impl Collection {
    /// Each probe's outcome (and each family that failed to load), for readiness.
    pub fn reports(&self) -> &[ProbeReport] {
        &self.state.probes.reports
    }

    pub fn start(config: &Config, stats: Arc<ExportStats>) -> Self {
        let start = sonde::unix_nanos();
        // Spans are built only where they can go: a trace exporter is configured and a
        // kind of span is on.
        let spans = (config.traces.is_some() && config.spans.any()).then(|| Spans {
            sink: Arc::new(SpanSink::new(
                config.spans.max_per_second,
                MonotonicToWall::measure(),
            )),
            config: config.spans.clone(),
        });
        // One cgroup resolver for every family and the host's top processes: one cache,
        // one rescan budget.
        let processes = sonde::cgroup::Attribution::for_host(config.process_pid);
        let probes = load_probes(config, start, spans.as_ref(), &processes);
        let mode = if probes.attached() {
            sonde_mode::EBPF
        } else {
            sonde_mode::FALLBACK
        };
        let mut sources = family::host::sources(config, &probes.reports, &processes);
        // Families that only read files run in both modes.
        sources.extend(family::file_sources(
            &config.probes,
            SeriesPolicy {
                limit: 0,
                ttl: config.series_ttl,
                start_unix_nano: start,
            },
        ));
        let state = State {
            start,
            probes,
            sources,
            stats,
            metric_names: config.metric_names,
            spans,
        };
        Self { state, mode }
    }

    /// Where the families hand their spans, when spans are exported.
    pub fn span_sink(&self) -> Option<Arc<SpanSink>> {
        self.state.spans.as_ref().map(|s| s.sink.clone())
    }

    pub fn snapshot(&mut self) -> Snapshot {
        self.state.snapshot()
    }

    /// When collection started (Unix ns): the start time of the probes' series.
    pub fn started(&self) -> u64 {
        self.state.start
    }

    /// Stops and joins every family's background tasks (ring drains), so the
    /// descriptors they hold are closed, then releases the probes.
    pub async fn shutdown(mut self) {
        let tasks: Vec<_> = self
            .state
            .probes
            .sources
            .iter_mut()
            .flat_map(|s| s.stop())
            .collect();
        for t in tasks {
            t.join().await;
        }
        drop(self);
    }
}

fn load_probes(
    config: &Config,
    start: u64,
    spans: Option<&Spans>,
    processes: &sonde::cgroup::Attribution,
) -> Probes {
    if !config.ebpf_enabled {
        tracing::warn!(
            "eBPF is off (collection.ebpf_enabled: false): collecting from /proc and /sys only"
        );
        Probes::none()
    } else {
        match Probes::load(config, start, spans, processes) {
            Ok(p) if p.attached() => p,
            Ok(p) => {
                let why: Vec<String> = p
                    .reports
                    .iter()
                    .map(|r| format!("{}: {}", r.probe, r.state))
                    .collect();
                tracing::warn!(
                    "no probe attached ({}): collecting from /proc and /sys only; \
                     `sonde check` shows what this kernel or user lacks",
                    why.join("; ")
                );
                p
            }
            Err(reason) => {
                tracing::warn!("{reason}");
                Probes::none()
            }
        }
    }
}

async fn run(config: Config, plan: privilege::Plan) -> anyhow::Result<()> {
    let stats = ExportStats::new();
    let collection = Collection::start(&config, stats.clone());
    let mode = collection.mode;
    tracing::info!(mode, "sonde {} started", env!("CARGO_PKG_VERSION"));

    let host = resource::HostFacts::read();
    let res = resource::build(&config.resource, &host, mode);
    let traces = match (&config.traces, collection.span_sink()) {
        (Some(cfg), Some(sink)) => {
            tracing::info!(endpoint = %cfg.endpoint, protocol = %cfg.protocol, "exporting spans over OTLP");
            Some(
                TraceExporter::start(cfg, resource::to_proto(&res), sink)
                    .context("cannot set up the OTLP span exporter")?,
            )
        }
        _ => None,
    };
    let mut otlp = match &config.otlp {
        Some(cfg) => {
            tracing::info!(endpoint = %cfg.endpoint, protocol = %cfg.protocol, "exporting over OTLP");
            Some(
                OtlpExporter::start(
                    cfg,
                    resource::to_proto(&res),
                    stats.clone(),
                    collection.started(),
                )
                .context("cannot set up the OTLP exporter")?,
            )
        }
        None => None,
    };
    let prometheus = match &config.prometheus {
        Some(cfg) => {
            let target = prometheus::Target {
                resource: res
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                scope_name: SCOPE_NAME.to_owned(),
                scope_version: SCOPE_VERSION.to_owned(),
            };
            let exporter = PrometheusExporter::start(cfg, target)?;
            tracing::info!(
                "serving Prometheus metrics on http://{}/metrics",
                exporter.local_addr()
            );
            Some(exporter)
        }
        None => None,
    };
    let mut console = config
        .console
        .then(|| ConsoleExporter::new(config.console_detail));
    match (&otlp, &prometheus, &console) {
        (None, None, Some(c)) => {
            // Once, on stdout with the summaries it announces.
            if let Err(e) = std::io::Write::write_all(
                &mut std::io::stdout(),
                c.banner(config.interval).as_bytes(),
            ) {
                tracing::warn!("cannot write to stdout ({e}): the console prints nothing");
                console = None;
            }
        }
        (None, None, None) => tracing::warn!(
            "no exporter configured (OTEL_METRICS_EXPORTER=none, or exporters.console.enabled \
             is false and no OTLP endpoint is set): metrics are collected but go nowhere"
        ),
        _ => {}
    }

    let health = Arc::new(sonde::health::Status::new(
        stats.clone(),
        config.interval,
        config.health.max_export_lag,
    ));
    health.set_probes(collection.reports(), mode == sonde_mode::FALLBACK);
    if let Some(addr) = config.health.listen {
        let bound = sonde::health::serve(addr, health.clone()).await?;
        tracing::info!(%bound, "serving GET /healthz and /readyz");
    }
    // Every probe is attached and every port bound: from here on Sonde reads through the
    // descriptors it holds.
    match privilege::drop_to(plan.keep_set()) {
        Ok(d) => tracing::info!(
            bounding_set_shrunk = d.bounding,
            "capabilities after attach: {} (everything else dropped, no_new_privs set)",
            privilege::names(d.kept)
        ),
        Err(e) => tracing::warn!("{e}: Sonde keeps the capabilities it started with"),
    }

    // Both streams are made once, here: a signal that arrives while a snapshot is taken
    // waits in its stream for the next `select!` (a `ctrl_c()` future made anew each
    // iteration could miss it).
    use tokio::signal::unix::{signal, SignalKind};
    let mut sigterm =
        signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let mut sigint =
        signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;

    // Collection runs on its own thread (map walks, /proc, statvfs can block); this loop
    // only fans each snapshot out to the exporters.
    let (handover, mut snapshots) = tokio::sync::mpsc::channel(sonde::tick::HANDOVER_CAPACITY);
    let ticker = sonde::tick::spawn(
        collection,
        |c: &mut Collection| {
            let snapshot = c.snapshot();
            probe::heap::release_freed();
            snapshot
        },
        config.interval,
        handover,
    )
    .context("cannot start the collection thread")?;
    loop {
        tokio::select! {
            snap = snapshots.recv() => {
                let Some(snap) = snap else { break };
                if let Some(o) = &mut otlp { o.submit(&snap); }
                if let Some(p) = &prometheus { p.submit(snap.clone()); }
                if let Some(c) = &mut console {
                    if let Err(e) = c.submit(&snap) {
                        if e.kind() == std::io::ErrorKind::BrokenPipe {
                            // `sonde run | head`: the reader is gone, so is the point of running.
                            tracing::info!("stdout closed: shutting down");
                            console = None;
                            break;
                        }
                        tracing::warn!("cannot write to stdout ({e}): the console prints nothing more");
                        console = None;
                    }
                }
                health.beat();
            }
            _ = sigterm.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
            _ = sigint.recv() => { tracing::info!("SIGINT: shutting down"); break; }
        }
    }

    // Shutdown order: stop collecting, one last snapshot so short runs lose nothing, flush,
    // then detach.
    let (collection, snap) = ticker
        .stop()
        .await
        .context("the collection thread failed")?;
    if let Some(c) = &mut console {
        // Nothing to do about a failure this late; the reader may be gone.
        let _ = c.submit(&snap);
    }
    if let Some(mut o) = otlp {
        o.submit(&snap);
        o.shutdown().await;
    }
    if let Some(t) = traces {
        t.shutdown().await;
    }
    if let Some(p) = prometheus {
        p.shutdown();
    }
    collection.shutdown().await;
    tracing::info!("probes detached, bye");
    Ok(())
}

struct State {
    start: u64,
    probes: Probes,
    /// Sources that need no probe (/proc, /sys).
    sources: Vec<Box<dyn Source>>,
    stats: Arc<ExportStats>,
    /// Decides which side wins where probes and /proc supply the same metric.
    metric_names: sonde::config::MetricNames,
    spans: Option<Spans>,
}

impl State {
    fn snapshot(&mut self) -> Snapshot {
        let now = sonde::unix_nanos();
        let mut out = source::Output::default();
        for s in self.probes.sources.iter_mut() {
            s.collect(self.start, &mut out);
        }
        let mut procfs = source::Output::default();
        for s in self.sources.iter_mut() {
            s.collect(self.start, &mut procfs);
        }
        let source::Output {
            metrics,
            mut lost,
            failed,
        } = out;
        lost.extend(procfs.lost);
        let reports = probe::with_failures(&self.probes.reports, &failed);
        lost.extend(self.probes.recursion_losses());
        let unavailable =
            family::unavailable_twins(self.probes.families.iter().map(|(f, _)| *f), &reports);
        let mut metrics =
            family::host::merge(metrics, procfs.metrics, self.metric_names, &unavailable);
        let run_stats = self.probes.run_stats();
        metrics.extend(mapping::self_telemetry::metrics(
            &SelfInputs {
                reports: &reports,
                run_stats: &run_stats,
                lost: &lost,
                export: self.stats.counts(),
                usage: agent_self::read()
                    .map_err(|e| tracing::debug!("cannot read Sonde's own usage ({e}): skipped"))
                    .ok(),
                map_memory: self.probes.map_memory(),
                spans: self.spans.as_ref().map(|s| s.sink.counts()),
            },
            self.start,
            now,
        ));
        Snapshot {
            time_unix_nano: now,
            metrics,
        }
    }
}
