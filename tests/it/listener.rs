//! The HTTPS listener against clients that misbehave: bodies over the
//! limit (HTTP/1.1 with Content-Length or chunked, HTTP/2), slow headers,
//! idle connections and more connections than the hub takes.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::harness::{Db, TestHub};

/// Twice axum's own default limit and 32 times the ACME one: over every
/// limit the hub has.
const OVERSIZED: usize = 2 * 1024 * 1024 + 1;

/// A TLS connection to the hub offering `alpn`.
async fn tls(t: &TestHub, alpn: &[&[u8]]) -> std::io::Result<TlsStream<TcpStream>> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(&t.root_pem).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let addr = t.server.as_ref().unwrap().local_addr;
    let tcp = TcpStream::connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await
}

/// What a client read back.
#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

impl Answer {
    /// The problem type (ACME) or the error (admin API) in the body.
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// Reads one HTTP/1.1 response with a Content-Length body.
async fn read_h1<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<Answer> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "closed before a whole response head: {:?}",
                    String::from_utf8_lossy(&buffer)
                ),
            ));
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
    let status = head[9..12].parse().unwrap();
    let header = |name: &str| {
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
    };
    let length: usize = header("content-length")
        .expect("a content-length")
        .parse()
        .unwrap();
    let mut body = buffer[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(Answer {
        status,
        content_type: header("content-type").unwrap_or_default(),
        body: String::from_utf8_lossy(&body).to_string(),
    })
}

/// One oversized POST as naive clients send it (Python's http.client,
/// curl without Expect): the whole request written, then the answer read.
async fn h1_oversized(
    t: &TestHub,
    path: &str,
    headers: &[(&str, String)],
    chunked: bool,
) -> Result<Answer, String> {
    let mut stream = tls(t, &[b"http/1.1"]).await.map_err(|e| e.to_string())?;
    let mut head = format!("POST {path} HTTP/1.1\r\nhost: localhost\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let chunk = vec![b'x'; 16 * 1024];
    let mut request = Vec::new();
    if chunked {
        head.push_str("transfer-encoding: chunked\r\n\r\n");
        request.extend_from_slice(head.as_bytes());
        for _ in 0..OVERSIZED.div_ceil(chunk.len()) {
            request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            request.extend_from_slice(&chunk);
            request.extend_from_slice(b"\r\n");
        }
        request.extend_from_slice(b"0\r\n\r\n");
    } else {
        head.push_str(&format!("content-length: {OVERSIZED}\r\n\r\n"));
        request.extend_from_slice(head.as_bytes());
        request.resize(request.len() + OVERSIZED, b'x');
    }
    stream
        .write_all(&request)
        .await
        .map_err(|e| format!("writing the request: {e}"))?;
    stream
        .flush()
        .await
        .map_err(|e| format!("flushing the request: {e}"))?;
    let answer = read_h1(&mut stream)
        .await
        .map_err(|e| format!("reading the answer: {e}"))?;
    // A complete answer leaves the connection usable for the next request.
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .map_err(|e| format!("writing a second request: {e}"))?;
    let next = read_h1(&mut stream)
        .await
        .map_err(|e| format!("reading the second answer: {e}"))?;
    if next.status != 200 {
        return Err(format!("the connection's next request got {next:?}"));
    }
    Ok(answer)
}

/// One oversized POST over HTTP/2, with a Content-Length or as a stream of
/// DATA frames without one.
async fn h2_oversized(
    t: &TestHub,
    path: &str,
    headers: &[(&str, String)],
    with_length: bool,
) -> Result<Answer, String> {
    let stream = tls(t, &[b"h2"]).await.map_err(|e| e.to_string())?;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(connection);
    let mut request = hyper::Request::post(t.url(path));
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let body = if with_length {
        Full::new(Bytes::from(vec![b'x'; OVERSIZED]))
            .map_err(|never: Infallible| match never {})
            .boxed()
    } else {
        let frames = (0..OVERSIZED.div_ceil(16 * 1024))
            .map(|_| Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b'x'; 16 * 1024]))));
        StreamBody::new(futures::stream::iter(frames)).boxed()
    };
    let response = sender
        .send_request(request.body(body).unwrap())
        .await
        .map_err(|e| format!("sending: {e}"))?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("reading the answer's body: {e}"))?
        .to_bytes();
    driver.abort();
    Ok(Answer {
        status,
        content_type,
        body: String::from_utf8_lossy(&body).to_string(),
    })
}

/// A route, the headers a client sends it, and whether its answers are
/// ACME problem documents.
type Route = (&'static str, Vec<(&'static str, String)>, bool);

