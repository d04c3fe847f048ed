//! A metered stream whose client stops reading but keeps its connection open is still settled
//! at its cut-off, exactly once, while the connection is open: the server stops polling a body
//! it cannot write, so the settlement cannot wait for the body. Polled again after the
//! cut-off, the body sends nothing more than the receipt. Runs in front of a scripted
//! facilitator, as a body held unread in process and as a real TCP client with a tiny receive
//! window that reads the headers and stops.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use x402_paywall::PaywallConfig;
use x402_proto::U256;
use x402_testkit::MockFacilitator;

mod common;
use common::streams::{
    PER_EVENT, START, only_a_successful_receipt_follows, payment, settle_calls, shop,
    two_events_read,
};

#[tokio::test]
async fn a_body_held_unread_is_settled_at_the_cut_off_and_then_sends_only_the_receipt() {
    let facilitator = Arc::new(MockFacilitator::default());
    let (app, _) = shop(facilitator.clone(), PaywallConfig::default());
    let (_, body) = two_events_read(&app, "/short?events=1000", 40).await;
    // The client reads no more, and the server polls the body no more; it is still held.
    // `/short` times out after 2 s: its streams are cut off 1 s after their payment verified.
    settle_calls(&facilitator, 1).await;
    assert_eq!(
        facilitator.settled_amounts(),
        vec![U256::from(START + 2 * PER_EVENT)]
    );
    // Polled again: the receipt, and the end; none of the other 998 events.
    only_a_successful_receipt_follows(body).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(facilitator.settle_calls(), 1, "settled once");
}

#[tokio::test]
async fn a_tcp_client_that_stops_reading_is_settled_while_its_connection_is_open() {
    let facilitator = Arc::new(MockFacilitator::default());
    let (app, runs) = shop(facilitator.clone(), PaywallConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let served = app.clone();
    tokio::spawn(async move { axum::serve(listener, served).await });

    // Events of 2 MB each, far more than the socket buffers hold: the server's writes block
    // after a few, and it stops polling the body.
    let path = "/short?events=1000&pad=2000000";
    let paying = payment(&app, path, 41).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(address).await.unwrap();
    let request =
        format!("GET {path} HTTP/1.1\r\nhost: {address}\r\npayment-signature: {paying}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = vec![0u8; 1024];
    let read = stream.read(&mut head).await.unwrap();
    assert!(
        head[..read].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        &head[..read]
    );

    // The client reads nothing more and keeps the connection open.
    settle_calls(&facilitator, 1).await;
    let settled = facilitator.settled_amounts();
    assert_eq!(settled.len(), 1);

    // Reading again: what was handed to the socket before the cut-off, then the receipt, and
    // the stream's end; each event sent was charged for.
    let mut rest = head[..read].to_vec();
    let end = b"\r\n0\r\n\r\n";
    let mut buffer = vec![0u8; 1 << 16];
    while !rest.ends_with(end) {
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer))
            .await
            .expect("the stream ends after the cut-off")
            .unwrap();
        assert_ne!(read, 0, "the connection closed before the stream ended");
        rest.extend_from_slice(&buffer[..read]);
    }
    let text = String::from_utf8_lossy(&rest);
    let sent = text.matches("data: {\"n\":").count() as u64;
    assert!((1..1000).contains(&sent), "{sent} events sent");
    assert_eq!(
        settled,
        vec![U256::from((START + PER_EVENT * sent).min(100))],
        "{sent} events sent"
    );
    let (_, receipt) = text
        .rsplit_once("data: ")
        .expect("the receipt event is last");
    let receipt = receipt.split("\n\n").next().unwrap();
    let receipt: x402_proto::SettleResponse =
        x402_proto::decode_header(receipt.as_bytes()).unwrap();
    assert!(receipt.success, "{receipt:?}");
    assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(facilitator.settle_calls(), 1, "settled once");
}
