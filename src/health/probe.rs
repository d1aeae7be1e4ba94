//! Running one probe against a running container.
//!
//! - `exec`: `supervisord runtime exec --timeout T NAME -- CMD` (the
//!   runtime's exec, in its own process: joining a container's namespaces
//!   needs a single-threaded process). The command runs in a process group
//!   of its own, which the exec kills whole at the timeout, so a hanging
//!   probe leaves nothing behind.
//! - `tcp`, `http`: a socket made inside the container's network namespace
//!   ([`super::netns`]), connected to the container's own address;
//!   `localhost` is the container.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::check::Probe;
use super::netns::Factory;
use super::tracker::{OUTPUT, ProbeResult};
use crate::runtime::reaper::{Exit, Reaper};

/// What probes need, shared.
#[derive(Clone)]
pub struct Env {
    /// Our own program (serves `runtime exec`).
    pub helper: PathBuf,
    pub run_dir: PathBuf,
    pub reaper: Reaper,
    pub sockets: Factory,
}

/// The container a probe is for.
pub struct Target<'a> {
    pub name: &'a str,
    /// Its first process, as we see it.
    pub pid: i32,
    /// Its host name (which, like localhost, is the container itself).
    pub hostname: &'a str,
}

fn result(healthy: bool, output: impl Into<String>) -> ProbeResult {
    let mut output = output.into();
    if output.len() > OUTPUT {
        let mut cut = OUTPUT;
        while !output.is_char_boundary(cut) {
            cut -= 1;
        }
        output.truncate(cut);
    }
    ProbeResult { time: SystemTime::now(), healthy, exit_code: None, http_status: None, output }
}

/// Runs `probe` once; never longer than `timeout` (plus the exec's own
/// cleanup).
pub async fn run(env: &Env, target: &Target<'_>, probe: &Probe, timeout: Duration) -> ProbeResult {
    match probe {
        Probe::Exec(argv) => exec(env, target, argv, timeout).await,
        Probe::Tcp(port) => {
            let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), *port);
            match tokio::time::timeout(timeout, connect(env, target.pid, addr)).await {
                Ok(Ok(_)) => result(true, format!("connected to port {port}")),
                Ok(Err(e)) => result(false, format!("port {port}: {e}")),
                Err(_) => {
                    result(false, format!("port {port}: no connection within {}", humantime::format_duration(timeout)))
                }
            }
        }
        Probe::Http(url) => match tokio::time::timeout(timeout, http(env, target, url)).await {
            Ok(r) => r,
            Err(_) => result(false, format!("{url}: no answer within {}", humantime::format_duration(timeout))),
        },
    }
}

async fn connect(env: &Env, pid: i32, addr: SocketAddr) -> Result<tokio::net::TcpStream, String> {
    let fd = env.sockets.tcp_socket(pid, addr.is_ipv6()).await?;
    let socket = tokio::net::TcpSocket::from_std_stream(std::net::TcpStream::from(fd));
    socket.connect(addr).await.map_err(|e| e.to_string())
}

