//! Liveness and readiness over HTTP (`health.listen`): `GET /healthz` and `GET /readyz`,
//! plain text, for Kubernetes probes, load balancers and people with curl.
//!
//! What each says is decided by pure functions ([`liveness`], [`readiness`]) over a
//! [`Status`] the agent keeps current; the server only reads it. 200 carries `ok`; 503
//! carries one line per failing check saying what is wrong.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::export::ExportStats;
use crate::probe::{ProbeReport, ProbeState};

/// What the checks look at, kept current by the agent.
#[derive(Debug)]
pub struct Status {
    /// When the agent loop last finished a tick (Unix ns).
    heartbeat: AtomicU64,
    probes: Mutex<Probes>,
    export: Arc<ExportStats>,
    interval: Duration,
    max_export_lag: Duration,
}

#[derive(Debug, Clone, Default)]
struct Probes {
    reports: Vec<ProbeReport>,
    /// eBPF is off or unavailable and the agent said so: /proc and /sys only.
    fallback: bool,
}

impl Status {
    pub fn new(export: Arc<ExportStats>, interval: Duration, max_export_lag: Duration) -> Self {
        Self {
            heartbeat: AtomicU64::new(crate::unix_nanos()),
            probes: Mutex::new(Probes::default()),
            export,
            interval,
            max_export_lag,
        }
    }

    /// The probes' outcome once loading is done; `fallback` when Sonde runs without eBPF
    /// on purpose or because the kernel or its privileges do not allow it.
    pub fn set_probes(&self, reports: &[ProbeReport], fallback: bool) {
        let mut p = self.probes.lock().unwrap_or_else(|e| e.into_inner());
        p.reports = reports.to_vec();
        p.fallback = fallback;
    }

    /// The agent loop is alive (called every tick).
    pub fn beat(&self) {
        self.heartbeat.store(crate::unix_nanos(), Ordering::Relaxed);
    }

    fn inputs(&self, now: u64) -> Inputs {
        let probes = self
            .probes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Inputs {
            since_beat: Duration::from_nanos(
                now.saturating_sub(self.heartbeat.load(Ordering::Relaxed)),
            ),
            interval: self.interval,
            reports: probes.reports,
            fallback: probes.fallback,
            export_lag: self.export.counts().lag(now),
            max_export_lag: self.max_export_lag,
        }
    }
}

/// One look at the agent, for the pure checks.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub since_beat: Duration,
    pub interval: Duration,
    pub reports: Vec<ProbeReport>,
    pub fallback: bool,
    pub export_lag: Duration,
    pub max_export_lag: Duration,
}

/// A loop that misses this many ticks in a row is stuck, not slow.
const MISSED_TICKS: u32 = 3;
/// ...and never less than this, so a short interval on a loaded host does not flap.
const MIN_STALL: Duration = Duration::from_secs(10);

/// Why the agent is not live; empty when it is.
pub fn liveness(i: &Inputs) -> Vec<String> {
    let limit = (i.interval * MISSED_TICKS).max(MIN_STALL);
    if i.since_beat > limit {
        vec![format!(
            "agent: the collection loop has not completed a tick for {:.0?} (interval {:?})",
            i.since_beat, i.interval
        )]
    } else {
        Vec::new()
    }
}

/// Why the agent is not ready; empty when it is. A probe the kernel cannot offer
/// (skipped, reported by `sonde check`) does not fail readiness, nor does fallback mode:
/// both are known states the agent reports in `sonde.probe.status` and `sonde.mode`. A probe
/// that failed to load or attach does.
pub fn readiness(i: &Inputs) -> Vec<String> {
    let mut out = liveness(i);
    if !i.fallback {
        for r in &i.reports {
            if let ProbeState::Failed(why) = &r.state {
                out.push(format!("probe {}: failed: {why}", r.probe));
            }
        }
    }
    if i.export_lag > i.max_export_lag {
        out.push(format!(
            "export: the oldest unsent data is {:.0?} old, more than health.max_export_lag \
             ({:?}): is the collector reachable?",
            i.export_lag, i.max_export_lag
        ));
    }
    out
}

