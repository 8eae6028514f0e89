//! Lean clients for load generation: Socket.IO v5 over Engine.IO 4 (a WebSocket opened
//! directly, or socket.io-client's default way: long-polling first, then the upgrade),
//! HTTP/1.1 requests, and an SSE reader. Each does the minimum the scenarios need, so the
//! generator can hold thousands of connections on one core. Compatibility is proven by the
//! real clients in the server's tests, not here.

use std::collections::VecDeque;
use std::net::SocketAddr;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Longest a connection set-up or a request may take before the run counts it as failed.
pub const DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

async fn within<T>(what: &str, fut: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::time::timeout(DEADLINE, fut)
        .await
        .map_err(|_| anyhow::anyhow!("{what} took longer than {DEADLINE:?}"))?
}

/// The socket address of an `http://host:port` target.
pub fn target_addr(target: &str) -> anyhow::Result<SocketAddr> {
    let rest = target
        .strip_prefix("http://")
        .context("targets must be http:// URLs")?;
    let authority = rest.split('/').next().unwrap_or(rest);
    use std::net::ToSocketAddrs;
    authority
        .to_socket_addrs()?
        .next()
        .with_context(|| format!("cannot resolve {authority}"))
}

/// How a Socket.IO client opens its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Connect {
    /// A WebSocket straight away (`transport=websocket`), no polling round trip.
    Websocket,
    /// What socket.io-client does by default: an Engine.IO long-polling session (handshake
    /// GET, `40` POSTed, GET for the answers), then the upgrade to WebSocket (`2probe`,
    /// `3probe`, `5`); the polling connection is closed once upgraded.
    Default,
}

impl Connect {
    /// The name used on the command line and in the results.
    pub fn name(self) -> &'static str {
        match self {
            Connect::Websocket => "websocket",
            Connect::Default => "default",
        }
    }
}

/// The Engine.IO 4 long-polling endpoint.
const POLLING: &str = "/socket.io/?EIO=4&transport=polling";

/// A connected Socket.IO client on the default namespace.
pub struct SioClient {
    ws: WebSocketStream<TcpStream>,
    /// Packets that arrived over long-polling before the upgrade (e.g. the server's greeting
    /// event), handed out first. Empty, and unallocated, for direct WebSockets.
    early: VecDeque<String>,
}

/// What a Socket.IO client received.
pub enum Incoming {
    /// An event: its name and the raw JSON of its first argument.
    Event(String, String),
    /// Anything else (acknowledgements, namespace packets): ignored by the scenarios.
    Other,
}

impl SioClient {
    /// Connects the way `how` says and joins the `/` namespace.
    pub async fn connect(addr: SocketAddr, how: Connect) -> anyhow::Result<SioClient> {
        match how {
            Connect::Websocket => within("a Socket.IO connection", Self::connect_ws(addr)).await,
            Connect::Default => {
                within(
                    "a Socket.IO connection (polling, then upgrade)",
                    Self::connect_polling_then_upgrade(addr),
                )
                .await
            }
        }
    }

    /// Opens a WebSocket directly and joins the `/` namespace over it.
    async fn connect_ws(addr: SocketAddr) -> anyhow::Result<SioClient> {
        let mut ws = open_ws(addr, "/socket.io/?EIO=4&transport=websocket").await?;
        let open = next_text(&mut ws).await?;
        if !open.starts_with('0') {
            bail!("expected an Engine.IO open packet, got {open}");
        }
        ws.send(Message::text("40")).await?;
        loop {
            let frame = next_text(&mut ws).await?;
            // The server may ping before it confirms the namespace; unanswered, that ping
            // costs the connection 20 s later.
            if frame == "2" {
                ws.send(Message::text("3")).await?;
                continue;
            }
            if frame.starts_with("40") {
                return Ok(SioClient {
                    ws,
                    early: VecDeque::new(),
                });
            }
            if frame.starts_with("44") {
                bail!("namespace refused: {frame}");
            }
        }
    }

