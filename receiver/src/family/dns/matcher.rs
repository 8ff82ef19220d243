//! Matches DNS queries to responses and decides cache hits. Pure: packets in (with the
//! kernel's timestamps), finished lookups out; no I/O, no clock of its own.
//!
//! A lookup is keyed by (client address and port, server address and port, transaction
//! id, question). The probe can see a packet between two processes of this host twice
//! (on the sender's egress and on the receiver's ingress: the kernel side forwards only
//! the egress copy over loopback, but a packet between network namespaces crosses a
//! veth pair), so the first copy of a query opens the lookup and later copies of it are
//! ignored while it is open; the first copy of a response closes it and later copies
//! find nothing open.
//!
//! **Containers with overlapping addresses** (two network namespaces using the same
//! client address and port) are told apart by the cgroup of the socket each packet left
//! or reached: a query on egress and a response on ingress are the client's socket, the
//! other two copies the server's. A lookup remembers the client's and the server's
//! cgroup as it sees them, and a packet matches it only if its own side agrees (an
//! unknown cgroup, 0, agrees with anything), so two containers' lookups with the same
//! addresses, id and question never close each other. Latency is the response's
//! kernel timestamp minus the query's. A lookup with no response within the timeout
//! ends with `error.type=timeout` when [`Matcher::expire`] passes its deadline.
//!
//! **Cache hits, measured:** a lookup is a cache hit when its response left a process
//! on this host (the probe saw the response on egress, so the resolver runs here) and
//! that process sent no query for the same question to another server while the
//! client's query was open. "That process" is the thread group that sent the response
//! when the kernel gave it (UDP sends run in the sender's context); otherwise any
//! process of this host. Lookups answered by remote resolvers have no cache-hit value.

use std::collections::hash_map::Entry;
use std::collections::VecDeque;
use std::sync::Arc;

// Seeded per process: keys carry names and ports remote peers choose.
use foldhash::HashMap;
use std::net::SocketAddr;

use super::wire::{Message, Question, Transport};
use crate::aggregate::process::ProcessKey;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Arriving at a socket of this host.
    Ingress,
    /// Leaving a socket of this host.
    Egress,
}

/// One parsed packet as the probe saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    pub ktime_ns: u64,
    pub direction: Direction,
    pub transport: Transport,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// The sending thread group, where the kernel gave it (UDP egress).
    pub process: Option<Process>,
    /// cgroup v2 id of the local socket the packet left or reached; 0 = unknown.
    pub cgroup_id: u64,
    pub msg: Message,
}

/// A thread group that sent a packet.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Process {
    /// The thread group id: tells the resolver's own upstream queries apart (cache hits)
    /// and goes on spans.
    pub pid: u32,
    /// Its per-process series key (executable name, container; pid if configured),
    /// shared by every packet of the process the reader decodes in one batch.
    pub key: Arc<ProcessKey>,
}

/// Which end of a lookup a packet's local socket is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Server,
}

