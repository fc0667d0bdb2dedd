//! The participants' mesh: one mutual-TLS connection between every two participants,
//! each peer pinned by the P2P key the network lists for it, carrying opaque messages
//! for the layer above. It knows peers and bytes, not what the bytes mean.
//!
//! - Who dials: of two participants, the one whose account sorts first dials the other,
//!   so there is one connection per pair; a lost connection is dialed again with
//!   backoff (100 ms, doubling to 2 s).
//! - The handshake: TLS 1.3 with a self-signed certificate of each side's P2P key, a
//!   peer accepted only with its listed key ([`tls`]), then a [`frame::Frame::Hello`]
//!   each way with the protocol version and the account.
//! - Liveness: a ping every second; a connection silent for five seconds is closed and
//!   dialed again. A participant that stops sends [`frame::Frame::Goodbye`], and its
//!   peers close at once instead of waiting for the silence.
//! - Each connection reads and writes side by side: a peer slow to read never stops
//!   this side from reading.
//! - Bounds: frames of at most 1 MiB; a queue of 256 messages to each peer, whose
//!   sender waits (up to a bound) when it is full, and one of 1024 from all peers, which
//!   the connections stop reading when it is full: a slow peer or a slow reader gets
//!   backpressure, never memory growth.

pub mod frame;
pub mod tls;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::frame::{Frame, PROTOCOL_VERSION, codec};
use crate::tls::{PeerKey, certificate_key, client_config, peer_name, server_config};

/// Messages queued to one peer before a sender waits.
const OUTBOUND_QUEUE: usize = 256;
/// Messages from all peers queued for the layer above before the connections stop
/// reading.
const INBOUND_QUEUE: usize = 1024;
/// How long a sender waits for room in a peer's queue.
const SEND_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound of a connection's TLS handshake and hello.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// A ping this often.
const PING_INTERVAL: Duration = Duration::from_secs(1);
/// A connection silent this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest pause between dials of a peer.
const LONGEST_REDIAL: Duration = Duration::from_secs(2);
/// How long a stopping connection lets its goodbye go out.
const GOODBYE_GRACE: Duration = Duration::from_millis(100);

/// A participant of the network, as the mesh needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// Its account.
    pub account_id: String,
    /// Where it listens.
    pub addr: String,
    /// Its P2P public key.
    pub public_key: PeerKey,
}

/// What a mesh is started with.
pub struct MeshConfig {
    /// This participant's account.
    pub account_id: String,
    /// This participant's P2P key.
    pub key: SigningKey,
    /// Where to listen.
    pub listen: SocketAddr,
    /// Every participant, this one included.
    pub participants: Vec<PeerInfo>,
}

/// A message from a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    /// The peer's account (the one its key is listed for).
    pub from: String,
    /// What it sent.
    pub payload: Vec<u8>,
}

/// Why the mesh cannot start.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// This participant is not in the list.
    #[error("{0} is not a participant of the network")]
    NotAParticipant(String),
    /// This participant's key is not the one listed for it.
    #[error("the P2P key of this node is not the one the network lists for {0}")]
    NotTheListedKey(String),
    /// The listening address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    /// TLS cannot be set up.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// Why a message was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// No connection to that peer now.
    #[error("not connected to {0}")]
    NotConnected(String),
    /// The peer's queue stayed full for the whole bound: it reads too slowly.
    #[error("{0} is not reading (its queue stayed full)")]
    Backpressure(String),
}

/// The mesh; cheap to clone.
#[derive(Clone)]
pub struct Mesh {
    inner: Arc<Inner>,
}

struct Inner {
    me: String,
    key: SigningKey,
    peers: BTreeMap<String, PeerInfo>,
    links: Mutex<HashMap<String, Link>>,
    connected: watch::Sender<BTreeSet<String>>,
    inbound: mpsc::Sender<Inbound>,
    cancel: CancellationToken,
    tasks: TaskTracker,
    next_link: AtomicU64,
}

/// The current connection to a peer.
struct Link {
    id: u64,
    outbound: mpsc::Sender<Frame>,
}

