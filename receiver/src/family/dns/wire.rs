//! A DNS message parser for what the DNS probe copies out of the kernel: the 12-byte
//! header and the first question (RFC 1035 4.1), over UDP or over TCP with its 2-byte
//! length prefix (RFC 1035 4.2.2).
//!
//! Pure and defensive: it reads untrusted bytes from any process on the host (or the
//! network), so every index is checked, compression pointers must point strictly
//! backwards and are followed at most [`MAX_POINTERS`] times, a name is at most
//! [`MAX_NAME_WIRE_LEN`] bytes on the wire, and the name's text (bounded by
//! [`MAX_NAME_TEXT_LEN`]) goes into the caller's buffer ([`parse_into`]), so the reader
//! allocates nothing per packet: [`Names`] hands out one shared copy of each name. No input panics (proptest in `tests` checks it, on
//! arbitrary bytes and on mutations of real packets in `corpus/`, captured from a real
//! resolver by `scripts/dns-corpus.py`).

use std::fmt::Write as _;
use std::sync::Arc;

/// The fixed DNS header.
pub const HEADER_LEN: usize = 12;
/// RFC 1035 2.3.4: a name is at most 255 octets on the wire.
pub const MAX_NAME_WIRE_LEN: usize = 255;
/// Compression pointers followed for one name. A name has at most 127 labels, but real
/// encoders never chain more than a few pointers; 16 bounds the work per message.
pub const MAX_POINTERS: usize = 16;
/// The longest text a name can produce: every byte escaped as `\DDD`.
pub const MAX_NAME_TEXT_LEN: usize = 4 * MAX_NAME_WIRE_LEN;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    /// The message is preceded by a 2-byte big-endian length.
    Tcp,
}

/// The first question of a message. `name` is in presentation format, lower-cased
/// (DNS names compare case-insensitively, RFC 4343), without the trailing dot except
/// for the root, which is `.`. Shared: a lookup's name is cloned into the matcher, the
/// events and the series keys (see [`Names`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Question {
    pub name: Arc<str>,
    pub qtype: u16,
    pub qclass: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: u16,
    /// QR: false for a query, true for a response.
    pub response: bool,
    pub opcode: u8,
    /// The header's 4-bit RCODE (extended rcodes live in an OPT record, which the probe
    /// does not copy).
    pub rcode: u8,
    pub question: Question,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("shorter than a DNS header")]
    Short,
    #[error("the TCP length prefix is smaller than a DNS header")]
    BadTcpLength,
    #[error("no question (QDCOUNT is 0)")]
    NoQuestion,
    #[error("the question runs past the captured bytes")]
    Truncated,
    #[error("a label uses a reserved type (0x40/0x80)")]
    BadLabel,
    #[error("a compression pointer does not point backwards")]
    BadPointer,
    #[error("more than {MAX_POINTERS} compression pointers")]
    TooManyPointers,
    #[error("a name longer than {MAX_NAME_WIRE_LEN} bytes")]
    NameTooLong,
}

/// A message's header and its first question's type and class: what [`parse_into`]
/// returns besides the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub id: u16,
    pub response: bool,
    pub opcode: u8,
    pub rcode: u8,
    pub qtype: u16,
    pub qclass: u16,
}

impl Head {
    pub fn with_name(self, name: Arc<str>) -> Message {
        Message {
            id: self.id,
            response: self.response,
            opcode: self.opcode,
            rcode: self.rcode,
            question: Question {
                name,
                qtype: self.qtype,
                qclass: self.qclass,
            },
        }
    }
}

/// Parses the header and first question of one message as the probe captured it.
pub fn parse(bytes: &[u8], transport: Transport) -> Result<Message, ParseError> {
    let mut name = String::new();
    let head = parse_into(bytes, transport, &mut name)?;
    Ok(head.with_name(name.into()))
}