#[tokio::test]
async fn oversized_bodies_get_a_whole_413_on_every_route_and_protocol() {
    let t = TestHub::start(Db::Sqlite).await;
    let bearer = format!("Bearer {}", t.admin_token());
    let json = "application/json".to_string();
    let routes: Vec<Route> = vec![
        (
            "/acme/default/new-account",
            vec![("content-type", "application/jose+json".into())],
            true,
        ),
        (
            "/api/v1/instances",
            vec![
                ("authorization", bearer.clone()),
                ("content-type", json.clone()),
            ],
            false,
        ),
        (
            "/ui/login",
            vec![(
                "content-type",
                "application/x-www-form-urlencoded".to_string(),
            )],
            false,
        ),
        (
            "/httpreq/default/present",
            vec![
                ("authorization", bearer.clone()),
                ("content-type", json.clone()),
            ],
            false,
        ),
        (
            "/acme-dns/default/update",
            vec![
                ("x-api-user", "someone".into()),
                ("x-api-key", "something".into()),
                ("content-type", json.clone()),
            ],
            false,
        ),
    ];
    for (path, headers, acme) in &routes {
        for way in [
            "HTTP/1.1 length",
            "HTTP/1.1 chunked",
            "HTTP/2 length",
            "HTTP/2 stream",
        ] {
            let answer = match way {
                "HTTP/1.1 length" => h1_oversized(&t, path, headers, false).await,
                "HTTP/1.1 chunked" => h1_oversized(&t, path, headers, true).await,
                "HTTP/2 length" => h2_oversized(&t, path, headers, true).await,
                _ => h2_oversized(&t, path, headers, false).await,
            }
            .unwrap_or_else(|e| panic!("{path} over {way}: no whole answer: {e}"));
            assert_eq!(answer.status, 413, "{path} over {way}: {answer:?}");
            if *acme {
                assert_eq!(
                    answer.content_type, "application/problem+json",
                    "{path} over {way}"
                );
                assert_eq!(
                    answer.json()["type"],
                    "urn:ietf:params:acme:error:malformed",
                    "{path} over {way}: {answer:?}"
                );
            } else {
                assert_eq!(answer.content_type, "application/json", "{path} over {way}");
                assert!(
                    answer.json()["error"]
                        .as_str()
                        .is_some_and(|e| e.contains("bytes")),
                    "{path} over {way}: {answer:?}"
                );
            }
        }
    }
    t.stop().await;
}

/// A hub whose listener gives up quickly.
async fn impatient_hub(tweak: impl FnOnce(&mut acmehub::config::ServerConfig)) -> TestHub {
    TestHub::start_with(Db::Sqlite, |f| {
        f.server.handshake_timeout_secs = 1;
        f.server.header_read_timeout_secs = 1;
        f.server.idle_timeout_secs = 1;
        tweak(&mut f.server);
    })
    .await
}

/// Whether the peer closed `stream` within `within` (reads return end of
/// stream or an error); anything the hub sends first is skipped.
async fn closed_within<S: tokio::io::AsyncRead + Unpin>(stream: &mut S, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    let mut chunk = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn slow_headers_are_cut_off() {
    // Idle connections last longer than the test: only the header timeout
    // can close this one.
    let t = impatient_hub(|s| s.idle_timeout_secs = 30).await;
    let mut stream = tls(&t, &[b"http/1.1"]).await.unwrap();
    let started = Instant::now();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n")
        .await
        .unwrap();
    // One header line every 300 ms, for at most 6 s: slowloris.
    let mut closed = false;
    for i in 0..20 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let line = format!("x-slow-{i}: {i}\r\n");
        if stream.write_all(line.as_bytes()).await.is_err() || stream.flush().await.is_err() {
            closed = true;
            break;
        }
        if closed_within(&mut stream, Duration::from_millis(1)).await {
            closed = true;
            break;
        }
    }
    let took = started.elapsed();
    assert!(closed, "a connection trickling its headers is still open");
    assert!(
        took < Duration::from_millis(2500),
        "the header timeout is 1 s, the connection lasted {took:?}"
    );
    t.stop().await;
}

#[tokio::test]
async fn connections_that_never_finish_the_handshake_are_closed() {
    let t = impatient_hub(|_| {}).await;
    let mut tcp = TcpStream::connect(t.server.as_ref().unwrap().local_addr)
        .await
        .unwrap();
    assert!(
        closed_within(&mut tcp, Duration::from_millis(2500)).await,
        "a connection without a TLS handshake is still open after 2.5 s (timeout 1 s)"
    );
    t.stop().await;
}

