package harness

decision := {"allow": input.tool.name in data.harness.allowed_tools, "reason": "from the bundle"}
