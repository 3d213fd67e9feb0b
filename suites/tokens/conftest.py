"""The token suite needs no fixtures of its own: checks that revoke, replay or refresh ask the launcher for a grant of
their own (Launcher.fresh_grant), and the shared launch is checked before each use (Launcher.shared)."""
