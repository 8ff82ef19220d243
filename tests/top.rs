//! What a person at the terminal sees: `sonde run`'s compact console summary with no
//! collector (and what happens when its reader goes away), and `sonde top`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::cgroup::FakeContainer;
use common::dns::{addresses, wait_ready, Dnsmasq};
use common::{bpf_ids_of, bpftool_ids, require_root, unique_exe, unique_suffix, TempDir};

/// A child killed on drop, so a failing assertion leaves nothing running.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `sonde run | head`: the console prints the banner once and then short summaries; when
/// the reader closes the pipe Sonde releases its probes and exits 0 instead of panicking.
#[test]
fn console_summary_then_closed_stdout_ends_cleanly() {
    require_root();
    let dir = TempDir::new("console");
    let stderr = std::fs::File::create(dir.path().join("stderr")).expect("stderr file");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sonde"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("OTEL_")) {
        cmd.env_remove(k);
    }
    let mut child = Reaped(
        cmd.arg("run")
            .env("OTEL_METRIC_EXPORT_INTERVAL", "500")
            .env("SONDE_LOG", "sonde=info,warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn sonde"),
    );
    let log = || std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default();
    let out = child.0.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(out).lines();
    let mut text = Vec::new();
    // Banner, then three summaries (the first has no rates yet).
    while text
        .iter()
        .filter(|l: &&String| l.starts_with("── sonde"))
        .count()
        < 4
    {
        match lines.next() {
            Some(Ok(l)) => text.push(l),
            other => panic!(
                "stdout ended early ({other:?}):\n{}\n{}",
                text.join("\n"),
                log()
            ),
        }
    }
    drop(lines); // the reader goes away, as `head` does
    let all = text.join("\n");
    for needle in [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "sonde top",
        "--verbose-console",
    ] {
        assert!(all.contains(needle), "banner lacks {needle}:\n{all}");
    }
    assert_eq!(
        text.iter().filter(|l| l.contains("sonde top")).count(),
        1,
        "the banner is said once:\n{all}"
    );
    let blocks: Vec<&[String]> = text.split(|l| l.starts_with("── sonde")).skip(1).collect();
    for b in &blocks {
        assert!(b.len() < 40, "a summary of {} lines:\n{all}", b.len() + 1);
    }
    assert!(
        blocks
            .iter()
            .skip(1)
            .any(|b| b.iter().any(|l| l.starts_with("host       cpu"))),
        "no host CPU headline after the first interval:\n{all}"
    );

    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.0.try_wait().expect("try_wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "sonde kept running with stdout closed:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = log();
    assert!(status.success(), "sonde exited {status}:\n{log}");
    assert!(!log.contains("panicked"), "{log}");
    assert!(
        log.contains("probes detached"),
        "probes not released in order:\n{log}"
    );
}

