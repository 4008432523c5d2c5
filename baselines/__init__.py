"""SimCMF baselines on Segment Anything (installed with the ``[baselines]`` extra)."""
