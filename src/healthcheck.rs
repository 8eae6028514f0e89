//! `playsync healthcheck`: a dependency-free HTTP/1.1 probe for container health checks.
//!
//! A small runtime image has no curl, so the binary probes itself: one `GET` over a plain
//! [`TcpStream`] with a deadline on every step, healthy only when the status line says `200`.
//! Nothing here may panic: any failure (refused, timed out, garbage, non-200) is "unhealthy".
//! The URL and status-line parsing are pure and unit-tested; [`check`] does the I/O.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::config::Config;

/// Options of `playsync healthcheck`.
#[derive(Debug, Clone, clap::Args)]
pub struct HealthcheckArgs {
    /// What to GET: `http://HOST[:PORT][/PATH]`, or just `/PATH` on this configuration's main
    /// listener. Default: `/health` on the main listener (`PORT`, `HOST`, `--listen`; an
    /// unspecified address such as 0.0.0.0 is probed on loopback). `/ready` probes readiness.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,

    /// Seconds allowed for the whole probe: connecting, sending, reading the status line.
    #[arg(long, value_name = "SECS", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub timeout_secs: u64,
}

/// Where a probe goes: host (without brackets), port and request target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl Target {
    /// The `Host` header's value: the port only when it is not 80, IPv6 in brackets.
    fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == 80 {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// Runs `playsync healthcheck`: probes the URL, prints one line, and says whether the answer
/// was `200` (the caller turns that into exit code 0 or 1).
pub fn run(args: &HealthcheckArgs, config: &Config) -> bool {
    let main = config
        .listen_addrs()
        .first()
        .copied()
        .unwrap_or(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), config.port));
    let url = match args.url.as_deref() {
        None => default_url(main, "/health"),
        Some(path) if path.starts_with('/') => default_url(main, path),
        Some(url) => url.to_owned(),
    };
    let timeout = Duration::from_secs(args.timeout_secs);
    match parse_url(&url).and_then(|target| check(&target, timeout)) {
        Ok(200) => {
            println!("healthy: GET {url} answered 200");
            true
        }
        Ok(status) => {
            eprintln!("unhealthy: GET {url} answered {status}");
            false
        }
        Err(error) => {
            eprintln!("unhealthy: GET {url}: {error}");
            false
        }
    }
}

/// The URL of `path` on a listener; an unspecified address (0.0.0.0, ::) becomes loopback.
pub fn default_url(listener: SocketAddr, path: &str) -> String {
    let ip = match listener.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!(
        "{}{path}",
        http_origin(SocketAddr::new(ip, listener.port()))
    )
}

fn http_origin(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!("http://{}:{}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("http://[{}]:{}", a.ip(), a.port()),
    }
}

/// Parses `http://HOST[:PORT][/PATH][?QUERY]` (a `#fragment` is dropped). Refuses other
/// schemes, user info, and anything that could not go verbatim into a request line.
pub fn parse_url(url: &str) -> Result<Target, String> {
    let url = url.trim();
    let rest = match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
        Some((scheme, _)) => {
            return Err(format!(
                "unsupported scheme {scheme:?}: only http:// (probe the plain listener)"
            ));
        }
        None => return Err("not a URL: expected http://HOST[:PORT][/PATH]".to_owned()),
    };
    let rest = rest.split('#').next().unwrap_or_default();
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_owned()
    };
    if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err("the path may not contain spaces or control characters".to_owned());
    }
    if authority.contains('@') {
        return Err("user info in the URL is not supported".to_owned());
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']').ok_or("unclosed [ in the host")?;
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(format!("not an IPv6 address: {host:?}"));
        }
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(format!("unexpected {after:?} after the host")),
            },
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("the URL has no host".to_owned());
    }
    if host.contains(':') && !authority.starts_with('[') {
        return Err("an IPv6 host must be in brackets: http://[::1]:3000/health".to_owned());
    }
    if host.bytes().any(|b| b <= b' ' || b == 0x7f || b == b'/') {
        return Err(format!("not a host name: {host:?}"));
    }
    let port = match port {
        None => 80,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return Err(format!("not a port: {p:?}")),
        },
    };
    Ok(Target {
        host: host.to_owned(),
        port,
        path,
    })
}

