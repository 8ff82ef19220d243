//! Sending one request over gRPC or HTTP/protobuf, and classifying failures as the
//! OTLP exporter spec does (retryable or not).

use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::{
    metrics_service_client::MetricsServiceClient, ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    trace_service_client::TraceServiceClient, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::bytes::Bytes;
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use super::retry;
use crate::config::{Compression, OtlpConfig, Protocol};

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("exporters.otlp.endpoint `{endpoint}` cannot be used for gRPC: {source}")]
    Endpoint {
        endpoint: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("exporters.otlp.headers: `{0}` cannot be sent as a gRPC header")]
    Header(String),
    #[error("cannot build the HTTP client: {0}")]
    Http(#[source] reqwest::Error),
}

/// What the collector said to a request it answered with success.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accepted {
    /// Data points it rejected (partial success); never retried.
    pub rejected: u64,
    /// Its explanation (`partial_success.error_message`), also sent with nothing rejected
    /// as a warning.
    pub message: Option<String>,
}

/// How a failed send is handled, as the OTLP spec classifies failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The collector may recover (unreachable, overloaded, throttling): keep the batch and
    /// retry after backoff, or after `hint`, the delay the server asked for.
    Retryable { hint: Option<Duration> },
    /// The collector refused this data for good (HTTP 400, gRPC INVALID_ARGUMENT,
    /// RESOURCE_EXHAUSTED without RetryInfo, ...): the spec says drop it.
    Rejected,
    /// No attempt can succeed as configured (TLS handshake, an unusable URL): retrying
    /// would hold the backlog forever, so the batch is dropped too.
    Permanent,
}

/// A failed send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendError {
    pub failure: Failure,
    pub message: String,
}

#[derive(Debug)]
pub enum Transport {
    Grpc {
        client: MetricsServiceClient<Channel>,
        /// The same connection, for the traces service.
        channel: Channel,
        gzip: bool,
        headers: MetadataMap,
    },
    Http {
        client: reqwest::Client,
        url: String,
        headers: reqwest::header::HeaderMap,
        gzip: bool,
    },
}

