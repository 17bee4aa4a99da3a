"""One-line usage errors for commands registered with ``cls=OneLineUsageErrors``."""
import typer
from typer.core import TyperCommand

try:  # typer releases that ship their own copy of click
    from typer._click.exceptions import UsageError
except ImportError:
    from click.exceptions import UsageError


class OneLineUsageErrors(TyperCommand):
    """A command whose usage errors (a value of the wrong type, a missing or unknown option)
    print as one line on stderr, ``Error: <what> Fix: see `<command> --help`.``, and exit 2."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except UsageError as e:
            path = e.ctx.command_path if e.ctx is not None else info_name
            message = " ".join(e.format_message().split())
            typer.echo(f"Error: {message} Fix: see `{path} --help`.", err=True)
            raise typer.Exit(e.exit_code) from None
