//! `storage-node --config FILE`: runs one storage node until SIGINT or SIGTERM.
//! `storage-node --config FILE --inspect`: counts what a stopped node holds, as JSON.

use clap::Parser;
use dmpstore_storage_node::config::NodeConfig;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "storage-node", about = "dmpstore storage node")]
struct Args {
    /// Path of the node's TOML configuration (see deploy/storage-node.example.toml).
    #[arg(long)]
    config: PathBuf,
    /// Print exact counts of the (stopped) node's chunks, indexed versions, metadata records
    /// and scheduled drops as JSON, and exit.
    #[arg(long)]
    inspect: bool,
    /// With --inspect: also count the records of this metadata partition.
    #[arg(long, requires = "inspect")]
    partition: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    dmpstore_storage_node::logging::init("info");
    let args = Args::parse();
    let config = NodeConfig::load(&args.config)?;
    if args.inspect {
        let store = dmpstore_storage_node::store::Store::open(&config.data_dir)?;
        let mut report = serde_json::to_value(store.inspect()?)?;
        if let Some(p) = &args.partition {
            report["partition_records"] = store.count_partition(p)?.into();
        }
        println!("{report}");
        return Ok(());
    }
    let listener = dmpstore_storage_node::server::bind_retrying(config.listen_addr).await?;
    dmpstore_storage_node::server::run_until_signal(listener, config).await
}
