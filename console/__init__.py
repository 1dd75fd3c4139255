"""The web console of a node or the coordinator: what a data steward judges and signs, and /metrics.

Off unless a config has `console: {listen: ...}`. Pages are rendered on the server from
the process's own records (store and audit chain); the only write is an operator's
decision on a pending job, made through the same function `teenet approvals` calls.
See docs/console.md.
"""
