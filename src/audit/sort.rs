//! An external sort of `(key, payload)` records in bounded memory: records gather in a buffer of
//! at most `run_bytes`; a full buffer is sorted and written to a temporary run file; at the end the
//! runs are merged (k-way, at most [`FAN_IN`] files at once, in several passes if there are more)
//! into one sorted stream. When everything fits in one buffer, nothing touches the disk.
//!
//! Records sort by key bytes (UTF-8 order, which is code point order), then payload bytes. Run
//! files live in a private temporary directory, removed when the sorted stream is dropped.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Runs merged at once: open files and their read buffers ([`READ_BUF`] each).
pub const FAN_IN: usize = 64;
/// Read buffer per run file during a merge.
const READ_BUF: usize = 64 * 1024;
/// What a buffered record costs besides its bytes (the struct and two heap allocations).
const RECORD_OVERHEAD: usize = std::mem::size_of::<Record>() + 16;

/// Append `part` to a record's payload as `[u32 length, little-endian][bytes]` (how payloads
/// carry strings: references, pairings).
pub(crate) fn push_part(p: &mut Vec<u8>, part: &str) {
    p.extend_from_slice(&(part.len() as u32).to_le_bytes());
    p.extend_from_slice(part.as_bytes());
}

/// The first `N` parts of a payload written by [`push_part`], and the bytes after them.
pub(crate) fn parts<const N: usize>(p: &[u8]) -> io::Result<([&str; N], &[u8])> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "bad sorted record");
    let mut at = 0;
    let mut out = [""; N];
    for slot in &mut out {
        let len = p
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            .ok_or_else(bad)? as usize;
        let bytes = p.get(at + 4..at + 4 + len).ok_or_else(bad)?;
        *slot = std::str::from_utf8(bytes).map_err(|_| bad())?;
        at += 4 + len;
    }
    Ok((out, &p[at..]))
}

/// One record: what it sorts by, and what it carries.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Record {
    pub key: String,
    pub payload: Vec<u8>,
}

/// Gathers records, spilling sorted runs to disk.
pub struct Sorter {
    run_bytes: usize,
    parent: PathBuf,
    dir: Option<tempfile::TempDir>,
    buf: Vec<Record>,
    buf_bytes: usize,
    runs: Vec<PathBuf>,
    /// Run files made so far (their names: merge passes remove some).
    made: usize,
    records: u64,
}

impl Sorter {
    /// A sorter holding at most about `run_bytes` in memory, spilling under `parent` (a private
    /// directory is made there on the first spill).
    pub fn new(parent: &Path, run_bytes: usize) -> Sorter {
        Sorter {
            run_bytes: run_bytes.max(1),
            parent: parent.to_path_buf(),
            dir: None,
            buf: Vec::new(),
            buf_bytes: 0,
            runs: Vec::new(),
            made: 0,
            records: 0,
        }
    }

    pub fn push(&mut self, key: &str, payload: &[u8]) -> io::Result<()> {
        self.buf_bytes += key.len() + payload.len() + RECORD_OVERHEAD;
        self.buf.push(Record {
            key: key.to_string(),
            payload: payload.to_vec(),
        });
        self.records += 1;
        if self.buf_bytes >= self.run_bytes {
            self.spill()?;
        }
        Ok(())
    }

    /// Records pushed so far.
    pub fn len(&self) -> u64 {
        self.records
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Run files written so far.
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    fn new_run(&mut self) -> io::Result<(PathBuf, BufWriter<File>)> {
        let dir = match &self.dir {
            Some(d) => d,
            None => self.dir.insert(
                tempfile::Builder::new()
                    .prefix("pfm-audit-")
                    .tempdir_in(&self.parent)?,
            ),
        };
        let path = dir.path().join(format!("run-{}", self.made));
        self.made += 1;
        let file = File::create(&path)?;
        Ok((path, BufWriter::with_capacity(READ_BUF, file)))
    }

    fn spill(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.buf.sort_unstable();
        let (path, mut out) = self.new_run()?;
        for r in self.buf.drain(..) {
            write_record(&mut out, &r)?;
        }
        out.flush()?;
        self.runs.push(path);
        self.buf_bytes = 0;
        // Give the buffer's memory back: the next run may never come.
        self.buf = Vec::new();
        Ok(())
    }

    /// Everything pushed, in order.
    pub fn finish(mut self) -> io::Result<Sorted> {
        if self.runs.is_empty() {
            self.buf.sort_unstable();
            return Ok(Sorted {
                inner: Inner::Memory(std::mem::take(&mut self.buf).into_iter()),
                _dir: None,
            });
        }
        self.spill()?;
        // Merge passes until at most FAN_IN runs remain.
        while self.runs.len() > FAN_IN {
            let group: Vec<PathBuf> = self.runs.drain(..FAN_IN).collect();
            let mut merged = Merge::open(&group)?;
            let (path, mut out) = self.new_run()?;
            while let Some(r) = merged.next_record()? {
                write_record(&mut out, &r)?;
            }
            out.flush()?;
            drop(merged);
            for p in group {
                std::fs::remove_file(p)?;
            }
            self.runs.push(path);
        }
        Ok(Sorted {
            inner: Inner::Merge(Merge::open(&self.runs)?),
            _dir: self.dir.take(),
        })
    }
}

/// The sorted records, from memory or merged from run files.
pub struct Sorted {
    inner: Inner,
    /// Removed (with its run files) when the stream is dropped.
    _dir: Option<tempfile::TempDir>,
}

enum Inner {
    Memory(std::vec::IntoIter<Record>),
    Merge(Merge),
}

/// A sorted stream read alongside keys asked in ascending order (a merge of two sorted sides in
/// bounded memory): whether it holds each one.
pub struct Members {
    inner: std::iter::Peekable<Sorted>,
}

impl Members {
    pub fn new(sorted: Sorted) -> Members {
        Members {
            inner: sorted.peekable(),
        }
    }

