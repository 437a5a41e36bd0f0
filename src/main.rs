//! The `acmehub` binary: parse the command line, load the config, run a command.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use acmehub::config::{Config, LogFormat, Overrides};
use acmehub::server::Server;

/// mimalloc: glibc's malloc took about a tenth of the hub's CPU under load
/// (many small allocations freed on other threads).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "acmehub",
    version,
    about = "One ACME endpoint for a whole fleet"
)]
struct Cli {
    /// TOML config file.
    #[arg(long, global = true, env = "ACMEHUB_CONFIG")]
    config: Option<PathBuf>,
    /// Address the HTTPS listener binds [default: 127.0.0.1:8443].
    #[arg(long, global = true, env = "ACMEHUB_LISTEN")]
    listen: Option<SocketAddr>,
    /// Where the database, CA and admin token live [default: ./acmehub-data].
    #[arg(long, global = true, env = "ACMEHUB_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// sqlite://FILE or postgres://... [default: sqlite://<data-dir>/acmehub.db].
    #[arg(long, global = true, env = "ACMEHUB_DATABASE_URL")]
    database_url: Option<String>,
    /// Base of every URL the hub hands out [default: https://localhost:<port>].
    #[arg(long, global = true, env = "ACMEHUB_PUBLIC_URL")]
    public_url: Option<String>,
    /// Log format.
    #[arg(long, global = true, value_enum, env = "ACMEHUB_LOG_FORMAT")]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the admin variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the hub (creates database, CA and `default` instance on first start).
    Serve,
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Manage a running hub through its admin API.
    Admin {
        #[command(flatten)]
        connection: acmehub::admin::cli::Connection,
        #[command(subcommand)]
        command: acmehub::admin::cli::AdminCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let overrides = Overrides {
        listen: cli.listen,
        data_dir: cli.data_dir,
        database_url: cli.database_url,
        public_url: cli.public_url,
        log_format: cli.log_format,
        admin_token: std::env::var("ACMEHUB_ADMIN_TOKEN").ok(),
        master_key: std::env::var("ACMEHUB_MASTER_KEY").ok(),
    };
    let config = match Config::load(cli.config.as_deref(), overrides) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("acmehub: {e}");
            return ExitCode::from(2);
        }
    };
    if !matches!(cli.command, Command::Admin { .. }) {
        acmehub::telemetry::init_logging(config.log_format);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("acmehub: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve => serve(config).await,
            Command::Admin {
                connection,
                command,
            } => acmehub::admin::cli::run(&connection, &command, &config)
                .await
                .map(|out| println!("{out}")),
            Command::Migrate => acmehub::store::Store::connect(&config.database_url)
                .await
                .map(|_| tracing::info!("database schema is up to date"))
                .map_err(|e| e.to_string()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "acmehub stopped");
            eprintln!("acmehub: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> Result<(), String> {
    let listener = Server::bind(config.listen)
        .await
        .map_err(|e| e.to_string())?;
    let hub = acmehub::bootstrap::open(config)
        .await
        .map_err(|e| e.to_string())?;
    let server = Server::start(hub, listener)
        .await
        .map_err(|e| e.to_string())?;
    shutdown_signal().await;
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
