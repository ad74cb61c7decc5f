//! plinth's stream envelope, around both kinds of payload (a btrfs send
//! stream, or plinth's portable tree records):
//!
//! ```text
//! "plinth-stream\n"  u16 version (1)  u32 n  header: n bytes of JSON
//! zstd frame of the payload, cut into chunks: (u32 len, len bytes)*, u32 0
//! sha256 of every byte above (32 bytes)
//! ```
//!
//! All integers are little-endian. The header says what the payload is
//! (`format`), which snapshot it carries and on which parent it is
//! incremental, and holds the container's record as the sender's fleet
//! wrote it. The chunking lets a reader find the trailing digest without
//! reading past the compressed payload, and tell a stream cut short from
//! a corrupted one. A reader checks the digest only after the last chunk;
//! receivers therefore stage everything and make it visible only after
//! [`PayloadReader::finish`] succeeded.

use std::io::{self, BufReader, Read, Write};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::StreamError;

const MAGIC: &[u8; 14] = b"plinth-stream\n";
const VERSION: u16 = 1;
/// The largest chunk a writer makes; readers accept up to 4 times that.
const CHUNK: usize = 256 * 1024;
const MAX_HEADER: u32 = 1 << 20;
/// zstd level: 3 is zstd's default and compresses a few hundred MB/s.
const LEVEL: i32 = 3;

/// What a stream's payload is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// A btrfs send stream (version 1), as `BTRFS_IOC_SEND` wrote it.
    Btrfs,
    /// plinth's portable tree records (`tree.rs`).
    Tree,
}

/// The header of a stream: what it carries.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StreamHeader {
    /// The payload's format.
    pub format: Format,
    /// The snapshot it carries; `None` for a temporary snapshot that the
    /// receiver does not keep.
    pub snapshot: Option<String>,
    /// The identity of that snapshot: its btrfs UUID, or the digest of its
    /// manifest (portable format).
    pub snapshot_id: String,
    /// The snapshot the stream is incremental on.
    pub parent: Option<String>,
    /// That snapshot's identity.
    pub parent_id: Option<String>,
    /// The container's record, opaque to the store.
    pub record: serde_json::Value,
}

/// Counts and hashes what goes through it.
struct Hashing<T> {
    inner: T,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> Hashing<W> {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.inner.write_all(bytes)?;
        self.hasher.update(bytes);
        self.count += bytes.len() as u64;
        Ok(())
    }
}

/// The chunking layer under the zstd encoder.
struct ChunkWriter<W: Write> {
    out: Hashing<W>,
    buf: Vec<u8>,
}

impl<W: Write> ChunkWriter<W> {
    fn emit(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let len = (self.buf.len() as u32).to_le_bytes();
        self.out.put(&len)?;
        let buf = std::mem::take(&mut self.buf);
        self.out.put(&buf)?;
        self.buf = buf;
        self.buf.clear();
        Ok(())
    }
}

impl<W: Write> Write for ChunkWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.emit()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.inner.flush()
    }
}

/// Writes a stream: the header at once, then the payload through
/// [`Write`], then [`PayloadWriter::finish`] for the trailer.
pub struct PayloadWriter<W: Write> {
    enc: zstd::stream::write::Encoder<'static, ChunkWriter<W>>,
    raw: u64,
}

impl<W: Write> PayloadWriter<W> {
    /// Writes the envelope's start and `header` to `out`.
    pub fn new(out: W, header: &StreamHeader) -> io::Result<PayloadWriter<W>> {
        let mut out = Hashing {
            inner: out,
            hasher: Sha256::new(),
            count: 0,
        };
        let json = serde_json::to_vec(header).expect("a header serializes");
        out.put(MAGIC)?;
        out.put(&VERSION.to_le_bytes())?;
        out.put(&(json.len() as u32).to_le_bytes())?;
        out.put(&json)?;
        let chunks = ChunkWriter {
            out,
            buf: Vec::with_capacity(CHUNK),
        };
        let mut enc = zstd::stream::write::Encoder::new(chunks, LEVEL)?;
        enc.include_checksum(true)?;
        Ok(PayloadWriter { enc, raw: 0 })
    }

    /// Ends the payload and writes the trailer; returns the output and the
    /// stream's size in bytes.
    pub fn finish(self) -> io::Result<(W, u64)> {
        let mut chunks = self.enc.finish()?;
        chunks.emit()?;
        chunks.out.put(&0u32.to_le_bytes())?;
        let mut out = chunks.out;
        let digest = out.hasher.clone().finalize();
        out.inner.write_all(&digest)?;
        out.inner.flush()?;
        Ok((out.inner, out.count + 32))
    }

