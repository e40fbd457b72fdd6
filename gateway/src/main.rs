//! `gateway`: the S3 gateway (`serve`) and the embedded single-machine cluster (`dev`).

use clap::{Parser, Subcommand};
use dmpstore_common::ids::NodeId;
use dmpstore_common::rpc::Request;
use dmpstore_gateway::admin;
use dmpstore_gateway::config::{GatewayConfig, TlsConfig};
use dmpstore_gateway::dev::DevOptions;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Without RUST_LOG: info, minus s3s's own ERROR lines for every failed operation and every 5xx
/// (a 404 or a 501 is not an error a human must look at). The gateway logs failures itself where
/// they become S3 errors, at ERROR only for internal faults (gateway/src/error.rs).
const DEFAULT_LOG_FILTER: &str = "info,s3s::ops=off,s3s::http::de=off,s3s::service=off";

#[derive(Debug, Parser)]
#[command(name = "gateway", about = "dmpstore S3 gateway")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the embedded cluster: one gateway and 6 storage nodes (RS(4,2)) in this process.
    Dev {
        /// Directory for all data; running again on the same directory serves the same data.
        #[arg(long)]
        data_dir: PathBuf,
        /// Address of the S3 endpoint.
        #[arg(long, default_value = "127.0.0.1:9000")]
        s3_addr: SocketAddr,
        #[arg(long, default_value = "dmpstore-dev")]
        access_key: String,
        #[arg(long, default_value = "dmpstore-dev-secret")]
        secret_key: String,
        #[arg(long, default_value = "us-east-1")]
        region: String,
        /// Address of the web console; `off` for none.
        #[arg(long, default_value = "127.0.0.1:9001", value_parser = parse_console_addr)]
        console_addr: ConsoleAddr,
        /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The PEM private key of --tls-cert.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
    /// Run a gateway of a multi-process cluster.
    Serve {
        /// Path of the gateway's TOML configuration (see deploy/gateway.example.toml).
        #[arg(long)]
        config: PathBuf,
    },
    /// Operate a cluster (uses a gateway config for the node list and the cluster secret).
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Every node's state and last heartbeat, repair progress, the last failure's T_FD / T_FR /
    /// T_RT, and P_FT (the estimated probability of a year without data loss).
    Status {
        #[arg(long)]
        config: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Share of nodes failing per year that P_FT assumes (0.05 = 5 %).
        #[arg(long, default_value_t = dmpstore_gateway::admin::DEFAULT_ANNUAL_FAILURE_RATE, value_parser = parse_rate)]
        annual_failure_rate: f64,
    },
    /// Start a scrub pass on every node now (re-read every chunk, rebuild corrupt ones).
    Scrub {
        #[arg(long)]
        config: PathBuf,
        /// Follow it until done, with a progress bar and ETA.
        #[arg(long)]
        wait: bool,
        /// With --wait: give up after this many seconds.
        #[arg(long, default_value_t = 86_400)]
        timeout_secs: u64,
    },
    /// Start an anti-entropy pass on every node now (each partition's owner brings stale or
    /// missing metadata replicas up to date).
    AntiEntropy {
        #[arg(long)]
        config: PathBuf,
    },
    /// Move every chunk off node N (it keeps serving reads meanwhile; no new chunks go to it);
    /// with --undo, stop. For a dead node this rebuilds its chunks now, without waiting for
    /// the repair delay.
    Drain {
        #[arg(long)]
        config: PathBuf,
        /// The node, as status prints it (`n2`) or its number (`2`).
        #[arg(long, value_parser = parse_node)]
        node: u32,
        #[arg(long)]
        undo: bool,
        /// Follow it until done, with a progress bar and ETA.
        #[arg(long)]
        wait: bool,
        /// With --wait: give up after this many seconds.
        #[arg(long, default_value_t = 86_400)]
        timeout_secs: u64,
    },
    /// A drill: cut node N off from the cluster for SECS seconds (it answers no one and reaches
    /// no one, as in a network partition); 0 reconnects it now.
    Isolate {
        #[arg(long)]
        config: PathBuf,
        /// The node, as status prints it (`n2`) or its number (`2`).
        #[arg(long, value_parser = parse_node)]
        node: u32,
        #[arg(long)]
        secs: u64,
    },
    /// Add node N (already running, with the cluster secret) at ADDR as a data node: every
    /// node installs the new cluster map and moves to N the chunks whose placement moved.
    Add {
        #[arg(long)]
        config: PathBuf,
        /// The node, as status prints it (`n2`) or its number (`2`).
        #[arg(long, value_parser = parse_node)]
        node: u32,
        #[arg(long)]
        addr: String,
        #[arg(long, default_value = "default")]
        zone: String,
        #[arg(long, default_value_t = 1)]
        weight: u32,
    },
    /// Remove node N (dead or alive) for good: drain its chunks, move its metadata replicas
    /// to other nodes, and drop it from the cluster map, printing progress. Resumes if run
    /// again after an interruption.
    Remove {
        #[arg(long)]
        config: PathBuf,
        /// The node, as status prints it (`n2`) or its number (`2`).
        #[arg(long, value_parser = parse_node)]
        node: u32,
        /// Give up after this many seconds (the steps done stay done).
        #[arg(long, default_value_t = 3600)]
        timeout_secs: u64,
    },
    /// Node N was replaced by an empty one (same id and address): every node scans for the
    /// chunks and metadata N should hold and writes them to it.
    Replace {
        #[arg(long)]
        config: PathBuf,
        /// The node, as status prints it (`n2`) or its number (`2`).
        #[arg(long, value_parser = parse_node)]
        node: u32,
        /// Follow it until done, with a progress bar and ETA.
        #[arg(long)]
        wait: bool,
        /// With --wait: give up after this many seconds.
        #[arg(long, default_value_t = 86_400)]
        timeout_secs: u64,
    },
    /// The internal RPC's certificates (mutual TLS): a cluster CA, and a certificate from it
    /// for every storage node and gateway. Needs no config.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Users: each owns the buckets it creates and signs with its access keys.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// A user's access keys.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
}

