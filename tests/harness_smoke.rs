//! Smoke tests of the e2e harness itself, with no Wasm involved: a plain
//! Envoy proxying to the echo upstream, and a refused config. If these fail,
//! no other e2e failure means anything.

use e2e::{http, render, EchoUpstream, Envoy, StartError};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

const PLAIN_PROXY: &str = r#"
admin:
  address:
    socket_address: { address: 127.0.0.1, port_value: 0 }
static_resources:
  listeners:
  - name: main
    address:
      socket_address: { address: 127.0.0.1, port_value: 0 }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            name: local
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: echo }
                response_headers_to_add:
                - header: { key: x-route, value: added }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: echo
    type: STATIC
    load_assignment:
      cluster_name: echo
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: { address: 127.0.0.1, port_value: {{UPSTREAM_PORT}} }
"#;

#[test]
fn plain_envoy_proxies_to_echo_and_adds_route_response_header() {
    let upstream = EchoUpstream::start();
    let envoy = Envoy::start(&render(PLAIN_PROXY, &[("UPSTREAM_PORT", &upstream.port())]))
        .expect("plain proxy config starts");

    let response = http::get(
        envoy.listener("main"),
        "/hello",
        &[
            ("x-test", "one"),
            ("x-test", "two"),
            ("x-respond-x-powered-by", "php"),
        ],
    );

    assert_eq!(response.status, 200, "body: {}", response.text());
    assert_eq!(response.header("x-route"), Some("added"));
    assert_eq!(response.header("x-upstream"), Some("echo"));
    assert_eq!(response.header_all("x-powered-by"), ["php"]);
    assert_eq!(response.echoed("x-test"), ["one", "two"]);
    let echoed = response.echoed_request_headers();
    assert!(
        echoed.iter().any(|(name, _)| name == "x-forwarded-proto"),
        "envoy's own request headers reach the upstream: {echoed:?}"
    );
    assert_eq!(upstream.request_count(), 1);
    assert_eq!(envoy.stat("cluster.echo.upstream_rq_200"), Some(1));
}

#[test]
fn concurrency_is_configurable_and_every_worker_proxies() {
    let upstream = EchoUpstream::start();
    let envoy = Envoy::builder()
        .concurrency(2)
        .start(&render(PLAIN_PROXY, &[("UPSTREAM_PORT", &upstream.port())]))
        .expect("plain proxy config starts with two workers");
    let main = envoy.listener("main");
    for _ in 0..10 {
        assert_eq!(http::get(main, "/", &[]).status, 200);
    }
    assert_eq!(upstream.request_count(), 10);
    assert_eq!(envoy.stat("server.concurrency"), Some(2));
}

#[test]
fn envoy_under_test_says_its_version() {
    let (major, minor) = e2e::envoy::version();
    assert_eq!(major, 1, "Envoy {major}.{minor}");
    assert!(
        minor >= 36,
        "Envoy {major}.{minor} is older than any supported mesh ships"
    );
}

#[test]
fn broken_config_fails_start_with_envoy_log() {
    let err = match Envoy::start("static_resources:\n  not_a_field: true\n") {
        Ok(envoy) => panic!("envoy {} accepted a broken config", envoy.pid()),
        Err(err) => err,
    };
    assert!(matches!(err, StartError::Exited { .. }), "{err}");
    assert!(!err.log().trim().is_empty(), "log is empty: {err}");
    assert!(err.log().contains("not_a_field"), "log: {}", err.log());
}

#[test]
fn echo_upstream_keeps_connections_alive_and_reads_bodies() {
    let upstream = EchoUpstream::start();
    let stream = TcpStream::connect(upstream.addr()).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    for body in ["first", "second body"] {
        write!(
            writer,
            "POST /x HTTP/1.1\r\nhost: a\r\nX-Mixed: v\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert_eq!(status, "HTTP/1.1 200 OK\r\n");
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(value) = line.strip_prefix("content-length: ") {
                length = value.trim().parse().unwrap();
            }
        }
        let mut json = vec![0; length];
        reader.read_exact(&mut json).unwrap();
        let echoed: Vec<(String, String)> = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            echoed,
            [
                ("host".to_string(), "a".to_string()),
                ("x-mixed".to_string(), "v".to_string()),
                ("content-length".to_string(), body.len().to_string()),
            ]
        );
    }
    assert_eq!(upstream.request_count(), 2);
}

#[test]
#[should_panic(expected = "has no value")]
fn render_refuses_a_missing_placeholder() {
    render("port: {{UPSTREAM_PORT}}", &[("WASM_PATH", &"/x.wasm")]);
}