#[tokio::test]
async fn idle_connections_are_closed_on_http1_and_http2() {
    // The header timeout is longer than the test: only the idle timeout can
    // close an HTTP/1.1 connection here.
    let t = impatient_hub(|s| s.header_read_timeout_secs = 30).await;

    let mut h1 = tls(&t, &[b"http/1.1"]).await.unwrap();
    h1.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_h1(&mut h1).await.unwrap().status, 200);
    let started = Instant::now();
    assert!(
        closed_within(&mut h1, Duration::from_secs(4)).await,
        "an idle HTTP/1.1 connection is open 4 s after its last answer (idle timeout 1 s)"
    );
    assert!(started.elapsed() >= Duration::from_millis(900));

    let stream = tls(&t, &[b"h2"]).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let driver = tokio::spawn(connection);
    let response = sender
        .send_request(
            hyper::Request::get(t.url("/healthz"))
                .body(http_body_util::Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // The client keeps the connection; the hub ends it (GOAWAY and close).
    let ended = tokio::time::timeout(Duration::from_secs(4), driver).await;
    assert!(
        ended.is_ok(),
        "an idle HTTP/2 connection is open 4 s after its last answer (idle timeout 1 s)"
    );
    t.stop().await;
}

#[tokio::test]
async fn connections_over_the_cap_are_refused_until_one_closes() {
    let t = TestHub::start_with(Db::Sqlite, |f| f.server.max_connections = 2).await;
    let mut first = tls(&t, &[b"http/1.1"]).await.unwrap();
    let mut second = tls(&t, &[b"http/1.1"]).await.unwrap();
    for stream in [&mut first, &mut second] {
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(read_h1(stream).await.unwrap().status, 200);
    }
    // A third is closed at once: its handshake fails, or its first request
    // gets no answer.
    let refused = match tls(&t, &[b"http/1.1"]).await {
        Err(_) => true,
        Ok(mut third) => {
            let _ = third
                .write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n")
                .await;
            read_h1(&mut third).await.is_err()
        }
    };
    assert!(
        refused,
        "a third connection was served with max_connections = 2"
    );
    // The ones already in are still served.
    first
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_h1(&mut first).await.unwrap().status, 200);
    // One leaves; a newcomer gets its place (the hub notices the close
    // within moments: at most 50 tries, 100 ms apart).
    drop(second);
    let mut served = false;
    for _ in 0..50 {
        if let Ok(mut next) = tls(&t, &[b"http/1.1"]).await {
            let asked = next
                .write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n")
                .await;
            if asked.is_ok() && read_h1(&mut next).await.is_ok_and(|a| a.status == 200) {
                served = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served, "no connection was served after one of two closed");
    drop(first);
    t.stop().await;
}

#[tokio::test]
async fn slow_bodies_are_cut_off_with_an_answer() {
    let t = TestHub::start_with(Db::Sqlite, |f| f.server.body_read_timeout_secs = 1).await;
    let stream = tls(&t, &[b"http/1.1"]).await.unwrap();
    let (mut from_hub, mut to_hub) = tokio::io::split(stream);
    let head = format!(
        "POST /api/v1/instances HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{{",
        t.admin_token()
    );
    to_hub.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let reading = tokio::spawn(async move {
        let answer = read_h1(&mut from_hub).await;
        let closed = closed_within(&mut from_hub, Duration::from_secs(1)).await;
        (answer, closed)
    });
    // A space every 300 ms would take 5 minutes: the hub waits 1 s.
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if reading.is_finished() || to_hub.write_all(b" ").await.is_err() {
            break;
        }
        let _ = to_hub.flush().await;
    }
    let (answer, closed) = tokio::time::timeout(Duration::from_secs(3), reading)
        .await
        .expect("a body trickling in is still being waited for")
        .unwrap();
    let answer = answer.expect("an answer to the slow body");
    assert_eq!(answer.status, 400, "{answer:?}");
    assert!(
        answer.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("did not arrive within 1 s")),
        "{answer:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(3000));
    assert!(closed, "the connection of a body too slow stays open");
    t.stop().await;
}

#[tokio::test]
async fn a_client_waiting_to_continue_is_told_413_before_it_sends_the_body() {
    let t = TestHub::start(Db::Sqlite).await;
    let mut stream = tls(&t, &[b"http/1.1"]).await.unwrap();
    // curl's way with large bodies (RFC 9110 §10.1.1): the headers, then
    // the body only after a 100 Continue.
    let head = format!(
        "POST /acme/default/new-account HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/jose+json\r\ncontent-length: {OVERSIZED}\r\nexpect: 100-continue\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(5), read_h1(&mut stream))
        .await
        .expect("no answer before the body")
        .unwrap();
    assert_eq!(answer.status, 413, "{answer:?}");
    assert_eq!(
        answer.json()["type"],
        "urn:ietf:params:acme:error:malformed",
        "{answer:?}"
    );
    t.stop().await;
}