    /// socket.io-client's default: an Engine.IO long-polling session joins the namespace,
    /// then the session is upgraded to a WebSocket, which carries everything from then on.
    async fn connect_polling_then_upgrade(addr: SocketAddr) -> anyhow::Result<SioClient> {
        let mut http = HttpClient::new(addr);
        let (status, open) = http.request_as("GET", POLLING, None, "").await?;
        anyhow::ensure!(
            status == 200,
            "the polling handshake answered {status}: {open}"
        );
        let handshake: serde_json::Value = serde_json::from_str(
            open.strip_prefix('0')
                .with_context(|| format!("expected an Engine.IO open packet, got {open}"))?,
        )?;
        let sid = handshake["sid"]
            .as_str()
            .with_context(|| format!("no sid in the open packet {open}"))?;
        anyhow::ensure!(
            handshake["upgrades"]
                .as_array()
                .is_some_and(|u| u.iter().any(|t| t == "websocket")),
            "the server offers no upgrade to WebSocket: {open}"
        );
        let session = format!("{POLLING}&sid={sid}");
        post_packet(&mut http, &session, "40").await?;
        // GET the answers until the namespace is confirmed (at most 16 polls, and within the
        // connection's deadline).
        let mut early = VecDeque::new();
        let mut joined = false;
        for _ in 0..16 {
            let (status, payload) = http.request_as("GET", &session, None, "").await?;
            anyhow::ensure!(status == 200, "the poll answered {status}: {payload}");
            // Engine.IO 4 separates the packets of a payload with the record separator.
            for packet in payload.split('\u{1e}') {
                match packet {
                    "2" => post_packet(&mut http, &session, "3").await?,
                    "6" | "" => {}
                    p if p.starts_with("40") => joined = true,
                    p if p.starts_with("44") => bail!("namespace refused: {p}"),
                    p if p.starts_with('1') => bail!("the server closed the session"),
                    p => early.push_back(p.to_owned()),
                }
            }
            if joined {
                break;
            }
        }
        anyhow::ensure!(joined, "the namespace was not confirmed over long-polling");

        let upgrade = format!("/socket.io/?EIO=4&transport=websocket&sid={sid}");
        let mut ws = open_ws(addr, &upgrade).await?;
        ws.send(Message::text("2probe")).await?;
        loop {
            match next_text(&mut ws).await?.as_str() {
                "3probe" => break,
                "6" => {}
                other => bail!("expected 3probe on the upgrade, got {other}"),
            }
        }
        ws.send(Message::text("5")).await?;
        // The session lives on the WebSocket now; the polling connection is not needed.
        drop(http);
        Ok(SioClient { ws, early })
    }

    /// Emits `event` with `payload` (raw JSON).
    pub async fn emit(&mut self, event: &str, payload: &str) -> anyhow::Result<()> {
        let frame = format!("42[\"{event}\",{payload}]");
        self.ws.send(Message::text(frame)).await?;
        Ok(())
    }

    /// The next incoming packet, answering Engine.IO pings on the way. `None` when the
    /// connection closed.
    pub async fn next(&mut self) -> Option<anyhow::Result<Incoming>> {
        if let Some(packet) = self.early.pop_front() {
            if self.early.is_empty() {
                self.early = VecDeque::new(); // give the buffer back
            }
            return Some(Ok(parse_event(&packet)));
        }
        loop {
            let frame = match self.ws.next().await? {
                Ok(Message::Text(t)) => t,
                Ok(Message::Close(_)) => return None,
                Ok(_) => continue,
                Err(e) => return Some(Err(e.into())),
            };
            let text = frame.as_str();
            if text == "2" {
                if let Err(e) = self.ws.send(Message::text("3")).await {
                    return Some(Err(e.into()));
                }
                continue;
            }
            return Some(Ok(parse_event(text)));
        }
    }

    /// Waits for `event` (answering pings), failing on `error` events.
    pub async fn expect(&mut self, event: &str) -> anyhow::Result<String> {
        within(event, self.expect_now(event)).await
    }

    async fn expect_now(&mut self, event: &str) -> anyhow::Result<String> {
        while let Some(incoming) = self.next().await {
            if let Incoming::Event(name, data) = incoming? {
                if name == event {
                    return Ok(data);
                }
                if name == "error" {
                    bail!("server answered error: {data}");
                }
            }
        }
        bail!("connection closed while waiting for {event}")
    }
}

/// POSTs one Engine.IO packet to a long-polling session; the server answers `ok`.
async fn post_packet(http: &mut HttpClient, session: &str, packet: &str) -> anyhow::Result<()> {
    let (status, answer) = http
        .request_as("POST", session, Some("text/plain;charset=UTF-8"), packet)
        .await?;
    anyhow::ensure!(status == 200, "POST {packet} answered {status}: {answer}");
    Ok(())
}

/// Opens a WebSocket to `path` on `addr` (no TLS; targets are loopback).
async fn open_ws(addr: SocketAddr, path: &str) -> anyhow::Result<WebSocketStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    // tungstenite's default 128 KiB read buffer would be zeroed on reads and held by every one
    // of thousands of connections; Socket.IO frames here are small.
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let url = format!("ws://{addr}{path}");
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, tcp, Some(config)).await?;
    Ok(ws)
}

