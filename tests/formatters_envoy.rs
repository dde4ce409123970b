//! Formatters, same stream: Envoy's own `header_mutation` filter writes
//! `x-native-N: %OP%` and the Wasm filter writes `x-filter-N: %OP%` for every
//! operator the filter supports, on the request and on the response, in one
//! Envoy; the upstream and the client must see equal values. Dynamic
//! metadata and filter state come from Envoy's own `set_metadata` and
//! `set_filter_state` ahead of both. Listeners: plain HTTP, TLS with a
//! client certificate (made by `openssl` here, the client cert with several
//! URI SANs), and one routed to a closed port (for `RESPONSE_FLAGS`).

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

use e2e::{envoy_yaml, http, paths, render, EchoUpstream, Envoy};

/// Operators rendered on both sides.
const BOTH: &[&str] = &[
    "%REQ(x-a)%",
    "%REQUEST_HEADER(x-a):3%",
    "%DOWNSTREAM_REMOTE_ADDRESS%",
    "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
    "%DOWNSTREAM_REMOTE_PORT%",
    "%DOWNSTREAM_LOCAL_ADDRESS%",
    "%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%",
    "%DOWNSTREAM_LOCAL_PORT%",
    "%PROTOCOL%",
    "%START_TIME%",
    "%START_TIME(%Y-%m-%dT%H:%M:%S.%9f %s %1f %3f %6f %f)%",
    // Epoch milliseconds, the README's example.
    "%START_TIME(%s%3f)%",
    "%START_TIME(%a %A %b %B %e %j %I %p %y %C %u %w %T %D %F %R %Z %z %Ez %E3S %E*S)%",
    "%RESPONSE_FLAGS%",
    "%RESPONSE_FLAGS_LONG%",
    "%UPSTREAM_CLUSTER%",
    "%UPSTREAM_CLUSTER_RAW%",
    "%ROUTE_NAME%",
    "%FILTER_CHAIN_NAME%",
    "%CONNECTION_ID%",
    "%CONNECTION_TERMINATION_DETAILS%",
    "%UPSTREAM_REQUEST_ATTEMPT_COUNT%",
    "%REQUESTED_SERVER_NAME%",
    "%DOWNSTREAM_TLS_VERSION%",
    "%DOWNSTREAM_PEER_SUBJECT%",
    "%DOWNSTREAM_LOCAL_SUBJECT%",
    "%DOWNSTREAM_LOCAL_URI_SAN%",
    "%DOWNSTREAM_PEER_DNS_SAN%",
    "%DOWNSTREAM_LOCAL_DNS_SAN%",
    "%DOWNSTREAM_PEER_FINGERPRINT_256%",
    "%DYNAMIC_METADATA(test:text)%",
    "%DYNAMIC_METADATA(test:text):4%",
    "%DYNAMIC_METADATA(test:number)%",
    "%DYNAMIC_METADATA(test:flag)%",
    "%DYNAMIC_METADATA(test:missing)%",
    "%DYNAMIC_METADATA(test:nested:inner)%",
    "%CLUSTER_METADATA(cluster_ns:owner)%",
    "%FILTER_STATE(test.state:PLAIN)%",
    "%FILTER_STATE(test.state:PLAIN):5%",
    "%FILTER_STATE(absent.state:PLAIN)%",
    "%ENVIRONMENT(HOME)%",
    "%ENVIRONMENT(HEADER_FILTER_UNSET_VARIABLE)%",
];

/// Operators rendered on the response side only.
const RESPONSE: &[&str] = &[
    "%RESP(x-upstream)%",
    "%RESPONSE_HEADER(x-upstream)%",
    "%RESPONSE_CODE%",
    "%RESPONSE_CODE_DETAILS%",
    "%RESPONSE_CODE_DETAILS(ALLOW_WHITESPACES)%",
    "%UPSTREAM_HOST%",
    "%UPSTREAM_REMOTE_ADDRESS%",
    "%UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
    "%UPSTREAM_REMOTE_PORT%",
    "%UPSTREAM_LOCAL_ADDRESS%",
    "%UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%",
    "%UPSTREAM_LOCAL_PORT%",
    "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
    "%UPSTREAM_METADATA(host_ns:zone)%",
];

/// The several-SAN operator the filter renders differently (first SAN only).
const URI_SAN: &str = "%DOWNSTREAM_PEER_URI_SAN%";

