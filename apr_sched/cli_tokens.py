"""``apr-sched token add|list|revoke``: per-user bearer tokens for HTTP over TCP.

They act on the state dir's database directly, so they work whether the daemon runs or not,
and only for who may write that database (the daemon's account, root). Local users on the
head node need no token: the daemon knows them by their uid over its Unix socket.

Exit codes: 0 done; 1 no such token (revoke); 2 invalid input or an unusable state dir.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from apr_sched.errors import AprError, NotFound
from apr_sched.statedir import resolve_state_dir

if TYPE_CHECKING:
    from apr_sched.store import Store

__all__ = ["add_token_commands", "run_token_command"]


def add_token_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    token = sub.add_parser(
        "token", help="per-user bearer tokens for HTTP (local users need none)",
        description="Tokens let remote clients act as a user over HTTP. They are stored "
                    "hashed in the state database; revoking one takes effect at once.")
    actions = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="make a token for USER and print it (shown only once)")
    add.add_argument("user", metavar="USER", help="the user the token acts as (job owner)")
    add.add_argument("--admin", action="store_true",
                     help="the token may act on anyone's jobs, manage hosts and purge")
    listing = actions.add_parser("list", help="users with a token (tokens are not shown)")
    revoke = actions.add_parser("revoke", help="revoke USER's token now")
    revoke.add_argument("user", metavar="USER", help="the user whose token stops working")
    for parser in (add, listing, revoke):
        parser.add_argument("--state-dir", metavar="DIR", help="the daemon's state dir")
        parser.add_argument("--config", metavar="FILE", help="hosts.toml naming the state dir")
        parser.add_argument("-v", "--verbose", action="count", default=0,
                            help="more logging on stderr (-vv for debug)")


def run_token_command(args: argparse.Namespace) -> int:
    # Loaded here: `apr-sched` builds this parser for every command, and the other commands
    # must not pay for the scheduler's modules.
    from apr_sched.config import load_config
    from apr_sched.scheduler import DB_NAME
    from apr_sched.store import Store
    from apr_sched.tokens import add_token, revoke_token

    config = load_config(args.config) if args.config else None
    state_dir = resolve_state_dir(args.state_dir or (config.state_dir if config else None))
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise AprError(f"cannot use state dir {state_dir}: {exc.strerror}") from None
    store = Store(state_dir / DB_NAME)
    try:
        if args.token_command == "add":
            token, replaced = add_token(store, args.user, admin=args.admin)
            print(token, flush=True)
            kind = "admin token" if args.admin else "token"
            note = f"; {args.user}'s previous token no longer works" if replaced else ""
            print(f"apr-sched: {kind} for {args.user} saved (shown only now){note}",
                  file=sys.stderr)
        elif args.token_command == "list":
            _print_tokens(store)
        else:
            try:
                revoke_token(store, args.user)
            except NotFound as exc:
                print(f"apr-sched: {exc.message}", file=sys.stderr)
                return 1
            print(f"apr-sched: {args.user}'s token is revoked", file=sys.stderr)
    finally:
        store.close()
    return 0


def _print_tokens(store: Store) -> None:
    from rich.console import Console
    from rich.table import Table

    from apr_sched.tokens import list_tokens

    tokens = list_tokens(store)
    out = Console(highlight=False)
    if not tokens:
        out.print("no tokens (local users need none; the state dir's token file is the "
                  "admin token)", style="dim")
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in ("USER", "ADMIN", "CREATED"):
        table.add_column(name, no_wrap=True)
    for info in tokens:
        table.add_row(info.user, "yes" if info.admin else "no",
                      info.created_at.astimezone().strftime("%Y-%m-%d %H:%M:%S"))
    out.print(table)
