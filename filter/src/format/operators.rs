//! Every command operator Envoy 1.40's header formatter accepts, and what
//! this filter does with each: the one list that parsing, the error
//! messages and the README's formatter table come from.
//!
//! The list was taken from Envoy 1.40 itself: every upper-case string in the
//! binary was tried as `%NAME%` in a route's `request_headers_to_add` under
//! `envoy --mode validate`; the 162 that Envoy did not answer "Not supported
//! field in StreamInfo" are here.

/// What the filter does with an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Rendered on both sides from the attribute(s) named.
    Both(&'static str),
    /// Rendered on the response side only; on the request side Envoy never
    /// has a value, so the filter refuses it there.
    Response(&'static str),
    /// Refused at configure time, for the reason given.
    Refused(&'static str),
}

pub struct Operator {
    pub name: &'static str,
    pub support: Support,
}

const fn op(name: &'static str, support: Support) -> Operator {
    Operator { name, support }
}

use Support::{Both, Refused, Response};

const NO_ATTRIBUTE: &str = "no proxy-wasm attribute carries it";
const TIMING: &str = "a duration or byte count: no attribute has it while headers pass";
const TLS_NO_ATTRIBUTE: &str = "no proxy-wasm attribute carries this TLS field";
const UPSTREAM_TLS: &str = "upstream TLS fields are not exposed by this filter";
const LOCAL_TIME: &str = "the VM does not know Envoy's local time zone";

/// Sorted by name.
pub const OPERATORS: &[Operator] = &[
    op("ACCESS_LOG_TYPE", Refused("access logs only")),
    op("BYTES_RECEIVED", Refused(TIMING)),
    op("BYTES_RETRANSMITTED", Refused(TIMING)),
    op("BYTES_SENT", Refused(TIMING)),
    op("CEL", Refused("the filter has no CEL evaluator")),
    op("CLUSTER_METADATA", Both("`xds.cluster_metadata`")),
    op(
        "COALESCE",
        Refused("takes a JSON configuration the filter does not parse"),
    ),
    op("COMMON_DURATION", Refused(TIMING)),
    op("CONNECTION_ID", Both("`connection.id`")),
    op(
        "CONNECTION_TERMINATION_DETAILS",
        Both("`connection.termination_details`"),
    ),
    op("CUSTOM_FLAGS", Refused(NO_ATTRIBUTE)),
    op("DOWNSTREAM_CX_RTT", Refused(TIMING)),
    op(
        "DOWNSTREAM_DECOMPRESSED_HEADER_BYTES_RECEIVED",
        Refused(TIMING),
    ),
    op("DOWNSTREAM_DECOMPRESSED_HEADER_BYTES_SENT", Refused(TIMING)),
    op("DOWNSTREAM_DETECTED_CLOSE_TYPE", Refused(NO_ATTRIBUTE)),
    op("DOWNSTREAM_DIRECT_LOCAL_ADDRESS", Refused(NO_ATTRIBUTE)),
    op(
        "DOWNSTREAM_DIRECT_LOCAL_ADDRESS_ENDPOINT_ID",
        Refused(NO_ATTRIBUTE),
    ),
    op(
        "DOWNSTREAM_DIRECT_LOCAL_ADDRESS_WITHOUT_PORT",
        Refused(NO_ATTRIBUTE),
    ),
    op("DOWNSTREAM_DIRECT_LOCAL_PORT", Refused(NO_ATTRIBUTE)),
    op("DOWNSTREAM_DIRECT_REMOTE_ADDRESS", Refused(NO_ATTRIBUTE)),
    op(
        "DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT",
        Refused(NO_ATTRIBUTE),
    ),
    op("DOWNSTREAM_DIRECT_REMOTE_PORT", Refused(NO_ATTRIBUTE)),
    op("DOWNSTREAM_HANDSHAKE_DURATION", Refused(TIMING)),
    op("DOWNSTREAM_HEADER_BYTES_RECEIVED", Refused(TIMING)),
    op("DOWNSTREAM_HEADER_BYTES_SENT", Refused(TIMING)),
    op("DOWNSTREAM_LOCAL_ADDRESS", Both("`destination.address`")),
    op(
        "DOWNSTREAM_LOCAL_ADDRESS_ENDPOINT_ID",
        Refused(NO_ATTRIBUTE),
    ),
    op(
        "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT",
        Both("`destination.address`"),
    ),
    op("DOWNSTREAM_LOCAL_CLOSE_REASON", Refused(NO_ATTRIBUTE)),
    op(
        "DOWNSTREAM_LOCAL_DNS_SAN",
        Both("`connection.dns_san_local_certificate` (first SAN only)"),
    ),
    op("DOWNSTREAM_LOCAL_EMAIL_SAN", Refused(TLS_NO_ATTRIBUTE)),
    op("DOWNSTREAM_LOCAL_IP_SAN", Refused(TLS_NO_ATTRIBUTE)),
    op("DOWNSTREAM_LOCAL_OTHERNAME_SAN", Refused(TLS_NO_ATTRIBUTE)),
    op("DOWNSTREAM_LOCAL_PORT", Both("`destination.port`")),
    op(
        "DOWNSTREAM_LOCAL_SUBJECT",
        Both("`connection.subject_local_certificate`"),
    ),
    op(
        "DOWNSTREAM_LOCAL_URI_SAN",
        Both("`connection.uri_san_local_certificate` (first SAN only)"),
    ),
    op("DOWNSTREAM_PEER_CERT", Refused(TLS_NO_ATTRIBUTE)),
    op("DOWNSTREAM_PEER_CERT_V_END", Refused(TLS_NO_ATTRIBUTE)),
    op("DOWNSTREAM_PEER_CERT_V_START", Refused(TLS_NO_ATTRIBUTE)),
    op(
        "DOWNSTREAM_PEER_CHAIN_FINGERPRINTS_1",
        Refused(TLS_NO_ATTRIBUTE),
    ),
    op(
        "DOWNSTREAM_PEER_CHAIN_FINGERPRINTS_256",
        Refused(TLS_NO_ATTRIBUTE),
    ),
    op("DOWNSTREAM_PEER_CHAIN_SERIALS", Refused(TLS_NO_ATTRIBUTE)),
    op(
        "DOWNSTREAM_PEER_DNS_SAN",
        Both("`connection.dns_san_peer_certificate` (first SAN only)"),
    ),
    op("DOWNSTREAM_PEER_EMAIL_SAN", Refused(TLS_NO_ATTRIBUTE)),
    op("DOWNSTREAM_PEER_FINGERPRINT_1", Refused(TLS_NO_ATTRIBUTE)),
    op(
        "DOWNSTREAM_PEER_FINGERPRINT_256",
        Both("`connection.sha256_peer_certificate_digest`"),
    ),
    op("DOWNSTREAM_PEER_IP_SAN", Refused(TLS_NO_ATTRIBUTE)),
    op("DOWNSTREAM_PEER_ISSUER", Refused(TLS_NO_ATTRIBUTE)),
    op(
        "DOWNSTREAM_PEER_ISSUER_FINGERPRINT_256",
        Refused(TLS_NO_ATTRIBUTE),
    ),
    op("DOWNSTREAM_PEER_ISSUER_SERIAL", Refused(TLS_NO_ATTRIBUTE)),
    op("DOWNSTREAM_PEER_OTHERNAME_SAN", Refused(TLS_NO_ATTRIBUTE)),
    op("DOWNSTREAM_PEER_SERIAL", Refused(TLS_NO_ATTRIBUTE)),
    op(
        "DOWNSTREAM_PEER_SUBJECT",
        Both("`connection.subject_peer_certificate`"),
    ),
    op(
        "DOWNSTREAM_PEER_URI_SAN",
        Both("`connection.uri_san_peer_certificate` (first SAN only)"),
    ),
    op("DOWNSTREAM_REMOTE_ADDRESS", Both("`source.address`")),
    op(
        "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT",
        Both("`source.address`"),
    ),
    op("DOWNSTREAM_REMOTE_PORT", Both("`source.port`")),
    op("DOWNSTREAM_TLS_CIPHER", Refused(TLS_NO_ATTRIBUTE)),
    op("DOWNSTREAM_TLS_GROUP", Refused(TLS_NO_ATTRIBUTE)),
    op("DOWNSTREAM_TLS_SESSION_ID", Refused(TLS_NO_ATTRIBUTE)),
    op("DOWNSTREAM_TLS_VERSION", Both("`connection.tls_version`")),
    op(
        "DOWNSTREAM_TRANSPORT_FAILURE_REASON",
        Refused("set only when a TLS handshake fails, so never on an HTTP stream"),
    ),
    op("DOWNSTREAM_WIRE_BYTES_RECEIVED", Refused(TIMING)),
    op("DOWNSTREAM_WIRE_BYTES_SENT", Refused(TIMING)),
    op("DURATION", Refused(TIMING)),
    op("DYNAMIC_METADATA", Both("`metadata`")),
    op(
        "EMIT_TIME",
        Refused("the time of writing differs between Envoy and the filter; use START_TIME"),
    ),
    op("EMIT_TIME_LOCAL", Refused(LOCAL_TIME)),
    op(
        "ENVIRONMENT",
        Both("the VM's environment (`vm_config.environment_variables`), read at configure time"),
    ),
    op("FILTER_CHAIN_NAME", Both("`xds.filter_chain_name`")),
    op("FILTER_STATE", Both("`filter_state` (`:PLAIN` only)")),
    op(
        "GRPC_STATUS",
        Refused("renders gRPC status names the filter does not carry; use GRPC_STATUS_NUMBER"),
    ),
    op("GRPC_STATUS_NUMBER", Refused("`response.grpc_status` also gives non-gRPC responses a status (2 for a plain 200), which Envoy leaves empty")),
    op("HOSTNAME", Refused("the VM cannot read the host name")),
    op("LISTENER_NAME", Refused(NO_ATTRIBUTE)),
    op("LOCAL_REPLY_BODY", Refused("access logs only")),
    op(
        "METADATA",
        Refused("use DYNAMIC_METADATA, CLUSTER_METADATA or UPSTREAM_METADATA"),
    ),
    op("PACKETS_RETRANSMITTED", Refused(TIMING)),
    op(
        "PATH",
        Refused("not implemented by this filter; use %REQ(:path)%"),
    ),
    op("PROTOCOL", Both("`request.protocol`")),
    op("QUERY_PARAM", Refused("not implemented by this filter")),
    op("QUERY_PARAMS", Refused("not implemented by this filter")),
    op("REQ", Both("request header map")),
    op(
        "REQUESTED_SERVER_NAME",
        Both("`connection.requested_server_name`"),
    ),
    op("REQUEST_DURATION", Refused(TIMING)),
    op("REQUEST_HEADER", Both("request header map")),
    op("REQUEST_HEADERS_BYTES", Refused(TIMING)),
    op("REQUEST_TX_DURATION", Refused(TIMING)),
    op("RESP", Response("response header map")),
    op("RESPONSE_CODE", Response("`response.code`")),
    op("RESPONSE_CODE_DETAILS", Response("`response.code_details`")),
    op("RESPONSE_DURATION", Refused(TIMING)),
    op("RESPONSE_FLAGS", Both("`response.flags`")),
    op("RESPONSE_FLAGS_LONG", Both("`response.flags`")),
    op("RESPONSE_HEADER", Response("response header map")),
    op("RESPONSE_HEADERS_BYTES", Refused(TIMING)),
    op(
        "RESPONSE_TRAILER",
        Refused("trailers do not exist yet when headers are written"),
    ),
    op("RESPONSE_TRAILERS_BYTES", Refused(TIMING)),
    op("RESPONSE_TX_DURATION", Refused(TIMING)),
    op("ROUNDTRIP_DURATION", Refused(TIMING)),
    op("ROUTE_NAME", Both("`xds.route_name`")),
    op("ROUTE_RESOLUTION_COUNT", Refused(NO_ATTRIBUTE)),
    op("ROUTE_RESOLUTION_TIME_US", Refused(TIMING)),
    op("SPAN_ID", Refused(NO_ATTRIBUTE)),
    op("START_TIME", Both("`request.time`")),
    op("START_TIME_LOCAL", Refused(LOCAL_TIME)),
    op("STREAM_ID", Refused(NO_ATTRIBUTE)),
    op("STREAM_INFO_REQ", Refused(NO_ATTRIBUTE)),
    op("TLS_JA3_FINGERPRINT", Refused(TLS_NO_ATTRIBUTE)),
    op("TLS_JA4_FINGERPRINT", Refused(TLS_NO_ATTRIBUTE)),
    op("TRACE_ID", Refused(NO_ATTRIBUTE)),
    op(
        "TRAILER",
        Refused("trailers do not exist yet when headers are written"),
    ),
    op(
        "UNIQUE_ID",
        Refused("a fresh random UUID per use; use %REQ(x-request-id)%"),
    ),
    op(
        "UPSTREAM_CLUSTER",
        Both("`xds.cluster_name` (the cluster's name, not its `alt_stat_name`)"),
    ),
    op("UPSTREAM_CLUSTER_RAW", Both("`xds.cluster_name`")),
    op("UPSTREAM_CONNECTION_ID", Refused(NO_ATTRIBUTE)),
    op("UPSTREAM_CONNECTION_IDS_ATTEMPTED", Refused(NO_ATTRIBUTE)),
    op("UPSTREAM_CONNECTION_POOL_READY_DURATION", Refused(TIMING)),
    op(
        "UPSTREAM_DECOMPRESSED_HEADER_BYTES_RECEIVED",
        Refused(TIMING),
    ),
    op("UPSTREAM_DECOMPRESSED_HEADER_BYTES_SENT", Refused(TIMING)),
    op("UPSTREAM_DETECTED_CLOSE_TYPE", Refused(NO_ATTRIBUTE)),
    op("UPSTREAM_FILTER_STATE", Refused(NO_ATTRIBUTE)),
    op("UPSTREAM_HEADER_BYTES_RECEIVED", Refused(TIMING)),
    op("UPSTREAM_HEADER_BYTES_SENT", Refused(TIMING)),
    op("UPSTREAM_HOST", Response("`upstream.address`")),
    op("UPSTREAM_HOSTS_ATTEMPTED", Refused(NO_ATTRIBUTE)),
    op(
        "UPSTREAM_HOSTS_ATTEMPTED_WITHOUT_PORT",
        Refused(NO_ATTRIBUTE),
    ),
    op("UPSTREAM_HOST_NAME", Refused(NO_ATTRIBUTE)),
    op("UPSTREAM_HOST_NAMES_ATTEMPTED", Refused(NO_ATTRIBUTE)),
    op(
        "UPSTREAM_HOST_NAMES_ATTEMPTED_WITHOUT_PORT",
        Refused(NO_ATTRIBUTE),
    ),
    op("UPSTREAM_HOST_NAME_WITHOUT_PORT", Refused(NO_ATTRIBUTE)),
    op(
        "UPSTREAM_LOCAL_ADDRESS",
        Response("`upstream.local_address`"),
    ),
    op(
        "UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT",
        Response("`upstream.local_address`"),
    ),
    op("UPSTREAM_LOCAL_CLOSE_REASON", Refused(NO_ATTRIBUTE)),
    op("UPSTREAM_LOCAL_DNS_SAN", Refused(UPSTREAM_TLS)),
    op("UPSTREAM_LOCAL_IP_SAN", Refused(UPSTREAM_TLS)),
    op("UPSTREAM_LOCAL_PORT", Response("`upstream.local_address`")),
    op("UPSTREAM_LOCAL_URI_SAN", Refused(UPSTREAM_TLS)),
    op(
        "UPSTREAM_METADATA",
        Response("`xds.upstream_host_metadata`"),
    ),
    op("UPSTREAM_PEER_CERT", Refused(UPSTREAM_TLS)),
    op("UPSTREAM_PEER_CERT_V_END", Refused(UPSTREAM_TLS)),
    op("UPSTREAM_PEER_CERT_V_START", Refused(UPSTREAM_TLS)),
    op("UPSTREAM_PEER_DNS_SAN", Refused(UPSTREAM_TLS)),
    op("UPSTREAM_PEER_IP_SAN", Refused(UPSTREAM_TLS)),
    op("UPSTREAM_PEER_ISSUER", Refused(UPSTREAM_TLS)),
    op("UPSTREAM_PEER_SUBJECT", Refused(UPSTREAM_TLS)),
    op("UPSTREAM_PEER_URI_SAN", Refused(UPSTREAM_TLS)),
    op("UPSTREAM_PROTOCOL", Refused(NO_ATTRIBUTE)),
    op("UPSTREAM_REMOTE_ADDRESS", Response("`upstream.address`")),
    op("UPSTREAM_REMOTE_ADDRESS_ENDPOINT_ID", Refused(NO_ATTRIBUTE)),
    op(
        "UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT",
        Response("`upstream.address`"),
    ),
    op("UPSTREAM_REMOTE_PORT", Response("`upstream.port`")),
    op(
        "UPSTREAM_REQUEST_ATTEMPT_COUNT",
        Both("`upstream.request_attempt_count`"),
    ),
    op("UPSTREAM_SERVER_NAME", Refused(NO_ATTRIBUTE)),
    op("UPSTREAM_TLS_CIPHER", Refused(UPSTREAM_TLS)),
    op("UPSTREAM_TLS_GROUP", Refused(UPSTREAM_TLS)),
    op("UPSTREAM_TLS_SESSION_ID", Refused(UPSTREAM_TLS)),
    op("UPSTREAM_TLS_VERSION", Refused(UPSTREAM_TLS)),
    op(
        "UPSTREAM_TRANSPORT_FAILURE_REASON",
        Response("`upstream.transport_failure_reason`"),
    ),
    op("UPSTREAM_WIRE_BYTES_RECEIVED", Refused(TIMING)),
    op("UPSTREAM_WIRE_BYTES_SENT", Refused(TIMING)),
    op("VIRTUAL_CLUSTER_NAME", Refused(NO_ATTRIBUTE)),
];

/// The entry for `name`, if Envoy knows it.
pub fn find(name: &str) -> Option<&'static Operator> {
    OPERATORS
        .binary_search_by(|op| op.name.cmp(name))
        .ok()
        .map(|i| &OPERATORS[i])
}

/// Names the filter renders on `request` (or only the response) side, for
/// the unknown-operator message.
pub fn supported() -> impl Iterator<Item = &'static str> {
    OPERATORS
        .iter()
        .filter(|op| !matches!(op.support, Refused(_)))
        .map(|op| op.name)
}

/// The README's formatter table, one row per operator.
pub fn markdown_table() -> String {
    let mut out = String::from("| operator | filter | attribute / reason |\n| --- | --- | --- |\n");
    for op in OPERATORS {
        let (what, why) = match op.support {
            Both(attr) => ("both sides", attr),
            Response(attr) => ("response side only", attr),
            Refused(reason) => ("refused", reason),
        };
        out.push_str(&format!("| `{}` | {what} | {why} |\n", op.name));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_has_every_envoy_operator() {
        assert!(OPERATORS.windows(2).all(|w| w[0].name < w[1].name));
        assert_eq!(OPERATORS.len(), 162, "Envoy 1.40 has 162 operators");
    }

    #[test]
    fn readme_carries_the_table() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
        assert!(
            readme.contains(&markdown_table()),
            "README.md ### Formatters must contain this table verbatim:\n{}",
            markdown_table()
        );
    }
}
