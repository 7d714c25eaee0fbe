//! dlp-router: everything that decides *what* to compute but never touches device memory:
//! the token sampler shared by every backend (and, later, the DLP mini-MLP router).

pub mod sampler;

pub use sampler::{Sampler, SamplingParams};
