//! The command line: `portcullis [--config FILE] [--data-dir DIR] COMMAND`, as clap parses it.
//! What each command does is in [`crate::commands`].

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use portcullis_store::Role;

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "Privileged session management gateway for RDP and VNC"
)]
pub struct Cli {
    /// TOML configuration file (optional: every setting has a default).
    #[arg(long, global = true, env = "PORTCULLIS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (overrides the configuration file).
    #[arg(long, global = true, env = "PORTCULLIS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve,
    /// Manage gateway users.
    #[command(subcommand)]
    User(UserCmd),
    /// Manage targets.
    #[command(subcommand)]
    Target(TargetCmd),
    /// Manage grants (which user may open which target).
    #[command(subcommand)]
    Grant(GrantCmd),
    /// Session recordings: list, verify, the signing key.
    #[command(subcommand)]
    Recording(RecordingCmd),
    /// The policy saved in the data directory (what the web UI and the API edit).
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// The audit trail: check its hash chain offline, or print it.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// The secret key that seals target credentials and the recording signing key.
    #[command(subcommand)]
    Secrets(SecretsCmd),
    /// The store of users, targets, grants, API tokens and the saved policy.
    #[command(subcommand)]
    Store(StoreCmd),
}

#[derive(Subcommand)]
pub enum StoreCmd {
    /// Copy the data directory's embedded store into an empty PostgreSQL store, to move to
    /// several gateways on one database (stop the gateway first; the source is left as it was).
    /// Target credentials stay sealed under the secret key, which every gateway then needs.
    Migrate {
        /// Where from: `sled` (the data directory's embedded store; the only source).
        #[arg(long, value_name = "sled")]
        from: String,
        /// Where to: `postgres://user@host:port/database`, or `postgres` for the `[store]` of the
        /// configuration (or PORTCULLIS_STORE_URL): better for a password, which a command line
        /// shows to every local user.
        #[arg(long, value_name = "URL")]
        to: String,
    },
}