/// The status code of an HTTP/1.x status line (`HTTP/1.1 200 OK`, with or without the line
/// end and the reason phrase).
pub fn parse_status_line(line: &[u8]) -> Result<u16, String> {
    let line = line
        .strip_suffix(b"\r\n")
        .or_else(|| line.strip_suffix(b"\n"))
        .unwrap_or(line);
    let shown = || String::from_utf8_lossy(line).into_owned();
    let rest = line
        .strip_prefix(b"HTTP/1.")
        .ok_or_else(|| format!("not an HTTP/1.x status line: {:?}", shown()))?;
    let (code, after) = match rest {
        [minor, b' ', c1, c2, c3, after @ ..] if minor.is_ascii_digit() => ([*c1, *c2, *c3], after),
        _ => return Err(format!("malformed status line: {:?}", shown())),
    };
    if !code.iter().all(u8::is_ascii_digit) || !(after.is_empty() || after[0] == b' ') {
        return Err(format!("malformed status code: {:?}", shown()));
    }
    let status = code.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    if !(100..=599).contains(&status) {
        return Err(format!("status code out of range: {status}"));
    }
    Ok(status)
}

/// The longest status line read before giving up.
const MAX_STATUS_LINE: usize = 1024;

/// Sends `GET` to the target and returns the response's status code. Every step (resolving
/// aside: it is immediate for the IP literals a health check uses) shares one deadline.
pub fn check(target: &Target, timeout: Duration) -> Result<u16, String> {
    let deadline = Instant::now() + timeout;
    let addrs: Vec<SocketAddr> = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", target.host))?
        .collect();
    let mut last_error = format!("{} resolves to no address", target.host);
    let mut stream = None;
    for addr in addrs {
        let Some(left) = remaining(deadline) else {
            break;
        };
        match TcpStream::connect_timeout(&addr, left) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_error = format!("cannot connect to {addr}: {e}"),
        }
    }
    let mut stream = stream.ok_or(last_error)?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: playsync-healthcheck\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        target.path,
        target.host_header()
    );
    let left = remaining(deadline).ok_or("timed out")?;
    stream
        .set_write_timeout(Some(left))
        .map_err(|e| format!("socket: {e}"))?;
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("cannot send the request: {e}"))?;

    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    loop {
        if let Some(end) = buf.iter().position(|&b| b == b'\n') {
            return parse_status_line(&buf[..=end]);
        }
        if buf.len() >= MAX_STATUS_LINE {
            return Err("no status line in the first 1024 bytes".to_owned());
        }
        let left = remaining(deadline).ok_or("timed out waiting for the response")?;
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| format!("socket: {e}"))?;
        match stream.read(&mut chunk) {
            Ok(0) if buf.is_empty() => return Err("connection closed without a response".into()),
            Ok(0) => return parse_status_line(&buf),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err("timed out waiting for the response".to_owned());
            }
            Err(e) => return Err(format!("cannot read the response: {e}")),
        }
    }
}

