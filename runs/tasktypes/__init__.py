"""The task types, one module each (shell, python, http, sql, container, wait_for; noop in
`registry`), and what they share: the executor contract (`contract`), process supervision
(`process`, `supervise`, `local`), the sandbox, masking, the network guard and the
tenant's credentials. Nothing is imported here: the sandbox's runner and the pure modules
load without Django."""
