//! The kernel's BTF cut down to what one probe object's CO-RE relocations can reach, made
//! without holding the kernel's BTF in memory, and a loader that never parses the whole of
//! it.
//!
//! aya 0.14's `EbpfLoader::new()` reads and parses /sys/kernel/btf/vmlinux (5.5 MB on 6.18,
//! ~15 MiB once parsed) before anything can be set, and `.btf()` only replaces it afterwards;
//! that parse was Sonde's peak RSS. Here the loader is made on a short-lived thread that
//! sees an empty /sys/kernel/btf (a mount namespace of its own, private, so nothing
//! propagates back to the host), where aya finds no kernel BTF, and is then given a BTF
//! holding only the types the object's relocations can match: every kernel type with the
//! name and kind of a relocation's root type, in full, and everything they embed (members,
//! array elements, typedef chains), while a struct or union reached through a pointer is
//! kept as a shell (name and size, no members). That is what aya's matching reads: field
//! accesses walk members by name through embedded types, a pointer-typed field matches any
//! pointer, and type compatibility stops at a struct's kind. Type ids are renumbered, so an
//! object asking for the kernel's own type id (`bpf_core_type_id_kernel`) is not cut down.
//!
//! The kernel's BTF is read in 64 KiB chunks: one pass over its strings to find the root
//! names, passes over its types until every type reached is read (a type may refer to one
//! before it), and one pass over the strings for the names kept.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use aya::{Btf, EbpfLoader, Endianness};

use super::support::BTF_PATH;

const MAGIC: u16 = 0xeb9f;
const HEADER_LEN: usize = 24;
const TYPE_HEADER_LEN: usize = 12;
const CHUNK: usize = 64 * 1024;
/// Passes over the kernel's types before giving up: each pass reads every type a previous
/// pass reached that sits before it, so this bounds the depth of backward references.
const MAX_PASSES: usize = 64;

// BTF kinds (include/uapi/linux/btf.h).
const INT: u32 = 1;
const PTR: u32 = 2;
const ARRAY: u32 = 3;
const STRUCT: u32 = 4;
const UNION: u32 = 5;
const ENUM: u32 = 6;
const FWD: u32 = 7;
const TYPEDEF: u32 = 8;
const VOLATILE: u32 = 9;
const CONST: u32 = 10;
const RESTRICT: u32 = 11;
const FUNC: u32 = 12;
const FUNC_PROTO: u32 = 13;
const VAR: u32 = 14;
const DATASEC: u32 = 15;
const FLOAT: u32 = 16;
const DECL_TAG: u32 = 17;
const TYPE_TAG: u32 = 18;
const ENUM64: u32 = 19;

// CO-RE relocation kinds (enum bpf_core_relo_kind).
const RELO_TYPE_ID_LOCAL: u32 = 6;
const RELO_TYPE_ID_TARGET: u32 = 7;
const RELO_ENUMVAL_VALUE: u32 = 11;

