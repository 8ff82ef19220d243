//! The DNS family: drains the probe's ring buffer of DNS packets, parses them
//! ([`wire`]), matches queries to responses ([`matcher`]) and folds the results into
//! bounded state (`family::dns::aggregate`). `wire` and `matcher` are pure (no aya, no tokio)
//! and unit-tested with tables and proptest; this module is the I/O around them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use aya::maps::{Array, MapData, PerCpuArray, RingBuf};
use sonde_probes::abi::{
    sonde_dns_config, sonde_dns_counter as slot, sonde_dns_direction, sonde_dns_event,
    SONDE_DNS_MAX_PORTS,
};
use sonde_probes::names::dns as n;

use super::matcher::{Direction, Event, Matcher, MatcherStats, Packet, Process};
use super::wire::{self, Transport};
use crate::collect::map_err;
use crate::collect::ring::{DrainTask, Ring, Sink};
pub use crate::collect::CollectError;
use crate::family::dns::aggregate::{DnsStats, NamePolicy};
use crate::family::process::collect::comm_to_string;
use crate::probe::LoadedFamily;

/// Lookups in flight: bounds memory at any query rate. A lookup is open for one round
/// trip to its resolver, so only unanswered queries (a dead resolver, responses lost
/// from a full ring) pile up, for one timeout: 4,096 covers ~800 of them a second at the
/// default 5 s, and the excess is counted (`sonde.probe.events.lost{dns, map_full}`).
/// Each costs 160 bytes in a hash table that doubles as it fills: at 65,536 the table
/// reached 20 MiB (plus the 10 MiB it grew from), three times the agent's own heap; at
/// 4,096 it stays under 1.4 MiB, and `Matcher::expire` shrinks it after a storm.
const MAX_OPEN: usize = 4_096;
/// Queries this host sent, remembered to tell a cache hit from a miss (72 bytes each, the
/// names shared): the whole timeout's worth up to ~3,000 queries/s, the last 1.6 s at
/// 10,000/s. A lookup open longer than that on so busy a host may miss its resolver's
/// upstream query and count as a hit. 65,536 of them took 4.5 MiB at 10,000 queries/s, a
/// fifth of the agent's memory.
const MAX_SENT: usize = 16_384;
/// Attribute sets per DNS metric before the overflow series: question types, resolvers
/// and processes multiply, and each set costs a histogram.
pub const SERIES_LIMIT: usize = 1_000;

#[derive(Debug, Clone)]
pub struct DnsSettings {
    pub ports: Vec<u16>,
    pub timeout: Duration,
    pub names: NamePolicy,
    /// Redaction and never-exported suffixes of question names.
    pub privacy: crate::family::dns::privacy::NamePrivacy,
    /// Attribute sets per metric before the overflow series, their expiry and start.
    pub series: crate::aggregate::bounded::SeriesPolicy,
    /// Where slow and failed lookups go as spans.
    pub spans: Option<DnsSpans>,
    /// Keys of per-process series (`sonde.dns.queries`).
    pub processes: crate::cgroup::Attribution,
}

#[derive(Debug, Clone)]
pub struct DnsSpans {
    pub sink: Arc<crate::spans::sink::SpanSink>,
    pub rule: super::spans::DnsSpanRule,
}

/// Cumulative counts since the probe was loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DnsCounts {
    pub packets: u64,
    pub lost_ringbuf: u64,
    /// Packets discarded in the kernel: their payload could not be copied.
    pub lost_copy: u64,
    pub matcher: MatcherStats,
    /// Records the parser refused (not DNS, or cut before the question ended).
    pub unparsed: u64,
}

#[derive(Debug)]
struct Shared {
    matcher: Matcher,
    stats: DnsStats,
    unparsed: u64,
    scratch: Vec<Event>,
    spans: Option<DnsSpans>,
    decoder: Decoder,
}

