"""One module per `lpdgen` subcommand; see lpdgen.cli."""