#[derive(Debug, Subcommand)]
enum CertsCommand {
    /// Create a cluster CA in DIR (ca.pem, ca.key) and certificates for nodes 1..=N
    /// (node-ID.pem/.key) and gateways 1..=G (gateway-ID.pem/.key); prints each process's
    /// `[rpc_tls]` section.
    Init {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 0)]
        nodes: u32,
        #[arg(long, default_value_t = 0)]
        gateways: u32,
    },
    /// Issue a new certificate from the CA in DIR for one node or one gateway (a new process,
    /// or a renewal: running processes load the new files within seconds).
    Issue {
        #[arg(long)]
        dir: PathBuf,
        /// A storage node, as status prints it (`n2`) or its number.
        #[arg(long, value_parser = parse_node, required_unless_present = "gateway", conflicts_with = "gateway")]
        node: Option<u32>,
        /// A gateway's (or an operator's) name: letters, digits, '-' and '_'.
        #[arg(long)]
        gateway: Option<String>,
    },
}

/// A node id as the product prints it (`n2`) or as a number (`2`).
fn parse_node(text: &str) -> Result<u32, String> {
    text.strip_prefix('n')
        .unwrap_or(text)
        .parse::<u32>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| {
            format!("{text:?} is not a node: give it as status prints it (n2) or as a number (2)")
        })
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user with one access key; prints `access_key` and `secret_key` (the only time
    /// the secret is shown).
    Create {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long)]
        json: bool,
    },
    List {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Delete a user and its keys (refused while it owns buckets).
    Delete {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Create another access key for a user, optionally limited.
    Create {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        user: String,
        /// The key may only read (GET, HEAD, listings).
        #[arg(long)]
        read_only: bool,
        /// BUCKET or BUCKET/PREFIX the key is limited to (repeat for several).
        #[arg(long = "prefix")]
        prefixes: Vec<String>,
        /// The key stops working this many seconds from now.
        #[arg(long)]
        expires_in_secs: Option<u64>,
        #[arg(long)]
        json: bool,
    },
    List {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        user: String,
        #[arg(long)]
        json: bool,
    },
    /// Stop a key from authenticating anything (until `key enable`).
    Disable {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        user: String,
        #[arg(long)]
        access_key: String,
    },
    Enable {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        user: String,
        #[arg(long)]
        access_key: String,
    },
    Delete {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        user: String,
        #[arg(long)]
        access_key: String,
    },
}

/// `--console-addr`: an address, or `off`.
#[derive(Debug, Clone, Copy)]
struct ConsoleAddr(Option<SocketAddr>);

fn parse_console_addr(s: &str) -> Result<ConsoleAddr, String> {
    if s == "off" {
        return Ok(ConsoleAddr(None));
    }
    s.parse()
        .map(|a| ConsoleAddr(Some(a)))
        .map_err(|e| format!("{s:?} is neither host:port nor off: {e}"))
}

fn report_broadcast(what: &str, missed: &[(NodeId, String)]) -> anyhow::Result<()> {
    if missed.is_empty() {
        println!("{what} on every node");
        return Ok(());
    }
    println!("{what}; not reached:");
    for (node, error) in missed {
        println!("  {node}: {error}");
    }
    anyhow::bail!("{} node(s) did not take it", missed.len())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    dmpstore_storage_node::logging::init(DEFAULT_LOG_FILTER);
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        dmpstore_storage_node::server::wait_for_signal().await;
        tracing::info!("shutdown requested");
        on_signal.cancel();
    });
    match Args::parse().command {
        Command::Dev {
            data_dir,
            s3_addr,
            access_key,
            secret_key,
            region,
            console_addr,
            tls_cert,
            tls_key,
        } => {
            let tls = tls_cert
                .zip(tls_key)
                .map(|(cert_path, key_path)| TlsConfig {
                    cert_path,
                    key_path,
                });
            let opts = DevOptions {
                data_dir,
                s3_addr,
                console_addr: console_addr.0,
                access_key,
                secret_key,
                region,
                n_nodes: 6,
                tls,
            };
            dmpstore_gateway::dev::run(opts, shutdown).await
        }
        Command::Admin {
            command:
                AdminCommand::Status {
                    config,
                    json,
                    annual_failure_rate,
                },
        } => {
            let config = GatewayConfig::load(&config)?;
            let summary = dmpstore_gateway::admin::status(&config, annual_failure_rate).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                print!("{}", dmpstore_gateway::admin::render(&summary));
            }
            Ok(())
        }
        Command::Admin {
            command:
                AdminCommand::Scrub {
                    config,
                    wait,
                    timeout_secs,
                },
        } => {
            let config = GatewayConfig::load(&config)?;
            let before = admin::nodes_status(&config, admin::DEFAULT_ANNUAL_FAILURE_RATE).await?;
            let missed = admin::broadcast(&config, &Request::Scrub).await?;
            report_broadcast("scrub started", &missed)?;
            if wait {
                admin::follow_scrub(&config, &before, Duration::from_secs(timeout_secs)).await?;
                println!("scrub finished on every node");
            }
            Ok(())
        }
        Command::Admin {
            command: AdminCommand::AntiEntropy { config },
        } => {
            let config = GatewayConfig::load(&config)?;
            let missed = dmpstore_gateway::admin::broadcast(&config, &Request::AntiEntropy).await?;
            report_broadcast("anti-entropy started", &missed)
        }
        Command::Admin {
            command:
                AdminCommand::Replace {
                    config,
                    node,
                    wait,
                    timeout_secs,
                },
        } => {
            let config = GatewayConfig::load(&config)?;
            let request = Request::RepairScan { node: NodeId(node) };
            let missed = admin::broadcast(&config, &request).await?;
            report_broadcast(&format!("refill of n{node} started"), &missed)?;
            if wait {
                let timeout = Duration::from_secs(timeout_secs);
                admin::follow_repair(&config, &format!("refill n{node}"), timeout, |s| {
                    s.repair_idle
                })
                .await?;
                println!("n{node} holds what it should again");
            }
            Ok(())
        }
        Command::Admin {
            command:
                AdminCommand::Drain {
                    config,
                    node,
                    undo,
                    wait,
                    timeout_secs,
                },
        } => {
            let config = GatewayConfig::load(&config)?;
            let request = Request::Drain {
                node: NodeId(node),
                draining: !undo,
            };
            let mut missed = dmpstore_gateway::admin::broadcast(&config, &request).await?;
            // The drained node itself may be dead (removing a dead node).
            missed.retain(|(n, _)| *n != NodeId(node));
            let what = if undo {
                "drain stopped"
            } else {
                "drain started"
            };
            report_broadcast(&format!("n{node}: {what}"), &missed)?;
            if wait && !undo {
                let timeout = Duration::from_secs(timeout_secs);
                admin::follow_repair(&config, &format!("drain n{node}"), timeout, |s| {
                    s.dead_agreed.contains(&node) && s.repair_idle
                })
                .await?;
                println!("n{node} drained: no chunk depends on it");
            }
            Ok(())
        }
        Command::Admin {
            command:
                AdminCommand::Add {
                    config,
                    node,
                    addr,
                    zone,
                    weight,
                },
        } => {
            let config = GatewayConfig::load(&config)?;
            let info = dmpstore_common::cluster::NodeInfo {
                id: NodeId(node),
                addr,
                zone,
                weight,
            };
            let (version, missed) = dmpstore_gateway::admin::add_node(&config, info).await?;
            report_broadcast(&format!("n{node} added: cluster map v{version}"), &missed)
        }
        Command::Admin {
            command:
                AdminCommand::Remove {
                    config,
                    node,
                    timeout_secs,
                },
        } => {
            let config = GatewayConfig::load(&config)?;
            dmpstore_gateway::admin::remove_node(
                &config,
                NodeId(node),
                std::time::Duration::from_secs(timeout_secs),
            )
            .await?;
            Ok(())
        }
        Command::Admin {
            command: AdminCommand::Isolate { config, node, secs },
        } => {
            let config = GatewayConfig::load(&config)?;
            let request = Request::Isolate {
                millis: secs * 1000,
            };
            dmpstore_gateway::admin::send(&config, NodeId(node), &request).await?;
            println!("n{node} isolated for {secs} s");
            Ok(())
        }
        Command::Admin {
            command: AdminCommand::Certs { command },
        } => certs_command(command),
        Command::Admin {
            command: AdminCommand::User { command },
        } => user_command(command).await,
        Command::Admin {
            command: AdminCommand::Key { command },
        } => key_command(command).await,
        Command::Serve { config } => {
            let config = GatewayConfig::load(&config)?;
            // The console first: once the S3 port takes connections, everything is bound
            // (launchers and tests wait for that port).
            let console = match config.console_listen_addr {
                Some(addr) => Some(dmpstore_storage_node::server::bind_retrying(addr).await?),
                None => None,
            };
            let listener =
                dmpstore_storage_node::server::bind_retrying(config.s3_listen_addr).await?;
            dmpstore_gateway::server::run_with_console(listener, console, config, shutdown).await
        }
    }
}