impl Shared {
    /// Folds the matcher's events into the stats; a lookup that qualifies for a span and
    /// passes the rate limit gets one, and its latency sample becomes the exemplar.
    fn fold(&mut self) {
        for e in self.scratch.drain(..) {
            let exemplar = match (&self.spans, &e) {
                (Some(s), Event::Lookup(l)) if super::spans::qualifies(&s.rule, l) => {
                    let end = super::spans::end_ns(&s.rule, l);
                    let stats = &self.stats;
                    let processes = &mut self.decoder.processes;
                    s.sink
                        .offer(end, |ctx| {
                            let name = stats.span_name(&l.question.name);
                            // Resolved only for spans the rate limit let through, and
                            // only where the process's key does not carry it.
                            let container = l
                                .process
                                .is_none()
                                .then(|| processes.container(l.client_cgroup))
                                .flatten();
                            super::spans::span(&s.rule, l, name, container, &s.sink.clock, ctx)
                        })
                        .and_then(|ctx| {
                            let d = l.duration_ns?;
                            Some(ctx.exemplar(d as f64 / 1e9, s.sink.clock.to_unix_nanos(end)))
                        })
                }
                _ => None,
            };
            self.stats.add_with_exemplar(&e, exemplar);
        }
        // A storm's timeouts (up to MAX_OPEN events of 112 bytes) would otherwise stay
        // allocated: a batch of the ring's records needs at most one event each.
        if self.scratch.capacity() > crate::collect::ring::BATCH {
            self.scratch.shrink_to(crate::collect::ring::BATCH);
        }
    }
}

impl Sink for Shared {
    fn record(&mut self, bytes: &[u8]) {
        match self.decoder.decode(bytes) {
            Some(p) => self.matcher.packet(p, &mut self.scratch),
            None => self.unparsed += 1,
        }
    }

    fn end_batch(&mut self) {
        self.fold();
        self.decoder.end_batch();
    }
}

pub struct DnsCollector {
    counters: PerCpuArray<MapData, u64>,
    ring: Ring<RingBuf<MapData>, Shared>,
    /// Records the probe had lost at the last look, and when that look was (the
    /// kernel's clock): a rise since says records were lost in between.
    lost_seen: (u64, u64),
}

/// The probes that write the packet ring: marked failed when it cannot be polled.
pub const RING_PROBES: [&str; 2] = ["dns.egress", "dns.ingress"];

impl std::fmt::Debug for DnsCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsCollector").finish_non_exhaustive()
    }
}

impl DnsCollector {
    /// Writes the watched ports into the probe's config map, takes its maps, and starts
    /// a task that drains the ring buffer as packets arrive (continuously, so a burst
    /// of queries does not overflow it between ticks).
    pub fn start(loaded: &mut LoadedFamily, settings: &DnsSettings) -> Result<Self, CollectError> {
        let ebpf = &mut loaded.ebpf;
        let config = ebpf
            .map_mut(n::MAP_CONFIG)
            .ok_or(CollectError::MissingMap { map: n::MAP_CONFIG })?;
        let mut config: Array<&mut MapData, sonde_dns_config> =
            Array::try_from(config).map_err(map_err(n::MAP_CONFIG))?;
        let mut value = sonde_dns_config::default();
        for (dst, port) in value
            .ports
            .iter_mut()
            .zip(settings.ports.iter().take(SONDE_DNS_MAX_PORTS as usize))
        {
            *dst = *port;
        }
        config.set(0, value, 0).map_err(map_err(n::MAP_CONFIG))?;

        let counters = ebpf
            .take_map(n::MAP_COUNTERS)
            .ok_or(CollectError::MissingMap {
                map: n::MAP_COUNTERS,
            })?;
        let counters = PerCpuArray::try_from(counters).map_err(map_err(n::MAP_COUNTERS))?;
        let ring = ebpf
            .take_map(n::MAP_EVENTS)
            .ok_or(CollectError::MissingMap { map: n::MAP_EVENTS })?;
        let ring = RingBuf::try_from(ring).map_err(map_err(n::MAP_EVENTS))?;
        let timeout_ns = u64::try_from(settings.timeout.as_nanos()).unwrap_or(u64::MAX);
        let shared = Shared {
            matcher: Matcher::new(timeout_ns, MAX_OPEN, MAX_SENT),
            stats: DnsStats::new(settings.names, settings.series)
                .with_privacy(settings.privacy.clone()),
            unparsed: 0,
            scratch: Vec::new(),
            spans: settings.spans.clone(),
            decoder: Decoder::new(settings.processes.clone()),
        };
        let ring = Ring::start_bpf(ring, shared, POLL_EVERY)?;
        Ok(Self {
            counters,
            ring,
            lost_seen: (0, 0),
        })
    }

