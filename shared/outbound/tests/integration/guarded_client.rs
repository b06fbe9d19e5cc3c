//! `GuardedHttpClient` against real sockets: tiny HTTP/1.1 servers on 127.0.0.1 that
//! record what they receive, and the guard's refusals, limits and timeouts.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use registry_core::error::RegistryError;
use registry_core::outbound::OutboundGuard;
use registry_core::ports::{OutboundHttp, OutboundRequest};
use registry_outbound::{GuardedHttpClient, OutboundConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as the server read it.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the server does with each connection.
#[derive(Clone)]
enum Behaviour {
    /// Reads the request, writes these bytes, closes.
    Answer(Arc<Vec<u8>>),
    /// Reads the request and never answers.
    Silent,
}

struct Server {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Server {
    async fn start(behaviour: Behaviour) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(Mutex::new(Vec::new()));
        let (c, r) = (Arc::clone(&connections), Arc::clone(&received));
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                c.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(handle(stream, behaviour.clone(), Arc::clone(&r)));
            }
        });
        Server {
            addr,
            connections,
            received,
        }
    }

    /// A server that answers `status` with `body` (and `extra` header lines).
    async fn answering(status: &str, extra: &str, body: &[u8]) -> Server {
        let mut response = format!(
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n",
            body.len()
        )
        .into_bytes();
        response.extend_from_slice(body);
        Server::start(Behaviour::Answer(Arc::new(response))).await
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

async fn handle(mut stream: TcpStream, behaviour: Behaviour, received: Arc<Mutex<Vec<Received>>>) {
    let Some(request) = read_request(&mut stream).await else {
        return;
    };
    received.lock().unwrap().push(request);
    match behaviour {
        Behaviour::Answer(bytes) => {
            // The client may hang up after its cap: write errors are expected.
            let _ = stream.write_all(&bytes).await;
            let _ = stream.shutdown().await;
        }
        Behaviour::Silent => {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
    }
}

/// Reads one HTTP/1.1 request with a `content-length` body.
async fn read_request(stream: &mut TcpStream) -> Option<Received> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).ok()?;
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let target = request_line.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Received {
        method,
        target,
        headers,
        body,
    })
}

fn client(config: OutboundConfig) -> GuardedHttpClient {
    GuardedHttpClient::new(config).unwrap()
}

fn default_client() -> GuardedHttpClient {
    client(OutboundConfig::default())
}

/// A client whose guard allows loopback (127.0.0.0/8 and ::1).
fn loopback_client() -> GuardedHttpClient {
    client(loopback_config())
}

fn loopback_config() -> OutboundConfig {
    OutboundConfig {
        guard: OutboundGuard::new(OutboundGuard::parse_allowed("127.0.0.0/8,::1").unwrap()),
        ..OutboundConfig::default()
    }
}

fn request(url: String) -> OutboundRequest {
    OutboundRequest {
        url,
        headers: vec![("content-type".into(), "application/json".into())],
        body: b"{}".to_vec(),
    }
}

fn assert_refused<T: std::fmt::Debug>(result: Result<T, RegistryError>, what: &str) {
    assert!(
        matches!(result, Err(RegistryError::OutboundRefused(_))),
        "{what}: expected OutboundRefused, got {result:?}"
    );
}

fn assert_upstream<T: std::fmt::Debug>(result: Result<T, RegistryError>, what: &str) -> String {
    match result {
        Err(RegistryError::Upstream(message)) => message,
        other => panic!("{what}: expected Upstream, got {other:?}"),
    }
}

#[tokio::test]
async fn loopback_literal_is_refused_by_default_and_nothing_is_sent() {
    let server = Server::answering("200 OK", "", b"ok").await;
    let http = default_client();
    let url = format!("http://127.0.0.1:{}/hook", server.port());
    assert_refused(http.check_target(&url).await, "check_target");
    assert_refused(http.post(&request(url)).await, "post");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(server.connections(), 0, "the server must not be contacted");
}

#[tokio::test]
async fn localhost_name_is_refused_by_default_and_nothing_is_sent() {
    let server = Server::answering("200 OK", "", b"ok").await;
    let http = default_client();
    let url = format!("http://localhost:{}/hook", server.port());
    assert_refused(http.check_target(&url).await, "check_target");
    // Refused by the guarded resolver inside reqwest, given back as OutboundRefused.
    assert_refused(http.post(&request(url)).await, "post");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(server.connections(), 0, "the server must not be contacted");
}

#[tokio::test]
async fn internal_and_non_http_targets_are_refused() {
    let http = default_client();
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[fd00:ec2::254]/",
        "http://10.0.0.1:8080/",
        "http://2130706433/",
        "http://0x7f.1/",
        "https://192.168.1.1/",
        "file:///etc/passwd",
        "gopher://example.com/",
        "not a url",
    ] {
        assert_refused(http.check_target(url).await, url);
        assert_refused(http.post(&request(url.to_owned())).await, url);
    }
}