/// As [`parse`], with the question's name written into `name` (cleared first): the
/// reader passes the same buffer for every packet.
pub fn parse_into(
    bytes: &[u8],
    transport: Transport,
    name: &mut String,
) -> Result<Head, ParseError> {
    let msg = match transport {
        Transport::Udp => bytes,
        Transport::Tcp => {
            let prefix = bytes.get(..2).ok_or(ParseError::Short)?;
            if usize::from(u16::from_be_bytes([prefix[0], prefix[1]])) < HEADER_LEN {
                return Err(ParseError::BadTcpLength);
            }
            &bytes[2..]
        }
    };
    let header = msg.get(..HEADER_LEN).ok_or(ParseError::Short)?;
    let be16 = |i: usize| u16::from_be_bytes([header[i], header[i + 1]]);
    let id = be16(0);
    let flags = be16(2);
    if be16(4) == 0 {
        return Err(ParseError::NoQuestion);
    }
    let end = read_name(msg, HEADER_LEN, name)?;
    let fixed = msg.get(end..end + 4).ok_or(ParseError::Truncated)?;
    Ok(Head {
        id,
        response: flags & 0x8000 != 0,
        opcode: ((flags >> 11) & 0xf) as u8,
        rcode: (flags & 0xf) as u8,
        qtype: u16::from_be_bytes([fixed[0], fixed[1]]),
        qclass: u16::from_be_bytes([fixed[2], fixed[3]]),
    })
}

/// Reads the name at `start` into `text` (cleared first); returns the offset just after
/// it in the message (after the first pointer, if any).
fn read_name(msg: &[u8], start: usize, text: &mut String) -> Result<usize, ParseError> {
    text.clear();
    let mut pos = start;
    // Pointers must go strictly below the lowest offset read so far: this alone forbids
    // loops; the pointer budget also bounds the work on long backward chains.
    let mut floor = start;
    let mut end = None;
    let mut pointers = 0;
    let mut wire_len = 0usize;
    loop {
        let len = *msg.get(pos).ok_or(ParseError::Truncated)?;
        match len & 0xc0 {
            0x00 => {}
            0xc0 => {
                let low = *msg.get(pos + 1).ok_or(ParseError::Truncated)?;
                let target = usize::from(u16::from_be_bytes([len & 0x3f, low]));
                if target >= floor {
                    return Err(ParseError::BadPointer);
                }
                pointers += 1;
                if pointers > MAX_POINTERS {
                    return Err(ParseError::TooManyPointers);
                }
                end.get_or_insert(pos + 2);
                floor = target;
                pos = target;
                continue;
            }
            _ => return Err(ParseError::BadLabel),
        }
        let len = usize::from(len);
        wire_len += len + 1;
        if wire_len > MAX_NAME_WIRE_LEN {
            return Err(ParseError::NameTooLong);
        }
        if len == 0 {
            if text.is_empty() {
                text.push('.');
            }
            return Ok(end.unwrap_or(pos + 1));
        }
        let label = msg
            .get(pos + 1..pos + 1 + len)
            .ok_or(ParseError::Truncated)?;
        if !text.is_empty() {
            text.push('.');
        }
        push_label(text, label);
        pos += 1 + len;
    }
}

/// Presentation format (RFC 1035 5.1, RFC 4343): printable ASCII as is (lower-cased),
/// `.` and `\` escaped with a backslash, anything else as `\DDD`.
fn push_label(text: &mut String, label: &[u8]) {
    for &b in label {
        match b {
            b'.' | b'\\' => {
                text.push('\\');
                text.push(char::from(b));
            }
            0x21..=0x7e => text.push(char::from(b.to_ascii_lowercase())),
            _ => {
                let _ = write!(text, "\\{b:03}");
            }
        }
    }
}

/// Names already seen, each held once: a reader hands out a clone of the shared copy
/// instead of allocating the name of every packet. Bounded: past [`Names::MAX`] distinct
/// names (a scan of random names) it starts over, which costs one allocation per name
/// until the set refills, never more memory.
#[derive(Debug, Default)]
pub struct Names {
    // Seeded per process: names are chosen by whoever sends DNS packets.
    set: foldhash::HashSet<Arc<str>>,
}

impl Names {
    pub const MAX: usize = 4096;

