//! The client commands' arguments (`imgpipe submit | status | download |
//! watch`): which server, which key, what to send, where results go.

use std::path::PathBuf;

use clap::Args;

/// Where the server is and who is asking; how to print.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct Server {
    /// The imgpipe server's base URL
    #[arg(long, env = "IMGPIPE_SERVER", default_value = "http://127.0.0.1:8000")]
    pub server: String,
    /// An API key (when the server requires keys)
    #[arg(long, env = "IMGPIPE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Print one JSON object per event on standard output instead of bars or lines
    #[arg(long)]
    pub json: bool,
}

/// Where results go: a ZIP per job (`--out`) or files under a directory.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct Output {
    /// Write the results as a ZIP here (several jobs: FILE-2.zip, FILE-3.zip, …)
    #[arg(long, conflicts_with = "out_dir")]
    pub out: Option<PathBuf>,
    /// Write each result under this directory, keeping the inputs' relative paths
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct SubmitArgs {
    /// Images and folders (searched recursively; files that are not images are skipped)
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// The chain of operations, e.g. resize:1280x720:fit,sharpen (see GET /filters)
    #[arg(long)]
    pub ops: String,
    /// Output format: jpeg, png or webp (default: each input's own)
    #[arg(long = "format", value_name = "FORMAT")]
    pub output_format: Option<String>,
    /// JPEG/WebP quality, 1-100 (default: Pillow's, 75 for JPEG and 80 for WebP)
    #[arg(long)]
    pub quality: Option<u8>,
    #[command(flatten)]
    pub output: Output,
    #[command(flatten)]
    pub server: Server,
}

#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct JobArgs {
    /// Job ids (as `imgpipe submit` printed them)
    #[arg(required = true)]
    pub jobs: Vec<String>,
    #[command(flatten)]
    pub server: Server,
}

#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct FetchArgs {
    /// Job ids (as `imgpipe submit` printed them)
    #[arg(required = true)]
    pub jobs: Vec<String>,
    #[command(flatten)]
    pub output: Output,
    #[command(flatten)]
    pub server: Server,
}