    /// Ends lookups past their timeout (`now_ns` on the kernel's monotonic clock), ticks
    /// the series at `unix_now` (expiry), then hands the aggregated state to `f` (the
    /// mapping) under the lock. Also returns the counts since load, the kernel's read once
    /// per collection.
    pub fn collect<T>(
        &mut self,
        now_ns: u64,
        unix_now: u64,
        f: impl FnOnce(&DnsStats) -> T,
    ) -> (T, Result<DnsCounts, CollectError>) {
        self.ring.drain_now();
        let kernel = self.kernel_counts();
        // Records lost since the last look may include responses: lookups open then
        // are not judged timeouts. Unreadable counters leave the window open until read.
        let lost_window = kernel.as_ref().ok().and_then(|k| {
            let lost = k.lost_ringbuf + k.lost_copy;
            let (seen, since) = self.lost_seen;
            (lost != seen).then(|| {
                self.lost_seen = (lost, now_ns);
                (since, now_ns)
            })
        });
        self.ring.with(|s| {
            if let Some((from, to)) = lost_window {
                s.matcher.records_lost(from, to);
            }
            // Judge timeouts as of two polls ago: by then every response the kernel saw
            // before that instant has been drained, so none is misread as missing.
            let drained_until = now_ns.saturating_sub(2 * POLL_EVERY.as_nanos() as u64);
            s.matcher.expire(drained_until, &mut s.scratch);
            s.fold();
            s.stats.tick(unix_now);
            let counts = kernel.map(|k| DnsCounts {
                matcher: s.matcher.stats(),
                unparsed: s.unparsed,
                ..k
            });
            (f(&s.stats), counts)
        })
    }

    /// Why the packet ring can no longer be polled, if it cannot.
    pub fn ring_failure(&self) -> Option<&str> {
        self.ring.failure()
    }

    /// The drain task, for the agent to join at shutdown.
    pub fn stop(&mut self) -> Option<DrainTask> {
        self.ring.stop()
    }

    /// The probe's own counters (the matcher's and parser's fields left at zero).
    fn kernel_counts(&self) -> Result<DnsCounts, CollectError> {
        let get = |s: slot| -> Result<u64, CollectError> {
            let per_cpu = self
                .counters
                .get(&(s as u32), 0)
                .map_err(map_err(n::MAP_COUNTERS))?;
            Ok(per_cpu.iter().sum())
        };
        Ok(DnsCounts {
            packets: get(slot::SONDE_DNS_PACKETS)?,
            lost_ringbuf: get(slot::SONDE_DNS_LOST_RINGBUF)?,
            lost_copy: get(slot::SONDE_DNS_LOST_COPY)?,
            ..DnsCounts::default()
        })
    }
}

/// The kernel's monotonic clock, which `bpf_ktime_get_ns` reads.
pub fn monotonic_now_ns() -> u64 {
    u64::try_from(crate::spans::clock::now_ns(libc::CLOCK_MONOTONIC)).unwrap_or(0)
}

/// How often the reader drains without being woken: the probe wakes it only when the
/// ring is a quarter full (see dns.bpf.c), so at low rates this is the drain.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// Senders remembered per batch: a batch holds the packets of a few processes (a client
/// and its resolver), and each gets its key once instead of once per packet.
const SENDERS: usize = 16;

