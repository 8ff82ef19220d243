use std::collections::VecDeque;

use proptest::prelude::*;

use super::*;

/// A directory of its own under the system temp dir, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new() -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "sonde-queue-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&p);
        Self(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn payload(seq_hint: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seq_hint as usize * 31 + i) as u8)
        .collect()
}

fn newest_segment(dir: &Path) -> PathBuf {
    let mut segs: Vec<PathBuf> = fs::read_dir(dir)
        .expect("read queue dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segs.sort();
    segs.pop().expect("a segment")
}

#[test]
fn records_survive_reopen_in_order_and_acks_stick() {
    let d = Dir::new();
    let mut q = DiskQueue::open(&d.0, 1 << 20).expect("open");
    for i in 0..5 {
        let (seq, dropped) = q
            .append(10 + i, 1000 + i, &payload(i, 100))
            .expect("append");
        assert_eq!(seq, i);
        assert!(dropped.is_empty());
    }
    q.ack(1);
    drop(q);
    let mut q = DiskQueue::open(&d.0, 1 << 20).expect("reopen");
    let seqs: Vec<(u64, u64, u64)> = q
        .pending()
        .map(|p| (p.seq, p.points, p.created_unix_ns))
        .collect();
    assert_eq!(seqs, vec![(2, 12, 1002), (3, 13, 1003), (4, 14, 1004)]);
    assert_eq!(q.read(3).expect("read"), Some(payload(3, 100)));
    assert_eq!(q.corrupt_records(), 0);
    let (seq, _) = q.append(1, 1, b"x").expect("append after reopen");
    assert_eq!(seq, 5, "sequence numbers continue");
    q.ack(5);
    assert_eq!(q.pending().len(), 0);
    assert_eq!(q.bytes(), 0, "nothing left on disk once all is sent");
    let segs = fs::read_dir(&d.0)
        .expect("dir")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "seg"))
        .count();
    assert_eq!(segs, 0);
}

