//! `imgpipe serve | api | worker | check | keys`: parses the configuration,
//! starts the async runtime and hands over to `app`; `submit | status |
//! download | watch` go to the client, `cli`.

use clap::Parser;

fn main() -> std::process::ExitCode {
    imgpipe::memory::tune_allocator();
    let cli = imgpipe::config::Cli::parse();
    // Built here rather than by `#[tokio::main]`, whose runtime has a thread
    // per CPU: see `Config::runtime_threads`.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(usize::from(cli.config.runtime_threads))
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("imgpipe: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli))
}

async fn run(cli: imgpipe::config::Cli) -> std::process::ExitCode {
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