#[derive(Debug, thiserror::Error)]
pub enum MinimalBtfError {
    #[error("cannot read the kernel's BTF ({BTF_PATH}): {0}")]
    Read(#[from] io::Error),
    #[error("the kernel's BTF is malformed: {0}")]
    Kernel(&'static str),
    #[error("the probe object's BTF is malformed: {0}")]
    Object(&'static str),
    #[error("the probe object needs the kernel's whole BTF: {0}")]
    NeedsAll(String),
}

/// The kernel's BTF cut down for `object` (an ELF with .BTF and .BTF.ext), parsed; `None`
/// when the object has no CO-RE relocations.
pub fn for_object(object: &[u8]) -> Result<Option<Btf>, MinimalBtfError> {
    let file = File::open(BTF_PATH)?;
    let Some(raw) = minimal(&file, object)? else {
        return Ok(None);
    };
    Btf::parse(&raw, Endianness::default())
        .map(Some)
        .map_err(|_| MinimalBtfError::Kernel("the cut-down copy does not parse"))
}

/// A loader that has not read the kernel's BTF, or `None` where this process may not make
/// a mount namespace (no CAP_SYS_ADMIN, or a seccomp or LSM policy says no).
pub fn loader_without_kernel_btf<'a>() -> Option<EbpfLoader<'a>> {
    std::thread::scope(|s| {
        s.spawn(|| {
            hide_kernel_btf()
                .map_err(|e| tracing::debug!("cannot hide the kernel's BTF from aya: {e}"))
                .ok()?;
            Some(EbpfLoader::new())
        })
        .join()
        .ok()
        .flatten()
    })
}

/// Gives the calling thread a mount namespace of its own where /sys/kernel/btf is an empty
/// read-only tmpfs. Mount namespaces are per thread (unsharing one unshares the thread's
/// root and working directory too); the namespace dies with the thread.
fn hide_kernel_btf() -> rustix::io::Result<()> {
    use rustix::mount::{mount, mount_change, MountFlags, MountPropagationFlags};
    // SAFETY: CLONE_NEWNS (which implies CLONE_FS) only changes this thread's view of the
    // file system; it shares no memory, descriptors or signal handlers differently.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }?;
    // The new namespace's mounts start in the host's peer groups: without this, the tmpfs
    // below would appear on the host too.
    mount_change(
        "/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )?;
    mount(
        "none",
        "/sys/kernel/btf",
        "tmpfs",
        MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        c"size=4k",
    )
}

/// A source of bytes read at offsets: the kernel's BTF file, or an object in memory.
trait ReadAt {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    fn len(&self) -> io::Result<u64>;
}

impl ReadAt for File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.read_exact_at(buf, offset)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
}

impl ReadAt for [u8] {
    fn len(&self) -> io::Result<u64> {
        Ok(<[u8]>::len(self) as u64)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let bytes = start
            .checked_add(buf.len())
            .and_then(|end| self.get(start..end))
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(bytes);
        Ok(())
    }
}

/// Reads one section front to back through a buffer of at most [`CHUNK`] bytes.
struct Cursor<'a, S: ReadAt + ?Sized> {
    src: &'a S,
    /// Where the next read starts, and where the section ends.
    next: u64,
    end: u64,
    buf: Vec<u8>,
    pos: usize,
    /// Offset within the section of `buf[pos]`.
    offset: u64,
}

impl<'a, S: ReadAt + ?Sized> Cursor<'a, S> {
    fn new(src: &'a S, start: u64, len: u64) -> Self {
        Self {
            src,
            next: start,
            end: start + len,
            buf: Vec::new(),
            pos: 0,
            offset: 0,
        }
    }

    /// Makes at least `n` (<= CHUNK) unread bytes available; false at the section's end.
    fn fill(&mut self, n: usize) -> io::Result<bool> {
        if self.buf.len() - self.pos >= n {
            return Ok(true);
        }
        self.buf.drain(..self.pos);
        self.pos = 0;
        let have = self.buf.len();
        let want = (CHUNK - have).min(usize::try_from(self.end - self.next).unwrap_or(CHUNK));
        if want > 0 {
            self.buf.resize(have + want, 0);
            self.src.read_at(&mut self.buf[have..], self.next)?;
            self.next += want as u64;
        }
        Ok(self.buf.len() >= n)
    }

    fn at_end(&mut self) -> io::Result<bool> {
        Ok(!self.fill(1)?)
    }

    fn take(&mut self, n: usize) -> io::Result<&[u8]> {
        if !self.fill(n)? {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let bytes = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        self.offset += n as u64;
        Ok(bytes)
    }

    fn skip(&mut self, n: usize) -> io::Result<()> {
        self.take(n).map(|_| ())
    }

    /// The next NUL-terminated string (without the NUL) and its offset in the section.
    fn string(&mut self, out: &mut Vec<u8>) -> io::Result<Option<u32>> {
        out.clear();
        let start = self.offset;
        loop {
            if !self.fill(1)? {
                return match out.is_empty() {
                    true => Ok(None),
                    false => Err(io::ErrorKind::UnexpectedEof.into()),
                };
            }
            let rest = &self.buf[self.pos..];
            let (piece, nul) = match rest.iter().position(|&b| b == 0) {
                Some(i) => (&rest[..i], true),
                None => (rest, false),
            };
            out.extend_from_slice(piece);
            let used = piece.len() + usize::from(nul);
            self.pos += used;
            self.offset += used as u64;
            if nul {
                return u32::try_from(start)
                    .map(Some)
                    .map_err(|_| io::ErrorKind::InvalidData.into());
            }
        }
    }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_ne_bytes(b)
}

/// Where a BTF blob's two sections are, relative to the blob's start.
#[derive(Debug, Clone, Copy)]
struct Layout {
    types: (u64, u64),
    strings: (u64, u64),
}

fn layout<S: ReadAt + ?Sized>(src: &S) -> io::Result<Option<Layout>> {
    let len = src.len()?;
    if len < HEADER_LEN as u64 {
        return Ok(None);
    }
    let mut h = [0u8; HEADER_LEN];
    src.read_at(&mut h, 0)?;
    if u16::from_ne_bytes([h[0], h[1]]) != MAGIC || h[2] != 1 {
        return Ok(None);
    }
    let hdr_len = u64::from(u32_at(&h, 4));
    let [type_off, type_len, str_off, str_len] =
        [8, 12, 16, 20].map(|at| u64::from(u32_at(&h, at)));
    let start = hdr_len;
    let fits = |off: u64, n: u64| hdr_len + off + n <= len;
    if hdr_len < HEADER_LEN as u64 || !fits(type_off, type_len) || !fits(str_off, str_len) {
        return Ok(None);
    }
    Ok(Some(Layout {
        types: (start + type_off, type_len),
        strings: (start + str_off, str_len),
    }))
}

/// A type record's fixed part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    name_off: u32,
    info: u32,
    /// The size (int, struct, union, enum, float, datasec) or a type id (the rest).
    size_or_type: u32,
}

impl Header {
    fn read(bytes: &[u8]) -> Self {
        Self {
            name_off: u32_at(bytes, 0),
            info: u32_at(bytes, 4),
            size_or_type: u32_at(bytes, 8),
        }
    }

    fn kind(self) -> u32 {
        (self.info >> 24) & 0x1f
    }

    fn vlen(self) -> usize {
        (self.info & 0xffff) as usize
    }

    /// Bytes that follow the fixed part; `None` for a kind this reader does not know.
    fn extra_len(self) -> Option<usize> {
        let vlen = self.vlen();
        Some(match self.kind() {
            PTR | FWD | TYPEDEF | VOLATILE | CONST | RESTRICT | FUNC | FLOAT | TYPE_TAG => 0,
            INT | VAR | DECL_TAG => 4,
            ARRAY => 12,
            STRUCT | UNION | DATASEC | ENUM64 => vlen * 12,
            ENUM | FUNC_PROTO => vlen * 8,
            _ => return None,
        })
    }
}

/// Reads the next type record: its header and the bytes after it (into `extra`).
fn next_type<S: ReadAt + ?Sized>(types: &mut Cursor<'_, S>) -> io::Result<Option<(Header, usize)>> {
    if types.at_end()? {
        return Ok(None);
    }
    let header = Header::read(types.take(TYPE_HEADER_LEN)?);
    let extra = header
        .extra_len()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unknown BTF kind"))?;
    Ok(Some((header, extra)))
}

/// How much of a type is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Depth {
    /// A struct or union reached through a pointer: its name and size, no members.
    Shell,
    Full,
}

/// The types a type refers to, and how much of each is needed.
fn refs(header: Header, extra: &[u8], depth: Depth) -> Vec<(u32, Depth)> {
    let every = |stride: usize, at: usize| {
        extra
            .chunks_exact(stride)
            .map(move |m| u32_at(m, at))
            .collect::<Vec<_>>()
    };
    let out: Vec<(u32, Depth)> = match header.kind() {
        PTR => vec![(header.size_or_type, Depth::Shell)],
        TYPEDEF | VOLATILE | CONST | RESTRICT | TYPE_TAG | FUNC | VAR | DECL_TAG => {
            vec![(header.size_or_type, depth)]
        }
        ARRAY => vec![(u32_at(extra, 0), depth), (u32_at(extra, 4), Depth::Full)],
        STRUCT | UNION if depth == Depth::Full => {
            every(12, 4).into_iter().map(|t| (t, Depth::Full)).collect()
        }
        FUNC_PROTO => std::iter::once(header.size_or_type)
            .chain(every(8, 4))
            .map(|t| (t, Depth::Shell))
            .collect(),
        DATASEC => every(12, 0).into_iter().map(|t| (t, depth)).collect(),
        _ => Vec::new(),
    };
    out.into_iter().filter(|(id, _)| *id != 0).collect()
}

/// The string offsets a kept type names (itself, its members, values, parameters).
fn names(header: Header, extra: &[u8], depth: Depth) -> Vec<u32> {
    let every = |stride: usize| extra.chunks_exact(stride).map(|m| u32_at(m, 0));
    let mut out = vec![header.name_off];
    match header.kind() {
        STRUCT | UNION if depth == Depth::Full => out.extend(every(12)),
        ENUM | FUNC_PROTO => out.extend(every(8)),
        ENUM64 => out.extend(every(12)),
        _ => {}
    }
    out
}

/// Enum and enum64 match each other as relocation candidates (aya lets a sanitised enum64
/// match either); keeping both is harmless, aya filters by kind itself.
fn kind_class(kind: u32) -> u32 {
    if kind == ENUM64 {
        ENUM
    } else {
        kind
    }
}

fn flavorless(name: &[u8]) -> &[u8] {
    name.windows(3)
        .position(|w| w == b"___")
        .map_or(name, |i| &name[..i])
}

/// (kind class, flavorless name) of types a relocation is relative to.
type Roots = HashSet<(u32, Vec<u8>)>;

/// The roots of the object's CO-RE relocations, matched by name and kind against the
/// kernel's types; `None` when it has no relocations.
fn relocation_roots(object: &[u8]) -> Result<Option<Roots>, MinimalBtfError> {
    use object::{Object, ObjectSection};
    let bad = MinimalBtfError::Object;
    let elf = object::File::parse(object).map_err(|_| bad("not an ELF object"))?;
    let section = |name| {
        elf.section_by_name(name)
            .map(|s| s.data().map_err(|_| bad("unreadable section")))
            .transpose()
    };
    let (Some(btf), Some(ext)) = (section(".BTF")?, section(".BTF.ext")?) else {
        return Ok(None);
    };
    // .BTF.ext: magic, version, flags, hdr_len, func/line info (off, len), CO-RE (off, len).
    if ext.len() < 32 || u16::from_ne_bytes([ext[0], ext[1]]) != MAGIC {
        return Ok(None);
    }
    let hdr_len = u32_at(ext, 4) as usize;
    if hdr_len < 32 {
        return Ok(None);
    }
    let (off, len) = (u32_at(ext, 24) as usize, u32_at(ext, 28) as usize);
    let relos = ext
        .get(hdr_len + off..hdr_len + off + len)
        .ok_or(bad("CO-RE relocations out of bounds"))?;
    if relos.len() < 4 {
        return Ok(None);
    }
    let rec = u32_at(relos, 0) as usize;
    if rec < 16 {
        return Err(bad("CO-RE relocation records too short"));
    }
    // Per section: name offset, count, then `count` records of (insn_off, type_id,
    // access_str_off, kind).
    let mut wanted = BTreeSet::new();
    let mut at = 4;
    while at + 8 <= relos.len() {
        let count = u32_at(relos, at + 4) as usize;
        at += 8;
        for _ in 0..count {
            let r = relos
                .get(at..at + rec)
                .ok_or(bad("CO-RE relocation out of bounds"))?;
            let (type_id, kind) = (u32_at(r, 4), u32_at(r, 12));
            match kind {
                RELO_TYPE_ID_LOCAL => {}
                RELO_TYPE_ID_TARGET => {
                    return Err(MinimalBtfError::NeedsAll(
                        "it asks for a kernel type id, which a cut-down BTF renumbers".into(),
                    ))
                }
                k if k > RELO_ENUMVAL_VALUE => {
                    return Err(MinimalBtfError::NeedsAll(format!(
                        "it has CO-RE relocations of kind {k}"
                    )))
                }
                _ => {
                    wanted.insert(type_id);
                }
            }
            at += rec;
        }
    }
    if wanted.is_empty() {
        return Ok(None);
    }
    // The local types' kinds and names.
    let src: &[u8] = btf;
    let lay = layout(src)?.ok_or(bad("no BTF header"))?;
    let mut types = Cursor::new(src, lay.types.0, lay.types.1);
    let mut found = Vec::new();
    let mut id = 0u32;
    while let Some((h, extra)) = next_type(&mut types)? {
        id += 1;
        types.skip(extra)?;
        if wanted.contains(&id) {
            found.push((h.kind(), h.name_off));
        }
    }
    if found.len() != wanted.len() {
        return Err(bad("a relocation names a type that is not there"));
    }
    let strings = &btf[lay.strings.0 as usize..(lay.strings.0 + lay.strings.1) as usize];
    let mut roots = HashSet::new();
    for (kind, name_off) in found {
        let name = strings
            .get(name_off as usize..)
            .and_then(|s| s.split(|&b| b == 0).next())
            .ok_or(bad("a type name is out of bounds"))?;
        if name.is_empty() {
            return Err(MinimalBtfError::NeedsAll(
                "a relocation is relative to an anonymous type".into(),
            ));
        }
        roots.insert((kind_class(kind), flavorless(name).to_vec()));
    }
    Ok(Some(roots))
}

/// One type kept from the kernel's BTF.
struct Kept {
    depth: Depth,
    header: Header,
    extra: Vec<u8>,
}

/// The cut-down BTF of the kernel's `btf` for `object`, as raw BTF bytes.
fn minimal<S: ReadAt + ?Sized>(btf: &S, object: &[u8]) -> Result<Option<Vec<u8>>, MinimalBtfError> {
    let Some(roots) = relocation_roots(object)? else {
        return Ok(None);
    };
    let lay = layout(btf)?.ok_or(MinimalBtfError::Kernel("no BTF header"))?;

    // Strings whose flavorless form names a root, by offset.
    let root_names: HashSet<&[u8]> = roots.iter().map(|(_, n)| n.as_slice()).collect();
    let mut named: HashMap<u32, Vec<u8>> = HashMap::new();
    let mut strings = Cursor::new(btf, lay.strings.0, lay.strings.1);
    let mut s = Vec::new();
    while let Some(off) = strings.string(&mut s)? {
        let base = flavorless(&s);
        if root_names.contains(base) {
            named.insert(off, base.to_vec());
        }
    }

    let mut kept: BTreeMap<u32, Kept> = BTreeMap::new();
    let mut pending: BTreeMap<u32, Depth> = BTreeMap::new();
    let mut passes = 0;
    loop {
        passes += 1;
        if passes > MAX_PASSES {
            return Err(MinimalBtfError::Kernel("type references nest too deep"));
        }
        let first = passes == 1;
        let mut types = Cursor::new(btf, lay.types.0, lay.types.1);
        let mut id = 0u32;
        while let Some((h, extra_len)) = next_type(&mut types)? {
            id += 1;
            let root = first
                && named
                    .get(&h.name_off)
                    .is_some_and(|name| roots.contains(&(kind_class(h.kind()), name.clone())));
            let depth = match (pending.remove(&id), root) {
                (_, true) => Depth::Full,
                (Some(d), false) => d,
                (None, false) => {
                    types.skip(extra_len)?;
                    if !first && pending.range(id..).next().is_none() {
                        break;
                    }
                    continue;
                }
            };
            let extra = types.take(extra_len)?.to_vec();
            for (r, d) in refs(h, &extra, depth) {
                if kept.get(&r).is_some_and(|k| k.depth >= d) {
                    continue;
                }
                let p = pending.entry(r).or_insert(d);
                *p = (*p).max(d);
            }
            kept.insert(
                id,
                Kept {
                    depth,
                    header: h,
                    extra,
                },
            );
        }
        if pending.range(id + 1..).next().is_some() {
            return Err(MinimalBtfError::Kernel(
                "a type refers to a type that is not there",
            ));
        }
        if pending.is_empty() {
            break;
        }
    }
    tracing::debug!(
        types = kept.len(),
        passes,
        "cut the kernel's BTF down for a probe object"
    );
    Ok(Some(write(btf, lay, &kept)?))
}

/// Writes the kept types as one BTF blob: ids renumbered in order, strings copied.
fn write<S: ReadAt + ?Sized>(
    btf: &S,
    lay: Layout,
    kept: &BTreeMap<u32, Kept>,
) -> Result<Vec<u8>, MinimalBtfError> {
    let new_id: HashMap<u32, u32> = kept
        .keys()
        .zip(1u32..)
        .map(|(&old, new)| (old, new))
        .collect();
    let id = |old: u32| -> Result<u32, MinimalBtfError> {
        match old {
            0 => Ok(0),
            _ => new_id.get(&old).copied().ok_or(MinimalBtfError::Kernel(
                "a kept type refers to one not kept",
            )),
        }
    };

    // The kept names' strings, copied once each; a name may start inside another string.
    let wanted: BTreeSet<u32> = kept
        .values()
        .flat_map(|k| names(k.header, &k.extra, k.depth))
        .collect();
    let mut table = vec![0u8];
    let mut new_off: HashMap<u32, u32> = HashMap::from([(0, 0)]);
    let mut strings = Cursor::new(btf, lay.strings.0, lay.strings.1);
    let mut s = Vec::new();
    while let Some(off) = strings.string(&mut s)? {
        let end = off + s.len() as u32;
        for &want in wanted.range(off..=end) {
            let text = &s[(want - off) as usize..];
            if text.is_empty() {
                new_off.insert(want, 0);
                continue;
            }
            new_off.insert(want, table.len() as u32);
            table.extend_from_slice(text);
            table.push(0);
        }
    }
    let name = |old: u32| {
        new_off
            .get(&old)
            .copied()
            .ok_or(MinimalBtfError::Kernel("a name is out of bounds"))
    };

    let mut types = Vec::new();
    let push = |out: &mut Vec<u8>, v: u32| out.extend_from_slice(&v.to_ne_bytes());
    for k in kept.values() {
        let h = k.header;
        let kind = h.kind();
        let shell = k.depth == Depth::Shell && matches!(kind, STRUCT | UNION);
        push(&mut types, name(h.name_off)?);
        push(&mut types, if shell { kind << 24 } else { h.info });
        let sized = matches!(
            kind,
            INT | STRUCT | UNION | ENUM | ENUM64 | FLOAT | DATASEC | ARRAY | FWD
        );
        push(
            &mut types,
            if sized {
                h.size_or_type
            } else {
                id(h.size_or_type)?
            },
        );
        if shell {
            continue;
        }
        let e = &k.extra;
        match kind {
            ARRAY => {
                push(&mut types, id(u32_at(e, 0))?);
                push(&mut types, id(u32_at(e, 4))?);
                push(&mut types, u32_at(e, 8));
            }
            STRUCT | UNION => {
                for m in e.chunks_exact(12) {
                    push(&mut types, name(u32_at(m, 0))?);
                    push(&mut types, id(u32_at(m, 4))?);
                    push(&mut types, u32_at(m, 8));
                }
            }
            ENUM => {
                for v in e.chunks_exact(8) {
                    push(&mut types, name(u32_at(v, 0))?);
                    push(&mut types, u32_at(v, 4));
                }
            }
            ENUM64 => {
                for v in e.chunks_exact(12) {
                    push(&mut types, name(u32_at(v, 0))?);
                    push(&mut types, u32_at(v, 4));
                    push(&mut types, u32_at(v, 8));
                }
            }
            FUNC_PROTO => {
                for p in e.chunks_exact(8) {
                    push(&mut types, name(u32_at(p, 0))?);
                    push(&mut types, id(u32_at(p, 4))?);
                }
            }
            DATASEC => {
                for v in e.chunks_exact(12) {
                    push(&mut types, id(u32_at(v, 0))?);
                    push(&mut types, u32_at(v, 4));
                    push(&mut types, u32_at(v, 8));
                }
            }
            // int encoding, var linkage, decl tag component: no ids, no names.
            _ => types.extend_from_slice(e),
        }
    }

    let mut out = Vec::with_capacity(HEADER_LEN + types.len() + table.len());
    out.extend_from_slice(&MAGIC.to_ne_bytes());
    out.extend_from_slice(&[1, 0]);
    for v in [
        HEADER_LEN as u32,
        0,
        types.len() as u32,
        types.len() as u32,
        table.len() as u32,
    ] {
        push(&mut out, v);
    }
    out.extend_from_slice(&types);
    out.extend_from_slice(&table);
    Ok(out)
}

/// A raw tracepoint's argument as a program reads it (a raw tracepoint passes the
/// kernel's arguments as they are, in order, and CO-RE relocates none of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawArg {
    /// A pointer to the struct of this name.
    Ptr(&'static str),
    /// An integer (or enum) of this many bytes.
    Int(u32),
}

/// A raw tracepoint's argument as the kernel's BTF declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelArg {
    /// A pointer to a struct or union of this name (empty: to anything else).
    Ptr(String),
    /// An integer or enum of this many bytes.
    Int(u32),
    /// Anything else (a float, an array, a function pointer).
    Other,
}

