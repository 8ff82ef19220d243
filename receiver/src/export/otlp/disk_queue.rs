//! The durable export queue (`exporters.otlp.queue`): a segment log on disk that holds
//! encoded batches until the collector has accepted them, across crashes and restarts.
//!
//! Guarantees:
//! - A record is either read back whole (its checksum matches) or skipped and counted in
//!   [`DiskQueue::corrupt_records`]; a torn write, a flipped bit or a stray file never stops
//!   the agent.
//! - Records come back in the order they were appended; an acknowledged record never comes
//!   back (the acknowledged position is kept in `ack`, replaced atomically by rename).
//! - The segment files never exceed `max_bytes` together: room is made by dropping the
//!   oldest segment, and every unacknowledged record it held is returned to the caller,
//!   who counts its points as dropped.
//! - Data is fsynced at most once a second (writes reach the page cache at once, so a
//!   SIGKILL loses nothing; a power cut loses at most about a second).
//!
//! Layout of a directory: `lock` (one Sonde per directory), `ack`, and segments named by the
//! sequence number of their first record (`00000000000000000042.seg`). A record is a
//! 36-byte header — magic, payload length, sequence number, data points, creation time (Unix
//! ns), CRC-32 of the rest of the header and the payload — then the payload.
//!
//! Synchronous std I/O only: the exporter calls it for one small file operation per batch.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const MAGIC: u32 = 0x5351_4e53; // "SNQS" little-endian on disk
const HEADER: usize = 36;
const SEGMENT_SUFFIX: &str = ".seg";
const ACK_FILE: &str = "ack";
const LOCK_FILE: &str = "lock";
/// fsync at most this often.
const SYNC_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("cannot use the export queue directory {dir}: {source}")]
    Io {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "the export queue directory {0} is in use by another Sonde: give each agent its own \
         exporters.otlp.queue.directory"
    )]
    Busy(PathBuf),
    #[error(
        "a batch of {size} bytes does not fit in exporters.otlp.queue.max_bytes ({max}): \
         raise it"
    )]
    TooLarge { size: u64, max: u64 },
}

/// A record waiting to be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    pub seq: u64,
    pub points: u64,
    /// When the batch was made (Unix ns): the age of the oldest unsent data.
    pub created_unix_ns: u64,
    segment: u64,
    offset: u64,
    len: u32,
}

#[derive(Debug)]
struct Segment {
    /// Sequence number of its first record: its name.
    id: u64,
    bytes: u64,
}

#[derive(Debug)]
pub struct DiskQueue {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    /// Oldest first; the last one is the active segment when `active` is open.
    segments: VecDeque<Segment>,
    active: Option<File>,
    pending: VecDeque<Pending>,
    next_seq: u64,
    /// Records with a smaller sequence number have been acknowledged.
    acked: u64,
    corrupt: u64,
    last_sync: Option<Instant>,
    unsynced: bool,
    _lock: File,
}

fn segment_name(id: u64) -> String {
    format!("{id:020}{SEGMENT_SUFFIX}")
}

