//! `sonde top`: the same probes and sources as `sonde run`, in-process, shown as a live
//! full-screen view refreshed every interval (default 1 s).
//!
//! The terminal is put back as it was on every way out: `q`, Ctrl-C, SIGINT, SIGTERM
//! (a signal task sets a flag the loop checks at least every 100 ms), an error (a guard
//! restores on drop) and a panic (ratatui's hook restores before the message prints).
//! Log lines are held while the screen is ours and printed after it is restored. When
//! stdout is not a terminal it prints one summary line per interval instead.

mod ui;

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use ratatui::crossterm::event::{self, Event, KeyEventKind};
use sonde::config::{Config, OtelEnv};
use sonde::export::ExportStats;
use sonde::privilege;
use sonde::view::frame::Viewer;
use sonde::view::text;

use crate::agent::{self, Collection};

/// Processes by CPU and by memory the host source reports at least.
const TOP_PROCESSES: usize = 20;

/// The longest the loop waits before it looks at the quit flag again.
const POLL_SLICE: Duration = Duration::from_millis(100);

pub fn main(config_path: Option<&Path>, interval: Duration) -> anyhow::Result<()> {
    anyhow::ensure!(
        interval >= Duration::from_millis(100),
        "--interval must be at least 100ms (got {})",
        humantime::format_duration(interval)
    );
    let env = OtelEnv::from_process();
    let mut config = Config::load(config_path, &env)?;
    // The view is the output: nothing is exported, nothing printed per snapshot.
    config.interval = interval;
    config.otlp = None;
    config.console = false;
    // A fuller process table than the export's default top 10.
    config.host.top_processes = config.host.top_processes.max(TOP_PROCESSES);
    let logs = LogSink::default();
    agent::init_logging(&config.log_level, logs.clone());
    // As in `sonde run`: the runtime's threads never load a probe and drop to the kept
    // capabilities as they start; this thread drops once the probes are attached.
    let plan = agent::privilege_plan(&config);
    let keep = plan.keep_set();
    let runtime = agent::runtime(move || {
        if let Err(e) = privilege::drop_to(keep) {
            tracing::warn!("{e}");
        }
    })?;
    let _entered = runtime.enter();

    let quit = Arc::new(AtomicBool::new(false));
    let q = quit.clone();
    runtime.spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::warn!("cannot install the SIGTERM/SIGINT handlers: quit with q");
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        q.store(true, Ordering::Relaxed);
    });

    let mut collection = Collection::start(&config, ExportStats::new());
    if let Err(e) = privilege::drop_to(plan.keep_set()) {
        tracing::warn!("{e}: sonde top keeps the capabilities it started with");
    }
    tracing::info!(mode = collection.mode, "sonde top started");
    let result = if std::io::stdout().is_terminal() {
        run_screen(&mut collection, interval, &quit, &logs)
    } else {
        run_lines(&mut collection, interval, &quit)
    };
    // Probes are released before the held log lines (which may explain a failure) print.
    runtime.block_on(collection.shutdown());
    logs.release();
    result
}

/// Sleeps until `deadline` or until asked to quit; returns whether to go on.
fn wait_until(deadline: Instant, quit: &AtomicBool) -> bool {
    loop {
        if quit.load(Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        std::thread::sleep((deadline - now).min(POLL_SLICE));
    }
}

/// Not a terminal: one line per interval on stdout, until a signal or a closed pipe.
fn run_lines(
    collection: &mut Collection,
    interval: Duration,
    quit: &AtomicBool,
) -> anyhow::Result<()> {
    let mut viewer = Viewer::new();
    viewer.update(&collection.snapshot());
    let mut next = Instant::now() + interval;
    while wait_until(next, quit) {
        next += interval;
        let frame = viewer.update(&collection.snapshot());
        let mut out = std::io::stdout().lock();
        if let Err(e) = writeln!(out, "{}", text::one_line(&frame)).and_then(|()| out.flush()) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(());
            }
            return Err(e).context("cannot write to stdout");
        }
    }
    Ok(())
}

