//! Matches DNS queries to responses and decides cache hits. Pure: packets in (with the
//! kernel's timestamps), finished lookups out; no I/O, no clock of its own.
//!
//! A lookup is keyed by (client address and port, server address and port, transaction
//! id, question). The probe can see a packet between two processes of this host twice
//! (on the sender's egress and on the receiver's ingress: the kernel side forwards only
//! the egress copy over loopback, but a packet between network namespaces crosses a
//! veth pair), so the first copy of a query opens the lookup and later copies of it are
//! ignored while it is open; the first copy of a response closes it and later copies
//! find nothing open. Latency is the response's
//! kernel timestamp minus the query's. A lookup with no response within the timeout
//! ends with `error.type=timeout` when [`Matcher::expire`] passes its deadline.
//!
//! **Cache hits, measured:** a lookup is a cache hit when its response left a process
//! on this host (the probe saw the response on egress, so the resolver runs here) and
//! that process sent no query for the same question to another server while the
//! client's query was open. "That process" is the thread group that sent the response
//! when the kernel gave it (UDP sends run in the sender's context); otherwise any
//! process of this host. Lookups answered by remote resolvers have no cache-hit value.

use std::collections::VecDeque;

// Seeded per process: keys carry names and ports remote peers choose.
use foldhash::HashMap;
use std::net::SocketAddr;

use super::wire::{Message, Question, Transport};

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
    pub msg: Message,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Process {
    pub pid: u32,
    pub executable: String,
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
}

#[derive(Debug)]
pub struct Matcher {
    timeout_ns: u64,
    max_open: usize,
    max_sent: usize,
    open: HashMap<Key, Open>,
    /// Queries this host sent, oldest first, kept for one timeout.
    sent: VecDeque<Sent>,
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
            sent: VecDeque::new(),
            stats: MatcherStats::default(),
        }
    }

    pub fn stats(&self) -> MatcherStats {
        self.stats
    }

    pub fn open_lookups(&self) -> usize {
        self.open.len()
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
        let key = Key {
            client: p.src,
            server: p.dst,
            id: p.msg.id,
            question: p.msg.question,
        };
        if self.open.contains_key(&key) {
            return; // another copy (or a retransmission) of an open query
        }
        if self.open.len() >= self.max_open {
            self.stats.dropped_open += 1;
            return;
        }
        if p.direction == Direction::Egress {
            if self.sent.len() >= self.max_sent {
                self.sent.pop_front();
            }
            self.sent.push_back(Sent {
                ktime_ns: p.ktime_ns,
                server: key.server,
                pid: p.process.as_ref().map(|p| p.pid),
                question: key.question.clone(),
            });
        }
        out.push(Event::Query(Query {
            server: key.server,
            question: key.question.clone(),
            process: p.process.clone(),
        }));
        self.open.insert(
            key,
            Open {
                start_ns: p.ktime_ns,
                process: p.process,
            },
        );
    }

    fn response(&mut self, p: Packet, out: &mut Vec<Event>) {
        let key = Key {
            client: p.dst,
            server: p.src,
            id: p.msg.id,
            question: p.msg.question,
        };
        let Some(open) = self.open.remove(&key) else {
            self.stats.unmatched_responses += 1;
            return;
        };
        let cache_hit = (p.direction == Direction::Egress).then(|| {
            let resolver = p.process.as_ref().map(|p| p.pid);
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
            outcome: Outcome::Answered { rcode: p.msg.rcode },
            start_ns: open.start_ns,
            duration_ns: Some(p.ktime_ns.saturating_sub(open.start_ns)),
            cache_hit,
        }));
    }

    /// Ends every lookup open for longer than the timeout at `now_ns` (the kernel's
    /// monotonic clock) as a timeout, and forgets queries older than one timeout.
    pub fn expire(&mut self, now_ns: u64, out: &mut Vec<Event>) {
        let deadline = now_ns.saturating_sub(self.timeout_ns);
        let mut expired: Vec<Key> = self
            .open
            .iter()
            .filter(|(_, o)| o.start_ns <= deadline)
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
            if let Some(open) = self.open.remove(&key) {
                out.push(Event::Lookup(Lookup {
                    server: key.server,
                    question: key.question,
                    process: open.process,
                    outcome: Outcome::Timeout,
                    start_ns: open.start_ns,
                    duration_ns: None,
                    cache_hit: None,
                }));
            }
        }
        // A remembered query matters only to lookups that can still be open.
        while self.sent.front().is_some_and(|s| s.ktime_ns <= deadline) {
            self.sent.pop_front();
        }
    }
}

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
            executable: format!("p{pid}"),
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
            msg: Message {
                id,
                response,
                opcode: 0,
                rcode,
                question: Question {
                    name: name.to_owned(),
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
                    l.question.name.clone(),
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
}
