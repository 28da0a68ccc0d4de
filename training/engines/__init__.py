"""Training engines other than the default in-process one (`implicit` / numpy on one machine).

Each engine lives in its own module, imported only when asked for (`recsvc-train fit --engine NAME`),
so the default path never imports it or its dependencies.
"""

from __future__ import annotations

ENGINES = ("implicit", "spark")
DEFAULT_ENGINE = "implicit"