    /// Payload bytes written so far (before compression).
    pub fn payload_bytes(&self) -> u64 {
        self.raw
    }
}

impl<W: Write> Write for PayloadWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.enc.write(data)?;
        self.raw += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.enc.flush()
    }
}

/// The chunking layer under the zstd decoder: ends at the terminating
/// chunk, remembers whether the input ended early.
struct ChunkReader<R: Read> {
    input: Hashing<R>,
    left: usize,
    done: bool,
    cut: bool,
    bad: Option<String>,
}

impl<R: Read> ChunkReader<R> {
    /// Reads exactly `buf.len()` bytes, hashing them; an early end marks
    /// the stream as cut.
    fn take_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        let mut got = 0;
        while got < buf.len() {
            match self.input.inner.read(&mut buf[got..]) {
                Ok(0) => {
                    self.cut = true;
                    self.input.count += got as u64;
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the stream is cut short",
                    ));
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.input.hasher.update(&buf[..]);
        self.input.count += got as u64;
        Ok(())
    }
}

impl<R: Read> Read for ChunkReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            let mut len = [0u8; 4];
            self.take_exact(&mut len)?;
            let len = u32::from_le_bytes(len) as usize;
            if len == 0 {
                self.done = true;
                return Ok(0);
            }
            if len > 4 * CHUNK {
                let why = format!("a chunk of {len} bytes at byte {}", self.input.count);
                self.bad = Some(why.clone());
                return Err(io::Error::new(io::ErrorKind::InvalidData, why));
            }
            self.left = len;
        }
        let n = self.left.min(buf.len());
        self.take_exact(&mut buf[..n])?;
        self.left -= n;
        Ok(n)
    }
}

/// Reads a stream: [`PayloadReader::new`] reads and checks the header,
/// [`Read`] gives the payload, [`PayloadReader::finish`] checks the
/// trailing digest.
pub struct PayloadReader<R: Read> {
    header: StreamHeader,
    dec: zstd::stream::read::Decoder<'static, BufReader<ChunkReader<R>>>,
}

impl<R: Read> PayloadReader<R> {
    /// Reads the envelope's start and the header from `input`.
    pub fn new(input: R) -> Result<PayloadReader<R>, StreamError> {
        let mut chunks = ChunkReader {
            input: Hashing {
                inner: input,
                hasher: Sha256::new(),
                count: 0,
            },
            left: 0,
            done: false,
            cut: false,
            bad: None,
        };
        let mut magic = [0u8; 14];
        chunks
            .take_exact(&mut magic)
            .map_err(|e| head_err(&chunks, e))?;
        if &magic != MAGIC {
            return Err(StreamError::NotAStream);
        }
        let mut v = [0u8; 2];
        chunks
            .take_exact(&mut v)
            .map_err(|e| head_err(&chunks, e))?;
        let version = u16::from_le_bytes(v);
        if version != VERSION {
            return Err(StreamError::Version(version));
        }
        let mut n = [0u8; 4];
        chunks
            .take_exact(&mut n)
            .map_err(|e| head_err(&chunks, e))?;
        let n = u32::from_le_bytes(n);
        if n > MAX_HEADER {
            return Err(StreamError::Corrupt(format!("a header of {n} bytes")));
        }
        let mut json = vec![0u8; n as usize];
        chunks
            .take_exact(&mut json)
            .map_err(|e| head_err(&chunks, e))?;
        let header: StreamHeader = serde_json::from_slice(&json)
            .map_err(|e| StreamError::Corrupt(format!("the header does not parse: {e}")))?;
        let dec = zstd::stream::read::Decoder::new(chunks).map_err(StreamError::Io)?;
        Ok(PayloadReader {
            header,
            dec: dec.single_frame(),
        })
    }

    /// What the stream carries.
    pub fn header(&self) -> &StreamHeader {
        &self.header
    }

    fn chunks(&self) -> &ChunkReader<R> {
        self.dec.get_ref().get_ref()
    }

    /// Bytes of the stream read so far.
    pub fn position(&self) -> u64 {
        self.chunks().input.count
    }

    /// Turns an error met while reading the payload into what it means
    /// for the stream: cut short, corrupted, or a read error of the input.
    pub fn explain(&self, e: io::Error) -> StreamError {
        let c = self.chunks();
        if c.cut {
            StreamError::Truncated(c.input.count)
        } else if let Some(why) = &c.bad {
            StreamError::Corrupt(why.clone())
        } else if e.kind() == io::ErrorKind::UnexpectedEof {
            // The payload's own framing ended before its last record.
            StreamError::Corrupt("the payload ends in the middle of a record".into())
        } else if matches!(
            e.kind(),
            io::ErrorKind::InvalidData | io::ErrorKind::Other | io::ErrorKind::InvalidInput
        ) {
            StreamError::Corrupt(e.to_string())
        } else {
            StreamError::Io(e)
        }
    }