/// Turns ring-buffer records into parsed packets without allocating per record: the
/// question name is parsed into one reused buffer and shared through [`wire::Names`],
/// and the key of each sender is made once per batch ([`Decoder::end_batch`] forgets
/// them, so a container that appears later is resolved by the next batch).
#[derive(Debug)]
pub struct Decoder {
    processes: crate::cgroup::Attribution,
    names: wire::Names,
    name: String,
    senders: Vec<Sender>,
    /// The slot the next new sender replaces once `senders` is full.
    next: usize,
    /// The key every response's sender shares (see [`Decoder::decode`]).
    unnamed: Arc<crate::aggregate::process::ProcessKey>,
}

#[derive(Debug)]
struct Sender {
    tgid: u32,
    comm: [core::ffi::c_char; 16],
    cgroup_id: u64,
    process: Process,
}

impl Decoder {
    /// `processes` keys the senders.
    pub fn new(processes: crate::cgroup::Attribution) -> Self {
        Self {
            processes,
            names: wire::Names::default(),
            name: String::with_capacity(wire::MAX_NAME_TEXT_LEN),
            senders: Vec::with_capacity(SENDERS),
            next: 0,
            unnamed: Arc::new(crate::aggregate::process::ProcessKey::named("")),
        }
    }

    /// Called after each batch of records.
    pub fn end_batch(&mut self) {
        self.senders.clear();
        self.next = 0;
    }

