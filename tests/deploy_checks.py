"""Facts from the code that the deploy files (compose, Kubernetes) must agree with."""

from __future__ import annotations

from pathlib import Path

import click

from sinks.metrics import Metrics
from streams.cli import main
from streams.gateway.core import Gateway
from streams.gateway.server import build_app
from streams.plan import load_plans
from streams.settings import Settings

REPO = Path(__file__).resolve().parents[1]


def gateway_get_paths() -> set[str]:
    """GET paths the gateway's aiohttp application really routes (health, readiness, metrics)."""
    settings = Settings()
    app = build_app(Gateway(settings, load_plans(directory=settings.plans_dir), Metrics(), None))
    return {route.resource.canonical for route in app.router.routes()
            if route.method == "GET" and route.resource is not None}


def settings_env_names() -> set[str]:
    return {f"PULSE_{name.upper()}" for name in Settings.model_fields}


def cli_command_exists(args: list[str]) -> bool:
    """True when `pulse <args…>` names a real (sub)command; options after it are ignored."""
    command: click.Command = main
    ctx = click.Context(main)
    for word in args:
        if word.startswith("-"):
            break
        if not isinstance(command, click.Group):
            break
        sub = command.get_command(ctx, word)
        if sub is None:
            return False
        command = sub
    return command is not main
