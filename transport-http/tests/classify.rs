//! Whether a failed send *may* have reached the payment system decides whether it may ever be
//! made again (the resend rule): only a request refused before a byte was written is "not
//! delivered". Each case against a real loopback socket.

use protopay_engine::Md5Key;
use protopay_engine::wire::{Endpoint, Envelope};
use protopay_engine::{Transport, TransportError};
use protopay_transport_http::HttpTransport;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn envelope() -> Envelope {
    Envelope::request("APP001", "{}".into(), "20261129120000000".into(), &Md5Key::new("k"))
}

fn transport(addr: std::net::SocketAddr, request: Duration) -> HttpTransport {
    HttpTransport::new(&format!("http://{addr}"), Duration::from_secs(2), request, 1024).unwrap()
}

/// A server that answers each connection with `respond`, after reading the whole request.
async fn server(respond: impl Fn() -> Option<&'static [u8]> + Send + 'static) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let reply = respond();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                // Read the whole request: headers, then the envelope's JSON to its last brace.
                while !(seen.windows(4).any(|w| w == b"\r\n\r\n") && seen.ends_with(b"}")) {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                match reply {
                    Some(bytes) => {
                        let _ = socket.write_all(bytes).await;
                        // Closing here ends a reply shorter than it said: a reset mid-body.
                    }
                    None => {
                        // Accepted and read, never answered.
                        std::future::pending::<()>().await;
                    }
                }
            });
        }
    });
    addr
}

fn is_maybe_delivered(result: Result<Vec<u8>, TransportError>) -> bool {
    matches!(result, Err(TransportError::MaybeDelivered { .. }))
}

#[tokio::test]
async fn a_refused_connection_is_not_delivered() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener); // nothing listens there now
    let result = transport(addr, Duration::from_secs(2))
        .call(Endpoint::Outpay, &envelope())
        .await;
    assert!(matches!(result, Err(TransportError::NotDelivered { .. })), "{result:?}");
}

#[tokio::test]
async fn a_request_accepted_and_never_answered_may_have_been_delivered() {
    let addr = server(|| None).await;
    let result = transport(addr, Duration::from_millis(300))
        .call(Endpoint::Outpay, &envelope())
        .await;
    assert!(is_maybe_delivered(result));
}

#[tokio::test]
async fn a_500_may_have_been_delivered() {
    let addr = server(|| Some(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n")).await;
    let result = transport(addr, Duration::from_secs(2))
        .call(Endpoint::Outpay, &envelope())
        .await;
    assert!(is_maybe_delivered(result));
}

#[tokio::test]
async fn a_reply_cut_mid_body_may_have_been_delivered() {
    let addr = server(|| Some(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"code\":")).await;
    let result = transport(addr, Duration::from_secs(2))
        .call(Endpoint::Outpay, &envelope())
        .await;
    assert!(is_maybe_delivered(result));
}

#[tokio::test]
async fn a_reply_over_the_limit_may_have_been_delivered() {
    static BIG: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
        let mut r = b"HTTP/1.1 200 OK\r\ncontent-length: 4096\r\n\r\n".to_vec();
        r.extend(std::iter::repeat_n(b'x', 4096));
        r
    });
    let addr = server(|| Some(BIG.as_slice())).await;
    let result = transport(addr, Duration::from_secs(2))
        .call(Endpoint::Outpay, &envelope())
        .await;
    assert!(is_maybe_delivered(result));
}

#[tokio::test]
async fn a_whole_reply_is_delivered() {
    let addr = server(|| Some(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")).await;
    let result = transport(addr, Duration::from_secs(2))
        .call(Endpoint::Outpay, &envelope())
        .await;
    assert_eq!(result.unwrap(), b"{}");
}
