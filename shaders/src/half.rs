//! IEEE binary16 conversions for f16 weight storage (no dependency): f32 to f16 bits rounded to
//! nearest, ties to even, as a GPU or `half::f16::from_f32` rounds; and back.

/// The f16 bits of `x`, rounded to nearest (ties to even); past the f16 range, infinity; NaN
/// stays NaN.
pub fn f16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32;
    let man = b & 0x7f_ffff;
    if exp == 0xff {
        let nan = if man != 0 {
            0x200 | (man >> 13) as u16
        } else {
            0
        };
        return sign | 0x7c00 | nan;
    }
    // The exponent as f16 biases it.
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    let (h, rem, half) = if e <= 0 {
        // Subnormal f16 (or zero): units of 2^-24.
        if e < -10 {
            return sign;
        }
        let m = man | 0x80_0000;
        let shift = (14 - e) as u32;
        (m >> shift, m & ((1 << shift) - 1), 1 << (shift - 1))
    } else {
        (((e as u32) << 10) | (man >> 13), man & 0x1fff, 0x1000)
    };
    // A carry out of the mantissa steps the exponent (up to infinity), which is right.
    let h = if rem > half || (rem == half && h & 1 == 1) {
        h + 1
    } else {
        h
    };
    sign | h as u16
}

/// The f32 value of f16 bits `h` (exact).
pub fn f16_to_f32(h: u16) -> f32 {
    let neg = h & 0x8000 != 0;
    let e = ((h >> 10) & 0x1f) as u32;
    let m = (h & 0x3ff) as u32;
    let bits = match e {
        0 => {
            let v = m as f32 * (1.0 / 16_777_216.0);
            return if neg { -v } else { v };
        }
        0x1f => 0x7f80_0000 | (m << 13),
        _ => ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(bits | if neg { 0x8000_0000 } else { 0 })
}

/// `x` rounded to the nearest f16 (what an f16-weight backend computes with).
pub fn round_f16(x: f32) -> f32 {
    f16_to_f32(f16_bits(x))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dlp_engine::tensor::PackedKind;

    /// Every f16 bit pattern, decoded by the engine's loader (the `half` crate).
    fn reference() -> Vec<f32> {
        let bytes: Vec<u8> = (0..=u16::MAX).flat_map(|h| h.to_le_bytes()).collect();
        let mut out = vec![0f32; 1 << 16];
        PackedKind::F16.dequantize(&bytes, &mut out);
        out
    }

    #[test]
    fn decodes_and_round_trips_every_f16() {
        let r = reference();
        for h in 0..=u16::MAX {
            let v = f16_to_f32(h);
            let want = r[h as usize];
            if want.is_nan() {
                assert!(v.is_nan() && f16_bits(v) & 0x7c00 == 0x7c00 && f16_bits(v) & 0x3ff != 0);
                continue;
            }
            assert_eq!(v.to_bits(), want.to_bits(), "decoding {h:#06x}");
            assert_eq!(f16_bits(v), h, "encoding {v:e}");
        }
    }

    #[test]
    fn rounds_to_nearest_ties_to_even() {
        let r = reference();
        // Consecutive finite positive halves a < b; past 65504 (0x7bff) the next step, 65536,
        // is infinity.
        for h in 0..0x7c00u16 {
            let a = r[h as usize];
            let b = if h == 0x7bff {
                65536.0
            } else {
                r[h as usize + 1]
            };
            let mid = (a as f64 + b as f64) / 2.0;
            let mid32 = mid as f32;
            assert_eq!(mid32 as f64, mid, "midpoint of {h:#06x} is exact in f32");
            let even = if h & 1 == 0 { h } else { h + 1 };
            assert_eq!(f16_bits(mid32), even, "tie above {h:#06x}");
            assert_eq!(
                f16_bits(-mid32),
                even | 0x8000,
                "negative tie above {h:#06x}"
            );
            let below = f32::from_bits(mid32.to_bits() - 1);
            let above = f32::from_bits(mid32.to_bits() + 1);
            assert_eq!(f16_bits(below), h, "just below the midpoint above {h:#06x}");
            assert_eq!(
                f16_bits(above),
                h + 1,
                "just above the midpoint above {h:#06x}"
            );
        }
        assert_eq!(f16_bits(1e9), 0x7c00);
        assert_eq!(f16_bits(1e-30), 0);
        assert_eq!(round_f16(0.1), 0.099975586);
    }
}