impl std::fmt::Display for KernelArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KernelArg::Ptr(name) if name.is_empty() => f.write_str("a pointer"),
            KernelArg::Ptr(name) => write!(f, "struct {name} *"),
            KernelArg::Int(n) => write!(f, "a {n}-byte integer"),
            KernelArg::Other => f.write_str("a non-scalar"),
        }
    }
}

impl std::fmt::Display for RawArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RawArg::Ptr(name) => write!(f, "struct {name} *"),
            RawArg::Int(n) => write!(f, "a {n}-byte integer"),
        }
    }
}

/// Whether the kernel passes `tracepoint` the arguments its program reads (`want`, the
/// leading ones): the reason it does not, for the probe's report.
pub fn check_raw_args(tracepoint: &str, want: &[RawArg], have: &[KernelArg]) -> Result<(), String> {
    if have.len() < want.len() {
        return Err(format!(
            "this kernel's raw tracepoint {tracepoint} passes {} arguments, the program \
             reads {}: a Sonde built for this kernel's tracepoint is needed",
            have.len(),
            want.len()
        ));
    }
    for (i, (w, h)) in want.iter().zip(have).enumerate() {
        let same = match (w, h) {
            (RawArg::Ptr(a), KernelArg::Ptr(b)) => a == b,
            (RawArg::Int(a), KernelArg::Int(b)) => a == b,
            _ => false,
        };
        if !same {
            return Err(format!(
                "this kernel's raw tracepoint {tracepoint} passes {h} as argument {}, the \
                 program reads {w} there: a Sonde built for this kernel's tracepoint is needed",
                i + 1
            ));
        }
    }
    Ok(())
}

