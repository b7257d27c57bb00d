"""Settings for every test run from this checkout (tests/ and integrations/*/tests).

Hypothesis: no per-example deadline and no "too slow" health check. Property
tests check outcomes, never wall-clock speed; on a loaded machine (CI shares
its cores) an example or its data generation may take long. Under CI (the
``CI`` environment variable set, as CI runners do) the examples are
derandomized: every CI run tries the same examples, so a run fails for a change
of the code, not for the luck of the draw. Other runs draw new examples each
time (and replay the failures they found, from ``.hypothesis/``): that is where
properties are explored. A failure prints the blob that reproduces it.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "s3pool",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=bool(os.environ.get("CI")),
    print_blob=True,
)
settings.load_profile("s3pool")