impl Mesh {
    /// Binds `config.listen`, starts accepting and dialing, and returns the mesh and the
    /// messages its peers send. Everything stops when `cancel` is cancelled or
    /// [`Mesh::shutdown`] is called.
    pub async fn start(
        config: MeshConfig,
        cancel: CancellationToken,
    ) -> Result<(Mesh, mpsc::Receiver<Inbound>), MeshError> {
        let me = config
            .participants
            .iter()
            .find(|peer| peer.account_id == config.account_id)
            .ok_or_else(|| MeshError::NotAParticipant(config.account_id.clone()))?;
        if me.public_key != config.key.verifying_key().to_bytes() {
            return Err(MeshError::NotTheListedKey(config.account_id.clone()));
        }
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| MeshError::Listen { addr: config.listen, source })?;
        let peers: BTreeMap<String, PeerInfo> = config
            .participants
            .iter()
            .filter(|peer| peer.account_id != config.account_id)
            .map(|peer| (peer.account_id.clone(), peer.clone()))
            .collect();
        let acceptor = tokio_rustls::TlsAcceptor::from(server_config(
            &config.key,
            peers.values().map(|peer| peer.public_key).collect(),
        )?);
        let (inbound, receiver) = mpsc::channel(INBOUND_QUEUE);
        let inner = Arc::new(Inner {
            me: config.account_id,
            key: config.key,
            peers,
            links: Mutex::new(HashMap::new()),
            connected: watch::channel(BTreeSet::new()).0,
            inbound,
            cancel,
            tasks: TaskTracker::new(),
            next_link: AtomicU64::new(0),
        });
        inner.tasks.spawn(accept(inner.clone(), listener, acceptor));
        for peer in inner.peers.values().filter(|peer| inner.me < peer.account_id) {
            inner.tasks.spawn(dial(inner.clone(), peer.clone()));
        }
        tracing::info!(account = %inner.me, listen = %config.listen, peers = inner.peers.len(), "mesh started");
        Ok((Mesh { inner }, receiver))
    }

    /// This participant's account.
    pub fn me(&self) -> &str {
        &self.inner.me
    }

    /// Sends `payload` to `to`; waits (up to a bound) while the peer's queue is full.
    pub async fn send(&self, to: &str, payload: Vec<u8>) -> Result<(), SendError> {
        let outbound = self.inner.link_to(to).ok_or_else(|| SendError::NotConnected(to.to_owned()))?;
        match tokio::time::timeout(SEND_TIMEOUT, outbound.send(Frame::Data(payload))).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(SendError::NotConnected(to.to_owned())),
            Err(_) => Err(SendError::Backpressure(to.to_owned())),
        }
    }

    /// The peers connected now.
    pub fn connected(&self) -> BTreeSet<String> {
        self.inner.connected.borrow().clone()
    }

    /// The peers connected, told at every change.
    pub fn watch_connected(&self) -> watch::Receiver<BTreeSet<String>> {
        self.inner.connected.subscribe()
    }

    /// Tells every connected peer that this participant stops (each connection sends a
    /// goodbye as it closes), and waits up to `bound` for the mesh's tasks; returns
    /// whether they all ended.
    pub async fn shutdown(&self, bound: Duration) -> bool {
        let told = self.connected().len();
        self.inner.cancel.cancel();
        self.inner.tasks.close();
        let ended = tokio::time::timeout(bound, self.inner.tasks.wait()).await.is_ok();
        tracing::info!(account = %self.inner.me, told, ended, "mesh stopped");
        ended
    }
}

impl Inner {
    fn links(&self) -> std::sync::MutexGuard<'_, HashMap<String, Link>> {
        self.links.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn link_to(&self, peer: &str) -> Option<mpsc::Sender<Frame>> {
        self.links().get(peer).map(|link| link.outbound.clone())
    }

    fn publish_connected(&self, links: &HashMap<String, Link>) {
        let connected: BTreeSet<String> = links.keys().cloned().collect();
        self.connected.send_if_modified(|current| {
            let changed = *current != connected;
            *current = connected;
            changed
        });
    }

    /// Makes a new connection the peer's link; an older one is dropped (its task ends).
    fn register(&self, peer: &str, outbound: mpsc::Sender<Frame>) -> u64 {
        let id = self.next_link.fetch_add(1, Ordering::Relaxed);
        let mut links = self.links();
        links.insert(peer.to_owned(), Link { id, outbound });
        self.publish_connected(&links);
        id
    }

    fn unregister(&self, peer: &str, id: u64) {
        let mut links = self.links();
        if links.get(peer).is_some_and(|link| link.id == id) {
            links.remove(peer);
        }
        self.publish_connected(&links);
    }

