//! A Jetstream stand-in: a WebSocket server on 127.0.0.1:0 that replays events as text frames, as
//! `jetstream` `subscribe` does. It honours `cursor` (only events with `time_us >= cursor`, in the
//! order given), records every subscription it was asked for, and can break the first connection:
//! drop it abruptly after a number of frames, or go silent (no frames, no pongs) as a stalled server.
//! Later connections replay in full and then stay open and quiet, answering pings.

use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// One event to replay: its cursor position and the exact text of the frame.
#[derive(Debug, Clone)]
pub struct Event {
    pub time_us: i64,
    pub text: String,
}

impl Event {
    /// An event from one line of a recorded `.jsonl` (its `time_us` read from the JSON).
    ///
    /// # Panics
    /// The line is not a Jetstream event.
    pub fn from_line(line: &str) -> Event {
        let v: serde_json::Value = serde_json::from_str(line).expect("a Jetstream event is JSON");
        let time_us = v["time_us"].as_i64().expect("a Jetstream event has time_us");
        Event { time_us, text: line.to_string() }
    }

    /// Every non-blank line of a recorded `.jsonl` file.
    pub fn from_jsonl(path: &std::path::Path) -> Vec<Event> {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        text.lines().filter(|l| !l.trim().is_empty()).map(Event::from_line).collect()
    }
}

/// How the first connection ends (later ones always replay in full, then stay open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum First {
    /// Replay everything, then stay open and quiet.
    Full,
    /// Close the TCP connection without a close handshake after this many frames.
    DropAfter(usize),
    /// After this many frames, send nothing and read nothing (no pongs) until the client leaves.
    SilentAfter(usize),
}

/// What a client asked for in one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub uri: String,
    pub wanted_collections: Vec<String>,
    pub cursor: Option<i64>,
}

struct Shared {
    events: Vec<Event>,
    first: First,
    pace: Duration,
    subscriptions: Mutex<Vec<Subscription>>,
    sent: AtomicUsize,
    stop: CancellationToken,
}

/// The running mock; stops (closing every connection) when dropped.
pub struct MockJetstream {
    pub port: u16,
    shared: Arc<Shared>,
}

impl MockJetstream {
    /// Listens on 127.0.0.1:0. `pace` is a pause after each frame of the first connection (zero: as
    /// fast as possible); later connections replay at full speed.
    pub async fn start(events: Vec<Event>, first: First, pace: Duration) -> MockJetstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local addr").port();
        let shared = Arc::new(Shared {
            events,
            first,
            pace,
            subscriptions: Mutex::new(Vec::new()),
            sent: AtomicUsize::new(0),
            stop: CancellationToken::new(),
        });
        let s = shared.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = s.stop.cancelled() => return,
                    a = listener.accept() => a,
                };
                if let Ok((tcp, _)) = accepted {
                    tokio::spawn(serve(tcp, s.clone()));
                }
            }
        });
        MockJetstream { port, shared }
    }

    /// The `subscribe` endpoint, as `--jetstream-url` takes it.
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/subscribe", self.port)
    }

    /// Every subscription so far, in connection order.
    pub fn subscriptions(&self) -> Vec<Subscription> {
        self.shared.subscriptions.lock().unwrap().clone()
    }

    /// Frames sent so far, over all connections.
    pub fn sent(&self) -> usize {
        self.shared.sent.load(Ordering::SeqCst)
    }
}

impl Drop for MockJetstream {
    fn drop(&mut self) {
        self.shared.stop.cancel();
    }
}

fn parse(uri: &str) -> Subscription {
    let query = uri.split_once('?').map_or("", |(_, q)| q);
    let mut sub = Subscription { uri: uri.to_string(), wanted_collections: Vec::new(), cursor: None };
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("wantedCollections", v)) => sub.wanted_collections.push(v.to_string()),
            Some(("cursor", v)) => sub.cursor = Some(v.parse().expect("cursor is an integer")),
            _ => {}
        }
    }
    sub
}

async fn serve(tcp: TcpStream, shared: Arc<Shared>) {
    let seen = Arc::new(Mutex::new(None::<String>));
    let slot = seen.clone();
    // The shape of the callback (and its large error type) is tungstenite's `Callback`.
    #[allow(clippy::result_large_err)]
    let callback = move |req: &Request, resp: Response| {
        *slot.lock().unwrap() = Some(req.uri().to_string());
        Ok(resp)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else { return };
    let Some(uri) = seen.lock().unwrap().take() else { return };
    let sub = parse(&uri);
    let index = {
        let mut subs = shared.subscriptions.lock().unwrap();
        subs.push(sub.clone());
        subs.len() - 1
    };
    let first = if index == 0 { shared.first } else { First::Full };
    let events = shared.events.iter().filter(|e| sub.cursor.is_none_or(|c| e.time_us >= c));
    for (n, event) in events.enumerate() {
        match first {
            First::DropAfter(k) if n == k => {
                // Read what the client sent (pings) so that closing does not reset the connection
                // before the client has read every frame, then drop without a close handshake.
                let _ = tokio::time::timeout(Duration::from_millis(200), async {
                    while let Some(Ok(_)) = ws.next().await {}
                })
                .await;
                return;
            }
            First::SilentAfter(k) if n == k => {
                tokio::select! {
                    _ = shared.stop.cancelled() => {}
                    _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                }
                return;
            }
            _ => {}
        }
        tokio::select! {
            _ = shared.stop.cancelled() => return,
            r = ws.send(Message::text(event.text.clone())) => if r.is_err() { return },
        }
        shared.sent.fetch_add(1, Ordering::SeqCst);
        if index == 0 && !shared.pace.is_zero() {
            tokio::time::sleep(shared.pace).await;
        }
    }
    // Like a live server with nothing new: stay open, answer pings, until the client leaves.
    loop {
        tokio::select! {
            _ = shared.stop.cancelled() => return,
            m = ws.next() => match m {
                Some(Ok(_)) => {}
                _ => return,
            },
        }
    }
}
