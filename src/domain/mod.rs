//! Domain types that parse at the edge: vault and secret names, ARM resource ids, key slots and
//! the rotation tags of a managed secret. The engine handles only these, never raw strings.

pub mod arm_id;
pub mod names;
pub mod slot;

pub use arm_id::ArmResourceId;
pub use names::{SecretName, SecretVersion, VaultName};
pub use slot::Slot;
