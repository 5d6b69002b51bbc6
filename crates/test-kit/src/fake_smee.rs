//! A fake smee server for tests: a real HTTP server on 127.0.0.1 that serves
//! one channel's Server-Sent Events the way smee.io does. A GET with
//! `Accept: text/event-stream` (exactly that value, like smee) opens a stream
//! that starts with a `ready` event, gets `ping` events as keep-alives, and
//! gets every published delivery as an unnamed (`message`) event whose data
//! is the delivery's JSON (lower-case headers beside `body`).
//!
//! `stop` ends every open stream and frees the port; `start_on` brings the
//! server back on the same address, which is how tests restart it mid-stream.
//!
//! Include it from a test file with
//! `#[path = "support/fake_smee.rs"] mod fake_smee;`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::StreamExt;
use warp::sse::Event;
use warp::Filter;

/// The channel id the fake serves.
pub const CHANNEL: &str = "ember-ci-test-channel";
/// Far more often than smee's 30 s, so every test stream sees pings.
const PING_INTERVAL: Duration = Duration::from_millis(250);
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// One SSE event before warp renders it (warp's `Event` cannot be cloned
/// for broadcasting).
#[derive(Debug, Clone)]
struct Frame {
    id: u64,
    /// `event:` field; None for smee's deliveries, which use the default `message`.
    name: Option<&'static str>,
    data: String,
}

impl Frame {
    fn into_event(self) -> Event {
        let event = Event::default().id(self.id.to_string()).data(self.data);
        match self.name {
            Some(name) => event.event(name),
            None => event,
        }
    }
}

/// The open streams; `is_stopping` is checked under the same lock so no
/// stream can open once `stop` has begun.
#[derive(Default)]
struct Streams {
    senders: Vec<mpsc::UnboundedSender<Frame>>,
    is_stopping: bool,
}

#[derive(Default)]
struct Shared {
    streams: Mutex<Streams>,
    /// Streams opened since this server started.
    opened: AtomicUsize,
    /// smee numbers its events per connection; one counter is close enough.
    next_event_id: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Streams> {
        self.streams.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn frame(&self, name: Option<&'static str>, data: String) -> Frame {
        Frame {
            id: self.next_event_id.fetch_add(1, Ordering::Relaxed),
            name,
            data,
        }
    }

    /// Sends to every open stream; returns how many took it.
    fn broadcast(&self, frame: &Frame) -> usize {
        let mut streams = self.lock();
        // Streams whose client went away are dropped here.
        streams.senders.retain(|sender| !sender.is_closed());
        streams
            .senders
            .iter()
            .filter(|sender| sender.send(frame.clone()).is_ok())
            .count()
    }
}

/// The fake server; stops when dropped.
pub struct FakeSmee {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    pinger: JoinHandle<()>,
}

impl FakeSmee {
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().expect("valid address")).await
    }

    /// Starts on `addr`, e.g. the address of a server stopped a moment ago.
    pub async fn start_on(addr: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("binding the fake smee to {addr}: {e}"));
        let addr = listener.local_addr().expect("bound socket has an address");
        let shared = Arc::new(Shared::default());

        let handler_shared = Arc::clone(&shared);
        let channel = warp::get()
            .and(warp::path(CHANNEL))
            .and(warp::path::end())
            .and(warp::header::exact("accept", "text/event-stream"))
            .map(move || open_stream(&handler_shared));
        let (shutdown, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(
            warp::serve(channel)
                .incoming(listener)
                .graceful(async {
                    let _ = stopped.await;
                })
                .run(),
        );

        let ping_shared = Arc::clone(&shared);
        let pinger = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(PING_INTERVAL);
            loop {
                ticker.tick().await;
                let ping = ping_shared.frame(Some("ping"), "{}".to_string());
                ping_shared.broadcast(&ping);
            }
        });
        Self {
            addr,
            shared,
            shutdown: Some(shutdown),
            server: Some(server),
            pinger,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The channel URL to configure as SMEE_URL.
    pub fn url(&self) -> String {
        format!("http://{}/{CHANNEL}", self.addr)
    }

    /// Streams opened since this server started.
    pub fn streams_opened(&self) -> usize {
        self.shared.opened.load(Ordering::SeqCst)
    }

    /// Streams whose client is still connected.
    pub fn open_streams(&self) -> usize {
        let mut streams = self.shared.lock();
        streams.senders.retain(|sender| !sender.is_closed());
        streams.senders.len()
    }

    /// Publishes a delivery (smee JSON form) to every open stream, as smee
    /// does when GitHub posts to the channel; returns how many received it.
    pub fn publish(&self, delivery: &Value) -> usize {
        let data = serde_json::to_string(delivery).expect("a JSON value serialises");
        let message = self.shared.frame(None, data);
        self.shared.broadcast(&message)
    }

    /// Publishes a delivery as the exact message text smee sends (smee
    /// re-prints GitHub's JSON with `JSON.stringify`: `\u001b` for GitHub's
    /// `\u001B`, and so on); returns how many received it.
    pub fn publish_text(&self, data: &str) -> usize {
        let message = self.shared.frame(None, data.to_string());
        self.shared.broadcast(&message)
    }

    /// Waits until at least `count` streams are open.
    pub async fn wait_for_streams(&self, count: usize, timeout: Duration) -> Result<(), String> {
        let met = crate::wait::poll_until(timeout, POLL_INTERVAL, || {
            std::future::ready((self.open_streams() >= count).then_some(()))
        })
        .await;
        met.ok_or_else(|| {
            format!(
                "fake smee: {} open streams after {timeout:?}, wanted {count} ({} opened in all)",
                self.open_streams(),
                self.streams_opened()
            )
        })
    }

    /// Ends every open stream (clients see the stream end), stops listening
    /// and returns the address, free to be bound again.
    pub async fn stop(mut self) -> SocketAddr {
        self.shut_down();
        if let Some(server) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(30), server)
                .await
                .expect("the fake smee stops within 30 s")
                .expect("the fake smee server task did not panic");
        }
        self.addr
    }

    fn shut_down(&mut self) {
        {
            let mut streams = self.shared.lock();
            streams.is_stopping = true;
            // Dropping the senders ends each stream's body.
            streams.senders.clear();
        }
        self.pinger.abort();
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

impl Drop for FakeSmee {
    fn drop(&mut self) {
        self.shut_down();
    }
}

fn open_stream(shared: &Arc<Shared>) -> warp::reply::Response {
    use warp::Reply;
    let (sender, receiver) = mpsc::unbounded_channel();
    {
        let mut streams = shared.lock();
        if streams.is_stopping {
            return warp::http::StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        let ready = shared.frame(Some("ready"), "{}".to_string());
        sender.send(ready).expect("the receiver is alive");
        streams.senders.push(sender);
    }
    shared.opened.fetch_add(1, Ordering::SeqCst);
    let events =
        UnboundedReceiverStream::new(receiver).map(|frame| Ok::<_, Infallible>(frame.into_event()));
    warp::sse::reply(events).into_response()
}
