//! A fault-injection proxy on loopback, between a pool and PostgreSQL.
//!
//! [`Proxy::start`] listens on a free `127.0.0.1` port and forwards each connection to the
//! server behind [`admin_url`](crate::admin_url). It reads what the client sends message by
//! message (PostgreSQL's framing: the untyped start-up messages, then a type byte and a length),
//! so a rule matches a whole message, never a piece a read happened to return. A rule ([`on`])
//! acts on the next message that contains its pattern:
//!
//! - [`Fault::Cut`]: closes both sides before the message reaches the server, as a dead
//!   network or a killed server would;
//! - [`Fault::Rewrite`]: replaces the pattern in that message (for example to make a statement
//!   fail on the server, at a point no race decides);
//! - [`Fault::Delay`]: holds the message back for a while.
//!
//! [`Proxy::sever_all`] closes the server side of every connection open now and leaves the
//! client side open and silent: each client finds out at its next message (the proxy then
//! closes it), as after a server restart or a network change it was not told of.
//! [`Proxy::fired`] counts the faults applied and [`Proxy::accepted`] the connections made, so a
//! test can check that its fault happened and whether a connection was replaced.
//!
//! [`on`]: Proxy::on

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What a rule does to the message it matches.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Close the connection (both sides) instead of forwarding the message.
    Cut,
    /// Forward the message with its pattern replaced by these bytes.
    Rewrite(Vec<u8>),
    /// Forward the message after this long.
    Delay(Duration),
}

#[derive(Debug)]
struct Rule {
    pattern: Vec<u8>,
    fault: Fault,
}

#[derive(Default)]
struct Shared {
    rules: Mutex<Vec<Rule>>,
    fired: AtomicUsize,
    accepted: AtomicUsize,
}

impl Shared {
    fn rules(&self) -> MutexGuard<'_, Vec<Rule>> {
        self.rules.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The fault for `message`, taking its rule (each rule fires once).
    fn fault_for(&self, message: &[u8]) -> Option<(Vec<u8>, Fault)> {
        let mut rules = self.rules();
        let at = rules
            .iter()
            .position(|r| find(message, &r.pattern).is_some())?;
        let rule = rules.remove(at);
        self.fired.fetch_add(1, Ordering::SeqCst);
        Some((rule.pattern, rule.fault))
    }
}

/// A running proxy; dropping it stops accepting and closes its connections.
pub struct Proxy {
    port: u16,
    shared: Arc<Shared>,
    sever: watch::Sender<u64>,
    accept: tokio::task::JoinHandle<()>,
    connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        for c in self
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            c.abort();
        }
    }
}

impl Proxy {
    /// Starts a proxy to the server behind [`admin_url`](crate::admin_url).
    pub async fn start() -> std::io::Result<Proxy> {
        let (host, port) = crate::server_address();
        let upstream = format!("{host}:{port}");
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared::default());
        let (sever, _) = watch::channel(0u64);
        let connections = Arc::new(Mutex::new(Vec::new()));
        let accept = tokio::spawn({
            let shared = Arc::clone(&shared);
            let sever = sever.clone();
            let connections = Arc::clone(&connections);
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    shared.accepted.fetch_add(1, Ordering::SeqCst);
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        continue;
                    };
                    let shared = Arc::clone(&shared);
                    let mut sever = sever.subscribe();
                    sever.mark_unchanged();
                    let task = tokio::spawn(async move {
                        forward(client, server, &shared, &mut sever).await;
                    });
                    connections
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(task.abort_handle());
                }
            }
        });
        Ok(Proxy {
            port,
            shared,
            sever,
            accept,
            connections,
        })
    }

    /// `postgres://user@127.0.0.1:<proxy port>/database` (`database`'s fresh database once
    /// provisioned, see [`fresh`](crate::fresh)).
    pub fn url_for(&self, user: &str, database: &str) -> String {
        crate::url_at(user, &format!("127.0.0.1:{}", self.port), database)
    }

    /// Applies `fault` to the next message the client sends that contains `pattern`.
    pub fn on(&self, pattern: &str, fault: Fault) {
        self.shared.rules().push(Rule {
            pattern: pattern.as_bytes().to_vec(),
            fault,
        });
    }

    /// How many rules have fired.
    pub fn fired(&self) -> usize {
        self.shared.fired.load(Ordering::SeqCst)
    }

    /// How many connections the proxy has accepted.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Closes the server side of every connection open now; each client finds out at its
    /// next message.
    pub fn sever_all(&self) {
        self.sever.send_modify(|n| *n += 1);
    }
}