fn crc(header_rest: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(header_rest);
    h.update(payload);
    h.finalize()
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn encode_record(seq: u64, points: u64, created: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&points.to_le_bytes());
    out.extend_from_slice(&created.to_le_bytes());
    let sum = crc(&out[4..32], payload);
    out.extend_from_slice(&sum.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// A record decoded from `buf` at `at`: (seq, points, created, payload range), or `None`
/// when what is there is not a whole record with a matching checksum.
fn decode_at(buf: &[u8], at: usize) -> Option<(u64, u64, u64, std::ops::Range<usize>)> {
    let h = buf.get(at..at + HEADER)?;
    if u32_at(h, 0) != MAGIC {
        return None;
    }
    let len = u32_at(h, 4) as usize;
    let payload = at + HEADER..(at + HEADER).checked_add(len)?;
    let body = buf.get(payload.clone())?;
    (crc(&h[4..32], body) == u32_at(h, 32))
        .then(|| (u64_at(h, 8), u64_at(h, 16), u64_at(h, 24), payload))
}

impl DiskQueue {
    /// Opens (creating if needed) the queue in `dir`, reads back every record not yet
    /// acknowledged and skips (counting) what is corrupt.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, QueueError> {
        let io_err = |source| QueueError::Io {
            dir: dir.to_owned(),
            source,
        };
        fs::create_dir_all(dir).map_err(io_err)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))
            .map_err(io_err)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(QueueError::Busy(dir.to_owned())),
            Err(fs::TryLockError::Error(e)) => return Err(io_err(e)),
        }
        let acked = read_ack(&dir.join(ACK_FILE)).unwrap_or(0);
        let mut ids: Vec<u64> = fs::read_dir(dir)
            .map_err(io_err)?
            .filter_map(|e| {
                let name = e.ok()?.file_name();
                name.to_str()?.strip_suffix(SEGMENT_SUFFIX)?.parse().ok()
            })
            .collect();
        ids.sort_unstable();

        let mut q = DiskQueue {
            dir: dir.to_owned(),
            max_bytes,
            // Dropping for room goes a segment at a time: small enough that one drop loses
            // little, large enough that a long outage is not thousands of files.
            segment_bytes: (max_bytes / 16).clamp(64 << 10, 8 << 20),
            segments: VecDeque::new(),
            active: None,
            pending: VecDeque::new(),
            next_seq: acked,
            acked,
            corrupt: 0,
            last_sync: None,
            unsynced: false,
            _lock: lock,
        };
        for id in ids {
            let path = dir.join(segment_name(id));
            let buf = match fs::read(&path) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(path = %path.display(), "cannot read an export queue segment, skipped: {e}");
                    q.corrupt += 1;
                    continue;
                }
            };
            let before = q.pending.len();
            let valid_end = q.scan(id, &buf);
            if valid_end < buf.len() {
                // A torn or corrupt tail is cut off, so it is counted once, not at every
                // start, and the segment ends on a whole record.
                let _ = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_len(valid_end as u64));
            }
            if q.pending.len() == before {
                // Nothing left to send in it.
                let _ = fs::remove_file(&path);
            } else {
                q.segments.push_back(Segment {
                    id,
                    bytes: valid_end as u64,
                });
            }
        }
        if q.corrupt > 0 {
            tracing::warn!(
                dir = %dir.display(),
                records = q.corrupt,
                "skipped corrupt or torn records in the export queue (counted in \
                 sonde.export.queue.errors)"
            );
        }
        // A bound lowered since the last run applies at once.
        q.make_room(0);
        Ok(q)
    }

    /// Reads the records of one segment; whatever does not check out is skipped and the
    /// scan resumes at the next record header found. Returns where the last whole record
    /// ends.
    fn scan(&mut self, id: u64, buf: &[u8]) -> usize {
        let mut at = 0;
        let mut valid_end = 0;
        while at < buf.len() {
            match decode_at(buf, at) {
                Some((seq, points, created, payload)) => {
                    if seq >= self.acked && self.pending.back().is_none_or(|p| p.seq < seq) {
                        self.pending.push_back(Pending {
                            seq,
                            points,
                            created_unix_ns: created,
                            segment: id,
                            offset: at as u64,
                            len: payload.len() as u32,
                        });
                    }
                    self.next_seq = self.next_seq.max(seq + 1);
                    at = payload.end;
                    valid_end = at;
                }
                None => {
                    self.corrupt += 1;
                    let magic = MAGIC.to_le_bytes();
                    at = match buf[at + 1..].windows(4).position(|w| w == magic) {
                        Some(p) => at + 1 + p,
                        None => buf.len(),
                    };
                }
            }
        }
        valid_end
    }

    /// Records waiting to be sent, oldest first.
    pub fn pending(&self) -> impl ExactSizeIterator<Item = &Pending> {
        self.pending.iter()
    }

    /// Bytes of the segment files.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Records skipped because they were torn or corrupt, since open.
    pub fn corrupt_records(&self) -> u64 {
        self.corrupt
    }

    /// Appends one batch. Returns its sequence number and the records dropped (oldest
    /// first) to keep within the bound. On an I/O error nothing is appended and the queue
    /// stays usable (a full disk may drain).
    pub fn append(
        &mut self,
        points: u64,
        created_unix_ns: u64,
        payload: &[u8],
    ) -> Result<(u64, Vec<Pending>), QueueError> {
        let seq = self.next_seq;
        let record = encode_record(seq, points, created_unix_ns, payload);
        let size = record.len() as u64;
        if size > self.max_bytes || payload.len() > u32::MAX as usize {
            return Err(QueueError::TooLarge {
                size,
                max: self.max_bytes,
            });
        }
        if self
            .segments
            .back()
            .is_some_and(|s| s.bytes + size > self.segment_bytes)
        {
            self.active = None;
        }
        let dropped = self.make_room(size);
        let io_err = |dir: &Path, source| QueueError::Io {
            dir: dir.to_owned(),
            source,
        };
        let file = match self.active.take() {
            Some(f) => f,
            None => {
                let f = OpenOptions::new()
                    .create_new(true)
                    .append(true)
                    .open(self.dir.join(segment_name(seq)))
                    .map_err(|e| io_err(&self.dir, e))?;
                self.segments.push_back(Segment { id: seq, bytes: 0 });
                f
            }
        };
        let Some(seg) = self.segments.back_mut() else {
            return Err(io_err(&self.dir, io::Error::other("no active segment")));
        };
        let mut file = file;
        if let Err(e) = file.write_all(&record) {
            // Cut a partial write off, and start the next record in a fresh segment either
            // way: a reopen would skip a torn tail, but no later record should sit after it.
            let _ = file.set_len(seg.bytes);
            if seg.bytes == 0 {
                let id = seg.id;
                self.segments.pop_back();
                let _ = fs::remove_file(self.dir.join(segment_name(id)));
            }
            return Err(io_err(&self.dir, e));
        }
        self.active = Some(file);
        let offset = seg.bytes;
        seg.bytes += size;
        self.pending.push_back(Pending {
            seq,
            points,
            created_unix_ns,
            segment: seg.id,
            offset,
            len: payload.len() as u32,
        });
        self.next_seq = seq + 1;
        self.unsynced = true;
        self.sync_if_due();
        Ok((seq, dropped))
    }

    /// Drops the oldest segments until `incoming` more bytes fit; returns the unacknowledged
    /// records they held.
    fn make_room(&mut self, incoming: u64) -> Vec<Pending> {
        let mut dropped = Vec::new();
        while self.bytes() + incoming > self.max_bytes {
            let Some(seg) = self.segments.pop_front() else {
                break;
            };
            if self.segments.is_empty() {
                self.active = None; // the active segment itself goes
            }
            while self.pending.front().is_some_and(|p| p.segment == seg.id) {
                dropped.extend(self.pending.pop_front());
            }
            let _ = fs::remove_file(self.dir.join(segment_name(seg.id)));
        }
        if let Some(last) = dropped.last() {
            self.acked = self.acked.max(last.seq + 1);
            self.write_ack();
        }
        dropped
    }

    /// The payload of a pending record, read back and checked. `Ok(None)` when it no
    /// longer checks out (counted as corrupt and removed from the queue).
    pub fn read(&mut self, seq: u64) -> Result<Option<Vec<u8>>, QueueError> {
        let Some(p) = self.pending.iter().find(|p| p.seq == seq).copied() else {
            return Ok(None);
        };
        let path = self.dir.join(segment_name(p.segment));
        let mut buf = vec![0u8; HEADER + p.len as usize];
        let read = File::open(&path)
            .and_then(|mut f| {
                f.seek(SeekFrom::Start(p.offset))?;
                f.read_exact(&mut buf)
            })
            .map(|()| decode_at(&buf, 0));
        match read {
            Ok(Some((s, _, _, range))) if s == seq => Ok(Some(buf[range].to_vec())),
            // Not there or not whole any more: skip it rather than retry it forever.
            Err(e)
                if e.kind() != io::ErrorKind::NotFound
                    && e.kind() != io::ErrorKind::UnexpectedEof =>
            {
                Err(QueueError::Io {
                    dir: self.dir.clone(),
                    source: e,
                })
            }
            _ => {
                self.corrupt += 1;
                self.pending.retain(|q| q.seq != seq);
                tracing::warn!(seq, "an export queue record no longer checks out: skipped");
                Ok(None)
            }
        }
    }

    /// Marks every record up to `seq` as delivered (or given up on). Segments left with
    /// nothing to send are deleted; the position is persisted so a restart does not send
    /// them again.
    pub fn ack(&mut self, seq: u64) {
        if seq < self.acked {
            return;
        }
        self.acked = seq + 1;
        while self.pending.front().is_some_and(|p| p.seq <= seq) {
            self.pending.pop_front();
        }
        let first_needed = self.pending.front().map(|p| p.segment);
        while let Some(seg) = self.segments.front() {
            if first_needed.is_some_and(|id| seg.id >= id) {
                break;
            }
            let id = seg.id;
            if self.segments.len() == 1 {
                self.active = None;
            }
            self.segments.pop_front();
            let _ = fs::remove_file(self.dir.join(segment_name(id)));
        }
        self.write_ack();
    }

    fn write_ack(&mut self) {
        let tmp = self.dir.join("ack.tmp");
        let mut body = self.acked.to_le_bytes().to_vec();
        body.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        let done = fs::write(&tmp, &body).and_then(|()| fs::rename(&tmp, self.dir.join(ACK_FILE)));
        if let Err(e) = done {
            // The records are sent; a restart would send them again (at least once).
            tracing::warn!(dir = %self.dir.display(), "cannot record the export queue position: {e}");
        }
        self.unsynced = true;
    }

    /// fsyncs the active segment and the directory if anything changed and the last sync
    /// was a second or more ago.
    pub fn sync_if_due(&mut self) {
        if !self.unsynced || self.last_sync.is_some_and(|t| t.elapsed() < SYNC_EVERY) {
            return;
        }
        self.sync();
    }

    /// fsyncs now (at shutdown).
    pub fn sync(&mut self) {
        if let Some(f) = &self.active {
            let _ = f.sync_data();
        }
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        self.unsynced = false;
        self.last_sync = Some(Instant::now());
    }
}

impl Drop for DiskQueue {
    fn drop(&mut self) {
        if self.unsynced {
            self.sync();
        }
    }
}

fn read_ack(path: &Path) -> Option<u64> {
    let b = fs::read(path).ok()?;
    (b.len() == 12 && crc32fast::hash(&b[..8]) == u32_at(&b, 8)).then(|| u64_at(&b, 0))
}

#[cfg(test)]
mod tests;
