//! Debian's docker-registry (CNCF distribution), started on a free loopback
//! port with its storage in a temporary directory, optionally behind
//! htpasswd Basic auth; killed when dropped.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Registry {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
    creds: Option<(String, String)>,
}

impl Registry {
    /// `basic`: require these credentials (htpasswd, bcrypt).
    pub fn start(basic: Option<(&str, &str)>) -> Registry {
        Registry::start_on(super::free_port(), basic)
    }

    /// On a port chosen before (one a VM was told of).
    pub fn start_on(port: u16, basic: Option<(&str, &str)>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if let Some((user, pass)) = basic {
            let htpasswd = dir.path().join("htpasswd");
            let ok = Command::new("htpasswd").args(["-Bbc"]).arg(&htpasswd).args([user, pass]).output().unwrap();
            assert!(ok.status.success(), "htpasswd: {}", String::from_utf8_lossy(&ok.stderr));
            config += &format!("auth:\n  htpasswd:\n    realm: test\n    path: {}\n", htpasswd.display());
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry (apt-get install docker-registry)");
        let r = Registry { port, child, _dir: dir, creds: basic.map(|(u, p)| (u.into(), p.into())) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Pushes `source` (a skopeo image name, e.g. `oci:DIR:TAG`) as
    /// `NAME:TAG`; `all` copies every image of an index.
    pub fn push(&self, source: &str, name: &str, all: bool) {
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "-q", "--dest-tls-verify=false"]);
        if all {
            cmd.arg("--all");
        }
        if let Some((u, p)) = &self.creds {
            cmd.arg(format!("--dest-creds={u}:{p}"));
        }
        let out = cmd.arg(source).arg(format!("docker://{}/{name}", self.host())).output().unwrap();
        assert!(out.status.success(), "skopeo copy {source}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// The registry's storage directory, for tampering with blobs.
    pub fn storage(&self) -> std::path::PathBuf {
        self._dir.path().join("data")
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Writes an auth.json with these credentials for `host`.
pub fn auth_file(dir: &Path, host: &str, user: &str, pass: &str) -> std::path::PathBuf {
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    let path = dir.join("auth.json");
    std::fs::write(&path, format!(r#"{{"auths": {{"{host}": {{"auth": "{auth}"}}}}}}"#)).unwrap();
    path
}
