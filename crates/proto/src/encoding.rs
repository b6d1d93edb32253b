//! The encoding rules of spec section 5 that reach below a packet's top-level map: how deep
//! a value may nest, and the deterministic encoding every decoded value is rewritten to.
//!
//! Decoding a packet passes each value of its map through [`canonical`]: the value is checked
//! well-formed (UTF-8 text, chunks of the right kind, no stray break), no deeper than the
//! limit, without the same key twice in any map, and comes out in the deterministic encoding
//! of RFC 8949 section 4.2.1 (definite lengths, shortest heads and floats, map keys in
//! bytewise order of their encodings). So what a hub stores and forwards has one form
//! whatever the sender wrote, and no two receivers can read a forwarded value differently;
//! a value already in that form comes out byte for byte as it went in.
//!
//! The walk is iterative, with an explicit stack of the open containers, which the nesting
//! limit bounds: hostile nesting cannot overflow the call stack, here or in receivers.

use crate::error::DecodeError;

/// How many levels a packet that a device or the gateway sends may nest, its top-level map
/// being level 1 and each array, map or tag inside adding one (spec 5). The core types need
/// 2; the rest is room for extensions.
pub const MAX_NESTING: usize = 16;

/// How many levels a decoder accepts (spec 5): the hub's results wrap stored packets, which
/// nest at most [`MAX_NESTING`] levels, up to 3 levels deeper (a sync result's `last`).
pub const MAX_NESTING_DECODED: usize = 32;

const BYTES: u8 = 2;
const TEXT: u8 = 3;
const ARRAY: u8 = 4;
const MAP: u8 = 5;
const TAG: u8 = 6;
const SIMPLE: u8 = 7;

/// The head of a CBOR item: major type and argument.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Head {
    /// Major type and argument (a value, a length, a tag number, a simple value).
    Item(u8, u64),
    /// Major type 2 to 5 with an indefinite length.
    Indefinite(u8),
    /// A half, single or double precision float, as a double.
    Float(f64),
    /// A half precision NaN or infinity, kept as its bits (no double to convert through).
    Half(u16),
    /// The break that ends an indefinite-length item.
    Break,
}

fn malformed(what: &str) -> DecodeError {
    DecodeError::Cbor(what.into())
}

/// Reads the head at `pos`, returning it and where its content begins.
fn read_head(input: &[u8], pos: usize) -> Result<(Head, usize), DecodeError> {
    let end = || malformed("unexpected end of input");
    let first = *input.get(pos).ok_or_else(end)?;
    let (major, info) = (first >> 5, first & 0x1f);
    let argument = |size: usize| -> Result<(u64, usize), DecodeError> {
        let bytes = input.get(pos + 1..pos + 1 + size).ok_or_else(end)?;
        let value = bytes.iter().fold(0u64, |n, b| n << 8 | u64::from(*b));
        Ok((value, pos + 1 + size))
    };
    let (arg, next) = match info {
        0..=23 => (u64::from(info), pos + 1),
        24..=27 => argument(1 << (info - 24))?,
        31 if (BYTES..=MAP).contains(&major) => return Ok((Head::Indefinite(major), pos + 1)),
        31 if major == SIMPLE => return Ok((Head::Break, pos + 1)),
        _ => return Err(malformed("reserved additional information")),
    };
    if major != SIMPLE {
        return Ok((Head::Item(major, arg), next));
    }
    let head = match info {
        24 if arg < 32 => return Err(malformed("a simple value below 32 in two bytes")),
        0..=24 => Head::Item(SIMPLE, arg),
        25 => match arg as u16 {
            bits if bits & 0x7c00 == 0x7c00 => Head::Half(bits),
            bits => Head::Float(half_to_f64(bits)),
        },
        26 => Head::Float(f64::from(f32::from_bits(arg as u32))),
        _ => Head::Float(f64::from_bits(arg)),
    };
    Ok((head, next))
}

