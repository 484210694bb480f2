"""The seed of the randomized oracle tests (env NPYFS_SEED overrides it)."""

import os
import random

_env = os.environ.get("NPYFS_SEED")
SEED = int(_env) if _env else random.SystemRandom().randrange(1, 2**31)
