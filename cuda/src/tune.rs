//! Kernel and launch tuning knobs for benchmark sweeps on a GPU, not for users:
//! `DLP_CUDA_TUNE`, e.g. `DLP_CUDA_TUNE=matvec_unroll=8,matvec_warps=4 dlp-run bench ...`.
//!
//! The decode matvec's best shape and the split of short decode attention depend on the
//! device (DRAM latency, SMs, registers, launch costs), and a GPU is rarely at hand:
//! `scripts/gpu-check.sh` with `SWEEP="..."` benches each setting in one run, so that the
//! defaults below are chosen by measurement. Every setting but the attention split computes
//! the same values (the products are summed in the same order for any unroll; the warps of a
//! block and the occupancy hint change only how features are scheduled); the split changes
//! where attention's partial sums meet, within the bounds its tests hold every split count
//! to. An unknown knob or value is an error naming it, never silently ignored.

/// The knobs, with the defaults the kernels were measured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tune {
    /// 16-byte weight loads per lane per round of the decode matvec (`MATVEC_UNROLL`):
    /// 1, 2, 4, 8 or 16. More loads in flight per warp, more registers.
    pub matvec_unroll: u32,
    /// Warps per block of the decode matvec, one output feature each: 1 to 32 (a power of two).
    pub matvec_warps: u32,
    /// The decode matvec's `__launch_bounds__` minimum of resident blocks per SM (0: none): a
    /// register cap for the compiler, so that more blocks fit an SM (1 to 32).
    pub matvec_min_blocks: u32,
    /// Persistent decode matvec (0: off): at most this many blocks per SM, each warp taking
    /// every (grid x warps)-th feature, so x is staged once per block for several features and
    /// no last wave of a few blocks trails (1 to 32).
    pub matvec_blocks_per_sm: u32,
    /// `split-attention`: positions of capacity per split block of a decode step's attention
    /// (1 to 4,096; at most 16 splits): more means fewer blocks and, below one split, no
    /// combine launch.
    pub attn_split_positions: u32,
    /// `tiled-lora`: rank rows per block of the tiled LoRA shrink (`TILED_ROWS`): 1, 2, 4 or 8.
    /// More rows read each token's x fewer times, over fewer blocks with more registers.
    pub tiled_rows: u32,
}

impl Default for Tune {
    fn default() -> Self {
        Tune {
            matvec_unroll: 4,
            matvec_warps: 8,
            matvec_min_blocks: 0,
            matvec_blocks_per_sm: 0,
            attn_split_positions: 16,
            tiled_rows: 2,
        }
    }
}

/// The variable that holds the knobs.
pub const TUNE_ENV: &str = "DLP_CUDA_TUNE";

impl Tune {
    /// The knobs of `DLP_CUDA_TUNE` (the defaults when unset or empty).
    pub fn from_env() -> Result<Tune, String> {
        match std::env::var(TUNE_ENV) {
            Ok(s) => Tune::parse(&s).map_err(|e| format!("{TUNE_ENV}={s}: {e}")),
            Err(std::env::VarError::NotPresent) => Ok(Tune::default()),
            Err(e) => Err(format!("{TUNE_ENV}: {e}")),
        }
    }