/// Writes a head in its shortest form.
fn write_head(out: &mut Vec<u8>, major: u8, arg: u64) {
    let major = major << 5;
    match arg {
        0..=23 => out.push(major | arg as u8),
        24..=0xff => out.extend([major | 24, arg as u8]),
        0x100..=0xffff => {
            out.push(major | 25);
            out.extend((arg as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(major | 26);
            out.extend((arg as u32).to_be_bytes());
        }
        _ => {
            out.push(major | 27);
            out.extend(arg.to_be_bytes());
        }
    }
}

/// Writes a float in the shortest of half, single and double precision that keeps its value
/// (RFC 8949 section 4.2.1); NaN as `f97e00`.
fn write_float(out: &mut Vec<u8>, value: f64) {
    if value.is_nan() {
        out.extend([0xf9, 0x7e, 0x00]);
        return;
    }
    let single = value as f32;
    if f64::from(single).to_bits() != value.to_bits() {
        out.push(0xfb);
        out.extend(value.to_bits().to_be_bytes());
    } else if let Some(half) = f32_to_half(single) {
        out.push(0xf9);
        out.extend(half.to_be_bytes());
    } else {
        out.push(0xfa);
        out.extend(single.to_bits().to_be_bytes());
    }
}

/// A finite half precision float's value.
fn half_to_f64(bits: u16) -> f64 {
    let sign = if bits & 0x8000 == 0 { 1.0 } else { -1.0 };
    let exponent = i32::from((bits >> 10) & 0x1f);
    let mantissa = f64::from(bits & 0x3ff);
    sign * match exponent {
        0 => mantissa * 2f64.powi(-24),
        _ => (1024.0 + mantissa) * 2f64.powi(exponent - 25),
    }
}

/// The half precision bits of `value` if it has them exactly (NaN aside).
fn f32_to_half(value: f32) -> Option<u16> {
    let bits = value.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exponent = ((bits >> 23) & 0xff) as i32;
    let mantissa = bits & 0x7f_ffff;
    match exponent {
        0 if mantissa == 0 => Some(sign),
        0 => None, // single precision subnormals are far below half precision's range
        0xff => Some(sign | 0x7c00),
        _ => {
            let unbiased = exponent - 127;
            if (-14..=15).contains(&unbiased) {
                // A normal half: 10 of the 23 mantissa bits survive.
                (mantissa & 0x1fff == 0)
                    .then(|| sign | ((unbiased + 15) as u16) << 10 | (mantissa >> 13) as u16)
            } else if (-24..=-15).contains(&unbiased) {
                // A subnormal half: the significand, implicit bit included, in units of 2^-24.
                let significand = mantissa | 0x80_0000;
                let shift = (-(unbiased + 1)) as u32;
                (significand & ((1 << shift) - 1) == 0)
                    .then(|| sign | (significand >> shift) as u16)
            } else {
                None
            }
        }
    }
}

/// A container whose items are being read.
#[derive(Debug)]
struct Open {
    major: u8,
    /// Items still to read (two per map entry); `None` until a break.
    remaining: Option<u64>,
    /// For a tag, its number.
    tag: u64,
    /// The items read so far, each in the deterministic encoding.
    items: Vec<u8>,
    /// Where each item begins in `items` (maps only, to sort their entries).
    starts: Vec<usize>,
    n_items: u64,
}

impl Open {
    /// The container's deterministic encoding, once all its items are read.
    fn finish(self, out: &mut Vec<u8>) -> Result<(), DecodeError> {
        match self.major {
            ARRAY => {
                write_head(out, ARRAY, self.n_items);
                out.extend_from_slice(&self.items);
            }
            MAP => {
                if !self.n_items.is_multiple_of(2) {
                    return Err(malformed("a map ends after a key"));
                }
                let bounds: Vec<(usize, usize)> = self
                    .starts
                    .iter()
                    .zip(self.starts.iter().skip(1).chain([&self.items.len()]))
                    .map(|(a, b)| (*a, *b))
                    .collect();
                let mut entries: Vec<(&[u8], &[u8])> = bounds
                    .chunks_exact(2)
                    .map(|pair| {
                        let ((k0, k1), (v0, v1)) = (pair[0], pair[1]);
                        (&self.items[k0..k1], &self.items[v0..v1])
                    })
                    .collect();
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                if entries.windows(2).any(|w| w[0].0 == w[1].0) {
                    return Err(DecodeError::NestedDuplicateKey);
                }
                write_head(out, MAP, self.n_items / 2);
                for (k, v) in entries {
                    out.extend_from_slice(k);
                    out.extend_from_slice(v);
                }
            }
            _ => {
                write_head(out, TAG, self.tag);
                out.extend_from_slice(&self.items);
            }
        }
        Ok(())
    }
}

/// Where the next item goes: the innermost open container, or `out` when none is open.
fn destination<'a>(open: &'a mut [Open], out: &'a mut Vec<u8>) -> &'a mut Vec<u8> {
    match open.last_mut() {
        Some(container) => {
            if container.major == MAP {
                container.starts.push(container.items.len());
            }
            &mut container.items
        }
        None => out,
    }
}

/// Reads a definite or indefinite string's bytes (text checked UTF-8, chunk by chunk as RFC
/// 8949 section 3.2.3 asks) and writes it with a definite length.
fn string(
    input: &[u8],
    pos: usize,
    major: u8,
    length: Option<u64>,
    out: &mut Vec<u8>,
) -> Result<usize, DecodeError> {
    let chunk = |pos: usize, length: u64| -> Result<(&[u8], usize), DecodeError> {
        let end = usize::try_from(length)
            .ok()
            .and_then(|n| pos.checked_add(n))
            .filter(|end| *end <= input.len())
            .ok_or_else(|| malformed("unexpected end of input"))?;
        let bytes = &input[pos..end];
        if major == TEXT && std::str::from_utf8(bytes).is_err() {
            return Err(malformed("text that is not UTF-8"));
        }
        Ok((bytes, end))
    };
    if let Some(length) = length {
        let (bytes, end) = chunk(pos, length)?;
        write_head(out, major, length);
        out.extend_from_slice(bytes);
        return Ok(end);
    }
    let mut joined = Vec::new();
    let mut pos = pos;
    loop {
        match read_head(input, pos)? {
            (Head::Break, next) => {
                write_head(out, major, joined.len() as u64);
                out.extend_from_slice(&joined);
                return Ok(next);
            }
            (Head::Item(m, length), next) if m == major => {
                let (bytes, end) = chunk(next, length)?;
                joined.extend_from_slice(bytes);
                pos = end;
            }
            _ => {
                return Err(malformed(
                    "a chunk of another kind in an indefinite-length string",
                ));
            }
        }
    }
}

/// Reads the item at `start` of `input`, inside containers `level` deep (1: a value of a
/// packet's map), and returns it in the deterministic encoding with the position after it.
/// Refuses it when its containers would go past level `max`.
pub(crate) fn canonical(
    input: &[u8],
    start: usize,
    level: usize,
    max: usize,
) -> Result<(Vec<u8>, usize), DecodeError> {
    let mut open: Vec<Open> = Vec::new();
    let mut out = Vec::new();
    let mut pos = start;
    loop {
        let (head, next) = read_head(input, pos)?;
        pos = next;
        let container = |major: u8, remaining: Option<u64>, tag: u64| Open {
            major,
            remaining,
            tag,
            items: Vec::new(),
            starts: Vec::new(),
            n_items: 0,
        };
        let new = match head {
            Head::Item(major @ (ARRAY | MAP), n) if n > 0 => Some(container(
                major,
                Some(if major == MAP { n.saturating_mul(2) } else { n }),
                0,
            )),
            Head::Item(TAG, tag) => Some(container(TAG, Some(1), tag)),
            Head::Indefinite(major @ (ARRAY | MAP)) => Some(container(major, None, 0)),
            _ => None,
        };
        if let Some(new) = new {
            if level + open.len() + 1 > max {
                return Err(DecodeError::TooDeep(max));
            }
            open.push(new);
            continue;
        }
        match head {
            Head::Break => {
                let Some(container) = open.pop_if(|c| c.remaining.is_none()) else {
                    return Err(malformed("a break outside an indefinite-length item"));
                };
                container.finish(destination(&mut open, &mut out))?;
            }
            Head::Item(major @ (BYTES | TEXT), length) => {
                pos = string(
                    input,
                    pos,
                    major,
                    Some(length),
                    destination(&mut open, &mut out),
                )?;
            }
            Head::Indefinite(major) => {
                pos = string(input, pos, major, None, destination(&mut open, &mut out))?;
            }
            Head::Item(major, arg) => write_head(destination(&mut open, &mut out), major, arg),
            Head::Float(value) => write_float(destination(&mut open, &mut out), value),
            Head::Half(bits) if bits & 0x3ff != 0 => {
                write_float(destination(&mut open, &mut out), f64::NAN)
            }
            Head::Half(bits) => {
                let out = destination(&mut open, &mut out);
                out.push(0xf9);
                out.extend(bits.to_be_bytes());
            }
        }
        // One item is complete: count it in its container, closing those it completes.
        loop {
            let Some(container) = open.last_mut() else {
                return Ok((out, pos));
            };
            container.n_items += 1;
            match &mut container.remaining {
                Some(n) if *n > 1 => *n -= 1,
                Some(_) => {
                    if let Some(done) = open.pop() {
                        done.finish(destination(&mut open, &mut out))?;
                    }
                    continue;
                }
                None => {}
            }
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).expect("test hex")
    }

    /// `input` (hex) read at level 1 with a limit of 4 levels: its deterministic encoding
    /// (hex, spaces ignored) or the error.
    fn check(input: &str, expected: Result<&str, DecodeError>) {
        let bytes = hex(input);
        let got = canonical(&bytes, 0, 1, 4).map(|(out, end)| {
            assert_eq!(end, bytes.len(), "input {input}: stopped early");
            hex::encode(out)
        });
        assert_eq!(got, expected.map(|h| h.replace(' ', "")), "input {input}");
    }

    fn same(input: &str) {
        check(input, Ok(input));
    }

    fn malformed(what: &str) -> Result<&'static str, DecodeError> {
        Err(DecodeError::Cbor(what.into()))
    }

    #[test]
    fn deterministic_items_are_unchanged() {
        for input in [
            "00",
            "17",
            "1818",
            "19 0100",
            "1a 00010000",
            "1b 0000000100000000",
            "20",
            "3b ffffffffffffffff",
            "40",
            "43 010203",
            "60",
            "62 4869",
            "80",
            "83 01 02 03",
            "a0",
            "a2 01 00 61 61 00",
            "c1 1a 514b67b0",
            "f4",
            "f5",
            "f6",
            "f7",
            "e0",
            "f8 20",
            "f9 3e00",
            "f9 7c00",
            "f9 fc00",
            "f9 8000",
            "f9 0001",
            "fa 47c35000",
            "fb 3ff199999999999a",
            "82 a1 01 81 02 c0 60",
        ] {
            same(input);
        }
    }

    #[test]
    fn other_forms_are_rewritten() {
        check("18 17", Ok("17"));
        check("19 0018", Ok("1818"));
        check("1b 0000000000000001", Ok("01"));
        check("39 0000", Ok("20"));
        check("5f 41 01 42 0203 ff", Ok("43 010203"));
        check("5f ff", Ok("40"));
        check("7f 61 48 61 69 ff", Ok("62 4869"));
        check("7f 60 ff", Ok("60"));
        check("9f 01 02 ff", Ok("82 01 02"));
        check("9f ff", Ok("80"));
        check("98 02 01 02", Ok("82 01 02"));
        check("bf 01 02 ff", Ok("a1 01 02"));
        check("bf ff", Ok("a0"));
        check("b8 01 01 02", Ok("a1 01 02"));
        // Keys sorted bytewise by their encodings: 24 (1818) before -1 (20) before "a".
        check("a3 61 61 00 20 00 18 18 00", Ok("a3 1818 00 20 00 6161 00"));
        check("a2 19 0001 00 00 00", Ok("a2 00 00 01 00"));
        check("d8 01 00", Ok("c1 00"));
        check("9f bf 7f 61 61 ff 9f ff ff ff", Ok("81 a1 6161 80"));
        // Floats: the shortest width that keeps the value.
        check("fb 3ff8000000000000", Ok("f9 3e00"));
        check("fa 3fc00000", Ok("f9 3e00"));
        check("fb 40f86a0000000000", Ok("fa 47c35000"));
        check("fa 7f800000", Ok("f9 7c00"));
        check("fb fff0000000000000", Ok("f9 fc00"));
        check("fb 8000000000000000", Ok("f9 8000"));
        check("fa 33800000", Ok("f9 0001"));
        check("fa 38800000", Ok("f9 0400"));
        check("fa 387fc000", Ok("f9 03ff"));
        check("fa 477fe000", Ok("f9 7bff"));
        check("fa 47800000", Ok("fa 47800000"));
        check("fa 33000000", Ok("fa 33000000"));
        check("fb 7ff8000000000001", Ok("f9 7e00"));
        check("fa 7fc00001", Ok("f9 7e00"));
        check("f9 7e01", Ok("f9 7e00"));
    }

    #[test]
    fn refusals() {
        let end = || malformed("unexpected end of input");
        check("", end());
        check("18", end());
        check("62 48", end());
        check("82 01", end());
        check("9f 01", end());
        check("bf 01 02", end());
        check("7f 61 48", end());
        check("1c", malformed("reserved additional information"));
        check("1f", malformed("reserved additional information"));
        check("df 00", malformed("reserved additional information"));
        check("f8 14", malformed("a simple value below 32 in two bytes"));
        check("ff", malformed("a break outside an indefinite-length item"));
        check(
            "81 ff",
            malformed("a break outside an indefinite-length item"),
        );
        check(
            "c1 ff",
            malformed("a break outside an indefinite-length item"),
        );
        check("62 c328", malformed("text that is not UTF-8"));
        check("7f 61 c3 61 a9 ff", malformed("text that is not UTF-8"));
        check(
            "7f 41 48 ff",
            malformed("a chunk of another kind in an indefinite-length string"),
        );
        check(
            "5f 5f ff ff",
            malformed("a chunk of another kind in an indefinite-length string"),
        );
        check("bf 01 ff", malformed("a map ends after a key"));
        let duplicate = || Err(DecodeError::NestedDuplicateKey);
        check("a2 01 00 01 00", duplicate());
        check("a2 01 00 18 01 00", duplicate());
        check("81 a2 61 61 00 7f 61 61 ff 01", duplicate());
    }

    #[test]
    fn nesting_is_limited() {
        let too_deep = || Err(DecodeError::TooDeep(4));
        // Level 1 is the packet's map; this value may open 3 more levels.
        check("81 81 81 00", Ok("81 81 81 00"));
        check("81 81 81 81 00", too_deep());
        check("81 81 81 a0", Ok("81 81 81 a0"));
        check("81 81 81 80", Ok("81 81 81 80"));
        check("9f 9f 9f 9f ff ff ff ff", too_deep());
        check("c1 c1 c1 00", Ok("c1 c1 c1 00"));
        check("c1 c1 c1 c1 00", too_deep());
        check("a1 00 a1 00 a1 00 00", Ok("a1 00 a1 00 a1 00 00"));
        check("a1 00 a1 00 a1 00 a1 00 00", too_deep());
        check("a1 81 81 00 00", Ok("a1 81 81 00 00"));
        check("a1 81 81 81 00 00", too_deep());
    }

    #[test]
    fn hostile_nesting_does_not_overflow_the_stack() {
        // Far deeper than a recursive reader survives on a test thread's stack.
        let mut deep = vec![0x81; 20_000];
        deep.push(0x00);
        assert_eq!(
            canonical(&deep, 0, 1, usize::MAX),
            Ok((deep.clone(), deep.len()))
        );
        let mut deeper = vec![0x9f; 1_000_000];
        deeper.push(0x00);
        assert_eq!(
            canonical(&deeper, 0, 1, MAX_NESTING),
            Err(DecodeError::TooDeep(MAX_NESTING))
        );
    }
}