#[tokio::test]
async fn allowed_loopback_receives_method_headers_and_exact_body() {
    let server = Server::answering("202 Accepted", "", b"queued").await;
    let http = loopback_client();
    let url = format!("http://127.0.0.1:{}/hooks/a?x=1", server.port());
    http.check_target(&url).await.unwrap();
    let body = b"{\"event\":\"push\",\"bytes\":[0,1,2]}\n".to_vec();
    let response = http
        .post(&OutboundRequest {
            url,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("webhook-id".into(), "evt-1".into()),
                ("webhook-signature".into(), "v1,c2lnbmF0dXJl".into()),
            ],
            body: body.clone(),
        })
        .await
        .unwrap();
    assert_eq!(response.status, 202);
    assert_eq!(response.body_excerpt, "queued");

    let received = server.received();
    assert_eq!(received.len(), 1);
    let r = &received[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.target, "/hooks/a?x=1");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("webhook-id"), Some("evt-1"));
    assert_eq!(r.header("webhook-signature"), Some("v1,c2lnbmF0dXJl"));
    assert_eq!(r.body, body);
}

#[tokio::test]
async fn a_server_error_is_an_answer_not_a_failure() {
    let server = Server::answering("500 Internal Server Error", "", b"boom").await;
    let response = loopback_client()
        .post(&request(format!("http://127.0.0.1:{}/", server.port())))
        .await
        .unwrap();
    assert_eq!(response.status, 500);
    assert_eq!(response.body_excerpt, "boom");
}

#[tokio::test]
async fn allowed_host_name_is_resolved_checked_and_reached() {
    let server = Server::answering("204 No Content", "", b"").await;
    let http = loopback_client();
    let url = format!("http://localhost:{}/hook", server.port());
    http.check_target(&url).await.unwrap();
    let response = http.post(&request(url)).await.unwrap();
    assert_eq!(response.status, 204);
    assert_eq!(server.received().len(), 1);
}

#[tokio::test]
async fn the_answer_body_is_cut_at_the_cap() {
    let big = vec![b'a'; 1024 * 1024];
    let server = Server::answering("200 OK", "", &big).await;
    let response = loopback_client()
        .post(&request(format!("http://127.0.0.1:{}/", server.port())))
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body_excerpt.len(), 1024);
    assert!(response.body_excerpt.bytes().all(|b| b == b'a'));

    let small = client(OutboundConfig {
        max_response_bytes: 10,
        ..loopback_config()
    });
    let response = small
        .post(&request(format!("http://127.0.0.1:{}/", server.port())))
        .await
        .unwrap();
    assert_eq!(response.body_excerpt, "aaaaaaaaaa");
}

#[tokio::test]
async fn a_silent_server_times_out_as_upstream_without_leaking_secrets() {
    let server = Server::start(Behaviour::Silent).await;
    let http = client(OutboundConfig {
        timeout: Duration::from_millis(300),
        ..loopback_config()
    });
    let started = Instant::now();
    let result = http
        .post(&OutboundRequest {
            url: format!("http://127.0.0.1:{}/hook?token=hush-url", server.port()),
            headers: vec![("authorization".into(), "Bearer hush-header".into())],
            body: b"{}".to_vec(),
        })
        .await;
    let elapsed = started.elapsed();
    let message = assert_upstream(result, "silent server");
    assert!(
        elapsed >= Duration::from_millis(300),
        "gave up after {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "gave up only after {elapsed:?}"
    );
    assert!(!message.contains("hush"), "secret in message: {message}");
    assert_eq!(server.received().len(), 1, "the request was sent");
}

#[tokio::test]
async fn redirects_are_answers_and_are_not_followed() {
    let target = Server::answering("200 OK", "", b"moved here").await;
    let location = format!("location: http://127.0.0.1:{}/elsewhere\r\n", target.port());
    let redirecting = Server::answering("302 Found", &location, b"").await;
    let response = loopback_client()
        .post(&request(format!(
            "http://127.0.0.1:{}/hook",
            redirecting.port()
        )))
        .await
        .unwrap();
    assert_eq!(response.status, 302);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(redirecting.received().len(), 1);
    assert_eq!(target.connections(), 0, "the redirect must not be followed");
}

#[tokio::test]
async fn a_closed_port_is_upstream() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let message = assert_upstream(
        loopback_client()
            .post(&request(format!("http://127.0.0.1:{port}/")))
            .await,
        "closed port",
    );
    assert!(message.contains("127.0.0.1"), "{message}");
}

#[tokio::test]
async fn an_unknown_host_name_is_upstream() {
    let http = default_client();
    let url = "http://no-such-host.invalid/hook";
    assert_upstream(http.check_target(url).await, "check_target");
    assert_upstream(http.post(&request(url.to_owned())).await, "post");
}

#[tokio::test]
async fn a_bad_header_is_named_without_its_value() {
    let server = Server::answering("200 OK", "", b"").await;
    let result = loopback_client()
        .post(&OutboundRequest {
            url: format!("http://127.0.0.1:{}/", server.port()),
            headers: vec![("x-secret".into(), "line\nbreak-hush".into())],
            body: vec![],
        })
        .await;
    match result {
        Err(RegistryError::Unsupported(m)) => {
            assert!(m.contains("x-secret") && !m.contains("hush"), "{m}")
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
    assert_eq!(server.connections(), 0);
}