/// The arguments each raw tracepoint in `names` passes its programs on this kernel, from
/// its BTF's `btf_trace_<name>` typedef (a pointer to a function whose first parameter is
/// the tracepoint's `void *` data, then the arguments): `None` for a tracepoint with no
/// such typedef. Read in chunks as the cut-down BTF is: one pass over the strings for the
/// typedefs' names, a pass over the types per step along each typedef's chain (typedef,
/// pointer, prototype, each parameter's qualifiers and pointee), one over the strings for
/// the struct names.
pub fn raw_tracepoint_args(names: &[&str]) -> Result<Vec<Option<Vec<KernelArg>>>, MinimalBtfError> {
    let file = File::open(BTF_PATH)?;
    raw_args_in(&file, names)
}

fn raw_args_in<S: ReadAt + ?Sized>(
    btf: &S,
    names: &[&str],
) -> Result<Vec<Option<Vec<KernelArg>>>, MinimalBtfError> {
    let lay = layout(btf)?.ok_or(MinimalBtfError::Kernel("no BTF header"))?;
    let wanted: HashMap<Vec<u8>, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (format!("btf_trace_{n}").into_bytes(), i))
        .collect();
    let mut name_offs: HashMap<u32, usize> = HashMap::new();
    let mut strings = Cursor::new(btf, lay.strings.0, lay.strings.1);
    let mut s = Vec::new();
    while let Some(off) = strings.string(&mut s)? {
        if let Some(&i) = wanted.get(&s) {
            name_offs.insert(off, i);
        }
    }
    // The typedefs' ids, then every type reached from them, a pass per step.
    let mut typedefs: Vec<Option<u32>> = vec![None; names.len()];
    let mut types: HashMap<u32, (Header, Vec<u8>)> = HashMap::new();
    let mut cur = Cursor::new(btf, lay.types.0, lay.types.1);
    let mut id = 0u32;
    while let Some((h, extra)) = next_type(&mut cur)? {
        id += 1;
        let bytes = cur.take(extra)?.to_vec();
        if h.kind() == TYPEDEF {
            if let Some(&i) = name_offs.get(&h.name_off) {
                typedefs[i] = Some(id);
                types.insert(id, (h, bytes));
            }
        }
    }
    let mut out: Vec<Option<Vec<KernelArg>>> = Vec::new();
    for _ in 0..MAX_PASSES {
        let mut missing = BTreeSet::new();
        out = typedefs
            .iter()
            .map(|t| t.and_then(|t| resolve_args(t, &types, &mut missing)))
            .collect();
        if missing.is_empty() {
            break;
        }
        let mut cur = Cursor::new(btf, lay.types.0, lay.types.1);
        let mut id = 0u32;
        while let Some((h, extra)) = next_type(&mut cur)? {
            id += 1;
            let bytes = cur.take(extra)?;
            if missing.contains(&id) {
                types.insert(id, (h, bytes.to_vec()));
            }
        }
        if missing.iter().any(|m| !types.contains_key(m)) {
            return Err(MinimalBtfError::Kernel(
                "a type refers to an id past the last type",
            ));
        }
    }
    // Struct names: their string offsets were kept as "#<offset>" placeholders.
    let offs: BTreeSet<u32> = out
        .iter()
        .flatten()
        .flatten()
        .filter_map(|a| match a {
            KernelArg::Ptr(p) => p.strip_prefix('#').and_then(|o| o.parse().ok()),
            _ => None,
        })
        .collect();
    let mut resolved: HashMap<u32, String> = HashMap::new();
    let mut strings = Cursor::new(btf, lay.strings.0, lay.strings.1);
    while let Some(off) = strings.string(&mut s)? {
        if offs.contains(&off) {
            resolved.insert(off, String::from_utf8_lossy(&s).into_owned());
        }
    }
    for arg in out.iter_mut().flatten().flatten() {
        if let KernelArg::Ptr(p) = arg {
            if let Some(o) = p.strip_prefix('#').and_then(|o| o.parse::<u32>().ok()) {
                *p = resolved.get(&o).cloned().unwrap_or_default();
            }
        }
    }
    Ok(out)
}

