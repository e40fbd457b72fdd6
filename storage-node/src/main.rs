//! `storage-node --config FILE`: runs one storage node until SIGINT or SIGTERM.

use clap::Parser;
use dmpstore_storage_node::config::NodeConfig;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "storage-node", about = "dmpstore storage node")]
struct Args {
    /// Path of the node's TOML configuration (see deploy/storage-node.example.toml).
    #[arg(long)]
    config: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    dmpstore_storage_node::logging::init("info");
    let args = Args::parse();
    let config = NodeConfig::load(&args.config)?;
    let listener = dmpstore_storage_node::server::bind_retrying(config.listen_addr).await?;
    dmpstore_storage_node::server::run_until_signal(listener, config).await
}
