//! An HTTP/1.1 response body's framing, decoded: buffered bytes in, body
//! data and the end out (by length, chunked or until close). A leaf of
//! `h1`: the head parser picks the framing, the body runs it.

use std::io;

use bytes::{Bytes, BytesMut};

/// Longest chunk-size line or trailer section accepted.
const MAX_LINE: usize = 8 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// Where a body is in its framing.
pub(crate) enum State {
    /// This many bytes are still to come.
    Length(u64),
    /// Waiting for a chunk-size line.
    ChunkSize,
    /// Inside a chunk.
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    /// Trailer fields (dropped) up to the empty line.
    Trailers,
    /// Until the upstream closes the connection.
    UntilClose,
    Done,
}

/// What the decoder made of the buffered bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    /// Body bytes.
    Data(Bytes),
    /// The body is complete.
    End,
}

impl State {
    /// Decodes what is buffered: body bytes or the end, `None` when more
    /// bytes are needed first (or, until close, at the end of the stream).
    pub(crate) fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>, &'static str> {
        loop {
            match *self {
                State::Done | State::Length(0) => return Ok(Some(Decoded::End)),
                State::Length(rem) | State::ChunkData(rem) if !buf.is_empty() => {
                    let n = rem.min(buf.len() as u64);
                    let data = buf.split_to(n as usize).freeze();
                    *self = match *self {
                        State::ChunkData(_) if n == rem => State::ChunkEnd,
                        State::ChunkData(_) => State::ChunkData(rem - n),
                        _ => State::Length(rem - n),
                    };
                    return Ok(Some(Decoded::Data(data)));
                }
                State::UntilClose if !buf.is_empty() => {
                    return Ok(Some(Decoded::Data(buf.split().freeze())));
                }
                State::ChunkSize => match line_end(buf) {
                    Some(end) => {
                        let size = chunk_size(&buf[..end]).map_err(|_| "bad chunk size")?;
                        let _ = buf.split_to(end + 2);
                        *self = match size {
                            0 => State::Trailers,
                            n => State::ChunkData(n),
                        };
                    }
                    None if buf.len() > MAX_LINE => return Err("chunk-size line too long"),
                    None => return Ok(None),
                },
                State::ChunkEnd if buf.len() >= 2 => {
                    if &buf[..2] != b"\r\n" {
                        return Err("chunk not followed by CRLF");
                    }
                    let _ = buf.split_to(2);
                    *self = State::ChunkSize;
                }
                State::Trailers => match line_end(buf) {
                    Some(0) => {
                        let _ = buf.split_to(2);
                        *self = State::Done;
                        return Ok(Some(Decoded::End));
                    }
                    Some(end) => {
                        let _ = buf.split_to(end + 2);
                    }
                    None if buf.len() > MAX_LINE => return Err("trailer too long"),
                    None => return Ok(None),
                },
                _ => return Ok(None),
            }
        }
    }
}

/// Where `\r\n` starts in `buf`.
fn line_end(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

fn chunk_size(line: &[u8]) -> io::Result<u64> {
    let digits = line
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if digits.is_empty() || digits.len() > 15 {
        return Err(invalid("bad chunk size"));
    }
    let text = std::str::from_utf8(digits).map_err(|_| invalid("bad chunk size"))?;
    u64::from_str_radix(text, 16).map_err(|_| invalid("bad chunk size"))
}

/// An `InvalidData` error saying what was wrong.
pub(crate) fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_chunk_sizes() {
        assert_eq!(chunk_size(b"1a").unwrap(), 26);
        assert_eq!(chunk_size(b"0;ext=1").unwrap(), 0);
        assert_eq!(chunk_size(b"FF ").unwrap(), 255);
        assert!(chunk_size(b"").is_err());
        assert!(chunk_size(b"xyz").is_err());
        assert!(chunk_size(b"1000000000000000").is_err());
    }

    #[test]
    fn finds_line_ends() {
        assert_eq!(line_end(b"a\r\nb"), Some(1));
        assert_eq!(line_end(b"\r\n"), Some(0));
        assert_eq!(line_end(b"a\rb"), None);
    }
}
