//! Spans -> `ExportTraceServiceRequest`, a pure function.
//!
//! Spans go to the same collector as metrics, with the same resource, so a trace and the
//! histogram bucket that points at it (an exemplar) name the same host and agent.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    self as proto, span, status, ResourceSpans, ScopeSpans,
};
use sonde_semconv::SCHEMA_URL;

use super::encode::attributes;
use crate::spans::{Span, SpanKind, Status};

pub fn encode(resource: &Resource, spans: &[Span]) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource.clone()),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "sonde".to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    attributes: Vec::new(),
                    dropped_attributes_count: 0,
                }),
                spans: spans.iter().map(span).collect(),
                schema_url: SCHEMA_URL.to_owned(),
            }],
            schema_url: SCHEMA_URL.to_owned(),
        }],
    }
}

fn span(s: &Span) -> proto::Span {
    let (code, message) = match &s.status {
        Status::Unset => (status::StatusCode::Unset, String::new()),
        Status::Error { description } => (status::StatusCode::Error, description.clone()),
    };
    proto::Span {
        trace_id: s.context.trace_id.to_vec(),
        span_id: s.context.span_id.to_vec(),
        trace_state: String::new(),
        parent_span_id: Vec::new(),
        // W3C "sampled": every span Sonde exports was chosen on purpose.
        flags: 0x01 | SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK,
        name: s.name.clone(),
        kind: match s.kind {
            SpanKind::Client => span::SpanKind::Client,
            SpanKind::Server => span::SpanKind::Server,
            SpanKind::Internal => span::SpanKind::Internal,
        } as i32,
        start_time_unix_nano: s.start_unix_nano,
        end_time_unix_nano: s.end_unix_nano.max(s.start_unix_nano),
        attributes: attributes(&s.attributes),
        dropped_attributes_count: 0,
        events: Vec::new(),
        dropped_events_count: 0,
        links: Vec::new(),
        dropped_links_count: 0,
        status: Some(proto::Status {
            message,
            code: code as i32,
        }),
    }
}

/// OTLP `SpanFlags`: bit 8 says whether the parent is remote is known (a root span has
/// no parent, so "not remote" is known).
const SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK: u32 = 0x100;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Attributes;
    use crate::spans::SpanContext;

    #[test]
    fn spans_keep_times_ids_kind_and_status() {
        let ctx = SpanContext {
            trace_id: [7; 16],
            span_id: [9; 8],
        };
        let spans = [
            Span {
                context: ctx,
                name: "DNS A".into(),
                kind: SpanKind::Client,
                start_unix_nano: 100,
                end_unix_nano: 250,
                attributes: Attributes::new().with("dns.question.name", "example.test"),
                status: Status::Error {
                    description: "nxdomain".into(),
                },
            },
            Span {
                context: ctx,
                name: "process".into(),
                kind: SpanKind::Internal,
                start_unix_nano: 10,
                end_unix_nano: 5,
                attributes: Attributes::new(),
                status: Status::Unset,
            },
        ];
        let req = encode(&Resource::default(), &spans);
        let ss = &req.resource_spans[0].scope_spans[0];
        assert_eq!(ss.scope.as_ref().map(|s| s.name.as_str()), Some("sonde"));
        let a = &ss.spans[0];
        assert_eq!((a.trace_id.len(), a.span_id.len()), (16, 8));
        assert_eq!(a.kind, span::SpanKind::Client as i32);
        assert_eq!((a.start_time_unix_nano, a.end_time_unix_nano), (100, 250));
        let st = a.status.as_ref().expect("status");
        assert_eq!(
            (st.code, st.message.as_str()),
            (status::StatusCode::Error as i32, "nxdomain")
        );
        assert_eq!(a.attributes[0].key, "dns.question.name");
        assert!(a.parent_span_id.is_empty());
        let b = &ss.spans[1];
        assert_eq!(b.end_time_unix_nano, 10, "end never before start");
        assert_eq!(
            b.status.as_ref().map(|s| s.code),
            Some(status::StatusCode::Unset as i32)
        );
    }
}
