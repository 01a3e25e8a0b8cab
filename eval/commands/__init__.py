"""CLI subcommands. Each module here defines `register(subparsers) -> None`, adding its parsers with
`set_defaults(handler=fn)` where `fn(args) -> int`. The CLI discovers them; no central list to edit."""
