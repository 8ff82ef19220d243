//! Reads the tcp family: per-CPU counters, state deltas and histograms every tick; the
//! live connections' byte and retransmit totals every tick; open/close/fail events as
//! they arrive. Attribution (process, peer) is kept by [`TcpLedger`], which is pure.
//!
//! Exactness: bytes and retransmits are differences of the socket's own cumulative
//! counters, taken from the live-connection map each tick and from the close event at
//! the end, so over a connection's life they add up to exactly its bytes_acked,
//! bytes_received and total_retrans (minus what it had before Sonde saw it). The kernel
//! deletes a connection's entry before it emits the close event, so only a walk that
//! read the entry before its close was drained can see it again; the walk reads the map
//! without the ledger's lock (the drain task must not wait for 65 536 map syscalls),
//! and the ledger ignores a walk's sighting of a connection it saw close during that
//! walk, so an entry is never counted after its close.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use sonde_probes::abi::{
    sonde_tcp_conn, sonde_tcp_counter as slot, sonde_tcp_direction as dir, sonde_tcp_event,
    sonde_tcp_event_kind as kind, sonde_tcp_hist, sonde_tcp_hist_index as hidx, SONDE_HIST_SLOTS,
    SONDE_TCP_STATE_SLOTS,
};
use sonde_probes::names::tcp as n;

use crate::aggregate::bounded::{BoundedCounter, SeriesPolicy};
use crate::aggregate::process::ProcessKey;
use crate::cgroup::Attribution;
use crate::collect::ring::{DrainTask, Ring, Sink};
pub use crate::collect::CollectError;
use crate::collect::{map_err, sum_slot, take_map};
use crate::family::process::collect::comm_to_string;
use crate::probe::LoadedFamily;
use crate::spans::RecentExemplars;

pub const SLOTS: usize = SONDE_HIST_SLOTS as usize;
pub const STATE_SLOTS: usize = SONDE_TCP_STATE_SLOTS as usize;
const AF_INET6: u16 = 10;

/// The peer port attribute: the peer's own port for outbound connections; for inbound
/// ones the local listening port (`server.port`), so client ephemeral ports do not
/// multiply series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PortAttr {
    Peer(u16),
    Server(u16),
}

/// Who a series belongs to: process (executable name and container; `None` when the
/// kernel did not know the owner) and peer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Who {
    pub process: Option<ProcessKey>,
    pub peer: IpAddr,
    pub port: PortAttr,
}

/// Connection direction as the kernel recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    Inbound,
    Outbound,
    /// Seen only after it was set up (it predates the probe).
    Unknown,
}

/// The peer address of a kernel record: IPv4 in the first 4 bytes for AF_INET; IPv6
/// (IPv4-mapped addresses shown as IPv4, the way users write them) for AF_INET6.
pub fn decode_addr(family: u16, raw: &[u8; 16]) -> IpAddr {
    if family == AF_INET6 {
        IpAddr::V6(Ipv6Addr::from(*raw)).to_canonical()
    } else {
        IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))
    }
}

pub fn direction(d: u16) -> Direction {
    match d {
        x if x == dir::SONDE_TCP_DIR_INBOUND as u16 => Direction::Inbound,
        x if x == dir::SONDE_TCP_DIR_OUTBOUND as u16 => Direction::Outbound,
        _ => Direction::Unknown,
    }
}

/// Process and peer of a kernel connection record.
pub fn who(c: &sonde_tcp_conn, processes: &mut Attribution) -> Who {
    let port = if direction(c.direction) == Direction::Inbound {
        PortAttr::Server(c.lport)
    } else {
        PortAttr::Peer(c.rport)
    };
    Who {
        process: (c.tgid != 0).then(|| processes.key(c.tgid, comm_to_string(&c.comm), c.cgroup_id)),
        peer: decode_addr(c.family, &c.raddr),
        port,
    }
}

/// Cumulative per-connection counters, as last seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Seen {
    acked: u64,
    received: u64,
    retrans: u64,
    /// Counted in `opened` already.
    opened: bool,
    /// Tick generation of the last sighting, to forget entries whose close was lost.
    generation: u64,
}

/// Walks a connection may be missing from the kernel map before the ledger forgets it.
pub const FORGET_AFTER_WALKS: u64 = 64;

