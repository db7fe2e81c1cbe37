package harness

decision := {"allow": false, "reason": "never"}
