//! `imgpipe serve | api | worker | check`: parses the configuration and hands over to `app`.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    imgpipe::memory::tune_allocator();
    let cli = imgpipe::config::Cli::parse();
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