/// Attributed counts, bounded per metric and per non-attribution dimension (direction,
/// network type, error), so the overflow series keep those dimensions. Pure: no I/O.
#[derive(Debug, Clone)]
pub struct TcpLedger {
    policy: SeriesPolicy,
    processes: Attribution,
    /// (direction, is_ipv6)
    pub opened: BTreeMap<(Direction, bool), BoundedCounter<Who>>,
    pub closed: BTreeMap<(Direction, bool), BoundedCounter<Who>>,
    /// Keyed by errno (0 when the socket had no error: the connect was abandoned).
    pub failed: BTreeMap<i32, BoundedCounter<Who>>,
    pub transmitted: BoundedCounter<Who>,
    pub received: BoundedCounter<Who>,
    pub retransmits: BoundedCounter<Who>,
    /// srtt of every open connection, one sample per walk (IPv4, IPv6): with the
    /// kernel's at-close histogram, `sonde.tcp.rtt` of connections that live long.
    pub rtt_live_v4: Hist,
    pub rtt_live_v6: Hist,
    /// `sonde.tcp.connection.duration` samples that became spans (inbound, outbound).
    pub duration_exemplars_in: RecentExemplars,
    pub duration_exemplars_out: RecentExemplars,
    /// `sonde.tcp.rtt` samples (srtt at close) that became spans (IPv4, IPv6).
    pub rtt_exemplars_v4: RecentExemplars,
    pub rtt_exemplars_v6: RecentExemplars,
    // foldhash: every event and every walked entry looks these up (SipHash was a third
    // of the reader's CPU under connection churn).
    seen: foldhash::HashMap<(u64, u64), Seen>,
    generation: u64,
    /// A walk is reading the map (between `begin_walk` and `end_walk`).
    walking: bool,
    /// Connections whose close or failure was drained during the current walk: the walk
    /// may hold a sighting read before it, which must not count again.
    closed_in_walk: foldhash::HashSet<(u64, u64)>,
}

impl TcpLedger {
    /// A copy of the attributed counts without the per-connection baselines (as many as
    /// the kernel map's 65 536 entries), which the mapping does not read: the copy a
    /// snapshot takes while the drain task waits for the lock.
    pub fn counts(&mut self) -> Self {
        let seen = std::mem::take(&mut self.seen);
        let copy = self.clone();
        self.seen = seen;
        copy
    }

    pub fn new(policy: SeriesPolicy, processes: Attribution) -> Self {
        Self {
            policy,
            processes,
            opened: BTreeMap::new(),
            closed: BTreeMap::new(),
            failed: BTreeMap::new(),
            transmitted: BoundedCounter::new(policy),
            received: BoundedCounter::new(policy),
            retransmits: BoundedCounter::new(policy),
            rtt_live_v4: Hist::default(),
            rtt_live_v6: Hist::default(),
            duration_exemplars_in: RecentExemplars::default(),
            duration_exemplars_out: RecentExemplars::default(),
            rtt_exemplars_v4: RecentExemplars::default(),
            rtt_exemplars_v6: RecentExemplars::default(),
            seen: foldhash::HashMap::default(),
            generation: 0,
            walking: false,
            closed_in_walk: foldhash::HashSet::default(),
        }
    }

    /// A walk starts reading the map: closes drained from now on are remembered until
    /// `end_walk`.
    pub fn begin_walk(&mut self) {
        self.walking = true;
    }

    /// Adds what the connection did since it was last seen, and counts it as opened the
    /// first time it is seen established: the kernel sends no record for an open (two
    /// ring records per connection instead of four), so an open is counted by the first
    /// walk that finds the connection established or, for one that closed before any
    /// walk, by its close. Both happen before the snapshot that follows the open, so the
    /// count is as timely as a drained event was.
    fn account(&mut self, sk: u64, c: &sonde_tcp_conn, who: &Who, last_sighting: bool) {
        let id = (sk, c.start_ns);
        if last_sighting && self.walking {
            self.closed_in_walk.insert(id);
        }
        let base = Seen {
            acked: c.base_acked,
            received: c.base_received,
            retrans: u64::from(c.base_retrans),
            opened: false,
            generation: 0,
        };
        let prev = if last_sighting {
            self.seen.remove(&id)
        } else {
            self.seen.get(&id).copied()
        }
        .unwrap_or(base);
        let now = Seen {
            acked: c.bytes_acked.max(prev.acked),
            received: c.bytes_received.max(prev.received),
            retrans: u64::from(c.total_retrans).max(prev.retrans),
            opened: prev.opened || c.opened != 0,
            generation: self.generation,
        };
        if now.opened && !prev.opened {
            let limit = self.policy;
            self.opened
                .entry((direction(c.direction), c.family == AF_INET6))
                .or_insert_with(|| BoundedCounter::new(limit))
                .add_ref(who, 1);
        }
        self.transmitted.add_ref(who, now.acked - prev.acked);
        self.received.add_ref(who, now.received - prev.received);
        self.retransmits.add_ref(who, now.retrans - prev.retrans);
        if !last_sighting {
            self.seen.insert(id, now);
        }
    }

    /// One live connection from the map walk at a tick: its traffic since the last walk,
    /// and one sample of its current srtt (once it has one: a connection still in its
    /// handshake has none, and one that failed never gets one).
    pub fn live(&mut self, sk: u64, c: &sonde_tcp_conn) {
        if self.closed_in_walk.contains(&(sk, c.start_ns)) {
            // Read before its close was drained: the close already counted it all.
            return;
        }
        let w = who(c, &mut self.processes);
        self.account(sk, c, &w, false);
        if c.srtt_us > 0 && (c.opened != 0 || direction(c.direction) == Direction::Unknown) {
            let h = if c.family == AF_INET6 {
                &mut self.rtt_live_v6
            } else {
                &mut self.rtt_live_v4
            };
            h.add(u64::from(c.srtt_us) * 1000);
        }
    }

