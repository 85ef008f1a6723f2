"""Running a suite: the session that builds and caches variants, one gate's measurements,
the pure decision, its outcome, baseline snapshots, and the plan/dry-run/preflight views."""