    /// The shared copy of `name`.
    pub fn intern(&mut self, name: &str) -> Arc<str> {
        if let Some(n) = self.set.get(name) {
            return n.clone();
        }
        if self.set.len() >= Self::MAX {
            self.set.clear();
        }
        let n: Arc<str> = Arc::from(name);
        self.set.insert(n.clone());
        n
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A query for `name` (dotted) with the given id, type and flags.
    pub(crate) fn encode(id: u16, flags: u16, name: &str, qtype: u16) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&id.to_be_bytes());
        m.extend_from_slice(&flags.to_be_bytes());
        m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        for label in name.split('.').filter(|l| !l.is_empty()) {
            m.push(label.len() as u8);
            m.extend_from_slice(label.as_bytes());
        }
        m.push(0);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&1u16.to_be_bytes());
        m
    }

    fn tcp(msg: &[u8]) -> Vec<u8> {
        let mut v = (msg.len() as u16).to_be_bytes().to_vec();
        v.extend_from_slice(msg);
        v
    }

    fn header(qd: u16) -> Vec<u8> {
        let mut h = vec![0xab, 0xcd, 0x81, 0x83];
        h.extend_from_slice(&qd.to_be_bytes());
        h.extend_from_slice(&[0; 6]);
        h
    }

    #[test]
    fn table() {
        let q = encode(0x1234, 0x0100, "Www.Example.COM", 28);
        let r = encode(0xbeef, 0x8183, "nx.test", 1);
        let mut into_header = header(1);
        // Backwards, so followed, but the header's bytes are no valid label there.
        into_header.extend_from_slice(&[0xc0, 0x00, 0, 1, 0, 1]);
        let mut loop_self = header(1);
        loop_self.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        let mut reserved = header(1);
        reserved.extend_from_slice(&[0x40, 0, 0, 1, 0, 1]);
        let mut long = header(1);
        for _ in 0..5 {
            long.push(63);
            long.extend_from_slice(&[b'a'; 63]);
        }
        long.extend_from_slice(&[0, 0, 1, 0, 1]);
        let mut odd = header(1);
        odd.extend_from_slice(&[3, b'a', b'.', 0x07, 1, b'\\', 0, 0, 16, 0, 1]);
        let mut root = header(1);
        root.extend_from_slice(&[0, 0, 2, 0, 1]);

        type Want = Result<(u16, bool, u8, &'static str, u16), ParseError>;
        let cases: Vec<(&str, Vec<u8>, Transport, Want)> = vec![
            (
                "udp query",
                q.clone(),
                Transport::Udp,
                Ok((0x1234, false, 0, "www.example.com", 28)),
            ),
            (
                "tcp query",
                tcp(&q),
                Transport::Tcp,
                Ok((0x1234, false, 0, "www.example.com", 28)),
            ),
            (
                "nxdomain response",
                r.clone(),
                Transport::Udp,
                Ok((0xbeef, true, 3, "nx.test", 1)),
            ),
            (
                "escapes",
                odd,
                Transport::Udp,
                Ok((0xabcd, true, 3, "a\\.\\007.\\\\", 16)),
            ),
            ("root", root, Transport::Udp, Ok((0xabcd, true, 3, ".", 2))),
            ("empty", vec![], Transport::Udp, Err(ParseError::Short)),
            (
                "short header",
                q[..11].to_vec(),
                Transport::Udp,
                Err(ParseError::Short),
            ),
            (
                "tcp without prefix",
                vec![0],
                Transport::Tcp,
                Err(ParseError::Short),
            ),
            (
                "tcp length too small",
                vec![0, 5, 0, 0],
                Transport::Tcp,
                Err(ParseError::BadTcpLength),
            ),
            (
                "no question",
                header(0),
                Transport::Udp,
                Err(ParseError::NoQuestion),
            ),
            (
                "cut in the name",
                q[..16].to_vec(),
                Transport::Udp,
                Err(ParseError::Truncated),
            ),
            (
                "cut in type/class",
                q[..q.len() - 1].to_vec(),
                Transport::Udp,
                Err(ParseError::Truncated),
            ),
            (
                "pointer into the header",
                into_header,
                Transport::Udp,
                Err(ParseError::BadLabel),
            ),
            (
                "pointer to itself",
                loop_self,
                Transport::Udp,
                Err(ParseError::BadPointer),
            ),
            (
                "reserved label type",
                reserved,
                Transport::Udp,
                Err(ParseError::BadLabel),
            ),
            (
                "name over 255 bytes",
                long,
                Transport::Udp,
                Err(ParseError::NameTooLong),
            ),
        ];
        for (what, bytes, transport, want) in cases {
            let got = parse(&bytes, transport).map(|m| {
                (
                    m.id,
                    m.response,
                    m.rcode,
                    m.question.name.to_string(),
                    m.question.qtype,
                )
            });
            let want = want.map(|(id, qr, rc, n, t)| (id, qr, rc, n.to_owned(), t));
            assert_eq!(got, want, "{what}");
        }
    }

    #[test]
    fn backward_pointers_are_followed_and_chains_are_bounded() {
        // A forward pointer (16 -> 20, above the question's start at 12) is refused.
        let mut m = header(1);
        m.extend_from_slice(&[3, b'w', b'w', b'w', 0xc0, 20, 0, 0, 7]);
        assert_eq!(parse(&m, Transport::Udp), Err(ParseError::BadPointer));

        // The first question starts at 12 and cannot point into the header, so backward
        // chains are tested on the name reader directly.
        let mut buf = vec![3, b'c', b'o', b'm', 0]; // 0..5: "com"
        buf.extend_from_slice(&[7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 0xc0, 0]); // 5: example -> 0
        buf.extend_from_slice(&[3, b'w', b'w', b'w', 0xc0, 5]); // 15: www -> 5
        let mut text = String::new();
        assert_eq!(read_name(&buf, 15, &mut text), Ok(21));
        assert_eq!(text, "www.example.com");

        // MAX_POINTERS + 1 pointers each one step back.
        let mut chain = vec![0u8];
        for i in 0..=MAX_POINTERS {
            let target = if i == 0 { 0 } else { 1 + 2 * (i - 1) };
            chain.extend_from_slice(&[0xc0, target as u8]);
        }
        let last = chain.len() - 2;
        assert_eq!(
            read_name(&chain, last, &mut text),
            Err(ParseError::TooManyPointers)
        );
        assert_eq!(read_name(&chain, last - 2, &mut text), Ok(chain.len() - 2));
        assert_eq!(text, ".", "the buffer is cleared for each name");
    }

    fn valid_message() -> impl Strategy<Value = (Vec<u8>, Transport)> {
        (
            any::<u16>(),
            any::<u16>(),
            proptest::collection::vec("[a-zA-Z0-9-]{1,20}", 1..6),
            any::<u16>(),
            any::<bool>(),
        )
            .prop_map(|(id, flags, labels, qtype, is_tcp)| {
                let m = encode(id, flags, &labels.join("."), qtype);
                if is_tcp {
                    (tcp(&m), Transport::Tcp)
                } else {
                    (m, Transport::Udp)
                }
            })
    }

    fn check_bounds(r: &Result<Message, ParseError>) {
        if let Ok(m) = r {
            assert!(m.question.name.len() <= MAX_NAME_TEXT_LEN);
            assert!(m.rcode < 16 && m.opcode < 16);
        }
    }

    /// Real packets (scripts/dns-corpus.py: a real resolver's responses, with compression
    /// pointers, and its forwarded queries), each with the transport its name says.
    fn corpus() -> &'static [(String, Vec<u8>, Transport)] {
        static CORPUS: std::sync::OnceLock<Vec<(String, Vec<u8>, Transport)>> =
            std::sync::OnceLock::new();
        CORPUS.get_or_init(read_corpus)
    }

    fn read_corpus() -> Vec<(String, Vec<u8>, Transport)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/family/dns/corpus");
        let mut out: Vec<(String, Vec<u8>, Transport)> = std::fs::read_dir(&dir)
            .expect("the corpus directory")
            .flatten()
            .map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let transport = if name.contains("-tcp-") {
                    Transport::Tcp
                } else {
                    Transport::Udp
                };
                (name, std::fs::read(e.path()).expect("read"), transport)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        assert!(out.len() >= 20, "the corpus is there: {}", out.len());
        out
    }

    #[test]
    fn every_real_packet_parses() {
        for (file, bytes, transport) in corpus() {
            let m = parse(bytes, *transport).unwrap_or_else(|e| panic!("{file}: {e}"));
            let n = &m.question.name;
            assert!(
                n.ends_with("corpus.test")
                    || n.ends_with("in-addr.arpa")
                    || &**n == "mixed.case.example",
                "{file}: {n}"
            );
            assert_eq!(m.response, file.contains("response"), "{file}");
        }
    }

    #[test]
    fn one_buffer_serves_every_message() {
        let mut buf = String::new();
        for (file, bytes, transport) in corpus() {
            let head = parse_into(bytes, *transport, &mut buf).expect(file);
            let whole = parse(bytes, *transport).expect(file);
            assert_eq!(head.with_name(buf.as_str().into()), whole, "{file}");
        }
        // A refused message leaves no stale name to be read as this one's.
        assert!(parse_into(&header(0), Transport::Udp, &mut buf).is_err());
        let q = encode(1, 0x0100, "x", 1);
        parse_into(&q, Transport::Udp, &mut buf).expect("valid");
        assert_eq!(buf, "x");
    }

    #[test]
    fn names_are_shared_and_bounded() {
        let mut names = Names::default();
        let a = names.intern("a.test");
        assert!(Arc::ptr_eq(&a, &names.intern("a.test")), "one copy");
        for i in 0..Names::MAX + 10 {
            names.intern(&format!("n{i}.test"));
        }
        assert!(names.len() <= Names::MAX, "{}", names.len());
        assert_eq!(&*names.intern("a.test"), "a.test");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

        /// The fuzz target seeded with real packets: flipped bytes, cuts and splices of two
        /// real packets never panic and stay within bounds.
        #[test]
        fn mutated_real_packets_never_panic(
            pick in any::<prop::sample::Index>(),
            other in any::<prop::sample::Index>(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
            cut in any::<prop::sample::Index>(),
            splice in any::<prop::sample::Index>(),
        ) {
            let corpus = corpus();
            let (_, base, transport) = &corpus[pick.index(corpus.len())];
            let (_, donor, _) = &corpus[other.index(corpus.len())];
            let mut m = base.clone();
            for (at, byte) in flips {
                let i = at.index(m.len());
                m[i] = byte;
            }
            check_bounds(&parse(&m, *transport));
            let n = cut.index(m.len() + 1);
            check_bounds(&parse(&m[..n], *transport));
            let mut spliced = m[..n].to_vec();
            spliced.extend_from_slice(&donor[splice.index(donor.len())..]);
            check_bounds(&parse(&spliced, *transport));
        }
    }

    proptest! {
        // The fuzz target: runs in CI under `cargo test` for a bounded number of cases.
        #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            check_bounds(&parse(&bytes, Transport::Udp));
            check_bounds(&parse(&bytes, Transport::Tcp));
        }

        #[test]
        fn mutated_valid_messages_never_panic(
            (msg, transport) in valid_message(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut m = msg.clone();
            check_bounds(&parse(&m, transport));
            prop_assert!(parse(&m, transport).is_ok(), "the unmutated message parses");
            for (at, byte) in flips {
                let i = at.index(m.len());
                m[i] = byte;
            }
            check_bounds(&parse(&m, transport));
            let n = cut.index(m.len() + 1);
            check_bounds(&parse(&m[..n], transport));
        }

        #[test]
        fn valid_messages_round_trip(
            id in any::<u16>(),
            labels in proptest::collection::vec("[a-z0-9-]{1,63}", 1..4),
            qtype in any::<u16>(),
        ) {
            let name = labels.join(".");
            prop_assume!(name.len() < 250);
            let m = parse(&encode(id, 0x0100, &name, qtype), Transport::Udp).expect("valid");
            prop_assert_eq!(m.id, id);
            prop_assert_eq!(&*m.question.name, name.as_str());
            prop_assert_eq!(m.question.qtype, qtype);
        }
    }
}
