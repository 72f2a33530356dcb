"""The orchestrator: dispatcher (daemon), worker runs with handoff and recovery, the steward."""