impl Packet {
    fn side(&self) -> Side {
        match (self.msg.response, self.direction) {
            (false, Direction::Egress) | (true, Direction::Ingress) => Side::Client,
            (false, Direction::Ingress) | (true, Direction::Egress) => Side::Server,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    client: SocketAddr,
    server: SocketAddr,
    id: u16,
    question: Question,
}

#[derive(Debug, Clone)]
struct Open {
    start_ns: u64,
    process: Option<Process>,
    /// The client's and the server's socket cgroup, as far as seen (0 = not yet).
    client_cgroup: u64,
    server_cgroup: u64,
}

impl Open {
    /// Whether a packet whose socket is on `side` in cgroup `cg` belongs to this lookup,
    /// remembering `cg` when this side's cgroup was not known yet.
    fn claim(&mut self, side: Side, cg: u64) -> bool {
        let mine = match side {
            Side::Client => &mut self.client_cgroup,
            Side::Server => &mut self.server_cgroup,
        };
        if cg == 0 || *mine == cg {
            return true;
        }
        if *mine == 0 {
            *mine = cg;
            return true;
        }
        false
    }

    fn agrees(&self, side: Side, cg: u64) -> bool {
        let mine = match side {
            Side::Client => self.client_cgroup,
            Side::Server => self.server_cgroup,
        };
        cg == 0 || mine == 0 || mine == cg
    }
}

/// The open lookups of one key: almost always one, so the first is held inline and a
/// lookup costs no allocation of its own.
#[derive(Debug, Clone)]
struct Opens {
    first: Open,
    /// More only when containers with overlapping addresses ask the same question with
    /// the same id at once.
    rest: Vec<Open>,
}

impl Opens {
    fn new(open: Open) -> Self {
        Self {
            first: open,
            rest: Vec::new(),
        }
    }

    fn iter(&self) -> impl Iterator<Item = &Open> {
        std::iter::once(&self.first).chain(&self.rest)
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = &mut Open> {
        std::iter::once(&mut self.first).chain(&mut self.rest)
    }

    fn push(&mut self, open: Open) {
        self.rest.push(open);
    }

    /// Removes the `i`th open lookup of several (with one, the caller forgets the key).
    fn remove(&mut self, i: usize) -> Option<Open> {
        if i == 0 {
            let last = self.rest.pop()?;
            Some(std::mem::replace(&mut self.first, last))
        } else {
            (i <= self.rest.len()).then(|| self.rest.swap_remove(i - 1))
        }
    }
}

/// A query the host sent, remembered to tell cache hits from misses.
#[derive(Debug, Clone)]
struct Sent {
    ktime_ns: u64,
    server: SocketAddr,
    pid: Option<u32>,
    question: Question,
}

/// How far out of timestamp order two ring-buffer records from different CPUs may
/// arrive (records are read in reservation order; timestamps are taken just before).
const ORDER_SLACK_NS: u64 = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response with this RCODE (0 is NOERROR).
    Answered { rcode: u8 },
    /// No response within the timeout.
    Timeout,
}

/// A query as it was first seen: what `sonde.dns.queries` counts.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub server: SocketAddr,
    pub question: Question,
    pub process: Option<Process>,
}

/// A finished lookup.
#[derive(Debug, Clone, PartialEq)]
pub struct Lookup {
    pub server: SocketAddr,
    pub question: Question,
    pub process: Option<Process>,
    /// cgroup v2 id of the client's socket (0 = not seen): its container when the
    /// process is not known.
    pub client_cgroup: u64,
    pub outcome: Outcome,
    /// The query's kernel timestamp (CLOCK_MONOTONIC ns): where a span starts.
    pub start_ns: u64,
    /// Response timestamp minus query timestamp; `None` for a timeout.
    pub duration_ns: Option<u64>,
    /// `None` when the resolver is not on this host (or the lookup timed out).
    pub cache_hit: Option<bool>,
}

/// What one packet produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Query(Query),
    Lookup(Lookup),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MatcherStats {
    /// Queries not tracked because `max_open` lookups were open.
    pub dropped_open: u64,
    /// Responses with no open query (also the second copy of a response that crossed
    /// between two network namespaces of this host).
    pub unmatched_responses: u64,
    /// Lookups with no response in time while the probe was losing records: their
    /// response may be among the lost, so they are not reported as timeouts.
    pub unknown_after_loss: u64,
}

/// Loss windows remembered: a window older than one timeout no longer matters, and on
/// a host losing records continuously the newest windows are the ones that do.
const MAX_LOSS_WINDOWS: usize = 64;

#[derive(Debug)]
pub struct Matcher {
    timeout_ns: u64,
    max_open: usize,
    max_sent: usize,
    /// Open lookups per key: almost always one; more only when containers with
    /// overlapping addresses ask the same question with the same id at once.
    open: HashMap<Key, Opens>,
    /// Lookups in `open`.
    open_count: usize,
    /// Queries this host sent, oldest first, kept for one timeout.
    sent: VecDeque<Sent>,
    /// The newest query each sender (`None`: sent with no known process) has in
    /// `sent`, at most `max_sent` senders; those past it raise `newest_floor` instead,
    /// which every sender then counts as its own. A response whose resolver sent nothing
    /// since the client's query is a hit without a walk of `sent`: a busy forwarder
    /// answering from its cache would otherwise walk every query of the last
    /// millisecond for each response.
    newest_sent: HashMap<Option<u32>, u64>,
    newest_floor: u64,
    /// The newest query of any sender.
    newest_any: u64,
    /// Spans of the kernel's clock (from, to] in which the probe lost records, oldest
    /// first.
    loss_windows: VecDeque<(u64, u64)>,
    stats: MatcherStats,
}

impl Matcher {
    /// `max_open` bounds the lookups in flight and `max_sent` the remembered queries
    /// (both bound memory whatever the query rate).
    pub fn new(timeout_ns: u64, max_open: usize, max_sent: usize) -> Self {
        Self {
            timeout_ns,
            max_open,
            max_sent,
            open: HashMap::default(),
            open_count: 0,
            sent: VecDeque::new(),
            newest_sent: HashMap::default(),
            newest_floor: 0,
            newest_any: 0,
            loss_windows: VecDeque::new(),
            stats: MatcherStats::default(),
        }
    }

