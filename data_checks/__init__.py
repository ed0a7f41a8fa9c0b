"""Data-quality and distribution-shift checks that gate each day (Great Expectations suites, drift
metrics, the gate, the HTML drift report). Kept apart from `exfm` so that the checks can be
reviewed and run on their own; `exfm.stages` calls them."""