    /// After a map walk: forget connections missing from [`FORGET_AFTER_WALKS`] walks
    /// in a row (their close event was lost), so the ledger stays bounded by the kernel
    /// map. A connection just closed is missing from the map while its close event may
    /// still wait in the ring (drained at least every `DRAIN_EVERY`): forgetting it then
    /// would count its bytes twice, hence the margin.
    pub fn end_walk(&mut self) {
        self.walking = false;
        self.closed_in_walk.clear();
        let g = self.generation;
        self.seen
            .retain(|_, s| s.generation + FORGET_AFTER_WALKS > g);
        self.generation += 1;
    }

    /// A snapshot tick at `now` (Unix ns): expires idle series (see `aggregate::bounded`).
    pub fn tick(&mut self, now: u64) {
        for c in self
            .opened
            .values_mut()
            .chain(self.closed.values_mut())
            .chain(self.failed.values_mut())
            .chain([
                &mut self.transmitted,
                &mut self.received,
                &mut self.retransmits,
            ])
        {
            c.tick(now);
        }
        // A dimension whose series all expired keeps no state.
        self.opened.retain(|_, c| !c.is_empty());
        self.closed.retain(|_, c| !c.is_empty());
        self.failed.retain(|_, c| !c.is_empty());
    }

    pub fn event(&mut self, e: &sonde_tcp_event) {
        let c = &e.conn;
        let w = who(c, &mut self.processes);
        let key = (direction(c.direction), c.family == AF_INET6);
        let limit = self.policy;
        match e.kind {
            k if k == kind::SONDE_TCP_EV_CLOSE as u32 => {
                self.account(e.sk, c, &w, true);
                if c.opened != 0 {
                    self.closed
                        .entry(key)
                        .or_insert_with(|| BoundedCounter::new(limit))
                        .add(w, 1);
                }
            }
            k if k == kind::SONDE_TCP_EV_FAIL as u32 => {
                self.account(e.sk, c, &w, true);
                self.failed
                    .entry(e.err)
                    .or_insert_with(|| BoundedCounter::new(limit))
                    .add(w, 1);
            }
            _ => {}
        }
    }
}

/// A grid histogram (`sonde_probes::grid`) summed over CPUs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hist {
    pub sum_ns: u64,
    pub slots: [u64; SLOTS],
}

impl Hist {
    /// One sample, bucketed as the kernel does.
    pub fn add(&mut self, ns: u64) {
        self.sum_ns += ns;
        self.slots[sonde_probes::grid::slot(ns)] += 1;
    }

    /// Bucket-by-bucket sum.
    pub fn plus(&self, other: &Hist) -> Hist {
        let mut out = self.clone();
        out.sum_ns += other.sum_ns;
        for (a, b) in out.slots.iter_mut().zip(other.slots.iter()) {
            *a += b;
        }
        out
    }
}

impl Default for Hist {
    fn default() -> Self {
        Self {
            sum_ns: 0,
            slots: [0; SLOTS],
        }
    }
}

/// Everything counted without attribution, cumulative since load.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TcpCounts {
    pub rst_sent: u64,
    pub rst_received: u64,
    pub opened: u64,
    pub closed: u64,
    pub failed: u64,
    pub lost_ringbuf: u64,
    pub lost_conns: u64,
    pub lost_listeners: u64,
    /// Connection entries finished when their socket was destroyed: their CLOSE
    /// transition was not seen.
    pub reclaimed: u64,
    /// Connection-state counts corrected against the kernel's socket table.
    pub corrections: u64,
    /// Connections per (is_ipv6, kernel state number): seed plus transitions since.
    pub states: Vec<((bool, usize), i64)>,
    pub rtt_v4: Hist,
    pub rtt_v6: Hist,
    pub duration_in: Hist,
    pub duration_out: Hist,
}

/// The states whose counts are seeded from and reconciled against the kernel's socket
/// table: all but SYN_RECV (the table shows request sockets there, which no transition
/// counts), TIME_WAIT (read from sockstat), CLOSE and NEW_SYN_RECV.
pub const TRACKED_STATES: [usize; 8] = [1, 2, 4, 5, 8, 9, 10, 11];

type StateKey = (bool, usize);

/// What the connection count per state is built on: a reading of the kernel's socket
/// table (`seed`) and the probe's transition deltas at that reading (`delta0`); the count
/// is `seed + delta - delta0`. Pure: the I/O is the caller's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateBase {
    seed: HashMap<StateKey, i64>,
    delta0: HashMap<StateKey, i64>,
    /// Connections by which the kept counts had drifted from the table, summed over
    /// states and reconciliations (each one a transition the probe missed).
    pub corrections: u64,
}

/// The outcome of one [`StateBase::rebase`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rebase {
    /// Connections corrected in this pass.
    pub corrected: u64,
    /// States left as they were: a transition ran while the table was read.
    pub unsettled: usize,
}

impl StateBase {
    pub fn count(&self, k: &StateKey, delta: i64) -> i64 {
        self.seed.get(k).copied().unwrap_or(0) + delta - self.delta0.get(k).copied().unwrap_or(0)
    }

