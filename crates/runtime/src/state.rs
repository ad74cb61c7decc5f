//! placeholder
/// x
pub struct RuntimeRoot;
/// x
pub struct ContainerState;
/// x
pub enum Status {}
