"""Beyond one process: PGPE and RGS populations on Ray workers (:mod:`.population`) and
the connection to a Ray cluster (:mod:`.cluster`). Certification is split across
processes or machines by :mod:`nobound.certify.shards`. Ray is an optional extra
(``pip install 'nobound[ray]'``) and is imported only when a cluster is used.

See docs/distributed.md.
"""

from __future__ import annotations

from typing import Any


def on_ray(method: Any, address: str | None = None, cpus: int | None = None) -> Any:
    """The Ray-evaluating version of a PGPE or RGS method (see :mod:`.population`)."""
    from nobound.distributed.population import on_ray as convert

    return convert(method, address, cpus)


__all__ = ["on_ray"]
