//! The `vtmove` command line. It parses arguments and calls into the library; errors from the
//! library are typed, and only turned into `anyhow` here.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

/// vtmove runs Vitess MoveTables workflows declaratively, as Kubernetes resources.
#[derive(Debug, Parser)]
#[command(name = "vtmove", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions (MoveTablesWorkflow, Keyspace) as YAML.
    Crds(CrdsArgs),
}

#[derive(Debug, Args)]
struct CrdsArgs {
    /// Write one file per CRD into DIR (`<plural>.vtmove.dev.yaml`) instead of printing them.
    #[arg(long, value_name = "DIR")]
    output_dir: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crds(args) => crds(args),
    }
}

fn crds(args: CrdsArgs) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match args.output_dir {
        Some(dir) => {
            for path in vtmove::api::write_crds(&dir)? {
                writeln!(stdout, "wrote {}", path.display()).context("writing to stdout")?;
            }
        }
        None => {
            let yaml = vtmove::api::crd_yaml()?;
            stdout
                .write_all(yaml.as_bytes())
                .context("writing to stdout")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn crds_takes_an_output_dir() {
        let cli = Cli::try_parse_from(["vtmove", "crds", "--output-dir", "crds"]).unwrap();
        let Command::Crds(args) = cli.command;
        assert_eq!(args.output_dir, Some(PathBuf::from("crds")));
        assert!(Cli::try_parse_from(["vtmove"]).is_err());
    }
}