    /// Takes `table` as the new base for every tracked state whose delta was the same
    /// before (`before`) and after (`after`) the table was read, so no transition can
    /// have slipped between the two readings; the others keep their base (they are
    /// retried later). The first rebase (`initial`) seeds, so its differences are not
    /// corrections.
    pub fn rebase(
        &mut self,
        before: &HashMap<StateKey, i64>,
        table: &HashMap<StateKey, i64>,
        after: &HashMap<StateKey, i64>,
        initial: bool,
    ) -> Rebase {
        let mut r = Rebase::default();
        for v6 in [false, true] {
            for state in TRACKED_STATES {
                let k = (v6, state);
                let b = before.get(&k).copied().unwrap_or(0);
                if after.get(&k).copied().unwrap_or(0) != b {
                    r.unsettled += 1;
                    continue;
                }
                let real = table.get(&k).copied().unwrap_or(0);
                if !initial {
                    r.corrected += self.count(&k, b).abs_diff(real);
                }
                self.seed.insert(k, real);
                self.delta0.insert(k, b);
            }
        }
        self.corrections += r.corrected;
        r
    }
}

/// TIME_WAIT sockets from /proc/net/sockstat (`TCP: inuse N orphan N tw N ...`): the
/// kernel moves a closing connection into a separate time-wait socket without a
/// state-change tracepoint, so this count is read, not kept by transitions.
pub fn parse_sockstat_tw(text: &str) -> Option<i64> {
    let line = text.lines().find(|l| l.starts_with("TCP:"))?;
    let mut f = line.split_whitespace();
    while let Some(k) = f.next() {
        if k == "tw" {
            return f.next()?.parse().ok();
        }
    }
    None
}

/// What the event ring feeds: the ledger, and spans of notable connections.
struct TcpSink {
    ledger: TcpLedger,
    spans: Option<TcpSpans>,
    /// Events of the current batch that qualify for a span.
    notable: Vec<sonde_tcp_event>,
}

impl Sink for TcpSink {
    fn record(&mut self, bytes: &[u8]) {
        let Some(ev) = decode_event(bytes) else {
            return;
        };
        self.ledger.event(&ev);
        if let Some(s) = &self.spans {
            if super::spans::qualifies(&s.rule, &ev) {
                self.notable.push(ev);
            }
        }
    }

    fn end_batch(&mut self) {
        if let Some(s) = &self.spans {
            for ev in self.notable.drain(..) {
                let Some(ctx) = s.sink.offer(ev.end_ns, |ctx| {
                    // Resolved only for spans the rate limit let through.
                    let container = self.ledger.processes.container(ev.conn.cgroup_id);
                    super::spans::span(&ev, container, &s.sink.clock, ctx)
                }) else {
                    continue;
                };
                // A closed connection's duration and srtt are samples of the kernel's
                // duration and RTT histograms: its span becomes those samples' exemplar.
                let at = s.sink.clock.to_unix_nanos(ev.end_ns);
                if let Some(seconds) = super::spans::duration_sample(&ev) {
                    let e = ctx.exemplar(seconds, at);
                    match direction(ev.conn.direction) {
                        Direction::Inbound => self.ledger.duration_exemplars_in.push(e),
                        Direction::Outbound => self.ledger.duration_exemplars_out.push(e),
                        Direction::Unknown => {}
                    }
                }
                if let Some((v6, seconds)) = super::spans::rtt_sample(&ev) {
                    let e = ctx.exemplar(seconds, at);
                    if v6 {
                        self.ledger.rtt_exemplars_v6.push(e);
                    } else {
                        self.ledger.rtt_exemplars_v4.push(e);
                    }
                }
            }
        }
    }
}

/// The probe that writes the event ring: marked failed when it cannot be polled.
pub const RING_PROBE: &str = "tcp.state";

/// Map entries read per hold of the ledger's lock when a walk hands them over.
const WALK_CHUNK: usize = 1024;

pub struct TcpCollector {
    counters: PerCpuArray<MapData, u64>,
    states: PerCpuArray<MapData, i64>,
    hists: PerCpuArray<MapData, sonde_tcp_hist>,
    conns: BpfHashMap<MapData, u64, sonde_tcp_conn>,
    events: Ring<RingBuf<MapData>, TcpSink>,
    base: StateBase,
}

impl std::fmt::Debug for TcpCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpCollector").finish_non_exhaustive()
    }
}

impl TcpCollector {
    /// Takes the family's maps, seeds the connection count from `table` (the kernel's
    /// socket table, read after the probes attached) and starts the event drain. Must run
    /// inside a tokio runtime.
    pub fn start(
        loaded: &mut LoadedFamily,
        series: SeriesPolicy,
        processes: Attribution,
        table: impl Fn() -> std::io::Result<HashMap<StateKey, i64>>,
        spans: Option<TcpSpans>,
    ) -> Result<Self, CollectError> {
        let ring: RingBuf<MapData> = take_map(loaded, n::MAP_EVENTS)?;
        let mut me = Self {
            counters: take_map(loaded, n::MAP_COUNTERS)?,
            states: take_map(loaded, n::MAP_STATES)?,
            hists: take_map(loaded, n::MAP_HISTS)?,
            conns: take_map(loaded, n::MAP_CONNS)?,
            events: Ring::start_bpf(
                ring,
                TcpSink {
                    ledger: TcpLedger::new(series, processes),
                    spans,
                    notable: Vec::new(),
                },
                DRAIN_EVERY,
            )?,
            base: StateBase::default(),
        };
        me.reconcile(&table, true)?;
        Ok(me)
    }