fn certs_command(command: CertsCommand) -> anyhow::Result<()> {
    use dmpstore_storage_node::pki::{ClusterCa, Role};
    let print = |role: &Role, tls: &dmpstore_gateway::config::RpcTlsConfig| -> anyhow::Result<()> {
        #[derive(serde::Serialize)]
        struct Section<'a> {
            rpc_tls: &'a dmpstore_gateway::config::RpcTlsConfig,
        }
        println!(
            "# {}\n{}",
            role.file_stem(),
            toml::to_string(&Section { rpc_tls: tls })?
        );
        Ok(())
    };
    match command {
        CertsCommand::Init {
            dir,
            nodes,
            gateways,
        } => {
            let ca = ClusterCa::generate()?;
            ca.save(&dir)?;
            println!("cluster CA: {}", dir.join("ca.pem").display());
            let roles = (1..=nodes)
                .map(Role::Node)
                .chain((1..=gateways).map(|g| Role::Gateway(g.to_string())));
            for role in roles {
                print(&role, &ca.issue_into(&dir, &role)?)?;
            }
            Ok(())
        }
        CertsCommand::Issue { dir, node, gateway } => {
            let ca = ClusterCa::load(&dir)?;
            let role = match (node, gateway) {
                (Some(id), _) => Role::Node(id),
                (None, Some(name)) => Role::Gateway(name),
                (None, None) => anyhow::bail!("give --node or --gateway"),
            };
            print(&role, &ca.issue_into(&dir, &role)?)
        }
    }
}

