"""Running untrusted code: environments, isolation backends, limits, scanning and the MCP validator."""
