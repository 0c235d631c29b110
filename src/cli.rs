//! The command line: `serve` (what the Functions host runs), `rotate` (the engine from a
//! terminal, and `rotate --repair`, which only a person at a terminal can run: the HTTP
//! surface has no repair), `sweep` (the timer's sweep from a terminal), `status` (every
//! managed secret's state and problems, read-only), `onboard` and `doctor` (an operator's set-up
//! and checks, under their own credentials), `demo` (everything offline against the local
//! stand-in of Azure).

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
    /// Sweep now, as the timer does: list the vaults and rotate every due secret, most urgent
    /// first, within KEYFLIP_SWEEP_BUDGET_SECONDS.
    Sweep {
        /// Only these vaults (repeatable; default: every vault of KEYFLIP_VAULTS).
        #[arg(long)]
        vault: Vec<String>,
        /// Plan only: say what would be rotated; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the report as JSON (the timer's ReturnValue).
        #[arg(long)]
        json: bool,
    },
    /// Show every managed secret of the served vaults: provider, resource, active slot, version
    /// age, expiry, next due time, pending state and problems, as an aligned table (problems
    /// and their fixes at the end). Reads listings only, never a secret value, and changes
    /// nothing. Exit code 1 when a served vault could not be listed.
    Status {
        /// Show one vault (one of KEYFLIP_VAULTS); every served vault is still listed, to find
        /// resources named by two secrets.
        #[arg(long)]
        vault: Option<String>,
        /// Print the report as JSON (the shape of GET /api/status).
        #[arg(long)]
        json: bool,
    },
    /// Bring an existing key under management: write the secret's first managed version (the
    /// resource's key, CredentialId, ProviderAddress, ValidityPeriodDays, exp) under your own
    /// credentials; or, with --all-in-scope, propose one for every AI services account of the
    /// vault's allowed scopes that no managed secret names.
    Onboard {
        /// Vault name (one of KEYFLIP_VAULTS).
        #[arg(long)]
        vault: String,
        /// Secret name to write.
        #[arg(
            long,
            required_unless_present = "all_in_scope",
            conflicts_with = "all_in_scope"
        )]
        secret: Option<String>,
        /// ARM id of the resource whose key the secret holds.
        #[arg(
            long,
            required_unless_present = "all_in_scope",
            conflicts_with = "all_in_scope"
        )]
        resource_id: Option<String>,
        /// ValidityPeriodDays: the lifetime of each version.
        #[arg(long, default_value_t = 60)]
        validity_days: u32,
        /// Replace a secret that is already managed (under its rotation lease), or an unmanaged
        /// one holding neither of the resource's keys.
        #[arg(long, conflicts_with = "all_in_scope")]
        force: bool,
        /// Manage a resource without a trustworthy data-plane check (writes VerifyKey=false).
        #[arg(long, conflicts_with = "all_in_scope")]
        no_verify: bool,
        /// Propose a secret for every AI services account in the vault's allowed scopes.
        #[arg(long)]
        all_in_scope: bool,
        /// With --all-in-scope: write the proposed secrets (without it, nothing is written).
        #[arg(long, requires = "all_in_scope")]
        yes: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check the set-up without changing anything keyflip relies on: configuration, tokens,
    /// vault permissions and access model, every managed secret (read, listKeys, proof of
    /// possession, the data-plane check against a wrong key), the lease storage and the Event
    /// Grid subscription; prints each failure with its fix. Exit code 1 when a check fails.
    Doctor {
        /// Object id of the app's managed identity, to check its role assignments too.
        #[arg(long)]
        app_principal_id: Option<String>,
        /// Print the report as JSON.
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
