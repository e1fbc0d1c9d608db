"""The `omnivec` command: parse the flags (parser.py), build the one Settings, run the command (commands.py)."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Sequence

from . import commands
from .parser import build_parser

COMMANDS: dict[str, Callable[..., int]] = {
    "bootstrap": commands.cmd_bootstrap,
    "export": commands.cmd_export,
    "serve": commands.cmd_serve,
    "embed": commands.cmd_embed,
    "index": commands.cmd_index,
    "search": commands.cmd_search,
    "classify": commands.cmd_classify,
    "finetune": commands.cmd_finetune,
    "triton-repo": commands.cmd_triton_repo,
}
NEEDS_SETTINGS = {"bootstrap", "serve", "embed", "index", "search", "classify"}


def settings_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The flags that override OMNIVEC_* settings, as nested Settings fields (flags win over the environment)."""
    flags = vars(args)
    out: dict[str, Any] = {}

    def put(group: str | None, field: str, value: Any) -> None:
        if value is not None:
            (out.setdefault(group, {}) if group else out)[field] = value

    put(None, "data_dir", flags.get("data_dir"))
    bundles = flags.get("bundle")
    if isinstance(bundles, list):  # serve: repeated --bundle; the first is the default model
        from omnivec.server.services.models import parse_bundle_arg

        if bundles:
            name, first = parse_bundle_arg(bundles[0])
            put("model", "bundle", first)
            put("model", "name", name)
            put("model", "bundles", [str(b) for b in bundles[1:]] or None)
    else:
        put("model", "bundle", bundles)
    put("model", "models_dir", flags.get("models_dir"))
    put("model", "precision", flags.get("precision"))
    put("model", "intra_op_threads", flags.get("threads") if args.command in ("serve", "embed") else None)
    put("server", "host", flags.get("host"))
    put("server", "port", flags.get("port"))
    return out


def build_settings(args: argparse.Namespace) -> Any:
    """The one Settings of this run: environment + flags, validated once."""
    from omnivec.server.settings import Settings

    return Settings(**settings_overrides(args))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 1
    settings = None
    if args.command in NEEDS_SETTINGS:
        from pydantic import ValidationError

        try:
            settings = build_settings(args)
        except ValidationError as exc:
            print(f"omnivec {args.command}: error: invalid settings: {exc}", file=sys.stderr)
            return 2
    return COMMANDS[args.command](args, settings)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