fn operators(side: &str) -> Vec<&'static str> {
    let mut all: Vec<&str> = BOTH.to_vec();
    all.push(URI_SAN);
    if side == "response" {
        all.extend_from_slice(RESPONSE);
    }
    all
}

fn pairs(prefix: &str, side: &str) -> Vec<(String, String)> {
    operators(side)
        .iter()
        .enumerate()
        .map(|(i, op)| {
            let op = if prefix == "native" {
                native_spelling(op)
            } else {
                op.to_string()
            };
            (format!("x-{prefix}-{i}"), op)
        })
        .collect()
}

/// `op` as the Envoy under test spells it. Envoy 1.36 does not know the
/// `REQUEST_HEADER` / `RESPONSE_HEADER` spellings (1.37 added them), so its
/// own filter gets `REQ` / `RESP`; it refuses a length on
/// `DYNAMIC_METADATA`, so it gets the operator without (see [`native_cut`]).
/// The filter takes all of them on every Envoy.
fn native_spelling(op: &str) -> String {
    if e2e::envoy::version() >= (1, 37) {
        return op.to_string();
    }
    let op = op
        .replace("%REQUEST_HEADER(", "%REQ(")
        .replace("%RESPONSE_HEADER(", "%RESP(");
    match (native_cut(&op), op.rsplit_once("):")) {
        (Some(_), Some((head, _))) => format!("{head})%"),
        _ => op,
    }
}

/// The length the filter cuts `op` to where Envoy's own filter is given the
/// operator without it (`DYNAMIC_METADATA(..):N` before Envoy 1.37): the
/// filter's value must then be the first N bytes of Envoy's.
fn native_cut(op: &str) -> Option<usize> {
    if e2e::envoy::version() >= (1, 37) || !op.starts_with("%DYNAMIC_METADATA(") {
        return None;
    }
    op.rsplit_once("):")?.1.strip_suffix('%')?.parse().ok()
}

fn filter_config() -> String {
    let rules = |side: &str| -> Vec<serde_json::Value> {
        pairs("filter", side)
            .into_iter()
            .map(|(key, value)| {
                serde_json::json!({"header": {"key": key, "value": value}, "keep_empty_value": true})
            })
            .collect()
    };
    serde_json::json!({
        "request_headers_to_add": rules("request"),
        "response_headers_to_add": rules("response"),
    })
    .to_string()
}

/// set_metadata, set_filter_state, Envoy's header_mutation, the Wasm filter.
fn http_filters() -> String {
    let native =
        envoy_yaml::header_mutation_yaml(&pairs("native", "request"), &pairs("native", "response"));
    let wasm =
        envoy_yaml::wasm_filter_with_env_yaml(&paths::filter_wasm(), &filter_config(), &["HOME"]);
    format!(
        r#"          - name: envoy.filters.http.set_metadata
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.set_metadata.v3.Config
              metadata:
              - metadata_namespace: test
                value: {{ text: "meta value", number: 42, flag: true, nested: {{ inner: deep }} }}
          - name: envoy.filters.http.set_filter_state
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.set_filter_state.v3.Config
              on_request_headers:
              - object_key: test.state
                factory_key: envoy.string
                format_string: {{ text_format_source: {{ inline_string: "state value" }} }}
{native}{wasm}"#
    )
}

/// A listener named `name` routing to `cluster` through route `r-name`,
/// TLS with a required client certificate when `tls` names the cert dir.
fn listener(name: &str, cluster: &str, tls: Option<&Path>) -> String {
    let yaml = envoy_yaml::listener_yaml(name, &http_filters())
        .replace("route: { cluster: echo }", &format!("route: {{ cluster: {cluster}, retry_policy: {{ retry_on: connect-failure, num_retries: 1 }} }}"))
        .replace("- match: { prefix: \"/\" }", &format!("- name: r-{name}\n                match: {{ prefix: \"/\" }}"));
    let Some(dir) = tls else {
        return yaml.replace("    - filters:", "    - name: chain-plain\n      filters:");
    };
    let socket = render(
        r#"    - name: chain-tls
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            tls_certificates:
            - certificate_chain: { filename: "{{DIR}}/server.pem" }
              private_key: { filename: "{{DIR}}/server.key" }
            validation_context:
              trusted_ca: { filename: "{{DIR}}/ca.pem" }
      filters:"#,
        &[("DIR", &dir.display())],
    );
    yaml.replace("    - filters:", &socket)
}

