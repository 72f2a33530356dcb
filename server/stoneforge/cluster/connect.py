"""Joining the Ray cluster as a driver, with Ray's own footprint kept small and quiet."""

from __future__ import annotations

import logging
from typing import Any

from stoneforge.cluster.protocol import AGENT_SLOTS, CHECK_SLOTS
from stoneforge.errors import ConfigError

NAMESPACE = "stoneforge"


def ray_module() -> Any:
    """`ray`, or a clear error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "orchestrator.backend: ray needs Ray, which is not installed here: "
            "pip install 'stoneforge-agents[ray]'"
        ) from None
    return ray


def connect(address: str) -> Any:
    """Connect this process to the cluster at ``address`` (`auto`: the one this machine is
    part of); returns the `ray` module. Idempotent."""
    ray = ray_module()
    if ray.is_initialized():
        return ray
    try:
        ray.init(
            address=address,
            namespace=NAMESPACE,
            logging_level=logging.WARNING,
            log_to_driver=False,  # actors' output stays in the nodes' Ray logs, not our terminal
            configure_logging=False,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(
            f"could not connect to the Ray cluster at ray.address={address!r}: {exc} "
            "(start one with `ray start --head`, or set ray.address to its head's host:port)"
        ) from None
    return ray


def slot_totals() -> tuple[int, int]:
    """(agent slots, check slots) the cluster's live nodes offer in total."""
    ray = ray_module()
    resources = ray.cluster_resources()
    return int(resources.get(AGENT_SLOTS, 0)), int(resources.get(CHECK_SLOTS, 0))


def node_report(sessions_by_node: dict[str, list[str]]) -> list[dict[str, Any]]:
    """Each live node with its slots, and the sessions of ours running there (ids)."""
    ray = ray_module()
    nodes = []
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        resources = node.get("Resources", {})
        agent, check = int(resources.get(AGENT_SLOTS, 0)), int(resources.get(CHECK_SLOTS, 0))
        if not (agent or check):
            continue  # a node that runs none of our work (the head of a test cluster, say)
        node_id = node["NodeID"]
        nodes.append(
            {
                "nodeId": node_id,
                "address": node.get("NodeManagerAddress", ""),
                "agentSlots": agent,
                "checkSlots": check,
                "busy": len(sessions_by_node.get(node_id, [])),
                "sessions": sorted(sessions_by_node.get(node_id, [])),
            }
        )
    return sorted(nodes, key=lambda n: (n["address"], n["nodeId"]))
