//! The Prometheus endpoint: `GET /metrics` serves the latest snapshot the agent made, in
//! the text format or OpenMetrics (as the scraper's `Accept` asks), gzip when accepted.
//!
//! A scrape never collects: the agent hands each snapshot to [`PrometheusExporter::submit`]
//! as it does to the other exporters, and a scrape encodes whatever was handed last. The
//! server runs on a thread of its own (one small current-thread runtime), so it answers
//! while the agent's runtime is busy collecting or sending.

pub mod encode;
pub mod names;

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

pub use encode::{Format, Target};

use crate::config::PrometheusConfig;
use crate::model::Snapshot;

#[derive(Debug, thiserror::Error)]
pub enum PrometheusError {
    #[error(
        "cannot resolve the Prometheus endpoint's host `{host}` ({source}); set \
         exporters.prometheus.host or OTEL_EXPORTER_PROMETHEUS_HOST to an address or name"
    )]
    Resolve {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot listen on {addr} for the Prometheus endpoint ({source}); choose another \
         port with exporters.prometheus.port or OTEL_EXPORTER_PROMETHEUS_PORT"
    )]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the Prometheus endpoint's thread: {0}")]
    Thread(#[source] std::io::Error),
}

struct Shared {
    latest: RwLock<Arc<Snapshot>>,
    target: Target,
}

