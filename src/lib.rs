//! keyflip rotates the API keys of Azure resources with the dual-key pattern, as an Azure
//! Functions custom handler: it regenerates only the idle key, verifies the new key on the
//! resource's data plane, and publishes it as a new Key Vault secret version whose
//! `CredentialId` tag flips the active-key pointer.
//!
//! # Layout
//! For now the crate holds only the command-line entry point's text; the handler, the rotation
//! engine, the providers and the Key Vault store arrive with the next issues
//! (see `../shared/DESIGN.md` for the design).

/// The version of this build.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The command-line usage text.
pub fn usage() -> String {
    format!(
        "keyflip {VERSION}\n\
         Rotates the API keys of Azure resources with the dual-key pattern.\n\n\
         Usage: keyflip <command>\n\n\
         Commands:\n  \
           --version   print the version\n  \
           --help      print this text\n\n\
         The serve, rotate and demo commands are not built yet.\n"
    )
}

pub mod domain;
pub mod triggers;
