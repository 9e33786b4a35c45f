//! `fuzz_reach TARGET DIR...`: runs every file of the directories through the target's
//! harness (the one the fuzz target wraps) and prints
//! `TARGET reached R/N (P%)` — the share of the corpus that reached the target's main
//! property. `fuzz_reach --list` prints the target names. Exit status 2 for an unknown
//! target or unreadable directory; a broken property panics (status 101).

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--list") {
        for t in isoswitch_fuzzing::TARGETS {
            println!("{}", t.name);
        }
        return ExitCode::SUCCESS;
    }
    let Some((name, dirs)) = args.split_first() else {
        eprintln!("usage: fuzz_reach TARGET DIR... | fuzz_reach --list");
        return ExitCode::from(2);
    };
    let Some(target) = isoswitch_fuzzing::target(name) else {
        eprintln!("fuzz_reach: unknown target {name}");
        return ExitCode::from(2);
    };
    let mut total = isoswitch_fuzzing::Reach::default();
    for d in dirs {
        match isoswitch_fuzzing::run_dir(target, Path::new(d)) {
            Ok(r) => {
                total.inputs += r.inputs;
                total.reached += r.reached;
            }
            Err(e) => {
                eprintln!("fuzz_reach: {d}: {e}");
                return ExitCode::from(2);
            }
        }
    }
    println!(
        "{name} reached {}/{} ({:.1}%)",
        total.reached,
        total.inputs,
        total.percent()
    );
    ExitCode::SUCCESS
}