/// The running endpoint; stops (and joins its thread) on [`shutdown`](Self::shutdown) or drop.
#[derive(Debug)]
pub struct PrometheusExporter {
    shared: Arc<SharedDebug>,
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// `Shared` with a Debug that does not print the snapshot.
struct SharedDebug(Shared);

impl std::fmt::Debug for SharedDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl PrometheusExporter {
    /// Binds now (so a port in use is reported at start-up) and serves from a new thread.
    pub fn start(cfg: &PrometheusConfig, target: Target) -> Result<Self, PrometheusError> {
        let listener = bind(&cfg.host, cfg.port)?;
        let addr = listener
            .local_addr()
            .map_err(|source| PrometheusError::Bind {
                addr: format!("{}:{}", cfg.host, cfg.port),
                source,
            })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| PrometheusError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        let shared = Arc::new(SharedDebug(Shared {
            latest: RwLock::new(Arc::new(Snapshot::default())),
            target,
        }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = shared.clone();
        let thread = std::thread::Builder::new()
            .name("sonde-prometheus".into())
            .spawn(move || serve(listener, state, stopped))
            .map_err(PrometheusError::Thread)?;
        Ok(Self {
            shared,
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Makes `snap` what the next scrape sees (a pointer swap; no copy, no encoding).
    pub fn submit(&self, snap: Arc<Snapshot>) {
        // A poisoned lock only means a scrape panicked mid-read; the value is whole.
        let mut latest = self
            .shared
            .0
            .latest
            .write()
            .unwrap_or_else(|e| e.into_inner());
        *latest = snap;
    }

    pub fn shutdown(mut self) {
        self.stop_thread();
    }

    fn stop_thread(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for PrometheusExporter {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

fn bind(host: &str, port: u16) -> Result<TcpListener, PrometheusError> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|source| PrometheusError::Resolve {
            host: host.to_owned(),
            source,
        })?
        .collect();
    let mut last = None;
    for a in &addrs {
        match TcpListener::bind(a) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(PrometheusError::Bind {
        addr: format!("{host}:{port}"),
        source: last.unwrap_or_else(|| std::io::Error::other("the host resolved to no address")),
    })
}

fn serve(
    listener: TcpListener,
    shared: Arc<SharedDebug>,
    stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("the Prometheus endpoint cannot start its runtime: {e}");
            return;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("the Prometheus endpoint cannot use its socket: {e}");
                return;
            }
        };
        let app = axum::Router::new()
            .route("/metrics", get(metrics))
            .route("/", get(index))
            .with_state(shared);
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
        if let Err(e) = result {
            tracing::error!("the Prometheus endpoint stopped: {e}");
        }
    });
}

async fn index() -> &'static str {
    "Sonde: metrics at /metrics\n"
}

async fn metrics(State(shared): State<Arc<SharedDebug>>, headers: HeaderMap) -> Response {
    let shared = &shared.0;
    let snap = shared
        .latest
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let format = Format::negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let body = encode::encode(&snap, &shared.target, format);
    let gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(accepts_gzip);
    let mut response = if gzip {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        match enc.write_all(body.as_bytes()).and_then(|()| enc.finish()) {
            Ok(bytes) => {
                let mut r = bytes.into_response();
                r.headers_mut()
                    .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                r
            }
            Err(_) => body.into_response(),
        }
    } else {
        body.into_response()
    };
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    *response.status_mut() = StatusCode::OK;
    response
}

fn accepts_gzip(v: &str) -> bool {
    v.split(',').any(|part| {
        let mut it = part.split(';').map(str::trim);
        let coding = it.next().unwrap_or("");
        let q_zero = it.any(|p| p.replace(' ', "") == "q=0");
        coding.eq_ignore_ascii_case("gzip") && !q_zero
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{numbers, Attributes, Number};
    use sonde_semconv::metric;
    use std::io::{Read, Write};
    use std::time::Duration;

    fn get(addr: SocketAddr, extra: &str) -> String {
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n"
        )
        .expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        out
    }

    fn snap(n: i64) -> Arc<Snapshot> {
        Arc::new(Snapshot {
            time_unix_nano: 1,
            metrics: vec![numbers(
                metric::SYSTEM_PROCESS_CREATED,
                0,
                [(Attributes::new(), Number::Int(n))],
            )],
        })
    }

    fn start() -> PrometheusExporter {
        PrometheusExporter::start(
            &PrometheusConfig {
                host: "127.0.0.1".into(),
                port: 0,
            },
            Target {
                resource: vec![("service.name".into(), "sonde".into())],
                scope_name: "sonde".into(),
                scope_version: "1".into(),
            },
        )
        .expect("start")
    }

    #[test]
    fn serves_the_latest_snapshot_while_the_agent_runtime_is_blocked() {
        let exporter = start();
        let addr = exporter.local_addr();
        let before = get(addr, "");
        assert!(before.starts_with("HTTP/1.1 200"), "{before}");
        assert!(before.contains("target_info{service_name=\"sonde\"} 1"));
        assert!(!before.contains("system_process_created"));

        // The agent's runtime with its only worker stuck in a long collection: the
        // endpoint must still answer (it has a thread of its own).
        let agent = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .expect("runtime");
        let (tx, rx) = std::sync::mpsc::channel();
        agent.spawn(async move {
            let _ = tx.send(());
            std::thread::sleep(Duration::from_secs(3));
        });
        rx.recv().expect("agent task started");
        exporter.submit(snap(41));
        exporter.submit(snap(42));
        let during = get(addr, "Accept: text/plain\r\n");
        assert!(
            during.contains("content-type: text/plain; version=0.0.4"),
            "{during}"
        );
        assert!(
            during.contains("system_process_created_total{otel_scope_name=\"sonde\",otel_scope_version=\"1\"} 42\n"),
            "{during}"
        );
        let om = get(
            addr,
            "Accept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n",
        );
        assert!(om.contains("application/openmetrics-text"), "{om}");
        assert!(om.trim_end().ends_with("# EOF"), "{om}");
        drop(agent);
        exporter.shutdown();
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "nothing listens after shutdown"
        );
    }

    #[test]
    fn gzip_when_asked() {
        let exporter = start();
        exporter.submit(snap(5));
        let mut s = std::net::TcpStream::connect(exporter.local_addr()).expect("connect");
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n"
        )
        .expect("write");
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).expect("read");
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("headers end");
        let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
        assert!(head.contains("content-encoding: gzip"), "{head}");
        let body_raw = &raw[split + 4..];
        // The body may be chunked; find the gzip magic and decode from there.
        let start = body_raw
            .windows(2)
            .position(|w| w == [0x1f, 0x8b])
            .expect("gzip magic");
        let mut text = String::new();
        let _ = flate2::read::GzDecoder::new(&body_raw[start..]).read_to_string(&mut text);
        assert!(text.contains("system_process_created_total"), "{text}");
        assert!(accepts_gzip("deflate, gzip;q=1.0"));
        assert!(!accepts_gzip("gzip;q=0"));
        assert!(!accepts_gzip("identity"));
    }

    #[test]
    fn a_port_in_use_is_an_error_that_says_what_to_do() {
        let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = taken.local_addr().expect("addr").port();
        let err = PrometheusExporter::start(
            &PrometheusConfig {
                host: "127.0.0.1".into(),
                port,
            },
            Target::default(),
        )
        .expect_err("port in use");
        assert!(
            err.to_string().contains("OTEL_EXPORTER_PROMETHEUS_PORT"),
            "{err}"
        );
    }
}
