//! Just enough DER to wrap bare private keys in PKCS#8 and to build PKCS#12 files.
//!
//! Everything else (certificates, CSRs) is written by rcgen and read by x509-parser.

/// One tag-length-value element.
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// A SEQUENCE of already-encoded elements.
pub(crate) fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

/// A SET of already-encoded elements (callers pass them in DER order).
pub(crate) fn set(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x31, &parts.concat())
}

/// An OCTET STRING.
pub(crate) fn octets(bytes: &[u8]) -> Vec<u8> {
    tlv(0x04, bytes)
}

/// A non-negative INTEGER.
pub(crate) fn uint(value: u64) -> Vec<u8> {
    let bytes = value.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count().min(7);
    let mut content = bytes[skip..].to_vec();
    if content[0] & 0x80 != 0 {
        content.insert(0, 0);
    }
    tlv(0x02, &content)
}

/// NULL.
pub(crate) fn null() -> Vec<u8> {
    vec![0x05, 0x00]
}

/// An OBJECT IDENTIFIER from its arcs.
pub(crate) fn oid(arcs: &[u64]) -> Vec<u8> {
    let mut content = Vec::new();
    let mut push_arc = |mut arc: u64| {
        let mut chunk = vec![(arc & 0x7f) as u8];
        arc >>= 7;
        while arc > 0 {
            chunk.push(0x80 | (arc & 0x7f) as u8);
            arc >>= 7;
        }
        chunk.reverse();
        content.extend_from_slice(&chunk);
    };
    push_arc(arcs[0] * 40 + arcs[1]);
    for arc in &arcs[2..] {
        push_arc(*arc);
    }
    tlv(0x06, &content)
}

/// `[n] EXPLICIT` around an encoded element.
pub(crate) fn explicit(n: u8, inner: &[u8]) -> Vec<u8> {
    tlv(0xa0 | n, inner)
}

/// A BMPString (UTF-16BE).
pub(crate) fn bmp(text: &str) -> Vec<u8> {
    let content: Vec<u8> = text.encode_utf16().flat_map(u16::to_be_bytes).collect();
    tlv(0x1e, &content)
}

/// Split the first element off `input`: its tag, its content and what follows it.
pub(crate) fn read(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let len = rest[..count]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        rest = &rest[count..];
        len
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The elements inside a constructed element's content.
pub(crate) fn children(mut content: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let mut out = Vec::new();
    while !content.is_empty() {
        let (tag, value, rest) = read(content)?;
        out.push((tag, value));
        content = rest;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_known_values() {
        assert_eq!(
            oid(&[1, 2, 840, 113549, 1, 1, 1]),
            hex::decode("06092a864886f70d010101").unwrap()
        );
        assert_eq!(uint(0), vec![2, 1, 0]);
        assert_eq!(uint(3), vec![2, 1, 3]);
        assert_eq!(uint(128), vec![2, 2, 0, 128]);
        assert_eq!(uint(2048), vec![2, 2, 8, 0]);
        assert_eq!(bmp("ab"), vec![0x1e, 4, 0, b'a', 0, b'b']);
        let long = tlv(0x04, &[7u8; 300]);
        assert_eq!(&long[..4], &[0x04, 0x82, 0x01, 0x2c]);
    }

    #[test]
    fn reads_back_what_it_writes() {
        let inner = seq(&[&uint(5), &octets(&[9u8; 200]), &null()]);
        let (tag, content, rest) = read(&inner).unwrap();
        assert_eq!((tag, rest.len()), (0x30, 0));
        let kids = children(content).unwrap();
        assert_eq!(kids.len(), 3);
        assert_eq!(kids[1], (0x04, &[9u8; 200][..]));
        assert!(read(&inner[..inner.len() - 1]).is_none());
    }
}
