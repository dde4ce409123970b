//! `RESPONSE_FLAGS` / `RESPONSE_FLAGS_LONG` from `response.flags`, the
//! bitmask of Envoy's `StreamInfo::legacyResponseFlags()`: bit N is
//! `CoreResponseFlag` N (envoy/stream_info/stream_info.h), named as in
//! `ResponseFlagUtils` (source/common/stream_info/utility.h). Envoy joins the
//! names with `,` and writes `-` for none.
//!
//! Envoy lists the flags in the order they were raised; the bitmask has lost
//! that order, so the filter lists them by bit. The two agree whenever one
//! flag is set (the common case) and whenever the raise order follows the
//! bits (`UF,URX`).

/// (short, long) by bit.
const FLAGS: [(&str, &str); 30] = [
    ("LH", "FailedLocalHealthCheck"),
    ("UH", "NoHealthyUpstream"),
    ("UT", "UpstreamRequestTimeout"),
    ("LR", "LocalReset"),
    ("UR", "UpstreamRemoteReset"),
    ("UF", "UpstreamConnectionFailure"),
    ("UC", "UpstreamConnectionTermination"),
    ("UO", "UpstreamOverflow"),
    ("NR", "NoRouteFound"),
    ("DI", "DelayInjected"),
    ("FI", "FaultInjected"),
    ("RL", "RateLimited"),
    ("UAEX", "UnauthorizedExternalService"),
    ("RLSE", "RateLimitServiceError"),
    ("DC", "DownstreamConnectionTermination"),
    ("URX", "UpstreamRetryLimitExceeded"),
    ("SI", "StreamIdleTimeout"),
    ("IH", "InvalidEnvoyRequestHeaders"),
    ("DPE", "DownstreamProtocolError"),
    ("UMSDR", "UpstreamMaxStreamDurationReached"),
    ("RFCF", "ResponseFromCacheFilter"),
    ("NFCF", "NoFilterConfigFound"),
    ("DT", "DurationTimeout"),
    ("UPE", "UpstreamProtocolError"),
    ("NC", "NoClusterFound"),
    ("OM", "OverloadManagerTerminated"),
    ("DF", "DnsResolutionFailed"),
    ("DO", "DropOverload"),
    ("DR", "DownstreamRemoteReset"),
    ("UDO", "UnconditionalDropOverload"),
];

/// Appends the names of the flags set in `mask` (long names if `long`).
pub fn render(mask: u64, long: bool, out: &mut Vec<u8>) {
    let start = out.len();
    for (bit, (short, long_name)) in FLAGS.iter().enumerate() {
        if mask & (1 << bit) != 0 {
            if out.len() > start {
                out.push(b',');
            }
            out.extend_from_slice(if long { long_name } else { short }.as_bytes());
        }
    }
    if out.len() == start {
        out.push(b'-');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(mask: u64, long: bool) -> String {
        let mut out = Vec::new();
        render(mask, long, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn none_is_a_dash() {
        assert_eq!(text(0, false), "-");
        assert_eq!(text(0, true), "-");
    }

    #[test]
    fn flags_by_bit_joined_with_commas() {
        assert_eq!(text(1 << 5, false), "UF");
        assert_eq!(text(1 << 5 | 1 << 15, false), "UF,URX");
        assert_eq!(
            text(1 << 5 | 1 << 15, true),
            "UpstreamConnectionFailure,UpstreamRetryLimitExceeded"
        );
        assert_eq!(text(1 << 29 | 1, false), "LH,UDO");
    }

    #[test]
    fn unknown_bits_are_ignored() {
        assert_eq!(text(1 << 40, false), "-");
    }
}