    /// The probe lost records (a full ring, a failed copy) at some time in
    /// (`from_ns`, `to_ns`]: a lookup open then whose response never came may have had
    /// it lost, so it ends as unknown rather than as a timeout (a loaded host would
    /// otherwise report failures that never happened).
    pub fn records_lost(&mut self, from_ns: u64, to_ns: u64) {
        if self.loss_windows.len() == MAX_LOSS_WINDOWS {
            // Merge the two oldest: wider, never forgotten.
            if let (Some((from, _)), Some((_, to))) =
                (self.loss_windows.pop_front(), self.loss_windows.pop_front())
            {
                self.loss_windows.push_front((from, to));
            }
        }
        self.loss_windows.push_back((from_ns, to_ns));
    }

    fn lost_while_open(&self, start_ns: u64) -> bool {
        let end_ns = start_ns.saturating_add(self.timeout_ns);
        self.loss_windows
            .iter()
            .any(|&(from, to)| from < end_ns && to >= start_ns)
    }

    pub fn stats(&self) -> MatcherStats {
        self.stats
    }

    pub fn open_lookups(&self) -> usize {
        self.open_count
    }

    /// Feeds one packet; pushes what it produced to `out`.
    pub fn packet(&mut self, p: Packet, out: &mut Vec<Event>) {
        if p.msg.response {
            self.response(p, out);
        } else {
            self.query(p, out);
        }
    }

    fn query(&mut self, p: Packet, out: &mut Vec<Event>) {
        let side = p.side();
        let key = Key {
            client: p.src,
            server: p.dst,
            id: p.msg.id,
            question: p.msg.question,
        };
        // One hash of the key for the lookup and the insertion.
        let mut entry = self.open.entry(key);
        if let Entry::Occupied(o) = &mut entry {
            if o.get_mut().iter_mut().any(|o| o.claim(side, p.cgroup_id)) {
                return; // another copy (or a retransmission) of an open query
            }
        }
        if self.open_count >= self.max_open {
            self.stats.dropped_open += 1;
            return;
        }
        let key = entry.key();
        if p.direction == Direction::Egress {
            if self.sent.len() >= self.max_sent {
                self.sent.pop_front();
            }
            let pid = p.process.as_ref().map(|p| p.pid);
            self.sent.push_back(Sent {
                ktime_ns: p.ktime_ns,
                server: key.server,
                pid,
                question: key.question.clone(),
            });
            self.newest_any = self.newest_any.max(p.ktime_ns);
            let senders = self.newest_sent.len();
            match self.newest_sent.get_mut(&pid) {
                Some(t) => *t = (*t).max(p.ktime_ns),
                None if senders < self.max_sent => {
                    self.newest_sent.insert(pid, p.ktime_ns);
                }
                None => self.newest_floor = self.newest_floor.max(p.ktime_ns),
            }
        }
        out.push(Event::Query(Query {
            server: key.server,
            question: key.question.clone(),
            process: p.process.clone(),
        }));
        let (client_cgroup, server_cgroup) = match side {
            Side::Client => (p.cgroup_id, 0),
            Side::Server => (0, p.cgroup_id),
        };
        let open = Open {
            start_ns: p.ktime_ns,
            process: p.process,
            client_cgroup,
            server_cgroup,
        };
        match entry {
            Entry::Occupied(mut o) => o.get_mut().push(open),
            Entry::Vacant(v) => {
                v.insert(Opens::new(open));
            }
        }
        self.open_count += 1;
    }

    /// Takes the open lookup of `key` that a packet on `side` in cgroup `cg` answers.
    /// Takes the open lookup of `key` that a packet on `side` in cgroup `cg` answers,
    /// with the key as the query stored it.
    fn take(&mut self, key: Key, side: Side, cg: u64) -> Option<(Key, Open)> {
        let Entry::Occupied(mut entry) = self.open.entry(key) else {
            return None;
        };
        let i = entry.get().iter().position(|o| o.agrees(side, cg))?;
        let taken = if entry.get().rest.is_empty() {
            let (key, opens) = entry.remove_entry();
            (key, opens.first)
        } else {
            let key = entry.key().clone();
            (key, entry.get_mut().remove(i)?)
        };
        self.open_count -= 1;
        Some(taken)
    }

