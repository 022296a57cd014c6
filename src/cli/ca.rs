//! `rekey ca begin|switch|finish|abort|status`: the stages of a CA rotation (each a writing run
//! with the writing flags) and its status.

use std::path::PathBuf;

use rekey::cmd::ca::{Begin, KeyType, StageCommand};
use rekey::cmd::{self, Invocation};
use rekey::exit::UsageError;

use super::args::{Common, StatusFormat, WriteArgs};
use super::run::Clock;

/// The key type of a new CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyTypeArg {
    P256,
    P384,
    Ed25519,
    Rsa2048,
    Rsa3072,
    Rsa4096,
}

impl KeyTypeArg {
    fn key_type(self) -> KeyType {
        match self {
            KeyTypeArg::P256 => KeyType::P256,
            KeyTypeArg::P384 => KeyType::P384,
            KeyTypeArg::Ed25519 => KeyType::Ed25519,
            KeyTypeArg::Rsa2048 => KeyType::Rsa2048,
            KeyTypeArg::Rsa3072 => KeyType::Rsa3072,
            KeyTypeArg::Rsa4096 => KeyType::Rsa4096,
        }
    }
}

/// The stages of a CA rotation.
#[derive(Debug, clap::Subcommand)]
pub enum CaAction {
    /// Make (or import) the next CA into ca/next/, trusted beside the current one: ca/bundle.pem
    /// and every identity's ca.pem become old + new. Nothing is signed by it yet.
    Begin {
        #[command(flatten)]
        common: Common,
        /// The new CA's key type (default: the current CA's).
        #[arg(long, value_enum, value_name = "T")]
        key_type: Option<KeyTypeArg>,
        /// The new CA's validity in days (default: the policy's ca_validity_days).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=36500))]
        validity_days: Option<u32>,
        /// The new CA's common name (default: the current one's with the start date).
        #[arg(long, value_name = "S")]
        subject: Option<String>,
        /// Import this CA certificate (PEM) instead of making one; needs --import-key.
        #[arg(long, value_name = "F", requires = "import_key", conflicts_with_all = ["key_type", "validity_days", "subject"])]
        import_cert: Option<PathBuf>,
        /// The imported CA's private key (PEM); needs --import-cert.
        #[arg(long, value_name = "F", requires = "import_cert")]
        import_key: Option<PathBuf>,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// The next CA signs from now on; the current one moves to ca/previous/ and stays trusted.
    /// Refused while a hook of begin is pending or failed, or before ca_trust_settle_hours.
    Switch {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Stop trusting the previous CA: its certificate to ca/retired/, its key removed (every
    /// copy in .rekey/ too), the bundle and every ca.pem the CA alone. Refused while anything
    /// under nodes/ is signed by the previous CA.
    Finish {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Undo begin (before switch): ca/next/ removed, the bundle and every ca.pem the CA alone.
    Abort {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// The stage of the CA rotation and its CAs.
    Status {
        #[arg(long, value_name = "DIR", default_value = ".")]
        root: PathBuf,
        #[arg(long, value_enum, default_value_t = StatusFormat::Table)]
        format: StatusFormat,
    },
}

impl CaAction {
    pub fn invocation(self, clock: Clock) -> Result<Invocation, UsageError> {
        let (common, write, stage) = match self {
            CaAction::Status { root, format } => {
                let format = match format {
                    StatusFormat::Json => cmd::ca_status::Format::Json,
                    StatusFormat::Table => cmd::ca_status::Format::Table,
                };
                return Ok(Invocation::CaStatus(cmd::ca_status::Options {
                    root,
                    format,
                }));
            }
            CaAction::Begin {
                common,
                key_type,
                validity_days,
                subject,
                import_cert,
                import_key,
                write,
            } => {
                let begin = Begin {
                    key_type: key_type.map(KeyTypeArg::key_type),
                    validity_days,
                    subject,
                    import: import_cert.zip(import_key),
                };
                (common, write, StageCommand::Begin(begin))
            }
            CaAction::Switch { common, write } => (common, write, StageCommand::Switch),
            CaAction::Finish { common, write } => (common, write, StageCommand::Finish),
            CaAction::Abort { common, write } => (common, write, StageCommand::Abort),
        };
        write.check_format(false)?;
        Ok(Invocation::CaStage(cmd::ca::Options {
            root: common.root,
            stage,
            as_of: clock.run_date(common.as_of),
            write: write.settings(clock),
        }))
    }
}
