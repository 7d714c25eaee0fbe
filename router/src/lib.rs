//! dlp-router: everything that decides *which adapters* serve a text but never touches device
//! memory: the DLP mini-MLP router with its selection (top-p / top-k fusion weights), sentence
//! segmentation, training (feature `train`, burn) and evaluation (confusion heatmap with
//! feature `plot`). Its decisions reach the engine as data (mixtures); the token sampler lives
//! in the engine (`dlp_engine::sampler`).
//!
//! Routing in three calls:
//!
//! ```no_run
//! use dlp_router::{segment::split_sentences, Router, SelectConfig};
//! let router = Router::load("routers/tasks")?;
//! let text = "Is the sky blue? Compute 3 + 4.";
//! let ranges = split_sentences(text);
//! let sentences: Vec<&str> = ranges.iter().map(|r| &text[r.clone()]).collect();
//! for mix in router.route(&sentences, &SelectConfig::default()) {
//!     for (label, weight) in mix {
//!         println!("{} {weight:.2}", router.labels()[label]);
//!     }
//! }
//! # Ok::<(), dlp_router::RouterError>(())
//! ```

pub mod config;
pub mod data;
mod error;
#[cfg(feature = "train")]
pub mod extend;
#[cfg(feature = "plot")]
pub mod heatmap;
pub mod labels;
pub mod metrics;
pub mod model;
pub mod segment;
pub mod select;
#[cfg(feature = "train")]
pub mod train;

pub use config::RouterConfig;
pub use error::RouterError;
pub use labels::match_labels;
pub use model::{Router, RouterWeights};
pub use select::{select, FusionWeights, SelectConfig};
