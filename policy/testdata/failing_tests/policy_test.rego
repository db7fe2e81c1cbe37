package harness_test

import data.harness

test_passes if harness.decision.allow == false

# Deliberately wrong: RunTests must report this test as failing.
test_fails if harness.decision.allow == true