/// Restores the terminal when dropped, whichever way the screen loop ends.
struct Screen(ratatui::DefaultTerminal);

impl Drop for Screen {
    fn drop(&mut self) {
        // In a panic ratatui's hook has restored the terminal before the message printed;
        // leaving the alternate screen again would move the cursor back over the message.
        if std::thread::panicking() {
            return;
        }
        let _ = self.0.show_cursor();
        ratatui::restore();
    }
}

fn run_screen(
    collection: &mut Collection,
    interval: Duration,
    quit: &AtomicBool,
    logs: &LogSink,
) -> anyhow::Result<()> {
    logs.hold();
    let mut screen = Screen(ratatui::try_init().context("cannot set up the terminal")?);
    let mut viewer = Viewer::new();
    let mut app = ui::App::new(interval, collection.mode);
    app.show(viewer.update(&collection.snapshot()));
    let mut next = Instant::now() + interval;
    let mut dirty = true;
    #[cfg(debug_assertions)]
    let mut frames = 0u64;
    while !quit.load(Ordering::Relaxed) {
        if dirty {
            screen
                .0
                .draw(|f| ui::draw(f, &app))
                .context("cannot draw on the terminal")?;
            dirty = false;
            #[cfg(debug_assertions)]
            {
                frames += 1;
                panic_for_tests(frames);
            }
        }
        let now = Instant::now();
        if now >= next {
            next = (next + interval).max(now);
            // Collection goes on while paused so rates are right when it resumes.
            app.show(viewer.update(&collection.snapshot()));
            dirty = true;
            continue;
        }
        if event::poll((next - now).min(POLL_SLICE)).context("cannot read the terminal")? {
            match event::read().context("cannot read the terminal")? {
                Event::Key(key) if key.kind != KeyEventKind::Release => {
                    if app.key(key) == ui::Action::Quit {
                        break;
                    }
                    dirty = true;
                }
                Event::Resize(..) => dirty = true,
                _ => {}
            }
        }
    }
    Ok(())
}

/// Debug builds only: `SONDE_TOP_TEST_PANIC=N` panics once N frames are drawn, so that
/// tests/top.rs can show that a panic restores the terminal and releases the probes.
#[cfg(debug_assertions)]
fn panic_for_tests(frames: u64) {
    let at = std::env::var("SONDE_TOP_TEST_PANIC")
        .ok()
        .and_then(|v| v.parse::<u64>().ok());
    if at.is_some_and(|at| frames >= at) {
        panic!("SONDE_TOP_TEST_PANIC: panicking on purpose after {frames} frames");
    }
}

/// Where log lines go: stderr, or a bounded buffer while the screen is ours.
#[derive(Debug, Clone, Default)]
struct LogSink(Arc<Mutex<Option<Vec<u8>>>>);

/// Log bytes held while the screen is shown; past it the oldest are kept, the rest
/// dropped, and a line says so.
const HELD_LOG_BYTES: usize = 64 * 1024;

impl LogSink {
    fn hold(&self) {
        if let Ok(mut g) = self.0.lock() {
            *g = Some(Vec::new());
        }
    }

    /// Back to stderr, printing what was held.
    fn release(&self) {
        let held = self.0.lock().ok().and_then(|mut g| g.take());
        if let Some(held) = held {
            let _ = std::io::stderr().write_all(&held);
        }
    }
}

#[derive(Debug)]
struct LogWriter(Arc<Mutex<Option<Vec<u8>>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let Ok(mut g) = self.0.lock() else {
            return Ok(buf.len());
        };
        match g.as_mut() {
            Some(held) if held.len() + buf.len() <= HELD_LOG_BYTES => held.extend_from_slice(buf),
            Some(held) => {
                const CUT: &[u8] = b"(more log lines were dropped while sonde top ran)\n";
                if !held.ends_with(CUT) {
                    held.extend_from_slice(CUT);
                }
            }
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogSink {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> LogWriter {
        LogWriter(self.0.clone())
    }
}
