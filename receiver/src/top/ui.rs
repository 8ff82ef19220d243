//! The screen of `sonde top`: what is shown (a [`Frame`] from `view`), which panel has
//! the focus, the sort column, the name filter, pause; and how it is drawn. No I/O: the
//! caller feeds frames and keys and draws onto any ratatui backend (tests use
//! `TestBackend`).

use std::time::Duration;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Row, Table};
use sonde::view::frame::{Frame, PeerRow, ProcessRow};
use sonde::view::rank;
use sonde::view::text::{self as fmt, or_dash};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Panel {
    Processes,
    Tcp,
    Dns,
    Storage,
}

const PANELS: [Panel; 4] = [Panel::Processes, Panel::Tcp, Panel::Dns, Panel::Storage];

/// Sort columns of the process table, in the order `s` cycles through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcSort {
    Cpu,
    Memory,
    FileIo,
    NetIo,
    Name,
}

/// Sort columns of the TCP peer table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerSort {
    Bytes,
    Opened,
    Address,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    Quit,
}

#[derive(Debug)]
pub struct App {
    /// What is on screen (frozen while paused).
    frame: Frame,
    interval: Duration,
    mode: &'static str,
    focus: Panel,
    proc_sort: ProcSort,
    peer_sort: PeerSort,
    filter: String,
    /// Typing a filter after `/`.
    editing: bool,
    paused: bool,
}

impl App {
    pub fn new(interval: Duration, mode: &'static str) -> Self {
        Self {
            frame: Frame::default(),
            interval,
            mode,
            focus: Panel::Processes,
            proc_sort: ProcSort::Cpu,
            peer_sort: PeerSort::Bytes,
            filter: String::new(),
            editing: false,
            paused: false,
        }
    }

    /// A new frame from the viewer; ignored while paused.
    pub fn show(&mut self, frame: Frame) {
        if !self.paused {
            self.frame = frame;
        }
    }

    pub fn key(&mut self, key: KeyEvent) -> Action {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Action::Quit;
        }
        if self.editing {
            match key.code {
                KeyCode::Enter => self.editing = false,
                KeyCode::Esc => {
                    self.editing = false;
                    self.filter.clear();
                }
                KeyCode::Backspace => {
                    self.filter.pop();
                }
                KeyCode::Char(c) if !c.is_control() && self.filter.len() < 32 => {
                    self.filter.push(c)
                }
                _ => {}
            }
            return Action::Continue;
        }
        let at = PANELS.iter().position(|p| *p == self.focus).unwrap_or(0);
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => return Action::Quit,
            KeyCode::Tab | KeyCode::Right | KeyCode::Down => {
                self.focus = PANELS[(at + 1) % PANELS.len()]
            }
            KeyCode::BackTab | KeyCode::Left | KeyCode::Up => {
                self.focus = PANELS[(at + PANELS.len() - 1) % PANELS.len()]
            }
            KeyCode::Char('s') => match self.focus {
                Panel::Tcp => {
                    self.peer_sort = match self.peer_sort {
                        PeerSort::Bytes => PeerSort::Opened,
                        PeerSort::Opened => PeerSort::Address,
                        PeerSort::Address => PeerSort::Bytes,
                    }
                }
                _ => {
                    self.proc_sort = match self.proc_sort {
                        ProcSort::Cpu => ProcSort::Memory,
                        ProcSort::Memory => ProcSort::FileIo,
                        ProcSort::FileIo => ProcSort::NetIo,
                        ProcSort::NetIo => ProcSort::Name,
                        ProcSort::Name => ProcSort::Cpu,
                    }
                }
            },
            KeyCode::Char('/') => {
                self.editing = true;
                self.focus = Panel::Processes;
            }
            KeyCode::Char('p') => self.paused = !self.paused,
            _ => {}
        }
        Action::Continue
    }

    /// The process rows to show: matching the filter, sorted by the chosen column.
    fn processes(&self) -> Vec<ProcessRow> {
        let mut rows: Vec<ProcessRow> = self
            .frame
            .processes
            .iter()
            .filter(|p| rank::matches(&p.name, &self.filter))
            .cloned()
            .collect();
        match self.proc_sort {
            ProcSort::Name => rows.sort_by(|a, b| a.name.cmp(&b.name)),
            s => rank::top_n(
                &mut rows,
                usize::MAX,
                |p| match s {
                    ProcSort::Cpu => p.cpu,
                    ProcSort::Memory => p.memory,
                    ProcSort::FileIo => p.file_io,
                    _ => p.net_io,
                },
                |p| &p.name,
            ),
        }
        rows
    }

    fn peers(&self) -> Vec<PeerRow> {
        let mut rows: Vec<PeerRow> = self
            .frame
            .tcp
            .peers
            .iter()
            .filter(|p| rank::matches(&p.process, &self.filter))
            .cloned()
            .collect();
        match self.peer_sort {
            PeerSort::Address => rows.sort_by(|a, b| a.address.cmp(&b.address)),
            s => rank::top_n(
                &mut rows,
                usize::MAX,
                |p| {
                    Some(if s == PeerSort::Bytes {
                        p.bytes()
                    } else {
                        p.opened
                    })
                },
                |p| &p.address,
            ),
        }
        rows
    }
}