    fn response(&mut self, p: Packet, out: &mut Vec<Event>) {
        let side = p.side();
        let key = Key {
            client: p.dst,
            server: p.src,
            id: p.msg.id,
            question: p.msg.question,
        };
        let Some((key, open)) = self.take(key, side, p.cgroup_id) else {
            self.stats.unmatched_responses += 1;
            return;
        };
        let cache_hit = (p.direction == Direction::Egress).then(|| {
            let resolver = p.process.as_ref().map(|p| p.pid);
            // The walk below looks only at queries newer than the client's.
            let newest = match resolver {
                Some(_) => self.newest_of(resolver).max(self.newest_of(None)),
                None => self.newest_any,
            };
            if newest <= open.start_ns {
                return true;
            }
            // Newest first, back to just before the client's query: the work is the
            // queries sent while this one was open, not the whole remembered window.
            // The slack covers records of different CPUs arriving slightly out of
            // timestamp order.
            !self
                .sent
                .iter()
                .rev()
                .take_while(|s| s.ktime_ns.saturating_add(ORDER_SLACK_NS) > open.start_ns)
                .any(|s| {
                    s.ktime_ns > open.start_ns
                        && s.ktime_ns <= p.ktime_ns
                        && s.server != key.server
                        && s.question == key.question
                        && match (resolver, s.pid) {
                            (Some(a), Some(b)) => a == b,
                            _ => true,
                        }
                })
        });
        out.push(Event::Lookup(Lookup {
            server: key.server,
            question: key.question,
            process: open.process,
            client_cgroup: open.client_cgroup,
            outcome: Outcome::Answered { rcode: p.msg.rcode },
            start_ns: open.start_ns,
            duration_ns: Some(p.ktime_ns.saturating_sub(open.start_ns)),
            cache_hit,
        }));
    }

    /// The newest query `pid` may have in `sent` (an upper bound).
    fn newest_of(&self, pid: Option<u32>) -> u64 {
        self.newest_sent
            .get(&pid)
            .copied()
            .unwrap_or(0)
            .max(self.newest_floor)
    }

    /// Ends every lookup open for longer than the timeout at `now_ns` (the kernel's
    /// monotonic clock) as a timeout, and forgets queries older than one timeout.
    pub fn expire(&mut self, now_ns: u64, out: &mut Vec<Event>) {
        let deadline = now_ns.saturating_sub(self.timeout_ns);
        let mut expired: Vec<Key> = self
            .open
            .iter()
            .filter(|(_, o)| o.iter().any(|o| o.start_ns <= deadline))
            .map(|(k, _)| k.clone())
            .collect();
        // Stable output order for the same input.
        expired.sort_by(|a, b| {
            (a.question.clone(), a.client, a.server, a.id).cmp(&(
                b.question.clone(),
                b.client,
                b.server,
                b.id,
            ))
        });
        for key in expired {
            let Some(opens) = self.open.remove(&key) else {
                continue;
            };
            let (late, keep): (Vec<Open>, Vec<Open>) = std::iter::once(opens.first)
                .chain(opens.rest)
                .partition(|o| o.start_ns <= deadline);
            let mut keep = keep.into_iter();
            if let Some(first) = keep.next() {
                self.open.insert(
                    key.clone(),
                    Opens {
                        first,
                        rest: keep.collect(),
                    },
                );
            }
            self.open_count -= late.len();
            for open in late {
                if self.lost_while_open(open.start_ns) {
                    self.stats.unknown_after_loss += 1;
                    continue;
                }
                out.push(Event::Lookup(Lookup {
                    server: key.server,
                    question: key.question.clone(),
                    process: open.process,
                    client_cgroup: open.client_cgroup,
                    outcome: Outcome::Timeout,
                    start_ns: open.start_ns,
                    duration_ns: None,
                    cache_hit: None,
                }));
            }
        }
        // Every lookup still open started after the deadline.
        while self
            .loss_windows
            .front()
            .is_some_and(|&(_, to)| to < deadline)
        {
            self.loss_windows.pop_front();
        }
        // A remembered query matters only to lookups that can still be open.
        while self.sent.front().is_some_and(|s| s.ktime_ns <= deadline) {
            self.sent.pop_front();
        }
        // Every lookup still open started after the deadline, so a sender whose newest
        // query is older can be forgotten (it reads as 0, which is as good).
        self.newest_sent.retain(|_, t| *t > deadline);
        if self.newest_floor <= deadline {
            self.newest_floor = 0;
        }
        // A storm of unanswered queries (a dead resolver, responses lost from a full
        // ring) grows the table of open lookups, which never shrinks by itself: give
        // the memory back once the storm has timed out.
        if self.open.capacity() > KEEP_OPEN && self.open.len() < self.open.capacity() / 4 {
            self.open.shrink_to(KEEP_OPEN.max(2 * self.open.len()));
        }
    }

    /// Lookups the table of open lookups has room for without growing.
    pub fn open_capacity(&self) -> usize {
        self.open.capacity()
    }
}

/// Open lookups the table keeps room for after a storm: what a busy host has in flight
/// (a lookup is open for one round trip to its resolver).
const KEEP_OPEN: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::family::dns::wire::Message;

    const MS: u64 = 1_000_000;
    const CLIENT: &str = "127.0.0.1:40000";
    const FWD: &str = "127.0.0.2:53";
    const UPSTREAM: &str = "127.0.0.3:53";
    const FWD_OUT: &str = "127.0.0.1:50000";

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    fn proc_(pid: u32) -> Option<Process> {
        Some(Process {
            pid,
            key: ProcessKey::named(format!("p{pid}")).into(),
        })
    }

