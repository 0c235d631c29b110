//! Domain types that parse at the edge: vault and secret names, ARM resource ids, key slots and
//! the rotation tags of a managed secret. The engine handles only these, never raw strings.

pub mod arm_id;
pub mod key;
pub mod names;
pub mod scopes;
pub mod slot;
pub mod tags;
pub mod untrusted;

pub use arm_id::{ArmResourceId, Scope};
pub use key::ApiKey;
pub use names::{SecretName, SecretVersion, VaultName};
pub use scopes::{AllowedScope, AllowedScopes};
pub use slot::Slot;
