"""The Ray backend (`orchestrator.backend: ray`): worker sessions and checks on a cluster.

Importing a module here imports Ray (the optional `ray` extra); nothing outside this package
imports it unless the backend is chosen.
"""