#[derive(Debug, thiserror::Error)]
#[error("health.listen: cannot listen on {addr}: {source}")]
pub struct BindError {
    addr: SocketAddr,
    #[source]
    source: std::io::Error,
}

/// Binds now (so a wrong address fails the start) and serves until the runtime stops.
pub async fn serve(addr: SocketAddr, status: Arc<Status>) -> Result<SocketAddr, BindError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| BindError { addr, source })?;
    let local = listener.local_addr().unwrap_or(addr);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let status = status.clone();
            tokio::spawn(async move {
                // A client that sends nothing does not hold a task forever.
                let _ = tokio::time::timeout(Duration::from_secs(5), answer(stream, &status)).await;
            });
        }
    });
    Ok(local)
}

async fn answer(mut stream: TcpStream, status: &Status) -> std::io::Result<()> {
    let mut buf = [0u8; 2048];
    let mut len = 0;
    while len < buf.len() && !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 {
            break;
        }
        len += n;
    }
    let (code, body) = route(&buf[..len], status);
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\n\
         content-length: {}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

fn route(request: &[u8], status: &Status) -> (u16, String) {
    let line = request.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, path) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    if method != b"GET" && method != b"HEAD" {
        return (405, "use GET\n".into());
    }
    let inputs = status.inputs(crate::unix_nanos());
    let failing = match path.split(|&b| b == b'?').next().unwrap_or_default() {
        b"/healthz" => liveness(&inputs),
        b"/readyz" => readiness(&inputs),
        _ => return (404, "GET /healthz or /readyz\n".into()),
    };
    if failing.is_empty() {
        (200, "ok\n".into())
    } else {
        (503, failing.iter().map(|l| format!("{l}\n")).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok_inputs() -> Inputs {
        Inputs {
            since_beat: Duration::from_secs(1),
            interval: Duration::from_secs(10),
            reports: vec![ProbeReport::new("process.exec", ProbeState::Attached)],
            fallback: false,
            export_lag: Duration::from_secs(20),
            max_export_lag: Duration::from_secs(300),
        }
    }

    #[test]
    fn checks_name_each_failure() {
        let failed = ProbeReport::new("tcp.state", ProbeState::Failed("verifier said no".into()));
        let skipped = ProbeReport::new(
            "fileio.block",
            ProbeState::Skipped("no such tracepoint".into()),
        );
        let cases: Vec<(&str, Inputs, Vec<&str>, Vec<&str>)> = vec![
            ("all good", ok_inputs(), vec![], vec![]),
            (
                "loop stalled past 3 intervals",
                Inputs {
                    since_beat: Duration::from_secs(31),
                    ..ok_inputs()
                },
                vec!["agent: the collection loop"],
                vec!["agent: the collection loop"],
            ),
            (
                "a short interval still gets 10 s",
                Inputs {
                    since_beat: Duration::from_secs(9),
                    interval: Duration::from_millis(200),
                    ..ok_inputs()
                },
                vec![],
                vec![],
            ),
            (
                "a failed probe",
                Inputs {
                    reports: vec![failed.clone(), skipped.clone()],
                    ..ok_inputs()
                },
                vec![],
                vec!["probe tcp.state: failed: verifier said no"],
            ),
            (
                "a failed probe in known fallback",
                Inputs {
                    reports: vec![failed],
                    fallback: true,
                    ..ok_inputs()
                },
                vec![],
                vec![],
            ),
            (
                "export lag past the bound",
                Inputs {
                    export_lag: Duration::from_secs(301),
                    ..ok_inputs()
                },
                vec![],
                vec!["export: the oldest unsent data is 301s old"],
            ),
        ];
        for (what, i, live, ready) in cases {
            let l = liveness(&i);
            let r = readiness(&i);
            assert_eq!(l.len(), live.len(), "{what}: {l:?}");
            assert_eq!(r.len(), ready.len(), "{what}: {r:?}");
            for (got, want) in l.iter().zip(&live).chain(r.iter().zip(&ready)) {
                assert!(
                    got.starts_with(want),
                    "{what}: {got} should start with {want}"
                );
            }
        }
    }
}
