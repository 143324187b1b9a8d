//! A small SMTP server for tests: it speaks real SMTP over TCP (EHLO/HELO, MAIL, RCPT, DATA,
//! RSET, NOOP, QUIT) on a loopback port and keeps what it receives, so mail tests read the
//! messages a real client delivered.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One delivered message.
#[derive(Debug, Clone)]
pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

/// The running sink.
pub struct SmtpSink {
    pub port: u16,
    messages: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SmtpSink {
    /// Listens on an ephemeral loopback port.
    pub async fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind smtp");
        let port = listener.local_addr().expect("addr").port();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let store = messages.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let store = store.clone();
                tokio::spawn(async move {
                    let _ = session(stream, store).await;
                });
            }
        });
        SmtpSink { port, messages, task }
    }

    /// Everything delivered so far.
    pub fn messages(&self) -> Vec<Received> {
        self.messages.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

async fn session(stream: tokio::net::TcpStream, store: Arc<Mutex<Vec<Received>>>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 ferrotrue-test-sink ESMTP\r\n").await?;
    let mut current = Received { from: String::new(), to: Vec::new(), data: String::new() };
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_owned();
        let upper = command.to_uppercase();
        if upper.starts_with("EHLO") {
            write.write_all(b"250-ferrotrue-test-sink\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n").await?;
        } else if upper.starts_with("HELO") {
            write.write_all(b"250 ferrotrue-test-sink\r\n").await?;
        } else if upper.starts_with("MAIL FROM:") {
            current.from = address(&command[10..]);
            write.write_all(b"250 OK\r\n").await?;
        } else if upper.starts_with("RCPT TO:") {
            current.to.push(address(&command[8..]));
            write.write_all(b"250 OK\r\n").await?;
        } else if upper == "DATA" {
            write.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n").await?;
            loop {
                line.clear();
                if lines.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                // Undo dot-stuffing.
                let text = line.strip_prefix('.').unwrap_or(&line);
                current.data.push_str(text);
            }
            if let Ok(mut m) = store.lock() {
                m.push(std::mem::replace(
                    &mut current,
                    Received { from: String::new(), to: Vec::new(), data: String::new() },
                ));
            }
            write.write_all(b"250 OK: queued\r\n").await?;
        } else if upper == "RSET" {
            current = Received { from: String::new(), to: Vec::new(), data: String::new() };
            write.write_all(b"250 OK\r\n").await?;
        } else if upper == "NOOP" {
            write.write_all(b"250 OK\r\n").await?;
        } else if upper == "QUIT" {
            write.write_all(b"221 Bye\r\n").await?;
            return Ok(());
        } else {
            write.write_all(b"502 Command not implemented\r\n").await?;
        }
    }
}

impl Received {
    /// The body with quoted-printable soft breaks and escapes undone (enough for our mails).
    pub fn body(&self) -> String {
        let raw = self.data.split_once("\r\n\r\n").map_or(self.data.as_str(), |(_, b)| b);
        if !self.data.to_lowercase().contains("content-transfer-encoding: quoted-printable") {
            return raw.to_owned();
        }
        let joined = raw.replace("=\r\n", "").replace("=\n", "");
        let mut out = Vec::new();
        let bytes = joined.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'=' && i + 2 < bytes.len() {
                if let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16) {
                    out.push(b);
                    i += 3;
                    continue;
                }
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The `Subject:` header.
    pub fn subject(&self) -> String {
        self.data.lines().find_map(|l| l.strip_prefix("Subject: ")).unwrap_or_default().trim().to_owned()
    }

    /// The first link to `/verify` in the body, HTML entities undone.
    pub fn verify_link(&self) -> Option<String> {
        let body = self.body();
        let start = body.find("http")?;
        let rest = &body[start..];
        let end = rest.find(['"', '<', ' ', '\r', '\n']).unwrap_or(rest.len());
        let link = rest[..end].replace("&amp;", "&");
        link.contains("/verify").then_some(link)
    }

    /// The numeric code printed after "code: ".
    pub fn code(&self) -> Option<String> {
        let body = self.body();
        let at = body.find("code: ")? + "code: ".len();
        let code: String = body[at..].chars().take_while(|c| c.is_ascii_digit()).collect();
        (!code.is_empty()).then_some(code)
    }
}

/// Waits (briefly) until the sink holds at least `n` messages.
pub async fn wait_for(sink: &SmtpSink, n: usize) -> Vec<Received> {
    for _ in 0..100 {
        let m = sink.messages();
        if m.len() >= n {
            return m;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("expected {n} mails, got {}", sink.messages().len());
}

fn address(arg: &str) -> String {
    let arg = arg.trim();
    let inner = arg.split_whitespace().next().unwrap_or("");
    inner.trim_start_matches('<').trim_end_matches('>').to_owned()
}

impl SmtpSink {
    /// Everything delivered so far to `address`.
    pub fn to(&self, address: &str) -> Vec<Received> {
        self.messages().into_iter().filter(|m| m.to.iter().any(|t| t.eq_ignore_ascii_case(address))).collect()
    }
}

impl Received {
    /// The one-time code: after "code: " if present, else the first run of 6–10 digits that
    /// stands on its own (preceded by a space, `>` or `:`, not part of a word, address or link).
    pub fn otp(&self) -> Option<String> {
        if let Some(code) = self.code() {
            return Some(code);
        }
        let body = self.body();
        let bytes = body.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if !bytes[i].is_ascii_digit() {
                i += 1;
                continue;
            }
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            let before_ok = start > 0 && matches!(bytes[start - 1], b' ' | b'>' | b':' | b'\n');
            let after_ok = i == bytes.len() || !(bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'@' | b'-'));
            if before_ok && after_ok && (6..=10).contains(&(i - start)) {
                return Some(body[start..i].to_owned());
            }
        }
        None
    }
}

/// Waits (briefly) until the sink holds at least `n` messages to `address`; returns those.
pub async fn wait_for_to(sink: &SmtpSink, address: &str, n: usize) -> Vec<Received> {
    for _ in 0..100 {
        let m = sink.to(address);
        if m.len() >= n {
            return m;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("expected {n} mails to {address}, got {}", sink.to(address).len());
}

impl Received {
    /// The first link to `/verify` anywhere in the body (unlike [`Received::verify_link`], which
    /// looks only at the first URL, this skips earlier non-verify URLs such as `{{ .SiteURL }}`).
    pub fn find_verify_link(&self) -> Option<String> {
        let body = self.body();
        let mut rest = body.as_str();
        while let Some(start) = rest.find("http") {
            let candidate = &rest[start..];
            let end = candidate.find(['"', '<', ' ', '\r', '\n']).unwrap_or(candidate.len());
            let link = candidate[..end].replace("&amp;", "&");
            if link.contains("/verify") {
                return Some(link);
            }
            rest = &candidate[end..];
        }
        None
    }
}