impl Transport {
    pub fn new(cfg: &OtlpConfig) -> Result<Self, TransportError> {
        match cfg.protocol {
            Protocol::Grpc => {
                let endpoint_err = |source| TransportError::Endpoint {
                    endpoint: cfg.endpoint.clone(),
                    source,
                };
                let mut endpoint = Endpoint::from_shared(cfg.endpoint.clone())
                    .map_err(endpoint_err)?
                    .timeout(cfg.timeout)
                    .connect_timeout(cfg.timeout);
                if cfg.endpoint.starts_with("https://") {
                    endpoint = endpoint
                        .tls_config(ClientTlsConfig::new().with_native_roots())
                        .map_err(endpoint_err)?;
                }
                let channel = endpoint.connect_lazy();
                let mut client = MetricsServiceClient::new(channel.clone());
                let gzip = cfg.compression == Compression::Gzip;
                if gzip {
                    client = client
                        .send_compressed(CompressionEncoding::Gzip)
                        .accept_compressed(CompressionEncoding::Gzip);
                }
                let mut headers = MetadataMap::new();
                for (k, v) in &cfg.headers {
                    let key = MetadataKey::from_bytes(k.as_bytes())
                        .map_err(|_| TransportError::Header(k.clone()))?;
                    let value = MetadataValue::try_from(v.as_str())
                        .map_err(|_| TransportError::Header(k.clone()))?;
                    headers.insert(key, value);
                }
                Ok(Transport::Grpc {
                    client,
                    channel,
                    gzip,
                    headers,
                })
            }
            Protocol::HttpProtobuf => {
                let mut headers = reqwest::header::HeaderMap::new();
                for (k, v) in &cfg.headers {
                    let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
                        .map_err(|_| TransportError::Header(k.clone()))?;
                    let value = reqwest::header::HeaderValue::from_str(v)
                        .map_err(|_| TransportError::Header(k.clone()))?;
                    headers.insert(name, value);
                }
                let client = reqwest::Client::builder()
                    .timeout(cfg.timeout)
                    .user_agent(concat!("sonde/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .map_err(TransportError::Http)?;
                Ok(Transport::Http {
                    client,
                    url: cfg.endpoint.clone(),
                    headers,
                    gzip: cfg.compression == Compression::Gzip,
                })
            }
        }
    }

    /// Sends one metrics request, encoded (`ExportMetricsServiceRequest`): the backlog
    /// holds requests encoded, a third of their size as structs. HTTP sends the bytes as
    /// they are; gRPC decodes them for tonic's client, one request at a time.
    pub async fn send(&mut self, req: &Bytes) -> Result<Accepted, SendError> {
        match self {
            Transport::Grpc {
                client, headers, ..
            } => {
                let decoded =
                    ExportMetricsServiceRequest::decode(req.as_ref()).map_err(|e| SendError {
                        failure: Failure::Permanent,
                        message: format!("the batch does not decode as an OTLP request: {e}"),
                    })?;
                let mut request = tonic::Request::new(decoded);
                *request.metadata_mut() = headers.clone();
                match client.export(request).await {
                    Ok(resp) => Ok(accepted(resp.into_inner())),
                    Err(status) => Err(grpc_failure(&status)),
                }
            }
            Transport::Http { .. } => {
                let resp: ExportMetricsServiceResponse = self.post(req.clone()).await?;
                Ok(accepted(resp))
            }
        }
    }

    /// Sends one traces request (same endpoint rules, retries and failure classes as
    /// metrics); `Accepted::rejected` counts spans.
    pub async fn send_traces(
        &mut self,
        req: &ExportTraceServiceRequest,
    ) -> Result<Accepted, SendError> {
        match self {
            Transport::Grpc {
                channel,
                gzip,
                headers,
                ..
            } => {
                let mut client = TraceServiceClient::new(channel.clone());
                if *gzip {
                    client = client
                        .send_compressed(CompressionEncoding::Gzip)
                        .accept_compressed(CompressionEncoding::Gzip);
                }
                let mut request = tonic::Request::new(req.clone());
                *request.metadata_mut() = headers.clone();
                match client.export(request).await {
                    Ok(resp) => Ok(accepted_spans(resp.into_inner())),
                    Err(status) => Err(grpc_failure(&status)),
                }
            }
            Transport::Http { .. } => {
                let resp: ExportTraceServiceResponse =
                    self.post(req.encode_to_vec().into()).await?;
                Ok(accepted_spans(resp))
            }
        }
    }

    /// HTTP/protobuf: POSTs `body` (an encoded request) and decodes the response body
    /// (an empty or undecodable success body reads as "everything accepted").
    async fn post<Resp: Message + Default>(&self, mut body: Bytes) -> Result<Resp, SendError> {
        let Transport::Http {
            client,
            url,
            headers,
            gzip,
        } = self
        else {
            return Ok(Resp::default());
        };
        let mut builder = client
            .post(url.as_str())
            .headers(headers.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf");
        if *gzip {
            body = gzip_bytes(&body).into();
            builder = builder.header(reqwest::header::CONTENT_ENCODING, "gzip");
        }
        let resp = builder.body(body).send().await.map_err(|e| {
            let tls = is_tls_error(&e);
            let failure = if e.is_builder() || tls {
                Failure::Permanent
            } else {
                // Connection refused, reset, timeout: the collector may come back.
                Failure::Retryable { hint: None }
            };
            let mut message = error_chain(&e);
            if tls {
                message = format!("TLS with {url} failed: {message}");
            }
            SendError { failure, message }
        })?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry::parse_retry_after(v, std::time::SystemTime::now()));
        let bytes = resp.bytes().await.unwrap_or_default();
        if status.is_success() {
            return Ok(Resp::decode(bytes.as_ref()).unwrap_or_default());
        }
        Err(SendError {
            failure: if http_retryable(status.as_u16()) {
                Failure::Retryable { hint: retry_after }
            } else {
                Failure::Rejected
            },
            message: format!("HTTP {status} from {url}: {}", http_status_message(&bytes)),
        })
    }
}

fn accepted_spans(resp: ExportTraceServiceResponse) -> Accepted {
    let Some(p) = resp.partial_success else {
        return Accepted::default();
    };
    Accepted {
        rejected: p.rejected_spans.max(0) as u64,
        message: Some(p.error_message).filter(|m| !m.trim().is_empty()),
    }
}

fn accepted(resp: ExportMetricsServiceResponse) -> Accepted {
    let Some(p) = resp.partial_success else {
        return Accepted::default();
    };
    Accepted {
        rejected: p.rejected_data_points.max(0) as u64,
        message: Some(p.error_message).filter(|m| !m.trim().is_empty()),
    }
}

/// The spec's body for a failed HTTP export is a protobuf `google.rpc.Status`; show its
/// message, or the start of the body as text when it is something else (a proxy's page).
fn http_status_message(body: &[u8]) -> String {
    match tonic_types::Status::decode(body) {
        Ok(s) if !s.message.is_empty() => s.message,
        _ => String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
    }
}

/// An error and its causes on one line: reqwest's and tonic's own text ("error sending
/// request", "transport error") hides what actually went wrong.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = s.source();
    }
    msg
}

/// The OTLP spec's gRPC failure table, with RESOURCE_EXHAUSTED retryable only when the
/// server sends RetryInfo (it can recover), and a TLS failure treated as permanent.
pub fn grpc_failure(status: &tonic::Status) -> SendError {
    use tonic_types::StatusExt;
    let retry_info = status.get_details_retry_info();
    let hint = retry_info.as_ref().and_then(|r| r.retry_delay);
    let tls = is_tls_error(status);
    let failure = if tls {
        Failure::Permanent
    } else {
        match grpc_retryable(status.code(), retry_info.is_some()) {
            true => Failure::Retryable { hint },
            false => Failure::Rejected,
        }
    };
    let mut message = format!(
        "gRPC {}: {}",
        grpc_code_name(status.code()),
        status.message()
    );
    if let Some(source) = std::error::Error::source(status) {
        let chain = error_chain(source);
        if !chain.contains(status.message()) || status.message().is_empty() {
            message = format!("{message}: {chain}");
        } else {
            message = format!("gRPC {}: {chain}", grpc_code_name(status.code()));
        }
    }
    if tls {
        message = format!("TLS with the collector failed: {message}");
    }
    SendError { failure, message }
}