/// The echo upstream as a cluster with cluster and host metadata.
fn meta_cluster(port: u16) -> String {
    render(
        r#"  - name: meta_echo
    type: STATIC
    connect_timeout: 2s
    metadata: { filter_metadata: { cluster_ns: { owner: "team a" } } }
    load_assignment:
      cluster_name: meta_echo
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: {{PORT}} } } }
          metadata: { filter_metadata: { host_ns: { zone: z1 } } }
"#,
        &[("PORT", &port)],
    )
}

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("running openssl (apt-get install openssl)");
    assert!(status.success(), "openssl {args:?} failed");
}

/// CA, server cert (SNI `localhost`) and a client cert with three URI SANs
/// and a DNS SAN, all signed by the CA.
fn make_certs(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=test-ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    );
    for (name, subject, sans) in [
        ("server", "/CN=localhost/O=server", "DNS:localhost,URI:spiffe://test/server"),
        ("client", "/CN=client/O=clients", "URI:spiffe://test/client/one,URI:spiffe://test/client/two,URI:spiffe://test/client/three,DNS:client.test"),
    ] {
        std::fs::write(dir.join(format!("{name}.ext")), format!("subjectAltName={sans}\n")).unwrap();
        openssl(dir, &["req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", &format!("{name}.key"), "-out", &format!("{name}.csr")]);
        openssl(dir, &["x509", "-req", "-in", &format!("{name}.csr"), "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2", "-extfile", &format!("{name}.ext"), "-out", &format!("{name}.pem")]);
    }
}

type Headers = Vec<(String, String)>;

/// One HTTPS request with the client certificate, by `curl`: the response
/// headers and the body (the echoed request headers).
fn tls_get(dir: &Path, port: u16) -> (Headers, Headers) {
    let output = Command::new("curl")
        .args([
            "-sS",
            "--http1.1",
            "-D",
            "-",
            "--cacert",
            "ca.pem",
            "--cert",
            "client.pem",
            "--key",
            "client.key",
        ])
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
        .args(["-H", "x-a: alpha"])
        .arg(format!("https://localhost:{port}/tls"))
        .current_dir(dir)
        .output()
        .expect("running curl (apt-get install curl)");
    assert!(
        output.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect();
    (
        headers,
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}")),
    )
}

/// The value of `name` in `headers`; panics when it is missing.
fn value<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} in {headers:?}"))
}

