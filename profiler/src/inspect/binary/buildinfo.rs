//! The Go release a binary was built with, from its `.go.buildinfo` section (what
//! `go version FILE` prints). Present in stripped binaries too.

use super::BinaryError;

const MAGIC: &[u8] = b"\xff Go buildinf:";
/// Flag bit: version and module strings are stored inline (Go 1.18+), not behind pointers.
const FLAG_INLINE: u8 = 0x2;
/// Inline strings start after the 32-byte header.
const INLINE_START: usize = 32;

/// Reads the version string. `read_ptr` resolves the pointer form used before Go 1.18 (it
/// returns the Go string at an address), so older binaries can at least be named.
pub fn version(
    section: &[u8],
    read_string: impl Fn(u64, usize) -> Option<String>,
) -> Result<String, BinaryError> {
    let bad = |why: &str| BinaryError::BuildInfo(why.to_string());
    if section.len() < INLINE_START || !section.starts_with(MAGIC) {
        return Err(bad("no build-info header"));
    }
    let ptr_size = section[14] as usize;
    let flags = section[15];
    if flags & FLAG_INLINE != 0 {
        let (len, n) = uvarint(&section[INLINE_START..]).ok_or_else(|| bad("bad length"))?;
        let start = INLINE_START + n;
        let end = start
            .checked_add(usize::try_from(len).map_err(|_| bad("bad length"))?)
            .filter(|&e| e <= section.len())
            .ok_or_else(|| bad("version runs past the section"))?;
        return String::from_utf8(section[start..end].to_vec()).map_err(|_| bad("not UTF-8"));
    }
    // Pre-1.18: a pointer to a Go string header (ptr, len).
    if ptr_size != 8 && ptr_size != 4 {
        return Err(bad("unknown pointer size"));
    }
    let word = |at: usize| -> Option<u64> {
        let b = section.get(at..at + ptr_size)?;
        Some(if ptr_size == 8 {
            u64::from_le_bytes(b.try_into().ok()?)
        } else {
            u32::from_le_bytes(b.try_into().ok()?) as u64
        })
    };
    let header = word(16).ok_or_else(|| bad("truncated"))?;
    read_string(header, ptr_size).ok_or_else(|| bad("version pointer outside the file"))
}

/// The build-info blob inside `data` (it is 16-byte aligned where the linker puts it), when
/// its section has been removed but its bytes remain.
pub fn find_blob(data: &[u8]) -> Option<&[u8]> {
    (0..data.len().saturating_sub(INLINE_START))
        .step_by(16)
        .find(|&at| data[at..].starts_with(MAGIC))
        .map(|at| &data[at..])
}

/// Go's unsigned varint (LEB128). Returns the value and the bytes it took.
pub fn uvarint(buf: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &b) in buf.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inline(version: &str) -> Vec<u8> {
        let mut s = MAGIC.to_vec();
        s.extend([8, FLAG_INLINE]);
        s.resize(INLINE_START, 0);
        s.push(version.len() as u8);
        s.extend(version.as_bytes());
        s.push(0);
        s
    }

    #[test]
    fn reads_inline_version() {
        let v = version(&inline("go1.27.3"), |_, _| None).unwrap();
        assert_eq!(v, "go1.27.3");
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        assert!(version(b"", |_, _| None).is_err());
        assert!(version(&[0xff; 40], |_, _| None).is_err());
        let mut s = inline("go1.19.8");
        s[INLINE_START] = 0x7f; // length past the end
        assert!(version(&s, |_, _| None).is_err());
        s[INLINE_START] = 0xff; // unterminated varint
        assert!(version(&s[..INLINE_START + 1], |_, _| None).is_err());
    }

    #[test]
    fn varints() {
        assert_eq!(uvarint(&[0x08]), Some((8, 1)));
        assert_eq!(uvarint(&[0x96, 0x01]), Some((150, 2)));
        assert_eq!(uvarint(&[0x80]), None);
    }
}