/// Where `needle` starts in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The codes of the start-up requests after which the client sends another start-up message.
const SSL_REQUEST: i32 = 80_877_103;
const GSSENC_REQUEST: i32 = 80_877_104;

/// `message` with `pattern` replaced by `with`, its length field rewritten to match.
fn rewrite(message: &[u8], typed: bool, pattern: &[u8], with: &[u8]) -> Vec<u8> {
    let Some(at) = find(message, pattern) else {
        return message.to_vec();
    };
    let mut out = Vec::with_capacity(message.len() + with.len());
    out.extend_from_slice(&message[..at]);
    out.extend_from_slice(with);
    out.extend_from_slice(&message[at + pattern.len()..]);
    let len_at = usize::from(typed);
    let len = i32::try_from(out.len() - len_at).unwrap_or(i32::MAX);
    out[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
    out
}

/// Forwards until either side closes or a `Cut` fires; once severed, closes the server side
/// and waits for the client's next message to close it too.
async fn forward(
    mut client: TcpStream,
    server: TcpStream,
    shared: &Shared,
    sever: &mut watch::Receiver<u64>,
) {
    if !relay(&mut client, server, shared, sever).await {
        return;
    }
    let mut next = [0u8; 1];
    let _ = client.read(&mut next).await;
}

/// Relays between `client` and `server`; true when severed (the server side is closed on
/// return either way).
async fn relay(
    client: &mut TcpStream,
    server: TcpStream,
    shared: &Shared,
    sever: &mut watch::Receiver<u64>,
) -> bool {
    let (mut from_server, mut to_server) = server.into_split();
    let (mut from_client, mut to_client) = client.split();
    let upstream = async {
        let mut typed = false;
        loop {
            let Ok(Some(message)) = read_message(&mut from_client, typed).await else {
                return;
            };
            let was_typed = typed;
            if !typed {
                let code = message
                    .get(4..8)
                    .and_then(|b| <[u8; 4]>::try_from(b).ok())
                    .map(i32::from_be_bytes);
                typed = !matches!(code, Some(SSL_REQUEST | GSSENC_REQUEST));
            }
            let message = match shared.fault_for(&message) {
                None => message,
                Some((_, Fault::Cut)) => return,
                Some((_, Fault::Delay(d))) => {
                    tokio::time::sleep(d).await;
                    message
                }
                Some((pattern, Fault::Rewrite(with))) => {
                    rewrite(&message, was_typed, &pattern, &with)
                }
            };
            if to_server.write_all(&message).await.is_err() {
                return;
            }
        }
    };
    let downstream = tokio::io::copy(&mut from_server, &mut to_client);
    tokio::select! {
        _ = upstream => false,
        _ = downstream => false,
        _ = sever.changed() => true,
    }
}

/// Reads one message: untyped (start-up) or typed. `None` at the end of the stream.
async fn read_message<R: tokio::io::AsyncRead + Unpin>(
    from: &mut R,
    typed: bool,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut message = Vec::new();
    if typed {
        let mut kind = [0u8; 1];
        if from.read(&mut kind).await? == 0 {
            return Ok(None);
        }
        message.push(kind[0]);
    }
    let mut len = [0u8; 4];
    match from.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let n = usize::try_from(i32::from_be_bytes(len))
        .ok()
        .and_then(|n| n.checked_sub(4))
        .ok_or_else(|| std::io::Error::other("bad message length"))?;
    message.extend_from_slice(&len);
    let start = message.len();
    message.resize(start + n, 0);
    from.read_exact(&mut message[start..]).await?;
    Ok(Some(message))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_rewrite_keeps_the_framing() {
        let body = b"SELECT tenant_db.enter('x')\0";
        let mut message = vec![b'Q'];
        message.extend_from_slice(&(i32::try_from(body.len() + 4).unwrap_or(0)).to_be_bytes());
        message.extend_from_slice(body);
        let out = super::rewrite(&message, true, b"enter", b"enter_nothing");
        assert_eq!(&out[5..], b"SELECT tenant_db.enter_nothing('x')\0");
        assert_eq!(
            i32::from_be_bytes([out[1], out[2], out[3], out[4]]),
            i32::try_from(out.len() - 1).unwrap_or(0)
        );
        assert_eq!(super::find(b"abc", b""), None);
        assert_eq!(super::find(b"abc", b"bc"), Some(1));
    }
}
