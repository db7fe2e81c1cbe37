package harness

decision := {"allow": true,
