package harness

# x is unsafe: it is never bound.
decision := {"allow": x == 1}