    /// Comma-separated `knob=value` pairs over the defaults; errors name the knob and what it
    /// takes.
    pub fn parse(s: &str) -> Result<Tune, String> {
        let mut t = Tune::default();
        for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("`{pair}`: expected knob=value"))?;
            let (key, value) = (key.trim(), value.trim());
            let v: u32 = value
                .parse()
                .map_err(|_| format!("{key}: `{value}` is not a whole number"))?;
            let pow2 = |hi: u32| v.is_power_of_two() && v <= hi;
            let (field, ok, range) = match key {
                "matvec_unroll" => (&mut t.matvec_unroll, pow2(16), "1 to 16, a power of two"),
                "matvec_warps" => (&mut t.matvec_warps, pow2(32), "1 to 32, a power of two"),
                "matvec_min_blocks" => (&mut t.matvec_min_blocks, v <= 32, "0 to 32"),
                "matvec_blocks_per_sm" => (&mut t.matvec_blocks_per_sm, v <= 32, "0 to 32"),
                "attn_split_positions" => (
                    &mut t.attn_split_positions,
                    (1..=4096).contains(&v),
                    "1 to 4096",
                ),
                "tiled_rows" => (&mut t.tiled_rows, pow2(8), "1 to 8, a power of two"),
                k => {
                    let known: Vec<&str> = t.knobs().iter().map(|k| k.0).collect();
                    return Err(format!("unknown knob `{k}` (knobs: {})", known.join(", ")));
                }
            };
            if !ok {
                return Err(format!("{key}: {v}, expected {range}"));
            }
            *field = v;
        }
        Ok(t)
    }

    /// (name, value, default) of each knob.
    fn knobs(&self) -> [(&'static str, u32, u32); 6] {
        let d = Tune::default();
        [
            ("matvec_unroll", self.matvec_unroll, d.matvec_unroll),
            ("matvec_warps", self.matvec_warps, d.matvec_warps),
            (
                "matvec_min_blocks",
                self.matvec_min_blocks,
                d.matvec_min_blocks,
            ),
            (
                "matvec_blocks_per_sm",
                self.matvec_blocks_per_sm,
                d.matvec_blocks_per_sm,
            ),
            (
                "attn_split_positions",
                self.attn_split_positions,
                d.attn_split_positions,
            ),
            ("tiled_rows", self.tiled_rows, d.tiled_rows),
        ]
    }

    /// The NVRTC defines of the knobs off their defaults (none for the defaults, so that the
    /// default kernels' PTX and its cache key do not change). The block size is the kernels'
    /// too: their `__launch_bounds__` name it.
    pub fn defines(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.matvec_unroll != Tune::default().matvec_unroll {
            v.push(format!("-DMATVEC_UNROLL={}", self.matvec_unroll));
        }
        if self.matvec_warps != Tune::default().matvec_warps {
            v.push(format!("-DMATVEC_THREADS={}", self.matvec_warps * 32));
        }
        if self.matvec_min_blocks != 0 {
            v.push(format!("-DMATVEC_MIN_BLOCKS={}", self.matvec_min_blocks));
        }
        if self.matvec_blocks_per_sm != 0 {
            v.push("-DMATVEC_PERSISTENT".into());
        }
        if self.tiled_rows != Tune::default().tiled_rows {
            v.push(format!("-DTILED_ROWS={}", self.tiled_rows));
        }
        v
    }

    /// The defines of [`Tune::defines`] that kernel file `file` (a [`crate::nvrtc::SOURCES`]
    /// name) reads: the matvec's for `matmul`, the tiled LoRA's for `lora`, none for the
    /// others, so that a sweep recompiles only the module it tunes.
    pub fn defines_for(&self, file: &str) -> Vec<String> {
        let prefix = match file {
            "matmul" => "-DMATVEC_",
            "lora" => "-DTILED_",
            _ => return Vec::new(),
        };
        let mut v = self.defines();
        v.retain(|d| d.starts_with(prefix));
        v
    }

    /// Blocks of a decode matvec launch that needs `blocks` blocks, on a device of `sms` SMs:
    /// all of them, or with [`Tune::matvec_blocks_per_sm`] at most that many per SM.
    pub fn matvec_grid(&self, blocks: usize, sms: usize) -> usize {
        match self.matvec_blocks_per_sm as usize {
            0 => blocks,
            per_sm => blocks.min(per_sm * sms.max(1)),
        }
    }

    /// The knobs off their defaults, as `DLP_CUDA_TUNE` spells them; `None` for the defaults.
    pub fn describe(&self) -> Option<String> {
        let v: Vec<String> = self
            .knobs()
            .into_iter()
            .filter(|(_, v, d)| v != d)
            .map(|(k, v, _)| format!("{k}={v}"))
            .collect();
        (!v.is_empty()).then(|| v.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knobs_parse_over_the_defaults() {
        assert_eq!(Tune::parse("").unwrap(), Tune::default());
        let t = Tune::parse(" matvec_unroll=8, matvec_warps = 4 ,").unwrap();
        assert_eq!(
            (t.matvec_unroll, t.matvec_warps, t.matvec_min_blocks),
            (8, 4, 0)
        );
        assert_eq!(
            t.describe().as_deref(),
            Some("matvec_unroll=8,matvec_warps=4")
        );
        assert_eq!(Tune::default().describe(), None);
        assert!(Tune::default().defines().is_empty());
        // A launch-only knob: no kernel define.
        let t = Tune::parse("attn_split_positions=256").unwrap();
        assert!(t.defines().is_empty());
        assert_eq!(t.describe().as_deref(), Some("attn_split_positions=256"));
    }

    #[test]
    fn defines_carry_the_block_size_with_the_occupancy_hint() {
        let t = Tune::parse("matvec_warps=4,matvec_min_blocks=6").unwrap();
        assert_eq!(
            t.defines(),
            ["-DMATVEC_THREADS=128", "-DMATVEC_MIN_BLOCKS=6"]
        );
        let t = Tune::parse("matvec_unroll=2").unwrap();
        assert_eq!(t.defines(), ["-DMATVEC_UNROLL=2"]);
        let t = Tune::parse("matvec_warps=16").unwrap();
        assert_eq!(t.defines(), ["-DMATVEC_THREADS=512"]);
        let t = Tune::parse("tiled_rows=4").unwrap();
        assert_eq!(t.defines(), ["-DTILED_ROWS=4"]);
        assert_eq!(t.defines_for("lora"), ["-DTILED_ROWS=4"]);
        assert!(t.defines_for("matmul").is_empty() && t.defines_for("attention").is_empty());
        let t = Tune::parse("matvec_warps=4,tiled_rows=8").unwrap();
        assert_eq!(t.defines_for("matmul"), ["-DMATVEC_THREADS=128"]);
        assert_eq!(t.defines_for("lora"), ["-DTILED_ROWS=8"]);
        assert!(t.defines_for("rms_norm").is_empty());
    }

    #[test]
    fn a_persistent_matvec_caps_its_grid_per_sm() {
        let t = Tune::parse("matvec_blocks_per_sm=4").unwrap();
        assert_eq!(t.defines(), ["-DMATVEC_PERSISTENT"]);
        // q/k/v of a 7B (12,288 features, 8 warps a block) on 132 SMs: 528 blocks, not 1,536;
        // a launch smaller than the cap keeps its own size.
        assert_eq!(t.matvec_grid(1536, 132), 528);
        assert_eq!(t.matvec_grid(100, 132), 100);
        assert_eq!(Tune::default().matvec_grid(1536, 132), 1536);
    }

    #[test]
    fn bad_knobs_are_errors_that_name_them() {
        for (s, needle) in [
            ("matvec_unroll=3", "matvec_unroll: 3, expected 1 to 16"),
            ("matvec_unroll=32", "matvec_unroll: 32"),
            ("matvec_warps=64", "matvec_warps: 64"),
            ("matvec_warps=0", "matvec_warps: 0"),
            ("matvec_min_blocks=33", "matvec_min_blocks: 33"),
            (
                "matvec_blocks_per_sm=33",
                "matvec_blocks_per_sm: 33, expected 0 to 32",
            ),
            (
                "attn_split_positions=0",
                "attn_split_positions: 0, expected 1 to 4096",
            ),
            ("matvec_unroll", "expected knob=value"),
            ("matvec_unroll=x", "`x` is not a whole number"),
            (
                "warp_speed=9",
                "unknown knob `warp_speed` (knobs: matvec_unroll, matvec_warps",
            ),
        ] {
            let e = Tune::parse(s).unwrap_err();
            assert!(e.contains(needle), "{s}: {e}");
        }
    }

    #[test]
    fn the_kernel_reads_the_knobs_it_is_given() {
        // Each define `defines` may pass has a default in matmul.cu, or a use guarded by it.
        let src = include_str!("../kernels/matmul.cu");
        assert!(src.contains("#ifndef MATVEC_UNROLL\n#define MATVEC_UNROLL 4\n"));
        assert!(src.contains("#define MATVEC_THREADS 256 "));
        assert!(src.contains("#if defined(MATVEC_MIN_BLOCKS)"));
        assert!(src.contains("#elif defined(MATVEC_THREADS)"));
        assert!(src.contains("__launch_bounds__(MATVEC_THREADS, MATVEC_MIN_BLOCKS)"));
        assert!(src.contains("#ifdef MATVEC_PERSISTENT"));
        assert_eq!(Tune::default().matvec_unroll, 4);
    }
}