#[test]
fn a_torn_last_record_is_skipped_and_counted() {
    let d = Dir::new();
    let mut q = DiskQueue::open(&d.0, 1 << 20).expect("open");
    for i in 0..3 {
        q.append(1, 0, &payload(i, 500)).expect("append");
    }
    drop(q);
    let seg = newest_segment(&d.0);
    let len = fs::metadata(&seg).expect("stat").len();
    OpenOptions::new()
        .write(true)
        .open(&seg)
        .and_then(|f| f.set_len(len - 7))
        .expect("tear the last record");
    let mut q = DiskQueue::open(&d.0, 1 << 20).expect("reopen");
    assert_eq!(q.pending().map(|p| p.seq).collect::<Vec<_>>(), vec![0, 1]);
    assert_eq!(q.corrupt_records(), 1);
    let (seq, _) = q.append(1, 0, b"after").expect("append after a torn tail");
    assert_eq!(
        seq, 2,
        "the torn record's number is reused: it was never accepted"
    );
    drop(q);
    let q = DiskQueue::open(&d.0, 1 << 20).expect("reopen again");
    assert_eq!(
        q.pending().map(|p| p.seq).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
}

#[test]
fn a_corrupt_record_in_the_middle_is_skipped_and_the_rest_read() {
    let d = Dir::new();
    let mut q = DiskQueue::open(&d.0, 1 << 20).expect("open");
    for i in 0..3 {
        q.append(1, 0, &payload(i, 200)).expect("append");
    }
    drop(q);
    let seg = newest_segment(&d.0);
    let mut bytes = fs::read(&seg).expect("read");
    let second = HEADER + 200 + HEADER + 50; // inside record 1's payload
    bytes[second] ^= 0xff;
    fs::write(&seg, &bytes).expect("write");
    let mut q = DiskQueue::open(&d.0, 1 << 20).expect("reopen");
    assert_eq!(q.pending().map(|p| p.seq).collect::<Vec<_>>(), vec![0, 2]);
    assert_eq!(q.corrupt_records(), 1);
    assert_eq!(q.read(2).expect("read"), Some(payload(2, 200)));

    // Garbage where a segment should be is skipped too, never a crash.
    fs::write(d.0.join(segment_name(999)), b"not a segment at all").expect("write");
    drop(q);
    let q = DiskQueue::open(&d.0, 1 << 20).expect("reopen with garbage");
    assert_eq!(q.pending().len(), 2);
    assert_eq!(q.corrupt_records(), 2);
}

#[test]
fn at_the_bound_the_oldest_go_first_and_are_returned() {
    let d = Dir::new();
    let max = 1 << 20;
    let mut q = DiskQueue::open(&d.0, max).expect("open");
    let mut dropped = Vec::new();
    for i in 0..200u64 {
        let (_, gone) = q.append(i, 0, &payload(i, 20_000)).expect("append");
        dropped.extend(gone.into_iter().map(|p| p.seq));
        assert!(q.bytes() <= max, "{} > {max}", q.bytes());
    }
    assert!(!dropped.is_empty());
    let expect: Vec<u64> = (0..dropped.len() as u64).collect();
    assert_eq!(dropped, expect, "oldest first, none skipped");
    let first_left = q.pending().next().expect("some left").seq;
    assert_eq!(first_left, dropped.len() as u64);
    assert!(
        q.bytes() > max / 2,
        "a bound of {max} keeps more than half of it: {}",
        q.bytes()
    );
    drop(q);
    let q = DiskQueue::open(&d.0, max).expect("reopen");
    assert_eq!(q.pending().next().map(|p| p.seq), Some(first_left));
    // A smaller bound at the next start applies at once.
    drop(q);
    let q = DiskQueue::open(&d.0, max / 4).expect("reopen smaller");
    assert!(q.bytes() <= max / 4);
    assert_eq!(q.pending().last().map(|p| p.seq), Some(199));
}

#[test]
fn one_agent_per_directory() {
    let d = Dir::new();
    let _q = DiskQueue::open(&d.0, 1 << 20).expect("open");
    assert!(matches!(
        DiskQueue::open(&d.0, 1 << 20),
        Err(QueueError::Busy(_))
    ));
}

#[test]
fn a_batch_larger_than_the_bound_is_refused() {
    let d = Dir::new();
    let mut q = DiskQueue::open(&d.0, 1 << 20).expect("open");
    assert!(matches!(
        q.append(1, 0, &vec![0u8; 2 << 20]),
        Err(QueueError::TooLarge { .. })
    ));
    assert_eq!(q.append(1, 0, b"small").expect("still usable").0, 0);
}

#[derive(Debug, Clone)]
enum Op {
    Append {
        points: u64,
        len: usize,
    },
    /// Acknowledge the oldest pending record.
    Ack,
    /// SIGKILL: the process goes, the page cache stays; then a restart.
    CrashAndReopen,
    /// A crash mid-write: the newest record loses its last `cut` bytes (1 ..= its size).
    TornTail {
        cut: usize,
    },
    /// A bit flips in the newest record's payload.
    Flip {
        at: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u64..1000, 0usize..40_000).prop_map(|(points, len)| Op::Append { points, len }),
        3 => Just(Op::Ack),
        1 => Just(Op::CrashAndReopen),
        1 => (1usize..usize::MAX).prop_map(|cut| Op::TornTail { cut }),
        1 => (0usize..usize::MAX).prop_map(|at| Op::Flip { at }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// The queue against a model that is a plain list: what comes back, in what order,
    /// what is dropped for room (only ever the oldest) and what is counted as corrupt.
    #[test]
    fn queue_matches_a_list_model(ops in proptest::collection::vec(op(), 1..60)) {
        let d = Dir::new();
        let max = 1u64 << 20;
        let mut q = DiskQueue::open(&d.0, max).expect("open");
        // (seq, points, payload) of every record not yet acknowledged or dropped.
        let mut model: VecDeque<(u64, u64, Vec<u8>)> = VecDeque::new();
        let mut corrupt = 0;
        let mut next = 0u64;
        for op in ops {
            match op {
                Op::Append { points, len } => {
                    let data = payload(next, len);
                    let (seq, dropped) = q.append(points, next, &data).expect("append");
                    prop_assert_eq!(seq, next);
                    for gone in dropped {
                        let oldest = model.pop_front().expect("only queued records drop");
                        prop_assert_eq!(gone.seq, oldest.0, "drops take the oldest");
                        prop_assert_eq!(gone.points, oldest.1);
                    }
                    prop_assert!(q.bytes() <= max);
                    model.push_back((seq, points, data));
                    next += 1;
                }
                Op::Ack => {
                    if let Some((seq, _, _)) = model.pop_front() {
                        q.ack(seq);
                    }
                }
                Op::CrashAndReopen => {
                    drop(q);
                    q = DiskQueue::open(&d.0, max).expect("reopen");
                    corrupt = 0;
                }
                Op::TornTail { cut } | Op::Flip { at: cut } if model.is_empty() => {
                    let _ = cut;
                }
                Op::TornTail { cut } => {
                    drop(q);
                    let (seq, _, data) = model.pop_back().expect("non-empty");
                    let seg = newest_segment(&d.0);
                    let len = fs::metadata(&seg).expect("stat").len();
                    let size = HEADER + data.len();
                    let cut = 1 + cut % size;
                    OpenOptions::new().write(true).open(&seg)
                        .and_then(|f| f.set_len(len - cut as u64)).expect("tear");
                    q = DiskQueue::open(&d.0, max).expect("reopen torn");
                    // A cut of the whole record leaves a clean end at the record before:
                    // nothing torn is left to count.
                    corrupt = u64::from(cut < size);
                    // The torn record was never accepted: its number is free again.
                    next = seq;
                }
                Op::Flip { at } => {
                    drop(q);
                    let (seq, _, data) = model.pop_back().expect("non-empty");
                    let seg = newest_segment(&d.0);
                    let mut bytes = fs::read(&seg).expect("read");
                    let start = bytes.len() - HEADER - data.len();
                    let at = start + 4 + at % (HEADER - 4 + data.len());
                    bytes[at] ^= 0x10;
                    fs::write(&seg, &bytes).expect("write");
                    q = DiskQueue::open(&d.0, max).expect("reopen flipped");
                    corrupt = 1;
                    next = seq;
                }
            }
            let got: Vec<(u64, u64)> = q.pending().map(|p| (p.seq, p.points)).collect();
            let want: Vec<(u64, u64)> = model.iter().map(|(s, p, _)| (*s, *p)).collect();
            prop_assert_eq!(got, want);
            prop_assert_eq!(q.corrupt_records(), corrupt);
            if let Some((seq, _, data)) = model.front() {
                let (seq, data) = (*seq, data.clone());
                prop_assert_eq!(q.read(seq).expect("read"), Some(data));
            }
        }
    }
}
