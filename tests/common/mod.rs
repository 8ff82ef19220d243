//! End-to-end harness: real OTLP receivers (gRPC and HTTP/protobuf, decoding with the
//! official opentelemetry-proto definitions) on loopback sockets, the real `sonde`
//! binary as a child process, and queries over what arrived.
//!
//! Tests panic with context rather than return errors; every resource (child process,
//! server thread, temp dir) is released by an RAII guard.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the harness"
)]

use std::collections::{BTreeMap, VecDeque};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point, Metric};
use prost::Message;

pub mod cgroup;
pub mod dns;
pub mod netns;

/// Runs a system tool the test needs; panics with its stderr if it fails. Returns its
/// trimmed stdout.
pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} is needed for this test ({e}): apt-get install it"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test loads eBPF probes and must run as root: use the README's test command (sudo)"
    );
}

// ---- OTLP receivers -------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Grpc,
    Http,
}

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Export {
    pub req: ExportMetricsServiceRequest,
    /// Lower-cased header names.
    pub headers: BTreeMap<String, String>,
    pub at: Instant,
}

type Store = Arc<Mutex<Vec<Export>>>;

/// What a scripted collector answers to one request (`OtlpReceiver::start_scripted`).
#[derive(Debug, Clone)]
pub enum Reply {
    Ok,
    /// Success with `partial_success` set: `rejected` points refused, with a message.
    Partial {
        rejected: i64,
        message: &'static str,
    },
    /// HTTP only: this status, a `Retry-After` header when given, and a protobuf
    /// `google.rpc.Status` body carrying `message`, as the OTLP spec shapes failures.
    Http {
        status: u16,
        retry_after: Option<RetryAfter>,
        message: &'static str,
    },
    /// gRPC only: this code, with a `RetryInfo` detail carrying `retry_delay` when given.
    Grpc {
        code: tonic::Code,
        retry_delay: Option<Duration>,
        message: &'static str,
    },
}

/// A `Retry-After` header value, rendered when the reply is sent.
#[derive(Debug, Clone, Copy)]
pub enum RetryAfter {
    Seconds(u64),
    /// An HTTP date this far in the future.
    DateIn(Duration),
}

/// One request as a scripted collector saw it, whatever it answered.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub req: ExportMetricsServiceRequest,
    pub at: Instant,
    pub reply: Reply,
}

/// State shared by a receiver's server task and the test.
#[derive(Clone, Default)]
struct Shared {
    /// Requests it accepted (fully or partly).
    store: Store,
    /// Replies still to give, in order; once empty, every request succeeds.
    script: Arc<Mutex<VecDeque<Reply>>>,
    attempts: Arc<Mutex<Vec<Attempt>>>,
    /// Trace requests (always answered with success).
    traces: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
}

impl Shared {
    /// Takes the next scripted reply and records the request; accepted ones are stored.
    fn answer(&self, req: ExportMetricsServiceRequest, headers: BTreeMap<String, String>) -> Reply {
        let reply = self
            .script
            .lock()
            .expect("script")
            .pop_front()
            .unwrap_or(Reply::Ok);
        let at = Instant::now();
        self.attempts.lock().expect("attempts").push(Attempt {
            req: req.clone(),
            at,
            reply: reply.clone(),
        });
        if matches!(reply, Reply::Ok | Reply::Partial { .. }) {
            self.store
                .lock()
                .expect("store")
                .push(Export { req, headers, at });
        }
        reply
    }
}

fn success_response(reply: &Reply) -> ExportMetricsServiceResponse {
    ExportMetricsServiceResponse {
        partial_success: match reply {
            Reply::Partial { rejected, message } => Some(ExportMetricsPartialSuccess {
                rejected_data_points: *rejected,
                error_message: (*message).to_owned(),
            }),
            _ => None,
        },
    }
}

