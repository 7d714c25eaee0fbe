//! The KV cache: per layer, K and V buffers `[slots, capacity, n_kv_heads * head_dim]`.
//! A slot holds one sequence; tokens are written at their position, so nothing is copied as a
//! sequence grows.

use crate::backend::Backend;
use crate::config::ModelConfig;
use crate::error::Result;

/// Device memory for the keys and values of `slots` sequences of up to `capacity` positions.
pub struct KvCache<B: Backend> {
    /// Per layer: keys.
    pub k: Vec<B::Buf>,
    /// Per layer: values.
    pub v: Vec<B::Buf>,
    /// Sequences the cache holds.
    pub slots: usize,
    /// Positions per sequence.
    pub capacity: usize,
    /// A [`crate::backend::unique_id`]: recorded steps that wrote this cache key on it.
    pub id: u64,
    /// Bytes per value on the backend ([`Backend::kv_value_bytes`]).
    value_bytes: usize,
}

impl<B: Backend> KvCache<B> {
    /// Allocates the cache on `backend`; `sparse` as in [`Backend::alloc_kv`].
    pub fn new(
        backend: &B,
        cfg: &ModelConfig,
        slots: usize,
        capacity: usize,
        sparse: bool,
    ) -> Result<Self> {
        let len = slots * capacity * cfg.kv_dim();
        let mut k = Vec::with_capacity(cfg.num_layers);
        let mut v = Vec::with_capacity(cfg.num_layers);
        for _ in 0..cfg.num_layers {
            k.push(backend.alloc_kv(len, sparse)?);
            v.push(backend.alloc_kv(len, sparse)?);
        }
        Ok(KvCache {
            k,
            v,
            slots,
            capacity,
            id: crate::backend::unique_id(),
            value_bytes: backend.kv_value_bytes(),
        })
    }

    /// Lets the backend reclaim the first `positions` positions of `slot` (its sequence has
    /// ended; see [`Backend::release_kv`]).
    pub fn release_slot(&mut self, backend: &B, cfg: &ModelConfig, slot: usize, positions: usize) {
        let d = cfg.kv_dim();
        let (from, len) = (slot * self.capacity * d, positions.min(self.capacity) * d);
        for buf in self.k.iter_mut().chain(self.v.iter_mut()) {
            backend.release_kv(buf, from, len);
        }
    }

    /// Copies the first `positions` positions of slot `from` into slot `to`, every layer's keys
    /// and values: a shared prefix ([`crate::prefix`]).
    ///
    /// # Errors
    /// A slot or length out of range, or a backend without [`Backend::copy_kv`].
    pub fn copy_prefix(
        &mut self,
        backend: &B,
        cfg: &ModelConfig,
        from: usize,
        to: usize,
        positions: usize,
    ) -> Result<()> {
        if from == to || from.max(to) >= self.slots || positions > self.capacity {
            return Err(crate::error::Error::invalid(format!(
                "KV cache: copying {positions} positions from slot {from} to slot {to} of {} slots of {} positions",
                self.slots, self.capacity
            )));
        }
        let d = cfg.kv_dim();
        let (src, dst, len) = (
            from * self.capacity * d,
            to * self.capacity * d,
            positions * d,
        );
        for buf in self.k.iter_mut().chain(self.v.iter_mut()) {
            backend.copy_kv(buf, src, dst, len)?;
        }
        Ok(())
    }

    /// Bytes of device memory the cache holds.
    pub fn bytes(&self, cfg: &ModelConfig) -> usize {
        2 * cfg.num_layers * self.slots * self.capacity * cfg.kv_dim() * self.value_bytes
    }
}
