"""Isolated execution of untrusted programs: namespaces (network, mount, IPC, PID), rlimits and a
leased uid per program when run as root, rlimits and a scratch directory otherwise.

A floor below data and eval: it imports nothing of codemix but codemix.errors."""

from codemix.sandbox.isolate import Limits, Sandbox, SandboxError, SandboxResult

__all__ = ["Limits", "Sandbox", "SandboxError", "SandboxResult"]
