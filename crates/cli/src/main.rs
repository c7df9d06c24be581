//! The `fleetwall` binary: the only place that reads files, prints, and picks exit codes
//! (0 ok, 1 invalid input or failed check, 2 usage or environment).

mod access;
mod backup;
mod backup_bench;
mod bench;
mod cloud_plan;
mod commands;
mod control;
mod crowd_bench;
mod daemons;
mod datadir;
mod dataplane_bench;
mod deploy;
mod logs;
mod pki;
mod rohmu_venv;
mod rollout;
mod table;
mod verify;
mod write_bench;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

/// fleetwall computes every node's host firewall from a declarative fleet file, and
/// shows what each node accepts and why.
#[derive(Parser)]
#[command(name = "fleetwall", version, propagate_version = true)]
#[command(
    after_help = "Start with `fleetwall plan examples/public-pg.yaml`, then `fleetwall ports` and `fleetwall plan --node NODE`."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    client: control::ClientArgs,
}

/// Options every fleet-reading command takes.
#[derive(clap::Args, Clone)]
pub struct FleetArgs {
    /// The fleet file (YAML, fleet file v1); `-` reads it from standard input.
    #[arg(value_name = "FLEET")]
    pub fleet: PathBuf,
    /// Use this service catalog instead of the built-in one (see catalog/services.yaml).
    #[arg(long, value_name = "FILE")]
    pub catalog: Option<PathBuf>,
    /// Use this deployment catalog (zones, subsystems, flows) instead of the built-in one
    /// (see catalog/deployments.yaml).
    #[arg(long, value_name = "FILE")]
    pub deployment_catalog: Option<PathBuf>,
    /// Show every warning (by default the first 5 of each kind, then how many more).
    #[arg(long, conflicts_with = "quiet")]
    pub all_warnings: bool,
    /// Show no warnings, only errors.
    #[arg(short, long)]
    pub quiet: bool,
    /// Treat warnings as errors: exit 1 when there is any.
    #[arg(long)]
    pub deny_warnings: bool,
}

impl FleetArgs {
    /// Just the file (and catalog), with the default warning output.
    pub fn file(fleet: PathBuf, catalog: Option<PathBuf>) -> FleetArgs {
        FleetArgs { fleet, catalog, deployment_catalog: None, all_warnings: false, quiet: false, deny_warnings: false }
    }