/// A tmux server of the test's own (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(cols: u16, rows: u16, command: &str) -> Self {
        let socket = format!("sonde-top-{}", unique_suffix());
        let status = Command::new("tmux")
            .args(["-L", &socket, "-f", "/dev/null", "new-session", "-d"])
            .args(["-x", &cols.to_string(), "-y", &rows.to_string()])
            .arg(command)
            .status()
            .expect("tmux is needed for this test: apt-get install tmux");
        assert!(status.success(), "tmux new-session failed");
        Self { socket }
    }

    fn cmd(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("run tmux");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn capture(&self) -> String {
        self.cmd(&["capture-pane", "-p"])
    }

    fn format(&self, f: &str) -> String {
        self.cmd(&["display-message", "-p", f]).trim().to_owned()
    }

    /// Captures the pane until `ok` holds; panics with the last capture after `timeout`.
    fn wait_for(&self, what: &str, timeout: Duration, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let pane = self.capture();
            if ok(&pane) {
                return pane;
            }
            assert!(
                Instant::now() < deadline,
                "{what} not seen within {timeout:?}:\n{pane}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}

/// The pid of the only child of `parent` (the pane's shell runs `sonde top`).
fn child_of(parent: &str) -> i32 {
    let path = format!("/proc/{parent}/task/{parent}/children");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let children = std::fs::read_to_string(&path).unwrap_or_default();
        if let Some(pid) = children.split_whitespace().next() {
            return pid.parse().expect("a pid");
        }
        assert!(
            Instant::now() < deadline,
            "no process under the pane's shell"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The workload: burns CPU, opens loopback TCP connections and sends 64 KiB on each,
/// and asks the test's resolver for names, all under one distinctive executable name.
const WORKLOAD: &str = r#"
import socket, struct, sys, threading, time
resolver, zone = sys.argv[1], sys.argv[2]
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(64)
def serve():
    while True:
        c, _ = srv.accept()
        while c.recv(65536): pass
        c.close()
threading.Thread(target=serve, daemon=True).start()
port = srv.getsockname()[1]
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(2)
i = 0
while True:
    end = time.time() + 0.1
    while time.time() < end: pass
    c = socket.create_connection(("127.0.0.1", port)); c.sendall(b"x" * 65536); c.close()
    name = b"".join(bytes([len(l)]) + l for l in ("w%d.%s" % (i % 5, zone)).encode().split(b"."))
    u.sendto(struct.pack(">HHHHHH", i & 0xffff, 0x100, 1, 0, 0, 0) + name + b"\0\0\1\0\1", (resolver, 53))
    try: u.recv(512)
    except OSError: pass
    i += 1
"#;

fn line_with<'a>(pane: &'a str, needles: &[&str]) -> Option<&'a str> {
    pane.lines().find(|l| needles.iter().all(|n| l.contains(n)))
}

/// The first `N.N%` after `name` on its line, as a number.
fn cpu_after(line: &str, name: &str) -> Option<f64> {
    let rest = &line[line.find(name)? + name.len()..];
    rest.split_whitespace()
        .find_map(|t| t.strip_suffix('%')?.parse().ok())
}

/// `sonde top` as a person runs it, in tmux: the workload shows up in the process panel
/// with its container, and in the TCP and DNS panels with its rates; `q` restores the terminal and releases every BPF program.
#[test]
fn top_in_tmux_shows_a_workload_and_quits_cleanly() {
    require_root();
    let dir = TempDir::new("top");
    let [resolver, ..] = addresses();
    let zone = format!("top{}.test", unique_suffix());
    let _dns = Dnsmasq::start(resolver, &[format!("--address=/{zone}/10.9.8.7")]);
    wait_ready(resolver, &format!("ready.{zone}"));

    let sonde = env!("CARGO_BIN_EXE_sonde");
    let tmux = Tmux::start(
        200,
        50,
        &format!(
            "env -u OTEL_EXPORTER_OTLP_ENDPOINT SONDE_LOG=sonde=info {sonde} top --interval 1s; \
             echo SONDE-TOP-EXIT=$?; stty -a | tr ' ' '\\n' | grep -x -- '-\\?icanon'; sleep 600"
        ),
    );
    let pid = child_of(&tmux.format("#{pane_pid}"));
    tmux.wait_for("the screen of sonde top", Duration::from_secs(60), |p| {
        p.contains("q quit") && p.contains("probes ") && p.contains("(ebpf)")
    });
    let progs = bpf_ids_of(pid).progs;
    assert!(!progs.is_empty(), "sonde top holds no BPF program");
    assert_eq!(
        tmux.format("#{alternate_on}"),
        "1",
        "the view uses the alternate screen"
    );

    let (exe, name) = unique_exe(dir.path(), "stw", "/usr/bin/python3");
    // In a Docker-shaped cgroup: its row names the container as `docker ps` would.
    let container = FakeContainer::docker();
    let short_id = &container.id[..12];
    let mut workload =
        Reaped(container.spawn(&exe, &["-c", WORKLOAD, &resolver.to_string(), &zone]));
    let pane = tmux.wait_for(
        "the workload in the process, TCP and DNS panels",
        Duration::from_secs(30),
        |p| {
            let cpu = line_with(p, &[&name, short_id, "%"]).and_then(|l| cpu_after(l, short_id));
            let tcp = line_with(p, &["127.0.0.1:", &name]);
            let dns = line_with(p, &["clients", &name]);
            cpu.is_some_and(|c| c > 0.0)
                && tcp.is_some_and(|l| l.contains("KiB/s") || l.contains("MiB/s"))
                && dns.is_some_and(|l| !l.contains(&format!("{name} 0/s")))
                && p.contains(&zone)
        },
    );
    if let Ok(Some(status)) = workload.0.try_wait() {
        panic!("the workload ended early ({status}):\n{pane}");
    }
    let tcp_headline = line_with(&pane, &["opened ", "failed "]).expect("TCP headline");
    assert!(
        !tcp_headline.contains("opened -") && !tcp_headline.contains("opened 0/s"),
        "{pane}"
    );
    let dns_headline = line_with(&pane, &["queries ", "cache hits "]).expect("DNS headline");
    assert!(!dns_headline.contains("queries -"), "{pane}");
    let dns_latency = line_with(&pane, &["latency p50 "]).expect("DNS latency");
    assert!(!dns_latency.contains("p50 -"), "{pane}");
    eprintln!("{pane}");
    drop(workload);

    tmux.cmd(&["send-keys", "q"]);
    let after = tmux.wait_for("sonde top's exit", Duration::from_secs(30), |p| {
        p.contains("SONDE-TOP-EXIT=") && p.contains("icanon")
    });
    assert!(after.contains("SONDE-TOP-EXIT=0"), "{after}");
    assert!(
        !after.contains("q quit"),
        "the view is still on the screen:\n{after}"
    );
    assert!(
        after.lines().any(|l| l.trim() == "icanon"),
        "the terminal was left in raw mode:\n{after}"
    );
    assert_eq!(
        tmux.format("#{alternate_on}"),
        "0",
        "alternate screen not left"
    );
    assert_eq!(tmux.format("#{cursor_flag}"), "1", "cursor left hidden");
    let live = bpftool_ids("prog");
    let left: Vec<&u64> = progs.iter().filter(|id| live.contains(id)).collect();
    assert!(
        left.is_empty(),
        "BPF programs left behind after q: {left:?}"
    );
}

/// Without a terminal `sonde top` prints one summary line per interval, and SIGTERM ends
/// it with exit 0.
#[test]
fn top_without_a_terminal_prints_lines() {
    require_root();
    let mut child = Reaped(
        Command::new(env!("CARGO_BIN_EXE_sonde"))
            .args(["top", "--interval", "300ms"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sonde top"),
    );
    let out = child.0.stdout.take().expect("piped stdout");
    let lines: Vec<String> = BufReader::new(out)
        .lines()
        .take(3)
        .map(|l| l.expect("a line"))
        .collect();
    for l in &lines {
        assert!(
            l.len() > 8 && l.as_bytes()[2] == b':' && l.contains(" | cpu "),
            "{l}"
        );
    }
    // SAFETY: kill has no memory-safety preconditions; the pid is our own child.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.0.try_wait().expect("try_wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "sonde top ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}

/// How a `sonde top` session in tmux is ended.
#[derive(Debug, Clone, Copy)]
enum Ending {
    Sigterm,
    /// The debug build's `SONDE_TOP_TEST_PANIC` hook panics after this many frames.
    PanicAfterFrames(u32),
}

/// Runs `sonde top` in tmux, ends it as `ending` says and checks what a person would: the
/// shell's terminal is back (cooked mode, main screen, cursor shown), the exit status, and
/// no BPF program of it is left.
fn top_in_tmux_ends_with(ending: Ending) -> String {
    require_root();
    let sonde = env!("CARGO_BIN_EXE_sonde");
    let panic_env = match ending {
        Ending::PanicAfterFrames(n) => format!("SONDE_TOP_TEST_PANIC={n}"),
        Ending::Sigterm => String::new(),
    };
    let tmux = Tmux::start(
        160,
        45,
        &format!(
            "env -u OTEL_EXPORTER_OTLP_ENDPOINT {panic_env} {sonde} top --interval 1s; \
             echo SONDE-TOP-EXIT=$?; stty -a | tr ' ' '\\n' | grep -x -- '-\\?icanon'; sleep 600"
        ),
    );
    let pid = child_of(&tmux.format("#{pane_pid}"));
    tmux.wait_for("the screen of sonde top", Duration::from_secs(60), |p| {
        p.contains("q quit") && p.contains("(ebpf)")
    });
    let progs = bpf_ids_of(pid).progs;
    assert!(!progs.is_empty(), "sonde top holds no BPF program");
    assert_eq!(tmux.format("#{alternate_on}"), "1");
    if let Ending::Sigterm = ending {
        // SAFETY: kill has no memory-safety preconditions; the pid is sonde top's.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "kill");
    }
    let after = tmux.wait_for("sonde top's exit", Duration::from_secs(30), |p| {
        p.contains("SONDE-TOP-EXIT=") && p.contains("icanon")
    });
    let expected = match ending {
        Ending::Sigterm => "SONDE-TOP-EXIT=0",
        Ending::PanicAfterFrames(_) => "SONDE-TOP-EXIT=101",
    };
    assert!(after.contains(expected), "{ending:?}: {after}");
    assert!(
        !after.contains("q quit"),
        "the view is still shown:\n{after}"
    );
    assert!(
        after.lines().any(|l| l.trim() == "icanon"),
        "{ending:?} left the terminal in raw mode:\n{after}"
    );
    assert_eq!(tmux.format("#{alternate_on}"), "0", "alternate screen kept");
    assert_eq!(tmux.format("#{cursor_flag}"), "1", "cursor left hidden");
    let live = bpftool_ids("prog");
    let left: Vec<&u64> = progs.iter().filter(|id| live.contains(id)).collect();
    assert!(
        left.is_empty(),
        "BPF programs left after {ending:?}: {left:?}"
    );
    after
}

#[test]
fn top_in_tmux_restores_the_terminal_on_sigterm() {
    top_in_tmux_ends_with(Ending::Sigterm);
}

/// A panic while the screen is shown: the terminal is restored before the message prints,
/// so the message is readable on the main screen, and the probes are released.
#[test]
fn top_in_tmux_restores_the_terminal_on_panic() {
    let after = top_in_tmux_ends_with(Ending::PanicAfterFrames(4));
    assert!(
        after.contains("panicking on purpose"),
        "the panic message is not on the restored screen:\n{after}"
    );
}