pub struct OtlpReceiver {
    pub port: u16,
    pub proto: Proto,
    shared: Shared,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// A loopback port that was free a moment ago (for a receiver that starts later).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

struct GrpcSvc(Shared);

#[tonic::async_trait]
impl MetricsService for GrpcSvc {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let headers = request
            .metadata()
            .clone()
            .into_headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        match self.0.answer(request.into_inner(), headers) {
            Reply::Grpc {
                code,
                retry_delay: Some(delay),
                message,
            } => {
                use tonic_types::{ErrorDetails, StatusExt};
                Err(tonic::Status::with_error_details(
                    code,
                    message,
                    ErrorDetails::with_retry_info(Some(delay)),
                ))
            }
            Reply::Grpc {
                code,
                retry_delay: None,
                message,
            } => Err(tonic::Status::new(code, message)),
            Reply::Http { .. } => panic!("an HTTP reply scripted for a gRPC receiver"),
            ok => Ok(tonic::Response::new(success_response(&ok))),
        }
    }
}

#[tonic::async_trait]
impl TraceService for GrpcSvc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0
            .traces
            .lock()
            .expect("traces")
            .push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

async fn http_traces(
    axum::extract::State(shared): axum::extract::State<Shared>,
    body: axum::body::Bytes,
) -> (axum::http::StatusCode, Vec<u8>) {
    match ExportTraceServiceRequest::decode(body.as_ref()) {
        Ok(req) => {
            shared.traces.lock().expect("traces").push(req);
            (
                axum::http::StatusCode::OK,
                ExportTraceServiceResponse::default().encode_to_vec(),
            )
        }
        Err(_) => (axum::http::StatusCode::BAD_REQUEST, Vec::new()),
    }
}

async fn http_export(
    axum::extract::State(shared): axum::extract::State<Shared>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> (axum::http::StatusCode, axum::http::HeaderMap, Vec<u8>) {
    use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
    let mut bytes = body.to_vec();
    if headers
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes() == b"gzip")
    {
        let mut out = Vec::new();
        if flate2::read::GzDecoder::new(bytes.as_slice())
            .read_to_end(&mut out)
            .is_err()
        {
            return (StatusCode::BAD_REQUEST, HeaderMap::new(), Vec::new());
        }
        bytes = out;
    }
    let Ok(req) = ExportMetricsServiceRequest::decode(bytes.as_slice()) else {
        return (StatusCode::BAD_REQUEST, HeaderMap::new(), Vec::new());
    };
    let headers = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let mut out = HeaderMap::new();
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-protobuf"),
    );
    match shared.answer(req, headers) {
        Reply::Http {
            status,
            retry_after,
            message,
        } => {
            if let Some(ra) = retry_after {
                let value = match ra {
                    RetryAfter::Seconds(s) => s.to_string(),
                    RetryAfter::DateIn(d) => {
                        httpdate::fmt_http_date(std::time::SystemTime::now() + d)
                    }
                };
                out.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_str(&value).expect("header value"),
                );
            }
            let body = tonic_types::Status {
                code: 0,
                message: message.to_owned(),
                details: Vec::new(),
            };
            (
                StatusCode::from_u16(status).expect("status code"),
                out,
                body.encode_to_vec(),
            )
        }
        Reply::Grpc { .. } => panic!("a gRPC reply scripted for an HTTP receiver"),
        ok => (StatusCode::OK, out, success_response(&ok).encode_to_vec()),
    }
}

impl OtlpReceiver {
    pub fn start(proto: Proto) -> Self {
        Self::start_on(proto, 0)
    }

    /// Starts on a given loopback port (0: any).
    pub fn start_on(proto: Proto, port: u16) -> Self {
        Self::start_with(proto, port, Vec::new())
    }

    /// A collector stub that answers requests with `replies` in order, then with success.
    pub fn start_scripted(proto: Proto, replies: Vec<Reply>) -> Self {
        Self::start_with(proto, 0, replies)
    }

