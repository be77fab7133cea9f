"""Analysis: taxonomy, predictive models, dependencies, thresholds, scaling, the report.

Submodules load lazily (`analysis.taxonomy.classify(...)` works after `import analysis`).
"""

from engine.lazy import lazy_getattr

__getattr__ = lazy_getattr("analysis")