    fn account_of(&self, key: &PeerKey) -> Option<&PeerInfo> {
        self.peers.values().find(|peer| peer.public_key == *key)
    }
}

/// Accepts connections until cancelled; each is served as a task of its own.
async fn accept(inner: Arc<Inner>, listener: TcpListener, acceptor: tokio_rustls::TlsAcceptor) {
    loop {
        let accepted = tokio::select! {
            _ = inner.cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, addr) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!(error = %err, "mesh: accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let (inner, acceptor) = (inner.clone(), acceptor.clone());
        inner.tasks.clone().spawn(async move {
            let _ = stream.set_nodelay(true);
            let handshake = async {
                let tls = acceptor.accept(stream).await.map_err(|err| err.to_string())?;
                let key = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|certs| certs.first())
                    .and_then(certificate_key)
                    .ok_or("no peer certificate")?;
                let peer = inner.account_of(&key).ok_or("unlisted key")?.clone();
                Ok::<_, String>((tls, peer))
            };
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                Ok(Ok((tls, peer))) => {
                    let _ = run_link(inner, tls, peer).await;
                }
                Ok(Err(reason)) => tracing::warn!(%addr, %reason, "mesh: refused a connection"),
                Err(_) => tracing::warn!(%addr, "mesh: refused a connection: the handshake took too long"),
            }
        });
    }
}

/// Dials `peer` until cancelled, again after every lost connection, with backoff.
async fn dial(inner: Arc<Inner>, peer: PeerInfo) {
    let mut pause = Duration::from_millis(100);
    let config = match client_config(&inner.key, peer.public_key) {
        Ok(config) => tokio_rustls::TlsConnector::from(config),
        Err(err) => {
            tracing::error!(peer = %peer.account_id, error = %err, "mesh: cannot dial");
            return;
        }
    };
    loop {
        if inner.cancel.is_cancelled() {
            return;
        }
        let connected = async {
            let stream = TcpStream::connect(&peer.addr).await.map_err(|err| err.to_string())?;
            let _ = stream.set_nodelay(true);
            config.connect(peer_name(), stream).await.map_err(|err| err.to_string())
        };
        let lived = match tokio::time::timeout(HANDSHAKE_TIMEOUT, connected).await {
            Ok(Ok(tls)) => run_link(inner.clone(), tls, peer.clone()).await,
            Ok(Err(reason)) => {
                tracing::debug!(peer = %peer.account_id, %reason, "mesh: dial failed");
                Duration::ZERO
            }
            Err(_) => Duration::ZERO,
        };
        pause = if lived > IDLE_TIMEOUT { Duration::from_millis(100) } else { (pause * 2).min(LONGEST_REDIAL) };
        tokio::select! {
            _ = inner.cancel.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// Why a connection ended.
#[derive(Debug)]
enum Ended {
    Stopping,
    Replaced,
    PeerSaidGoodbye,
    Silent,
    Lost(String),
    Protocol(String),
}

/// Exchanges hellos over an established TLS stream with `peer`, then carries frames until
/// the connection ends; returns how long it lived.
async fn run_link<S: AsyncRead + AsyncWrite + Send + Unpin + 'static>(
    inner: Arc<Inner>,
    tls: S,
    peer: PeerInfo,
) -> Duration {
    let started = tokio::time::Instant::now();
    let mut framed = Framed::new(tls, codec());
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, exchange_hellos(&mut framed, &inner.me, &peer.account_id)).await {
        Ok(Ok(())) => {}
        Ok(Err(reason)) => {
            tracing::warn!(peer = %peer.account_id, %reason, "mesh: refused a connection");
            return started.elapsed();
        }
        Err(_) => {
            tracing::warn!(peer = %peer.account_id, "mesh: refused a connection: no hello in time");
            return started.elapsed();
        }
    }
    let (outbound, queue) = mpsc::channel(OUTBOUND_QUEUE);
    let id = inner.register(&peer.account_id, outbound);
    tracing::info!(peer = %peer.account_id, "mesh: connected");
    let (sink, stream) = framed.split();
    // Reading and writing run side by side, so a peer that is slow to read never stops
    // this side from reading (two peers blocked writing to each other would deadlock).
    let ended = tokio::select! {
        ended = write_frames(sink, queue, inner.cancel.clone()) => ended,
        ended = read_frames(stream, &inner, &peer.account_id) => ended,
    };
    inner.unregister(&peer.account_id, id);
    match &ended {
        Ended::Stopping | Ended::Replaced => {
            tracing::debug!(peer = %peer.account_id, reason = ?ended, "mesh: connection closed")
        }
        Ended::PeerSaidGoodbye => tracing::info!(peer = %peer.account_id, "mesh: peer stopped (goodbye)"),
        Ended::Silent => tracing::warn!(peer = %peer.account_id, "mesh: peer silent, connection closed"),
        Ended::Lost(reason) => tracing::info!(peer = %peer.account_id, %reason, "mesh: connection lost"),
        Ended::Protocol(reason) => {
            tracing::warn!(peer = %peer.account_id, %reason, "mesh: peer broke the protocol, connection closed")
        }
    }
    started.elapsed()
}

/// Sends this side's hello and checks the peer's: the same protocol version, and the
/// account its key is listed for.
async fn exchange_hellos<S: AsyncRead + AsyncWrite + Unpin>(
    framed: &mut Framed<S, LengthDelimitedCodec>,
    me: &str,
    expected: &str,
) -> Result<(), String> {
    let hello = Frame::Hello { version: PROTOCOL_VERSION, account_id: me.to_owned() };
    framed.send(hello.encode()).await.map_err(|err| err.to_string())?;
    let bytes = framed.next().await.ok_or("closed before its hello")?.map_err(|err| err.to_string())?;
    match Frame::decode(&bytes)? {
        Frame::Hello { version, account_id } if version != PROTOCOL_VERSION => {
            Err(format!("{account_id} speaks protocol {version}, this node {PROTOCOL_VERSION}"))
        }
        Frame::Hello { account_id, .. } if account_id != expected => {
            Err(format!("the key of {expected} says it is {account_id}"))
        }
        Frame::Hello { .. } => Ok(()),
        other => Err(format!("expected a hello, got {}", other.kind())),
    }
}

/// Writes the queued frames and a ping every [`PING_INTERVAL`]; when the mesh stops,
/// a goodbye (within [`GOODBYE_GRACE`]), so the peer closes at once.
async fn write_frames<S: AsyncWrite + Unpin>(
    mut sink: SplitSink<Framed<S, LengthDelimitedCodec>, bytes::Bytes>,
    mut queue: mpsc::Receiver<Frame>,
    cancel: CancellationToken,
) -> Ended {
    let mut ping = tokio::time::interval(PING_INTERVAL);
    loop {
        let frame = tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                let goodbye = async {
                    sink.send(Frame::Goodbye.encode()).await?;
                    sink.close().await
                };
                let _ = tokio::time::timeout(GOODBYE_GRACE, goodbye).await;
                return Ended::Stopping;
            }
            next = queue.recv() => match next {
                Some(frame) => frame,
                None => return Ended::Replaced,
            },
            _ = ping.tick() => Frame::Ping,
        };
        if let Err(err) = sink.send(frame.encode()).await {
            return Ended::Lost(err.to_string());
        }
    }
}

