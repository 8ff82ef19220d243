//! Sending one request over gRPC or HTTP/protobuf, and classifying failures as the
//! OTLP exporter spec does (retryable or not).

use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::{
    metrics_service_client::MetricsServiceClient, ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
};
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

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

/// A failed send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendError {
    pub retryable: bool,
    pub message: String,
    /// The server's hint (HTTP Retry-After), if any.
    pub retry_after: Option<Duration>,
}

#[derive(Debug)]
pub enum Transport {
    Grpc {
        client: MetricsServiceClient<Channel>,
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
                let mut client = MetricsServiceClient::new(endpoint.connect_lazy());
                if cfg.compression == Compression::Gzip {
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
                Ok(Transport::Grpc { client, headers })
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

    /// Sends one request; on success returns the points the server rejected
    /// (partial success), which are not retried.
    pub async fn send(&mut self, req: &ExportMetricsServiceRequest) -> Result<u64, SendError> {
        match self {
            Transport::Grpc { client, headers } => {
                let mut request = tonic::Request::new(req.clone());
                *request.metadata_mut() = headers.clone();
                match client.export(request).await {
                    Ok(resp) => Ok(rejected(&resp.into_inner())),
                    Err(status) => Err(SendError {
                        retryable: grpc_retryable(status.code()),
                        message: format!("gRPC {:?}: {}", status.code(), status.message()),
                        retry_after: None,
                    }),
                }
            }
            Transport::Http {
                client,
                url,
                headers,
                gzip,
            } => {
                let mut body = req.encode_to_vec();
                let mut builder = client
                    .post(url.as_str())
                    .headers(headers.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf");
                if *gzip {
                    body = gzip_bytes(&body);
                    builder = builder.header(reqwest::header::CONTENT_ENCODING, "gzip");
                }
                let resp = builder.body(body).send().await.map_err(|e| SendError {
                    // Connection refused, reset, timeout: the collector may come back.
                    retryable: true,
                    message: format!("HTTP request to {url} failed: {e}"),
                    retry_after: None,
                })?;
                let status = resp.status();
                let retry_after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let bytes = resp.bytes().await.unwrap_or_default();
                if status.is_success() {
                    let parsed =
                        ExportMetricsServiceResponse::decode(bytes.as_ref()).unwrap_or_default();
                    return Ok(rejected(&parsed));
                }
                Err(SendError {
                    retryable: http_retryable(status.as_u16()),
                    message: format!(
                        "HTTP {status} from {url}: {}",
                        String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                    ),
                    retry_after,
                })
            }
        }
    }
}

fn rejected(resp: &ExportMetricsServiceResponse) -> u64 {
    resp.partial_success
        .as_ref()
        .map(|p| p.rejected_data_points.max(0) as u64)
        .unwrap_or(0)
}

fn gzip_bytes(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

/// OTLP spec, "Failures": which gRPC codes may be retried.
pub fn grpc_retryable(code: tonic::Code) -> bool {
    use tonic::Code::*;
    matches!(
        code,
        Cancelled | DeadlineExceeded | Aborted | OutOfRange | Unavailable | DataLoss
            // Spec: retryable when the server says recovery is possible; a loaded
            // collector is the common cause, and backoff protects it.
            | ResourceExhausted
    )
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
        assert!(grpc_retryable(tonic::Code::Unavailable));
        assert!(!grpc_retryable(tonic::Code::InvalidArgument));
        assert!(!grpc_retryable(tonic::Code::Unauthenticated));
        for s in [429, 502, 503, 504] {
            assert!(http_retryable(s), "{s}");
        }
        for s in [400, 401, 404, 413, 500] {
            assert!(!http_retryable(s), "{s}");
        }
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