    /// Reads the kernel's socket table between two readings of the probe's deltas and
    /// rebases every state no transition touched meanwhile (see [`StateBase::rebase`]),
    /// retrying a few times for the rest. Returns what the last pass corrected in total
    /// and what it left unsettled. A table that cannot be read changes nothing.
    pub fn reconcile(
        &mut self,
        table: &impl Fn() -> std::io::Result<HashMap<StateKey, i64>>,
        initial: bool,
    ) -> Result<Rebase, CollectError> {
        const ATTEMPTS: usize = 5;
        let mut total = Rebase::default();
        for _ in 0..ATTEMPTS {
            let before = self.state_deltas()?;
            let t = match table() {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!("reading the kernel's TCP socket table (sock_diag): {e}");
                    return Ok(total);
                }
            };
            let after = self.state_deltas()?;
            let r = self.base.rebase(&before, &t, &after, initial);
            total.corrected += r.corrected;
            total.unsettled = r.unsettled;
            if r.unsettled == 0 {
                break;
            }
        }
        Ok(total)
    }

    fn state_deltas(&self) -> Result<HashMap<(bool, usize), i64>, CollectError> {
        let mut out = HashMap::new();
        for i in 0..2 * STATE_SLOTS {
            let v = self
                .states
                .get(&(i as u32), 0)
                .map_err(map_err(n::MAP_STATES))?;
            out.insert((i >= STATE_SLOTS, i % STATE_SLOTS), v.iter().sum::<i64>());
        }
        Ok(out)
    }

    pub fn read(&self) -> Result<TcpCounts, CollectError> {
        let get = |s: slot| sum_slot(&self.counters, n::MAP_COUNTERS, s as u32);
        let hist = |i: hidx| -> Result<Hist, CollectError> {
            let v = self
                .hists
                .get(&(i as u32), 0)
                .map_err(map_err(n::MAP_HISTS))?;
            let mut h = Hist::default();
            for cpu in v.iter() {
                h.sum_ns += cpu.sum_ns;
                for (a, b) in h.slots.iter_mut().zip(cpu.slots.iter()) {
                    *a += b;
                }
            }
            Ok(h)
        };
        let deltas = self.state_deltas()?;
        let mut states: Vec<((bool, usize), i64)> = deltas
            .iter()
            .map(|(k, d)| (*k, self.base.count(k, *d)))
            .collect();
        states.sort();
        Ok(TcpCounts {
            rst_sent: get(slot::SONDE_TCP_RST_SENT)?,
            rst_received: get(slot::SONDE_TCP_RST_RECEIVED)?,
            opened: get(slot::SONDE_TCP_OPENED)?,
            closed: get(slot::SONDE_TCP_CLOSED)?,
            failed: get(slot::SONDE_TCP_FAILED)?,
            lost_ringbuf: get(slot::SONDE_TCP_LOST_RINGBUF)?,
            lost_conns: get(slot::SONDE_TCP_LOST_CONNS)?,
            lost_listeners: get(slot::SONDE_TCP_LOST_LISTENERS)?,
            reclaimed: get(slot::SONDE_TCP_RECLAIMED)?,
            corrections: self.base.corrections,
            states,
            rtt_v4: hist(hidx::SONDE_TCP_HIST_RTT_V4)?,
            rtt_v6: hist(hidx::SONDE_TCP_HIST_RTT_V6)?,
            duration_in: hist(hidx::SONDE_TCP_HIST_DURATION_IN)?,
            duration_out: hist(hidx::SONDE_TCP_HIST_DURATION_OUT)?,
        })
    }

    /// Walks the live connections and accounts what each did since the last walk. The
    /// map is read without the ledger's lock and handed over in chunks (see the module
    /// comment for why that stays exact).
    pub fn walk(&self) {
        self.events.with(|s| s.ledger.begin_walk());
        let mut chunk = Vec::with_capacity(WALK_CHUNK);
        // An entry deleted during the walk is an error item: skipped, its close event
        // accounts for it.
        let mut entries = self.conns.iter().flatten();
        loop {
            chunk.clear();
            chunk.extend(entries.by_ref().take(WALK_CHUNK));
            if chunk.is_empty() {
                break;
            }
            self.events.with(|s| {
                for (sk, c) in &chunk {
                    s.ledger.live(*sk, c);
                }
            });
        }
        self.events.with(|s| s.ledger.end_walk());
    }

    /// Drains the event ring now (bounded), as every snapshot does.
    pub fn drain_events(&self) {
        self.events.drain_now();
    }

    /// The kernel's live connection entries (socket address, record), as a walk sees
    /// them: what tests and `sonde check` use to see the map's fill.
    pub fn entries(&self) -> Vec<(u64, sonde_tcp_conn)> {
        self.conns.iter().flatten().collect()
    }

    /// A copy of the attributed counts after a tick at `now` (Unix ns).
    pub fn ledger(&self, now: u64) -> TcpLedger {
        self.events.with(|s| {
            s.ledger.tick(now);
            s.ledger.counts()
        })
    }

    /// Why the event ring can no longer be polled, if it cannot.
    pub fn ring_failure(&self) -> Option<&str> {
        self.events.failure()
    }

    /// The drain task, for the agent to join at shutdown.
    pub fn stop(&mut self) -> Option<DrainTask> {
        self.events.stop()
    }
}

