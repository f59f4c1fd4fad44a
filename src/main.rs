//! `imgpipe serve | api | worker | check | keys`: parses the configuration and
//! hands over to `app`; `submit | status | download | watch` go to the client, `cli`.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    imgpipe::memory::tune_allocator();
    let cli = imgpipe::config::Cli::parse();
    if let Some(client) = cli.command.client() {
        return std::process::ExitCode::from(imgpipe::cli::run(client).await);
    }
    imgpipe::logging::init(cli.config.log_format);
    match imgpipe::app::run(cli.command, cli.config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            eprintln!("imgpipe: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
