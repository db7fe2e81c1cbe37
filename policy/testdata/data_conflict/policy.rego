package harness

decision := {"allow": false}