    /// One ring-buffer record as a parsed packet; `None` for a short record or a payload
    /// that is not a DNS message with a question.
    pub fn decode(&mut self, bytes: &[u8]) -> Option<Packet> {
        // Records are full or short (cut after data[SONDE_DNS_CAPTURE_SHORT]): the
        // header is copied out, the payload read where it lies.
        const DATA: usize = std::mem::offset_of!(sonde_dns_event, data);
        let data = bytes.get(DATA..)?;
        let mut ev = sonde_dns_event::default();
        // SAFETY: `bytes` holds at least DATA bytes (checked above), `ev` is a
        // sonde_dns_event of more than DATA bytes, the two do not overlap, and the
        // header is plain old data (any bit pattern is valid).
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), (&raw mut ev).cast::<u8>(), DATA) };
        let transport = match ev.protocol {
            17 => Transport::Udp,
            6 => Transport::Tcp,
            _ => return None,
        };
        let addr = |raw: &[u8; 16]| -> Option<IpAddr> {
            match ev.family {
                4 => Some(IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))),
                6 => Some(IpAddr::V6(Ipv6Addr::from(*raw))),
                _ => None,
            }
        };
        let src = SocketAddr::new(addr(&ev.saddr)?, ev.sport);
        let dst = SocketAddr::new(addr(&ev.daddr)?, ev.dport);
        let captured = usize::from(ev.captured).min(data.len());
        let head = wire::parse_into(&data[..captured], transport, &mut self.name).ok()?;
        let msg = head.with_name(self.names.intern(&self.name));
        let direction = if ev.direction == sonde_dns_direction::SONDE_DNS_EGRESS as u8 {
            Direction::Egress
        } else {
            Direction::Ingress
        };
        // Of a response's sender the matcher uses only the pid (is the resolver the
        // process that asked upstream?) and no series is keyed by it: the probe does not
        // name it (dns.bpf.c) and neither does the reader, so no /proc read either.
        let process = (ev.tgid != 0).then(|| {
            if msg.response {
                Process {
                    pid: ev.tgid,
                    key: self.unnamed.clone(),
                }
            } else {
                self.sender(&ev)
            }
        });
        Some(Packet {
            ktime_ns: ev.ktime_ns,
            direction,
            transport,
            src,
            dst,
            process,
            cgroup_id: ev.cgroup_id,
            msg,
        })
    }

    /// The sending process of a record with a tgid: remembered for the batch.
    fn sender(&mut self, ev: &sonde_dns_event) -> Process {
        let known = self
            .senders
            .iter()
            .find(|s| s.tgid == ev.tgid && s.cgroup_id == ev.cgroup_id && s.comm == ev.comm);
        if let Some(s) = known {
            return s.process.clone();
        }
        let name = match comm_to_string(&ev.comm) {
            // The egress variant for kernels whose cgroup_skb programs cannot read the
            // name (before 6.16): the process usually still runs when the batch is read.
            name if name.is_empty() => std::fs::read_to_string(format!("/proc/{}/comm", ev.tgid))
                .map(|c| c.trim_end_matches('\n').to_owned())
                .unwrap_or_default(),
            name => name,
        };
        let process = Process {
            pid: ev.tgid,
            key: Arc::new(self.processes.key(ev.tgid, name, ev.cgroup_id)),
        };
        let sender = Sender {
            tgid: ev.tgid,
            comm: ev.comm,
            cgroup_id: ev.cgroup_id,
            process: process.clone(),
        };
        if self.senders.len() < SENDERS {
            self.senders.push(sender);
        } else {
            self.senders[self.next] = sender;
            self.next = (self.next + 1) % SENDERS;
        }
        process
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::Attribution;
    use sonde_probes::abi::SONDE_DNS_CAPTURE_SHORT;

    fn record(ev: &sonde_dns_event) -> Vec<u8> {
        // SAFETY: sonde_dns_event is plain old data; viewing it as bytes is sound.
        unsafe {
            std::slice::from_raw_parts(
                (ev as *const sonde_dns_event).cast::<u8>(),
                std::mem::size_of::<sonde_dns_event>(),
            )
        }
        .to_vec()
    }

    fn set_comm(ev: &mut sonde_dns_event, comm: &[u8]) {
        ev.comm = [0; 16];
        for (d, s) in ev.comm.iter_mut().zip(comm) {
            *d = *s as core::ffi::c_char;
        }
    }

    /// `dig`'s (tgid 42) UDP query for a.test, as the egress probe records it.
    fn dig_query() -> (sonde_dns_event, &'static [u8]) {
        let mut ev = sonde_dns_event {
            ktime_ns: 5,
            tgid: 42,
            sport: 40000,
            dport: 53,
            family: 4,
            protocol: 17,
            direction: sonde_dns_direction::SONDE_DNS_EGRESS as u8,
            ..Default::default()
        };
        ev.saddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        ev.daddr[..4].copy_from_slice(&[127, 0, 0, 53]);
        set_comm(&mut ev, b"dig");
        let msg: &[u8] = &[
            0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 4, b't', b'e', b's', b't', 0, 0, 1,
            0, 1,
        ];
        ev.data[..msg.len()].copy_from_slice(msg);
        ev.captured = msg.len() as u16;
        (ev, msg)
    }

    #[test]
    fn a_record_decodes_to_a_packet_and_junk_does_not() {
        let (ev, msg) = dig_query();
        let mut d = Decoder::new(Attribution::default());
        let p = d.decode(&record(&ev)).expect("a packet");
        assert_eq!(p.src, "127.0.0.1:40000".parse().expect("addr"));
        assert_eq!(p.dst, "127.0.0.53:53".parse().expect("addr"));
        assert_eq!(p.direction, Direction::Egress);
        assert_eq!(&*p.msg.question.name, "a.test");
        assert_eq!(
            p.process,
            Some(Process {
                pid: 42,
                key: crate::aggregate::process::ProcessKey::named("dig").into(),
            })
        );

        let mut cut = ev;
        cut.captured = 15;
        assert_eq!(d.decode(&record(&cut)), None, "question cut short");
        let mut bad = ev;
        bad.family = 9;
        assert_eq!(d.decode(&record(&bad)), None);
        let mut huge = ev;
        huge.captured = u16::MAX;
        assert!(d.decode(&record(&huge)).is_some(), "captured is clamped");
        assert_eq!(d.decode(&record(&ev)[..79]), None, "shorter than a header");
        let short = 80 + SONDE_DNS_CAPTURE_SHORT as usize;
        assert_eq!(
            d.decode(&record(&ev)[..short]),
            d.decode(&record(&ev)),
            "a short record is the same packet"
        );
        assert_eq!(
            d.decode(&record(&ev)[..90]),
            None,
            "payload cut by the record"
        );

        let mut v6 = ev;
        v6.family = 6;
        v6.protocol = 6; // TCP: the payload starts with the 2-byte length
        v6.direction = sonde_dns_direction::SONDE_DNS_INGRESS as u8;
        v6.tgid = 0;
        v6.saddr = std::net::Ipv6Addr::LOCALHOST.octets();
        v6.daddr = "fd00::53"
            .parse::<std::net::Ipv6Addr>()
            .expect("v6")
            .octets();
        v6.data[..2].copy_from_slice(&(msg.len() as u16).to_be_bytes());
        v6.data[2..2 + msg.len()].copy_from_slice(msg);
        v6.captured = (msg.len() + 2) as u16;
        let p = d.decode(&record(&v6)).expect("an IPv6 TCP packet");
        assert_eq!(p.dst, "[fd00::53]:53".parse().expect("addr"));
        assert_eq!(p.transport, Transport::Tcp);
        assert_eq!(p.direction, Direction::Ingress);
        assert_eq!(p.process, None, "no process outside UDP egress");
        assert_eq!(&*p.msg.question.name, "a.test");
    }

    #[test]
    fn a_response_keeps_its_senders_pid_and_is_not_named() {
        let (mut ev, _) = dig_query();
        ev.data[2] |= 0x80; // QR: a response, sent by a resolver of this host
                            // The probe names only queries' senders.
        set_comm(&mut ev, b"");
        // This process: a name read from /proc (as for a query on kernels whose probe
        // cannot name the sender) would not be empty.
        ev.tgid = std::process::id();
        let mut d = Decoder::new(Attribution::default());
        let p = d.decode(&record(&ev)).expect("a packet");
        assert!(p.msg.response);
        let process = p.process.expect("the resolver's thread group");
        assert_eq!(process.pid, std::process::id());
        assert_eq!(process.key.executable, "", "not named");
        ev.data[2] &= !0x80; // the same as a query: named from /proc
        let query = d
            .decode(&record(&ev))
            .and_then(|p| p.process)
            .expect("a sender");
        assert_ne!(query.key.executable, "");
        ev.data[2] |= 0x80;
        ev.tgid = 0;
        assert_eq!(d.decode(&record(&ev)).and_then(|p| p.process), None);
    }

    #[test]
    fn a_sender_gets_one_key_per_batch() {
        let (mut ev, _) = dig_query();
        ev.cgroup_id = 7;
        let mut other = ev;
        set_comm(&mut other, b"curl");
        let mut d = Decoder::new(Attribution::default());
        let key = |d: &mut Decoder, ev: &sonde_dns_event| {
            d.decode(&record(ev))
                .and_then(|p| p.process)
                .expect("a sender")
                .key
        };
        let first = key(&mut d, &ev);
        assert!(
            Arc::ptr_eq(&first, &key(&mut d, &ev)),
            "shared within a batch"
        );
        assert_eq!(key(&mut d, &other).executable, "curl");
        let mut elsewhere = ev;
        elsewhere.cgroup_id = 8;
        assert!(!Arc::ptr_eq(&first, &key(&mut d, &elsewhere)), "per cgroup");
        // More senders than the batch remembers: each still gets its own name.
        for pid in 0..2 * SENDERS as u32 {
            let mut e = ev;
            e.tgid = 1000 + pid;
            assert_eq!(key(&mut d, &e).executable, "dig");
        }
        d.end_batch();
        let next = key(&mut d, &ev);
        assert!(!Arc::ptr_eq(&first, &next), "made again in the next batch");
        assert_eq!(first, next);
    }
}