    /// Whether the stream holds `key`. Keys must be asked in ascending order.
    pub fn contains(&mut self, key: &str) -> io::Result<bool> {
        loop {
            match self.inner.peek() {
                Some(Ok(r)) if r.key.as_str() < key => {
                    self.inner.next();
                }
                Some(Ok(r)) => return Ok(r.key == key),
                Some(Err(_)) => {
                    if let Some(Err(e)) = self.inner.next() {
                        return Err(e);
                    }
                }
                None => return Ok(false),
            }
        }
    }
}

impl Iterator for Sorted {
    type Item = io::Result<Record>;

    fn next(&mut self) -> Option<io::Result<Record>> {
        match &mut self.inner {
            Inner::Memory(it) => it.next().map(Ok),
            Inner::Merge(m) => m.next_record().transpose(),
        }
    }
}

/// A k-way merge of sorted run files: the smallest head record of each run in a heap.
struct Merge {
    readers: Vec<BufReader<File>>,
    heap: BinaryHeap<Reverse<(Record, usize)>>,
}

impl Merge {
    fn open(paths: &[PathBuf]) -> io::Result<Merge> {
        let mut readers = Vec::with_capacity(paths.len());
        let mut heap = BinaryHeap::with_capacity(paths.len());
        for (i, p) in paths.iter().enumerate() {
            let mut r = BufReader::with_capacity(READ_BUF, File::open(p)?);
            if let Some(rec) = read_record(&mut r)? {
                heap.push(Reverse((rec, i)));
            }
            readers.push(r);
        }
        Ok(Merge { readers, heap })
    }

    fn next_record(&mut self) -> io::Result<Option<Record>> {
        let Some(Reverse((rec, i))) = self.heap.pop() else {
            return Ok(None);
        };
        if let Some(next) = read_record(&mut self.readers[i])? {
            self.heap.push(Reverse((next, i)));
        }
        Ok(Some(rec))
    }
}

/// `[u32 key length][key][u32 payload length][payload]`, little-endian.
fn write_record(out: &mut impl Write, r: &Record) -> io::Result<()> {
    for part in [r.key.as_bytes(), &r.payload] {
        let len = u32::try_from(part.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "record over 4 GiB"))?;
        out.write_all(&len.to_le_bytes())?;
        out.write_all(part)?;
    }
    Ok(())
}

/// The next record of a run, `None` at its end.
fn read_record(r: &mut impl Read) -> io::Result<Option<Record>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut key = vec![0; u32::from_le_bytes(len) as usize];
    r.read_exact(&mut key)?;
    r.read_exact(&mut len)?;
    let mut payload = vec![0; u32::from_le_bytes(len) as usize];
    r.read_exact(&mut payload)?;
    let key = String::from_utf8(key).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok(Some(Record { key, payload }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(n: u64) -> Vec<(String, Vec<u8>)> {
        // A scrambled order with duplicate keys, unicode and empty payloads.
        (0..n)
            .map(|i| {
                let k = (i * 7919) % n;
                (
                    format!("name-{}-é{}", k % 97, k),
                    (k % 3).to_le_bytes()[..(k % 3) as usize].to_vec(),
                )
            })
            .collect()
    }

    fn sorted(run_bytes: usize, input: &[(String, Vec<u8>)]) -> (Vec<Record>, usize) {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Sorter::new(dir.path(), run_bytes);
        for (k, p) in input {
            s.push(k, p).unwrap();
        }
        let runs = s.runs();
        let out: Vec<Record> = s.finish().unwrap().map(Result::unwrap).collect();
        // Run files are gone once the stream is dropped.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        (out, runs)
    }

    #[test]
    fn many_runs_and_merge_passes_give_the_in_memory_order() {
        let input = records(5_000);
        let (memory, runs) = sorted(usize::MAX, &input);
        assert_eq!(runs, 0);
        let mut want: Vec<Record> = input
            .iter()
            .map(|(k, p)| Record {
                key: k.clone(),
                payload: p.clone(),
            })
            .collect();
        want.sort();
        assert_eq!(memory, want);
        // ~60 records a run: ~80 runs, so two merge passes.
        let (spilled, runs) = sorted(5_000, &input);
        assert!(runs > FAN_IN, "{runs} runs");
        assert_eq!(spilled, want);
    }

    #[test]
    fn empty_input() {
        assert!(sorted(10, &[]).0.is_empty());
    }
}