    fn start_with(proto: Proto, port: u16, replies: Vec<Reply>) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind receiver port");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let shared = Shared::default();
        shared.script.lock().expect("script").extend(replies);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let s = shared.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                let shutdown = async {
                    let _ = stopped.await;
                };
                match proto {
                    Proto::Grpc => {
                        let svc = MetricsServiceServer::new(GrpcSvc(s.clone()))
                            .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
                        let traces = TraceServiceServer::new(GrpcSvc(s.clone()))
                            .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
                        tonic::transport::Server::builder()
                            .add_service(svc)
                            .add_service(traces)
                            .serve_with_incoming_shutdown(
                                tokio_stream::wrappers::TcpListenerStream::new(listener),
                                shutdown,
                            )
                            .await
                            .expect("gRPC receiver");
                    }
                    Proto::Http => {
                        let app = axum::Router::new()
                            .route("/v1/metrics", axum::routing::post(http_export))
                            .route("/v1/traces", axum::routing::post(http_traces))
                            .with_state(s);
                        axum::serve(listener, app)
                            .with_graceful_shutdown(shutdown)
                            .await
                            .expect("HTTP receiver");
                    }
                }
            });
        });
        Self {
            port,
            proto,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// OTEL_* variables pointing Sonde here.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{}", self.port),
            ),
            (
                "OTEL_EXPORTER_OTLP_PROTOCOL",
                match self.proto {
                    Proto::Grpc => "grpc".into(),
                    Proto::Http => "http/protobuf".into(),
                },
            ),
        ]
    }

    /// Every span received, in arrival order.
    pub fn spans(&self) -> Vec<opentelemetry_proto::tonic::trace::v1::Span> {
        self.shared
            .traces
            .lock()
            .expect("traces")
            .iter()
            .flat_map(|r| &r.resource_spans)
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| s.spans.clone())
            .collect()
    }

    /// Every trace export request received, in arrival order.
    pub fn trace_requests(
        &self,
    ) -> Vec<opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest> {
        self.shared.traces.lock().expect("traces").clone()
    }

    pub fn exports(&self) -> Vec<Export> {
        self.shared.store.lock().expect("store").clone()
    }

    /// Every request received, answered with success or not, oldest first.
    pub fn attempts(&self) -> Vec<Attempt> {
        self.shared.attempts.lock().expect("attempts").clone()
    }

    /// Waits until `pred` holds over every request received; panics with `what` on timeout.
    pub fn wait_for_attempts(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&[Attempt]) -> bool,
    ) -> Vec<Attempt> {
        poll_until(what, "requests", timeout, || self.attempts(), pred)
    }

    /// Waits until `pred` holds over everything received; panics with `what` on timeout.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&[Export]) -> bool,
    ) -> Vec<Export> {
        poll_until(what, "exports", timeout, || self.exports(), pred)
    }

    /// Like `wait_for`, but `check` says what is still missing, and the timeout's panic
    /// shows the last answer: a wait that fails under load then says which count fell short.
    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&[Export]) -> Result<(), String>,
    ) -> Vec<Export> {
        poll_checked(what, "exports", timeout, || self.exports(), check)
    }

    pub fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Reads `get()` every 50 ms until `pred` holds over it; panics with `what` on timeout.
fn poll_until<T>(
    what: &str,
    items: &str,
    timeout: Duration,
    get: impl Fn() -> Vec<T>,
    pred: impl Fn(&[T]) -> bool,
) -> Vec<T> {
    poll_checked(what, items, timeout, get, |got| {
        if pred(got) {
            Ok(())
        } else {
            Err(String::new())
        }
    })
}