/// True if a TLS failure is anywhere in the error's causes. rustls errors reach us inside
/// `io::Error`s, whose `source()` skips the wrapped error itself, so those are opened.
fn is_tls_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(err) = next {
        if err.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if is_tls_error(inner) {
                return true;
            }
        }
        next = err.source();
    }
    false
}

fn gzip_bytes(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

/// OTLP spec, "Failures": which gRPC codes may be retried. RESOURCE_EXHAUSTED only when
/// the server says it can recover by sending RetryInfo.
pub fn grpc_retryable(code: tonic::Code, has_retry_info: bool) -> bool {
    use tonic::Code::*;
    match code {
        Cancelled | DeadlineExceeded | Aborted | OutOfRange | Unavailable | DataLoss => true,
        ResourceExhausted => has_retry_info,
        _ => false,
    }
}

/// The spec's upper-case name of a gRPC code, for logs.
fn grpc_code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// OTLP spec, "Retryable Response Codes" for HTTP.
pub fn http_retryable(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_codes_follow_the_spec() {
        use tonic::Code::*;
        for code in [
            Cancelled,
            DeadlineExceeded,
            Aborted,
            OutOfRange,
            Unavailable,
            DataLoss,
        ] {
            assert!(grpc_retryable(code, false), "{code:?}");
        }
        for code in [
            Unknown,
            InvalidArgument,
            NotFound,
            AlreadyExists,
            PermissionDenied,
            Unauthenticated,
            FailedPrecondition,
            Unimplemented,
            Internal,
        ] {
            assert!(!grpc_retryable(code, true), "{code:?}");
        }
        assert!(!grpc_retryable(ResourceExhausted, false));
        assert!(grpc_retryable(ResourceExhausted, true));
        for s in [429, 502, 503, 504] {
            assert!(http_retryable(s), "{s}");
        }
        for s in [400, 401, 404, 413, 500] {
            assert!(!http_retryable(s), "{s}");
        }
    }

    #[test]
    fn grpc_failures_read_retry_info_and_its_delay() {
        use tonic_types::{ErrorDetails, StatusExt};
        let with_delay = |code, secs| {
            tonic::Status::with_error_details(
                code,
                "busy",
                ErrorDetails::with_retry_info(Some(Duration::from_secs(secs))),
            )
        };
        let cases = [
            (
                with_delay(tonic::Code::ResourceExhausted, 3),
                Failure::Retryable {
                    hint: Some(Duration::from_secs(3)),
                },
            ),
            (
                tonic::Status::resource_exhausted("quota"),
                Failure::Rejected,
            ),
            (
                with_delay(tonic::Code::Unavailable, 30),
                Failure::Retryable {
                    hint: Some(Duration::from_secs(30)),
                },
            ),
            (
                tonic::Status::unavailable("down"),
                Failure::Retryable { hint: None },
            ),
            (tonic::Status::invalid_argument("bad"), Failure::Rejected),
            // RetryInfo does not make a non-retryable code retryable.
            (
                with_delay(tonic::Code::InvalidArgument, 1),
                Failure::Rejected,
            ),
        ];
        for (status, want) in cases {
            let got = grpc_failure(&status);
            assert_eq!(got.failure, want, "{status:?}");
            assert!(got.message.starts_with("gRPC "), "{}", got.message);
        }
        assert!(grpc_failure(&tonic::Status::resource_exhausted("q"))
            .message
            .contains("RESOURCE_EXHAUSTED: q"));
    }

    #[test]
    fn a_tls_failure_is_found_inside_io_errors_and_is_permanent() {
        #[derive(Debug, thiserror::Error)]
        #[error("connect failed")]
        struct Outer(#[source] std::io::Error);
        let tls = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert!(is_tls_error(&Outer(tls)));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(!is_tls_error(&Outer(refused)));
        let status = tonic::Status::from_error(Box::new(Outer(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
        ))));
        assert_eq!(grpc_failure(&status).failure, Failure::Permanent);
    }

    #[test]
    fn an_http_failure_body_shows_the_status_message() {
        let body = tonic_types::Status {
            code: 3,
            message: "metric name is empty".into(),
            details: Vec::new(),
        }
        .encode_to_vec();
        assert_eq!(http_status_message(&body), "metric name is empty");
        assert_eq!(
            http_status_message(b"<html>bad gateway"),
            "<html>bad gateway"
        );
    }

    #[test]
    fn gzip_round_trips() {
        use std::io::Read;
        let data = b"sonde sonde sonde".repeat(10);
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(gzip_bytes(&data).as_slice())
            .read_to_end(&mut out)
            .expect("gunzip");
        assert_eq!(out, data);
    }
}
