"""``acn-pyg``: train (:mod:`acn_pyg.train.cli`), predict, test and export
(:mod:`acn_pyg.inference.cli`)."""
import argparse
import sys


def main(argv=None) -> int:
    from acn_pyg.inference.cli import COMMANDS, add_commands
    from acn_pyg.train.cli import add_train_command, train_command

    parser = argparse.ArgumentParser(prog="acn-pyg",
                                     description="AtomCloudNet for PyTorch Geometric")
    commands = parser.add_subparsers(dest="command", required=True)
    add_train_command(commands)
    add_commands(commands)
    args = parser.parse_args(argv)
    run = train_command if args.command == "train" else COMMANDS[args.command]
    try:
        return run(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"acn-pyg {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
