//! ggml's tensor types to f32, bit for bit as ggml's `dequantize_row_*` and the `gguf` Python
//! package compute them.
//!
//! Exactness is a matter of evaluation order: every scale is an f16 widened to f32 (exact), and
//! each value is computed with the same f32 operations in the same order as ggml (e.g. Q6_K's
//! `(d * scale) * q`, Q4_K's `(d * scale) * q - dmin * min`), never fused into an FMA. Most of
//! these products are exact anyway; the last subtraction or addition rounds once, identically.

use super::gguf::ggml_type_name;

/// f16 bits to f32, exactly (subnormals, infinities and NaN payloads included, as numpy does).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let mant = u32::from(h & 0x3ff);
    match exp {
        0 => {
            // Subnormal (or zero): mant * 2^-24, exact in f32.
            let v = mant as f32 * (1.0 / 16_777_216.0);
            f32::from_bits(v.to_bits() | sign)
        }
        0x1f => f32::from_bits(sign | 0x7f80_0000 | (mant << 13)),
        _ => f32::from_bits(sign | ((exp + 112) << 23) | (mant << 13)),
    }
}

/// f32 to bf16 bits, rounding to nearest even as PyTorch does (`c10::BFloat16`); NaN stays NaN.
pub fn f32_to_bf16(x: f32) -> u16 {
    if x.is_nan() {
        return 0x7fc0;
    }
    let bits = x.to_bits();
    let bias = ((bits >> 16) & 1) + 0x7fff;
    (bits.wrapping_add(bias) >> 16) as u16
}

fn half(b: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[at], b[at + 1]]))
}

/// Whether [`dequantize`] reads this ggml type.
pub fn supported(ty: u32) -> bool {
    matches!(ty, 0 | 1 | 2 | 3 | 6 | 7 | 8 | 10 | 11 | 12 | 13 | 14 | 30)
}

/// The names of the supported types, for messages.
pub const SUPPORTED: &str = "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K";

/// The `n` values of a tensor of ggml type `ty` stored in `data` (whose length the caller checked
/// against the type's block size), appended to `out`.
pub fn dequantize(ty: u32, data: &[u8], n: usize, out: &mut Vec<f32>) -> Result<(), String> {
    out.reserve(n);
    match ty {
        0 => out.extend(data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))),
        1 => out.extend(data.chunks_exact(2).map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))),
        30 => out.extend(data.chunks_exact(2).map(|c| f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16))),
        2 => blocks(data, 18, 32, out, q4_0),
        3 => blocks(data, 20, 32, out, q4_1),
        6 => blocks(data, 22, 32, out, q5_0),
        7 => blocks(data, 24, 32, out, q5_1),
        8 => blocks(data, 34, 32, out, q8_0),
        10 => blocks(data, 84, 256, out, q2_k),
        11 => blocks(data, 110, 256, out, q3_k),
        12 => blocks(data, 144, 256, out, q4_k),
        13 => blocks(data, 176, 256, out, q5_k),
        14 => blocks(data, 210, 256, out, q6_k),
        other => return Err(format!("unsupported tensor type {} (supported: {SUPPORTED})", ggml_type_name(other))),
    }
    Ok(())
}

fn blocks(data: &[u8], bytes: usize, values: usize, out: &mut Vec<f32>, f: fn(&[u8], &mut [f32])) {
    let start = out.len();
    out.resize(start + data.len() / bytes * values, 0.0);
    for (b, y) in data.chunks_exact(bytes).zip(out[start..].chunks_exact_mut(values)) {
        f(b, y);
    }
}

// Block layouts are ggml's (`ggml-common.h`); values are written in ggml's order. The loops index
// rather than chain iterator adapters: tests run debug builds, where each adapter call costs.

/// d: f16, qs: 16 bytes of two 4-bit values (low nibbles are values 0..16, high ones 16..32).
fn q4_0(b: &[u8], y: &mut [f32]) {
    let d = half(b, 0);
    let qs = &b[2..18];
    for j in 0..16 {
        y[j] = d * ((qs[j] & 0xf) as i8 - 8) as f32;
        y[j + 16] = d * ((qs[j] >> 4) as i8 - 8) as f32;
    }
}

/// d, m: f16, then Q4_0's nibbles, unsigned: `d * q + m`.
fn q4_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (half(b, 0), half(b, 2));
    let qs = &b[4..20];
    for j in 0..16 {
        y[j] = d * (qs[j] & 0xf) as f32 + m;
        y[j + 16] = d * (qs[j] >> 4) as f32 + m;
    }
}

/// d: f16, qh: the fifth bit of each of the 32 values (u32), qs: the low nibbles.
fn q5_0(b: &[u8], y: &mut [f32]) {
    let d = half(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let qs = &b[6..22];
    for j in 0..16 {
        let h0 = ((qh >> j) & 1) as u8;
        let h1 = ((qh >> (j + 16)) & 1) as u8;
        y[j] = d * (((qs[j] & 0xf) | (h0 << 4)) as i8 - 16) as f32;
        y[j + 16] = d * (((qs[j] >> 4) | (h1 << 4)) as i8 - 16) as f32;
    }
}

/// d, m: f16, then Q5_0's bits, unsigned: `d * q + m`.
fn q5_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (half(b, 0), half(b, 2));
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let qs = &b[8..24];
    for j in 0..16 {
        let h0 = ((qh >> j) & 1) as u8;
        let h1 = ((qh >> (j + 16)) & 1) as u8;
        y[j] = d * ((qs[j] & 0xf) | (h0 << 4)) as f32 + m;
        y[j + 16] = d * ((qs[j] >> 4) | (h1 << 4)) as f32 + m;
    }
}