    #[allow(clippy::too_many_arguments, reason = "a table row")]
    fn pkt(
        t_ms: u64,
        dir: Direction,
        src: &str,
        dst: &str,
        id: u16,
        name: &str,
        response: bool,
        rcode: u8,
        pid: Option<u32>,
    ) -> Packet {
        Packet {
            ktime_ns: t_ms * MS,
            direction: dir,
            transport: Transport::Udp,
            src: sa(src),
            dst: sa(dst),
            process: pid.and_then(proc_),
            cgroup_id: 0,
            msg: Message {
                id,
                response,
                opcode: 0,
                rcode,
                question: Question {
                    name: name.into(),
                    qtype: 1,
                    qclass: 1,
                },
            },
        }
    }

    use Direction::{Egress as E, Ingress as I};

    fn lookups(events: &[Event]) -> Vec<(String, Outcome, Option<u64>, Option<bool>)> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Lookup(l) => Some((
                    l.question.name.to_string(),
                    l.outcome,
                    l.duration_ns.map(|d| d / MS),
                    l.cache_hit,
                )),
                Event::Query(_) => None,
            })
            .collect()
    }

    fn queries(events: &[Event]) -> usize {
        events
            .iter()
            .filter(|e| matches!(e, Event::Query(_)))
            .count()
    }

    const ANS: Outcome = Outcome::Answered { rcode: 0 };

    #[test]
    fn table() {
        // (case, packets, expire at ms, expected queries, expected lookups)
        type Row = (
            &'static str,
            Vec<Packet>,
            Option<u64>,
            usize,
            Vec<(&'static str, Outcome, Option<u64>, Option<bool>)>,
        );
        let rows: Vec<Row> = vec![
            (
                "remote resolver: one copy each way, no cache-hit value",
                vec![
                    pkt(10, E, CLIENT, UPSTREAM, 1, "a.test", false, 0, Some(100)),
                    pkt(35, I, UPSTREAM, CLIENT, 1, "a.test", true, 0, None),
                ],
                None,
                1,
                vec![("a.test", ANS, Some(25), None)],
            ),
            (
                "local forwarder miss: both copies, an upstream query by the resolver",
                vec![
                    pkt(10, E, CLIENT, FWD, 7, "b.test", false, 0, Some(100)),
                    pkt(10, I, CLIENT, FWD, 7, "b.test", false, 0, None),
                    pkt(11, E, FWD_OUT, UPSTREAM, 99, "b.test", false, 0, Some(200)),
                    pkt(11, I, FWD_OUT, UPSTREAM, 99, "b.test", false, 0, None),
                    pkt(40, E, UPSTREAM, FWD_OUT, 99, "b.test", true, 0, Some(300)),
                    pkt(40, I, UPSTREAM, FWD_OUT, 99, "b.test", true, 0, None),
                    pkt(41, E, FWD, CLIENT, 7, "b.test", true, 0, Some(200)),
                    pkt(41, I, FWD, CLIENT, 7, "b.test", true, 0, None),
                ],
                None,
                2,
                vec![
                    ("b.test", ANS, Some(29), Some(true)),
                    ("b.test", ANS, Some(31), Some(false)),
                ],
            ),
            (
                "local forwarder hit: no upstream query while open",
                vec![
                    pkt(10, E, CLIENT, FWD, 8, "c.test", false, 0, Some(100)),
                    pkt(10, I, CLIENT, FWD, 8, "c.test", false, 0, None),
                    pkt(11, E, FWD, CLIENT, 8, "c.test", true, 0, Some(200)),
                    pkt(11, I, FWD, CLIENT, 8, "c.test", true, 0, None),
                ],
                None,
                1,
                vec![("c.test", ANS, Some(1), Some(true))],
            ),
            (
                "another process asking upstream for the same name is not the resolver",
                vec![
                    pkt(10, E, CLIENT, FWD, 9, "d.test", false, 0, Some(100)),
                    pkt(
                        11,
                        E,
                        "127.0.0.9:555",
                        UPSTREAM,
                        5,
                        "d.test",
                        false,
                        0,
                        Some(555),
                    ),
                    pkt(12, E, FWD, CLIENT, 9, "d.test", true, 0, Some(200)),
                ],
                None,
                2,
                vec![("d.test", ANS, Some(2), Some(true))],
            ),
            (
                "an upstream query for another name does not make a miss",
                vec![
                    pkt(10, E, CLIENT, FWD, 9, "e.test", false, 0, Some(100)),
                    pkt(
                        11,
                        E,
                        FWD_OUT,
                        UPSTREAM,
                        5,
                        "other.test",
                        false,
                        0,
                        Some(200),
                    ),
                    pkt(12, E, FWD, CLIENT, 9, "e.test", true, 0, Some(200)),
                ],
                None,
                2,
                vec![("e.test", ANS, Some(2), Some(true))],
            ),
            (
                "an upstream query before the client's query does not count",
                vec![
                    pkt(5, E, FWD_OUT, UPSTREAM, 5, "f.test", false, 0, Some(200)),
                    pkt(10, E, CLIENT, FWD, 9, "f.test", false, 0, Some(100)),
                    pkt(12, E, FWD, CLIENT, 9, "f.test", true, 0, Some(200)),
                ],
                None,
                2,
                vec![("f.test", ANS, Some(2), Some(true))],
            ),
            (
                "an upstream record read after an older one of another CPU still counts",
                vec![
                    pkt(10, E, CLIENT, FWD, 9, "o.test", false, 0, Some(100)),
                    pkt(12, E, FWD_OUT, UPSTREAM, 5, "o.test", false, 0, Some(200)),
                    // Reserved later in the ring, stamped earlier (another CPU).
                    pkt(
                        10,
                        E,
                        "127.0.0.9:9",
                        "127.0.0.8:53",
                        4,
                        "x.test",
                        false,
                        0,
                        Some(9),
                    ),
                    pkt(20, E, FWD, CLIENT, 9, "o.test", true, 0, Some(200)),
                ],
                None,
                3,
                vec![("o.test", ANS, Some(10), Some(false))],
            ),
            (
                "resolver pid unknown (TCP): any host query for the question counts",
                vec![
                    pkt(10, E, CLIENT, FWD, 9, "g.test", false, 0, Some(100)),
                    pkt(11, E, FWD_OUT, UPSTREAM, 5, "g.test", false, 0, None),
                    pkt(12, E, FWD, CLIENT, 9, "g.test", true, 0, None),
                ],
                None,
                2,
                vec![("g.test", ANS, Some(2), Some(false))],
            ),
            (
                "an upstream query of no known process counts for a known resolver",
                vec![
                    pkt(10, E, CLIENT, FWD, 9, "k.test", false, 0, Some(100)),
                    pkt(11, E, FWD_OUT, UPSTREAM, 5, "k.test", false, 0, None),
                    pkt(12, E, FWD, CLIENT, 9, "k.test", true, 0, Some(200)),
                ],
                None,
                2,
                vec![("k.test", ANS, Some(2), Some(false))],
            ),
            (
                "nxdomain and servfail keep their rcode",
                vec![
                    pkt(10, E, CLIENT, UPSTREAM, 1, "nx.test", false, 0, Some(1)),
                    pkt(10, E, CLIENT, UPSTREAM, 2, "sf.test", false, 0, Some(1)),
                    pkt(12, I, UPSTREAM, CLIENT, 1, "nx.test", true, 3, None),
                    pkt(13, I, UPSTREAM, CLIENT, 2, "sf.test", true, 2, None),
                ],
                None,
                2,
                vec![
                    ("nx.test", Outcome::Answered { rcode: 3 }, Some(2), None),
                    ("sf.test", Outcome::Answered { rcode: 2 }, Some(3), None),
                ],
            ),
            (
                "a response with another id, port or question matches nothing",
                vec![
                    pkt(10, E, CLIENT, UPSTREAM, 1, "h.test", false, 0, Some(1)),
                    pkt(11, I, UPSTREAM, CLIENT, 2, "h.test", true, 0, None),
                    pkt(
                        11,
                        I,
                        UPSTREAM,
                        "127.0.0.1:40001",
                        1,
                        "h.test",
                        true,
                        0,
                        None,
                    ),
                    pkt(11, I, UPSTREAM, CLIENT, 1, "x.test", true, 0, None),
                ],
                Some(5_000 + 10),
                1,
                vec![("h.test", Outcome::Timeout, None, None)],
            ),
            (
                "a timeout fires at the deadline, not before",
                vec![pkt(10, E, CLIENT, UPSTREAM, 1, "t.test", false, 0, Some(1))],
                Some(5_000 + 9),
                1,
                vec![],
            ),
            (
                "a retransmission of an open query is the same lookup",
                vec![
                    pkt(10, E, CLIENT, UPSTREAM, 1, "r.test", false, 0, Some(1)),
                    pkt(1010, E, CLIENT, UPSTREAM, 1, "r.test", false, 0, Some(1)),
                    pkt(1020, I, UPSTREAM, CLIENT, 1, "r.test", true, 0, None),
                ],
                None,
                1,
                vec![("r.test", ANS, Some(1010), None)],
            ),
        ];
        for (what, packets, expire_at, want_queries, want) in rows {
            let mut m = Matcher::new(5_000 * MS, 1000, 1000);
            let mut out = Vec::new();
            for p in packets {
                m.packet(p, &mut out);
            }
            if let Some(t) = expire_at {
                m.expire(t * MS, &mut out);
            }
            assert_eq!(queries(&out), want_queries, "{what}: queries");
            let want: Vec<_> = want
                .into_iter()
                .map(|(n, o, d, h)| (n.to_owned(), o, d, h))
                .collect();
            assert_eq!(lookups(&out), want, "{what}");
        }
    }

    #[test]
    fn senders_past_the_bound_still_make_misses() {
        // One remembered sender: the resolver's upstream query does not get its own
        // newest-query entry, and the floor it raises must still send the response to
        // the walk, which finds it.
        let mut m = Matcher::new(5_000 * MS, 1000, 1);
        let feed = |m: &mut Matcher, packets: Vec<Packet>| {
            let mut out = Vec::new();
            for p in packets {
                m.packet(p, &mut out);
            }
            lookups(&out)
        };
        let miss = feed(
            &mut m,
            vec![
                pkt(10, E, CLIENT, FWD, 9, "m.test", false, 0, Some(100)),
                pkt(11, E, FWD_OUT, UPSTREAM, 5, "m.test", false, 0, Some(200)),
                pkt(12, E, FWD, CLIENT, 9, "m.test", true, 0, Some(200)),
            ],
        );
        assert_eq!(miss, [("m.test".to_owned(), ANS, Some(2), Some(false))]);
        // Past the timeout the floor is forgotten with the queries it stood for.
        m.expire(6_000 * MS, &mut Vec::new());
        let hit = feed(
            &mut m,
            vec![
                pkt(6_010, E, CLIENT, FWD, 10, "m.test", false, 0, Some(100)),
                pkt(6_011, E, FWD, CLIENT, 10, "m.test", true, 0, Some(200)),
            ],
        );
        assert_eq!(hit, [("m.test".to_owned(), ANS, Some(1), Some(true))]);
    }

    #[test]
    fn a_lookup_open_while_records_were_lost_is_unknown_not_a_timeout() {
        // (loss window in ms, lookup start in ms, timeout reported)
        type Case = (Option<(u64, u64)>, u64, bool);
        let table: [Case; 5] = [
            (None, 10, true),
            (Some((0, 5)), 10, true), // lost before the query was sent
            (Some((2_000, 3_000)), 10, false), // lost while it waited
            (Some((5_010, 5_900)), 10, true), // lost after its timeout had passed
            (Some((9_000, 9_500)), 4_500, false), // lost while the later lookup waited
        ];
        for (window, start, timed_out) in table {
            let mut m = Matcher::new(5_000 * MS, 16, 16);
            let mut out = Vec::new();
            m.packet(
                pkt(start, E, CLIENT, UPSTREAM, 1, "l.test", false, 0, Some(1)),
                &mut out,
            );
            if let Some((from, to)) = window {
                m.records_lost(from * MS, to * MS);
            }
            m.expire(20_000 * MS, &mut out);
            let ended = lookups(&out);
            let case = format!("window {window:?}, start {start} ms");
            assert_eq!(m.open_lookups(), 0, "{case}");
            if timed_out {
                assert_eq!(ended.len(), 1, "{case}");
                assert_eq!(ended[0].1, Outcome::Timeout, "{case}");
                assert_eq!(m.stats().unknown_after_loss, 0, "{case}");
            } else {
                assert!(ended.is_empty(), "{case}: {ended:?}");
                assert_eq!(m.stats().unknown_after_loss, 1, "{case}");
            }
        }
    }

    #[test]
    fn loss_windows_stay_bounded_and_age_out() {
        let mut m = Matcher::new(5_000 * MS, 16, 16);
        for i in 0..1_000u64 {
            m.records_lost(i * MS, i * MS + 1);
        }
        assert_eq!(m.loss_windows.len(), MAX_LOSS_WINDOWS);
        assert_eq!(
            m.loss_windows.front().map(|w| w.0),
            Some(0),
            "merged, not forgotten"
        );
        m.expire(7_000 * MS, &mut Vec::new());
        assert!(m.loss_windows.is_empty());
    }

    #[test]
    fn state_is_bounded() {
        let mut m = Matcher::new(5_000 * MS, 2, 3);
        let mut out = Vec::new();
        for i in 0..5u16 {
            m.packet(
                pkt(10, E, CLIENT, UPSTREAM, i, "b.test", false, 0, Some(1)),
                &mut out,
            );
        }
        assert_eq!(m.open_lookups(), 2);
        assert_eq!(m.stats().dropped_open, 3);
        assert!(m.sent.len() <= 3);
        m.expire(6_000 * MS, &mut out);
        assert_eq!(m.open_lookups(), 0);
        assert!(m.sent.is_empty(), "remembered queries age out");
        assert_eq!(lookups(&out).len(), 2);
    }

    #[test]
    fn the_open_table_gives_its_memory_back_after_a_storm() {
        let mut m = Matcher::new(5_000 * MS, 4097, 16);
        let mut out = Vec::new();
        for i in 0..4096u16 {
            m.packet(
                pkt(10, E, CLIENT, UPSTREAM, i, "s.test", false, 0, Some(1)),
                &mut out,
            );
        }
        assert!(m.open_capacity() >= 4096);
        // Before the timeout nothing is given back (the lookups are still open).
        m.expire(1_000 * MS, &mut out);
        assert!(m.open_capacity() >= 4096);
        m.packet(
            pkt(
                5_500,
                E,
                CLIENT,
                UPSTREAM,
                0,
                "late.test",
                false,
                0,
                Some(1),
            ),
            &mut out,
        );
        out.clear();
        m.expire(5_100 * MS, &mut out);
        assert_eq!(lookups(&out).len(), 4096, "every storm lookup timed out");
        assert_eq!(m.open_lookups(), 1, "the late one is still open");
        assert!(
            m.open_capacity() <= 2 * KEEP_OPEN,
            "capacity {} after the storm",
            m.open_capacity()
        );
    }

    fn in_cgroup(mut p: Packet, cgroup_id: u64) -> Packet {
        p.cgroup_id = cgroup_id;
        p
    }

    fn pids(events: &[Event]) -> Vec<(Option<u32>, Option<u64>)> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Lookup(l) => Some((
                    l.process.as_ref().map(|p| p.pid),
                    l.duration_ns.map(|d| d / MS),
                )),
                Event::Query(_) => None,
            })
            .collect()
    }

    /// A matcher fed `packets`, and what it produced.
    fn feed(packets: Vec<Packet>) -> (Matcher, Vec<Event>) {
        let mut m = Matcher::new(5_000 * MS, 1000, 1000);
        let mut out = Vec::new();
        for p in packets {
            m.packet(p, &mut out);
        }
        (m, out)
    }

    #[test]
    fn containers_with_overlapping_addresses_never_cross_match() {
        // Two containers (socket cgroups 11 and 22), each in its own network namespace
        // with the same address, ask the same question with the same id and port.
        let (m, out) = feed(vec![
            in_cgroup(
                pkt(10, E, CLIENT, UPSTREAM, 1, "a.test", false, 0, Some(100)),
                11,
            ),
            in_cgroup(
                pkt(20, E, CLIENT, UPSTREAM, 1, "a.test", false, 0, Some(200)),
                22,
            ),
            in_cgroup(pkt(25, I, UPSTREAM, CLIENT, 1, "a.test", true, 0, None), 22),
            in_cgroup(pkt(40, I, UPSTREAM, CLIENT, 1, "a.test", true, 0, None), 11),
        ]);
        assert_eq!(queries(&out), 2, "the second container's query is its own");
        assert_eq!(
            pids(&out),
            vec![(Some(200), Some(5)), (Some(100), Some(30))],
            "each response closes its own container's lookup"
        );
        assert_eq!(m.open_lookups(), 0);
        assert_eq!(m.stats().unmatched_responses, 0);

        // A resolver in a container of this host: the four copies of one lookup carry
        // the client's cgroup (query out, response in) and the server's (query in,
        // response out), and still make one lookup.
        let (m, out) = feed(vec![
            in_cgroup(
                pkt(10, E, CLIENT, FWD, 7, "b.test", false, 0, Some(100)),
                11,
            ),
            in_cgroup(pkt(10, I, CLIENT, FWD, 7, "b.test", false, 0, None), 33),
            in_cgroup(pkt(12, E, FWD, CLIENT, 7, "b.test", true, 0, Some(300)), 33),
            in_cgroup(pkt(12, I, FWD, CLIENT, 7, "b.test", true, 0, None), 11),
        ]);
        assert_eq!(queries(&out), 1);
        assert_eq!(pids(&out), vec![(Some(100), Some(2))]);
        assert_eq!(
            m.stats().unmatched_responses,
            1,
            "the response's second copy"
        );

        // Both containers time out: each is its own timeout.
        let mut m = Matcher::new(5_000 * MS, 1000, 1000);
        let mut out = Vec::new();
        m.packet(
            in_cgroup(
                pkt(10, E, CLIENT, UPSTREAM, 1, "t.test", false, 0, Some(100)),
                11,
            ),
            &mut out,
        );
        m.packet(
            in_cgroup(
                pkt(20, E, CLIENT, UPSTREAM, 1, "t.test", false, 0, Some(200)),
                22,
            ),
            &mut out,
        );
        m.expire(6_000 * MS, &mut out);
        assert_eq!(pids(&out), vec![(Some(100), None), (Some(200), None)]);
        assert_eq!(m.open_lookups(), 0);
    }
}
