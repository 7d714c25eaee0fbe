//! Constrained decoding: a grammar that says which tokens may come next (structured output:
//! a JSON schema, a regular expression, a list of choices). The scheduler masks every other
//! token before sampling and reports each token sampled; [`crate::structured`] implements it
//! with llguidance.

/// The tokens a sequence may generate next, step by step.
pub trait TokenConstraint: Send {
    /// Sets the logit of every token that may not come next to `-inf` (`logits`: `[vocab]`,
    /// after bias and penalties). When the grammar is complete and nothing may follow, only
    /// end-of-sequence tokens stay allowed.
    ///
    /// # Errors
    /// The grammar cannot go on (an internal limit of its parser, or a state no token
    /// leaves): the sequence ends with [`crate::generate::FinishReason::Grammar`].
    fn mask(&mut self, logits: &mut [f32]) -> Result<(), String>;

    /// Advances past `token`, which [`TokenConstraint::mask`] allowed.
    ///
    /// # Errors
    /// As for `mask`.
    fn accept(&mut self, token: u32) -> Result<(), String>;

    /// The grammar is complete and admits nothing more: the sequence ends here (as at an
    /// end-of-sequence token) without another step.
    fn finished(&self) -> bool;

    /// A copy in the same state (one per choice of a request).
    fn boxed_clone(&self) -> Box<dyn TokenConstraint>;
}

/// A request's constraint, owned by its [`crate::generate::GenRequest`].
pub struct Constraint(pub Box<dyn TokenConstraint>);

impl Clone for Constraint {
    fn clone(&self) -> Self {
        Self(self.0.boxed_clone())
    }
}

impl std::fmt::Debug for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Constraint")
    }
}