    /// Reads exactly `buf.len()` payload bytes.
    pub fn fill(&mut self, buf: &mut [u8]) -> Result<(), StreamError> {
        match self.dec.read_exact(buf) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.explain(e)),
        }
    }

    /// After the last record: the payload must end there, and the trailing
    /// digest must match every byte read.
    pub fn finish(mut self) -> Result<StreamHeader, StreamError> {
        let mut extra = [0u8; 1];
        match self.dec.read(&mut extra) {
            Ok(0) => {}
            Ok(_) => {
                return Err(StreamError::Corrupt(
                    "data after the payload's last record".into(),
                ))
            }
            Err(e) => return Err(self.explain(e)),
        }
        let header = self.header;
        let mut chunks = self.dec.finish().into_inner();
        // The zstd frame may end before the terminating chunk was read.
        let mut rest = [0u8; 64];
        match chunks.read(&mut rest) {
            Ok(0) if chunks.done => {}
            Ok(0) => return Err(StreamError::Truncated(chunks.input.count)),
            Ok(_) => {
                return Err(StreamError::Corrupt(
                    "data after the compressed payload".into(),
                ))
            }
            Err(_) if chunks.cut => return Err(StreamError::Truncated(chunks.input.count)),
            Err(e) => return Err(StreamError::Corrupt(e.to_string())),
        }
        let expected = chunks.input.hasher.clone().finalize();
        let mut digest = [0u8; 32];
        let mut got = 0;
        while got < 32 {
            match chunks.input.inner.read(&mut digest[got..]) {
                Ok(0) => return Err(StreamError::Truncated(chunks.input.count + got as u64)),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(StreamError::Io(e)),
            }
        }
        if digest[..] != expected[..] {
            return Err(StreamError::Digest);
        }
        match chunks.input.inner.read(&mut rest) {
            Ok(0) => Ok(header),
            Ok(_) => Err(StreamError::Corrupt(
                "data after the trailing digest".into(),
            )),
            Err(e) => Err(StreamError::Io(e)),
        }
    }
}

impl<R: Read> Read for PayloadReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.dec.read(buf)
    }
}

fn head_err<R: Read>(c: &ChunkReader<R>, e: io::Error) -> StreamError {
    if c.cut {
        if c.input.count == 0 {
            StreamError::Empty
        } else {
            StreamError::Truncated(c.input.count)
        }
    } else {
        StreamError::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> StreamHeader {
        StreamHeader {
            format: Format::Tree,
            snapshot: Some("s1".into()),
            snapshot_id: "abc".into(),
            parent: None,
            parent_id: None,
            record: serde_json::json!({"name": "x"}),
        }
    }

    fn make(payload: &[u8]) -> Vec<u8> {
        let mut w = PayloadWriter::new(Vec::new(), &header()).unwrap();
        w.write_all(payload).unwrap();
        let (out, n) = w.finish().unwrap();
        assert_eq!(n as usize, out.len());
        out
    }

    fn read_all(stream: &[u8]) -> Result<Vec<u8>, StreamError> {
        let mut r = PayloadReader::new(stream)?;
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => return Err(r.explain(e)),
            }
        }
        let h = r.finish()?;
        assert_eq!(h, header());
        Ok(out)
    }

    #[test]
    fn round_trip() {
        let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let s = make(&payload);
        assert_eq!(read_all(&s).unwrap(), payload);
        assert_eq!(read_all(&make(b"")).unwrap(), b"");
    }

    #[test]
    fn every_cut_is_refused() {
        let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 13) as u8).collect();
        let s = make(&payload);
        for cut in [
            0,
            5,
            20,
            s.len() / 2,
            s.len() - 33,
            s.len() - 32,
            s.len() - 1,
        ] {
            let e = read_all(&s[..cut]).unwrap_err();
            assert!(
                matches!(e, StreamError::Truncated(_) | StreamError::Empty),
                "cut at {cut}: {e}"
            );
        }
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let payload: Vec<u8> = (0..5_000u32).map(|i| (i % 13) as u8).collect();
        let s = make(&payload);
        for i in (0..s.len()).step_by(7).chain([s.len() - 1]) {
            let mut bad = s.clone();
            bad[i] ^= 0x10;
            assert!(read_all(&bad).is_err(), "a flip at byte {i} went through");
        }
        let mut longer = s.clone();
        longer.push(0);
        assert!(read_all(&longer).is_err());
    }
}