/// Reads frames and hands the data to the layer above, waiting while its queue is full
/// (backpressure: the peer's writes then wait for this side's TCP window).
async fn read_frames<S: AsyncRead + Unpin>(
    mut stream: SplitStream<Framed<S, LengthDelimitedCodec>>,
    inner: &Inner,
    peer: &str,
) -> Ended {
    loop {
        let bytes = match tokio::time::timeout(IDLE_TIMEOUT, stream.next()).await {
            Err(_) => return Ended::Silent,
            Ok(None) => return Ended::Lost("closed by the peer".into()),
            Ok(Some(Err(err))) => return Ended::Protocol(err.to_string()),
            Ok(Some(Ok(bytes))) => bytes,
        };
        match Frame::decode(&bytes) {
            Ok(Frame::Data(payload)) => {
                let message = Inbound { from: peer.to_owned(), payload };
                tokio::select! {
                    _ = inner.cancel.cancelled() => return Ended::Stopping,
                    sent = inner.inbound.send(message) => if sent.is_err() { return Ended::Stopping },
                }
            }
            Ok(Frame::Ping) => {}
            Ok(Frame::Goodbye) => return Ended::PeerSaidGoodbye,
            Ok(Frame::Hello { .. }) => return Ended::Protocol("a second hello".into()),
            Err(reason) => return Ended::Protocol(reason),
        }
    }
}