/// `http://HOST[:PORT]/PATH` split, HOST resolved as the container sees
/// itself: localhost, its host name, or an IP address.
fn parse_url(url: &str, hostname: &str) -> Result<(SocketAddr, String, String), String> {
    let rest = url.get(7..).filter(|_| url[..7].eq_ignore_ascii_case("http://")).ok_or("not an http:// URL")?;
    let (authority, path) = rest.find(['/', '?']).map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
    let (host, port) = match authority.strip_prefix('[') {
        Some(b) => {
            let (ip, tail) = b.split_once(']').ok_or("unclosed '['")?;
            (ip, tail.strip_prefix(':'))
        }
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    let port: u16 = match port {
        Some(p) => p.parse().map_err(|_| format!("{p:?} is not a port"))?,
        None => 80,
    };
    let ip = if host.eq_ignore_ascii_case("localhost") || host.eq_ignore_ascii_case(hostname) {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.parse::<IpAddr>().map_err(|_| {
            format!("{host:?}: the http probe reaches localhost, the container's host name or an IP address")
        })?
    };
    let path = if path.starts_with('?') { format!("/{path}") } else { path.to_string() };
    Ok((SocketAddr::new(ip, port), authority.to_string(), path))
}

async fn http(env: &Env, target: &Target<'_>, url: &str) -> ProbeResult {
    let (addr, authority, path) = match parse_url(url, target.hostname) {
        Ok(p) => p,
        Err(e) => return result(false, format!("{url}: {e}")),
    };
    let mut stream = match connect(env, target.pid, addr).await {
        Ok(s) => s,
        Err(e) => return result(false, format!("{url}: {e}")),
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: supervisor-health\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    if let Err(e) = stream.write_all(request.as_bytes()).await {
        return result(false, format!("{url}: {e}"));
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while buf.len() < OUTPUT && !buf.contains(&b'\n') {
        match stream.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return result(false, format!("{url}: {e}")),
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .lines()
        .next()
        .filter(|l| l.starts_with("HTTP/"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse::<u16>().ok());
    let Some(code) = status else {
        return result(false, format!("{url}: not an HTTP answer: {:?}", text.lines().next().unwrap_or("")));
    };
    let mut r = result((200..400).contains(&code), text.lines().next().unwrap_or("").to_string());
    r.http_status = Some(code);
    r
}

async fn exec(env: &Env, target: &Target<'_>, argv: &[String], timeout: Duration) -> ProbeResult {
    let (out_r, out_w) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => return result(false, format!("pipe: {e}")),
    };
    let err_w = match out_w.try_clone() {
        Ok(w) => w,
        Err(e) => return result(false, format!("pipe: {e}")),
    };
    let timeout_arg = format!("{}ms", timeout.as_millis());
    let child = std::process::Command::new(&env.helper)
        .arg("--run-dir")
        .arg(&env.run_dir)
        .args(["runtime", "exec", "--timeout", &timeout_arg, target.name, "--"])
        .args(argv)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::from(err_w))
        .env_clear()
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => return result(false, format!("{}: {e}", env.helper.display())),
    };
    let pid = child.id() as i32;
    // The reaper owns the exit; `child` is never waited for.
    drop(child);
    let mut exit = env.reaper.watch(pid);
    let reader = tokio::net::unix::pipe::Receiver::from_file(std::fs::File::from(out_r));
    let read = async move {
        let mut output = Vec::new();
        let Ok(mut r) = reader else { return output };
        let mut chunk = [0u8; 512];
        loop {
            match r.read(&mut chunk).await {
                Ok(0) | Err(_) => return output,
                Ok(n) if output.len() < OUTPUT => output.extend_from_slice(&chunk[..n]),
                Ok(_) => {}
            }
        }
    };
    tokio::pin!(read);
    // The exec kills its command at the timeout; this is the backstop
    // for the exec itself.
    let backstop = timeout + Duration::from_secs(5);
    let mut output = None;
    let status = match tokio::time::timeout(backstop, async {
        tokio::select! {
            e = &mut exit => e,
            o = &mut read => {
                output = Some(o);
                (&mut exit).await
            }
        }
    })
    .await
    {
        Ok(Ok(e)) => Some(e),
        Ok(Err(_)) => None,
        Err(_) => {
            // Our child, not yet reaped: we hold its watch.
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            let _ = exit.await;
            None
        }
    };
    // What a process the probe left (holding the pipe) has not closed is
    // not waited for.
    let output = match output {
        Some(o) => o,
        None => tokio::time::timeout(Duration::from_millis(100), read).await.unwrap_or_default(),
    };
    let text = String::from_utf8_lossy(&output).trim_end().to_string();
    match status {
        Some(Exit::Code(0)) => {
            let mut r = result(true, text);
            r.exit_code = Some(0);
            r
        }
        Some(Exit::Code(c)) => {
            let mut r = result(false, text);
            r.exit_code = Some(c);
            r
        }
        Some(Exit::Signal(s)) => result(false, format!("{text}\nkilled by signal {s}").trim().to_string()),
        None => result(false, format!("no exit within {}", humantime::format_duration(backstop))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_resolve_as_the_container_sees_itself() {
        let (a, host, path) = parse_url("http://localhost:8080/healthz?x=1", "web").unwrap();
        assert_eq!(
            (a.to_string(), host.as_str(), path.as_str()),
            ("127.0.0.1:8080".into(), "localhost:8080", "/healthz?x=1")
        );
        let (a, _, path) = parse_url("http://web/", "web").unwrap();
        assert_eq!((a.to_string(), path.as_str()), ("127.0.0.1:80".into(), "/"));
        let (a, _, _) = parse_url("http://[::1]:81", "web").unwrap();
        assert_eq!(a.to_string(), "[::1]:81");
        assert!(parse_url("http://db:5432/", "web").unwrap_err().contains("localhost"));
    }
}