fn block(app: &App, panel: Panel, title: String) -> Block<'static> {
    let b = Block::bordered().title(title);
    if app.focus == panel {
        b.border_style(Style::new().yellow().add_modifier(Modifier::BOLD))
    } else {
        b
    }
}

fn header(cells: &[&'static str]) -> Row<'static> {
    Row::new(cells.to_vec()).style(Style::new().add_modifier(Modifier::BOLD))
}

pub fn draw(f: &mut ratatui::Frame<'_>, app: &App) {
    let [top, procs, middle, storage, footer] = Layout::vertical([
        Constraint::Length(4),
        Constraint::Fill(3),
        Constraint::Fill(2),
        Constraint::Length(7),
        Constraint::Length(1),
    ])
    .areas(f.area());
    let [tcp, dns] =
        Layout::horizontal([Constraint::Percentage(62), Constraint::Percentage(38)]).areas(middle);
    draw_host(f, top, app);
    draw_processes(f, procs, app);
    draw_tcp(f, tcp, app);
    draw_dns(f, dns, app);
    draw_storage(f, storage, app);
    let keys = if app.editing {
        format!(" filter: {}_   enter keep  esc clear", app.filter)
    } else {
        " q quit  tab/arrows panel  s sort  / filter  p pause".to_owned()
    };
    f.render_widget(Paragraph::new(keys).reversed(), footer);
}

fn draw_host(f: &mut ratatui::Frame<'_>, area: Rect, app: &App) {
    let fr = &app.frame;
    let h = &fr.host;
    let mut first = Vec::new();
    if let Some(busy) = h.cpu_busy {
        let cpus = h.cpus.map(|n| format!(" of {n:.0}")).unwrap_or_default();
        first.push(format!("cpu {}{cpus}", fmt::percent(busy)));
    }
    if let (Some(used), Some(limit)) = (h.memory_used, h.memory_limit) {
        first.push(format!("mem {} / {}", fmt::bytes(used), fmt::bytes(limit)));
    }
    if let Some([a, b, c]) = h.load {
        first.push(format!("load {a:.2} {b:.2} {c:.2}"));
    }
    if let Some(n) = h.processes {
        first.push(format!("procs {n:.0}"));
    }
    let second = [
        format!(
            "disk r {} w {}",
            or_dash(h.disk_read, fmt::byte_rate),
            or_dash(h.disk_write, fmt::byte_rate)
        ),
        format!(
            "net rx {} tx {}",
            or_dash(h.net_receive, fmt::byte_rate),
            or_dash(h.net_transmit, fmt::byte_rate)
        ),
        format!(
            "probes {}/{} ({})",
            h.probes_attached, h.probes_total, app.mode
        ),
        format!(
            "sonde cpu {} rss {}",
            or_dash(h.agent_cpu, fmt::cpu),
            or_dash(h.agent_rss, fmt::bytes)
        ),
    ];
    let state = if app.paused { "  PAUSED" } else { "" };
    let title = format!(
        " sonde top · {} UTC · every {}{state} ",
        fmt::clock(fr.time_unix_nano),
        humantime::format_duration(app.interval)
    );
    let text = vec![
        Line::from(first.join("   ")),
        Line::from(second.join("   ")),
    ];
    f.render_widget(
        Paragraph::new(text).block(Block::bordered().title(title.bold())),
        area,
    );
}

fn draw_processes(f: &mut ratatui::Frame<'_>, area: Rect, app: &App) {
    let rows = app.processes();
    let sort = match app.proc_sort {
        ProcSort::Cpu => "cpu",
        ProcSort::Memory => "memory",
        ProcSort::FileIo => "file i/o",
        ProcSort::NetIo => "tcp i/o",
        ProcSort::Name => "name",
    };
    let filter = if app.filter.is_empty() {
        String::new()
    } else {
        format!(" · filter \"{}\"", app.filter)
    };
    let title = format!(" Processes · {} · sort {sort}{filter} ", rows.len());
    let body = rows.iter().map(|p| {
        Row::new(vec![
            p.name.clone(),
            p.container.clone().unwrap_or_default(),
            match p.pids.as_slice() {
                [] => String::new(),
                [pid] => pid.to_string(),
                pids => format!("{} pids", pids.len()),
            },
            or_dash(p.cpu, fmt::cpu),
            or_dash(p.memory, fmt::bytes),
            or_dash(p.file_io, fmt::byte_rate),
            or_dash(p.net_io, fmt::byte_rate),
        ])
    });
    let table = Table::new(
        body,
        [
            Constraint::Fill(1),
            Constraint::Length(16),
            Constraint::Length(9),
            Constraint::Length(8),
            Constraint::Length(11),
            Constraint::Length(13),
            Constraint::Length(13),
        ],
    )
    .header(header(&[
        "NAME",
        "CONTAINER",
        "PID",
        "CPU",
        "MEMORY",
        "FILE I/O",
        "TCP I/O",
    ]))
    .block(block(app, Panel::Processes, title));
    f.render_widget(table, area);
}

fn draw_tcp(f: &mut ratatui::Frame<'_>, area: Rect, app: &App) {
    let t = &app.frame.tcp;
    let head = vec![
        Line::from(vec![
            Span::raw(format!("opened {}  ", or_dash(t.opened, fmt::per_sec))),
            Span::raw(format!("failed {}  ", or_dash(t.failed, fmt::per_sec))),
            Span::raw(format!("retrans {}", or_dash(t.retransmits, fmt::per_sec))),
        ]),
        Line::from(format!(
            "established {}  rtt p50 {} p99 {}",
            or_dash(t.established, |n| format!("{n:.0}")),
            or_dash(t.rtt_p50, fmt::quantile),
            or_dash(t.rtt_p99, fmt::quantile)
        )),
    ];
    let sort = match app.peer_sort {
        PeerSort::Bytes => "bytes",
        PeerSort::Opened => "opened",
        PeerSort::Address => "address",
    };
    let b = block(app, Panel::Tcp, format!(" TCP · peers by {sort} "));
    let inner = b.inner(area);
    f.render_widget(b, area);
    let [line, table] = Layout::vertical([Constraint::Length(2), Constraint::Fill(1)]).areas(inner);
    f.render_widget(Paragraph::new(head), line);
    let rows = app.peers().into_iter().map(|p| {
        Row::new(vec![
            fmt::peer(&p),
            p.process.clone(),
            fmt::byte_rate(p.transmit),
            fmt::byte_rate(p.receive),
            fmt::per_sec(p.opened),
        ])
    });
    let table_widget = Table::new(
        rows,
        [
            // 255.255.255.255:65535
            Constraint::Min(21),
            // comm is at most 15 bytes
            Constraint::Length(15),
            Constraint::Length(11),
            Constraint::Length(11),
            Constraint::Length(7),
        ],
    )
    .header(header(&["PEER", "PROCESS", "TX", "RX", "OPENED"]));
    f.render_widget(table_widget, table);
}

fn draw_dns(f: &mut ratatui::Frame<'_>, area: Rect, app: &App) {
    let d = &app.frame.dns;
    let mut lines = vec![
        Line::from(format!(
            "queries {}  cache hits {}",
            or_dash(d.queries, fmt::per_sec),
            or_dash(d.cache_hit_ratio, fmt::percent)
        )),
        Line::from(format!(
            "latency p50 {}  p99 {}",
            or_dash(d.p50, fmt::quantile),
            or_dash(d.p99, fmt::quantile)
        )),
        Line::from(if d.failures.is_empty() {
            "failures none".to_owned()
        } else {
            let list: Vec<String> = d
                .failures
                .iter()
                .map(|(e, r)| format!("{e} {}", fmt::per_sec(*r)))
                .collect();
            format!("failures {}", list.join(", "))
        }),
    ];
    let clients: Vec<String> = d
        .clients
        .iter()
        .filter(|(n, _)| rank::matches(n, &app.filter))
        .take(5)
        .map(|(n, r)| format!("{n} {}", fmt::per_sec(*r)))
        .collect();
    lines.push(Line::from(format!("clients {}", clients.join(", "))));
    lines.push(Line::from("slowest names (last minute):".bold()));
    if d.slowest.is_empty() {
        lines.push(Line::from(
            "  none yet (probes.dns.question_names: off hides them)",
        ));
    }
    for (name, secs) in &d.slowest {
        lines.push(Line::from(format!("  {:>8}  {name}", fmt::duration(*secs))));
    }
    f.render_widget(
        Paragraph::new(lines).block(block(app, Panel::Dns, " DNS ".to_owned())),
        area,
    );
}

fn draw_storage(f: &mut ratatui::Frame<'_>, area: Rect, app: &App) {
    let s = &app.frame.storage;
    let rows = [("fs", &s.filesystems), ("dev", &s.devices)]
        .into_iter()
        .flat_map(|(kind, rows)| {
            fmt::top_latency(rows, usize::MAX)
                .into_iter()
                .map(move |r| (kind, r))
        })
        .map(|(kind, r)| {
            Row::new(vec![
                kind.to_owned(),
                r.name.clone(),
                fmt::per_sec(r.ops),
                fmt::byte_rate(r.bytes),
                or_dash(r.p50, fmt::quantile),
                or_dash(r.p99, fmt::quantile),
            ])
        });
    let table = Table::new(
        rows,
        [
            Constraint::Length(4),
            Constraint::Fill(1),
            Constraint::Length(9),
            Constraint::Length(13),
            Constraint::Length(9),
            Constraint::Length(9),
        ],
    )
    .header(header(&[
        "",
        "FILE SYSTEM / DEVICE",
        "OPS",
        "BYTES",
        "P50",
        "P99",
    ]))
    .block(block(app, Panel::Storage, " Storage · latency ".to_owned()));
    f.render_widget(table, area);
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;
    use sonde::view::frame::{Dns, Host, Tcp};

    fn frame() -> Frame {
        let proc = |name: &str, pid, cpu, mem| ProcessRow {
            name: name.to_owned(),
            container: (name == "burner").then(|| "3f4e5a6b7c8d".to_owned()),
            pids: vec![pid],
            cpu: Some(cpu),
            memory: Some(mem),
            file_io: None,
            net_io: Some(100.0),
        };
        Frame {
            time_unix_nano: 3_600_000_000_000,
            period_secs: Some(1.0),
            host: Host {
                cpu_busy: Some(0.5),
                cpus: Some(2.0),
                probes_attached: 20,
                probes_total: 25,
                ..Host::default()
            },
            processes: vec![proc("burner", 42, 0.95, 1e6), proc("bigmem", 7, 0.01, 9e9)],
            tcp: Tcp {
                opened: Some(12.0),
                peers: vec![PeerRow {
                    address: "127.0.0.1".into(),
                    port: Some(8080),
                    process: "burner".into(),
                    transmit: 2048.0,
                    ..PeerRow::default()
                }],
                ..Tcp::default()
            },
            dns: Dns {
                queries: Some(5.0),
                clients: vec![("burner".into(), 5.0)],
                ..Dns::default()
            },
            storage: Default::default(),
        }
    }

    fn screen(app: &App) -> String {
        let mut t = Terminal::new(TestBackend::new(120, 40)).expect("test terminal");
        t.draw(|f| draw(f, app)).expect("draw");
        let buf = t.backend().buffer().clone();
        (0..buf.area.height)
            .map(|y| {
                (0..buf.area.width)
                    .map(|x| buf[(x, y)].symbol())
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn press(app: &mut App, code: KeyCode) -> Action {
        app.key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    fn row_of(text: &str, needle: &str) -> usize {
        text.lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle} not on screen:\n{text}"))
    }

    #[test]
    fn panels_sort_filter_pause_and_quit() {
        let mut app = App::new(Duration::from_secs(1), "ebpf");
        app.show(frame());
        let text = screen(&app);
        for needle in [
            "01:00:00 UTC",
            "cpu 50% of 2",
            "probes 20/25 (ebpf)",
            "95.0%",
            "CONTAINER",
            "127.0.0.1:8080",
            "opened 12/s",
            "queries 5.0/s",
            "burner 5.0/s",
            "q quit",
        ] {
            assert!(text.contains(needle), "{needle} not on screen:\n{text}");
        }
        assert!(
            row_of(&text, "burner") < row_of(&text, "bigmem"),
            "by cpu:\n{text}"
        );
        assert_eq!(
            row_of(&text, "3f4e5a6b7c8d"),
            row_of(&text, "burner"),
            "the container on its process's row:\n{text}"
        );

        press(&mut app, KeyCode::Char('s'));
        let text = screen(&app);
        assert!(text.contains("sort memory"), "{text}");
        assert!(
            row_of(&text, "bigmem") < row_of(&text, " burner "),
            "by memory:\n{text}"
        );

        for c in ['/', 'b', 'i', 'g'] {
            press(&mut app, KeyCode::Char(c));
        }
        assert!(screen(&app).contains("filter: big_"));
        press(&mut app, KeyCode::Enter);
        let text = screen(&app);
        assert!(text.contains("filter \"big\""), "{text}");
        assert!(text.contains("bigmem") && !text.contains(" 42 "), "{text}");
        press(&mut app, KeyCode::Char('/'));
        press(&mut app, KeyCode::Esc);
        assert!(screen(&app).contains(" 42 "), "esc clears the filter");

        press(&mut app, KeyCode::Tab);
        assert_eq!(app.focus, Panel::Tcp);
        press(&mut app, KeyCode::Left);
        press(&mut app, KeyCode::Left);
        assert_eq!(app.focus, Panel::Storage, "arrows wrap around");

        press(&mut app, KeyCode::Char('p'));
        app.show(Frame::default());
        let text = screen(&app);
        assert!(text.contains("PAUSED") && text.contains("burner"), "{text}");
        press(&mut app, KeyCode::Char('p'));
        app.show(Frame::default());
        assert!(!screen(&app).contains("burner"), "resumed frames show");

        assert_eq!(press(&mut app, KeyCode::Char('q')), Action::Quit);
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(app.key(ctrl_c), Action::Quit);
    }
}
