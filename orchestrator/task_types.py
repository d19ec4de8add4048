"""The task types the platform knows (DESIGN.md section 6): one list for the tenants' policy
(`allowed_task_types`, orchestrator.tenancy) and the spec (workflows.spec checks that its
models match). Pure: the spec's validation imports it without Django."""

__all__ = ["TASK_TYPES"]

TASK_TYPES = ("noop", "shell", "python", "http", "sql", "container", "wait_for")