async fn next_text(ws: &mut WebSocketStream<TcpStream>) -> anyhow::Result<String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.to_string()),
            Some(Ok(Message::Close(_))) | None => bail!("connection closed"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
        }
    }
}

/// `42["name",{...}]` (optionally with an ack id or namespace) → the event name and the raw
/// first argument.
fn parse_event(frame: &str) -> Incoming {
    let Some(rest) = frame.strip_prefix("42") else {
        return Incoming::Other;
    };
    let Some(start) = rest.find('[') else {
        return Incoming::Other;
    };
    let body = &rest[start + 1..rest.len().saturating_sub(1)];
    let Some(name_end) = body.strip_prefix('"').and_then(|b| b.find('"')) else {
        return Incoming::Other;
    };
    let name = body[1..name_end + 1].to_owned();
    let data = body[name_end + 2..].trim_start_matches(',').to_owned();
    Incoming::Event(name, data)
}

/// The number after `"field":` in a JSON text, without parsing the whole document.
pub fn number_field(json: &str, field: &str) -> Option<f64> {
    let key = format!("\"{field}\":");
    let start = json.find(&key)? + key.len();
    let rest = json[start..].trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E')))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// A kept-alive HTTP/1.1 connection for JSON requests; reconnects when the server closes it
/// (some peers answer every request with `Connection: close`).
pub struct HttpClient {
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
}

impl HttpClient {
    pub fn new(addr: SocketAddr) -> Self {
        HttpClient { addr, conn: None }
    }

    /// Sends a JSON request and returns (status, body).
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: &str,
    ) -> anyhow::Result<(u16, String)> {
        self.request_as(method, path, Some("application/json"), body)
            .await
    }

    /// Sends a request with a body of `content_type` (none: no Content-Type header) and
    /// returns (status, body).
    pub async fn request_as(
        &mut self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &str,
    ) -> anyhow::Result<(u16, String)> {
        let request = self.request_now(method, path, content_type, body);
        let result = tokio::time::timeout(DEADLINE, request).await;
        match result {
            Ok(r) => r,
            Err(_) => {
                self.conn = None;
                anyhow::bail!("{method} {path} took longer than {DEADLINE:?}")
            }
        }
    }

    async fn request_now(
        &mut self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &str,
    ) -> anyhow::Result<(u16, String)> {
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => {
                let tcp = TcpStream::connect(self.addr).await?;
                tcp.set_nodelay(true)?;
                BufReader::new(tcp)
            }
        };
        let content_type = content_type
            .map(|t| format!("Content-Type: {t}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{content_type}Content-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        );
        conn.get_mut().write_all(head.as_bytes()).await?;
        conn.get_mut().write_all(body.as_bytes()).await?;
        let (status, headers) = read_head(&mut conn).await?;
        let close = header(&headers, "connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let buf = if header(&headers, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            read_chunked(&mut conn).await?
        } else if let Some(length) = header(&headers, "content-length") {
            let mut buf = vec![0; length.parse::<usize>().context("bad Content-Length")?];
            conn.read_exact(&mut buf).await?;
            buf
        } else if close {
            let mut buf = Vec::new();
            conn.read_to_end(&mut buf).await?;
            buf
        } else {
            Vec::new()
        };
        let keep = !close;
        if keep {
            self.conn = Some(conn);
        }
        Ok((status, String::from_utf8_lossy(&buf).into_owned()))
    }
}

/// A chunked body (RFC 9112 §7.1); trailers are skipped.
async fn read_chunked(conn: &mut BufReader<TcpStream>) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if conn.read_line(&mut line).await? == 0 {
            bail!("connection closed in a chunked body");
        }
        let size = line.trim().split(';').next().unwrap_or("");
        let size = usize::from_str_radix(size, 16).context("bad chunk size")?;
        if size == 0 {
            // Trailers, then the empty line.
            loop {
                line.clear();
                if conn.read_line(&mut line).await? == 0 || line.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        conn.read_exact(&mut body[start..]).await?;
        line.clear();
        conn.read_line(&mut line).await?; // the CRLF after the data
    }
}

/// Reads a status line and headers; returns the status and lowercased header lines.
async fn read_head(conn: &mut BufReader<TcpStream>) -> anyhow::Result<(u16, Vec<String>)> {
    let mut line = String::new();
    if conn.read_line(&mut line).await? == 0 {
        bail!("connection closed before the response");
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("bad status line")?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if conn.read_line(&mut line).await? == 0 {
            bail!("connection closed in the headers");
        }
        let h = line.trim_end();
        if h.is_empty() {
            return Ok((status, headers));
        }
        headers.push(h.to_ascii_lowercase());
    }
}

fn header<'a>(headers: &'a [String], name: &str) -> Option<&'a str> {
    headers.iter().find_map(|h| {
        let (k, v) = h.split_once(':')?;
        (k.trim() == name).then(|| v.trim())
    })
}

