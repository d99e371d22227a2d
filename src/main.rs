//! The `tagflow` binary: parse the command line, set up logging, run the chosen command.

use clap::Parser;
use std::process::ExitCode;
use tagflow::config::{Cli, Command, Config};

/// Sources and HTTP handlers allocate posts and mutations on their threads and the store's writer
/// frees them on its own: glibc's malloc serializes those cross-thread frees on arena locks, which
/// made allocation a third of the writer's time and halved the durable import rate. mimalloc frees
/// to the owning thread's heap without a lock.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Import(args) => tagflow::import::run(args),
        Command::Analyze(args) => tagflow::analyze::run(args),
        Command::Export(args) => tagflow::export::run(args),
        Command::Healthcheck(args) => tagflow::app::healthcheck(args.port),
        Command::Verify(args) => tagflow::admin::verify(args),
        Command::Backup(args) => tagflow::admin::backup(args),
        Command::Restore(args) => tagflow::admin::restore(args),
        Command::Migrate(args) => tagflow::admin::migrate(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Once, on stderr (where the logs go too), the whole cause chain on one line (`{:#}`).
            eprintln!("tagflow: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: tagflow::config::ServeArgs) -> anyhow::Result<()> {
    let config = Config::from_args(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("tagflow").build()?;
    runtime.block_on(async {
        let app = tagflow::app::Application::build(config).await?;
        app.run_until_stopped().await
    })
}
