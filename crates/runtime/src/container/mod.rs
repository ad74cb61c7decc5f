//! placeholder
/// x
pub struct CreateOptions;
/// x
pub struct ExecOptions;
