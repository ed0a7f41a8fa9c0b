"""ExFM platform: a daily foundation model, a teacher-logit store (DAS), data checks, and distilled
vertical models, run by Airflow in production and by `dvc repro` locally.

See README.md for the quickstart and ../shared/DESIGN.md for the architecture.
"""

__version__ = "0.1.0"