    /// Which diagnostics to print.
    pub fn show(&self) -> fleetwall_model::diag::Show {
        use fleetwall_model::diag::Show;
        match (self.quiet, self.all_warnings) {
            (true, _) => Show::ErrorsOnly,
            (false, true) => Show::All,
            (false, false) => Show::Grouped,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Validate a fleet file: every problem at once, with file:line:col, value and hint.
    ///
    /// Exits 0 when the fleet is valid (warnings allowed), 1 when it has errors.
    Check {
        #[command(flatten)]
        fleet: FleetArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
        format: CheckFormat,
        /// Show only the warnings about this node (its service, its project, the
        /// platform) and a count of the others; errors are always shown. Text output
        /// only: --format json lists every diagnostic.
        #[arg(long)]
        node: Option<String>,
    },
    /// List every listener: project, service, node, component, route, address, port, protocol.
    ///
    /// Routes: dynamic, public, privatelink (client listeners) and cluster (peer-only).
    /// Management ports (22, 30287) are platform-wide and not listed.
    Ports {
        #[command(flatten)]
        fleet: FleetArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t = TableFormat::Table)]
        format: TableFormat,
        /// Only this node's listeners.
        #[arg(long)]
        node: Option<String>,
    },
    /// Show the firewall of every node (a summary), or one node's ruleset.
    ///
    /// Without --format: a summary of what each node opens to whom (with --node: that
    /// node's nft ruleset). `nft` output loads with `nft -f` and owns only table inet
    /// fleetwall; `iptables`/`ip6tables` load with iptables-restore after `ipset restore
    /// -exist` of the `ipset` output. --out DIR writes every format for every node.
    ///
    /// `aws`, `gcp` and `azure` render the cloud layer in front of the nodes of the
    /// services on that cloud, from the same intent: EC2 API request bodies and a
    /// CloudFormation template of security groups (and managed prefix lists for big
    /// ip_filters), Compute API `firewalls.insert` bodies, an ARM template of network
    /// security groups. A service beyond the cloud's limits (rules per group, groups per
    /// interface, prefixes per group) is refused with the limit named. `dante` renders
    /// each ECE project's SOCKS5 proxy policy as a `danted.conf`.
    Plan {
        #[command(flatten)]
        fleet: FleetArgs,
        /// Only this node (and only its warnings: those of its service, its project and
        /// the platform, then a count of the others).
        #[arg(long)]
        node: Option<String>,
        /// Output format.
        #[arg(long, value_enum)]
        format: Option<PlanFormat>,
        /// Write files <DIR>/<node>.{nft,ipset,ipt4,ipt6,json} instead of printing (cloud
        /// formats: aws-ec2-requests.json and aws-cloudformation.json, gcp-firewalls.json,
        /// azure-nsg.json; dante: <project>-danted.conf).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Write the documentation a person reads: Markdown port tables per zone and
    /// subsystem (in the shape of the product's documentation) and a network diagram as
    /// Graphviz `.dot` and `.svg` (drawn with `dot`), for deployments and managed services.
    Docs {
        #[command(flatten)]
        fleet: FleetArgs,
        /// The directory to write into.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Build the fleet in network namespaces, apply every node's ruleset in a real kernel,
    /// and probe the connectivity the fleet implies (root only).
    ///
    /// One namespace per node (all its addresses), per management gateway and per client
    /// source that matters (inside and outside each ip_filter, the VPC, its peerings and
    /// private-link CIDRs, a node of another service), joined by a bridge in a namespace
    /// of its own. Every node listens on its ports plus 22, 30287, 80 and an unallocated
    /// port; every source probes every node address by TCP and UDP. Accepted means
    /// connected; rejected means a TCP reset or ICMP port unreachable within 500 ms.
    /// Exits 1 on any mismatch. Namespaces are removed on exit, error and Ctrl-C.
    Lab {
        #[command(flatten)]
        fleet: FleetArgs,
        /// How rulesets are loaded.
        #[arg(long, value_enum, default_value_t = LabBackend::Nft)]
        backend: LabBackend,
        /// Output format.
        #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
        format: CheckFormat,
    },
    /// BYOC projects: what the customer applies in their own cloud account.
    Byoc {
        #[command(subcommand)]
        cmd: ByocCmd,
    },
    /// Can ADDR reach NODE on PORT, and why? The verdict, the deciding rule and the
    /// reasons back to the fleet (ip_filter entry, peer, gateway, peering ...).
    ///
    /// --to takes a node (every address of the source's family), `node.route` (dynamic,
    /// public, privatelink, cluster: that route's addresses) or one node address.
    ///
    /// Exits 0 when every traced address accepts, 1 when any refuses, 2 on an error.
    Trace {
        #[command(flatten)]
        fleet: FleetArgs,
        /// Source: an address (inbound to the `--to` node), or a NODE (outbound from it,
        /// through its output chain, to the `--to` address).
        #[arg(long)]
        from: String,
        /// Destination: NODE, NODE.ROUTE or a node address (inbound); an address (outbound).
        #[arg(long)]
        to: String,
        /// Destination port and protocol: 12691/tcp, 500/udp (a bare number is TCP), or a
        /// component name (`kafka`: its listeners on the destination, inbound).
        #[arg(long)]
        port: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
        format: CheckFormat,
    },
    /// Run the fleet file's `tests:` assertions; exit 1 when any fails, with its trace.
    Test {
        #[command(flatten)]
        fleet: FleetArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
        format: CheckFormat,
        /// Show the traces of passing assertions too.
        #[arg(long, short)]
        verbose: bool,
    },
    /// Which flows a change opens and closes, node by node, with warnings for anything
    /// newly open to 0.0.0.0/0 or ::/0, newly public components and emptied ip_filters.
    Diff {
        /// The fleet before the change.
        old: std::path::PathBuf,
        /// The fleet after the change.
        new: std::path::PathBuf,
        /// Use this service catalog instead of the built-in one.
        #[arg(long, value_name = "FILE")]
        catalog: Option<std::path::PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
        format: CheckFormat,
        /// Exit 1 when the change opens any flow (like `git diff --exit-code`).
        #[arg(long)]
        exit_code: bool,
    },
    /// Write a synthetic fleet file (for benchmarks and experiments) to stdout.
    Synth {
        /// Number of nodes (services of five nodes each).
        #[arg(long, default_value_t = 1000)]
        nodes: usize,
        /// ip_filter entries per service.
        #[arg(long, default_value_t = 100)]
        ip_filter: usize,
    },
    /// Run the control plane: the HTTP/JSON API over the fleet, serving node agents.
    ///
    /// With no flags: SQLite in .fleetwall/fleet.db, http://127.0.0.1:8181, and a new
    /// admin token in .fleetwall/admin.token (the client verbs read it from there).
    Serve(daemons::ServeArgs),
    /// Run a node agent: watch this node's ruleset, apply it as one nftables transaction,
    /// keep the last good one (re-applied when the server is unreachable), repair drift.
    Agent(daemons::AgentArgs),
    /// Rollout view from the control plane: per node the desired and applied revision,
    /// ruleset hash, state and lag.
    Status,
    /// Projects on the control plane (list, create, delete).
    Project {
        #[command(subcommand)]
        cmd: control::ProjectCmd,
    },
    /// VPCs and peering connections on the control plane.
    Vpc {
        #[command(subcommand)]
        cmd: control::VpcCmd,
    },
    /// Services on the control plane: `service update PROJECT SERVICE -c KEY=VALUE`,
    /// `service privatelink aws create --principal ARN PROJECT SERVICE`, ...
    Service {
        #[command(subcommand)]
        cmd: control::ServiceCmd,
    },
    /// Nodes of a service on the control plane (add, remove).
    Node {
        #[command(subcommand)]
        cmd: control::NodeCmd,
    },
    /// The whole fleet on the control plane: get (YAML) or put a fleet file (admin).
    Fleet {
        #[command(subcommand)]
        cmd: control::FleetCmd,
    },
    /// Control-plane tokens: per-project customer tokens, per-node agent tokens (admin).
    Token {
        #[command(subcommand)]
        cmd: control::TokenCmd,
    },
    /// Operator SSH access: request, approve or deny (someone else), list, revoke, the
    /// certificate; the platform's settings and the SSH CA.
    Access {
        #[command(subcommand)]
        cmd: access::AccessCmd,
    },
    /// The control plane's audit log: who changed what, before and after, when (admin).
    Audit {
        /// One operator access's whole story instead: request, approvals, certificate,
        /// revoke or expiry (admin, security).
        #[arg(long, value_name = "ID")]
        access: Option<String>,
        /// Entries to show.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Only entries after this id.
        #[arg(long, default_value_t = 0)]
        after: i64,
    },
    /// Print a shell completion script: `fleetwall completions bash > /etc/bash_completion.d/fleetwall`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page fleetwall(1), or with --out DIR write it and one page per
    /// subcommand (fleetwall-plan.1, ...) into DIR.
    Man {
        /// Write every page into this directory instead.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Print a JSON Schema of the fleet file (for editors: completion and checks as you type;
    /// `fleetwall check` remains the full validation).
    Schema,
    /// Backup encryption (seed 004): keygen, encrypt, decrypt, inspect; fleetwall's chunked
    /// format and rohmu/pghoard's pghoa1 files.
    Backup {
        #[command(subcommand)]
        cmd: backup::BackupCmd,
    },
    /// Benchmark check + compile + render on synthetic fleets (1,000 and 10,000 nodes,
    /// and one public service with an 8,000-entry ip_filter, every entry in its nft).
    /// Build with --release.
    Bench {
        /// Runs per scenario; the median is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Only the small scenarios (for a quick look).
        #[arg(long)]
        quick: bool,
        /// Instead: latency from an API write to "applied" on every agent (simulated
        /// agents in-process against the real server, and real agents in namespaces as root).
        #[arg(long)]
        rollout: bool,
        /// With --rollout: simulated agents.
        #[arg(long, default_value_t = 1000)]
        agents: usize,
        /// With --rollout: real agents in network namespaces (needs root; 0 skips), one per
        /// node of a synthetic fleet in services of five (3 gives 5).
        #[arg(long, default_value_t = 10)]
        real_agents: usize,
        /// With --rollout or --crowd: writes measured.
        #[arg(long, default_value_t = 20)]
        writes: usize,
        /// Instead: write → received on --agents simulated agents (real HTTP long-polls, in
        /// child processes of at most 4,000 each) against `fleetwall serve` processes.
        #[arg(long)]
        crowd: bool,
        /// With --crowd: `serve` replicas (more than one needs --crowd-db).
        #[arg(long, default_value_t = 1)]
        replicas: usize,
        /// With --crowd: the replicas' PostgreSQL URL (an empty database: it is loaded).
        #[arg(long, value_name = "URL")]
        crowd_db: Option<String>,
        /// Instead: backup encrypt/decrypt throughput against openssl and rohmu.
        #[arg(long)]
        backup: bool,
        /// Instead: only the dataplane row (root): one entry added to an 8,000-entry
        /// ip_filter, as a full replace and as a set delta, nft and iptables.
        #[arg(long)]
        dataplane: bool,
        /// Instead: the control plane's cost of one write (a one-service ip_filter change) at
        /// each fleet size of --nodes: latency p50/p99, store growth, memory, startup.
        #[arg(long)]
        control_plane: bool,
        /// With --control-plane: fleet sizes, comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = [1000usize, 10000, 100000])]
        nodes: Vec<usize>,
        /// With --control-plane: writes measured per size.
        #[arg(long, default_value_t = 200)]
        cp_writes: usize,
        /// With --backup: the size of the generated file, MiB.
        #[arg(long, default_value_t = 1024)]
        backup_mib: u64,
        /// With --backup: the virtualenv with rohmu (created when missing).
        #[arg(long, value_name = "DIR", default_value = "target/tmp/rohmu-venv")]
        rohmu_venv: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
        format: CheckFormat,
    },
}

/// `check` and `bench` output.
#[derive(ValueEnum, Clone, Copy, PartialEq, Eq)]
pub enum CheckFormat {
    /// For people.
    Text,
    /// For machines.
    Json,
}

/// `ports` output.
#[derive(ValueEnum, Clone, Copy, PartialEq, Eq)]
pub enum TableFormat {
    /// Aligned columns with upper-case headers.
    Table,
    /// An array of objects.
    Json,
}

/// The dataplane of `lab` and `agent`.
#[derive(ValueEnum, Clone, Copy, PartialEq, Eq)]
pub enum LabBackend {
    /// nftables: `table inet fleetwall`.
    Nft,
    /// iptables-restore and ipset.
    Iptables,
}

/// `plan` output.
#[derive(ValueEnum, Clone, Copy, PartialEq, Eq)]
pub enum PlanFormat {
    /// What each node opens to whom.
    Summary,
    /// nftables (`nft -f`).
    Nft,
    /// iptables-restore, IPv4.
    Iptables,
    /// ip6tables-restore, IPv6.
    Ip6tables,
    /// `ipset restore` input for the iptables formats.
    Ipset,
    /// The ruleset IR as JSON.
    Json,
    /// AWS security groups: EC2 API requests and a CloudFormation template.
    Aws,
    /// GCP VPC firewall rules (Compute API bodies).
    Gcp,
    /// Azure network security groups (ARM template).
    Azure,
    /// The SOCKS5 proxy of each ECE project, as a Dante `danted.conf`.
    Dante,
    /// The cloud layer of every service as nftables for a router in front of the nodes
    /// (the lab's SDN: each group's outbound, then inbound rules; drop the rest).
    Sdn,
    /// Kubernetes NetworkPolicy of the deployments that name `kubernetes.namespace`.
    K8s,
}

/// `fleetwall byoc ...`.
#[derive(Subcommand)]
pub enum ByocCmd {
    /// The cloud-level rules (security groups, firewall rules, NSG rules) the customer
    /// applies to the bastion and workload subnets of a BYOC project, one per line with
    /// its reason; `plan --format aws|gcp|azure` gives the same rules as API bodies.
    Rules {
        #[command(flatten)]
        fleet: FleetArgs,
        /// The BYOC project.
        #[arg(value_name = "PROJECT")]
        project: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = TableFormat::Table)]
        format: TableFormat,
    },
}

/// The command line as clap reads it and as completions and the man page describe it.
///
/// Verbs whose positional names start with a project that may be left out (for
/// --project or $FLEETWALL_PROJECT) take them as one list; their usage line says
/// `[PROJECT] SERVICE` instead of clap's rendering of a list.
pub fn cli_command() -> clap::Command {
    fn optional_project(cmd: clap::Command, path: &str) -> clap::Command {
        let path = format!("{path} {}", cmd.get_name()).trim().to_string();
        let names = cmd.get_arguments().find(|a| a.get_id() == "names").map(|a| {
            let v: Vec<String> = a.get_value_names().unwrap_or_default().iter().map(|n| format!("<{n}>")).collect();
            v[1..].join(" ")
        });
        let cmd = match names {
            Some(rest) => cmd.override_usage(format!("{path} [OPTIONS] [PROJECT] {rest}").trim_end().to_string()),
            None => cmd,
        };
        // A subcommand's usage starts with its parent's positionals (`privatelink <PROVIDER>`).
        let parent = cmd.get_positionals().fold(path, |p, a| format!("{p} <{}>", a.get_id().as_str().to_uppercase()));
        let subs: Vec<String> = cmd.get_subcommands().map(|c| c.get_name().to_string()).collect();
        subs.iter().fold(cmd, |cmd, sub| cmd.mut_subcommand(sub, |c| optional_project(c, &parent)))
    }
    let cmd = Cli::command();
    let subs: Vec<String> = cmd.get_subcommands().map(|c| c.get_name().to_string()).collect();
    subs.iter().fold(cmd, |cmd, sub| cmd.mut_subcommand(sub, |c| optional_project(c, "fleetwall")))
}

/// `fleetwall man`: the page to stdout, or every page into `out`.
fn man(out: Option<&std::path::Path>) -> anyhow::Result<commands::Outcome> {
    use anyhow::Context;
    let cmd = cli_command();
    match out {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut page).context("cannot render the man page")?;
            std::io::Write::write_all(&mut std::io::stdout(), &page).context("cannot write the man page")?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("cannot write man pages to {}", dir.display()))?;
            eprintln!("wrote man pages to {}", dir.display());
        }
    }
    Ok(commands::Outcome::Ok)
}

