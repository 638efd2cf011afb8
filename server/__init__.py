"""The MCP face of mcp-foundry: tools, resources, transports and the command line."""