/// An open SSE stream, yielding the `data:` of each event.
pub struct SseReader {
    conn: BufReader<TcpStream>,
    chunked: bool,
    /// Bytes left in the current chunk (chunked encoding).
    chunk_left: usize,
    line: String,
}

impl SseReader {
    pub async fn open(addr: SocketAddr, path: &str) -> anyhow::Result<SseReader> {
        within("an SSE stream", Self::open_now(addr, path)).await
    }

    async fn open_now(addr: SocketAddr, path: &str) -> anyhow::Result<SseReader> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let mut conn = BufReader::new(tcp);
        let req =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
        conn.get_mut().write_all(req.as_bytes()).await?;
        let (status, headers) = read_head(&mut conn).await?;
        if status != 200 {
            bail!("SSE answered {status}");
        }
        let chunked = header(&headers, "transfer-encoding").is_some_and(|v| v.contains("chunked"));
        Ok(SseReader {
            conn,
            chunked,
            chunk_left: 0,
            line: String::new(),
        })
    }

    /// The data of the next event; `None` when the stream ended.
    pub async fn next_data(&mut self) -> anyhow::Result<Option<String>> {
        loop {
            let Some(line) = self.next_line().await? else {
                return Ok(None);
            };
            if let Some(data) = line.strip_prefix("data:") {
                return Ok(Some(data.trim_start().to_owned()));
            }
        }
    }

    /// One line of the event stream, with chunk framing removed.
    async fn next_line(&mut self) -> anyhow::Result<Option<String>> {
        self.line.clear();
        loop {
            if self.chunked && self.chunk_left == 0 {
                let mut size = String::new();
                loop {
                    size.clear();
                    if self.conn.read_line(&mut size).await? == 0 {
                        return Ok(None);
                    }
                    if !size.trim().is_empty() {
                        break;
                    }
                }
                self.chunk_left = usize::from_str_radix(size.trim(), 16)?;
                if self.chunk_left == 0 {
                    return Ok(None);
                }
            }
            let mut byte = [0u8; 1];
            let buffered = self.conn.buffer();
            let take = if self.chunked {
                buffered.len().min(self.chunk_left)
            } else {
                buffered.len()
            };
            if take == 0 {
                if self.conn.read(&mut byte).await? == 0 {
                    return Ok(None);
                }
                self.chunk_left = self.chunk_left.saturating_sub(1);
                if byte[0] == b'\n' {
                    return Ok(Some(std::mem::take(&mut self.line)));
                }
                self.line.push(byte[0] as char);
                continue;
            }
            let slice = &buffered[..take];
            match slice.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.line.push_str(&String::from_utf8_lossy(&slice[..i]));
                    self.conn.consume(i + 1);
                    self.chunk_left = self.chunk_left.saturating_sub(i + 1);
                    let line = std::mem::take(&mut self.line);
                    return Ok(Some(line.trim_end_matches('\r').to_owned()));
                }
                None => {
                    self.line.push_str(&String::from_utf8_lossy(slice));
                    self.conn.consume(take);
                    self.chunk_left = self.chunk_left.saturating_sub(take);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_parse_from_socket_io_frames() {
        let Incoming::Event(name, data) =
            parse_event(r#"42["sync_progress",{"current_time":1.25,"server_time":9}]"#)
        else {
            panic!()
        };
        assert_eq!(name, "sync_progress");
        assert_eq!(number_field(&data, "current_time"), Some(1.25));
        assert_eq!(number_field(&data, "server_time"), Some(9.0));
        assert!(matches!(parse_event("40{}"), Incoming::Other));
        let Incoming::Event(name, _) = parse_event(r#"42["connected"]"#) else {
            panic!()
        };
        assert_eq!(name, "connected");
    }

    #[test]
    fn targets_resolve() {
        assert_eq!(
            target_addr("http://127.0.0.1:3000").unwrap(),
            "127.0.0.1:3000".parse().unwrap()
        );
        assert!(target_addr("ws://x").is_err());
    }
}