/// d: f16, qs: 32 signed bytes.
fn q8_0(b: &[u8], y: &mut [f32]) {
    let d = half(b, 0);
    for j in 0..32 {
        y[j] = (b[2 + j] as i8) as f32 * d;
    }
}

/// scales: 16 bytes (4-bit scale low, 4-bit min high, per 16 values), qs: 64 bytes of 2-bit
/// values, d, dmin: f16.
fn q2_k(b: &[u8], y: &mut [f32]) {
    let (scales, qs) = (&b[0..16], &b[16..80]);
    let (d, dmin) = (half(b, 80), half(b, 82));
    for (i, y) in y.iter_mut().enumerate() {
        // Value i: 128-value half, 2-bit shift, byte within the 32 of that half.
        let (half_, shift, byte) = (i / 128, (i / 32) % 4, i % 32);
        let q = (qs[half_ * 32 + byte] >> (2 * shift)) & 3;
        let sc = scales[i / 16];
        let dl = d * (sc & 0xf) as f32;
        let ml = dmin * (sc >> 4) as f32;
        *y = dl * q as f32 - ml;
    }
}

/// hmask: 32 bytes (the high bit of each value, inverted), qs: 64 bytes of low 2 bits, scales:
/// 12 bytes of 16 six-bit scales, d: f16.
fn q3_k(b: &[u8], y: &mut [f32]) {
    let (hmask, qs, scales) = (&b[0..32], &b[32..96], &b[96..108]);
    let d = half(b, 108);
    let mut dl = [0f32; 16];
    for (i, dl) in dl.iter_mut().enumerate() {
        let low = (scales[i % 8] >> (4 * (i / 8))) & 0xf;
        let high = (scales[8 + i % 4] >> (2 * (i / 4))) & 3;
        *dl = d * ((low | (high << 4)) as i8 - 32) as f32;
    }
    for (i, y) in y.iter_mut().enumerate() {
        let (half_, shift, byte) = (i / 128, (i / 32) % 4, i % 32);
        let low = ((qs[half_ * 32 + byte] >> (2 * shift)) & 3) as i8;
        let high = ((hmask[byte] >> (i / 32)) & 1) ^ 1;
        *y = dl[i / 16] * (low - ((high << 2) as i8)) as f32;
    }
}

/// The eight 6-bit (scale, min) pairs of Q4_K and Q5_K, packed in 12 bytes (ggml's
/// `get_scale_min_k4`).
fn scale_min_k4(s: &[u8]) -> ([u8; 8], [u8; 8]) {
    let (mut sc, mut m) = ([0u8; 8], [0u8; 8]);
    for j in 0..4 {
        sc[j] = s[j] & 63;
        m[j] = s[j + 4] & 63;
        sc[j + 4] = (s[j + 8] & 0xf) | ((s[j] >> 6) << 4);
        m[j + 4] = (s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4);
    }
    (sc, m)
}

/// d, dmin: f16, 12 bytes of scales/mins, qs: 128 bytes; sub-block j of 32 values reads the low
/// (even j) or high (odd j) nibbles of bytes 32*(j/2)...
fn q4_k(b: &[u8], y: &mut [f32]) {
    let (d, dmin) = (half(b, 0), half(b, 2));
    let (sc, m) = scale_min_k4(&b[4..16]);
    let qs = &b[16..144];
    for j in 0..8 {
        let d1 = d * sc[j] as f32;
        let m1 = dmin * m[j] as f32;
        let shift = 4 * (j % 2);
        let src = &qs[32 * (j / 2)..32 * (j / 2) + 32];
        for (y, &q) in y[32 * j..32 * j + 32].iter_mut().zip(src) {
            *y = d1 * ((q >> shift) & 0xf) as f32 - m1;
        }
    }
}

/// Q4_K plus qh: 32 bytes whose bit j is the fifth bit of sub-block j's values.
fn q5_k(b: &[u8], y: &mut [f32]) {
    let (d, dmin) = (half(b, 0), half(b, 2));
    let (sc, m) = scale_min_k4(&b[4..16]);
    let (qh, qs) = (&b[16..48], &b[48..176]);
    for j in 0..8 {
        let d1 = d * sc[j] as f32;
        let m1 = dmin * m[j] as f32;
        let shift = 4 * (j % 2);
        let src = &qs[32 * (j / 2)..32 * (j / 2) + 32];
        for (l, y) in y[32 * j..32 * j + 32].iter_mut().enumerate() {
            let q = ((src[l] >> shift) & 0xf) | (((qh[l] >> j) & 1) << 4);
            *y = d1 * q as f32 - m1;
        }
    }
}

/// ql: 128 bytes of low nibbles, qh: 64 bytes of high 2-bit pairs, scales: 16 signed bytes, d: f16.
fn q6_k(b: &[u8], y: &mut [f32]) {
    let (ql, qh, scales) = (&b[0..128], &b[128..192], &b[192..208]);
    let d = half(b, 208);
    for (i, y) in y.iter_mut().enumerate() {
        let (half_, r) = (i / 128, i % 128);
        // Low nibble: byte r % 64 of this half's 64, shifted by 4 for the second 64 values.
        let low = (ql[half_ * 64 + r % 64] >> (4 * (r / 64))) & 0xf;
        // High bits: byte r % 32 of this half's 32, the (r / 32)-th pair.
        let high = (qh[half_ * 32 + r % 32] >> (2 * (r / 32))) & 3;
        let q = (low | (high << 4)) as i8 - 32;
        let sc = d * (scales[i / 16] as i8) as f32;
        *y = sc * q as f32;
    }
}
