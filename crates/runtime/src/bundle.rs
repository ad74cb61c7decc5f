//! placeholder
/// A bundle.
pub struct Bundle;