/// Lets a closed pipe end a printing command quietly, as it ends `cat` or `ls`: the
/// default action of SIGPIPE (Rust ignores it, so `println!` would panic on EPIPE).
/// Not for the daemons, the lab or the benchmarks: they write into pipes of `nft` and
/// other tools, whose early exit must be an error they report, not their own death.
fn die_quietly_on_a_closed_pipe() {
    // SAFETY: restoring a signal's default disposition has no memory-safety effect.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    let Cli { command, client } = match Cli::from_arg_matches(&cli_command().get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    if !matches!(command, Command::Serve(_) | Command::Agent(_) | Command::Lab { .. } | Command::Bench { .. }) {
        die_quietly_on_a_closed_pipe();
    }
    let result = match command {
        Command::Check { fleet, format, node } => commands::check(&fleet, format, node.as_deref()),
        Command::Ports { fleet, format, node } => commands::ports(&fleet, format, node.as_deref()),
        Command::Plan { fleet, node, format, out } => commands::plan(&fleet, node.as_deref(), format, out.as_deref()),
        Command::Docs { fleet, out } => deploy::docs(&fleet, &out),
        Command::Byoc { cmd: ByocCmd::Rules { fleet, project, format } } => {
            cloud_plan::byoc_rules(&fleet, &project, format)
        }
        Command::Trace { fleet, from, to, port, format } => verify::trace(&fleet, &from, &to, &port, format),
        Command::Test { fleet, format, verbose } => verify::test(&fleet, format, verbose),
        Command::Diff { old, new, catalog, format, exit_code } => {
            verify::diff(&old, &new, catalog.as_deref(), format, exit_code)
        }
        Command::Lab { fleet, backend, format } => commands::lab(&fleet, backend, format),
        Command::Synth { nodes, ip_filter } => {
            print!("{}", fleetwall_synth::generate(&fleetwall_synth::Spec::fleet(nodes, ip_filter)));
            Ok(commands::Outcome::Ok)
        }
        Command::Bench { crowd: true, agents, writes, replicas, crowd_db, format, .. } => {
            crowd_bench::run(&crowd_bench::Options {
                agents,
                writes: writes.max(1),
                replicas,
                db: crowd_db,
                json: format == CheckFormat::Json,
            })
        }
        Command::Bench { rollout: true, agents, real_agents, writes, format, .. } => rollout::run(&rollout::Options {
            agents,
            real_agents,
            writes: writes.max(1),
            json: format == CheckFormat::Json,
        }),
        Command::Backup { cmd } => backup::run(cmd, &client),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut cli_command(), "fleetwall", &mut std::io::stdout());
            Ok(commands::Outcome::Ok)
        }
        Command::Man { out } => man(out.as_deref()),
        Command::Schema => {
            println!("{}", fleetwall_model::schema::fleet_file_schema_json());
            Ok(commands::Outcome::Ok)
        }
        Command::Bench { backup: true, backup_mib, rohmu_venv, runs, format, .. } => {
            backup_bench::run(&rohmu_venv, backup_mib.max(1), runs.max(1), format)
        }
        Command::Bench { dataplane: true, runs, format, .. } => dataplane_bench::run_cmd(runs, format),
        Command::Bench { control_plane: true, nodes, cp_writes, format, .. } => {
            write_bench::run(&nodes, cp_writes, format)
        }
        Command::Bench { runs, quick, format, .. } => bench::run(runs.max(1), quick, format),
        Command::Serve(a) => daemons::serve(a),
        Command::Agent(a) => daemons::agent(a, &client),
        Command::Status => control::client(&client, control::ClientCmd::Status),
        Command::Project { cmd } => control::client(&client, control::ClientCmd::Project(cmd)),
        Command::Vpc { cmd } => control::client(&client, control::ClientCmd::Vpc(cmd)),
        Command::Service { cmd } => control::client(&client, control::ClientCmd::Service(cmd)),
        Command::Node { cmd } => control::client(&client, control::ClientCmd::Node(cmd)),
        Command::Fleet { cmd } => control::client(&client, control::ClientCmd::Fleet(cmd)),
        Command::Token { cmd } => control::client(&client, control::ClientCmd::Token(cmd)),
        Command::Access { cmd } => access::run(&client, cmd),
        Command::Audit { access: Some(id), .. } => access::story(&client, &id),
        Command::Audit { limit, after, access: None } => {
            control::client(&client, control::ClientCmd::Audit { limit, after })
        }
    };
    match result {
        Ok(commands::Outcome::Ok) => ExitCode::SUCCESS,
        Ok(commands::Outcome::Invalid) => ExitCode::from(1),
        Err(e) if e.downcast_ref::<control::ApiFailure>().is_some() => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("fleetwall: {e:#}");
            ExitCode::from(2)
        }
    }
}