/// Polls `get` until `check` passes; the timeout's panic shows what `check` last said
/// was missing (if anything).
fn poll_checked<T>(
    what: &str,
    items: &str,
    timeout: Duration,
    get: impl Fn() -> Vec<T>,
    check: impl Fn(&[T]) -> Result<(), String>,
) -> Vec<T> {
    let deadline = Instant::now() + timeout;
    loop {
        let got = get();
        let Err(missing) = check(&got) else {
            return got;
        };
        let missing = if missing.is_empty() {
            String::new()
        } else {
            format!("; still missing: {missing}")
        };
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what} ({} {items} received){missing}",
            got.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A loopback server that answers whatever it is sent with a plain-text HTTP response:
/// a TLS client's handshake fails on it for good (the reply is not a TLS record).
pub struct NotTlsServer {
    pub port: u16,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl NotTlsServer {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (connections.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        c.fetch_add(1, Ordering::Relaxed);
                        let _ = conn.set_nonblocking(false);
                        let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
                        let mut buf = [0u8; 1024];
                        let _ = conn.read(&mut buf);
                        let _ = conn.write_all(
                            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        );
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Self {
            port,
            connections,
            stop,
            thread: Some(thread),
        }
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

impl Drop for NotTlsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The time of the snapshot a request carries (every point of one snapshot has it).
pub fn snapshot_time(req: &ExportMetricsServiceRequest) -> u64 {
    req.resource_metrics
        .iter()
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
        .filter_map(|m| match &m.data {
            Some(Data::Sum(s)) => s.data_points.first().map(|p| p.time_unix_nano),
            Some(Data::Gauge(g)) => g.data_points.first().map(|p| p.time_unix_nano),
            Some(Data::Histogram(h)) => h.data_points.first().map(|p| p.time_unix_nano),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

/// Data points a request carries, as the exporter counts them.
pub fn point_count(req: &ExportMetricsServiceRequest) -> u64 {
    req.resource_metrics
        .iter()
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
        .map(|m| match &m.data {
            Some(Data::Sum(s)) => s.data_points.len(),
            Some(Data::Gauge(g)) => g.data_points.len(),
            Some(Data::Histogram(h)) => h.data_points.len(),
            Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
            Some(Data::Summary(s)) => s.data_points.len(),
            None => 0,
        } as u64)
        .sum()
}

// ---- queries over received exports --------------------------------------------------

/// One number point, flattened.
#[derive(Debug, Clone, PartialEq)]
pub struct NumPoint {
    pub attrs: BTreeMap<String, String>,
    pub value: f64,
    pub start: u64,
    pub time: u64,
}

pub fn any_to_string(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

pub fn metrics<'a>(exports: &'a [Export], name: &'a str) -> impl Iterator<Item = &'a Metric> + 'a {
    exports
        .iter()
        .flat_map(|e| &e.req.resource_metrics)
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
        .filter(move |m| m.name == name)
}

/// Every number point of `name` (sums and gauges) across all exports, oldest first.
pub fn num_points(exports: &[Export], name: &str) -> Vec<NumPoint> {
    let mut out: Vec<NumPoint> = metrics(exports, name)
        .flat_map(|m| match &m.data {
            Some(Data::Sum(s)) => s.data_points.clone(),
            Some(Data::Gauge(g)) => g.data_points.clone(),
            _ => Vec::new(),
        })
        .map(|p| NumPoint {
            attrs: p
                .attributes
                .iter()
                .map(|kv| (kv.key.clone(), any_to_string(&kv.value)))
                .collect(),
            value: match p.value {
                Some(number_data_point::Value::AsInt(i)) => i as f64,
                Some(number_data_point::Value::AsDouble(d)) => d,
                None => f64::NAN,
            },
            start: p.start_time_unix_nano,
            time: p.time_unix_nano,
        })
        .collect();
    out.sort_by_key(|p| p.time);
    out
}

fn matches(p: &NumPoint, filter: &[(&str, &str)]) -> bool {
    filter
        .iter()
        .all(|(k, v)| p.attrs.get(*k).map(String::as_str) == Some(*v))
}

/// The newest value of a cumulative series (the sum over series matching `filter`).
pub fn latest(exports: &[Export], name: &str, filter: &[(&str, &str)]) -> Option<f64> {
    let pts: Vec<NumPoint> = num_points(exports, name)
        .into_iter()
        .filter(|p| matches(p, filter))
        .collect();
    let t = pts.iter().map(|p| p.time).max()?;
    Some(pts.iter().filter(|p| p.time == t).map(|p| p.value).sum())
}

/// The sum of every point of a delta series matching `filter`.
pub fn delta_total(exports: &[Export], name: &str, filter: &[(&str, &str)]) -> f64 {
    num_points(exports, name)
        .into_iter()
        .filter(|p| matches(p, filter))
        .map(|p| p.value)
        .sum()
}

pub fn resource(export: &Export) -> BTreeMap<String, String> {
    export
        .req
        .resource_metrics
        .iter()
        .filter_map(|rm| rm.resource.as_ref())
        .flat_map(|r| &r.attributes)
        .map(|kv| (kv.key.clone(), any_to_string(&kv.value)))
        .collect()
}

// ---- the sonde binary ---------------------------------------------------------------------

/// Unique across the tests of this process (which run in parallel threads) and across
/// processes: pid plus a counter.
pub fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{:x}{:x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A copy of `src` under a unique name (so a test counts only its own execs), executable.
pub fn unique_exe(dir: &Path, prefix: &str, src: &str) -> (PathBuf, String) {
    // comm holds 15 bytes: keep names short (prefix + pid and counter in hex).
    let name = format!("{prefix}{}", unique_suffix());
    assert!(name.len() <= 15, "{name} would be truncated in comm");
    let path = dir.join(&name);
    // Copied by a child process: a descriptor open for writing in this multi-threaded test
    // process would be inherited by any child another test thread forks meanwhile, and
    // exec'ing the copy fails with ETXTBSY until that child has exec'd in turn.
    let copied = Command::new("cp")
        .arg(src)
        .arg(&path)
        .status()
        .unwrap_or_else(|e| panic!("cp {src}: {e}"));
    assert!(copied.success(), "cp {src} {}: {copied}", path.display());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    (path, name)
}

pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("sonde-test-{tag}-{}", unique_suffix()));
        std::fs::create_dir_all(&p).expect("create temp dir");
        Self(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `sonde run`, killed on drop.
pub struct Sonde {
    pub child: Child,
    dir: TempDir,
}

impl Sonde {
    /// Starts `sonde run` with only the given OTEL_* variables (inherited ones are
    /// removed) and, if given, a config file.
    pub fn start(env: &[(&str, String)], config_yaml: Option<&str>) -> Self {
        Self::start_wrapped(&[], env, config_yaml)
    }

    /// As [`Sonde::start`], run through `wrapper` (e.g. `setpriv` with its options).
    pub fn start_wrapped(
        wrapper: &[&str],
        env: &[(&str, String)],
        config_yaml: Option<&str>,
    ) -> Self {
        let dir = TempDir::new("sonde");
        let mut cmd = match wrapper.split_first() {
            Some((tool, args)) => {
                let mut c = Command::new(tool);
                c.args(args).arg(env!("CARGO_BIN_EXE_sonde"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_sonde")),
        };
        cmd.arg("run");
        if let Some(yaml) = config_yaml {
            let path = dir.path().join("sonde.yaml");
            std::fs::write(&path, yaml).expect("write config");
            cmd.arg("--config").arg(path);
        }
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("OTEL_")) {
            cmd.env_remove(k);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let stderr = std::fs::File::create(dir.path().join("stderr")).expect("stderr file");
        cmd.env("SONDE_LOG", "sonde=debug,warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let child = cmd.spawn().expect("spawn sonde");
        Self { child, dir }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    /// Waits for a line in Sonde's log; panics with the log on timeout or early exit.
    pub fn wait_log(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.stderr().contains(needle) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "sonde exited ({status}) before logging `{needle}`:\n{}",
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "sonde did not log `{needle}` within {timeout:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until all probes are attached and the agent runs.
    pub fn wait_started(&mut self) {
        self.wait_log("started", Duration::from_secs(30));
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill has no memory-safety preconditions; the pid is our own child.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "sonde did not exit within {timeout:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kernel object ids (`prog_id`, `map_id`, `link_id`) held through the child's fds.
    pub fn bpf_ids(&self) -> BpfIds {
        bpf_ids_of(self.pid())
    }
}

/// Kernel object ids (`prog_id`, `map_id`, `link_id`) held through a process's fds.
pub fn bpf_ids_of(pid: i32) -> BpfIds {
    let mut ids = BpfIds::default();
    let dir = format!("/proc/{pid}/fdinfo");
    for entry in std::fs::read_dir(&dir).expect("read fdinfo").flatten() {
        let Ok(info) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        for line in info.lines() {
            let parse = |prefix: &str, into: &mut Vec<u64>| {
                if let Some(v) = line.strip_prefix(prefix) {
                    if let Ok(id) = v.trim().parse() {
                        into.push(id);
                    }
                }
            };
            parse("prog_id:", &mut ids.progs);
            parse("map_id:", &mut ids.maps);
            parse("link_id:", &mut ids.links);
        }
    }
    for v in [&mut ids.progs, &mut ids.maps, &mut ids.links] {
        v.sort_unstable();
        v.dedup();
    }
    ids
}

impl Drop for Sonde {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BpfIds {
    pub progs: Vec<u64>,
    pub maps: Vec<u64>,
    pub links: Vec<u64>,
}

/// Ids of one kind of kernel object (`prog`, `map`, `link`) that `bpftool` lists now.
pub fn bpftool_ids(kind: &str) -> Vec<u64> {
    let out = Command::new("bpftool")
        .args(["-j", kind, "show"])
        .output()
        .expect("bpftool is needed: apt-get install bpftool");
    assert!(out.status.success(), "bpftool {kind} show failed");
    let list: Vec<serde_json::Value> =
        serde_json::from_slice(&out.stdout).expect("bpftool -j prints a JSON array");
    list.iter().filter_map(|o| o["id"].as_u64()).collect()
}

/// The process family loaded and attached in-process, with its collector started on a
/// current-thread runtime of its own (keep all three alive for the test). Series are
/// kept forever (ttl 0) up to `limit`.
pub fn process_family(
    limit: usize,
) -> (
    tokio::runtime::Runtime,
    sonde::probe::LoadedFamily,
    sonde::family::process::collect::ProcessCollector,
) {
    require_root();
    sonde::probe::tracefs::ensure_mounted().expect("tracefs");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let guard = rt.enter();
    let mut loaded = sonde::probe::load_family(
        sonde_probes::Family::Process,
        sonde::family::process::probe::PROGRAMS,
        true,
    )
    .expect("loading the process family");
    let collector = sonde::family::process::collect::ProcessCollector::start(
        &mut loaded,
        sonde::aggregate::bounded::SeriesPolicy {
            limit,
            ttl: Duration::ZERO,
            start_unix_nano: sonde::unix_nanos(),
        },
    )
    .expect("process collector");
    drop(guard);
    (rt, loaded, collector)
}

/// A plain HTTP/1.0 GET (the endpoint and Prometheus's API both speak it); returns the
/// status and the body.
pub fn http_get(addr: SocketAddr, path: &str, accept: Option<&str>) -> (u16, String) {
    let mut s =
        std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{accept}\r\n").expect("send request");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read response");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, body.to_owned())
}

/// Where a starting `sonde` with the Prometheus exporter on port 0 serves (read back from
/// its log), once it has started.
pub fn prometheus_addr(sonde: &mut Sonde) -> SocketAddr {
    let needle = "serving Prometheus metrics on http://";
    sonde.wait_log(needle, Duration::from_secs(30));
    sonde.wait_started();
    let log = sonde.stderr();
    let at = log.find(needle).expect("logged") + needle.len();
    log[at..]
        .split('/')
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in the log:\n{log}"))
}

/// Resident memory of a process, from /proc/<pid>/status.
pub fn rss_kib(pid: i32) -> u64 {
    status_kib(pid, "VmRSS")
}

/// The most a process has had resident so far (VmHWM).
pub fn peak_rss_kib(pid: i32) -> u64 {
    status_kib(pid, "VmHWM")
}

fn status_kib(pid: i32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}