/// The arguments of the typedef `id` from the types read so far; `None` with the ids still
/// to read added to `missing` (or when the typedef is not a pointer to a prototype). A
/// struct pointee's name is left as "#<string offset>" for the caller to resolve.
fn resolve_args(
    id: u32,
    types: &HashMap<u32, (Header, Vec<u8>)>,
    missing: &mut BTreeSet<u32>,
) -> Option<Vec<KernelArg>> {
    let mut get = |t: u32| {
        let got = types.get(&t);
        if got.is_none() {
            missing.insert(t);
        }
        got
    };
    let (typedef, _) = get(id)?;
    let (ptr, _) = get(typedef.size_or_type)?;
    if ptr.kind() != PTR {
        return None;
    }
    let (proto, params) = get(ptr.size_or_type)?;
    if proto.kind() != FUNC_PROTO {
        return None;
    }
    let param_types: Vec<u32> = params
        .chunks_exact(8)
        .map(|p| u32_at(p, 4))
        .skip(1)
        .collect();
    let mut args = Vec::with_capacity(param_types.len());
    let mut complete = true;
    for t in param_types {
        match resolve_arg(t, types, missing) {
            Some(a) => args.push(a),
            None => complete = false,
        }
    }
    complete.then_some(args)
}

/// One parameter's type through typedefs and qualifiers; `None` while a type on the way
/// is still to read.
fn resolve_arg(
    mut t: u32,
    types: &HashMap<u32, (Header, Vec<u8>)>,
    missing: &mut BTreeSet<u32>,
) -> Option<KernelArg> {
    let mut pointer = false;
    for _ in 0..MAX_PASSES {
        let Some((h, _)) = types.get(&t) else {
            missing.insert(t);
            return None;
        };
        match (h.kind(), pointer) {
            (TYPEDEF | CONST | VOLATILE | RESTRICT | TYPE_TAG, _) => t = h.size_or_type,
            (PTR, false) => {
                pointer = true;
                t = h.size_or_type;
            }
            (INT | ENUM | ENUM64, false) => return Some(KernelArg::Int(h.size_or_type)),
            (STRUCT | UNION | FWD, true) => {
                return Some(KernelArg::Ptr(format!("#{}", h.name_off)));
            }
            (_, true) => return Some(KernelArg::Ptr(String::new())),
            _ => return Some(KernelArg::Other),
        }
        if t == 0 {
            // void: a `void *` parameter.
            return Some(if pointer {
                KernelArg::Ptr(String::new())
            } else {
                KernelArg::Other
            });
        }
    }
    Some(KernelArg::Other)
}