#[derive(Subcommand)]
pub enum SecretsCmd {
    /// Replace the secret key with a new random one and seal everything again under it (the
    /// gateway must be stopped). With the key in PORTCULLIS_SECRET_KEY, the new key is read from
    /// PORTCULLIS_NEW_SECRET_KEY instead; put it in PORTCULLIS_SECRET_KEY afterwards.
    RotateKey,
}

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Check the whole hash chain and its seals. Exit status: 0 intact, every record vouched
    /// for by a seal made when it was written; 1 not intact (names the first bad record); 2 the
    /// chain and seals check out, but records were sealed as found (trusted as they were found
    /// at a start: a trail from before sealing, a crash, or a change while the gateway was down).
    Verify {
        /// The audit directory (default: `[audit] dir` of the configuration).
        dir: Option<PathBuf>,
        /// The gateway's public key (a file, or 64 hex digits) to check the seals with
        /// (default: this gateway's signing key).
        #[arg(long)]
        public_key: Option<String>,
        /// Check every gateway's chain as mirrored in the cluster's store instead (each chain
        /// whole, sealed with the cluster's key, every record naming its gateway).
        #[arg(long, conflicts_with = "dir")]
        cluster: bool,
    },
    /// Print the newest records as JSON lines (the gateway may be running).
    Show {
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Only this actor's records.
        #[arg(long)]
        actor: Option<String>,
        /// Only records of these kinds (comma-separated).
        #[arg(long)]
        kind: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum PolicyCmd {
    /// Print the policy the gateway would start with, as TOML.
    Show,
    /// Check a TOML policy file: exit status 1 naming the rule and field at fault.
    Check { file: PathBuf },
    /// Save a TOML policy file as the policy (replaces the one edited in the web UI).
    Import { file: PathBuf },
}

#[derive(Subcommand)]
pub enum RecordingCmd {
    /// Check a recording folder offline (an unpacked export, or one under the data directory):
    /// every byte against the signed hash chain, and that it is closed. Exit status: 0 complete
    /// and intact; 1 altered, damaged or cut (names what); 2 incomplete (the gateway stopped
    /// while recording); 3 live (still being written); 4 the only key at hand came with the
    /// recording (nothing proven).
    Verify {
        /// The recording's folder (holds manifest.jsonl).
        dir: PathBuf,
        /// The gateway's public key you trust: 64 hex digits, or a file holding them (obtained
        /// from the gateway, not from the export). Default: this gateway's own key; without
        /// either, the key shipped with the recording is used and the result is not trusted.
        #[arg(long)]
        public_key: Option<String>,
    },
    /// List the recordings in the data directory.
    List,
    /// Print the public half of the key that signs recordings.
    PublicKey,
}

#[derive(Subcommand)]
pub enum UserCmd {
    /// Add a user; the password is read from standard input (one line) or --password-env.
    Add {
        name: String,
        #[arg(long, default_value = "user")]
        role: Role,
        /// Read the password from this environment variable instead of standard input.
        #[arg(long)]
        password_env: Option<String>,
    },
    /// List users.
    List,
    /// Delete a user and their grants.
    Delete { name: String },
}

#[derive(Subcommand)]
pub enum TargetCmd {
    /// Add a target; its password is read from standard input (one line) or --password-env.
    Add {
        name: String,
        /// host:port of the VNC or RDP server.
        #[arg(long)]
        address: String,
        /// Protocol: vnc or rdp.
        #[arg(long, default_value = "vnc")]
        kind: portcullis_store::TargetKind,
        /// RDP: the account the gateway logs in with, `user` or `DOMAIN\\user`.
        #[arg(long, default_value = "")]
        account: String,
        #[arg(long, default_value = "")]
        description: String,
        /// A label the policy can refer to (`label:NAME`); repeat for several.
        #[arg(long = "label", value_name = "NAME")]
        labels: Vec<String>,
        /// Read the password from this environment variable instead of standard input.
        #[arg(long)]
        password_env: Option<String>,
    },
    /// List targets (never their secrets).
    List,
    /// Delete a target and its grants.
    Delete { name: String },
    /// Show one target, with an RDP target's identity (pinned certificate, NLA).
    Show { name: String },
    /// Set an RDP target's identity ahead of time (audited): the certificate's SHA-256 it must
    /// present, and whether it must select NLA.
    Identity {
        name: String,
        /// SHA-256 of the target's TLS certificate (64 hex digits, ':' separators allowed).
        #[arg(long, conflicts_with = "forget_certificate")]
        tls_sha256: Option<String>,
        /// Forget the pinned certificate: the next connection pins what the target presents.
        #[arg(long)]
        forget_certificate: bool,
        /// Refuse the target unless it selects NLA (CredSSP): true or false.
        #[arg(long)]
        require_nla: Option<bool>,
        /// Verify the target against this CA bundle (absolute path of a PEM file) and the host
        /// name of its address, instead of the pinned certificate.
        #[arg(long, conflicts_with = "no_tls_ca_file")]
        tls_ca_file: Option<String>,
        /// Stop verifying against a CA bundle: back to the pinned certificate.
        #[arg(long)]
        no_tls_ca_file: bool,
    },
    /// After a refusal, accept an RDP target's new certificate and/or its answering without NLA
    /// (audited).
    Accept {
        name: String,
        /// The certificate to accept, as the refusal named it (`presented`).
        #[arg(long)]
        sha256: Option<String>,
        /// Accept the target without NLA although it did NLA before.
        #[arg(long)]
        allow_without_nla: bool,
    },
}

#[derive(Subcommand)]
pub enum GrantCmd {
    /// Allow a user to open a target.
    Add { user: String, target: String },
    /// List grants.
    List,
    /// Revoke a grant.
    Delete { user: String, target: String },
}
