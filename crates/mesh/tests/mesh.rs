//! The mesh between real sockets on loopback: connections pinned to listed keys,
//! delivery both ways, goodbyes, and what a hostile or slow peer can and cannot do.

use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use futures::SinkExt;
use mpc_mesh::frame::{Frame, MAX_FRAME_BYTES, PROTOCOL_VERSION, codec};
use mpc_mesh::tls::{client_config, peer_name};
use mpc_mesh::{Inbound, Mesh, MeshConfig, PeerInfo, SendError};
use tokio::sync::mpsc;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn key(index: u8) -> SigningKey {
    SigningKey::from_bytes(&[index + 10; 32])
}

fn participants(count: u8) -> Vec<PeerInfo> {
    (0..count)
        .map(|index| PeerInfo {
            account_id: format!("node{index}.sandbox"),
            addr: format!("127.0.0.1:{}", free_port()),
            public_key: key(index).verifying_key().to_bytes(),
        })
        .collect()
}

async fn start(index: u8, list: &[PeerInfo]) -> (Mesh, mpsc::Receiver<Inbound>) {
    let config = MeshConfig {
        account_id: list[index as usize].account_id.clone(),
        key: key(index),
        listen: list[index as usize].addr.parse().unwrap(),
        participants: list.to_vec(),
    };
    Mesh::start(config, CancellationToken::new()).await.unwrap()
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(10), "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_participants_connect_once_per_pair_and_deliver_both_ways() {
    let list = participants(3);
    let mut meshes = Vec::new();
    for index in 0..3 {
        meshes.push(start(index, &list).await);
    }
    wait_until("everyone is connected", || meshes.iter().all(|(mesh, _)| mesh.connected().len() == 2)).await;
    meshes[0].0.send("node2.sandbox", b"hello from 0".to_vec()).await.unwrap();
    meshes[2].0.send("node0.sandbox", b"hello from 2".to_vec()).await.unwrap();
    let to_two = meshes[2].1.recv().await.unwrap();
    assert_eq!(to_two, Inbound { from: "node0.sandbox".into(), payload: b"hello from 0".to_vec() });
    let to_zero = meshes[0].1.recv().await.unwrap();
    assert_eq!(to_zero.from, "node2.sandbox");
    for (mesh, _) in &meshes {
        assert!(mesh.shutdown(Duration::from_secs(2)).await, "every task ends");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_participant_says_goodbye_and_its_peers_notice_at_once() {
    let list = participants(2);
    let (zero, _zero_inbox) = start(0, &list).await;
    let (one, _one_inbox) = start(1, &list).await;
    wait_until("connected", || zero.connected().len() == 1 && one.connected().len() == 1).await;
    let stopped = Instant::now();
    assert!(one.shutdown(Duration::from_secs(2)).await);
    wait_until("node0 sees node1 gone", || zero.connected().is_empty()).await;
    assert!(
        stopped.elapsed() < Duration::from_secs(2),
        "the goodbye, not the five-second silence, closed it: {:?}",
        stopped.elapsed()
    );
    assert_eq!(zero.send("node1.sandbox", vec![1]).await, Err(SendError::NotConnected("node1.sandbox".into())));
    zero.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_with_a_key_the_network_does_not_list_is_refused() {
    let list = participants(2);
    let (zero, _inbox) = start(0, &list).await;
    // An impostor holds node1's account and address but its own key.
    let mut impostor_list = list.clone();
    impostor_list[1].public_key = SigningKey::from_bytes(&[99; 32]).verifying_key().to_bytes();
    let config = MeshConfig {
        account_id: "node1.sandbox".into(),
        key: SigningKey::from_bytes(&[99; 32]),
        listen: list[1].addr.parse().unwrap(),
        participants: impostor_list,
    };
    let (impostor, _impostor_inbox) = Mesh::start(config, CancellationToken::new()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(zero.connected().is_empty(), "node0 refused the impostor's certificate");
    assert!(impostor.connected().is_empty());
    impostor.shutdown(Duration::from_secs(2)).await;
    zero.shutdown(Duration::from_secs(2)).await;
}

type RawConnection =
    Framed<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, tokio_util::codec::LengthDelimitedCodec>;

/// Connects to `peer` as participant `index` of `list` with TLS and sends its hello;
/// returns the framed connection for the test to misbehave on.
async fn connect_raw(index: u8, list: &[PeerInfo], peer: &PeerInfo) -> RawConnection {
    connect_speaking(index, list, peer, PROTOCOL_VERSION).await
}

/// Like [`connect_raw`], with the hello of protocol `version`.
async fn connect_speaking(index: u8, list: &[PeerInfo], peer: &PeerInfo, version: u32) -> RawConnection {
    let connector = tokio_rustls::TlsConnector::from(client_config(&key(index), peer.public_key).unwrap());
    let stream = tokio::net::TcpStream::connect(&peer.addr).await.unwrap();
    let tls = connector.connect(peer_name(), stream).await.unwrap();
    let mut framed = Framed::new(tls, codec());
    let hello = Frame::Hello { version, account_id: list[index as usize].account_id.clone() };
    framed.send(hello.encode()).await.unwrap();
    framed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_speaking_another_protocol_version_or_claiming_another_account_is_refused() {
    use futures::StreamExt;
    let list = participants(3);
    let (two, _inbox) = start(2, &list).await;
    let mut other_version = connect_speaking(0, &list, &list[2], PROTOCOL_VERSION + 1).await;
    // The node sends its own hello, then closes.
    let _ = other_version.next().await;
    assert!(matches!(other_version.next().await, None | Some(Err(_))), "closed after the hello");
    assert!(two.connected().is_empty());
    // node1's key with node0's account in the hello.
    let mut liar = {
        let connector = tokio_rustls::TlsConnector::from(client_config(&key(1), list[2].public_key).unwrap());
        let stream = tokio::net::TcpStream::connect(&list[2].addr).await.unwrap();
        Framed::new(connector.connect(peer_name(), stream).await.unwrap(), codec())
    };
    liar.send(Frame::Hello { version: PROTOCOL_VERSION, account_id: "node0.sandbox".into() }.encode()).await.unwrap();
    let _ = liar.next().await;
    assert!(matches!(liar.next().await, None | Some(Err(_))), "closed after the hello");
    assert!(!two.connected().contains("node1.sandbox"));
    two.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_peer_sending_garbage_or_an_oversized_frame_loses_its_connection_not_the_node() {
    let list = participants(3);
    // node2 accepts from node0 and node1 (they sort first and dial it).
    let (two, mut inbox) = start(2, &list).await;
    let mut raw = connect_raw(0, &list, &list[2]).await;
    wait_until("node2 sees node0", || two.connected().contains("node0.sandbox")).await;
    raw.send(bytes::Bytes::from_static(b"\xff\xfenot a frame")).await.unwrap();
    wait_until("node2 dropped the garbage sender", || two.connected().is_empty()).await;

    let mut raw = connect_raw(1, &list, &list[2]).await;
    wait_until("node2 sees node1", || two.connected().contains("node1.sandbox")).await;
    let oversized = vec![0u8; MAX_FRAME_BYTES + 1];
    let mut sender = Framed::new(raw.get_mut(), tokio_util::codec::LengthDelimitedCodec::new());
    let _ = sender.send(bytes::Bytes::from(oversized)).await;
    wait_until("node2 dropped the oversized sender", || two.connected().is_empty()).await;
    assert!(inbox.try_recv().is_err(), "nothing reached the layer above");

    let mut honest = connect_raw(0, &list, &list[2]).await;
    honest.send(Frame::Data(b"still here".to_vec()).encode()).await.unwrap();
    let delivered = tokio::time::timeout(Duration::from_secs(5), inbox.recv()).await.unwrap().unwrap();
    assert_eq!(delivered.payload, b"still here");
    two.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_does_not_read_gets_backpressure_not_unbounded_queues() {
    let list = participants(2);
    let (zero, _zero_inbox) = start(0, &list).await;
    // node1's layer above never reads: its inbound queue fills, its connection stops
    // reading, the TCP window closes, node0's queue fills, and node0's sends time out.
    let (one, _never_read) = start(1, &list).await;
    wait_until("connected", || zero.connected().len() == 1).await;
    let payload = vec![7u8; 64 * 1024];
    let started = Instant::now();
    let mut sent = 0usize;
    let refused = loop {
        match zero.send("node1.sandbox", payload.clone()).await {
            Ok(()) => sent += 1,
            Err(error) => break error,
        }
        assert!(started.elapsed() < Duration::from_secs(60), "sends never stopped");
    };
    assert_eq!(refused, SendError::Backpressure("node1.sandbox".into()));
    assert!(sent < 4096, "a bounded number of messages was taken: {sent}");
    zero.shutdown(Duration::from_secs(2)).await;
    one.shutdown(Duration::from_secs(2)).await;
}