async fn user_command(command: UserCommand) -> anyhow::Result<()> {
    use dmpstore_gateway::admin::iam;
    match command {
        UserCommand::Create { config, name, json } => {
            let config = GatewayConfig::load(&config)?;
            print_new_key(&iam::create_user(&config, &name).await?, json)
        }
        UserCommand::List { config, json } => {
            let users = iam::list_users(&GatewayConfig::load(&config)?).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&users)?);
            } else {
                for u in users {
                    println!("{}\t{} key(s)", u.name, u.keys);
                }
            }
            Ok(())
        }
        UserCommand::Delete { config, name } => {
            let n = iam::delete_user(&GatewayConfig::load(&config)?, &name).await?;
            println!("user {name} deleted with {n} key(s)");
            Ok(())
        }
    }
}

async fn key_command(command: KeyCommand) -> anyhow::Result<()> {
    use dmpstore_gateway::admin::iam;
    match command {
        KeyCommand::Create {
            config,
            user,
            read_only,
            prefixes,
            expires_in_secs,
            json,
        } => {
            let config = GatewayConfig::load(&config)?;
            let scope = dmpstore_common::record::KeyScope {
                read_only,
                prefixes,
            };
            let expires = expires_in_secs.map(std::time::Duration::from_secs);
            print_new_key(
                &iam::create_key(&config, &user, scope, expires).await?,
                json,
            )
        }
        KeyCommand::List { config, user, json } => {
            let keys = iam::list_keys(&GatewayConfig::load(&config)?, &user).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
            } else {
                for k in keys {
                    let state = if k.disabled { "disabled" } else { "enabled" };
                    let limits = match (k.read_only, k.prefixes.is_empty()) {
                        (false, true) => String::new(),
                        (ro, _) => format!(" read-only={ro} prefixes={}", k.prefixes.join(",")),
                    };
                    println!("{}\t{state}{limits}", k.access_key);
                }
            }
            Ok(())
        }
        KeyCommand::Disable {
            config,
            user,
            access_key,
        } => {
            let config = GatewayConfig::load(&config)?;
            iam::set_key_disabled(&config, &user, &access_key, true).await?;
            println!("key {access_key} of {user} disabled");
            Ok(())
        }
        KeyCommand::Enable {
            config,
            user,
            access_key,
        } => {
            let config = GatewayConfig::load(&config)?;
            iam::set_key_disabled(&config, &user, &access_key, false).await?;
            println!("key {access_key} of {user} enabled");
            Ok(())
        }
        KeyCommand::Delete {
            config,
            user,
            access_key,
        } => {
            iam::delete_key(&GatewayConfig::load(&config)?, &user, &access_key).await?;
            println!("key {access_key} of {user} deleted");
            Ok(())
        }
    }
}

fn print_new_key(key: &dmpstore_gateway::admin::iam::NewKey, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(key)?);
    } else {
        println!("user:       {}", key.user);
        println!("access_key: {}", key.access_key);
        println!("secret_key: {}", key.secret_key);
    }
    Ok(())
}

/// A share of nodes failing per year: above 0, at most 1.
fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r > 0.0 && r <= 1.0 => Ok(r),
        _ => Err(format!("{s:?} is not a rate in (0, 1]")),
    }
}
