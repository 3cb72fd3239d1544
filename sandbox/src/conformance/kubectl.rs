//! Running kubectl for the scenarios: one binary, one kubeconfig, a private
//! discovery cache, every call bounded in time; `kubectl proxy` for the
//! requests whose raw HTTP answer is what is observed.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// Longest any one kubectl call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// What one kubectl call did.
#[derive(Debug, Clone)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.code == 0
    }
}

/// kubectl pointed at one cluster.
#[derive(Debug, Clone)]
pub struct Kubectl {
    bin: PathBuf,
    kubeconfig: PathBuf,
    /// Discovery cache and manifests of this run.
    pub dir: PathBuf,
}

impl Kubectl {
    pub fn new(bin: &Path, kubeconfig: &Path, dir: PathBuf) -> Self {
        Kubectl {
            bin: bin.to_path_buf(),
            kubeconfig: kubeconfig.to_path_buf(),
            dir,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.join("cache"))
            .args(args)
            // kubectl diff runs `diff`; keep its output stable.
            .env("KUBECTL_EXTERNAL_DIFF", "diff -u -N")
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// Runs kubectl to completion (bounded by [`CALL_TIMEOUT`]).
    pub async fn run(&self, args: &[&str]) -> Result<Run> {
        let out = tokio::time::timeout(CALL_TIMEOUT, self.command(args).output())
            .await
            .with_context(|| format!("kubectl {args:?} did not finish in {CALL_TIMEOUT:?}"))?
            .with_context(|| format!("starting {} {args:?}", self.bin.display()))?;
        Ok(Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Runs kubectl and fails unless it exits 0.
    pub async fn ok(&self, args: &[&str]) -> Result<String> {
        let run = self.run(args).await?;
        ensure!(
            run.ok(),
            "kubectl {args:?} exited {}: {}{}",
            run.code,
            run.stdout,
            run.stderr
        );
        Ok(run.stdout)
    }

    /// Runs kubectl and parses its stdout as one JSON document.
    pub async fn json(&self, args: &[&str]) -> Result<Value> {
        let out = self.ok(args).await?;
        serde_json::from_str(&out)
            .with_context(|| format!("kubectl {args:?} printed no JSON: {out}"))
    }

    /// Starts a long-running kubectl (a watch) with its stdout piped.
    pub fn spawn(&self, args: &[&str]) -> Result<Child> {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {} {args:?}", self.bin.display()))
    }

    /// Writes a manifest into the run's directory and returns its path.
    pub fn manifest(&self, name: &str, yaml: &str) -> Result<String> {
        let path = self.dir.join(name);
        std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
        Ok(path.to_string_lossy().into_owned())
    }

    /// Starts `kubectl proxy` on a free loopback port.
    pub async fn proxy(&self) -> Result<Proxy> {
        let mut child = self.spawn(&["proxy", "--port=0", "--address=127.0.0.1"])?;
        let stdout = child.stdout.take().context("kubectl proxy has no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(CALL_TIMEOUT, lines.next_line())
            .await
            .context("kubectl proxy did not say where it serves")?
            .context("reading kubectl proxy's output")?
            .context("kubectl proxy exited before serving")?;
        // "Starting to serve on 127.0.0.1:PORT"
        let addr = line
            .rsplit(' ')
            .next()
            .filter(|a| a.contains(':'))
            .with_context(|| format!("kubectl proxy said {line:?}, not where it serves"))?
            .to_string();
        Ok(Proxy {
            addr,
            _child: child,
        })
    }
}

/// A running `kubectl proxy`: plain HTTP in front of the cluster, with
/// kubectl doing TLS and authentication. Stopped when dropped.
pub struct Proxy {
    addr: String,
    _child: Child,
}

/// A raw HTTP answer.
#[derive(Debug, Clone)]
pub struct RawAnswer {
    pub status: u16,
    pub body: Value,
}

impl Proxy {
    /// One HTTP/1.1 request through the proxy; the body is read as JSON.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<RawAnswer> {
        let body = body.map(Value::to_string).unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let exchange = async {
            let mut stream = TcpStream::connect(&self.addr).await?;
            stream.write_all(request.as_bytes()).await?;
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).await?;
            Ok::<_, std::io::Error>(answer)
        };
        let answer = tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .with_context(|| format!("{method} {path} through kubectl proxy timed out"))?
            .with_context(|| format!("{method} {path} through kubectl proxy at {}", self.addr))?;
        parse_http(&answer).with_context(|| format!("the answer to {method} {path}"))
    }
}

fn parse_http(answer: &[u8]) -> Result<RawAnswer> {
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers")?;
    let head = String::from_utf8_lossy(&answer[..split]);
    let mut body = answer[split + 4..].to_vec();
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse::<u16>().ok())
        .with_context(|| format!("no status line in {head:?}"))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if chunked {
        body = dechunk(&body)?;
    }
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body)
            .with_context(|| format!("the body is not JSON: {}", String::from_utf8_lossy(&body)))?
    };
    Ok(RawAnswer { status, body })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("a chunk size line without CRLF")?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .with_context(|| format!("chunk size {size_text:?}"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            bail!("a chunk of {size} bytes is cut short");
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_answers() -> Result<()> {
        let plain = b"HTTP/1.1 404 Not Found\r\nContent-Length: 13\r\n\r\n{\"code\":404}\n";
        let a = parse_http(plain)?;
        assert_eq!((a.status, a.body["code"].as_i64()), (404, Some(404)));
        let chunked =
            b"HTTP/1.1 409 Conflict\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n2\r\n1}\r\n0\r\n\r\n";
        let a = parse_http(chunked)?;
        assert_eq!((a.status, a.body["a"].as_i64()), (409, Some(1)));
        assert!(parse_http(b"HTTP/1.1 200 OK\r\n").is_err());
        Ok(())
    }
}