/// Time left before the deadline; `None` once it has passed (a zero timeout is refused by
/// the socket calls, so it is never handed to them).
fn remaining(deadline: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(host: &str, port: u16, path: &str) -> Target {
        Target {
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        }
    }

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r\n"), Ok(200));
        assert_eq!(
            parse_status_line(b"HTTP/1.0 503 Service Unavailable\n"),
            Ok(503)
        );
        assert_eq!(parse_status_line(b"HTTP/1.1 200\r\n"), Ok(200));
        assert_eq!(parse_status_line(b"HTTP/1.1 204"), Ok(204));
        assert_eq!(parse_status_line(b"HTTP/1.1 404 Not Found"), Ok(404));
        for bad in [
            &b""[..],
            b"\r\n",
            b"garbage\r\n",
            b"HTTP/2 200\r\n",
            b"HTTP/1.1  200 OK\r\n",
            b"HTTP/1.1 20 OK\r\n",
            b"HTTP/1.1 2000 OK\r\n",
            b"HTTP/1.1 2x0 OK\r\n",
            b"HTTP/1.1 099 Low\r\n",
            b"HTTP/1.1 600 High\r\n",
            b"HTTP/1.x 200 OK\r\n",
            b"http/1.1 200 OK\r\n",
            b"SSH-2.0-OpenSSH_9.2\r\n",
            b"HTTP/1.1 200OK\r\n",
            b"\xff\xfe\x00",
        ] {
            assert!(
                parse_status_line(bad).is_err(),
                "accepted {:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("http://127.0.0.1:3000/health"),
            Ok(target("127.0.0.1", 3000, "/health"))
        );
        assert_eq!(
            parse_url("http://localhost"),
            Ok(target("localhost", 80, "/"))
        );
        assert_eq!(
            parse_url("HTTP://example.test:8080"),
            Ok(target("example.test", 8080, "/"))
        );
        assert_eq!(
            parse_url("http://[::1]:5051/ready?x=1#frag"),
            Ok(target("::1", 5051, "/ready?x=1"))
        );
        assert_eq!(parse_url("http://[::1]/"), Ok(target("::1", 80, "/")));
        assert_eq!(parse_url("http://h:1?q"), Ok(target("h", 1, "/?q")));
        for bad in [
            "",
            "127.0.0.1:3000/health",
            "https://127.0.0.1/health",
            "ftp://x/",
            "http://",
            "http:///health",
            "http://:3000/",
            "http://h:0/",
            "http://h:65536/",
            "http://h:+80/",
            "http://h:x/",
            "http://::1/",
            "http://[::1/",
            "http://[zz]:1/",
            "http://[::1]x/",
            "http://user:pw@h/",
            "http://h/a b",
            "http://h/a\r\nX: y",
        ] {
            assert!(parse_url(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn default_urls_probe_loopback_for_unspecified_addresses() {
        let url = |a: &str, p: &str| default_url(a.parse().unwrap(), p);
        assert_eq!(
            url("0.0.0.0:3000", "/health"),
            "http://127.0.0.1:3000/health"
        );
        assert_eq!(url("[::]:3000", "/ready"), "http://[::1]:3000/ready");
        assert_eq!(url("10.1.2.3:80", "/health"), "http://10.1.2.3:80/health");
        assert_eq!(url("[fe80::1]:81", "/"), "http://[fe80::1]:81/");
        for u in [url("0.0.0.0:3000", "/health"), url("[::]:3000", "/ready")] {
            assert!(parse_url(&u).is_ok(), "{u}");
        }
    }

    #[test]
    fn host_headers() {
        assert_eq!(target("h", 80, "/").host_header(), "h");
        assert_eq!(target("h", 3000, "/").host_header(), "h:3000");
        assert_eq!(target("::1", 3000, "/").host_header(), "[::1]:3000");
    }

    #[test]
    fn probes_a_live_socket_and_refuses_garbage_without_panicking() {
        use std::net::TcpListener;
        fn serve_once(answer: &'static [u8]) -> u16 {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            std::thread::spawn(move || {
                if let Ok((mut s, _)) = listener.accept() {
                    let mut req = [0u8; 1024];
                    let _ = s.read(&mut req);
                    let _ = s.write_all(answer);
                }
            });
            port
        }
        let t = Duration::from_secs(3);
        let ok = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(check(&target("127.0.0.1", ok, "/health"), t), Ok(200));
        let draining = serve_once(b"HTTP/1.1 503 Service Unavailable\r\n\r\n");
        assert_eq!(check(&target("127.0.0.1", draining, "/ready"), t), Ok(503));
        let garbage = serve_once(b"\x00\x01garbage\n");
        assert!(check(&target("127.0.0.1", garbage, "/"), t).is_err());
        let silent_close = serve_once(b"");
        assert!(check(&target("127.0.0.1", silent_close, "/"), t).is_err());
    }
}
