//! The command line: `serve` (what the Functions host runs), `rotate` (the engine from a
//! terminal, and `rotate --repair`, which only a person at a terminal can run: the HTTP
//! surface has no repair), `demo` (everything offline against the local stand-in of Azure).

use clap::{Parser, Subcommand};

/// Rotates the API keys of Azure resources with the dual-key pattern.
#[derive(Debug, Parser)]
#[command(name = "keyflip", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the Azure Functions custom handler on 127.0.0.1.
    Serve {
        /// Port to listen on (default: FUNCTIONS_CUSTOMHANDLER_PORT, set by the Functions host).
        #[arg(long)]
        port: Option<u16>,
    },
    /// Rotate one secret now, with the same engine the handler uses.
    Rotate {
        /// Vault name (one of KEYFLIP_VAULTS).
        #[arg(long)]
        vault: String,
        /// Secret name.
        #[arg(long)]
        secret: String,
        /// Plan only: change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Rotate even inside the dwell.
        #[arg(long)]
        force: bool,
        /// Regenerate nothing: publish the active slot's current key as a new version, for a
        /// secret whose value is neither of the resource's keys (`failed:unknown-key`). Runs
        /// under your own credentials; refused when the CredentialId tag lies.
        #[arg(long, conflicts_with = "force")]
        repair: bool,
        /// A leaked key: publish the idle slot as usual, then regenerate the formerly active
        /// slot at once (inside the dwell: consumers still holding the leaked key fail until
        /// they reload the secret). Finishes an interrupted revocation too.
        #[arg(long, conflicts_with_all = ["repair", "force"])]
        revoke_active: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the whole product offline against the local stand-in of Azure.
    Demo {
        /// Print one JSON object with each step's result.
        #[arg(long)]
        json: bool,
    },
}