/// How often the ring is drained when the kernel has not woken the reader: the probe
/// wakes it only once a backlog builds up (see `emit` in tcp.bpf.c).
const DRAIN_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// Where failed, reset and long-lived connections go as spans.
#[derive(Debug, Clone)]
pub struct TcpSpans {
    pub sink: Arc<crate::spans::sink::SpanSink>,
    pub rule: super::spans::TcpSpanRule,
}

/// One ring-buffer record; `None` for a short record.
pub fn decode_event(bytes: &[u8]) -> Option<sonde_tcp_event> {
    if bytes.len() < std::mem::size_of::<sonde_tcp_event>() {
        return None;
    }
    // SAFETY: the length was checked above and sonde_tcp_event is plain old data (any
    // bit pattern is valid); read_unaligned does not rely on the ring's alignment.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<sonde_tcp_event>()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(family: u16, raddr: &[u8], d: dir) -> sonde_tcp_conn {
        let mut c = sonde_tcp_conn {
            family,
            direction: d as u16,
            lport: 8080,
            rport: 40000,
            tgid: 42,
            start_ns: 7,
            ..Default::default()
        };
        c.raddr[..raddr.len()].copy_from_slice(raddr);
        for (dst, src) in c.comm.iter_mut().zip(b"srv\0") {
            *dst = *src as core::ffi::c_char;
        }
        c
    }

    fn policy(limit: usize) -> SeriesPolicy {
        SeriesPolicy {
            limit,
            ttl: std::time::Duration::ZERO,
            start_unix_nano: 0,
        }
    }

    #[test]
    fn ipv4_and_ipv6_addresses_decode_and_mapped_v4_is_shown_as_v4() {
        let mut raw = [0u8; 16];
        raw[..4].copy_from_slice(&[127, 0, 0, 1]);
        assert_eq!(
            decode_addr(2, &raw),
            "127.0.0.1".parse::<IpAddr>().expect("literal")
        );
        let v6: Ipv6Addr = "fd00::2".parse().expect("literal");
        assert_eq!(decode_addr(10, &v6.octets()), IpAddr::V6(v6));
        let mapped: Ipv6Addr = "::ffff:10.1.2.3".parse().expect("literal");
        assert_eq!(
            decode_addr(10, &mapped.octets()),
            "10.1.2.3".parse::<IpAddr>().expect("literal")
        );
    }

    #[test]
    fn inbound_peers_fold_to_the_server_port_and_outbound_keep_the_peer_port() {
        let c = conn(2, &[10, 0, 0, 1], dir::SONDE_TCP_DIR_INBOUND);
        let mut none = Attribution::default();
        assert_eq!(who(&c, &mut none).port, PortAttr::Server(8080));
        assert_eq!(who(&c, &mut none).process, Some(ProcessKey::named("srv")));
        let c = conn(2, &[10, 0, 0, 1], dir::SONDE_TCP_DIR_OUTBOUND);
        assert_eq!(who(&c, &mut none).port, PortAttr::Peer(40000));
    }

    fn states(pairs: &[((bool, usize), i64)]) -> HashMap<(bool, usize), i64> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn rebasing_takes_the_table_where_no_transition_ran_and_counts_the_drift() {
        let mut b = StateBase::default();
        let est = (false, 1);
        let listen = (false, 10);
        // Seed: 5 established, 2 listening; deltas 3 and 0 at the time.
        let d = states(&[(est, 3), (listen, 0)]);
        let r = b.rebase(&d, &states(&[(est, 5), (listen, 2)]), &d, true);
        assert_eq!(r, Rebase::default(), "seeding corrects nothing");
        assert_eq!(b.count(&est, 3), 5);
        assert_eq!(b.count(&est, 7), 9, "4 opened since");
        // Missed transitions: the kernel has 7 established where the count says 9, and
        // 3 listeners where it says 2.
        let d = states(&[(est, 7), (listen, 0)]);
        let r = b.rebase(&d, &states(&[(est, 7), (listen, 3)]), &d, false);
        assert_eq!(r.corrected, 2 + 1);
        assert_eq!(r.unsettled, 0);
        assert_eq!(b.count(&est, 7), 7);
        assert_eq!(b.count(&listen, 0), 3);
        assert_eq!(b.corrections, 3);
        // A transition during the read: that state keeps its base, the others rebase.
        let before = states(&[(est, 7), (listen, 0)]);
        let after = states(&[(est, 8), (listen, 0)]);
        let r = b.rebase(&before, &states(&[(est, 100), (listen, 3)]), &after, false);
        assert_eq!(
            r,
            Rebase {
                corrected: 0,
                unsettled: 1
            }
        );
        assert_eq!(
            b.count(&est, 8),
            8,
            "not taken from a table read mid-transition"
        );
        // Untracked states (TIME_WAIT, CLOSE, SYN_RECV) are never rebased.
        let d = states(&[(est, 8), (listen, 0), ((false, 7), 50), ((false, 3), 1)]);
        let table = states(&[(est, 8), (listen, 3), ((false, 7), 0), ((false, 3), 9)]);
        b.rebase(&d, &table, &d, false);
        assert_eq!(b.count(&(false, 7), 50), 50);
        assert_eq!(b.corrections, 3);
    }

    #[test]
    fn sockstat_time_wait() {
        let text = "sockets: used 100\nTCP: inuse 5 orphan 0 tw 17 alloc 9 mem 1\nUDP: inuse 1\n";
        assert_eq!(parse_sockstat_tw(text), Some(17));
        assert_eq!(parse_sockstat_tw("nothing"), None);
    }

    #[test]
    fn bytes_add_up_to_the_close_totals_across_walks() {
        let mut l = TcpLedger::new(policy(10), Attribution::default());
        let mut c = conn(2, &[127, 0, 0, 1], dir::SONDE_TCP_DIR_OUTBOUND);
        c.bytes_acked = 100;
        c.bytes_received = 10;
        l.live(1, &c);
        l.end_walk();
        c.bytes_acked = 250;
        c.total_retrans = 2;
        l.live(1, &c);
        l.end_walk();
        c.bytes_acked = 300;
        c.bytes_received = 40;
        c.total_retrans = 3;
        c.opened = 1;
        let ev = sonde_tcp_event {
            sk: 1,
            conn: c,
            kind: kind::SONDE_TCP_EV_CLOSE as u32,
            err: 0,
            ..Default::default()
        };
        l.event(&ev);
        assert_eq!(l.transmitted.total(), 300);
        assert_eq!(l.received.total(), 40);
        assert_eq!(l.retransmits.total(), 3);
        assert_eq!(l.closed[&(Direction::Outbound, false)].total(), 1);
        assert!(l.seen.is_empty(), "closed connections are forgotten");
    }

    #[test]
    fn adopted_connections_count_only_what_happens_after_adoption() {
        let mut l = TcpLedger::new(policy(10), Attribution::default());
        let mut c = conn(2, &[127, 0, 0, 1], dir::SONDE_TCP_DIR_UNKNOWN);
        c.base_acked = 1000;
        c.bytes_acked = 1000;
        l.live(5, &c);
        c.bytes_acked = 1500;
        l.live(5, &c);
        assert_eq!(l.transmitted.total(), 500);
    }

    #[test]
    fn peers_past_the_limit_fold_into_overflow_and_totals_stay_exact() {
        let mut l = TcpLedger::new(policy(2), Attribution::default());
        for i in 0..5u8 {
            let mut c = conn(2, &[10, 0, 0, i], dir::SONDE_TCP_DIR_OUTBOUND);
            c.opened = 1;
            l.live(u64::from(i), &c);
        }
        let (series, overflow) = l.opened[&(Direction::Outbound, false)].snapshot();
        assert_eq!(series.len(), 2);
        assert_eq!(overflow[0].value, 3);
    }

    #[test]
    fn a_connection_counts_as_opened_once_whether_a_walk_or_its_close_sees_it_first() {
        let opened = |l: &TcpLedger| {
            l.opened
                .get(&(Direction::Outbound, false))
                .map_or(0, |c| c.total())
        };
        let mut l = TcpLedger::new(policy(10), Attribution::default());
        let mut c = conn(2, &[10, 0, 0, 1], dir::SONDE_TCP_DIR_OUTBOUND);
        // In its handshake at the first walk: not opened yet.
        l.live(1, &c);
        l.end_walk();
        assert_eq!(opened(&l), 0);
        // Established at the next two walks and at its close: one open.
        c.opened = 1;
        for _ in 0..2 {
            l.live(1, &c);
            l.end_walk();
        }
        assert_eq!(opened(&l), 1);
        l.event(&close(1, c));
        assert_eq!(opened(&l), 1, "the close does not count it again");
        assert_eq!(l.closed[&(Direction::Outbound, false)].total(), 1);
        // Opened and closed between two walks: its close counts the open.
        let mut short = conn(2, &[10, 0, 0, 1], dir::SONDE_TCP_DIR_OUTBOUND);
        short.start_ns = 99;
        short.opened = 1;
        l.event(&close(1, short));
        assert_eq!(opened(&l), 2);
        // A connect that failed was never opened.
        let failed = conn(2, &[10, 0, 0, 1], dir::SONDE_TCP_DIR_OUTBOUND);
        l.event(&sonde_tcp_event {
            sk: 3,
            conn: failed,
            kind: kind::SONDE_TCP_EV_FAIL as u32,
            err: 111,
            ..Default::default()
        });
        assert_eq!(opened(&l), 2);
        // A walk that read the entry before its close was drained during that walk
        // hands nothing over: the close counted the open.
        let mut raced = conn(2, &[10, 0, 0, 1], dir::SONDE_TCP_DIR_OUTBOUND);
        raced.start_ns = 500;
        raced.opened = 1;
        l.begin_walk();
        l.event(&close(4, raced));
        l.live(4, &raced);
        l.end_walk();
        assert_eq!(opened(&l), 3);
        assert!(l.seen.is_empty());
    }

    #[test]
    fn entries_missing_from_many_walks_are_forgotten() {
        let mut l = TcpLedger::new(policy(2), Attribution::default());
        let c = conn(2, &[10, 0, 0, 1], dir::SONDE_TCP_DIR_OUTBOUND);
        l.live(9, &c);
        for _ in 0..FORGET_AFTER_WALKS {
            l.end_walk();
        }
        assert_eq!(l.seen.len(), 1, "a close event may still be in the ring");
        l.end_walk();
        assert!(l.seen.is_empty());
    }

    fn close(sk: u64, conn: sonde_tcp_conn) -> sonde_tcp_event {
        sonde_tcp_event {
            sk,
            conn,
            kind: kind::SONDE_TCP_EV_CLOSE as u32,
            err: 0,
            ..Default::default()
        }
    }

    #[test]
    fn a_close_drained_after_some_walks_counts_once() {
        let mut l = TcpLedger::new(policy(2), Attribution::default());
        let mut c = conn(2, &[10, 0, 0, 1], dir::SONDE_TCP_DIR_OUTBOUND);
        c.bytes_acked = 100;
        l.live(9, &c);
        l.end_walk();
        // The kernel deleted the entry and queued the close: walks no longer see it.
        for _ in 0..3 {
            l.end_walk();
        }
        c.opened = 1;
        l.event(&close(9, c));
        assert_eq!(l.transmitted.total(), 100);
    }

    #[test]
    fn a_sighting_read_before_a_close_drained_during_the_walk_counts_once() {
        let mut l = TcpLedger::new(policy(2), Attribution::default());
        let mut c = conn(2, &[10, 0, 0, 1], dir::SONDE_TCP_DIR_OUTBOUND);
        c.bytes_acked = 100;
        l.live(9, &c);
        l.end_walk();
        // The next walk reads the entry at 250 bytes without the lock...
        l.begin_walk();
        let mut read = c;
        read.bytes_acked = 250;
        // ...while the drain takes its close at 300 bytes...
        c.bytes_acked = 300;
        c.opened = 1;
        l.event(&close(9, c));
        // ...and only then hands its sighting over.
        l.live(9, &read);
        l.end_walk();
        assert_eq!(l.transmitted.total(), 300, "the close counted it all, once");
        assert!(l.seen.is_empty(), "the stale sighting left nothing behind");
        // The remembered close lasts one walk: the same socket reused later counts.
        let mut again = conn(2, &[10, 0, 0, 1], dir::SONDE_TCP_DIR_OUTBOUND);
        again.start_ns = 99;
        again.bytes_acked = 5;
        l.begin_walk();
        l.live(9, &again);
        l.end_walk();
        assert_eq!(l.transmitted.total(), 305);
    }

    #[test]
    fn every_walk_samples_the_srtt_of_each_open_connection() {
        let mut l = TcpLedger::new(policy(10), Attribution::default());
        let mut a = conn(2, &[10, 0, 0, 1], dir::SONDE_TCP_DIR_OUTBOUND);
        a.opened = 1;
        a.srtt_us = 36_000;
        let mut b = conn(10, &[0xfe, 0x80], dir::SONDE_TCP_DIR_INBOUND);
        b.opened = 1;
        b.srtt_us = 120;
        let mut handshake = conn(2, &[10, 0, 0, 2], dir::SONDE_TCP_DIR_OUTBOUND);
        handshake.srtt_us = 500; // not established: no sample
        let mut none = conn(2, &[10, 0, 0, 3], dir::SONDE_TCP_DIR_OUTBOUND);
        none.opened = 1; // established, no RTT measured yet
        for _ in 0..3 {
            for (sk, c) in [(1, &a), (2, &b), (3, &handshake), (4, &none)] {
                l.live(sk, c);
            }
            l.end_walk();
        }
        let grid = |ns| sonde_probes::grid::slot(ns);
        assert_eq!(
            l.rtt_live_v4.slots[grid(36_000_000)],
            3,
            "one sample per walk"
        );
        assert_eq!(l.rtt_live_v4.slots.iter().sum::<u64>(), 3);
        assert_eq!(l.rtt_live_v4.sum_ns, 3 * 36_000_000);
        assert_eq!(l.rtt_live_v6.slots[grid(120_000)], 3);
        assert_eq!(l.rtt_live_v6.slots.iter().sum::<u64>(), 3);
    }
}
