//! The `sonde` binary: command line, logging, and the agent's lifecycle.

mod agent;
mod check;
mod top;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Sonde: an eBPF host agent. It watches processes (and, as probes land, TCP, DNS and
/// file I/O) from kernel tracepoints and exports OpenTelemetry metrics over OTLP.
///
/// With no collector configured, `sonde run` prints a short summary of what it measures every
/// interval. Point it at a collector with OTEL_EXPORTER_OTLP_ENDPOINT (and
/// OTEL_EXPORTER_OTLP_PROTOCOL=grpc or http/protobuf), or with a config file.
#[derive(Debug, Parser)]
#[command(name = "sonde", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load the probes and export metrics until SIGTERM or Ctrl-C.
    ///
    /// Needs root, or CAP_BPF + CAP_PERFMON; without them Sonde collects from /proc
    /// and /sys only and says so. Every setting can also come from the standard
    /// OTEL_* environment variables; a key in the config file wins over them.
    Run {
        /// YAML config file (see examples/sonde.yaml; every key is optional).
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// With no collector, print every series of every metric each interval instead
        /// of the summary (as `exporters.console.detail: full`).
        #[arg(long)]
        verbose_console: bool,
    },
    /// A live full-screen view of this host: the same probes and sources as `sonde run`,
    /// in-process, refreshed every interval (no collector needed).
    ///
    /// Keys: q quit, tab or arrows between panels, s sort column, / filter by process
    /// name, p pause. When stdout is not a terminal it prints one line per interval.
    Top {
        /// YAML config file (probe and host settings; exporters are not used).
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Refresh interval, e.g. 1s, 500ms, 2s.
        #[arg(short, long, value_name = "DURATION", default_value = "1s",
              value_parser = humantime::parse_duration)]
        interval: std::time::Duration,
    },
    /// Report what this kernel offers, probe by probe, and exit non-zero when eBPF
    /// cannot run here (1, with the reason) or the config file is invalid (2).
    Check {
        /// Also validate this config file; an invalid one fails the check (exit code 2).
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    sonde::probe::heap::configure();
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            config,
            verbose_console,
        } => match agent::main(config.as_deref(), agent::RunOptions { verbose_console }) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sonde: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Top { config, interval } => match top::main(config.as_deref(), interval) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sonde top: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Check { config } => check::main(config.as_deref()),
    }
}