#[cfg(test)]
mod raw_arg_tests {
    use super::{check_raw_args, KernelArg, RawArg};

    #[test]
    fn matching_leading_arguments_pass_and_a_difference_is_named() {
        let kernel = [
            KernelArg::Ptr("sock".into()),
            KernelArg::Int(4),
            KernelArg::Int(4),
        ];
        let sock = RawArg::Ptr("sock");
        assert_eq!(
            check_raw_args("t", &[sock, RawArg::Int(4)], &kernel),
            Ok(())
        );
        assert_eq!(check_raw_args("t", &[], &kernel), Ok(()));
        let e = check_raw_args("t", &[RawArg::Int(4)], &kernel).expect_err("refused");
        assert!(
            e.contains("struct sock *") && e.contains("argument 1"),
            "{e}"
        );
        let e = check_raw_args("t", &[sock, RawArg::Ptr("sk_buff")], &kernel).expect_err("refused");
        assert!(
            e.contains("argument 2") && e.contains("struct sk_buff *"),
            "{e}"
        );
        let e = check_raw_args(
            "t",
            &[sock, RawArg::Int(4), RawArg::Int(4), RawArg::Int(4)],
            &kernel,
        )
        .expect_err("refused");
        assert!(e.contains("passes 3 arguments"), "{e}");
        let other = [KernelArg::Ptr(String::new())];
        assert!(check_raw_args("t", &[sock], &other).is_err());
    }
}
