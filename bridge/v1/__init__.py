"""Seed 002's cloud API under `/api/v1`: one module per concept, assembled here.

Every module exposes `routes() -> list[BaseRoute]` with paths relative to `/api/v1`; errors use
`bridge.v1.responses` (seed 002's bodies, PROTOCOL §6).
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount

from bridge.v1 import (
    actions,
    auth_keys,
    cognition,
    commands,
    devices,
    firmware,
    groups,
    homes,
    manifests,
    system,
    tenants,
)

PREFIX = "/api/v1"


def routes() -> list[BaseRoute]:
    # the command routes first: the hot path, tried before the others (no path overlaps)
    inner: list[BaseRoute] = [*commands.routes()]
    # each surface adds its routes here: inner += manifests.routes(), …
    inner += system.routes()
    inner += manifests.routes()
    inner += actions.routes()
    inner += auth_keys.routes()
    inner += tenants.routes()
    inner += devices.routes()
    inner += homes.routes()
    inner += groups.routes()
    inner += cognition.routes()
    inner += firmware.routes()
    return [Mount(PREFIX, routes=inner)] if inner else []