/// Every `x-native-N` equals `x-filter-N` (and both exist), except the
/// several-SAN one, returned for the caller to check.
fn assert_same(what: &str, side: &str, headers: &[(String, String)]) -> Vec<String> {
    let mut mismatches = Vec::new();
    let mut san = Vec::new();
    for (i, op) in operators(side).iter().enumerate() {
        let mut native = value(headers, &format!("x-native-{i}"));
        let filter = value(headers, &format!("x-filter-{i}"));
        if let Some(length) = native_cut(op) {
            native = native.get(..length).unwrap_or(native);
        }
        if *op == URI_SAN {
            san = vec![native.to_string(), filter.to_string()];
        } else if native != filter {
            mismatches.push(format!("{op}: envoy {native:?}, filter {filter:?}"));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{what} {side}:\n{}",
        mismatches.join("\n")
    );
    san
}

#[test]
fn every_supported_operator_renders_as_envoy_renders_it() {
    let upstream = EchoUpstream::start();
    let closed_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let certs = paths::temp_dir();
    make_certs(certs.path());
    let plain = listener("plain", "meta_echo", None);
    let tls = listener("tls", "meta_echo", Some(certs.path()));
    let closed = listener("closed", "closed", None);
    let clusters =
        meta_cluster(upstream.port()) + &envoy_yaml::static_cluster_yaml("closed", closed_port);
    let envoy = Envoy::start(&envoy_yaml::bootstrap_yaml(
        &[&plain, &tls, &closed],
        upstream.port(),
        &clusters,
    ))
    .unwrap_or_else(|e| panic!("{e}"));

    // Plain HTTP: every operator, both sides.
    let response = http::get(envoy.listener("plain"), "/plain", &[("x-a", "alpha")]);
    assert_eq!(response.status, 200, "{}", response.text());
    assert_same("plain", "request", &response.echoed_request_headers());
    assert_same(
        "plain",
        "response",
        &response
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect::<Vec<_>>(),
    );
    // The comparison is worth something only if values were not all empty.
    let echoed = response.echoed_request_headers();
    let start = operators("request")
        .iter()
        .position(|op| op.starts_with("%START_TIME(%Y"))
        .unwrap();
    assert!(value(&echoed, &format!("x-filter-{start}")).len() > 30);
    let meta = operators("request")
        .iter()
        .position(|op| *op == "%DYNAMIC_METADATA(test:text)%")
        .unwrap();
    assert_eq!(value(&echoed, &format!("x-filter-{meta}")), "meta value");

    // TLS with a client certificate of three URI SANs.
    let (response_headers, echoed) = tls_get(certs.path(), envoy.listener("tls").port());
    assert_same("tls", "request", &echoed);
    let san = assert_same("tls", "response", &response_headers);
    // Envoy joins every URI SAN; the attribute holds the first only.
    assert_eq!(
        san[0],
        "spiffe://test/client/one,spiffe://test/client/two,spiffe://test/client/three"
    );
    assert_eq!(san[1], "spiffe://test/client/one");
    let version = operators("request")
        .iter()
        .position(|op| *op == "%DOWNSTREAM_TLS_VERSION%")
        .unwrap();
    assert!(value(&echoed, &format!("x-filter-{version}")).starts_with("TLSv1."));

    // A closed upstream port: local 503 with response flags.
    let response = http::get(envoy.listener("closed"), "/closed", &[("x-a", "alpha")]);
    assert_eq!(response.status, 503, "{}", response.text());
    let headers: Vec<(String, String)> = response
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    // Known differences here (README): Envoy lists flags in the order they
    // were raised, the bitmask by bit; with no upstream connection Envoy has
    // no upstream remote address, the attribute still has the chosen host's.
    let index = |op: &str| operators("response").iter().position(|o| *o == op).unwrap();
    let pair = |op: &str| {
        let i = index(op);
        (
            value(&headers, &format!("x-native-{i}")).to_string(),
            value(&headers, &format!("x-filter-{i}")).to_string(),
        )
    };
    assert_eq!(
        pair("%RESPONSE_FLAGS%"),
        ("URX,UF".to_string(), "UF,URX".to_string())
    );
    assert_eq!(
        pair("%UPSTREAM_REMOTE_PORT%"),
        (String::new(), closed_port.to_string())
    );
    let known: Vec<String> = [
        "%RESPONSE_FLAGS%",
        "%RESPONSE_FLAGS_LONG%",
        "%UPSTREAM_REMOTE_ADDRESS%",
        "%UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
        "%UPSTREAM_REMOTE_PORT%",
    ]
    .iter()
    .map(|op| format!("-{}", index(op)))
    .collect();
    let mut rest = headers.clone();
    for (name, value) in rest.iter_mut() {
        if known.iter().any(|k| name.ends_with(k.as_str())) && name.starts_with("x-native-") {
            // Compare the rest only: make the known pair equal.
            let twin = name.replace("x-native-", "x-filter-");
            *value = self::value(&headers, &twin).to_string();
        }
    }
    assert_same("closed", "response", &rest);
}

#[test]
fn operators_a_wasm_filter_cannot_compute_stop_envoy_with_one_line() {
    let upstream = EchoUpstream::start();
    for (config, reason) in [
        (
            r#"{"request_headers_to_add":[{"header":{"key":"x-a","value":"%HOSTNAME%"}}]}"#,
            "request_headers_to_add[0].header.value: formatter %HOSTNAME% at byte 0: not available to a Wasm filter (the VM cannot read the host name)",
        ),
        (
            r#"{"request_headers_to_add":[{"header":{"key":"x-a","value":"%RESPONSE_CODE%"}}]}"#,
            "request_headers_to_add[0].header.value: formatter %RESPONSE_CODE% at byte 0: empty on the request side",
        ),
        (
            r#"{"request_headers_to_add":[{"header":{"key":"x-a","value":"a %UPSTREAM_REMOTE_ADDRESS%"}}]}"#,
            "formatter %UPSTREAM_REMOTE_ADDRESS% at byte 2: empty on the request side",
        ),
    ] {
        let wasm = envoy_yaml::local_wasm_filter_yaml(&paths::filter_wasm(), config);
        let yaml = envoy_yaml::bootstrap_yaml(&[&envoy_yaml::listener_yaml("filter", &wasm)], upstream.port(), "");
        let error = match Envoy::start(&yaml) {
            Ok(_) => panic!("envoy started with {config}"),
            Err(error) => error,
        };
        let lines: Vec<&str> = error.log().lines().filter(|l| l.contains("header-filter: invalid")).collect();
        assert_eq!(lines.len(), 1, "{}", error.log());
        assert!(lines[0].contains(reason), "{reason:?} not in {:?}", lines[0]);
    }
}
